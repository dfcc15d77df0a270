/*
 * mtasts_cache.c - MTA-STS policies by domain, discovered and fetched on
 * the loop (API: mtasts_cache.h). The parsing and matching are pure
 * (mtasts.c); this file only sequences TXT lookup -> address lookup ->
 * HTTPS fetch, and keeps what came back.
 *
 * Owns: one entry per domain (its kept policy, the lookup in progress and
 * who waits for it), the fetches in flight, one TLS client context per CA
 * file. An entry stays while a DNS answer is due for it, even after
 * halt: the answer comes from dns_free and must find it.
 */
#include "mtasts_cache.h"
#include "dns.h"
#include "https_get.h"
#include "loop.h"
#include "map.h"
#include "tls.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STS_FETCH_MS	10000
#define STS_CACHE_MAX	10000
#define STS_PATH	"/.well-known/mta-sts.txt"

struct sts_waiter {
	void (*cb)(void *arg, const struct mtasts_policy *p);
	void *arg;
	struct sts_waiter *next;
};

struct sts_entry {
	struct mtasts_cache *c;
	char domain[256];
	int have;			/* pol is a fetched policy */
	uint64_t expires;		/* loop_now() ms */
	struct mtasts_policy pol;
	int busy;			/* a lookup is in progress */
	int dns_due;			/* a DNS answer is still to come */
	char id[MTASTS_ID_MAX + 1];	/* the TXT id being fetched */
	int port;
	char ca[512];
	struct https_get *g;
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

/* sts_deliver - the lookup of e is over: answer every waiter with the
 * policy in force (a copy: a waiter may start another lookup). */
static void
sts_deliver(struct sts_entry *e)
{
	struct mtasts_cache *c = e->c;
	struct sts_waiter *w = e->waiters, *next;
	struct mtasts_policy *copy = NULL;

	e->busy = 0;
	e->waiters = NULL;
	if (e->have && loop_now(c->l) < e->expires && !c->halted) {
		copy = xmalloc(sizeof *copy);
		*copy = e->pol;
	}
	if (!e->have && !e->dns_due && e->g == NULL)
		free(map_del(&c->ents, e->domain));	/* nothing worth keeping */
	for (; w; w = next) {
		next = w->next;
		w->cb(w->arg, copy);
		free(w);
	}
	free(copy);
}

/* sts_fail - the fetch failed: a kept, unexpired policy stays in force. */
static void
sts_fail(struct sts_entry *e, const char *why)
{
	int keep = e->have && loop_now(e->c->l) < e->expires;

	log_warn("mtasts", "policy fetch failed domain=%s id=%s: %s; %s", e->domain, e->id, why,
	    keep ? "the policy fetched before stays in force" : "no policy");
	sts_deliver(e);
}

static void
on_fetch(void *arg, const struct https_result *r)
{
	struct sts_entry *e = arg;
	struct mtasts_policy pol;
	char err[200], mx[600];

	e->g = NULL;
	if (!r->ok) {
		sts_fail(e, r->error);
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
	e->pol = pol;
	e->have = 1;
	e->expires = loop_now(e->c->l) + (uint64_t)pol.max_age * 1000;
	log_info("mtasts", "policy domain=%s id=%s mode=%s max_age=%u mx=\"%s\"", e->domain,
	    pol.id, mtasts_mode_name(pol.mode), pol.max_age, mtasts_mx_text(&pol, mx, sizeof mx));
	sts_deliver(e);
}

static void
on_host(void *arg, const struct dns_result *r)
{
	struct sts_entry *e = arg;
	struct mtasts_cache *c = e->c;
	char host[300], err[300];
	union dns_addr a;
	struct tls_ctx *x;

	e->dns_due = 0;
	if (c->halted)
		return;
	if (r->status != DNS_OK || r->ntargets == 0) {
		snprintf(err, sizeof err, "mta-sts.%.200s: %.80s", e->domain,
		    r->error[0] ? r->error : "no address");
		sts_fail(e, err);
		return;
	}
	snprintf(host, sizeof host, "mta-sts.%s", e->domain);
	if ((x = sts_ctx(c, e->ca, err, sizeof err)) == NULL) {
		sts_fail(e, err);
		return;
	}
	a = r->targets[0].addr;
	if (a.sa.sa_family == AF_INET6)
		a.v6.sin6_port = htons((uint16_t)e->port);
	else
		a.v4.sin_port = htons((uint16_t)e->port);
	e->g = https_get_start(c->l, x, &a.sa, host, STS_PATH, MTASTS_MAX_BODY, STS_FETCH_MS,
	    on_fetch, e, err, sizeof err);
	if (e->g == NULL)
		sts_fail(e, err);
}

static void
on_txt(void *arg, const struct dns_txt_result *r)
{
	struct sts_entry *e = arg;
	struct mtasts_cache *c = e->c;
	char id[MTASTS_ID_MAX + 1] = "", host[300];
	int nsts = 0, bad = 0;

	e->dns_due = 0;
	if (c->halted)
		return;
	if (r->status != DNS_OK) {
		if (r->status == DNS_TEMPFAIL)
			log_info("mtasts", "TXT lookup failed domain=%s: %s", e->domain, r->error);
		sts_deliver(e);		/* a kept policy stays in force */
		return;
	}
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
	if (nsts != 1 || bad) {
		/* RFC 8461 3.1: not exactly one valid record: no policy. */
		if (nsts > 0)
			log_info("mtasts", "domain=%s: %d STS TXT record(s)%s: no policy", e->domain,
			    nsts, bad ? ", malformed" : "");
		sts_deliver(e);
		return;
	}
	if (e->have && loop_now(c->l) < e->expires && strcmp(e->pol.id, id) == 0) {
		sts_deliver(e);
		return;
	}
	snprintf(e->id, sizeof e->id, "%s", id);
	snprintf(host, sizeof host, "mta-sts.%s", e->domain);
	log_info("mtasts", "fetching policy domain=%s id=%s", e->domain, id);
	e->dns_due = 1;
	dns_query_host(c->dns, host, on_host, e);	/* may call back at once */
}

void
mtasts_cache_get(struct mtasts_cache *c, const char *domain, int port, const char *ca_file,
    void (*cb)(void *arg, const struct mtasts_policy *p), void *arg)
{
	struct sts_entry *e;
	struct sts_waiter *w;
	char key[256], name[300];

	snprintf(key, sizeof key, "%s", domain);
	str_lower(key);
	if (c->halted || strlen(domain) >= sizeof key - 10) {
		cb(arg, NULL);
		return;
	}
	if ((e = map_get(&c->ents, key)) == NULL) {
		if (c->ents.len >= STS_CACHE_MAX) {	/* drop what expired */
			uint64_t now = loop_now(c->l);
			const char *k;
			void *v;

			for (size_t i = 0; map_iter(&c->ents, &i, &k, &v);) {
				struct sts_entry *o = v;
				if (!o->busy && !o->dns_due && o->g == NULL && o->expires <= now)
					free(map_del(&c->ents, k));
			}
			if (c->ents.len >= STS_CACHE_MAX) {
				cb(arg, NULL);
				return;
			}
		}
		e = xcalloc(1, sizeof *e);
		e->c = c;
		snprintf(e->domain, sizeof e->domain, "%s", key);
		map_put(&c->ents, key, e);
	}
	w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	w->next = e->waiters;
	e->waiters = w;
	if (e->busy)
		return;
	e->busy = 1;
	e->port = port;
	snprintf(e->ca, sizeof e->ca, "%s", ca_file ? ca_file : "");
	snprintf(name, sizeof name, "_mta-sts.%s", key);
	e->dns_due = 1;
	dns_query_txt(c->dns, name, on_txt, e);		/* may call back at once */
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
