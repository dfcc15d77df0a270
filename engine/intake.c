/*
 * intake.c - jobs in (intake.h): decode, pause, suppression, bodies,
 * hand-off.
 *
 * Each job is held in the ledger from decoding on, so whatever happens to
 * it here (invalid, paused, suppressed, body missing, Redis gone,
 * stopping) it leaves through the ledger exactly once.
 *
 * The pause state (paused campaigns and tenants) is a copy of Redis',
 * read once a second (intake_poll_pause) and before the first batch is
 * checked: until it has been read once, every job waits as if paused.
 * The poll is sent before a batch's suppression check on the same
 * connection, so its answer is in when that check's answer comes.
 */
#include "intake.h"
#include "config.h"
#include "dkim.h"
#include "fleet.h"
#include "headers.h"
#include "ledger.h"
#include "loop.h"
#include "map.h"
#include "msg.h"
#include "pace.h"
#include "redis.h"
#include "route.h"
#include "scheduler.h"
#include "signer.h"
#include "trouble.h"
#include "util.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A job over its campaign's or tenant's rate cap waits at least this long,
 * plus a spread of up to CAP_PARK_SPREAD_MS. */
#define CAP_PARK_MIN_MS		250
#define CAP_PARK_SPREAD_MS	250

/* A paused job waits in the retry schedule this long, plus a spread of up
 * to PAUSE_SPREAD_MS so that a big campaign does not come back at once. */
#define PAUSE_PARK_MS		1000
#define PAUSE_SPREAD_MS		1000
#define PAUSE_POLL_MS		1000

struct bodyref {			/* a msg_ref's body, shared by its jobs */
	struct msg_body *body;
	struct job *waiting;		/* jobs waiting for the fetch */
	int fetching;
	char *name;
	uint64_t fetched_ms;		/* mono ms the body was read */
	struct intake *in;
};

/* A msg_ref key may be overwritten by its producer (a daily newsletter
 * key): a cached body is read again once it is this old. */
#define BODY_CACHE_MS	60000

struct check {				/* one suppression check batch */
	struct intake *in;
	size_t n;
	struct job *jobs[];
};

/*
 * A signature being made by the signing pool (signer.h) and the jobs
 * waiting for it. A body's first signature (body set) is shared: jobs of
 * that body arriving meanwhile wait behind it (followers), then take it
 * or ask for their own. The jobs stay held in the ledger meanwhile, so
 * they count against the read-ahead.
 */
struct sign_wait {
	struct intake *in;
	struct signer_req *req;
	struct msg_body *body;		/* a body's signature (MSG_DKIM_PENDING); NULL: j's own */
	struct job *j;			/* whose fields are signed */
	struct job *followers, **ftail;	/* jobs of body waiting behind it */
	struct sign_wait *prev, *next;	/* struct intake's waits */
};

struct intake {
	struct loop *loop;
	struct rq *rq;
	struct ledger *lg;
	struct sched *sched;
	const struct config *cfg;
	const struct route_owner *own;	/* which pools are ours (NULL: all) */
	struct map bodies;		/* msg_ref -> bodyref */
	size_t bytes;			/* of the bodies held */
	int stopping;
	/* pause state */
	struct map paused_campaigns, paused_tenants;	/* name -> (void *)1 */
	int pause_known;		/* read from Redis at least once */
	int pause_polling;		/* a read in flight */
	uint64_t pause_polled;		/* mono ms of the last read sent */
	uint64_t pause_error_logged;	/* mono ms */
	uint64_t parked;		/* jobs parked for a pause */
	uint64_t capped;		/* jobs parked for a campaign/tenant rate cap */
	/* Redis refused a read the intake needs (WRONGTYPE, NOPERM...) */
	uint64_t hold_until;		/* mono ms: read no more jobs before */
	uint64_t hold_ms;		/* the current back-off step */
	/* DKIM signing pool (NULL: signed on the loop) and what waits for it */
	struct signer *signer;
	struct sign_wait *waits;
	size_t signing;			/* jobs waiting for a signature */
};

#define HOLD_FIRST_MS	1000
#define HOLD_MAX_MS	30000

/*
 * intake_trouble - a suppression check or a body fetch failed: the jobs
 * concerned are handed back (their delivery counts put back, so a Redis
 * problem never turns into "delivered too often") and no more jobs are
 * read for a while, doubling up to 30 s, one log line per step.
 */
static void
intake_trouble(struct intake *in, const char *what)
{
	uint64_t now = loop_now(in->loop);

	if (now < in->hold_until)
		return;
	in->hold_ms = in->hold_ms ? in->hold_ms * 2 : HOLD_FIRST_MS;
	if (in->hold_ms > HOLD_MAX_MS)
		in->hold_ms = HOLD_MAX_MS;
	in->hold_until = now + in->hold_ms;
	log_error("intake", "%s failed; jobs handed back, no new jobs read for %llu ms", what,
	    (unsigned long long)in->hold_ms);
}

static void
intake_ok(struct intake *in)
{
	in->hold_ms = 0;
}

int
intake_holding(const struct intake *in, uint64_t now_mono)
{
	return now_mono < in->hold_until;
}

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
	map_free(&in->paused_campaigns);
	map_free(&in->paused_tenants);
	free(in);
}

void intake_set_config(struct intake *in, const struct config *cfg) { in->cfg = cfg; }
void intake_set_owner(struct intake *in, const struct route_owner *own) { in->own = own; }
void intake_set_signer(struct intake *in, struct signer *sg) { in->signer = sg; }
size_t intake_signing(const struct intake *in) { return in->signing; }

/*
 * intake_set_stopping - no job goes on from here: jobs waiting for a
 * signature are handed back at once (their requests cancelled); jobs
 * waiting for a check or a body are handed back when it answers.
 */
void
intake_set_stopping(struct intake *in)
{
	struct sign_wait *w;

	in->stopping = 1;
	while ((w = in->waits) != NULL) {
		struct job *f, *next;

		in->waits = w->next;
		signer_cancel(in->signer, w->req);
		if (w->body) {
			w->body->dkim_state = MSG_DKIM_UNTRIED;
			w->body->dkim_wait = NULL;
		}
		for (f = w->followers; f; f = next) {
			next = f->next;
			f->next = NULL;
			in->signing--;
			ledger_hand_back(in->lg, f);
		}
		in->signing--;
		ledger_hand_back(in->lg, w->j);
		free(w);
	}
}
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

/* --- pause --- */

static int queued_pause_due(void *arg, const struct job *j, uint64_t *due);

int
intake_paused(const struct intake *in, const struct job *j)
{
	if (!in->pause_known)
		return 1;
	return (j->campaign && map_get(&in->paused_campaigns, j->campaign)) ||
	    (j->tenant && map_get(&in->paused_tenants, j->tenant));
}

/* Replace one cached list with names, logging what changed; the waiting
 * jobs of the names resumed are made due now. Returns how many names are
 * newly paused. */
static size_t
pause_replace(struct intake *in, struct map *m, int tenant, const char *const *names, size_t n)
{
	const char *kind = tenant ? "tenant" : "campaign";
	struct map fresh = { 0 };
	const char *k, **resumed;
	void *v;
	size_t it = 0, nr = 0, added = 0;

	for (size_t i = 0; i < n; i++) {
		map_put(&fresh, names[i], (void *)1);
		if (map_get(m, names[i]) == NULL) {
			log_info("intake", "%s '%s' is paused: its jobs wait in Redis", kind, names[i]);
			added++;
		}
	}
	resumed = xcalloc(m->len + 1, sizeof *resumed);
	while (map_iter(m, &it, &k, &v))
		if (map_get(&fresh, k) == NULL) {
			log_info("intake", "%s '%s' is resumed", kind, k);
			resumed[nr++] = k;
		}
	if (nr > 0)
		rq_unpark(in->rq, tenant, resumed, nr, clock_wall_ms(),
		    PAUSE_PARK_MS + PAUSE_SPREAD_MS + 1000);
	free(resumed);
	map_free(m);
	*m = fresh;
	return added;
}

static void
on_pause_state(void *arg, int ok, const char *const *campaigns, size_t nc,
    const char *const *tenants, size_t nt)
{
	struct intake *in = arg;
	uint64_t now = loop_now(in->loop);
	size_t added;

	in->pause_polling = 0;
	if (!ok) {
		/* Keep what we knew; until it was read once, jobs wait. */
		if (now - in->pause_error_logged >= 60000 || in->pause_error_logged == 0) {
			in->pause_error_logged = now;
			log_error("intake", "cannot read the pause state from Redis; %s",
			    in->pause_known ? "keeping the last one read" :
			    "every job waits until it can be read");
		}
		return;
	}
	added = pause_replace(in, &in->paused_campaigns, 0, campaigns, nc);
	added += pause_replace(in, &in->paused_tenants, 1, tenants, nt);
	in->pause_known = 1;
	/* Jobs already queued for a destination when their campaign or
	 * tenant is paused wait too: only transactions under way finish. */
	if (added > 0) {
		size_t n = sched_park_queued(in->sched, queued_pause_due, in);
		if (n > 0)
			log_info("intake", "%zu queued job(s) of newly paused campaigns/tenants "
			    "went back to Redis", n);
	}
}

static void
pause_poll_now(struct intake *in)
{
	if (in->pause_polling)
		return;
	in->pause_polled = loop_now(in->loop);
	if (rq_paused(in->rq, on_pause_state, in) == 0)
		in->pause_polling = 1;
}

void
intake_poll_pause(struct intake *in, uint64_t now_mono)
{
	if (now_mono - in->pause_polled >= PAUSE_POLL_MS || in->pause_polled == 0)
		pause_poll_now(in);
}

/*
 * pause_due - whether j must wait for a pause now and, if so, when it is
 * to come back (*due, wall ms: a second or two, spread). A job past its
 * expires_at is not held: it goes on and is expired where every job is.
 */
static int
pause_due(struct intake *in, const struct job *j, uint64_t *due)
{
	uint64_t now;

	if (in->stopping || !intake_paused(in, j))
		return 0;
	now = clock_wall_ms();
	if (now >= j->expires_at_ms)
		return 0;
	*due = now + PAUSE_PARK_MS + (in->parked * 7919) % PAUSE_SPREAD_MS;
	if (*due > j->expires_at_ms)
		*due = j->expires_at_ms;
	if (in->parked++ % 10000 == 0)
		log_info("intake", "holding jobs of paused campaigns/tenants in Redis "
		    "(job=%s campaign=%s tenant=%s; %llu so far)", j->id,
		    j->campaign ? j->campaign : "-", j->tenant ? j->tenant : "-",
		    (unsigned long long)in->parked);
	return 1;
}

/*
 * park_if_paused - a job of a paused campaign or tenant goes back to the
 * retry schedule untried (no event, no attempt) and comes back in a
 * second or two; 1 if it did.
 */
static int
park_if_paused(struct intake *in, struct job *j)
{
	uint64_t due;

	if (!pause_due(in, j, &due))
		return 0;
	ledger_park(in->lg, j, due);
	return 1;
}

/* The scheduler's question about each job queued in memory when a pause
 * begins. */
static int
queued_pause_due(void *arg, const struct job *j, uint64_t *due)
{
	return pause_due(arg, j, due);
}

/* --- campaign and tenant rate caps --- */

/*
 * park_if_capped - a job of a campaign or tenant with a rate cap
 * (`campaign "GLOB" { max_rate }`, `tenant "GLOB" { ... }`) needs a token
 * of that name's fleet-wide bucket (fleet.h: every engine together, tokens
 * fetched from Redis in batches by the engine) before it goes to a lane.
 * Without one it goes back to the retry schedule untried (no event, no
 * attempt) until the bucket should have one, spread; 1 if it did. Other
 * campaigns on the same IPs are not held back.
 */
static int
park_if_capped(struct intake *in, struct job *j)
{
	const struct config_cap *cap[2];
	const char *name[2] = { j->campaign, j->tenant };
	char key[2][FLEET_KEY_MAX];
	struct fleet *f;
	uint64_t now, at, wait = 0, due;
	int ok = 1;

	cap[0] = config_cap_for(in->cfg, 0, j->campaign);
	cap[1] = config_cap_for(in->cfg, 1, j->tenant);
	if ((cap[0] == NULL && cap[1] == NULL) || in->stopping)
		return 0;
	f = sched_fleet_cache(in->sched);
	now = loop_now(in->loop);
	for (int k = 0; k < 2; k++) {
		if (cap[k] == NULL)
			continue;
		snprintf(key[k], sizeof key[k], "%s:%s", k ? "tenant" : "campaign", name[k]);
		at = now;
		if (!fleet_may(f, key[k], pace_mph(&cap[k]->max_rate), now, &at)) {
			ok = 0;
			if (at > now && at - now > wait)
				wait = at - now;
		}
	}
	if (ok) {
		for (int k = 0; k < 2; k++)
			if (cap[k] != NULL)
				fleet_take(f, key[k], pace_mph(&cap[k]->max_rate), now, &at);
		return 0;
	}
	if (clock_wall_ms() >= j->expires_at_ms)
		return 0;	/* expired where every job is */
	/* Back when a token should be there, not sooner than a retry read
	 * cycle, spread so the parked jobs do not all come back at once. */
	if (wait < CAP_PARK_MIN_MS)
		wait = CAP_PARK_MIN_MS;
	due = clock_wall_ms() + wait + (in->capped * 7919) % CAP_PARK_SPREAD_MS;
	if (due > j->expires_at_ms)
		due = j->expires_at_ms;
	if (in->capped++ % 10000 == 0)
		log_info("intake", "holding jobs of rate-capped campaigns/tenants in Redis "
		    "(job=%s campaign=%s tenant=%s; %llu so far)", j->id,
		    j->campaign ? j->campaign : "-", j->tenant ? j->tenant : "-",
		    (unsigned long long)in->capped);
	ledger_park(in->lg, j, due);
	return 1;
}

/* --- bodies and hand-off --- */

/*
 * intake_body_headers - once per distinct body, before it is signed: the
 * Message-ID and Date it lacks (headers.h), Message-ID on the From
 * domain (else smtp.ehlo). A body shared by many jobs (msg_ref) shares
 * them: one Message-ID per message text, as a mailing list sends it.
 */
static void
intake_body_headers(struct intake *in, struct msg_body *b, const struct job *j)
{
	struct buf out = { 0 };
	unsigned char md[EVP_MAX_MD_SIZE], rnd[16];
	unsigned int mdlen = 0;
	char dom[DKIM_DOMAIN_MAX];
	const char *who = j->msg_ref ? j->msg_ref : j->key;
	size_t hlen, boff;
	uint64_t now = clock_wall_ms(), stamp = 0;
	EVP_MD_CTX *ctx;

	b->added_done = 1;
	dkim_split(b->data, b->len, DKIM_STUFFED, &hlen, &boff);
	if (dkim_from_domain(b->data, hlen, DKIM_STUFFED, dom, sizeof dom) < 0)
		snprintf(dom, sizeof dom, "%s", in->cfg->ehlo ? in->cfg->ehlo : "localhost");
	/* The Message-ID is derived from the body and the job's key (or its
	 * msg_ref): a retry, or another instance after a crash, sends the
	 * same one, so receivers can tell a repeat from a new message. */
	memset(md, 0, sizeof md);
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, who ? who : "", who ? strlen(who) + 1 : 1) != 1 ||
	    EVP_DigestUpdate(ctx, b->data, b->len) != 1 ||
	    EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen < 24) {
		/* not fatal: uniqueness then rests on the time and a counter */
		static uint64_t n;
		uint64_t x = now ^ (++n * 0x9e3779b97f4a7c15ull);
		for (size_t i = 0; i < sizeof md; i++)
			md[i] = (unsigned char)(x >> (8 * (i % 8)) ^ i);
	}
	EVP_MD_CTX_free(ctx);
	memcpy(rnd, md, sizeof rnd);
	for (size_t i = 16; i < 21; i++)
		stamp = stamp << 8 | md[i];
	hdr_body_lines(&out, b->data, hlen, dom, (time_t)(now / 1000), stamp, rnd);
	b->added = out.data;
	b->added_len = out.len;
}

/*
 * intake_job_headers - the job's List-Unsubscribe(-Post) and Feedback-ID
 * lines (headers.h), from its fields, else the smtp.unsubscribe_*
 * templates. Never fails: the job's own values were validated by
 * job_decode; a template that expands past the length cap is left out.
 */
static void
intake_job_headers(struct intake *in, struct job *j)
{
	const struct config *c = in->cfg;
	const char *pool = j->pool ? j->pool : "default";
	struct hdr_vars v = { j->id, j->to, j->campaign, j->tenant, pool };
	struct hdr_job h = { .unsub_url = j->unsub_url, .unsub_mailto = j->unsub_mailto,
	    .feedback_id = j->feedback_id, .campaign = j->campaign, .tenant = j->tenant,
	    .pool = pool, .sender = c->feedback_id_sender };
	char *url = NULL, *mailto = NULL;
	struct buf out = { 0 };
	size_t hlen, boff;

	/* a job that sets either field chose its own unsubscribe method */
	if (h.unsub_url == NULL && h.unsub_mailto == NULL) {
		if (c->unsub_url != NULL && (url = hdr_expand(c->unsub_url, &v)) == NULL)
			log_warn("intake", "job=%s smtp.unsubscribe_url expands past %d bytes; "
			    "left out", j->id, HDR_URI_MAX);
		if (c->unsub_mailto != NULL && (mailto = hdr_expand(c->unsub_mailto, &v)) == NULL)
			log_warn("intake", "job=%s smtp.unsubscribe_mailto expands past %d bytes; "
			    "left out", j->id, HDR_URI_MAX);
		h.unsub_url = url;
		h.unsub_mailto = mailto;
	}
	dkim_split(j->body->data, j->body->len, DKIM_STUFFED, &hlen, &boff);
	hdr_job_lines(&out, j->body->data, hlen, &h);
	buf_append(&out, "", 1);
	free(j->hdrs);
	j->hdrs = out.data;
	j->hdrs_len = out.len - 1;
	free(url);
	free(mailto);
}

/*
 * dkim_sign_fields - sign body b with extra = the body's added fields
 * followed by job lines hdrs: what goes above the message on the wire,
 * in that order. Reentrant given b->dkim_bh is filled (see dkim.h): the
 * call a signing thread would make.
 */
static enum dkim_status
dkim_sign_fields(const struct config *cfg, struct msg_body *b, const char *hdrs,
    size_t hdrs_len, char **sig, size_t *siglen, const struct dkim_signer **who)
{
	struct dkim_request rq = { .msg = b->data, .len = b->len, .flags = DKIM_STUFFED,
	    .bh = &b->dkim_bh, .now = (time_t)(clock_wall_ms() / 1000) };
	struct buf extra = { 0 };
	enum dkim_status st;

	buf_append(&extra, b->added ? b->added : "", b->added_len);
	buf_append(&extra, hdrs, hdrs_len);
	rq.extra = extra.data;
	rq.extra_len = extra.len;
	st = dkim_sign_message(cfg->dkim, cfg->ndkim, &rq, sig, siglen, who);
	buf_free(&extra);
	return st;
}

/*
 * body_signed - the body's signature (over the body's added fields and
 * j's lines) is st/sig: keep it with the body for every job with the
 * same lines.
 */
static void
body_signed(struct job *j, struct msg_body *b, enum dkim_status st, char *sig, size_t siglen)
{
	if (st == DKIM_SIGNED) {
		b->dkim_state = MSG_DKIM_SIGNED;
		b->dkim_sig = sig;
		b->dkim_sig_len = siglen;
		b->dkim_extra = xstrndup(j->hdrs, j->hdrs_len);
		b->dkim_extra_len = j->hdrs_len;
		log_debug("intake", "job=%s dkim: body signed (%zu bytes)", j->id, siglen);
	} else if (st == DKIM_NO_KEY) {
		free(sig);
		b->dkim_state = MSG_DKIM_NO_KEY;
		log_debug("intake", "job=%s dkim: no key for the message's From domain; "
		    "sent unsigned", j->id);
	} else {
		free(sig);
		b->dkim_state = MSG_DKIM_FAILED;
		log_warn("intake", "job=%s dkim: signing failed; the message is sent "
		    "unsigned", j->id);
	}
}

static void on_signed(void *arg, enum dkim_status st, char *sig, size_t siglen);

/*
 * sign_submit - ask the pool for j's signature (for body b when not
 * NULL: the body's shared one). 0: the pool is full (or absent, or we
 * are stopping): sign on the loop.
 */
static int
sign_submit(struct intake *in, struct job *j, struct msg_body *b)
{
	struct msg_body *jb = j->body;
	struct buf extra = { 0 };
	struct sign_wait *w;

	if (in->signer == NULL || in->stopping)
		return 0;
	w = xcalloc(1, sizeof *w);
	buf_append(&extra, jb->added ? jb->added : "", jb->added_len);
	buf_append(&extra, j->hdrs, j->hdrs_len);
	w->req = signer_submit(in->signer, in->cfg->dkim, in->cfg->ndkim, jb, extra.data,
	    extra.len, (time_t)(clock_wall_ms() / 1000), on_signed, w);
	buf_free(&extra);
	if (w->req == NULL) {
		free(w);
		return 0;
	}
	w->in = in;
	w->j = j;
	w->body = b;
	w->ftail = &w->followers;
	w->next = in->waits;
	if (in->waits)
		in->waits->prev = w;
	in->waits = w;
	in->signing++;
	if (b) {
		b->dkim_state = MSG_DKIM_PENDING;
		b->dkim_wait = w;
	}
	return 1;
}

/*
 * intake_sign - DKIM-sign what goes out for j: the body once, for every
 * job that shares it and carries the same per-job lines (the first job's
 * lines are kept with the body's signature); a job whose lines differ
 * (its own List-Unsubscribe URL, another campaign's Feedback-ID) is
 * signed on its own. The id header is never covered. No key for the From
 * domain: sent unsigned (a configured key that cannot be read stops the
 * start, so this is a choice, not an accident).
 *
 * RSA-2048 costs about 0.3-1 ms a signature, Ed25519 about 40 us: with a
 * signing pool (dkim_threads > 0) every signature is made there and the
 * job waits (returns 1; on_signed() routes it); without one, or when the
 * pool's queue is full, it is made here (returns 0: route j now).
 */
static int
intake_sign(struct intake *in, struct job *j)
{
	struct msg_body *b = j->body;
	enum dkim_status st;
	char *sig = NULL;
	size_t siglen = 0;

	free(j->dkim_sig);
	j->dkim_sig = NULL;
	if (b->dkim_state == MSG_DKIM_PENDING) {
		struct sign_wait *w = b->dkim_wait;

		j->next = NULL;
		*w->ftail = j;
		w->ftail = &j->next;
		in->signing++;
		return 1;
	}
	if (b->dkim_state == MSG_DKIM_UNTRIED) {
		if (sign_submit(in, j, b))
			return 1;
		st = dkim_sign_fields(in->cfg, b, j->hdrs, j->hdrs_len, &sig, &siglen, NULL);
		body_signed(j, b, st, sig, siglen);
		return 0;
	}
	if (b->dkim_state != MSG_DKIM_SIGNED || (b->dkim_extra_len == j->hdrs_len &&
	    memcmp(b->dkim_extra, j->hdrs, j->hdrs_len) == 0))
		return 0;	/* unsigned body, or the body's signature fits */
	if (sign_submit(in, j, NULL))
		return 1;
	st = dkim_sign_fields(in->cfg, b, j->hdrs, j->hdrs_len, &j->dkim_sig, &j->dkim_sig_len,
	    NULL);
	if (st != DKIM_SIGNED)
		log_warn("intake", "job=%s dkim: per-job signing failed; the message is sent "
		    "unsigned", j->id);
	return 0;
}

/* sign_route - a job whose signature is settled goes on. */
static void
sign_route(struct intake *in, struct job *j)
{
	if (in->stopping)
		ledger_hand_back(in->lg, j);
	else
		sched_route(in->sched, j);
}

/* on_signed - the pool's answer (on the loop): route the job, and the
 * jobs that waited behind a body's signature. */
static void
on_signed(void *arg, enum dkim_status st, char *sig, size_t siglen)
{
	struct sign_wait *w = arg;
	struct intake *in = w->in;
	struct job *f, *next;

	if (w->prev)
		w->prev->next = w->next;
	else
		in->waits = w->next;
	if (w->next)
		w->next->prev = w->prev;
	in->signing--;
	if (w->body) {
		w->body->dkim_wait = NULL;
		body_signed(w->j, w->body, st, sig, siglen);
	} else if (st == DKIM_SIGNED) {
		w->j->dkim_sig = sig;
		w->j->dkim_sig_len = siglen;
	} else {
		free(sig);
		log_warn("intake", "job=%s dkim: per-job signing failed; the message is sent "
		    "unsigned", w->j->id);
	}
	sign_route(in, w->j);
	for (f = w->followers; f; f = next) {
		next = f->next;
		f->next = NULL;
		in->signing--;
		if (in->stopping || !intake_sign(in, f))
			sign_route(in, f);
	}
	free(w);
}

/* A job with its body: check the size and the pause state, add the
 * headers (the body's once), sign, then to the scheduler. */
static void
intake_ready(struct intake *in, struct job *j)
{
	char why[200];

	if (job_body_too_large(j, j->body->len, in->cfg, why, sizeof why)) {
		ledger_fail(in->lg, j, why);
		return;
	}
	if (park_if_paused(in, j) || park_if_capped(in, j))
		return;
	if (!j->body->added_done)
		intake_body_headers(in, j->body, j);
	intake_job_headers(in, j);
	if (in->cfg->ndkim > 0 && intake_sign(in, j))
		return;		/* on_signed() routes it */
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
		b->fetched_ms = loop_now(in->loop);
		in->bytes += b->body->len;
	} else if (st == RQ_BODY_TOO_LARGE) {
		snprintf(big, sizeof big, "msg_ref key '%s' holds %zu bytes, more than "
		    "smtp.max_message_size (%llu)", b->name, len,
		    (unsigned long long)in->cfg->max_message_size);
	} else if (st == RQ_BODY_ERROR) {
		char what[700];
		snprintf(what, sizeof what, "fetching msg_ref %s", b->name);
		intake_trouble(in, what);
	}
	if (st != RQ_BODY_ERROR)
		intake_ok(in);
	for (; j; j = next) {
		next = j->next;
		j->next = NULL;
		if (st == RQ_BODY_ERROR || in->stopping) {
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
	if (b && b->body && !b->fetching &&
	    loop_now(in->loop) - b->fetched_ms >= BODY_CACHE_MS) {
		/* Old: read it again (jobs holding the old one keep it). */
		in->bytes -= b->body->len;
		msg_body_unref(b->body);
		b->body = NULL;
	}
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

	if (ok)
		intake_ok(in);
	else
		intake_trouble(in, "the suppression check");
	for (size_t i = 0; i < c->n; i++) {
		struct job *j = c->jobs[i];
		if (!ok || in->stopping) {
			ledger_hand_back(in->lg, j);	/* comes back later, not counted */
		} else if (member[i]) {
			struct job_outcome o;
			trouble_suppressed(&o);
			ledger_settle(in->lg, j, &o);
		} else if (!park_if_paused(in, j)) {
			intake_attach_body(in, j);
		}
	}
	free(c);
}

/*
 * intake_route - a job without a `pool` field gets the pool the routing
 * rules choose (route.h); it is kept with the job from then on (events,
 * the retry hash), so a job is routed once.
 */
static void
intake_route(struct intake *in, struct job *j)
{
	int rule;
	const char *pool;

	if (j->pool != NULL)
		return;
	pool = route_pool(in->cfg, j->tenant, j->campaign, j->from, &rule);
	j->pool = xstrdup(pool);
	if (rule >= 0)
		log_debug("intake", "job=%s pool=%s (route at line %d)", j->id, pool,
		    in->cfg->routes[rule].line);
}

void
intake_on_entries(struct intake *in, enum job_origin origin, const struct rq_entry *e, size_t n)
{
	struct check *c = xmalloc(sizeof *c + n * sizeof c->jobs[0]);
	const char **addrs, **tenants;
	uint64_t now = clock_wall_ms();

	c->in = in;
	c->n = 0;
	for (size_t i = 0; i < n; i++) {
		struct job *j;

		if (ledger_find(in->lg, e[i].key))
			continue;	/* already held (re-read or claimed twice) */
		j = job_decode(e[i].fields, e[i].flens, e[i].values, e[i].vlens, e[i].n,
		    e[i].key, origin, in->cfg, now);
		if (e[i].retry_pool != NULL)
			j->retry_pool = xstrdup(e[i].retry_pool);
		ledger_track(in->lg, j);
		if (j->error) {
			char why[600];
			log_warn("job", "job=%s key=%s invalid: %s", j->id, j->key, j->error);
			snprintf(why, sizeof why, "%s", j->error);
			ledger_fail(in->lg, j, why);
			continue;
		}
		intake_route(in, j);
		if (!in->stopping && route_pool_foreign(in->own, in->cfg, j->pool)) {
			ledger_hand_over(in->lg, j);	/* another host's pool */
			continue;
		}
		if (in->pause_known && park_if_paused(in, j))
			continue;
		c->jobs[c->n++] = j;
	}
	if (c->n == 0) {
		free(c);
		return;
	}
	/* First batch: the pause state is read before the suppression
	 * check is answered (same connection, answers in order). */
	if (!in->pause_known)
		pause_poll_now(in);
	addrs = xcalloc(c->n, sizeof *addrs);
	tenants = xcalloc(c->n, sizeof *tenants);
	for (size_t i = 0; i < c->n; i++) {
		addrs[i] = c->jobs[i]->to_lc;
		tenants[i] = c->jobs[i]->tenant;
	}
	if (rq_suppressed(in->rq, addrs, tenants, c->n, on_suppression, c) != 0)
		on_suppression(c, NULL, c->n);	/* not connected: they come back */
	free(addrs);
	free(tenants);
}
