/*
 * sink_stats.c - volley-sink's observations: counters in total, per client
 * IP and per local ADDR:PORT, messages per second/minute over time, the
 * greylist triplet table, and the JSON written to --stats.
 *
 * API (sink.h): sink_stats_init, sink_peer_get, sink_totals and the
 * sink_stats_* counting calls, sink_stats_write, sink_grey_check.
 *
 * The peer tables are small chained hashes keyed by the text form of the
 * address; a peer lives until exit (the number of distinct client IPs and
 * listeners is small in every test and bench). EHLO names are kept per
 * peer up to SINK_EHLO_MAX distinct names; the rest are counted as other.
 * The time series are rings: the last 60 seconds and the last 1440
 * minutes; the JSON shows the last 60 minutes.
 */
#include "sink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HASH_SIZE 4096
#define SEC_RING 60
#define MIN_RING 1440

static struct sink_peer *clients[HASH_SIZE], *locals[HASH_SIZE];
static size_t nclients, nlocals;
static struct sink_counters totals;
static uint64_t start_ms;
static uint32_t sec_ring[SEC_RING], min_ring[MIN_RING];
static uint64_t sec_last, min_last;	/* index (since start) of the newest slot */

static uint32_t
hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

void
sink_stats_init(uint64_t now_ms)
{
	start_ms = now_ms;
}

struct sink_counters *
sink_totals(void)
{
	return &totals;
}

/* sink_peer_get - the peer for a client (IP only) or local (IP:port) address. */
struct sink_peer *
sink_peer_get(int client, const struct sockaddr *sa)
{
	struct sink_peer **tab = client ? clients : locals, *p;
	struct sink_addr_match a;
	char ip[48], name[64];
	uint32_t h;

	memset(&a, 0, sizeof a);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		a.family = AF_INET;
		memcpy(a.addr, &s4->sin_addr, 4);
		a.plen = 32;
		a.port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		a.family = AF_INET6;
		memcpy(a.addr, &s6->sin6_addr, 16);
		a.plen = 128;
		a.port = ntohs(s6->sin6_port);
	} else {
		a.family = sa->sa_family;
	}
	if (a.family != AF_INET && a.family != AF_INET6)
		snprintf(ip, sizeof ip, "unknown");
	else
		inet_ntop(a.family, a.addr, ip, sizeof ip);
	if (client) {
		snprintf(name, sizeof name, "%s", ip);
		a.port = 0;
	} else if (a.family == AF_INET6)
		snprintf(name, sizeof name, "[%s]:%u", ip, a.port);
	else
		snprintf(name, sizeof name, "%s:%u", ip, a.port);
	h = hash_str(name) % HASH_SIZE;
	for (p = tab[h]; p; p = p->hnext)
		if (strcmp(p->name, name) == 0)
			return p;
	p = xcalloc(1, sizeof *p);
	snprintf(p->name, sizeof p->name, "%s", name);
	snprintf(p->ip, sizeof p->ip, "%s", ip);
	p->addr = a;
	p->hnext = tab[h];
	tab[h] = p;
	if (client)
		nclients++;
	else
		nlocals++;
	return p;
}

static void
open_one(struct sink_counters *c)
{
	c->sessions_total++;
	if (++c->cur > c->max)
		c->max = c->cur;
}

void
sink_stats_session_open(struct sink_peer *cl, struct sink_peer *lo)
{
	open_one(&totals);
	open_one(&cl->c);
	open_one(&lo->c);
}

void
sink_stats_session_close(struct sink_peer *cl, struct sink_peer *lo)
{
	totals.cur--;
	cl->c.cur--;
	lo->c.cur--;
}

void
sink_stats_code(struct sink_peer *cl, struct sink_peer *lo, int code)
{
	if (code < 0 || code >= SINK_CODES)
		return;
	totals.codes[code]++;
	cl->c.codes[code]++;
	lo->c.codes[code]++;
}

static void
ehlo_one(struct sink_peer *p, const char *name)
{
	for (unsigned i = 0; i < p->nehlo; i++)
		if (strcmp(p->ehlo[i].name, name) == 0) {
			p->ehlo[i].count++;
			return;
		}
	if (p->nehlo == SINK_EHLO_MAX) {
		p->ehlo_other++;
		return;
	}
	p->ehlo[p->nehlo].name = xstrdup(name);
	p->ehlo[p->nehlo++].count = 1;
}

void
sink_stats_ehlo(struct sink_peer *cl, struct sink_peer *lo, const char *name)
{
	ehlo_one(cl, name);
	ehlo_one(lo, name);
}

/* Bring the rings forward to now, zeroing the slots passed over. */
static void
rings_advance(uint64_t now_ms)
{
	uint64_t el = now_ms > start_ms ? now_ms - start_ms : 0;
	uint64_t s = el / 1000, m = el / 60000;

	for (; sec_last < s; ) {
		sec_last++;
		sec_ring[sec_last % SEC_RING] = 0;
		if (s - sec_last > SEC_RING) {
			memset(sec_ring, 0, sizeof sec_ring);
			sec_last = s;
		}
	}
	for (; min_last < m; ) {
		min_last++;
		min_ring[min_last % MIN_RING] = 0;
		if (m - min_last > MIN_RING) {
			memset(min_ring, 0, sizeof min_ring);
			min_last = m;
		}
	}
}

void
sink_stats_message(struct sink_peer *cl, struct sink_peer *lo, size_t nrcpt, uint64_t bytes,
    uint64_t now_ms)
{
	struct sink_counters *v[3] = { &totals, &cl->c, &lo->c };

	for (int i = 0; i < 3; i++) {
		v[i]->messages++;
		v[i]->recipients += nrcpt;
		v[i]->bytes += bytes;
	}
	rings_advance(now_ms);
	sec_ring[sec_last % SEC_RING]++;
	min_ring[min_last % MIN_RING]++;
}

void
sink_stats_tls(struct sink_peer *cl, struct sink_peer *lo)
{
	totals.tls++;
	cl->c.tls++;
	lo->c.tls++;
}

void
sink_stats_rcpt_rejected(struct sink_peer *cl, struct sink_peer *lo)
{
	totals.rcpt_rejected++;
	cl->c.rcpt_rejected++;
	lo->c.rcpt_rejected++;
}

/* --- JSON --- */

static void
json_str(struct buf *b, const char *s)
{
	buf_append(b, "\"", 1);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			buf_appendf(b, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			buf_appendf(b, "\\u%04x", ch);	/* bytes as Latin-1: always valid JSON */
		else
			buf_append(b, (const char *)&ch, 1);
	}
	buf_append(b, "\"", 1);
}

static void
json_counters(struct buf *b, const struct sink_counters *c)
{
	int first = 1;

	buf_appendf(b, "\"sessions_total\":%llu,\"sessions_current\":%u,"
	    "\"sessions_max_concurrent\":%u,\"messages\":%llu,\"recipients\":%llu,"
	    "\"rcpts_rejected\":%llu,\"bytes\":%llu,\"tls\":%llu,\"codes\":{",
	    (unsigned long long)c->sessions_total, c->cur, c->max,
	    (unsigned long long)c->messages, (unsigned long long)c->recipients,
	    (unsigned long long)c->rcpt_rejected, (unsigned long long)c->bytes,
	    (unsigned long long)c->tls);
	for (int i = 0; i < SINK_CODES; i++)
		if (c->codes[i]) {
			buf_appendf(b, "%s\"%d\":%u", first ? "" : ",", i, c->codes[i]);
			first = 0;
		}
	buf_append(b, "}", 1);
}

static int
peer_cmp(const void *a, const void *b)
{
	return strcmp((*(struct sink_peer *const *)a)->name, (*(struct sink_peer *const *)b)->name);
}

static void
json_peers(struct buf *b, struct sink_peer **tab, size_t n)
{
	struct sink_peer **v = xmalloc((n ? n : 1) * sizeof *v);
	size_t k = 0;

	for (size_t h = 0; h < HASH_SIZE; h++)
		for (struct sink_peer *p = tab[h]; p; p = p->hnext)
			v[k++] = p;
	qsort(v, k, sizeof *v, peer_cmp);	/* stable output for diffs */
	buf_append(b, "{", 1);
	for (size_t i = 0; i < k; i++) {
		struct sink_peer *p = v[i];
		if (i)
			buf_append(b, ",", 1);
		json_str(b, p->name);
		buf_append(b, ":{", 2);
		json_counters(b, &p->c);
		buf_append(b, ",\"ehlo\":{", 9);
		for (unsigned e = 0; e < p->nehlo; e++) {
			if (e)
				buf_append(b, ",", 1);
			json_str(b, p->ehlo[e].name);
			buf_appendf(b, ":%llu", (unsigned long long)p->ehlo[e].count);
		}
		buf_appendf(b, "},\"ehlo_other\":%llu}", (unsigned long long)p->ehlo_other);
	}
	buf_append(b, "}", 1);
	free(v);
}

int
sink_stats_write(const char *path, uint64_t now_ms)
{
	struct buf b = { 0 };
	char *tmp;
	FILE *f;
	uint64_t nmin;
	int rc = 0, saved;

	rings_advance(now_ms);
	buf_appendf(&b, "{\"uptime_ms\":%llu,", (unsigned long long)(now_ms - start_ms));
	json_counters(&b, &totals);
	buf_append(&b, ",\"by_client\":", 13);
	json_peers(&b, clients, nclients);
	buf_append(&b, ",\"by_local\":", 12);
	json_peers(&b, locals, nlocals);
	/* Oldest first; the last element is the current (partial) slot. */
	buf_append(&b, ",\"per_minute\":[", 15);
	nmin = min_last + 1 < 60 ? min_last + 1 : 60;
	for (uint64_t i = 0; i < nmin; i++)
		buf_appendf(&b, "%s%u", i ? "," : "", min_ring[(min_last + 1 - nmin + i) % MIN_RING]);
	buf_append(&b, "],\"per_second\":[", 16);
	nmin = sec_last + 1 < SEC_RING ? sec_last + 1 : SEC_RING;
	for (uint64_t i = 0; i < nmin; i++)
		buf_appendf(&b, "%s%u", i ? "," : "", sec_ring[(sec_last + 1 - nmin + i) % SEC_RING]);
	buf_append(&b, "]}\n", 3);

	tmp = xasprintf("%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL)
		rc = -1;
	else {
		if (fwrite(b.data, 1, b.len, f) != b.len)
			rc = -1;
		if (fclose(f) != 0)
			rc = -1;
		if (rc == 0 && rename(tmp, path) != 0)
			rc = -1;
	}
	saved = errno;
	if (rc != 0)
		unlink(tmp);
	free(tmp);
	buf_free(&b);
	errno = saved;
	return rc;
}

/* --- greylist --- */

struct grey {
	struct grey *next;
	uint64_t first_ms;
	char key[];
};

static struct grey **grey_tab;
static size_t grey_n, grey_cap;

static void
grey_grow(void)
{
	size_t ncap = grey_cap ? grey_cap * 2 : 1024;
	struct grey **nt = xcalloc(ncap, sizeof *nt);

	for (size_t i = 0; i < grey_cap; i++)
		for (struct grey *g = grey_tab[i], *nx; g; g = nx) {
			uint32_t h = hash_str(g->key) % ncap;
			nx = g->next;
			g->next = nt[h];
			nt[h] = g;
		}
	free(grey_tab);
	grey_tab = nt;
	grey_cap = ncap;
}

int
sink_grey_check(const char *ip, const char *from, const char *rcpt, uint64_t now_ms,
    uint64_t delay_ms)
{
	char key[1100];
	struct grey *g;
	uint32_t h;

	snprintf(key, sizeof key, "%s|%s|%s", ip, from ? from : "", rcpt);
	str_lower(key);
	if (grey_n >= grey_cap)
		grey_grow();
	h = hash_str(key) % grey_cap;
	for (g = grey_tab[h]; g; g = g->next)
		if (strcmp(g->key, key) == 0)
			return now_ms >= g->first_ms + delay_ms;
	g = xmalloc(sizeof *g + strlen(key) + 1);
	strcpy(g->key, key);
	g->first_ms = now_ms;
	g->next = grey_tab[h];
	grey_tab[h] = g;
	grey_n++;
	return delay_ms == 0;
}

void
sink_stats_free(void)
{
	struct sink_peer **tabs[2] = { clients, locals };

	for (int t = 0; t < 2; t++)
		for (size_t h = 0; h < HASH_SIZE; h++) {
			for (struct sink_peer *p = tabs[t][h], *nx; p; p = nx) {
				nx = p->hnext;
				for (unsigned e = 0; e < p->nehlo; e++)
					free(p->ehlo[e].name);
				free(p);
			}
			tabs[t][h] = NULL;
		}
	for (size_t i = 0; i < grey_cap; i++)
		for (struct grey *g = grey_tab[i], *nx; g; g = nx) {
			nx = g->next;
			free(g);
		}
	free(grey_tab);
	grey_tab = NULL;
	grey_cap = grey_n = 0;
}
