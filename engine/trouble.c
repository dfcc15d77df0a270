/*
 * trouble.c - what every outcome means: SMTP results, DNS answers,
 * expiry, suppression and invalid jobs -> job outcomes with their verdict
 * (see trouble.h for the table).
 *
 * Owns: the stage rules (who a reply is about), the suppression decision,
 * the slow-down signal, the site-failure and source-fault flags, and the
 * event texts of outcomes the engine settles without a reply (DNS,
 * expiry, suppression, invalid). classify.c names the class of a reply's
 * words; this file decides what that class may mean at the stage where
 * the reply came.
 *
 * Invariants: suppress implies bounced with a class bounce_class_suppresses()
 * names, or a complaint (trouble_complaint); source_fault excludes site_failure and slow_down; a delivered
 * outcome carries no class and no flag.
 */
#include "trouble.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

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

static void
set_class(struct job_outcome *o, enum bounce_class c)
{
	o->has_class = 1;
	o->cls = c;
}

/* Classes that say something about the recipient's mailbox or domain. */
static int
class_is_recipient(enum bounce_class c)
{
	return c == CLASS_INVALID_RECIPIENT || c == CLASS_BAD_DOMAIN ||
	    c == CLASS_INACTIVE_MAILBOX || c == CLASS_MAILBOX_FULL;
}

/* Provider wording that asks for less traffic, whatever class an
 * operator's rules give it. Case-insensitive substrings. */
static const char *const throttle_words[] = {
	"[TSS04]", "[TS01]", "[TS02]", "[TS03]",	/* Yahoo */
	"(S775)", "(S843)", "4.7.650", "temporarily rate limited",	/* Microsoft */
	"unusual rate of unsolicited mail", "receiving mail at a rate",	/* Gmail */
	"throttl", "rate limit", "too many connections", "too many messages",
	"slow down",
};

static int
has_throttle_words(const char *text)
{
	for (size_t i = 0; i < sizeof throttle_words / sizeof throttle_words[0]; i++)
		if (strcasestr(text, throttle_words[i]) != NULL)
			return 1;
	return 0;
}

/*
 * slow_down - does this failure ask us to send to the destination more
 * slowly? A refusal of one recipient does not; a busy or throttling site
 * does.
 */
static int
slow_down(const struct smtp_result *r, const struct job_outcome *o)
{
	if (r->status == SMTP_OK || r->cause == SMTP_CAUSE_LOCAL)
		return 0;
	if (r->cause == SMTP_CAUSE_TIMEOUT || r->cause == SMTP_CAUSE_DISCONNECT)
		return r->stage == SMTP_STAGE_CONNECT || r->stage == SMTP_STAGE_GREETING;
	if (r->cause != SMTP_CAUSE_REPLY && r->cause != SMTP_CAUSE_SESSION)
		return 0;
	if (r->code == 421)
		return 1;
	if (o->has_class && o->cls == CLASS_RATE_LIMITED)
		return 1;
	if (strncmp(r->enh, "4.7.", 4) == 0 && !(o->has_class &&
	    (o->cls == CLASS_GREYLISTED || o->cls == CLASS_AUTH_FAILURE)))
		return 1;
	return r->code >= 400 && has_throttle_words(r->text);
}

/* The class of a failed result from its cause and words alone. */
static enum bounce_class
raw_class(const struct classify_rules *rules, const struct smtp_result *r, int code)
{
	const char *rule = NULL;

	switch (r->cause) {
	case SMTP_CAUSE_TIMEOUT:
	case SMTP_CAUSE_DISCONNECT:
	case SMTP_CAUSE_LOCAL:
		return CLASS_CONNECTION_FAILURE;
	case SMTP_CAUSE_SIZE:
		return CLASS_MESSAGE_TOO_LARGE;
	case SMTP_CAUSE_TLS:
		/* STARTTLS missing or refused under a policy that needs
		 * it, or a failed handshake: deferred, site_failure (the
		 * stage is STARTTLS), never a verdict on the recipient */
		return CLASS_TLS_FAILURE;
	case SMTP_CAUSE_AUTH:
		/* Our credentials at a smarthost were refused (or could not
		 * be sent): deferred, site_failure (stage AUTH), never a
		 * verdict on the recipient */
		return CLASS_AUTH_FAILURE;
	case SMTP_CAUSE_PROTOCOL:
		/* A refusal decided locally (unsafe address) carries an
		 * enhanced code that says what was wrong; the rest is the
		 * peer talking nonsense. */
		if (r->status == SMTP_PERM && strcmp(r->enh, "5.6.3") == 0)
			return CLASS_PROTOCOL_ERROR;	/* 8-bit body, no 8BITMIME */
		if (r->status == SMTP_PERM && r->enh[0])
			return classify_reply(rules, 0, r->enh, r->text, &rule);
		return CLASS_PROTOCOL_ERROR;
	case SMTP_CAUSE_SESSION:
	case SMTP_CAUSE_REPLY:
	default:
		if (code == 0 && r->enh[0] == '\0')
			return CLASS_CONNECTION_FAILURE;
		/* the rules may name the stage a wording is judged at */
		return classify_reply_stage(rules, smtp_stage_name(r->stage), code, r->enh,
		    r->text, NULL);
	}
}

void
trouble_from_smtp(const struct classify_rules *rules, const struct smtp_result *r,
    unsigned nrcpts, struct job_outcome *o)
{
	enum bounce_class cls;
	int server_said;

	trouble_outcome_init(o, r->status == SMTP_OK ? JOB_DELIVERED :
	    r->status == SMTP_PERM ? JOB_BOUNCED : JOB_DEFERRED);
	if (r->code >= 100 && r->code <= 999)
		o->code = r->code;
	snprintf(o->enh, sizeof o->enh, "%s", r->enh);
	trouble_set_reply(o, "%s", r->text);
	if (r->status == SMTP_OK)
		return;
	cls = raw_class(rules, r, o->code);
	/* Did the server judge this mail (a reply), or did we (code 0)? */
	server_said = o->code != 0 &&
	    (r->cause == SMTP_CAUSE_REPLY || r->cause == SMTP_CAUSE_SESSION);

	if (r->cause == SMTP_CAUSE_LOCAL) {
		/* Our source could not be used: the destination did nothing. */
		o->status = JOB_DEFERRED;
		o->source_fault = 1;
		set_class(o, cls);
		return;
	}
	switch (r->stage) {
	case SMTP_STAGE_CONNECT:
	case SMTP_STAGE_GREETING:
	case SMTP_STAGE_EHLO:
	case SMTP_STAGE_HELO:
	case SMTP_STAGE_STARTTLS:
	case SMTP_STAGE_AUTH:
		/* The site failed as a whole; a 5xx there says nothing about
		 * this recipient: retry. */
		o->status = JOB_DEFERRED;
		o->site_failure = 1;
		if (class_is_recipient(cls))
			cls = CLASS_UNKNOWN;
		break;
	case SMTP_STAGE_RSET:
	case SMTP_STAGE_QUIT:
		/* The job was never tried on this session. */
		o->status = JOB_DEFERRED;
		if (class_is_recipient(cls))
			cls = CLASS_UNKNOWN;
		break;
	case SMTP_STAGE_MAIL:
		/* About the sender (its address, its domain, its reputation),
		 * never about the recipient. */
		if (class_is_recipient(cls))
			cls = CLASS_AUTH_FAILURE;
		break;
	case SMTP_STAGE_RCPT:
		o->suppress = server_said;
		break;
	case SMTP_STAGE_DATA:
	case SMTP_STAGE_DOT:	/* and every BDAT chunk's reply (RFC 3030) */
	default:
		/* One reply for the whole transaction: it can only speak for
		 * the recipient when there was exactly one. */
		if (nrcpts == 1)
			o->suppress = server_said;
		else if (class_is_recipient(cls))
			cls = CLASS_UNKNOWN;
		break;
	}
	set_class(o, cls);
	o->suppress = o->suppress && o->status == JOB_BOUNCED && bounce_class_suppresses(cls);
	o->slow_down = slow_down(r, o);
}

void
trouble_from_site(const struct classify_rules *rules, const struct smtp_result *r,
    struct job_outcome *o)
{
	trouble_from_smtp(rules, r, 1, o);
	o->status = JOB_DEFERRED;
	o->suppress = 0;
	if (o->has_class && class_is_recipient(o->cls))
		o->cls = CLASS_UNKNOWN;
	o->site_failure = !o->source_fault;
}

void
trouble_from_dns(enum dns_status st, const char *domain, const char *error,
    struct job_outcome *o)
{
	switch (st) {
	case DNS_NXDOMAIN:
		trouble_outcome_init(o, JOB_BOUNCED);
		snprintf(o->enh, sizeof o->enh, "5.1.2");
		set_class(o, CLASS_BAD_DOMAIN);
		o->suppress = 1;
		trouble_set_reply(o, "domain %s does not exist (NXDOMAIN)", domain);
		return;
	case DNS_NULLMX:
		trouble_outcome_init(o, JOB_BOUNCED);
		snprintf(o->enh, sizeof o->enh, "5.1.10");
		set_class(o, CLASS_BAD_DOMAIN);
		o->suppress = 1;
		trouble_set_reply(o, "domain %s accepts no mail (null MX, RFC 7505)", domain);
		return;
	case DNS_OK:		/* an answer without a usable target */
	case DNS_NOADDR:
	case DNS_TEMPFAIL:
	default:
		trouble_outcome_init(o, JOB_DEFERRED);
		snprintf(o->enh, sizeof o->enh, "4.4.3");
		set_class(o, CLASS_DNS_FAILURE);
		trouble_set_reply(o, "MX lookup for %s failed: %s", domain,
		    error && error[0] ? error : "no usable address");
		return;
	}
}

void
trouble_mtasts(const char *domain, const char *why, struct job_outcome *o)
{
	trouble_outcome_init(o, JOB_DEFERRED);
	snprintf(o->enh, sizeof o->enh, "4.7.5");
	set_class(o, CLASS_TLS_FAILURE);
	trouble_set_reply(o, "MTA-STS policy of %s: %s", domain, why);
}

void
trouble_expired(const struct job *j, unsigned attempts, const char *last_reply,
    struct job_outcome *o)
{
	trouble_outcome_init(o, JOB_EXPIRED);
	o->no_attempt = 1;
	if (last_reply == NULL) {
		trouble_set_reply(o, "expired before the first attempt (expires_at passed)");
		return;
	}
	trouble_set_reply(o, "expired after %u attempt(s); last: %s", attempts, last_reply);
	if (j->last_code >= 100 && j->last_code <= 999)
		o->code = j->last_code;
	snprintf(o->enh, sizeof o->enh, "%s", j->last_enh);
	o->has_class = j->last_class && j->last_class[0] &&
	    bounce_class_from_name(j->last_class, &o->cls) == 0;
}

void
trouble_expire_deferred(struct job_outcome *o, unsigned attempts)
{
	char last[sizeof o->reply];

	if (o->status != JOB_DEFERRED)
		return;
	o->status = JOB_EXPIRED;
	o->suppress = 0;
	snprintf(last, sizeof last, "%s", o->reply);
	trouble_set_reply(o, "expired after %u attempt(s); last: %s", attempts, last);
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
	trouble_set_reply(o, "%s", why && why[0] ? why : "invalid job");
}

void
trouble_async_bounce(enum bounce_class cls, int code, const char *enh, const char *diag,
    struct job_outcome *o)
{
	trouble_outcome_init(o, JOB_BOUNCED);
	o->async = 1;
	o->no_attempt = 1;	/* no attempt of ours: a report about an old one */
	if (code >= 100 && code <= 999)
		o->code = code;
	snprintf(o->enh, sizeof o->enh, "%s", enh ? enh : "");
	trouble_set_reply(o, "%s", diag ? diag : "");
	set_class(o, cls);
	/* The remote server judged the recipient, like a RCPT refusal. */
	o->suppress = bounce_class_suppresses(cls);
}

void
trouble_complaint(const char *feedback_type, struct job_outcome *o)
{
	const char *t = feedback_type ? feedback_type : "";

	trouble_outcome_init(o, JOB_COMPLAINED);
	o->no_attempt = 1;
	trouble_set_reply(o, "feedback report: %s", t[0] ? t : "abuse");
	o->suppress = strcasecmp(t, "not-spam") != 0 && strcasecmp(t, "auth-failure") != 0;
}

const char *
trouble_verdict_to_text(const struct job_outcome *o, char *buf, size_t len)
{
	static const struct { size_t off; const char *name; } flags[] = {
		{ offsetof(struct job_outcome, suppress), "suppress" },
		{ offsetof(struct job_outcome, slow_down), "slow_down" },
		{ offsetof(struct job_outcome, site_failure), "site_failure" },
		{ offsetof(struct job_outcome, source_fault), "source_fault" },
	};
	size_t n = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
		if (!*(const int *)((const char *)o + flags[i].off))
			continue;
		int w = snprintf(buf + n, len - n, "%s%s", n ? "," : "", flags[i].name);
		if (w < 0 || (size_t)w >= len - n) {
			buf[n] = '\0';	/* whole names only */
			break;
		}
		n += (size_t)w;
	}
	if (buf[0] == '\0')
		snprintf(buf, len, "-");
	return buf;
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
