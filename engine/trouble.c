/*
 * trouble.c - SMTP results -> job outcomes. See trouble.h for the table.
 */
#include "trouble.h"
#include "dns.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void
trouble_outcome_init(struct job_outcome *o, enum job_status st)
{
	memset(o, 0, sizeof *o);
	o->status = st;
}

void
trouble_set_reply(struct job_outcome *o, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(o->reply, sizeof o->reply, fmt, ap);
	va_end(ap);
	/* An event's `reply` is one line, whatever the peer sent. */
	for (char *p = o->reply; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
}

void
trouble_from_smtp(const struct classify_rules *rules, const struct smtp_result *r,
    unsigned nrcpts, struct job_outcome *o)
{
	const char *rule = NULL;

	trouble_outcome_init(o, r->status == SMTP_OK ? JOB_DELIVERED :
	    r->status == SMTP_PERM ? JOB_BOUNCED : JOB_DEFERRED);
	if (r->code >= 100 && r->code <= 999)
		o->code = r->code;
	snprintf(o->enh, sizeof o->enh, "%s", r->enh);
	trouble_set_reply(o, "%s", r->text);
	if (r->status == SMTP_OK)
		return;
	o->has_class = 1;
	switch (r->cause) {
	case SMTP_CAUSE_LOCAL:
		o->source_fault = 1;
		o->cls = CLASS_CONNECTION_FAILURE;
		break;
	case SMTP_CAUSE_TIMEOUT:
	case SMTP_CAUSE_DISCONNECT:
		o->cls = CLASS_CONNECTION_FAILURE;
		break;
	case SMTP_CAUSE_SIZE:
		o->cls = CLASS_MESSAGE_TOO_LARGE;
		break;
	case SMTP_CAUSE_PROTOCOL:
		/* A refusal decided locally (unsafe address) carries an
		 * enhanced code that says what was wrong; the rest is the
		 * peer talking nonsense. */
		if (r->status == SMTP_PERM && r->enh[0])
			o->cls = classify_reply(rules, 0, r->enh, r->text, &rule);
		else
			o->cls = CLASS_PROTOCOL_ERROR;
		break;
	case SMTP_CAUSE_SESSION:
	case SMTP_CAUSE_REPLY:
	default:
		if (o->code == 0 && r->enh[0] == '\0')
			o->cls = CLASS_CONNECTION_FAILURE;
		else
			o->cls = classify_reply(rules, o->code, r->enh, r->text, &rule);
		break;
	}
	o->suppress = o->status == JOB_BOUNCED && bounce_class_suppresses(o->cls);
}

void
trouble_from_site(const struct classify_rules *rules, const struct smtp_result *r,
    struct job_outcome *o)
{
	trouble_from_smtp(rules, r, 1, o);
	o->status = JOB_DEFERRED;
	o->suppress = 0;
	o->site_failure = !o->source_fault;
}

void
trouble_from_dns(struct job_outcome *o, int dns_status, const char *domain, const char *error)
{
	switch (dns_status) {
	case DNS_NXDOMAIN:
		trouble_outcome_init(o, JOB_BOUNCED);
		snprintf(o->enh, sizeof o->enh, "5.1.2");
		trouble_set_reply(o, "domain %s does not exist (NXDOMAIN)", domain);
		break;
	case DNS_NULLMX:
		trouble_outcome_init(o, JOB_BOUNCED);
		snprintf(o->enh, sizeof o->enh, "5.1.10");
		trouble_set_reply(o, "domain %s accepts no mail (null MX, RFC 7505)", domain);
		break;
	default:
		trouble_outcome_init(o, JOB_DEFERRED);
		snprintf(o->enh, sizeof o->enh, "4.4.3");
		trouble_set_reply(o, "MX lookup for %s failed: %s", domain,
		    error && error[0] ? error : "no usable address");
		o->has_class = 1;
		o->cls = CLASS_DNS_FAILURE;
		return;
	}
	o->has_class = 1;
	o->cls = CLASS_BAD_DOMAIN;
	o->suppress = bounce_class_suppresses(o->cls);
}

void
trouble_expired(struct job_outcome *o, const struct job *j)
{
	trouble_outcome_init(o, JOB_EXPIRED);
	o->no_attempt = 1;
	if (j->last_reply) {
		trouble_set_reply(o, "expired after %u attempt(s); last: %s", j->attempts,
		    j->last_reply);
		o->code = j->last_code;
		snprintf(o->enh, sizeof o->enh, "%s", j->last_enh);
		o->has_class = j->last_class && j->last_class[0] &&
		    bounce_class_from_name(j->last_class, &o->cls) == 0;
	} else {
		trouble_set_reply(o, "expired before the first attempt (expires_at passed)");
	}
}

void
trouble_expire_deferred(struct job_outcome *o, unsigned attempts)
{
	char tmp[sizeof o->reply];

	o->status = JOB_EXPIRED;
	o->suppress = 0;
	snprintf(tmp, sizeof tmp, "%s", o->reply);
	trouble_set_reply(o, "expired after %u attempt(s); last: %s", attempts, tmp);
}

void
trouble_suppressed(struct job_outcome *o)
{
	trouble_outcome_init(o, JOB_SUPPRESSED);
	trouble_set_reply(o, "recipient is on the suppression list");
}

void
trouble_invalid(struct job_outcome *o, const char *why)
{
	trouble_outcome_init(o, JOB_FAILED);
	trouble_set_reply(o, "%s", why);
}

void
trouble_from_local(struct job_outcome *o, const char *why)
{
	trouble_outcome_init(o, JOB_DEFERRED);
	trouble_set_reply(o, "%s", why);
	o->has_class = 1;
	o->cls = CLASS_CONNECTION_FAILURE;
	o->source_fault = 1;
}
