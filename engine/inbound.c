/*
 * inbound.c - the inbound pipeline: DSNs and feedback reports from the
 * stream PREFIXinbound to events, suppression, or the unmatched stream.
 *
 * Owns: which report means what for which job (inbound_decide, pure; the
 * meaning of each failure is trouble.c's), the reading of the stream from
 * the engine's tick, and the log line of each message. redis.c owns the
 * one script that writes the outcome and acks the entry.
 *
 * Order of the decision: no message or not a report -> unmatched; an
 * abuse complaint in free text -> unmatched (an operator reads it); a DSN
 * without a failed recipient -> ignored (delay notices, "relayed"); then
 * the job: VERP in an envelope recipient, else report_job_id()'s links;
 * none -> unmatched "no job id". Whether the job is known (has a sent
 * record) is decided in Redis, atomically with the write.
 */
#include "inbound.h"
#include "classify.h"
#include "config.h"
#include "loop.h"
#include "redis.h"
#include "trouble.h"
#include "util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the decision (pure) --- */

void
inbound_id_key(const char *id, char *out, size_t outlen)
{
	size_t n = 0;

	if (outlen == 0)
		return;
	for (const char *p = id ? id : ""; *p && n + 1 < outlen; p++) {
		unsigned char c = (unsigned char)*p;
		out[n++] = isalnum(c) || c == '-' || c == '_' || c == '.' ? (char)c : '=';
	}
	out[n] = '\0';
}

static void unmatched(struct inbound_verdict *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
unmatched(struct inbound_verdict *v, const char *fmt, ...)
{
	va_list ap;

	v->kind = INBOUND_UNMATCHED;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof v->reason, fmt, ap);
	va_end(ap);
}

/* The SMTP code a Diagnostic-Code of type smtp starts with, 0 if none. */
static int
diag_code(const struct report_rcpt *rc)
{
	const char *d = rc->diag;

	if (rc->diag_type[0] && strcmp(rc->diag_type, "smtp") != 0)
		return 0;
	if (d[0] >= '2' && d[0] <= '5' && isdigit((unsigned char)d[1]) &&
	    isdigit((unsigned char)d[2]) && (d[3] == '\0' || d[3] == ' ' || d[3] == '-'))
		return (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
	return 0;
}

static void
lower_copy(char *out, size_t outlen, const char *s)
{
	snprintf(out, outlen, "%s", s ? s : "");
	str_lower(out);
}

/* The job: each envelope recipient as VERP first, then the report's own
 * links. 0 and v->job_id / v->link set, or -1. */
static int
find_job(const struct inbound_params *p, const struct report *r, const char *rcpts,
    struct inbound_verdict *v)
{
	const char *s = rcpts ? rcpts : "";

	while (*s) {
		char one[REPORT_ADDR_MAX];
		size_t n = strcspn(s, ",");

		while (n > 0 && (*s == ' ' || *s == '\t')) {
			s++;
			n--;
		}
		if (n > 0 && n < sizeof one) {
			memcpy(one, s, n);
			one[n] = '\0';
			for (size_t k = n; k > 0 && (one[k - 1] == ' ' || one[k - 1] == '\t'); k--)
				one[k - 1] = '\0';
			if (p->return_path && report_verp_id(one, p->return_path, v->job_id,
			    sizeof v->job_id) == 0) {
				v->link = "verp-envelope";
				return 0;
			}
		}
		s += n;
		if (*s == ',')
			s++;
	}
	v->link = report_job_id(r, NULL, p->return_path, v->job_id, sizeof v->job_id);
	return v->link ? 0 : -1;
}

static struct inbound_event *
event_add(struct inbound_verdict *v, size_t cap)
{
	struct inbound_event *e;

	if (v->events == NULL)
		v->events = xcalloc(cap ? cap : 1, sizeof *v->events);
	e = &v->events[v->nevents++];
	memset(e, 0, sizeof *e);
	return e;
}

void
inbound_decide(const struct inbound_params *p, const char *msg, size_t len,
    const char *envelope_rcpts, struct inbound_verdict *v)
{
	struct report r;
	size_t nfail = 0;

	memset(v, 0, sizeof *v);
	v->format = "";
	v->link = "";
	if (msg == NULL) {
		unmatched(v, "no msg field");
		return;
	}
	if (len == 0) {
		unmatched(v, "empty message");
		return;
	}
	if (report_parse(msg, len, p->id_header, &r) != 0) {
		unmatched(v, "not a report: %s", r.reason[0] ? r.reason : "unrecognised");
		report_free(&r);
		return;
	}
	v->format = r.format ? r.format : "";
	if (r.kind == REPORT_NOT_ARF_ABUSE) {
		unmatched(v, "abuse complaint not in ARF (for an operator): %s",
		    r.reason[0] ? r.reason : "free text");
		report_free(&r);
		return;
	}
	if (r.kind == REPORT_DSN) {
		for (size_t i = 0; i < r.nrcpts; i++) {
			if (report_rcpt_is_failure(&r.rcpts[i]))
				nfail++;
			else if (r.rcpts[i].action == REPORT_ACTION_DELAYED)
				v->delayed++;
		}
		if (r.nrcpts == 0) {
			unmatched(v, "a delivery report without any recipient");
			report_free(&r);
			return;
		}
		if (nfail == 0) {
			v->kind = INBOUND_IGNORED;
			snprintf(v->reason, sizeof v->reason, "%s", v->delayed ?
			    "delayed only (logged, nothing changes)" :
			    "no failed recipient (delivered/relayed notice)");
			report_free(&r);
			return;
		}
	}
	if (find_job(p, &r, envelope_rcpts, v) != 0) {
		unmatched(v, "no job id (no VERP address, no %s header in the returned original)",
		    p->id_header ? p->id_header : "X-Volley-Id");
		report_free(&r);
		return;
	}
	v->kind = INBOUND_EVENTS;
	if (r.kind == REPORT_DSN) {
		for (size_t i = 0; i < r.nrcpts; i++) {
			const struct report_rcpt *rc = &r.rcpts[i];
			struct inbound_event *e;
			enum bounce_class cls;

			if (!report_rcpt_is_failure(rc))
				continue;
			e = event_add(v, nfail);
			cls = report_rcpt_classify(p->rules, rc, NULL);
			trouble_async_bounce(cls, diag_code(rc), rc->status,
			    rc->diag[0] ? rc->diag : rc->status, &e->o);
			lower_copy(e->rcpt, sizeof e->rcpt,
			    rc->original_rcpt[0] ? rc->original_rcpt : rc->final_rcpt);
			snprintf(e->why, sizeof e->why, "bounced:%s", bounce_class_name(cls));
		}
	} else {
		struct inbound_event *e = event_add(v, 1);

		trouble_complaint(r.feedback.feedback_type, &e->o);
		lower_copy(e->rcpt, sizeof e->rcpt, r.complained_rcpt);
		snprintf(e->feedback_type, sizeof e->feedback_type, "%s",
		    r.feedback.feedback_type[0] ? r.feedback.feedback_type : "abuse");
		snprintf(e->why, sizeof e->why, "complained:%s", e->feedback_type);
	}
	report_free(&r);
}

void
inbound_verdict_free(struct inbound_verdict *v)
{
	free(v->events);
	v->events = NULL;
	v->nevents = 0;
}

/* --- the I/O part --- */

/* Entries per read, and how often an idle stream is looked at. */
#define INBOUND_BATCH		64
#define INBOUND_POLL_MS		1000
/* Entries idle this long in another consumer's pending list are taken
 * over (their instance died): a live one settles an entry within a loop
 * turn or keeps it in its outbox, and the script's marker makes a second
 * settlement a no-op. */
#define INBOUND_CLAIM_IDLE_MS	60000
#define INBOUND_CLAIM_EVERY_MS	30000

struct inbound {
	struct loop *loop;
	struct rq *rq;
	const struct config *cfg;
	const struct classify_rules *rules;
	int reading;
	int again;		/* the last read was full: read on at once */
	uint64_t last_read, last_claim;
	uint64_t n_events, n_unmatched, n_ignored;
};

struct inbound *
inbound_new(struct loop *l, struct rq *rq, const struct config *cfg,
    const struct classify_rules *rules)
{
	struct inbound *in = xcalloc(1, sizeof *in);

	in->loop = l;
	in->rq = rq;
	in->cfg = cfg;
	in->rules = rules;
	return in;
}

void
inbound_free(struct inbound *in)
{
	free(in);
}

void
inbound_set_config(struct inbound *in, const struct config *cfg,
    const struct classify_rules *rules)
{
	in->cfg = cfg;
	in->rules = rules;
}

/* The event fields of one decided event: kept in bufs (the caller's). */
#define PAIRS_MAX	9

static size_t
event_pairs(const struct inbound_verdict *v, const struct inbound_event *e, const char **pv,
    char code[8])
{
	size_t k = 0;

	if (e->o.code >= 100 && e->o.code <= 999)
		snprintf(code, 8, "%03d", e->o.code);
	else
		code[0] = '\0';
	pv[k++] = "code"; pv[k++] = code;
	pv[k++] = "enh"; pv[k++] = e->o.enh;
	pv[k++] = "reply"; pv[k++] = e->o.reply;
	if (e->o.has_class) {
		pv[k++] = "class"; pv[k++] = bounce_class_name(e->o.cls);
	}
	pv[k++] = "async"; pv[k++] = "1";
	if (e->feedback_type[0]) {
		pv[k++] = "feedback_type"; pv[k++] = e->feedback_type;
	}
	pv[k++] = "rcpt"; pv[k++] = e->rcpt;
	pv[k++] = "report"; pv[k++] = v->format;
	pv[k++] = "via"; pv[k++] = v->link;
	return k / 2;
}

static void
settle_one(struct inbound *in, const struct rq_inbound_msg *m)
{
	struct inbound_params p = { in->rules, in->cfg->id_header, in->cfg->return_path };
	struct inbound_verdict v;
	char idkey[INBOUND_IDKEY_MAX];

	inbound_decide(&p, m->msg, m->msg_len, m->rcpt, &v);
	switch (v.kind) {
	case INBOUND_UNMATCHED:
		in->n_unmatched++;
		log_warn("inbound", "entry=%s source=%s unmatched: %s", m->entry,
		    m->source[0] ? m->source : "-", v.reason);
		rq_inbound_settle(in->rq, m, RQ_INBOUND_UNMATCHED, "", "", v.reason, NULL, 0);
		break;
	case INBOUND_IGNORED:
		in->n_ignored++;
		log_info("inbound", "entry=%s format=%s %s; acked", m->entry, v.format, v.reason);
		rq_inbound_settle(in->rq, m, RQ_INBOUND_ACK, "", "", v.reason, NULL, 0);
		break;
	case INBOUND_EVENTS: {
		struct rq_inbound_event *ev = xcalloc(v.nevents, sizeof *ev);
		const char **pv = xcalloc(v.nevents * 2 * PAIRS_MAX, sizeof *pv);
		char (*codes)[8] = xcalloc(v.nevents, sizeof *codes);

		inbound_id_key(v.job_id, idkey, sizeof idkey);
		for (size_t i = 0; i < v.nevents; i++) {
			const struct inbound_event *e = &v.events[i];
			char verdict[64];

			ev[i].status = job_status_name(e->o.status);
			ev[i].rcpt = e->rcpt;
			ev[i].suppress = e->o.suppress;
			ev[i].why = e->why;
			ev[i].pairs = &pv[i * 2 * PAIRS_MAX];
			ev[i].npairs = event_pairs(&v, e, &pv[i * 2 * PAIRS_MAX], codes[i]);
			in->n_events++;
			log_info("inbound", "entry=%s job=%s via=%s format=%s status=%s async=1 "
			    "rcpt=%s class=%s enh=%s verdict=%s", m->entry, v.job_id, v.link,
			    v.format, ev[i].status, e->rcpt[0] ? e->rcpt : "-",
			    e->o.has_class ? bounce_class_name(e->o.cls) : "-",
			    e->o.enh[0] ? e->o.enh : "-",
			    trouble_verdict_to_text(&e->o, verdict, sizeof verdict));
		}
		rq_inbound_settle(in->rq, m, RQ_INBOUND_EVENTS, v.job_id, idkey, "", ev,
		    v.nevents);
		free(codes);
		free(pv);
		free(ev);
		break;
	}
	}
	inbound_verdict_free(&v);
}

static void
on_inbound(void *arg, const struct rq_inbound_msg *m, size_t n, size_t seen)
{
	struct inbound *in = arg;

	if (m == NULL) {
		/* the read is over */
		in->reading = 0;
		in->again = seen >= INBOUND_BATCH;
		return;
	}
	for (size_t i = 0; i < n; i++)
		settle_one(in, &m[i]);
}

void
inbound_tick(struct inbound *in, uint64_t now)
{
	uint64_t idle = 0;

	if (in->reading || !rq_connected(in->rq) || !in->cfg->inbound_process)
		return;
	if (!in->again && now - in->last_read < INBOUND_POLL_MS && in->last_read != 0)
		return;
	/* Settles waiting for Redis first: do not pile up more. */
	if (rq_outstanding(in->rq) > 4 * INBOUND_BATCH)
		return;
	if (now - in->last_claim >= INBOUND_CLAIM_EVERY_MS) {
		in->last_claim = now;
		idle = INBOUND_CLAIM_IDLE_MS;
	}
	in->last_read = now;
	in->again = 0;
	if (rq_inbound_fetch(in->rq, INBOUND_BATCH, idle, on_inbound, in) == 0)
		in->reading = 1;
}
