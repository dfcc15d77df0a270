/*
 * dns.c - MX resolution with c-ares 1.18, driven by the io_uring loop.
 *
 * Owns: the c-ares channel, one watcher per c-ares socket, the c-ares
 * timeout timer, the in-flight lookup table (coalescing) and the answer
 * cache. API: dns.h. Every MX host is resolved with an A and an AAAA
 * query in parallel; a host's IPv4 addresses come before its IPv6 ones.
 * Unless dns.allow_private is set, addresses on loopback, private,
 * link-local or unspecified ranges (dns_addr_private) are dropped; a
 * domain left with none fails for now (DNS_TEMPFAIL) with a reason that
 * names the host, the address and the setting.
 *
 * Event integration (c-ares 1.18 on io_uring):
 * - c-ares reports the sockets it wants through sock_state_cb. Each socket
 *   gets a struct dns_watch with its own io_op; a one-shot POLL_ADD is armed
 *   for the wanted mask, and on completion ares_process_fd() runs and the
 *   poll is re-armed if c-ares still wants the socket. One-shot, because
 *   c-ares reads TCP only once per call (an edge-triggered multishot poll
 *   could stall).
 * - sock_state_cb(fd, 0, 0) comes just before c-ares close()s the fd: the
 *   watcher is marked dead and its poll removed by user_data (cancel_fd
 *   would fail after close). The watcher is freed only when no poll is in
 *   flight and it is not inside ares_process_fd (counted teardown). A new
 *   socket that reuses the fd number gets a new watcher.
 * - ares_timeout() drives one loop timer, re-armed after every processing
 *   step. Nothing here blocks (ARES_OPT_LOOKUPS "b": /etc/hosts is not read;
 *   /etc/resolv.conf is read once in dns_new when no servers are given).
 *
 * A lookup: MX query -> (null MX | NXDOMAIN | implicit MX | MX hosts) ->
 * parallel A and AAAA queries for every host -> ordered targets. Results
 * are handed to the callers from a zero-delay loop timer, never from
 * inside a c-ares callback: user code then never runs inside
 * ares_process_fd, and a lookup's memory stays valid until every waiter
 * has been called. Cache hits call back synchronously. Callbacks may start
 * new queries; they must not call dns_free.
 *
 * Cache: lower-cased domain -> compact result, expiring after the minimum
 * TTL of the records used (MX answer, A and AAAA answers), clamped to
 * [dns_min_ttl_ms, dns_max_ttl_ms]. NXDOMAIN uses the SOA negative TTL
 * (RFC 2308), null MX the MX TTL, no-address results the clamp floor.
 * Temporary failures are never cached; an answer built while some A or
 * AAAA query failed for now is kept for the clamp floor only. Bounded:
 * expired entries are dropped when met, and past DNS_CACHE_MAX the oldest
 * entry goes.
 *
 * At most DNS_MAX_QUERIES c-ares queries are out at once; the rest wait
 * in a FIFO and start as answers come in. A burst of a thousand new
 * domains would otherwise send a few thousand datagrams at once and
 * overflow the resolver's socket buffer (a local dnsmasq or unbound drops
 * them silently), turning a cold start into DNS time-outs.
 *
 * Config: dns_servers (NULL: /etc/resolv.conf), dns_timeout_ms (total time
 * for one query against one server: c-ares gets a third of it per try with
 * 2 tries, since it doubles the timeout on the second try), dns_min_ttl_ms
 * and dns_max_ttl_ms. A zero timeout or max TTL means the default (5 s, 1 h).
 *
 * DANE (dns.dnssec, see dns.h): queries are built with ares_create_query,
 * get the AD bit set and go out with ares_send (ares_query cannot set
 * it); their replies' RCODEs are mapped to c-ares statuses the way
 * ares_query does, so the callbacks see no difference. Each answer's AD
 * bit is recorded: the MX answer's on the lookup, the A and AAAA ones on
 * the host, and the TLSA answer decides the host's dane_state.
 *
 * Every byte of a DNS reply is hostile: the raw-message walkers below are
 * bounds-checked at every step and reject compression loops.
 */
#include "dns.h"
#include "config.h"
#include "dane.h"
#include "loop.h"
#include "map.h"
#include "util.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define DNS_MAX_HOSTS	16	/* MX hosts resolved per domain */
#define DNS_MAX_ADDRS	16	/* A records, and AAAA records, kept per host */
#define DNS_MAX_TARGETS	64	/* targets per result */
#define DNS_MAX_MX	1024	/* MX records looked at in one answer */
#define DNS_CACHE_MAX	100000
#define DNS_DEF_TIMEOUT_MS	5000
#define DNS_DEF_MIN_TTL_MS	5000
#define DNS_DEF_MAX_TTL_MS	3600000
#define DNS_T_TLSA	52	/* RFC 6698 */
#define DNS_AD_BIT	0x20	/* in the header's fourth byte */

#define container_of(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

/* --- hash table: intrusive chains, keyed by a lower-case string --- */

struct hnode {
	struct hnode *next;
	uint32_t hash;
	char *key;
};

struct htab {
	struct hnode **b;
	size_t nb, n;		/* nb: power of two */
};

static uint32_t hash_seed;

static uint32_t
hash_str(const char *s)
{
	uint32_t h = 2166136261u ^ hash_seed;	/* FNV-1a, seeded */

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

static struct hnode *
ht_find(const struct htab *t, uint32_t hash, const char *key)
{
	if (t->nb == 0)
		return NULL;
	for (struct hnode *n = t->b[hash & (t->nb - 1)]; n; n = n->next)
		if (n->hash == hash && strcmp(n->key, key) == 0)
			return n;
	return NULL;
}

static void
ht_insert(struct htab *t, struct hnode *node)
{
	if (t->n >= t->nb) {	/* grow: load factor <= 1 */
		size_t nb = t->nb ? t->nb * 2 : 256;
		struct hnode **b = xcalloc(nb, sizeof *b);

		for (size_t i = 0; i < t->nb; i++) {
			struct hnode *n = t->b[i], *next;
			for (; n; n = next) {
				next = n->next;
				n->next = b[n->hash & (nb - 1)];
				b[n->hash & (nb - 1)] = n;
			}
		}
		free(t->b);
		t->b = b;
		t->nb = nb;
	}
	node->next = t->b[node->hash & (t->nb - 1)];
	t->b[node->hash & (t->nb - 1)] = node;
	t->n++;
}

static void
ht_remove(struct htab *t, struct hnode *node)
{
	struct hnode **pp = &t->b[node->hash & (t->nb - 1)];

	for (; *pp; pp = &(*pp)->next)
		if (*pp == node) {
			*pp = node->next;
			t->n--;
			return;
		}
	panic("dns: hash node %s not in its table", node->key);
}

/* --- objects --- */

struct dns_watch {
	struct io_op op;	/* the one poll this watcher can have in flight */
	struct dns *d;		/* NULL once orphaned by dns_free */
	int fd;
	unsigned want;		/* POLLIN/POLLOUT c-ares wants */
	unsigned armed;		/* mask of the poll in flight; 0: none */
	int canceling;		/* a cancel for the in-flight poll was sent */
	int dead;		/* c-ares closed the fd */
	int busy;		/* inside ares_process_fd */
	struct dns_watch *next, *prev;	/* live watchers of d */
};

struct dns_waiter {
	void (*cb)(void *arg, const struct dns_result *r);
	void *arg;
	struct dns_waiter *next;
};

struct dns_lookup;

struct dns_host {
	struct dns_lookup *lk;
	char name[256];
	int pref;
	struct in_addr a4[DNS_MAX_ADDRS];
	struct in6_addr a6[DNS_MAX_ADDRS];
	size_t n4, n6;
	int st4, st6;		/* ares status of its A / AAAA query (after parsing) */
	int ad4, ad6;		/* those answers had the AD bit */
	int tlsa_asked;		/* a TLSA query was sent (dnssec, MX answer AD) */
	int tlsa_st, tlsa_ad;	/* its status and AD bit */
	struct dane_set *tlsa;	/* its records (authenticated or not) */
	long ttl;		/* seconds, min over both answers; -1 unknown */
};

struct dns_lookup {
	struct hnode hn;	/* in d->inflight until finished */
	struct dns *d;
	char domain[256];
	struct dns_waiter *waiters, **wtail;
	int pending;		/* c-ares queries outstanding */
	long ttl;		/* min TTL seen, seconds; -1 none */
	struct dns_host *hosts;
	size_t nhosts;
	struct dns_result res;
	struct dns_lookup *dnext;	/* done list, waiting for delivery */
	int hostonly;		/* dns_query_host: A/AAAA of domain, no MX */
	int mx_secure;		/* dnssec and the MX answer (or denial) had AD */
};

/* Compact cache entry: host names in one blob, targets index into it. */
struct dns_ctarget {
	uint32_t host_off;
	int pref;
	union dns_addr addr;
	int dane;
	struct dane_set *tlsa;	/* a reference of the entry's */
};

struct dns_entry {
	struct hnode hn;
	struct dns_entry *fprev, *fnext;	/* insertion order, oldest first */
	uint64_t expires;			/* loop_now() ms */
	enum dns_status status;
	int implicit;
	char *error;				/* NULL when OK */
	struct dns_ctarget *t;
	size_t nt;
	char *names;
};

#define DNS_MAX_QUERIES	100

/* One c-ares query, started at once or queued behind DNS_MAX_QUERIES. */
struct dns_q {
	struct dns *d;
	ares_callback cb;
	void *arg;
	int type;
	int raw;		/* sent with ares_send: map the RCODE ourselves */
	struct dns_q *next;
	char name[256];
};

struct dns {
	struct loop *l;
	ares_channel ch;
	int closing;
	int allow_private;		/* keep loopback/private/... answers */
	int dnssec;			/* ask for AD, trust it, look up TLSA */
	int port;			/* SMTP port: the TLSA owner's _PORT */
	uint64_t min_ttl_ms, max_ttl_ms;
	struct timer timer;		/* ares_timeout */
	struct timer deliver;		/* zero-delay: hand results out */
	struct dns_watch *watches;
	struct htab inflight;		/* struct dns_lookup by domain */
	struct htab cache;		/* struct dns_entry by domain */
	struct dns_entry *fhead, *ftail;
	size_t cache_max;
	struct dns_lookup *done_head, *done_tail;
	size_t nlookups;		/* created and not yet delivered */
	unsigned nq;			/* c-ares queries out */
	int qdraining;
	struct dns_q *qhead, *qtail;	/* queries waiting for a slot */
	struct map txt_cache;		/* name -> struct dns_txt_entry */
};

/* --- random source for tie shuffling --- */

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static unsigned
dns_rnd(unsigned n)
{
	/* xorshift64*: ordering ties needs spread, not secrecy. */
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return n ? (unsigned)((rnd_state * 2685821657736338717ull) >> 32) % n : 0;
}

static void
dns_seed(void)
{
	uint64_t s = 0;

	if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s)
		s = clock_mono_ms() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)&s;
	if (s == 0)
		s = 0x9e3779b97f4a7c15ull;
	rnd_state = s;
	hash_seed = (uint32_t)(s >> 17);
}

/* --- pure helpers --- */

/*
 * dns_order_mx - stable sort by preference (insertion sort: n is small and
 * the result must not depend on qsort's tie order), then a Fisher-Yates
 * shuffle inside each run of equal preference.
 */
void
dns_order_mx(struct dns_mx *mx, size_t n, unsigned (*rnd)(unsigned n))
{
	struct dns_mx tmp;

	for (size_t i = 1; i < n; i++) {
		size_t j = i;
		if (mx[j - 1].pref <= mx[j].pref)
			continue;
		tmp = mx[i];
		while (j > 0 && mx[j - 1].pref > tmp.pref) {
			mx[j] = mx[j - 1];
			j--;
		}
		mx[j] = tmp;
	}
	for (size_t lo = 0; lo < n;) {
		size_t hi = lo + 1;
		while (hi < n && mx[hi].pref == mx[lo].pref)
			hi++;
		for (size_t i = hi - 1; i > lo; i--) {
			size_t j = lo + rnd((unsigned)(i - lo + 1)) % (i - lo + 1);
			if (j != i) {
				tmp = mx[i];
				mx[i] = mx[j];
				mx[j] = tmp;
			}
		}
		lo = hi;
	}
}

/*
 * dns_addr_private - IPv4: 127/8 loopback; 10/8, 172.16/12, 192.168/16
 * private; 169.254/16 link-local; 0/8 unspecified. IPv6: ::1 loopback,
 * :: unspecified, fc00::/7 (and the old site-local fec0::/10) private,
 * fe80::/10 link-local; IPv4-mapped (::ffff:0:0/96) and NAT64
 * (64:ff9b::/96) addresses are judged by the IPv4 address they carry.
 */
const char *
dns_addr_private(const struct sockaddr *sa)
{
	uint32_t a;

	if (sa->sa_family == AF_INET6) {
		const unsigned char *b = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		static const unsigned char nat64[12] = { 0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0 };
		static const unsigned char zero[15];

		if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0) {
			a = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
			goto v4;
		}
		if (memcmp(b, zero, 15) == 0)
			return b[15] == 1 ? "loopback" : b[15] == 0 ? "unspecified" : NULL;
		if ((b[0] & 0xfe) == 0xfc)
			return "private";
		if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
			return "link-local";
		if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
			return "private";
		return NULL;
	}
	if (sa->sa_family != AF_INET)
		return "unspecified";
	a = ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr);
v4:
	if (a >> 24 == 127)
		return "loopback";
	if (a >> 24 == 10 || a >> 20 == 0xac1 || a >> 16 == 0xc0a8)
		return "private";
	if (a >> 16 == 0xa9fe)
		return "link-local";
	if (a >> 24 == 0)
		return "unspecified";
	return NULL;
}

/*
 * name_skip - validate the possibly compressed name at off and return the
 * offset just past it, or -1. Each pointer must point before where the
 * previous jump landed (so every walk ends), never into the header, and
 * the expanded name may not exceed 255 octets.
 */
static int
name_skip(const unsigned char *m, int len, int off)
{
	int end = -1, limit = off, total = 0;

	for (;;) {
		unsigned c;

		if (off < 0 || off >= len)
			return -1;
		c = m[off];
		if ((c & 0xc0) == 0xc0) {
			int ptr;

			if (off + 1 >= len)
				return -1;
			ptr = (int)((c & 0x3f) << 8 | m[off + 1]);
			if (end < 0)
				end = off + 2;
			if (ptr < HFIXEDSZ || ptr >= limit)
				return -1;
			off = limit = ptr;
			continue;
		}
		if (c & 0xc0)		/* 0x40, 0x80: obsolete label types */
			return -1;
		total += (int)c + 1;
		if (total > 255)
			return -1;
		if (c == 0)
			return end < 0 ? off + 1 : end;
		off += (int)c + 1;
	}
}

static unsigned
get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* RFC 2181 8: a TTL with the top bit set is treated as zero. */
static long
ttl_value(uint32_t t)
{
	return t > 0x7fffffffu ? 0 : (long)t;
}

struct rr {
	unsigned type;
	long ttl;
	int rdoff, rdlen;
};

/* msg_questions - check the header, skip the questions; offset or -1. */
static int
msg_questions(const unsigned char *m, int len)
{
	int off = HFIXEDSZ;
	unsigned qd;

	if (m == NULL || len < HFIXEDSZ)
		return -1;
	qd = get16(m + 4);
	for (unsigned i = 0; i < qd; i++) {
		off = name_skip(m, len, off);
		if (off < 0 || len - off < QFIXEDSZ)
			return -1;
		off += QFIXEDSZ;
	}
	return off;
}

/* rr_next - read the RR at *off and advance past it; 0 or -1. */
static int
rr_next(const unsigned char *m, int len, int *off, struct rr *rr)
{
	int o = name_skip(m, len, *off);

	if (o < 0 || len - o < RRFIXEDSZ)
		return -1;
	rr->type = get16(m + o);
	rr->ttl = ttl_value(get32(m + o + 4));
	rr->rdlen = (int)get16(m + o + 8);
	rr->rdoff = o + RRFIXEDSZ;
	if (len - rr->rdoff < rr->rdlen)
		return -1;
	*off = rr->rdoff + rr->rdlen;
	return 0;
}

long
dns_answer_min_ttl(const unsigned char *abuf, int alen)
{
	int off = msg_questions(abuf, alen);
	unsigned an;
	long min = -1;
	struct rr rr;

	if (off < 0)
		return -1;
	an = get16(abuf + 6);
	for (unsigned i = 0; i < an; i++) {
		if (rr_next(abuf, alen, &off, &rr) < 0)
			return -1;
		if (min < 0 || rr.ttl < min)
			min = rr.ttl;
	}
	return min;
}

long
dns_negative_ttl(const unsigned char *abuf, int alen)
{
	int off = msg_questions(abuf, alen);
	unsigned an, ns;
	long min = -1;
	struct rr rr;

	if (off < 0)
		return -1;
	an = get16(abuf + 6);
	ns = get16(abuf + 8);
	for (unsigned i = 0; i < an; i++)
		if (rr_next(abuf, alen, &off, &rr) < 0)
			return -1;
	for (unsigned i = 0; i < ns; i++) {
		int o, end;
		long neg;

		if (rr_next(abuf, alen, &off, &rr) < 0)
			return -1;
		if (rr.type != T_SOA)
			continue;
		end = rr.rdoff + rr.rdlen;
		o = name_skip(abuf, end, rr.rdoff);		/* MNAME */
		if (o >= 0)
			o = name_skip(abuf, end, o);		/* RNAME */
		if (o < 0 || end - o < 20)
			return -1;
		neg = ttl_value(get32(abuf + o + 16));		/* MINIMUM */
		if (rr.ttl < neg)
			neg = rr.ttl;
		if (min < 0 || neg < min)
			min = neg;
	}
	return min;
}

int
dns_reply_authentic(const unsigned char *abuf, int alen)
{
	return abuf != NULL && alen >= HFIXEDSZ && (abuf[3] & DNS_AD_BIT) != 0;
}

struct dane_set *
dns_parse_tlsa(const unsigned char *abuf, int alen)
{
	int off = msg_questions(abuf, alen);
	struct dane_set *set;
	unsigned an;

	if (off < 0)
		return NULL;
	an = get16(abuf + 6);
	set = dane_set_new((size_t)alen);
	for (unsigned i = 0; i < an; i++) {
		int o = name_skip(abuf, alen, off), rdlen;

		if (o < 0 || alen - o < RRFIXEDSZ)
			goto bad;
		rdlen = (int)get16(abuf + o + 8);
		if (alen - (o + RRFIXEDSZ) < rdlen)
			goto bad;
		if (get16(abuf + o) == DNS_T_TLSA && get16(abuf + o + 2) == C_IN)
			dane_set_add(set, abuf + o + RRFIXEDSZ, (size_t)rdlen);
		off = o + RRFIXEDSZ + rdlen;
	}
	if (set->seen > 0)
		return set;
bad:
	dane_unref(set);
	return NULL;
}

int
dns_tlsa_name(char *buf, size_t n, int port, const char *host)
{
	int k = snprintf(buf, n, "_%d._tcp.%s", port, host);

	return k < 0 || (size_t)k >= n || k > 253 ? -1 : 0;
}

/* --- c-ares socket watchers --- */

static void dns_timer_update(struct dns *d);

static void
watch_maybe_free(struct dns_watch *w)
{
	if (w->dead && w->armed == 0 && !w->busy) {
		log_debug("dns", "c-ares socket %d: watcher freed", w->fd);
		free(w);
	}
}

static void
watch_arm(struct dns_watch *w)
{
	if (w->dead || w->busy || w->d == NULL)
		return;
	if (w->armed) {
		/* A poll without a bit c-ares now needs must be replaced. */
		if ((w->want & ~w->armed) && !w->canceling) {
			loop_cancel_op(w->d->l, &w->op);
			w->canceling = 1;
		}
		return;
	}
	if (w->want == 0)
		return;
	loop_poll(w->d->l, w->fd, w->want, &w->op);
	w->armed = w->want;
	w->canceling = 0;
}

static void
watch_on_poll(struct io_op *op, int res, uint32_t flags)
{
	struct dns_watch *w = container_of(op, struct dns_watch, op);
	struct dns *d = w->d;

	(void)flags;
	w->armed = 0;
	w->canceling = 0;
	if (w->dead || d == NULL) {
		watch_maybe_free(w);
		return;
	}
	if (res > 0) {
		unsigned ev = (unsigned)res;
		ares_socket_t rfd = (ev & (POLLIN | POLLERR | POLLHUP)) ? w->fd : ARES_SOCKET_BAD;
		ares_socket_t wfd = (ev & (POLLOUT | POLLERR | POLLHUP)) ? w->fd : ARES_SOCKET_BAD;

		w->busy = 1;
		ares_process_fd(d->ch, rfd, wfd);
		w->busy = 0;
	} else if (res < 0 && res != -ECANCELED) {
		/* Not re-armed: a persistent error would spin. The c-ares
		 * timeout ends the queries on this socket. */
		log_warn("dns", "poll on c-ares socket %d: %s", w->fd, strerror(-res));
		w->want = 0;
	}
	if (w->dead)
		watch_maybe_free(w);
	else
		watch_arm(w);
	dns_timer_update(d);
}

static void
dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct dns_watch *w;

	for (w = d->watches; w; w = w->next)
		if (w->fd == fd)
			break;
	if (!readable && !writable) {	/* c-ares closes fd next */
		if (w == NULL)
			return;
		if (w->prev)
			w->prev->next = w->next;
		else
			d->watches = w->next;
		if (w->next)
			w->next->prev = w->prev;
		w->next = w->prev = NULL;
		w->dead = 1;
		w->want = 0;
		if (w->armed && !w->canceling) {
			loop_cancel_op(d->l, &w->op);
			w->canceling = 1;
		}
		watch_maybe_free(w);
		return;
	}
	if (w == NULL) {
		w = xcalloc(1, sizeof *w);
		w->op.cb = watch_on_poll;
		w->d = d;
		w->fd = fd;
		log_debug("dns", "c-ares socket %d: watching", fd);
		w->next = d->watches;
		if (d->watches)
			d->watches->prev = w;
		d->watches = w;
	}
	w->want = (readable ? POLLIN : 0) | (writable ? POLLOUT : 0);
	watch_arm(w);
}

static void
dns_on_timer(struct timer *t)
{
	struct dns *d = container_of(t, struct dns, timer);

	ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_timer_update(d);
}

/* dns_timer_update - follow ares_timeout; at least 1 ms so it never spins. */
static void
dns_timer_update(struct dns *d)
{
	struct timeval tv, *tp;
	uint64_t ms;

	if (d->closing)
		return;
	tp = ares_timeout(d->ch, NULL, &tv);
	if (tp == NULL) {
		timer_cancel(d->l, &d->timer);
		return;
	}
	ms = (uint64_t)tp->tv_sec * 1000 + ((uint64_t)tp->tv_usec + 999) / 1000;
	if (ms < 1)
		ms = 1;
	timer_set(d->l, &d->timer, ms, dns_on_timer);
}

/* --- cache --- */

static uint64_t
dns_ttl_ms(const struct dns *d, long ttl_s)
{
	uint64_t ms = ttl_s < 0 ? d->min_ttl_ms : (uint64_t)ttl_s * 1000;

	if (ms < d->min_ttl_ms)
		ms = d->min_ttl_ms;
	if (ms > d->max_ttl_ms)
		ms = d->max_ttl_ms;
	return ms;
}

static void
cache_remove(struct dns *d, struct dns_entry *e)
{
	ht_remove(&d->cache, &e->hn);
	if (e->fprev)
		e->fprev->fnext = e->fnext;
	else
		d->fhead = e->fnext;
	if (e->fnext)
		e->fnext->fprev = e->fprev;
	else
		d->ftail = e->fprev;
	free(e->hn.key);
	free(e->error);
	for (size_t i = 0; i < e->nt; i++)
		dane_unref(e->t[i].tlsa);
	free(e->t);
	free(e->names);
	free(e);
}

static struct dns_entry *
cache_find(struct dns *d, uint32_t hash, const char *key)
{
	struct hnode *n = ht_find(&d->cache, hash, key);
	struct dns_entry *e;

	if (n == NULL)
		return NULL;
	e = container_of(n, struct dns_entry, hn);
	if (e->expires <= loop_now(d->l)) {
		cache_remove(d, e);
		return NULL;
	}
	return e;
}

static void
cache_put(struct dns *d, const char *key, uint32_t hash, const struct dns_result *r, long ttl_s)
{
	struct dns_entry *e;
	size_t namelen = 0, off = 0;
	uint64_t now = loop_now(d->l);
	int sweep = 8;
	struct hnode *old = ht_find(&d->cache, hash, key);

	if (old != NULL)
		cache_remove(d, container_of(old, struct dns_entry, hn));
	/* Oldest first: drop a few expired ones, then make room. */
	while (d->fhead && sweep-- > 0 && d->fhead->expires <= now)
		cache_remove(d, d->fhead);
	while (d->fhead && d->cache.n >= d->cache_max)
		cache_remove(d, d->fhead);

	e = xcalloc(1, sizeof *e);
	e->hn.key = xstrdup(key);
	e->hn.hash = hash;
	e->expires = now + dns_ttl_ms(d, ttl_s);
	e->status = r->status;
	e->implicit = r->implicit;
	if (r->status != DNS_OK)
		e->error = xstrdup(r->error);
	if (r->ntargets) {
		e->t = xcalloc(r->ntargets, sizeof *e->t);
		for (size_t i = 0; i < r->ntargets; i++)
			namelen += strlen(r->targets[i].host) + 1;
		e->names = xmalloc(namelen);
		for (size_t i = 0; i < r->ntargets; i++) {
			size_t hl = strlen(r->targets[i].host) + 1;
			/* Consecutive targets of one host share its name. */
			if (i > 0 && strcmp(r->targets[i].host, r->targets[i - 1].host) == 0) {
				e->t[i].host_off = e->t[i - 1].host_off;
			} else {
				memcpy(e->names + off, r->targets[i].host, hl);
				e->t[i].host_off = (uint32_t)off;
				off += hl;
			}
			e->t[i].pref = r->targets[i].pref;
			e->t[i].addr = r->targets[i].addr;
			e->t[i].dane = r->targets[i].dane;
			e->t[i].tlsa = dane_ref(r->targets[i].tlsa);
		}
		e->nt = r->ntargets;
	}
	ht_insert(&d->cache, &e->hn);
	e->fprev = d->ftail;
	if (d->ftail)
		d->ftail->fnext = e;
	else
		d->fhead = e;
	d->ftail = e;
}

/*
 * cache_deliver - expand an entry into a result the callback may keep
 * using while it starts queries that could evict the entry. Hosts of
 * equal preference are reshuffled on every hit (each host's addresses stay
 * together), so one cached answer does not pin the load on one MX host.
 */
static void
cache_deliver(const struct dns_entry *e, void (*cb)(void *, const struct dns_result *), void *arg)
{
	struct dns_result r;

	memset(&r, 0, sizeof r);
	r.status = e->status;
	r.implicit = e->implicit;
	if (e->error)
		snprintf(r.error, sizeof r.error, "%s", e->error);
	if (e->nt) {
		/* Host groups: runs of targets sharing host name and pref. */
		struct { size_t start, end; } grp[DNS_MAX_TARGETS], tmp;
		size_t ng = 0, out = 0, nt = e->nt < DNS_MAX_TARGETS ? e->nt : DNS_MAX_TARGETS;

		for (size_t i = 0; i < nt; i++) {
			if (i == 0 || e->t[i].host_off != e->t[i - 1].host_off ||
			    e->t[i].pref != e->t[i - 1].pref)
				grp[ng++].start = i;
			grp[ng - 1].end = i + 1;
		}
		for (size_t lo = 0; lo < ng;) {
			size_t hi = lo + 1;
			while (hi < ng && e->t[grp[hi].start].pref == e->t[grp[lo].start].pref)
				hi++;
			for (size_t i = hi - 1; i > lo; i--) {
				size_t j = lo + dns_rnd((unsigned)(i - lo + 1));
				tmp = grp[i];
				grp[i] = grp[j];
				grp[j] = tmp;
			}
			lo = hi;
		}
		r.targets = xcalloc(nt, sizeof *r.targets);
		for (size_t g = 0; g < ng; g++)
			for (size_t i = grp[g].start; i < grp[g].end; i++) {
				struct dns_target *t = &r.targets[out++];
				snprintf(t->host, sizeof t->host, "%s", e->names + e->t[i].host_off);
				t->pref = e->t[i].pref;
				t->addr = e->t[i].addr;
				t->dane = e->t[i].dane;
				/* Held across cb: it may evict the entry. */
				t->tlsa = dane_ref(e->t[i].tlsa);
			}
		r.ntargets = out;
	}
	cb(arg, &r);
	for (size_t i = 0; i < r.ntargets; i++)
		dane_unref(r.targets[i].tlsa);
	free(r.targets);
}

/* --- lookups --- */

static void
lookup_ttl(struct dns_lookup *lk, long ttl)
{
	if (ttl >= 0 && (lk->ttl < 0 || ttl < lk->ttl))
		lk->ttl = ttl;
}

static void
dns_on_deliver(struct timer *t)
{
	struct dns *d = container_of(t, struct dns, deliver);
	struct dns_lookup *lk;

	while ((lk = d->done_head) != NULL) {
		struct dns_waiter *w, *next;

		d->done_head = lk->dnext;
		if (d->done_head == NULL)
			d->done_tail = NULL;
		for (w = lk->waiters; w; w = next) {
			next = w->next;
			w->cb(w->arg, &lk->res);
			free(w);
		}
		d->nlookups--;
		for (size_t i = 0; i < lk->res.ntargets; i++)
			dane_unref(lk->res.targets[i].tlsa);
		for (size_t i = 0; i < lk->nhosts; i++)
			dane_unref(lk->hosts[i].tlsa);
		free(lk->res.targets);
		free(lk->hosts);
		free(lk->hn.key);
		free(lk);
	}
}

/*
 * lookup_finish - the result is final: cache it (unless temporary), take
 * the lookup out of the in-flight table so new queries see the cache or
 * start afresh, and queue it for delivery outside c-ares.
 */
static void
lookup_finish(struct dns_lookup *lk, long ttl_s)
{
	struct dns *d = lk->d;

	ht_remove(&d->inflight, &lk->hn);
	if (lk->res.status != DNS_TEMPFAIL && !d->closing)
		cache_put(d, lk->hn.key, lk->hn.hash, &lk->res, ttl_s);
	if (lk->res.status == DNS_OK)
		log_debug("dns", "%s: %zu targets%s, ttl %lds", lk->domain,
		    lk->res.ntargets, lk->res.implicit ? " (implicit MX)" : "", ttl_s);
	else
		log_debug("dns", "%s: %s", lk->domain, lk->res.error);
	lk->dnext = NULL;
	if (d->done_tail)
		d->done_tail->dnext = lk;
	else
		d->done_head = lk;
	d->done_tail = lk;
	if (!d->closing)
		timer_set(d->l, &d->deliver, 0, dns_on_deliver);
}

static void __attribute__((format(printf, 3, 4)))
lookup_fail(struct dns_lookup *lk, enum dns_status st, const char *fmt, ...)
{
	va_list ap;

	lk->res.status = st;
	va_start(ap, fmt);
	vsnprintf(lk->res.error, sizeof lk->res.error, fmt, ap);
	va_end(ap);
}

static int
status_is_negative(int st)
{
	return st == ARES_ENODATA || st == ARES_ENOTFOUND || st == ARES_EBADNAME;
}

/* host_addr - address k of host h: its IPv4 ones, then its IPv6 ones
 * (an IPv4-mapped IPv6 address becomes the IPv4 address it is). */
static void
host_addr(const struct dns_host *h, size_t k, union dns_addr *a)
{
	memset(a, 0, sizeof *a);
	if (k < h->n4) {
		a->v4.sin_family = AF_INET;
		a->v4.sin_addr = h->a4[k];
		return;
	}
	k -= h->n4;
	if (IN6_IS_ADDR_V4MAPPED(&h->a6[k])) {
		a->v4.sin_family = AF_INET;
		memcpy(&a->v4.sin_addr, h->a6[k].s6_addr + 12, 4);
		return;
	}
	a->v6.sin6_family = AF_INET6;
	a->v6.sin6_addr = h->a6[k];
}

/* addr_text - the address alone, into ip[INET6_ADDRSTRLEN]. */
static void
addr_text(const union dns_addr *a, char *ip)
{
	const void *p = a->sa.sa_family == AF_INET6 ? (const void *)&a->v6.sin6_addr :
	    (const void *)&a->v4.sin_addr;

	if (inet_ntop(a->sa.sa_family, p, ip, INET6_ADDRSTRLEN) == NULL)
		snprintf(ip, INET6_ADDRSTRLEN, "?");
}

static int
status_is_temp(int st)
{
	return st != ARES_SUCCESS && !status_is_negative(st);
}

/*
 * host_dane - what DNSSEC says about host h (dns.h): an enum dane_state,
 * with *set its records for DANE_TLSA, or -1 when its TLSA lookup failed
 * although DANE could apply (the host must not be used).
 */
static int
host_dane(const struct dns_lookup *lk, const struct dns_host *h, struct dane_set **set)
{
	*set = NULL;
	if (!lk->d->dnssec || lk->hostonly)
		return DANE_OFF;
	if (!lk->mx_secure || !h->tlsa_asked || (h->n4 && !h->ad4) || (h->n6 && !h->ad6))
		return DANE_INSECURE;
	if (h->tlsa_st == ARES_SUCCESS && h->tlsa != NULL) {
		if (!h->tlsa_ad)
			return DANE_INSECURE;
		*set = h->tlsa;
		return DANE_TLSA;
	}
	if (h->tlsa_st == ARES_SUCCESS || status_is_negative(h->tlsa_st))
		return h->tlsa_ad ? DANE_NO_TLSA : DANE_INSECURE;
	return -1;
}

/*
 * lookup_hosts_done - every A, AAAA (and TLSA) query answered: build the
 * ordered targets, leaving out refused addresses (unless allow_private)
 * and hosts whose TLSA lookup failed.
 */
static void
lookup_hosts_done(struct dns_lookup *lk)
{
	struct dns_result *r = &lk->res;
	const struct dns_host *temp = NULL, *refused_host = NULL, *tlsa_failed = NULL;
	union dns_addr refused_addr;
	const char *refused_kind = NULL;
	size_t nrefused = 0;
	int any_temp = 0;
	long ttl;

	r->targets = xcalloc(DNS_MAX_TARGETS, sizeof *r->targets);
	for (size_t i = 0; i < lk->nhosts; i++) {
		const struct dns_host *h = &lk->hosts[i];
		size_t used = 0;
		struct dane_set *set;
		int dane = host_dane(lk, h, &set);

		if (status_is_temp(h->st4) || status_is_temp(h->st6)) {
			any_temp = 1;
			if (h->n4 + h->n6 == 0 && temp == NULL)
				temp = h;
		}
		if (dane < 0) {
			char q[300];

			any_temp = 1;
			if (h->n4 + h->n6 > 0 && tlsa_failed == NULL)
				tlsa_failed = h;
			log_quote(q, sizeof q, h->name);
			log_info("dns", "%s: MX host \"%s\" left out: its TLSA lookup failed (%s) "
			    "and DANE needs the answer", lk->domain, q, ares_strerror(h->tlsa_st));
			continue;
		}
		for (size_t k = 0; k < h->n4 + h->n6 && r->ntargets < DNS_MAX_TARGETS; k++) {
			struct dns_target *t = &r->targets[r->ntargets];
			const char *kind;

			host_addr(h, k, &t->addr);
			if (!lk->d->allow_private && (kind = dns_addr_private(&t->addr.sa)) != NULL) {
				if (nrefused++ == 0) {
					refused_host = h;
					refused_addr = t->addr;
					refused_kind = kind;
				}
				continue;
			}
			memcpy(t->host, h->name, sizeof t->host);
			t->pref = h->pref;
			t->dane = dane;
			t->tlsa = dane_ref(set);
			r->ntargets++;
			used++;
		}
		if (used)
			lookup_ttl(lk, h->ttl);
	}
	if (r->ntargets == 0) {
		free(r->targets);
		r->targets = NULL;
		if (refused_host) {
			char ip[INET6_ADDRSTRLEN];

			addr_text(&refused_addr, ip);
			lookup_fail(lk, DNS_TEMPFAIL, "%s resolved to %s (%s)%s, refused: "
			    "dns.allow_private = true would allow it", refused_host->name, ip,
			    refused_kind, nrefused > 1 ? " and every other address is refused too" : "");
		} else if (tlsa_failed) {
			char nm[300];

			if (dns_tlsa_name(nm, sizeof nm, lk->d->port, tlsa_failed->name) < 0)
				snprintf(nm, sizeof nm, "%s", tlsa_failed->name);
			lookup_fail(lk, DNS_TEMPFAIL, "TLSA lookup for %s failed: %s (DNSSEC-signed "
			    "MX: DANE needs the answer)", nm, ares_strerror(tlsa_failed->tlsa_st));
		} else if (temp) {
			lookup_fail(lk, DNS_TEMPFAIL, "address lookup for %s failed: %s", temp->name,
			    ares_strerror(status_is_temp(temp->st4) ? temp->st4 : temp->st6));
		} else if (lk->hostonly) {
			lookup_fail(lk, DNS_NOADDR, "%s has no address", lk->domain);
		} else if (r->implicit) {
			lookup_fail(lk, DNS_NOADDR, "%s has no MX and no address", lk->domain);
		} else {
			lookup_fail(lk, DNS_NOADDR, "none of the %zu MX hosts of %s has an address",
			    lk->nhosts, lk->domain);
		}
		lookup_finish(lk, -1);
		return;
	}
	if (nrefused && log_level_max >= LOG_DEBUG) {
		char ip[INET6_ADDRSTRLEN];

		addr_text(&refused_addr, ip);
		log_debug("dns", "%s: %zu non-public address(es) left out (first %s of %s, %s)",
		    lk->domain, nrefused, ip, refused_host->name, refused_kind);
	}
	r->status = DNS_OK;
	/* A query that failed for now should be retried soon: short TTL. */
	ttl = any_temp ? 0 : lk->ttl;
	lookup_finish(lk, ttl);
}

static void
host_ttl(struct dns_host *h, long ttl)
{
	if (ttl < 0)
		ttl = 0;
	if (h->ttl < 0 || ttl < h->ttl)
		h->ttl = ttl;
}

static void
lookup_on_a(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_host *h = arg;
	struct dns_lookup *lk = h->lk;

	(void)timeouts;
	h->st4 = status;
	h->ad4 = dns_reply_authentic(abuf, alen);
	if (status == ARES_SUCCESS) {
		struct hostent *he = NULL;
		struct ares_addrttl at[DNS_MAX_ADDRS];
		int nat = DNS_MAX_ADDRS;

		h->st4 = ares_parse_a_reply(abuf, alen, &he, at, &nat);
		if (h->st4 == ARES_SUCCESS) {
			long raw = dns_answer_min_ttl(abuf, alen);

			if (raw >= 0)
				host_ttl(h, raw);
			for (int i = 0; i < nat && i < DNS_MAX_ADDRS; i++) {
				h->a4[h->n4++] = at[i].ipaddr;
				host_ttl(h, at[i].ttl);
			}
			if (h->n4 == 0)
				h->st4 = ARES_ENODATA;
		}
		if (he)
			ares_free_hostent(he);
	}
	if (--lk->pending == 0)
		lookup_hosts_done(lk);
}

static void
lookup_on_aaaa(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_host *h = arg;
	struct dns_lookup *lk = h->lk;

	(void)timeouts;
	h->st6 = status;
	h->ad6 = dns_reply_authentic(abuf, alen);
	if (status == ARES_SUCCESS) {
		struct hostent *he = NULL;
		struct ares_addr6ttl at[DNS_MAX_ADDRS];
		int nat = DNS_MAX_ADDRS;

		h->st6 = ares_parse_aaaa_reply(abuf, alen, &he, at, &nat);
		if (h->st6 == ARES_SUCCESS) {
			long raw = dns_answer_min_ttl(abuf, alen);

			if (raw >= 0)
				host_ttl(h, raw);
			for (int i = 0; i < nat && i < DNS_MAX_ADDRS; i++) {
				memcpy(&h->a6[h->n6++], &at[i].ip6addr, sizeof h->a6[0]);
				host_ttl(h, at[i].ttl);
			}
			if (h->n6 == 0)
				h->st6 = ARES_ENODATA;
		}
		if (he)
			ares_free_hostent(he);
	}
	if (--lk->pending == 0)
		lookup_hosts_done(lk);
}

static void
lookup_on_tlsa(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_host *h = arg;
	struct dns_lookup *lk = h->lk;

	(void)timeouts;
	h->tlsa_st = status;
	h->tlsa_ad = dns_reply_authentic(abuf, alen);
	if (status == ARES_SUCCESS) {
		h->tlsa = dns_parse_tlsa(abuf, alen);
		/* Answers that are there but give no usable TLSA record
		 * (malformed, or only a CNAME or signatures, which are not
		 * followed) are a failed lookup: the host is left out, never
		 * taken as "no TLSA" (that would allow clear text). */
		if (h->tlsa == NULL && abuf != NULL && alen >= HFIXEDSZ && get16(abuf + 6) > 0)
			h->tlsa_st = ARES_EBADRESP;
	}
	if (log_level_max >= LOG_DEBUG) {
		char q[300], t[200];

		log_quote(q, sizeof q, h->name);
		log_debug("dns", "TLSA of \"%s\": %s ad=%d records=%s", q, ares_strerror(status),
		    h->tlsa_ad, dane_to_text(h->tlsa, t, sizeof t));
	}
	if (--lk->pending == 0)
		lookup_hosts_done(lk);
}

/* --- the query gate --- */

static void dns_q_drain(struct dns *d);

static void
dns_q_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_q *q = arg;
	struct dns *d = q->d;
	ares_callback cb = q->cb;
	void *cbarg = q->arg;

	/* ares_send hands over any reply: map its RCODE as ares_query does. */
	if (q->raw && status == ARES_SUCCESS) {
		if (abuf == NULL || alen < HFIXEDSZ)
			status = ARES_EBADRESP;
		else switch (abuf[3] & 0x0f) {
		case 0:	/* NOERROR */
			status = get16(abuf + 6) > 0 ? ARES_SUCCESS : ARES_ENODATA;
			break;
		case 1: status = ARES_EFORMERR; break;
		case 2: status = ARES_ESERVFAIL; break;
		case 3: status = ARES_ENOTFOUND; break;
		case 4: status = ARES_ENOTIMP; break;
		case 5: status = ARES_EREFUSED; break;
		default: break;
		}
	}
	d->nq--;
	free(q);
	cb(cbarg, status, timeouts, abuf, alen);
	dns_q_drain(d);
}

static void
dns_q_start(struct dns *d, struct dns_q *q)
{
	unsigned char *qbuf = NULL;
	int qlen = 0, r;

	d->nq++;
	if (!d->dnssec) {
		ares_query(d->ch, q->name, C_IN, q->type, dns_q_done, q);	/* may call back at once */
		return;
	}
	/* Ask for authenticated data (RFC 6840 5.7): the AD bit in the query.
	 * c-ares puts its own random id in. */
	r = ares_create_query(q->name, C_IN, q->type, 0, 1, &qbuf, &qlen, 1232);
	if (r != ARES_SUCCESS) {
		dns_q_done(q, r, 0, NULL, 0);
		return;
	}
	qbuf[3] |= DNS_AD_BIT;
	q->raw = 1;
	ares_send(d->ch, qbuf, qlen, dns_q_done, q);	/* may call back at once */
	ares_free_string(qbuf);
}

static void
dns_q_drain(struct dns *d)
{
	if (d->qdraining || d->closing)
		return;
	d->qdraining = 1;
	while (d->nq < DNS_MAX_QUERIES && d->qhead != NULL) {
		struct dns_q *q = d->qhead;
		d->qhead = q->next;
		if (d->qhead == NULL)
			d->qtail = NULL;
		q->next = NULL;
		dns_q_start(d, q);
	}
	d->qdraining = 0;
}

/* dns_send - one query for name (at most 255 bytes), now or when a slot
 * frees up; cb is called exactly once either way. */
static void
dns_send(struct dns *d, const char *name, int type, ares_callback cb, void *arg)
{
	struct dns_q *q = xcalloc(1, sizeof *q);

	q->d = d;
	q->cb = cb;
	q->arg = arg;
	q->type = type;
	snprintf(q->name, sizeof q->name, "%s", name);
	if (d->nq < DNS_MAX_QUERIES && d->qhead == NULL) {
		dns_q_start(d, q);
		return;
	}
	if (d->qtail)
		d->qtail->next = q;
	else
		d->qhead = q;
	d->qtail = q;
}

static void
lookup_resolve_hosts(struct dns_lookup *lk)
{
	struct dns *d = lk->d;

	lk->pending = 1;	/* guard: a query may answer synchronously */
	for (size_t i = 0; i < lk->nhosts; i++) {
		struct dns_host *h = &lk->hosts[i];

		h->lk = lk;
		h->ttl = -1;
		if (d->closing) {
			h->st4 = h->st6 = ARES_EDESTRUCTION;
			continue;
		}
		lk->pending += 2;
		dns_send(d, h->name, T_A, lookup_on_a, h);
		dns_send(d, h->name, T_AAAA, lookup_on_aaaa, h);
		if (d->dnssec && lk->mx_secure && !lk->hostonly) {
			char nm[300];

			if (dns_tlsa_name(nm, sizeof nm, d->port, h->name) == 0) {
				h->tlsa_asked = 1;
				lk->pending++;
				dns_send(d, nm, DNS_T_TLSA, lookup_on_tlsa, h);
			}
		}
	}
	if (--lk->pending == 0)
		lookup_hosts_done(lk);
}

static int
mx_is_null_host(const char *h)
{
	return h[0] == '\0' || strcmp(h, ".") == 0;
}

static void
lookup_on_mx(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_lookup *lk = arg;
	struct ares_mx_reply *mx = NULL;
	struct dns_mx *v;
	size_t n = 0, nmx = 0;
	int r = status;

	(void)timeouts;
	lk->pending--;
	lk->mx_secure = lk->d->dnssec && dns_reply_authentic(abuf, alen);
	if (status == ARES_SUCCESS)
		r = ares_parse_mx_reply(abuf, alen, &mx);
	if (r == ARES_ENOTFOUND) {
		lookup_fail(lk, DNS_NXDOMAIN, "domain %s does not exist (NXDOMAIN)", lk->domain);
		lookup_finish(lk, dns_negative_ttl(abuf, alen));
		return;
	}
	if (r == ARES_EBADNAME) {
		lookup_fail(lk, DNS_NXDOMAIN, "invalid domain name %s", lk->domain);
		lookup_finish(lk, -1);
		return;
	}
	if (r == ARES_ENODATA) {	/* RFC 5321 5.1: implicit MX */
		/* The "no MX" answer expires too: an MX added later is seen. */
		lookup_ttl(lk, dns_negative_ttl(abuf, alen));
		lk->res.implicit = 1;
		lk->hosts = xcalloc(1, sizeof *lk->hosts);
		lk->nhosts = 1;
		memcpy(lk->hosts[0].name, lk->domain, sizeof lk->hosts[0].name);
		lookup_resolve_hosts(lk);
		return;
	}
	if (r != ARES_SUCCESS) {
		lookup_fail(lk, DNS_TEMPFAIL, "MX lookup for %s failed: %s",
		    lk->domain, ares_strerror(r));
		if (mx)
			ares_free_data(mx);
		lookup_finish(lk, -1);
		return;
	}
	lookup_ttl(lk, dns_answer_min_ttl(abuf, alen));

	for (struct ares_mx_reply *m = mx; m && nmx < DNS_MAX_MX; m = m->next)
		nmx++;
	v = xcalloc(nmx ? nmx : 1, sizeof *v);
	for (struct ares_mx_reply *m = mx; m && n < nmx; m = m->next) {
		size_t hl = m->host ? strlen(m->host) : 0;
		if (hl >= sizeof v[n].host)
			continue;
		memcpy(v[n].host, m->host ? m->host : "", hl + 1);
		str_lower(v[n].host);
		if (hl > 1 && v[n].host[hl - 1] == '.')
			v[n].host[hl - 1] = '\0';
		v[n].pref = m->priority;
		n++;
	}
	ares_free_data(mx);

	if (nmx == 1 && n == 1 && mx_is_null_host(v[0].host) && v[0].pref == 0) {
		free(v);
		lookup_fail(lk, DNS_NULLMX, "domain accepts no mail (null MX, RFC 7505)");
		lookup_finish(lk, lk->ttl);
		return;
	}
	dns_order_mx(v, n, dns_rnd);
	lk->hosts = xcalloc(DNS_MAX_HOSTS, sizeof *lk->hosts);
	for (size_t i = 0; i < n && lk->nhosts < DNS_MAX_HOSTS; i++) {
		int dup = 0;

		if (mx_is_null_host(v[i].host))
			continue;
		/* A host listed twice keeps its best preference only. */
		for (size_t j = 0; j < lk->nhosts && !dup; j++)
			dup = strcmp(lk->hosts[j].name, v[i].host) == 0;
		if (dup)
			continue;
		memcpy(lk->hosts[lk->nhosts].name, v[i].host, sizeof v[i].host);
		lk->hosts[lk->nhosts].pref = v[i].pref;
		lk->nhosts++;
	}
	free(v);
	if (lk->nhosts == 0) {
		lookup_fail(lk, DNS_NOADDR, "the MX records of %s name no usable host", lk->domain);
		lookup_finish(lk, lk->ttl);
		return;
	}
	lookup_resolve_hosts(lk);
}

/* --- API --- */

struct dns *
dns_new(struct loop *l, const struct config *cfg)
{
	struct dns *d = xcalloc(1, sizeof *d);
	struct ares_options o;
	uint64_t tmo = cfg && cfg->dns_timeout_ms ? cfg->dns_timeout_ms : DNS_DEF_TIMEOUT_MS;
	int r;

	dns_seed();
	d->l = l;
	d->allow_private = cfg ? cfg->dns_allow_private : 0;
	d->dnssec = cfg ? cfg->dns_dnssec : 0;
	d->port = cfg && cfg->port ? cfg->port : 25;
	d->cache_max = DNS_CACHE_MAX;
	d->min_ttl_ms = cfg && cfg->dns_min_ttl_ms ? cfg->dns_min_ttl_ms : DNS_DEF_MIN_TTL_MS;
	d->max_ttl_ms = cfg && cfg->dns_max_ttl_ms ? cfg->dns_max_ttl_ms : DNS_DEF_MAX_TTL_MS;
	if (d->min_ttl_ms > d->max_ttl_ms)
		d->min_ttl_ms = d->max_ttl_ms;

	r = ares_library_init(ARES_LIB_INIT_ALL);
	if (r != ARES_SUCCESS)
		fatal("dns: ares_library_init: %s", ares_strerror(r));
	memset(&o, 0, sizeof o);
	o.sock_state_cb = dns_sock_state;
	o.sock_state_cb_data = d;
	/* Two tries and c-ares doubles the second: t + 2t = the budget. */
	o.timeout = (int)(tmo / 3 > 100 ? tmo / 3 : 100);
	o.tries = 2;
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_EDNS;
	o.ednspsz = 1232;	/* fits a UDP datagram: no TCP fallback */
	o.lookups = (char *)"b";
	r = ares_init_options(&d->ch, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
	    ARES_OPT_TRIES | ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ | ARES_OPT_LOOKUPS);
	if (r != ARES_SUCCESS)
		fatal("dns: ares_init_options: %s", ares_strerror(r));
	if (cfg && cfg->ndns_servers) {
		struct buf csv = { 0 };

		for (size_t i = 0; i < cfg->ndns_servers; i++)
			buf_appendf(&csv, "%s%s", i ? "," : "", cfg->dns_servers[i]);
		buf_append(&csv, "", 1);
		r = ares_set_servers_ports_csv(d->ch, csv.data);
		if (r != ARES_SUCCESS)
			fatal("dns: bad server list \"%s\": %s", csv.data, ares_strerror(r));
		buf_free(&csv);
	}
	return d;
}

void
dns_free(struct dns *d)
{
	struct dns_watch *w, *next;

	if (d == NULL)
		return;
	d->closing = 1;
	/* Pending queries end with ARES_EDESTRUCTION (-> TEMPFAIL) and every
	 * socket is reported closed (-> its poll is cancelled). */
	ares_destroy(d->ch);
	ares_library_cleanup();
	/* Queries still waiting for a slot end the same way. */
	while (d->qhead) {
		struct dns_q *q = d->qhead;
		d->qhead = q->next;
		q->cb(q->arg, ARES_EDESTRUCTION, 0, NULL, 0);
		free(q);
	}
	d->qtail = NULL;
	timer_cancel(d->l, &d->timer);
	timer_cancel(d->l, &d->deliver);
	dns_on_deliver(&d->deliver);
	/* Watchers whose cancelled poll has not completed yet free themselves
	 * when it does. */
	for (w = d->watches; w; w = next) {
		next = w->next;
		w->d = NULL;
		w->dead = 1;
		if (w->armed && !w->canceling)
			loop_cancel_op(d->l, &w->op);
		watch_maybe_free(w);
	}
	while (d->fhead)
		cache_remove(d, d->fhead);
	{
		const char *k;
		void *v;

		for (size_t i = 0; map_iter(&d->txt_cache, &i, &k, &v);)
			free(v);
		map_free(&d->txt_cache);
	}
	free(d->cache.b);
	free(d->inflight.b);
	free(d);
}

/* dns_domain_key - lower-cased, trailing dot dropped; -1 if unusable. */
static int
dns_domain_key(const char *domain, char *key, size_t keysz)
{
	size_t n = domain ? strlen(domain) : 0;

	if (n > 0 && domain[n - 1] == '.')
		n--;
	if (n == 0 || n > 253 || n >= keysz)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)domain[i];
		/* c-ares would read a backslash as an escape. */
		if (c <= 0x20 || c >= 0x7f || c == '\\')
			return -1;
		key[i] = (char)c;
	}
	key[n] = '\0';
	str_lower(key);
	return 0;
}

/*
 * dns_query - an MX lookup of domain, or (hostonly) an address lookup of
 * host name domain alone: its cache key carries a space, which no domain
 * key can, so the two never share an entry.
 */
static void
dns_query(struct dns *d, const char *domain, int hostonly,
    void (*cb)(void *arg, const struct dns_result *r), void *arg)
{
	char key[256 + 5];
	uint32_t hash;
	struct dns_entry *e;
	struct hnode *n;
	struct dns_lookup *lk;
	struct dns_waiter *w;

	if (dns_domain_key(domain, key + (hostonly ? 5 : 0), 256) < 0 || d->closing) {
		struct dns_result r;

		memset(&r, 0, sizeof r);
		r.status = d->closing ? DNS_TEMPFAIL : DNS_NXDOMAIN;
		snprintf(r.error, sizeof r.error, "%s", d->closing ?
		    "resolver shutting down" : "invalid domain name");
		cb(arg, &r);
		return;
	}
	if (hostonly)
		memcpy(key, "host ", 5);
	hash = hash_str(key);
	if ((e = cache_find(d, hash, key)) != NULL) {
		cache_deliver(e, cb, arg);
		return;
	}
	w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	if ((n = ht_find(&d->inflight, hash, key)) != NULL) {
		lk = container_of(n, struct dns_lookup, hn);
		*lk->wtail = w;
		lk->wtail = &w->next;
		return;
	}
	lk = xcalloc(1, sizeof *lk);
	lk->d = d;
	lk->hn.key = xstrdup(key);
	lk->hn.hash = hash;
	snprintf(lk->domain, sizeof lk->domain, "%s", key + (hostonly ? 5 : 0));
	lk->waiters = w;
	lk->wtail = &w->next;
	lk->ttl = -1;
	lk->pending = 1;
	lk->hostonly = hostonly;
	ht_insert(&d->inflight, &lk->hn);
	d->nlookups++;
	if (hostonly) {
		lk->pending = 0;
		lk->hosts = xcalloc(1, sizeof *lk->hosts);
		lk->nhosts = 1;
		memcpy(lk->hosts[0].name, lk->domain, sizeof lk->hosts[0].name);
		lookup_resolve_hosts(lk);
	} else {
		dns_send(d, key, T_MX, lookup_on_mx, lk);
	}
	dns_timer_update(d);
}

void
dns_query_mx(struct dns *d, const char *domain,
    void (*cb)(void *arg, const struct dns_result *r), void *arg)
{
	dns_query(d, domain, 0, cb, arg);
}

void
dns_query_host(struct dns *d, const char *host,
    void (*cb)(void *arg, const struct dns_result *r), void *arg)
{
	struct dns_target t;
	struct dns_result r;

	memset(&t, 0, sizeof t);
	if (inet_pton(AF_INET, host, &t.addr.v4.sin_addr) == 1)
		t.addr.v4.sin_family = AF_INET;
	else if (inet_pton(AF_INET6, host, &t.addr.v6.sin6_addr) == 1)
		t.addr.v6.sin6_family = AF_INET6;
	if (t.addr.sa.sa_family == 0 || d->closing) {
		dns_query(d, host, 1, cb, arg);
		return;
	}
	/* An address literal from the configuration: no lookup, and no
	 * private-address check (the operator named it). */
	snprintf(t.host, sizeof t.host, "%s", host);
	memset(&r, 0, sizeof r);
	r.status = DNS_OK;
	r.targets = &t;
	r.ntargets = 1;
	cb(arg, &r);
}

size_t
dns_pending(const struct dns *d)
{
	return d->nlookups;
}

/* --- TXT (MTA-STS discovery) --- */

#define DNS_TXT_CACHE_MAX	10000

struct dns_txt_entry {
	uint64_t expires;		/* loop_now() ms */
	struct dns_txt_result r;
};

struct dns_txt_q {
	struct dns *d;
	void (*cb)(void *arg, const struct dns_txt_result *r);
	void *arg;
	char key[256];
};

int
dns_parse_txt(const unsigned char *abuf, int alen, struct dns_txt_result *r)
{
	int off = msg_questions(abuf, alen);
	unsigned an;
	struct rr rr;

	memset(r, 0, sizeof *r);
	r->status = DNS_OK;
	if (off < 0)
		return -1;
	an = get16(abuf + 6);
	for (unsigned i = 0; i < an; i++) {
		int o = name_skip(abuf, alen, off), end;
		size_t len = 0;
		char *dst;

		if (o < 0 || rr_next(abuf, alen, &off, &rr) < 0)
			return -1;
		if (rr.type != T_TXT || get16(abuf + o + 2) != C_IN)
			continue;
		if (r->n == DNS_TXT_MAX) {
			r->more = 1;
			continue;
		}
		dst = r->txt[r->n];
		end = rr.rdoff + rr.rdlen;
		for (int p = rr.rdoff; p < end;) {
			int sl = abuf[p++];

			if (end - p < sl)
				return -1;
			for (int k = 0; k < sl; k++, len++)
				if (len < DNS_TXT_LEN - 1)
					dst[len] = (char)abuf[p + k];
			p += sl;
		}
		if (len >= DNS_TXT_LEN - 1) {
			dst[DNS_TXT_LEN - 1] = '\0';
			r->len[r->n] = DNS_TXT_LEN;
		} else {
			dst[len] = '\0';
			r->len[r->n] = len;
		}
		r->n++;
	}
	return 0;
}

static void
txt_cache_put(struct dns *d, const char *key, const struct dns_txt_result *r, long ttl_s)
{
	struct dns_txt_entry *e = map_get(&d->txt_cache, key);
	uint64_t now = loop_now(d->l);

	if (e == NULL) {
		if (d->txt_cache.len >= DNS_TXT_CACHE_MAX) {	/* drop what expired */
			const char *k;
			void *v;

			for (size_t i = 0; map_iter(&d->txt_cache, &i, &k, &v);)
				if (((struct dns_txt_entry *)v)->expires <= now)
					free(map_del(&d->txt_cache, k));
			if (d->txt_cache.len >= DNS_TXT_CACHE_MAX)
				return;
		}
		e = xmalloc(sizeof *e);
		map_put(&d->txt_cache, key, e);
	}
	e->r = *r;
	e->expires = now + dns_ttl_ms(d, ttl_s);
}

static void
txt_on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_txt_q *q = arg;
	struct dns *d = q->d;
	struct dns_txt_result *r = xcalloc(1, sizeof *r);

	(void)timeouts;
	if (status == ARES_SUCCESS) {
		if (dns_parse_txt(abuf, alen, r) < 0) {
			memset(r, 0, sizeof *r);
			r->status = DNS_TEMPFAIL;
			snprintf(r->error, sizeof r->error, "TXT %.180s: malformed reply", q->key);
		} else if (!d->closing) {
			txt_cache_put(d, q->key, r, dns_answer_min_ttl(abuf, alen));
		}
	} else if (status == ARES_ENODATA || status == ARES_ENOTFOUND) {
		r->status = status == ARES_ENOTFOUND ? DNS_NXDOMAIN : DNS_OK;
		snprintf(r->error, sizeof r->error, "TXT %.180s: %.60s", q->key, ares_strerror(status));
		if (!d->closing)
			txt_cache_put(d, q->key, r, dns_negative_ttl(abuf, alen));
	} else {
		r->status = DNS_TEMPFAIL;
		snprintf(r->error, sizeof r->error, "TXT %.180s: %.60s", q->key, ares_strerror(status));
	}
	q->cb(q->arg, r);
	free(r);
	free(q);
}

void
dns_query_txt(struct dns *d, const char *name,
    void (*cb)(void *arg, const struct dns_txt_result *r), void *arg)
{
	char key[256];
	struct dns_txt_entry *e;
	struct dns_txt_q *q;

	if (dns_domain_key(name, key, sizeof key) < 0 || d->closing) {
		struct dns_txt_result *r = xcalloc(1, sizeof *r);

		r->status = d->closing ? DNS_TEMPFAIL : DNS_NXDOMAIN;
		snprintf(r->error, sizeof r->error, "%s", d->closing ?
		    "resolver shutting down" : "invalid domain name");
		cb(arg, r);
		free(r);
		return;
	}
	if ((e = map_get(&d->txt_cache, key)) != NULL) {
		if (loop_now(d->l) < e->expires) {
			cb(arg, &e->r);
			return;
		}
		free(map_del(&d->txt_cache, key));
	}
	q = xcalloc(1, sizeof *q);
	q->d = d;
	q->cb = cb;
	q->arg = arg;
	snprintf(q->key, sizeof q->key, "%s", key);
	dns_send(d, key, T_TXT, txt_on_answer, q);	/* may call back at once */
	dns_timer_update(d);
}
