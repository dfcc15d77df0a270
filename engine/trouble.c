/*
 * trouble.c - SMTP results -> job outcomes. See trouble.h for the table.
 */
#include "trouble.h"

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
    struct job_outcome *o)
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
	case SMTP_CAUSE_TIMEOUT:
	case SMTP_CAUSE_DISCONNECT:
	case SMTP_CAUSE_LOCAL:
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
}

void
trouble_from_site(const struct classify_rules *rules, const struct smtp_result *r,
    struct job_outcome *o)
{
	trouble_from_smtp(rules, r, o);
	o->status = JOB_DEFERRED;
}
