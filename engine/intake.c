/*
 * intake.c - jobs in (intake.h): decode, suppression, bodies, hand-off.
 *
 * Each job is held in the ledger from decoding on, so whatever happens to
 * it here (invalid, suppressed, body missing, Redis gone, stopping) it
 * leaves through the ledger exactly once.
 */
#include "intake.h"
#include "config.h"
#include "dkim.h"
#include "ledger.h"
#include "loop.h"
#include "map.h"
#include "msg.h"
#include "redis.h"
#include "scheduler.h"
#include "trouble.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bodyref {			/* a msg_ref's body, shared by its jobs */
	struct msg_body *body;
	struct job *waiting;		/* jobs waiting for the fetch */
	int fetching;
	char *name;
	struct intake *in;
};

struct check {				/* one suppression check batch */
	struct intake *in;
	size_t n;
	struct job *jobs[];
};

struct intake {
	struct loop *loop;
	struct rq *rq;
	struct ledger *lg;
	struct sched *sched;
	const struct config *cfg;
	struct map bodies;		/* msg_ref -> bodyref */
	size_t bytes;			/* of the bodies held */
	int stopping;
};

struct intake *
intake_new(struct loop *l, struct rq *rq, struct ledger *lg, struct sched *s,
    const struct config *cfg)
{
	struct intake *in = xcalloc(1, sizeof *in);

	in->loop = l;
	in->rq = rq;
	in->lg = lg;
	in->sched = s;
	in->cfg = cfg;
	return in;
}

static void
bodyref_free(struct intake *in, struct bodyref *b)
{
	map_del(&in->bodies, b->name);
	if (b->body) {
		in->bytes -= b->body->len;
		msg_body_unref(b->body);
	}
	free(b->name);
	free(b);
}

void
intake_free(struct intake *in)
{
	const char *k;
	void *v;
	size_t it = 0;

	if (in == NULL)
		return;
	while (map_iter(&in->bodies, &it, &k, &v)) {
		struct bodyref *b = v;
		if (b->body)
			msg_body_unref(b->body);
		free(b->name);
		free(b);
	}
	map_free(&in->bodies);
	free(in);
}

void intake_set_config(struct intake *in, const struct config *cfg) { in->cfg = cfg; }
void intake_set_stopping(struct intake *in) { in->stopping = 1; }
size_t intake_bytes(const struct intake *in) { return in->bytes; }

size_t
intake_sweep(struct intake *in)
{
	const char *k;
	void *v;
	size_t it = 0, n = 0;

	while (map_iter(&in->bodies, &it, &k, &v)) {
		struct bodyref *b = v;
		if (b->fetching || b->waiting || b->body == NULL || b->body->refs > 1)
			continue;
		bodyref_free(in, b);	/* the slot's key is freed; k not used after */
		n++;
	}
	return n;
}

/*
 * intake_sign - DKIM-sign a body once, for every job that shares it: the
 * signature goes out in front of the per-job id header, which it does not
 * cover. No key for the From domain: sent unsigned (a configured key that
 * cannot be read stops the start, so this is a choice, not an accident).
 */
static void
intake_sign(struct intake *in, struct msg_body *b)
{
	struct dkim_request rq = { .msg = b->data, .len = b->len, .flags = DKIM_STUFFED,
	    .now = (time_t)(clock_wall_ms() / 1000) };
	const struct dkim_signer *who = NULL;
	enum dkim_status st;

	st = dkim_sign_message(in->cfg->dkim, in->cfg->ndkim, &rq, &b->dkim_sig, &b->dkim_sig_len,
	    &who);
	if (st == DKIM_SIGNED) {
		b->dkim_state = MSG_DKIM_SIGNED;
		log_debug("intake", "dkim: signed as %s (%zu bytes)", who ? who->domain : "?",
		    b->dkim_sig_len);
	} else if (st == DKIM_NO_KEY) {
		b->dkim_state = MSG_DKIM_NO_KEY;
		log_debug("intake", "dkim: no key for the message's From domain; sent unsigned");
	} else {
		b->dkim_state = MSG_DKIM_FAILED;
		log_warn("intake", "dkim: signing failed; the message is sent unsigned");
	}
}

/* A job with its body: check the size, sign once, then to the scheduler. */
static void
intake_ready(struct intake *in, struct job *j)
{
	char why[200];

	if (job_body_too_large(j, j->body->len, in->cfg, why, sizeof why)) {
		ledger_fail(in->lg, j, why);
		return;
	}
	if (in->cfg->ndkim > 0 && j->body->dkim_state == MSG_DKIM_UNTRIED)
		intake_sign(in, j->body);
	sched_route(in->sched, j);
}

static void
on_body(void *arg, enum rq_body_status st, const char *data, size_t len)
{
	struct bodyref *b = arg;
	struct intake *in = b->in;
	struct job *j, *next;
	char big[700] = "";

	b->fetching = 0;
	j = b->waiting;
	b->waiting = NULL;
	if (st == RQ_BODY_OK && len > 0) {
		b->body = msg_body_new(data, len);
		in->bytes += b->body->len;
	} else if (st == RQ_BODY_TOO_LARGE) {
		snprintf(big, sizeof big, "msg_ref key '%s' holds %zu bytes, more than "
		    "smtp.max_message_size (%llu)", b->name, len,
		    (unsigned long long)in->cfg->max_message_size);
	} else if (st == RQ_BODY_ERROR) {
		log_warn("intake", "msg_ref %s: fetch failed; %s job(s) come back later", b->name,
		    j ? "its" : "no");
	}
	for (; j; j = next) {
		next = j->next;
		j->next = NULL;
		if (st == RQ_BODY_ERROR) {
			ledger_forget(in->lg, j);	/* still pending in Redis */
		} else if (in->stopping) {
			ledger_hand_back(in->lg, j);
		} else if (b->body) {
			j->body = msg_body_ref(b->body);
			intake_ready(in, j);
		} else if (big[0]) {
			ledger_fail(in->lg, j, big);
		} else {
			char why[700];
			snprintf(why, sizeof why, "msg_ref key '%s' does not exist or is empty",
			    j->msg_ref);
			ledger_fail(in->lg, j, why);
		}
	}
	if (b->body == NULL)
		bodyref_free(in, b);
}

static void
intake_attach_body(struct intake *in, struct job *j)
{
	struct bodyref *b;

	if (j->raw) {
		j->body = msg_body_new(j->raw, j->raw_len);
		free(j->raw);
		j->raw = NULL;
		ledger_add_bytes(in->lg, j, j->body->len);
		intake_ready(in, j);
		return;
	}
	b = map_get(&in->bodies, j->msg_ref);
	if (b && b->body) {
		j->body = msg_body_ref(b->body);
		intake_ready(in, j);
		return;
	}
	if (b == NULL) {
		b = xcalloc(1, sizeof *b);
		b->in = in;
		b->name = xstrdup(j->msg_ref);
		map_put(&in->bodies, j->msg_ref, b);
	}
	j->next = b->waiting;
	b->waiting = j;
	if (!b->fetching) {
		b->fetching = 1;
		if (rq_fetch_body(in->rq, b->name, in->cfg->max_message_size, on_body, b) != 0)
			on_body(b, RQ_BODY_ERROR, NULL, 0);	/* not connected: comes back */
	}
}

static void
on_suppression(void *arg, const int *member, size_t n)
{
	struct check *c = arg;
	struct intake *in = c->in;
	int ok = member != NULL && n == c->n;

	for (size_t i = 0; i < c->n; i++) {
		struct job *j = c->jobs[i];
		if (!ok) {
			ledger_forget(in->lg, j);	/* comes back: re-read or lease expiry */
		} else if (in->stopping) {
			ledger_hand_back(in->lg, j);
		} else if (member[i]) {
			struct job_outcome o;
			trouble_suppressed(&o);
			ledger_settle(in->lg, j, &o);
		} else {
			intake_attach_body(in, j);
		}
	}
	free(c);
}

void
intake_on_entries(struct intake *in, enum job_origin origin, const struct rq_entry *e, size_t n)
{
	struct check *c = xmalloc(sizeof *c + n * sizeof c->jobs[0]);
	const char **addrs;
	uint64_t now = clock_wall_ms();

	c->in = in;
	c->n = 0;
	for (size_t i = 0; i < n; i++) {
		struct job *j;

		if (ledger_find(in->lg, e[i].key))
			continue;	/* already held (re-read or claimed twice) */
		j = job_decode(e[i].fields, e[i].flens, e[i].values, e[i].vlens, e[i].n,
		    e[i].key, origin, in->cfg, now);
		ledger_track(in->lg, j);
		if (j->error) {
			char why[600];
			log_warn("job", "job=%s key=%s invalid: %s", j->id, j->key, j->error);
			snprintf(why, sizeof why, "%s", j->error);
			ledger_fail(in->lg, j, why);
			continue;
		}
		c->jobs[c->n++] = j;
	}
	if (c->n == 0) {
		free(c);
		return;
	}
	addrs = xcalloc(c->n, sizeof *addrs);
	for (size_t i = 0; i < c->n; i++)
		addrs[i] = c->jobs[i]->to_lc;
	if (rq_suppressed(in->rq, addrs, c->n, on_suppression, c) != 0)
		on_suppression(c, NULL, c->n);	/* not connected: they come back */
	free(addrs);
}
