/*
 * mtasts_cache.c - MTA-STS policies by domain, discovered, fetched and
 * refreshed on the loop (API: mtasts_cache.h). The parsing, matching and
 * the keep-or-refresh decision are pure (mtasts.c); this file only
 * sequences TXT lookup -> address lookup -> HTTPS fetch (address after
 * address), and keeps what came back.
 *
 * Owns: one entry per domain (its kept policy, how long "no policy" is
 * known, the lookup in progress and who waits for it), the fetches in
 * flight, one TLS client context per CA file. An entry stays while a DNS
 * answer is due for it, even after halt: the answer comes from dns_free
 * and must find it.
 *
 * A lookup is either waited for (no policy in force: the waiters hear the
 * outcome) or a background one (a policy in force answered the callers
 * at once; the lookup only checks the TXT id and refreshes). Both are the
 * same sequence; a background lookup just has no waiters when it starts.
 */
#include "mtasts_cache.h"
#include "dns.h"
#include "https_get.h"
#include "loop.h"
#include "map.h"
#include "tls.h"
#include "util.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STS_FETCH_MS		10000		/* every address of one fetch together */
#define STS_FETCH_MIN_MS	200		/* less left: do not try the next address */
#define STS_CACHE_MAX		10000
#define STS_MAX_ADDRS		8
#define STS_NONE_MS		(5 * 60 * 1000)	/* no STS record: asked again after */
#define STS_TEMPFAIL_MS		(60 * 1000)	/* the TXT lookup failed (SERVFAIL, time-out) */
#define STS_FAIL_MS		(5 * 60 * 1000)	/* a fetch failed and nothing was kept */
#define STS_RETRY_MS		(5 * 60 * 1000)	/* a background refresh failed */
#define STS_PATH		"/.well-known/mta-sts.txt"

struct sts_waiter {
	void (*cb)(void *arg, const struct mtasts_policy *p);
	void *arg;
	struct sts_waiter *next;
};

struct sts_entry {
	struct mtasts_cache *c;
	char domain[256];
	struct mtasts_kept k;
	uint64_t none_until;		/* loop_now() ms: "no policy" known until */
	int busy;			/* a lookup is in progress */
	int answering;			/* its waiters are being called: not to be freed */
	int dns_due;			/* a DNS answer is still to come */
	char id[MTASTS_ID_MAX + 1];	/* the TXT id being fetched */
	int port;
	char ca[512];
	struct https_get *g;
	union dns_addr addrs[STS_MAX_ADDRS];
	size_t naddrs, next_addr;
	uint64_t deadline;		/* of the fetch, all addresses */
	struct sts_waiter *waiters;
};

struct ctx_slot {
	char *ca;
	struct tls_ctx *x;
	struct ctx_slot *next;
};

struct mtasts_cache {
	struct loop *l;
	struct dns *dns;
	struct map ents;		/* domain -> struct sts_entry */
	struct ctx_slot *ctxs;
	void (*store)(void *arg, const char *domain, const char *value);
	void *store_arg;
	int halted;
};

struct mtasts_cache *
mtasts_cache_new(struct loop *l, struct dns *dns)
{
	struct mtasts_cache *c = xcalloc(1, sizeof *c);

	c->l = l;
	c->dns = dns;
	return c;
}

void
mtasts_cache_set_store(struct mtasts_cache *c,
    void (*store)(void *arg, const char *domain, const char *value), void *arg)
{
	c->store = store;
	c->store_arg = arg;
}

static struct tls_ctx *
sts_ctx(struct mtasts_cache *c, const char *ca, char *err, size_t errsz)
{
	struct ctx_slot *e;

	for (e = c->ctxs; e; e = e->next)
		if (strcmp(e->ca, ca) == 0)
			return e->x;
	e = xcalloc(1, sizeof *e);
	e->x = tls_ctx_client(ca[0] ? ca : NULL, err, errsz);
	if (e->x == NULL) {
		free(e);
		return NULL;
	}
	e->ca = xstrdup(ca);
	e->next = c->ctxs;
	c->ctxs = e;
	return e->x;
}

/* sts_idle - nothing in progress and nothing worth keeping. */
static int
sts_idle(const struct sts_entry *e, uint64_t now)
{
	return !e->busy && !e->answering && !e->dns_due && e->g == NULL &&
	    !mtasts_in_force(&e->k, now) && e->none_until <= now;
}

/* sts_answer - answer every waiter with the policy in force (a copy: a
 * waiter may start another lookup). */
static void
sts_answer(struct sts_entry *e)
{
	struct mtasts_cache *c = e->c;
	struct sts_waiter *w = e->waiters, *next;
	struct mtasts_policy *copy = NULL;

	e->waiters = NULL;
	if (w == NULL)
		return;
	if (mtasts_in_force(&e->k, loop_now(c->l)) && !c->halted) {
		copy = xmalloc(sizeof *copy);
		*copy = e->k.pol;
	}
	for (; w; w = next) {
		next = w->next;
		w->cb(w->arg, copy);
		free(w);
	}
	free(copy);
}

/* sts_done - the lookup of e is over. */
static void
sts_done(struct sts_entry *e)
{
	struct mtasts_cache *c = e->c;

	e->busy = 0;
	/* A waiter's callback may ask for other domains, and a full cache
	 * then sweeps idle entries: this one stays until its waiters are
	 * answered. */
	e->answering = 1;
	sts_answer(e);
	e->answering = 0;
	if (!e->busy && sts_idle(e, loop_now(c->l)))
		free(map_del(&c->ents, e->domain));
}

/* sts_fail - the fetch failed: a kept, unexpired policy stays in force
 * (its next refresh waits STS_RETRY_MS); without one, "no policy" is
 * remembered for STS_FAIL_MS. */
static void
sts_fail(struct sts_entry *e, const char *why)
{
	uint64_t now = loop_now(e->c->l);
	int keep = mtasts_in_force(&e->k, now);

	if (keep)
		e->k.retry_after = now + STS_RETRY_MS;
	else
		e->none_until = now + STS_FAIL_MS;
	log_warn("mtasts", "policy fetch failed domain=%s id=%s: %s; %s", e->domain, e->id, why,
	    keep ? "the policy fetched before stays in force" : "no policy");
	sts_done(e);
}

static void sts_fetch_next(struct sts_entry *e, const char *last_error);

static void
on_fetch(void *arg, const struct https_result *r)
{
	struct sts_entry *e = arg;
	struct mtasts_cache *c = e->c;
	struct mtasts_policy pol;
	char err[200], mx[600];

	e->g = NULL;
	if (!r->ok) {
		/* Not a word from this address: the next one. */
		sts_fetch_next(e, r->error);
		return;
	}
	if (r->status != 200) {
		snprintf(err, sizeof err, "HTTP status %d%s", r->status,
		    r->status >= 300 && r->status < 400 ? " (redirects are not followed)" : "");
		sts_fail(e, err);
		return;
	}
	if (strcmp(r->content_type, "text/plain") != 0) {
		char q[200];

		log_quote(q, sizeof q, r->content_type);
		snprintf(err, sizeof err, "Content-Type \"%.100s\", not text/plain", q);
		sts_fail(e, err);
		return;
	}
	if (mtasts_parse(r->body, r->len, &pol, err, sizeof err) < 0) {
		char why[260];

		snprintf(why, sizeof why, "bad policy: %s", err);
		sts_fail(e, why);
		return;
	}
	snprintf(pol.id, sizeof pol.id, "%s", e->id);
	mtasts_keep(&e->k, &pol, loop_now(c->l));
	e->none_until = 0;
	log_info("mtasts", "policy domain=%s id=%s mode=%s max_age=%u mx=\"%s\"", e->domain,
	    pol.id, mtasts_mode_name(pol.mode), pol.max_age, mtasts_mx_text(&pol, mx, sizeof mx));
	if (c->store != NULL) {
		char v[MTASTS_STORE_MAX];

		if (mtasts_store_format(&pol, clock_wall_ms() + (uint64_t)pol.max_age * 1000, v,
		    sizeof v) > 0)
			c->store(c->store_arg, e->domain, v);
	}
	sts_done(e);
}

/*
 * sts_fetch_next - fetch from the next address of mta-sts.DOMAIN, with
 * what is left of the fetch's time budget; none left: the fetch failed
 * (last_error says why the last try did).
 */
static void
sts_fetch_next(struct sts_entry *e, const char *last_error)
{
	struct mtasts_cache *c = e->c;
	uint64_t now = loop_now(c->l);
	char host[300], err[300], a[INET6_ADDRSTRLEN + 2] = "?";
	struct tls_ctx *x;

	if (c->halted)
		return;
	if (last_error != NULL) {
		const union dns_addr *prev = &e->addrs[e->next_addr - 1];

		if (prev->sa.sa_family == AF_INET6)
			inet_ntop(AF_INET6, &prev->v6.sin6_addr, a, sizeof a);
		else
			inet_ntop(AF_INET, &prev->v4.sin_addr, a, sizeof a);
		if (e->next_addr >= e->naddrs || now + STS_FETCH_MIN_MS > e->deadline) {
			char why[400];

			snprintf(why, sizeof why, "%.250s (%s%s)", last_error, a,
			    e->naddrs > 1 ? ", the last address tried" : "");
			sts_fail(e, why);
			return;
		}
		log_info("mtasts", "policy fetch domain=%s from %s failed: %s; trying the next address",
		    e->domain, a, last_error);
	}
	snprintf(host, sizeof host, "mta-sts.%s", e->domain);
	if ((x = sts_ctx(c, e->ca, err, sizeof err)) == NULL) {
		sts_fail(e, err);
		return;
	}
	for (;;) {
		union dns_addr dst = e->addrs[e->next_addr++];

		if (dst.sa.sa_family == AF_INET6)
			dst.v6.sin6_port = htons((uint16_t)e->port);
		else
			dst.v4.sin_port = htons((uint16_t)e->port);
		e->g = https_get_start(c->l, x, &dst.sa, host, STS_PATH, MTASTS_MAX_BODY,
		    e->deadline - now, on_fetch, e, err, sizeof err);
		if (e->g != NULL)
			return;
		if (e->next_addr >= e->naddrs) {
			sts_fail(e, err);
			return;
		}
	}
}

static void
on_host(void *arg, const struct dns_result *r)
{
	struct sts_entry *e = arg;
	struct mtasts_cache *c = e->c;
	char err[300];

	e->dns_due = 0;
	if (c->halted)
		return;
	if (r->status != DNS_OK || r->ntargets == 0) {
		snprintf(err, sizeof err, "mta-sts.%.200s: %.80s", e->domain,
		    r->error[0] ? r->error : "no address");
		sts_fail(e, err);
		return;
	}
	e->naddrs = 0;
	e->next_addr = 0;
	for (size_t i = 0; i < r->ntargets && e->naddrs < STS_MAX_ADDRS; i++)
		e->addrs[e->naddrs++] = r->targets[i].addr;
	e->deadline = loop_now(c->l) + STS_FETCH_MS;
	sts_fetch_next(e, NULL);
}

static void
on_txt(void *arg, const struct dns_txt_result *r)
{
	struct sts_entry *e = arg;
	struct mtasts_cache *c = e->c;
	char id[MTASTS_ID_MAX + 1] = "", host[300];
	int nsts = 0, bad = 0, txt;
	uint64_t now;

	e->dns_due = 0;
	if (c->halted)
		return;
	now = loop_now(c->l);
	if (r->status != DNS_OK) {
		if (r->status == DNS_TEMPFAIL)
			log_info("mtasts", "TXT lookup failed domain=%s: %s", e->domain, r->error);
		txt = r->status == DNS_TEMPFAIL ? -1 : 0;
	} else {
		for (size_t i = 0; i < r->n; i++) {
			char rid[MTASTS_ID_MAX + 1];
			int k = mtasts_txt_parse(r->txt[i], r->len[i] < DNS_TXT_LEN ? r->len[i] :
			    DNS_TXT_LEN - 1, rid, sizeof rid);

			if (k == 0)
				continue;
			nsts++;
			if (k < 0)
				bad = 1;
			else
				memcpy(id, rid, sizeof id);
		}
		/* RFC 8461 3.1: not exactly one valid record: no policy. */
		if (nsts > 0 && (nsts != 1 || bad))
			log_info("mtasts", "domain=%s: %d STS TXT record(s)%s: no policy", e->domain,
			    nsts, bad ? ", malformed" : "");
		txt = nsts == 1 && !bad ? 1 : 0;
	}
	switch (mtasts_after_txt(&e->k, txt, id, now)) {
	case MTASTS_STEP_NONE:
		e->none_until = now + (txt < 0 ? STS_TEMPFAIL_MS : STS_NONE_MS);
		sts_done(e);
		return;
	case MTASTS_STEP_KEEP:
		sts_done(e);
		return;
	case MTASTS_STEP_KEEP_REFRESH:
		log_info("mtasts", "refreshing policy domain=%s id=%s (%s) in the background", e->domain,
		    id, strcmp(id, e->k.pol.id) != 0 ? "the TXT id changed" : "past half its max_age");
		sts_answer(e);	/* the kept policy serves meanwhile */
		break;
	case MTASTS_STEP_FETCH:
		log_info("mtasts", "fetching policy domain=%s id=%s", e->domain, id);
		break;
	}
	snprintf(e->id, sizeof e->id, "%s", id);
	snprintf(host, sizeof host, "mta-sts.%s", e->domain);
	e->dns_due = 1;
	dns_query_host(c->dns, host, on_host, e);	/* may call back at once */
}

/* sts_entry_for - the entry of key, created; NULL when the cache is full. */
static struct sts_entry *
sts_entry_for(struct mtasts_cache *c, const char *key)
{
	struct sts_entry *e = map_get(&c->ents, key);

	if (e != NULL)
		return e;
	if (c->ents.len >= STS_CACHE_MAX) {	/* drop what expired */
		uint64_t now = loop_now(c->l);
		const char *k;
		void *v;

		for (size_t i = 0; map_iter(&c->ents, &i, &k, &v);)
			if (sts_idle(v, now))
				free(map_del(&c->ents, k));
		if (c->ents.len >= STS_CACHE_MAX)
			return NULL;
	}
	e = xcalloc(1, sizeof *e);
	e->c = c;
	snprintf(e->domain, sizeof e->domain, "%s", key);
	map_put(&c->ents, key, e);
	return e;
}

/* sts_lookup - start the TXT lookup of e (the waiters are attached). */
static void
sts_lookup(struct sts_entry *e, int port, const char *ca_file)
{
	char name[300];

	e->busy = 1;
	e->port = port;
	snprintf(e->ca, sizeof e->ca, "%s", ca_file ? ca_file : "");
	snprintf(name, sizeof name, "_mta-sts.%s", e->domain);
	e->dns_due = 1;
	dns_query_txt(e->c->dns, name, on_txt, e);	/* may call back at once */
}

void
mtasts_cache_get(struct mtasts_cache *c, const char *domain, int port, const char *ca_file,
    void (*cb)(void *arg, const struct mtasts_policy *p), void *arg)
{
	struct sts_entry *e;
	struct sts_waiter *w;
	char key[256];
	uint64_t now = loop_now(c->l);

	snprintf(key, sizeof key, "%s", domain);
	str_lower(key);
	if (c->halted || strlen(domain) >= sizeof key - 10 || (e = sts_entry_for(c, key)) == NULL) {
		cb(arg, NULL);
		return;
	}
	if (mtasts_in_force(&e->k, now)) {
		/* The kept policy, at once; its TXT id is checked (and the
		 * policy refreshed if need be) behind the caller's back. */
		struct mtasts_policy *copy = xmalloc(sizeof *copy);

		*copy = e->k.pol;
		if (!e->busy)
			sts_lookup(e, port, ca_file);
		cb(arg, copy);
		free(copy);
		return;
	}
	if (!e->busy && e->none_until > now) {
		cb(arg, NULL);		/* known to have none, for now */
		return;
	}
	w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	w->next = e->waiters;
	e->waiters = w;
	if (!e->busy)
		sts_lookup(e, port, ca_file);
}

int
mtasts_cache_restore(struct mtasts_cache *c, const char *domain, const char *value, size_t len,
    uint64_t now_wall, char *err, size_t errsz)
{
	struct mtasts_policy pol;
	struct sts_entry *e;
	uint64_t exp_wall, now = loop_now(c->l), left, half;
	char key[256];

	if (strlen(domain) >= sizeof key - 10 || domain[0] == '\0') {
		snprintf(err, errsz, "bad domain");
		return -1;
	}
	if (mtasts_store_parse(value, len, &pol, &exp_wall, err, errsz) < 0)
		return -1;
	if (exp_wall <= now_wall) {
		snprintf(err, errsz, "expired");
		return -1;
	}
	snprintf(key, sizeof key, "%s", domain);
	str_lower(key);
	left = exp_wall - now_wall;
	if (left > (uint64_t)pol.max_age * 1000)
		left = (uint64_t)pol.max_age * 1000;	/* another host's clock ahead of ours */
	if ((e = sts_entry_for(c, key)) == NULL) {
		snprintf(err, errsz, "cache full");
		return -1;
	}
	if (mtasts_in_force(&e->k, now))
		return 0;	/* fetched meanwhile: newer */
	mtasts_keep(&e->k, &pol, now);
	e->k.expires = now + left;
	half = (uint64_t)pol.max_age * 500;
	e->k.refresh_at = left > half ? now + (left - half) : now;
	return 0;
}

void
mtasts_cache_halt(struct mtasts_cache *c)
{
	const char *k;
	void *v;

	if (c == NULL || c->halted)
		return;
	c->halted = 1;
	for (size_t i = 0; map_iter(&c->ents, &i, &k, &v);) {
		struct sts_entry *e = v;

		if (e->g) {
			https_get_cancel(e->g);
			e->g = NULL;
		}
		if (e->busy) {
			struct sts_waiter *w = e->waiters, *next;

			e->busy = 0;
			e->waiters = NULL;
			for (; w; w = next) {
				next = w->next;
				w->cb(w->arg, NULL);
				free(w);
			}
		}
	}
}

void
mtasts_cache_free(struct mtasts_cache *c)
{
	const char *k;
	void *v;

	if (c == NULL)
		return;
	mtasts_cache_halt(c);
	for (size_t i = 0; map_iter(&c->ents, &i, &k, &v);)
		free(v);
	map_free(&c->ents);
	while (c->ctxs) {
		struct ctx_slot *e = c->ctxs;
		c->ctxs = e->next;
		tls_ctx_free(e->x);
		free(e->ca);
		free(e);
	}
	free(c);
}
