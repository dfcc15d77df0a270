/*
 * session.c - one outbound SMTP session (API: session.h): the glue
 * between a connection (conn.c: the socket and its in-flight operations),
 * a transport (transport.c: raw bytes now, TLS later), the pure SMTP
 * client (smtp_client.c: every protocol decision), one timer and the
 * current job. This file only moves bytes, time-outs and decisions
 * between them and the scheduler.
 *
 * Owns: the smtp_client, the transport, the current conn, the timer (SMTP
 * deadlines, the idle time, deferred local failure reports), the current
 * job and the message bodies a send may still be reading.
 *
 * Invariants (counted teardown, on top of the conn's own):
 *  - The session is freed only when it is closing and has no conn: the
 *    conn's on_closed has come (every completion in, fd closed), or it
 *    never had one. session_close() may therefore free it at once; nothing
 *    touches the session after calling it (or conn_close()).
 *  - Switching to the next target closes the old conn; the old client and
 *    transport, whose buffers a send may still be reading, are replaced
 *    and the next conn opened only when that conn's on_closed arrives.
 *  - The session holds its own reference to the body being sent (and to
 *    the previous one while its send is in flight), so settling a job,
 *    which may free the job's body, never frees bytes the kernel has yet
 *    to copy.
 *  - Only targets of the source's family are tried.
 *
 * STARTTLS: the client says when (state TLS after the 220); the session
 * then swaps the raw transport for a TLS one (only once no send of the
 * raw one is in flight: its buffers are the client's), tells the client
 * when the handshake is done or failed, applies the policy (session.h)
 * and, when the client has closed, sends TLS's close_notify before the
 * socket is shut down (waiting at most TLS_BYE_MS for that send). The
 * client contexts (one per CA file) and the clear-text fallback table are
 * process-wide: the engine runs one loop.
 *
 * Log lines quote every value that comes from the network (MX names,
 * reply text) and escape `"` and `\` in it, so a peer cannot forge fields.
 */
#include "session.h"
#include "conn.h"
#include "dane.h"
#include "job.h"
#include "loop.h"
#include "map.h"
#include "msg.h"
#include "tls.h"
#include "transport.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct session {
	struct loop *loop;
	const struct session_ops *ops;
	const struct session_cfg *cfg;
	void *owner;
	struct mxset *mx;
	size_t tidx;			/* current target */
	int src_family;			/* AF_UNSPEC (default source), AF_INET, AF_INET6 */
	struct conn *conn;		/* NULL: none yet, failed locally, or closed */
	struct transport *tp;
	struct smtp_client *c;
	int connected;			/* conn connected and not being dropped */
	int closing;			/* session_close() called */
	int switching;			/* old conn draining before the next target */
	int established;		/* greeting + EHLO done at least once */
	int quit_asked, idle;
	enum tls_policy tls_policy;	/* DEFAULT: cfg->tls */
	enum tls_policy conn_policy;	/* this connection's, DANE applied (DEFAULT: none yet) */
	int tls_on;			/* this connection switched to the TLS transport */
	int plain_retry;		/* this target again in clear text after a failed handshake */
	int tls_wait;			/* parked before STARTTLS's handshake for a ticket */
	int tls_waited;			/* done so on this connection: no second wait */
	uint64_t tls_wait_hash;		/* of the session cache key waited for */
	uint64_t tls_wait_until;	/* loop ms */
	struct session *twnext, *twprev;	/* the sessions waiting for a ticket */
	int bye;			/* BYE_*: close_notify before the close */
	char tls_desc[80];		/* session_tls() */
	unsigned max_msgs;		/* per connection */
	struct smtp_result local_fail;	/* reported from a timer */
	struct msg_body *body, *body_retired;
	struct session *anext, *aprev;	/* every session, for session_abort_all */
	struct timer timer;
	struct job *job;
	char *idhdr, *idhdr_retired;	/* the retired one until its send completes */
	size_t idhdr_len;
	char *env_from;
	char src_ip[INET6_ADDRSTRLEN];	/* configured source, "" = the default */
	char used_ip[INET6_ADDRSTRLEN];	/* the default source as connected */
	char peer[CONN_PEER_TEXT];
	struct session *next, *prev;	/* scheduler lists */
	struct session_relay relay;	/* port 0: direct MX delivery */
};

static struct session *all_sessions;

/*
 * Waiting for a ticket. A cold start opens many sessions to one MX host at
 * once; each would make a full TLS handshake (certificate parsing and
 * checks: most of a handshake's cost) although the first one's session
 * ticket lets the others resume. A session about to start TLS for a cache
 * key that has no session yet, while another session began a full
 * handshake for that key in the last TLS_LEAD_MS, waits for that ticket
 * at most TLS_TICKET_WAIT_MS, then goes on with whatever the cache holds.
 */
#define TLS_LEAD_MS		2000
#define TLS_TICKET_WAIT_MS	250
#define TLS_LEADERS_MAX		10000
static struct session *tls_waiters;
static struct map tls_leaders;		/* cache key -> uint64_t *: loop ms of a full handshake */

enum { BYE_NONE = 0, BYE_SENT, BYE_DONE };
#define TLS_BYE_MS		1000	/* wait this long for close_notify to go */
#define TLS_FALLBACK_MS		3600000	/* clear text to a host whose handshake failed */
#define TLS_FALLBACK_MAX	10000

/* One client context per CA file ("" = the system store), made on first use. */
struct tls_ctx_slot {
	char *ca;
	struct tls_ctx *x;
	struct tls_ctx_slot *next;
};
static struct tls_ctx_slot *tls_ctxs;

/* MX host -> (uint64_t *) until when STARTTLS is not tried there. */
static struct map tls_fallback;

static void session_step(struct session *s);
static void session_try_target(struct session *s);
static void session_maybe_free(struct session *s);
static void on_timer_bye(struct timer *t);

/* --- mxset --- */

struct mxset *
mxset_from_dns(const struct dns_result *r)
{
	struct mxset *m = xmalloc(sizeof *m + r->ntargets * sizeof m->t[0]);

	m->refs = 1;
	m->n = r->ntargets;
	memcpy(m->t, r->targets, r->ntargets * sizeof m->t[0]);
	for (size_t i = 0; i < m->n; i++)
		dane_ref(m->t[i].tlsa);
	return m;
}

struct mxset *
mxset_ref(struct mxset *m)
{
	m->refs++;
	return m;
}

void
mxset_unref(struct mxset *m)
{
	if (m && --m->refs == 0) {
		for (size_t i = 0; i < m->n; i++)
			dane_unref(m->t[i].tlsa);
		free(m);
	}
}

size_t
mxset_count_family(const struct mxset *m, int family)
{
	size_t n = 0;

	for (size_t i = 0; i < m->n; i++)
		if (family == AF_UNSPEC || m->t[i].addr.sa.sa_family == family)
			n++;
	return n;
}

/* --- accessors --- */

void *session_owner(const struct session *s) { return s->owner; }
const char *session_src_ip(const struct session *s) { return s->src_ip; }
const char *session_local_ip(const struct session *s) { return s->src_ip[0] ? s->src_ip : s->used_ip; }
const char *session_peer(const struct session *s) { return s->peer; }
int session_is_idle(const struct session *s) { return s->idle; }
int session_was_established(const struct session *s) { return s->established; }
const char *session_tls(const struct session *s) { return s->tls_desc[0] ? s->tls_desc : "none"; }
void session_set_tls(struct session *s, enum tls_policy p) { s->tls_policy = p; }
struct session *session_list_next(const struct session *s) { return s->next; }
void session_list_set_next(struct session *s, struct session *n) { s->next = n; }
struct session *session_list_prev(const struct session *s) { return s->prev; }
void session_list_set_prev(struct session *s, struct session *p) { s->prev = p; }

const char *
session_mx(const struct session *s)
{
	return s->tidx < s->mx->n ? s->mx->t[s->tidx].host : "";
}

/* same_addr - a and b are the same IPv4 or IPv6 address (ports aside). */
static int
same_addr(const union dns_addr *a, const union dns_addr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return 0;
	if (a->sa.sa_family == AF_INET)
		return a->v4.sin_addr.s_addr == b->v4.sin_addr.s_addr;
	if (a->sa.sa_family == AF_INET6)
		return memcmp(&a->v6.sin6_addr, &b->v6.sin6_addr, sizeof a->v6.sin6_addr) == 0;
	return 0;
}

int
session_serves(const struct session *s, const struct mxset *mx, enum tls_policy p)
{
	const struct dns_target *t;
	int best = 0;

	if (!s->established || !s->connected || s->closing || s->switching || s->quit_asked ||
	    s->relay.port != 0 || s->tidx >= s->mx->n || mx == NULL)
		return 0;
	/* No name or key check may hang on the server's name: only a policy
	 * that checks nothing, the same on both sides. */
	if (p != s->tls_policy || (p != TLS_POLICY_DEFAULT && p != TLS_POLICY_OPPORTUNISTIC &&
	    p != TLS_POLICY_DISABLED))
		return 0;
	if (s->conn_policy != TLS_POLICY_DEFAULT && s->conn_policy != TLS_POLICY_OPPORTUNISTIC &&
	    s->conn_policy != TLS_POLICY_DISABLED)
		return 0;
	t = &s->mx->t[s->tidx];
	if (t->dane == DANE_TLSA)
		return 0;
	/* Only the most preferred MX hosts: RFC 5321 5.1 tries them first, and
	 * a backup MX may only queue, or refuse while the primary is up. */
	for (size_t i = 0; i < mx->n; i++)
		if (i == 0 || mx->t[i].pref < best)
			best = mx->t[i].pref;
	for (size_t i = 0; i < mx->n; i++)
		if (mx->t[i].pref == best && mx->t[i].dane != DANE_TLSA &&
		    same_addr(&mx->t[i].addr, &t->addr))
			return (int)i + 1;
	return 0;
}

void
session_take_mx(struct session *s, struct mxset *mx, int which)
{
	if (which < 1 || (size_t)which > mx->n)
		panic("session_take_mx: target %d of %zu", which, mx->n);
	mxset_ref(mx);
	mxset_unref(s->mx);
	s->mx = mx;
	s->tidx = (size_t)which - 1;
}

/* quote - src for a quoted log value (log_quote), returned for printf. */
static const char *
quote(char *dst, size_t n, const char *src)
{
	log_quote(dst, n, src);
	return dst;
}

/* The SMTP client's deadlines are absolute: it is told the time before
 * every call that may start or check one. */
static void
session_clock(struct session *s)
{
	smtp_client_set_now(s->c, loop_now(s->loop));
}

/* --- waiting for a TLS ticket --- */

static uint64_t
key_hash(const char *k)
{
	uint64_t h = 1469598103934665603ull;

	for (; *k; k++)
		h = (h ^ (unsigned char)*k) * 1099511628211ull;
	return h;
}

static void
tls_wait_end(struct session *s)
{
	if (!s->tls_wait)
		return;
	s->tls_wait = 0;
	s->tls_waited = 1;
	if (s->twprev)
		s->twprev->twnext = s->twnext;
	else
		tls_waiters = s->twnext;
	if (s->twnext)
		s->twnext->twprev = s->twprev;
	s->twnext = s->twprev = NULL;
}

static void session_step(struct session *s);

static void
on_timer_tls_wait(struct timer *t)
{
	struct session *s = (struct session *)((char *)t - offsetof(struct session, timer));

	if (s->closing)
		return;
	tls_wait_end(s);
	session_step(s);
}

/* A ticket was kept for key: its waiters go on (from the loop, not from
 * inside OpenSSL). */
static void
on_session_cached(const char *key)
{
	uint64_t h = key_hash(key);

	for (struct session *w = tls_waiters; w; w = w->twnext)
		if (w->tls_wait_hash == h)
			timer_set(w->loop, &w->timer, 0, on_timer_tls_wait);
}

/*
 * tls_should_wait - 1: s, not waiting yet on this connection, waits
 * (parked; its timer ends the wait) before starting TLS under key with
 * context x; 0: it starts now. The first session of a cold key leads (its
 * time is noted); those that come while it is recent wait for its ticket.
 */
static int
tls_should_wait(struct session *s, struct tls_ctx *x, const char *key)
{
	uint64_t now = loop_now(s->loop), *lead;

	if (x == NULL || tls_ctx_has_session(x, key))
		return 0;
	lead = map_get(&tls_leaders, key);
	if (lead != NULL && now - *lead < TLS_LEAD_MS) {
		s->tls_wait = 1;
		s->tls_wait_hash = key_hash(key);
		s->tls_wait_until = now + TLS_TICKET_WAIT_MS;
		s->twprev = NULL;
		s->twnext = tls_waiters;
		if (tls_waiters)
			tls_waiters->twprev = s;
		tls_waiters = s;
		return 1;
	}
	if (lead == NULL) {
		if (tls_leaders.len >= TLS_LEADERS_MAX) {
			const char *k;
			void *v;

			for (size_t i = 0; map_iter(&tls_leaders, &i, &k, &v);)
				free(map_del(&tls_leaders, k));
		}
		lead = xmalloc(sizeof *lead);
		map_put(&tls_leaders, key, lead);
		tls_set_session_hook(on_session_cached);
	}
	*lead = now;
	return 0;
}

/* --- teardown --- */

static void
session_maybe_free(struct session *s)
{
	if (!s->closing || s->conn != NULL)
		return;
	timer_cancel(s->loop, &s->timer);
	tls_wait_end(s);
	if (s->aprev)
		s->aprev->anext = s->anext;
	else
		all_sessions = s->anext;
	if (s->anext)
		s->anext->aprev = s->aprev;
	s->ops->on_closed(s);
	smtp_client_free(s->c);
	transport_free(s->tp);
	if (s->body)
		msg_body_unref(s->body);
	if (s->body_retired)
		msg_body_unref(s->body_retired);
	mxset_unref(s->mx);
	free(s->idhdr);
	free(s->idhdr_retired);
	free(s->env_from);
	free(s);
}

/* Close the connection; the session is freed once it is closed (maybe
 * before this returns: the caller must not touch s afterwards). */
static void
session_close(struct session *s)
{
	if (s->closing)
		return;
	s->closing = 1;
	s->connected = 0;
	timer_cancel(s->loop, &s->timer);
	if (s->idle) {
		s->idle = 0;
		s->ops->on_idle(s, 0);
	}
	if (s->conn)
		conn_close(s->conn);	/* on_closed frees s, maybe at once */
	else
		session_maybe_free(s);
}

/* Drop the current conn before trying the next target: the next one is
 * opened from its on_closed (the caller must not touch s afterwards). */
static void
session_drop_conn(struct session *s)
{
	timer_cancel(s->loop, &s->timer);
	s->connected = 0;
	s->switching = 1;
	conn_close(s->conn);
}

/* --- results --- */

static void
fail_result(struct smtp_result *r, enum smtp_cause cause, enum smtp_stage st, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
fail_result(struct smtp_result *r, enum smtp_cause cause, enum smtp_stage st, const char *fmt, ...)
{
	va_list ap;

	memset(r, 0, sizeof *r);
	r->status = SMTP_TEMP;
	r->cause = cause;
	r->stage = st;
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof r->text, fmt, ap);
	va_end(ap);
}

static void
give_back_job(struct session *s, const struct smtp_result *r)
{
	struct job *j = s->job;

	if (j == NULL)
		return;
	s->job = NULL;
	s->ops->on_result(s, j, r);
}

/* target_usable - may target i be tried from this session's source? */
static int
target_usable(const struct session *s, size_t i)
{
	int fam = s->mx->t[i].addr.sa.sa_family;

	if (fam != AF_INET && fam != AF_INET6)
		return 0;
	return s->src_family == AF_UNSPEC || fam == s->src_family;
}

/* next_target - the first usable target at or after i, or mx->n. */
static size_t
next_target(const struct session *s, size_t i)
{
	while (i < s->mx->n && !target_usable(s, i))
		i++;
	return i;
}

/* A target failed before any transaction on it: next target, or give up. */
static void
target_failed(struct session *s, const struct smtp_result *r)
{
	char qmx[300], qr[sizeof r->text * 2];
	size_t next = next_target(s, s->tidx + 1);

	log_info("session", "target failed peer=%s mx=\"%s\" src=%s reason=\"%s\"", s->peer,
	    quote(qmx, sizeof qmx, session_mx(s)), s->src_ip[0] ? s->src_ip : "default",
	    quote(qr, sizeof qr, r->text));
	if (next < s->mx->n && !s->quit_asked) {
		s->tidx = next;
		s->plain_retry = 0;
		session_drop_conn(s);	/* the next target follows from on_closed */
		return;
	}
	give_back_job(s, r);
	s->ops->on_site_failure(s, r);
	session_close(s);
}

/* The previous job's header and body, kept while a send may read them. */
static void
session_release_retired(struct session *s)
{
	if (s->body_retired) {
		msg_body_unref(s->body_retired);
		s->body_retired = NULL;
	}
	free(s->idhdr_retired);
	s->idhdr_retired = NULL;
}

/* --- TLS --- */

/* session_base_policy - the destination's policy, before DANE. */
static enum tls_policy
session_base_policy(const struct session *s)
{
	enum tls_policy p = s->tls_policy ? s->tls_policy : s->cfg->tls;

	return p ? p : TLS_POLICY_OPPORTUNISTIC;
}

/* session_policy - the current connection's policy (session_tls_mode). */
static enum tls_policy
session_policy(const struct session *s)
{
	return s->conn_policy ? s->conn_policy : session_base_policy(s);
}

/* session_tlsa - the TLSA records of the current target (NULL: none). */
static const struct dane_set *
session_tlsa(const struct session *s)
{
	return s->tidx < s->mx->n && s->mx->t[s->tidx].dane == DANE_TLSA ?
	    s->mx->t[s->tidx].tlsa : NULL;
}

/* tls_ctx_for - the client context for ca (NULL: the system store). */
static struct tls_ctx *
tls_ctx_for(const char *ca, char *err, size_t errsz)
{
	struct tls_ctx_slot *e;

	if (ca == NULL)
		ca = "";
	for (e = tls_ctxs; e; e = e->next)
		if (strcmp(e->ca, ca) == 0)
			return e->x;
	e = xcalloc(1, sizeof *e);
	e->x = tls_ctx_client(ca[0] ? ca : NULL, err, errsz);
	if (e->x == NULL) {
		free(e);
		return NULL;
	}
	e->ca = xstrdup(ca);
	e->next = tls_ctxs;
	tls_ctxs = e;
	return e->x;
}

/* fallback_key - the MX host, lower case, for the fallback table. */
static void
fallback_key(const struct session *s, char *buf, size_t n)
{
	snprintf(buf, n, "%s", session_mx(s));
	str_lower(buf);
}

/* fallback_active - a handshake failed at this MX host not long ago. */
static int
fallback_active(struct session *s)
{
	char k[300];
	uint64_t *until;

	fallback_key(s, k, sizeof k);
	if ((until = map_get(&tls_fallback, k)) == NULL)
		return 0;
	if (loop_now(s->loop) < *until)
		return 1;
	free(map_del(&tls_fallback, k));
	return 0;
}

static void
fallback_remember(struct session *s)
{
	char k[300];
	uint64_t now = loop_now(s->loop), *until;

	fallback_key(s, k, sizeof k);
	if ((until = map_get(&tls_fallback, k)) == NULL) {
		if (tls_fallback.len >= TLS_FALLBACK_MAX) {	/* drop what expired */
			const char *key;
			void *v;

			for (size_t i = 0; map_iter(&tls_fallback, &i, &key, &v);)
				if (*(uint64_t *)v <= now)
					free(map_del(&tls_fallback, key));
			if (tls_fallback.len >= TLS_FALLBACK_MAX)
				return;
		}
		until = xmalloc(sizeof *until);
		map_put(&tls_fallback, k, until);
	}
	*until = now + TLS_FALLBACK_MS;
}

/* The port of this session's targets. */
static int
session_port(const struct session *s)
{
	return s->relay.port ? s->relay.port : s->cfg->port;
}

/* The STARTTLS mode of a new connection (its target is s->tidx). */
static void
session_tls_mode(struct session *s)
{
	enum tls_policy base = session_base_policy(s), p;
	enum smtp_tls_mode m = SMTP_TLS_TRY;
	const struct dane_set *tlsa = s->relay.port ? NULL : session_tlsa(s);

	/* DANE (RFC 7672): authenticated TLSA records of this MX host make
	 * TLS mandatory, whatever the destination's policy but disabled. */
	p = dane_policy(base, tlsa);
	s->conn_policy = p;
	if (tlsa != NULL) {
		char q[300], t[200];

		log_info("session", "dane peer=%s mx=\"%s\" tlsa=\"%s\" policy=%s -> %s", s->peer,
		    quote(q, sizeof q, session_mx(s)), dane_to_text(tlsa, t, sizeof t),
		    tls_policy_name(base), tls_policy_name(p));
	}

	s->tls_on = 0;
	s->bye = BYE_NONE;
	s->tls_desc[0] = '\0';
	if (p == TLS_POLICY_DISABLED)
		m = SMTP_TLS_NO;
	else if (p == TLS_POLICY_REQUIRED || p == TLS_POLICY_VERIFY || p == TLS_POLICY_DANE)
		m = SMTP_TLS_MUST;
	else if (s->plain_retry || fallback_active(s)) {
		char q[300];

		m = SMTP_TLS_NO;
		log_info("session", "tls fallback peer=%s mx=\"%s\": clear text (a TLS "
		    "handshake failed there %s)", s->peer, quote(q, sizeof q, session_mx(s)),
		    s->plain_retry ? "just now" : "within the last hour");
	}
	if (s->relay.implicit_tls)
		m = SMTP_TLS_IMPLICIT;	/* the handshake before the greeting */
	smtp_client_set_tls(s->c, m);
	smtp_client_set_bdat(s->c, s->cfg->bdat_threshold, 0);
	smtp_client_set_bdat_pipeline(s->c, s->cfg->bdat_pipeline);
	if (s->relay.user != NULL)
		smtp_client_set_auth(s->c, s->relay.user, s->relay.password, s->relay.mech,
		    s->relay.auth_clear);
}

static void
up_secured(void *arg)
{
	struct session *s = arg;
	struct tls *t = transport_tls(s->tp);
	char q[300], dane[120], dq[140];

	tls_describe(t, s->tls_desc, sizeof s->tls_desc);
	tls_dane_text(t, dane, sizeof dane);
	if (dane[0])
		snprintf(dq, sizeof dq, " dane=\"%s\"", dane);
	else
		dq[0] = '\0';
	log_info("session", "tls established peer=%s mx=\"%s\" policy=%s tls=\"%s\" "
	    "verify=%ld (%s) resumed=%d%s", s->peer, quote(q, sizeof q, session_mx(s)),
	    tls_policy_name(session_policy(s)), s->tls_desc, tls_verify_result(t),
	    tls_verify_text(t), tls_resumed(t), dq);
	if (smtp_client_state(s->c) == SMTP_STATE_TLS)
		smtp_client_tls_started(s->c);
}

static const struct transport_upper session_upper;

/* session_tls_key - the session cache key of s's TLS: MX host, port and
 * policy. Under DANE the key names the records too: a session verified
 * against old records never resumes under new ones. */
static void
session_tls_key(struct session *s, enum tls_policy p, char *key, size_t n)
{
	const struct dane_set *tlsa = session_tlsa(s);

	if (p == TLS_POLICY_DANE && tlsa != NULL)
		snprintf(key, n, "%s:%d:dane:%08x", session_mx(s), session_port(s),
		    (unsigned)tlsa->digest);
	else
		snprintf(key, n, "%s:%d:%s", session_mx(s), session_port(s), tls_policy_name(p));
	str_lower(key);
}

/* Whether s, ready for STARTTLS's handshake, waits for another session's
 * ticket first (tls_should_wait). */
static int
session_tls_wait(struct session *s)
{
	enum tls_policy p = session_policy(s);
	char err[300], key[400];
	struct tls_ctx *x;

	if (s->tls_wait)
		return 1;
	if (s->tls_waited || s->relay.port != 0)
		return 0;
	x = tls_ctx_for(p == TLS_POLICY_VERIFY ? s->cfg->tls_ca_file : NULL, err, sizeof err);
	session_tls_key(s, p, key, sizeof key);
	return tls_should_wait(s, x, key);
}

/* The client got its 220 to STARTTLS and nothing of the raw transport is
 * in flight: the TLS transport takes over; its ClientHello goes next. */
static void
session_start_tls(struct session *s)
{
	enum tls_policy p = session_policy(s);
	char err[300], key[400];
	struct tls_ctx *x = tls_ctx_for(p == TLS_POLICY_VERIFY ? s->cfg->tls_ca_file : NULL,
	    err, sizeof err);
	struct transport *t = NULL;

	const struct dane_set *tlsa = session_tlsa(s);

	session_tls_key(s, p, key, sizeof key);
	if (x != NULL && p == TLS_POLICY_DANE) {
		t = transport_tls_new_dane(&session_upper, s, x, session_mx(s), tlsa, key);
		if (t == NULL)
			snprintf(err, sizeof err, "cannot allocate a TLS connection");
	} else if (x != NULL) {
		t = transport_tls_new(&session_upper, s, x, session_mx(s),
		    p == TLS_POLICY_VERIFY, key);
		if (t == NULL)
			snprintf(err, sizeof err, "cannot allocate a TLS connection");
	}
	s->tls_on = 1;
	if (t == NULL) {
		log_error("session", "tls: %s", err);
		smtp_client_tls_failed(s->c, err);
		return;
	}
	transport_free(s->tp);
	s->tp = t;
}

/*
 * session_tls_bye - the client has closed: send close_notify first (a TLS
 * session not shut down cannot be resumed). Returns 1 while that send is
 * still due (on_sent, or the TLS_BYE_MS timer, calls session_step again).
 * Never waits behind another send: that one may be stuck.
 */
static int
session_tls_bye(struct session *s)
{
	struct iovec iov[CONN_IOV_MAX];
	int n;

	if (s->bye == BYE_SENT) {
		if (conn_send_busy(s->conn))
			return 1;
		s->bye = BYE_DONE;
	}
	if (s->bye != BYE_NONE || transport_tls(s->tp) == NULL)
		return 0;
	s->bye = BYE_DONE;
	if (conn_send_busy(s->conn) || tls_status(transport_tls(s->tp)) != TLS_OPEN)
		return 0;
	transport_close_notify(s->tp);
	if ((n = transport_output(s->tp, iov, CONN_IOV_MAX)) <= 0)
		return 0;
	conn_send(s->conn, iov, n);
	s->bye = BYE_SENT;
	timer_set(s->loop, &s->timer, TLS_BYE_MS, on_timer_bye);
	return 1;
}

/* --- timer --- */

static void
on_timer(struct timer *t)
{
	struct session *s = (struct session *)((char *)t - offsetof(struct session, timer));

	if (s->closing)
		return;
	if (s->idle) {
		session_quit(s);
		return;
	}
	if (!s->connected)
		return;
	session_clock(s);
	smtp_client_timeout(s->c);
	session_step(s);
}

/* close_notify did not go in time: close anyway. */
static void
on_timer_bye(struct timer *t)
{
	struct session *s = (struct session *)((char *)t - offsetof(struct session, timer));

	if (s->closing)
		return;
	s->bye = BYE_DONE;
	session_step(s);
}

/* --- the transport's upper side: the SMTP client --- */

static void
up_deliver(void *arg, const char *buf, size_t n)
{
	struct session *s = arg;

	smtp_client_feed(s->c, buf, n);
}

static int
up_pull(void *arg, struct iovec iov[3])
{
	struct session *s = arg;

	return smtp_client_output(s->c, iov);
}

static void
up_pushed(void *arg, size_t n)
{
	struct session *s = arg;

	smtp_client_sent(s->c, n);
}

static const struct transport_upper session_upper = {
	up_deliver, up_pull, up_pushed, up_secured,
};

/* --- conn callbacks (never called after conn_close, but on_closed) --- */

static void
on_connect(struct conn *c, void *arg, int res)
{
	struct session *s = arg;
	struct smtp_result r;

	(void)c;
	if (res < 0) {
		if (res == -ETIMEDOUT)
			fail_result(&r, SMTP_CAUSE_TIMEOUT, SMTP_STAGE_CONNECT,
			    "connect to %s (%s) timed out", s->peer, session_mx(s));
		else
			fail_result(&r, SMTP_CAUSE_DISCONNECT, SMTP_STAGE_CONNECT,
			    "connect to %s (%s): %s", s->peer, session_mx(s), strerror(-res));
		target_failed(s, &r);
		return;
	}
	s->connected = 1;
	if (s->src_ip[0] == '\0')	/* events name the default source used */
		snprintf(s->used_ip, sizeof s->used_ip, "%s", conn_local_ip(s->conn));
	session_clock(s);
	smtp_client_init(s->c);
	session_tls_mode(s);
	session_step(s);
}

static void
on_recv(struct conn *c, void *arg, const char *buf, size_t n)
{
	struct session *s = arg;

	(void)c;
	if (!s->connected)
		return;
	session_clock(s);
	if (transport_input(s->tp, buf, n) < 0) {
		char q[600];

		log_info("session", "transport failed peer=%s transport=%s reason=\"%s\"", s->peer,
		    transport_name(s->tp), quote(q, sizeof q, transport_err(s->tp)));
		if (smtp_client_state(s->c) == SMTP_STATE_TLS)
			smtp_client_tls_failed(s->c, transport_err(s->tp));
		else
			smtp_client_disconnected(s->c);
	}
	session_step(s);
}

static void
on_eof(struct conn *c, void *arg, int res)
{
	struct session *s = arg;

	(void)c;
	(void)res;
	if (!s->connected)
		return;
	session_clock(s);
	if (transport_tls(s->tp) != NULL)
		tls_input_eof(transport_tls(s->tp));
	smtp_client_disconnected(s->c);
	session_step(s);
}

static void
on_sent(struct conn *c, void *arg, int res)
{
	struct session *s = arg;

	(void)c;
	session_release_retired(s);
	if (!s->connected)
		return;
	session_clock(s);
	if (res < 0)
		smtp_client_disconnected(s->c);
	else
		transport_sent(s->tp, (size_t)res);
	session_step(s);
}

/* Every completion of the conn is in and its fd closed. */
static void
on_conn_closed(struct conn *c, void *arg)
{
	struct session *s = arg;

	(void)c;
	s->conn = NULL;
	s->connected = 0;
	session_release_retired(s);	/* no send can be reading them now */
	if (s->closing) {
		session_maybe_free(s);
		return;
	}
	if (s->switching) {
		/* The next target, with a fresh client and transport: the
		 * old ones' buffers were being sent from until now. */
		s->switching = 0;
		smtp_client_free(s->c);
		transport_free(s->tp);
		s->c = smtp_client_new(s->cfg->ehlo, s->cfg->timeouts);
		s->tp = transport_raw_new(&session_upper, s);
		session_try_target(s);
		return;
	}
	/* Closed without being asked to: cannot happen (the conn only
	 * closes on conn_close). */
	panic("session: connection to %s closed behind the session's back", s->peer);
}

static const struct conn_ops session_conn_ops = {
	on_connect, on_recv, on_eof, on_sent, on_conn_closed,
};

/* --- the step: act on what the client decided --- */

/*
 * session_prefix - what goes above the message (headers.h): the DKIM
 * signature that covers this job (its own, else the body's when the
 * body's was made over the same per-job lines, else none), the body's
 * added fields (Message-ID, Date), the job's lines (List-Unsubscribe,
 * Feedback-ID), then the id header, which no signature covers.
 */
static char *
session_prefix(const struct job *j, const char *id_header, size_t *len)
{
	const struct msg_body *b = j->body;
	const char *sig = NULL;
	size_t siglen = 0, idlen;
	char *id = job_id_header(j, id_header, &idlen);
	struct buf p = { 0 };

	if (j->dkim_sig != NULL) {
		sig = j->dkim_sig;
		siglen = j->dkim_sig_len;
	} else if (b->dkim_sig != NULL && b->dkim_extra != NULL &&
	    b->dkim_extra_len == j->hdrs_len &&
	    (j->hdrs_len == 0 || memcmp(b->dkim_extra, j->hdrs, j->hdrs_len) == 0)) {
		sig = b->dkim_sig;
		siglen = b->dkim_sig_len;
	}
	buf_reserve(&p, siglen + b->added_len + j->hdrs_len + idlen + 1);
	if (sig != NULL)
		buf_append(&p, sig, siglen);
	if (b->added != NULL)
		buf_append(&p, b->added, b->added_len);
	if (j->hdrs != NULL)
		buf_append(&p, j->hdrs, j->hdrs_len);
	buf_append(&p, id, idlen);
	free(id);
	*len = p.len;
	return p.data;
}

static void
start_job(struct session *s, struct job *j)
{
	struct smtp_msg m;
	int busy = s->conn && conn_send_busy(s->conn);

	/* The send in flight may still be reading the previous job's header
	 * and body (a reply can end a transaction before its send
	 * completes): those stay alive until it does. */
	if (busy && s->idhdr_retired == NULL)
		s->idhdr_retired = s->idhdr;
	else
		free(s->idhdr);
	s->idhdr = NULL;
	free(s->env_from);
	if (s->body) {
		if (busy && s->body_retired == NULL)
			s->body_retired = s->body;
		else
			msg_body_unref(s->body);
	}
	s->body = msg_body_ref(j->body);
	s->job = j;
	s->idhdr = session_prefix(j, s->cfg->id_header, &s->idhdr_len);
	s->env_from = job_envelope_from(j, s->cfg->return_path);
	memset(&m, 0, sizeof m);
	m.from = s->env_from;
	m.to = j->rcpt;
	m.prefix = s->idhdr;
	m.prefix_len = s->idhdr_len;
	m.body = s->body;
	session_clock(s);
	smtp_client_start(s->c, &m);
}

static void
session_step(struct session *s)
{
	struct smtp_result r;
	enum smtp_state st;

	if (s->closing || !s->connected)
		return;
again:
	while (smtp_client_take_result(s->c, &r)) {
		struct job *j = s->job;
		s->job = NULL;
		if (j != NULL)
			s->ops->on_result(s, j, &r);
	}
	st = smtp_client_state(s->c);
	if (st == SMTP_STATE_TLS && !s->tls_on && !conn_send_busy(s->conn) &&
	    !session_tls_wait(s)) {
		session_start_tls(s);
		st = smtp_client_state(s->c);
	}
	if (st == SMTP_STATE_CLOSED) {
		if (session_tls_bye(s))
			return;
		if (!s->established && smtp_client_session_error(s->c, &r)) {
			if (r.cause == SMTP_CAUSE_TLS && s->tls_on && !s->plain_retry &&
			    session_policy(s) == TLS_POLICY_OPPORTUNISTIC && !s->quit_asked) {
				/* Opportunistic: the handshake failed; this
				 * target again, now, in clear text. */
				char qmx[300], qr[sizeof r.text * 2];

				log_info("session", "tls failed peer=%s mx=\"%s\" reason=\"%s\": "
				    "retrying in clear text", s->peer,
				    quote(qmx, sizeof qmx, session_mx(s)), quote(qr, sizeof qr, r.text));
				fallback_remember(s);
				s->plain_retry = 1;
				session_drop_conn(s);
				return;
			}
			/* Greeting, EHLO or STARTTLS failed: this target is no good. */
			target_failed(s, &r);
			return;
		}
		if (smtp_client_session_error(s->c, &r) && s->job)
			give_back_job(s, &r);
		session_close(s);
		return;
	}
	if (st == SMTP_STATE_IDLE) {
		if (!s->established) {
			s->established = 1;
			s->ops->on_established(s);
		}
		if (s->job == NULL && !s->quit_asked && !s->idle) {
			struct job *j = NULL;
			if (smtp_client_msgs(s->c) < s->max_msgs)
				j = s->ops->next_job(s);
			if (j != NULL) {
				start_job(s, j);
				/* The client may settle a job without a byte sent
				 * (too large for SIZE, unsafe address). */
				if (smtp_client_state(s->c) == SMTP_STATE_IDLE)
					goto again;
			} else if (smtp_client_msgs(s->c) >= s->max_msgs) {
				s->quit_asked = 1;
				smtp_client_quit(s->c);
			} else {
				s->idle = 1;
				s->ops->on_idle(s, 1);
			}
		} else if (s->quit_asked && s->job == NULL && !s->idle) {
			smtp_client_quit(s->c);
		}
	}
	if (!conn_send_busy(s->conn)) {
		struct iovec iov[CONN_IOV_MAX];
		int n = transport_output(s->tp, iov, CONN_IOV_MAX);
		if (n > 0)
			conn_send(s->conn, iov, n);
	}
	if (s->tls_wait) {
		uint64_t now = loop_now(s->loop);

		timer_set(s->loop, &s->timer, s->tls_wait_until > now ? s->tls_wait_until - now : 0,
		    on_timer_tls_wait);
	} else if (s->idle)
		timer_set(s->loop, &s->timer, s->cfg->idle_ms, on_timer);
	else {
		uint64_t d = smtp_client_deadline(s->c);
		if (d > 0)
			timer_set(s->loop, &s->timer, d, on_timer);
		else
			timer_cancel(s->loop, &s->timer);
	}
}

void
session_give(struct session *s, struct job *j)
{
	if (!s->idle || s->job != NULL)
		panic("session_give on a busy session");
	s->idle = 0;
	s->ops->on_idle(s, 0);
	start_job(s, j);
	session_step(s);
}

void
session_quit(struct session *s)
{
	if (s->closing)
		return;
	s->quit_asked = 1;
	if (!s->connected) {
		session_close(s);
		return;
	}
	if (s->idle) {
		s->idle = 0;
		s->ops->on_idle(s, 0);
		session_clock(s);
		smtp_client_quit(s->c);
	}
	session_step(s);
}

/* --- opening --- */

/* A failure of this host (no socket, a source that cannot be bound, no
 * target of the source's family) is reported from a timer, never from
 * inside session_open: the scheduler must not see the session fail while
 * it is still opening sessions in a loop. */
static void
on_local_fail(struct timer *t)
{
	struct session *s = (struct session *)((char *)t - offsetof(struct session, timer));

	give_back_job(s, &s->local_fail);
	if (s->ops->on_source_failure)
		s->ops->on_source_failure(s, &s->local_fail);
	else
		s->ops->on_site_failure(s, &s->local_fail);
	session_close(s);
}

static void
local_fail(struct session *s, const char *what)
{
	char q[600];

	fail_result(&s->local_fail, SMTP_CAUSE_LOCAL, SMTP_STAGE_CONNECT, "%s", what);
	log_info("session", "source failed src=%s peer=%s reason=\"%s\"",
	    s->src_ip[0] ? s->src_ip : "default", s->peer[0] ? s->peer : "none",
	    quote(q, sizeof q, what));
	timer_set(s->loop, &s->timer, 0, on_local_fail);
}

static void
session_try_target(struct session *s)
{
	const struct dns_target *t;
	union dns_addr dst;
	char err[300];

again:
	t = &s->mx->t[s->tidx];
	dst = t->addr;

	if (dst.sa.sa_family == AF_INET6)
		dst.v6.sin6_port = htons((uint16_t)session_port(s));
	else
		dst.v4.sin_port = htons((uint16_t)session_port(s));
	conn_peer_text(&dst.sa, s->peer, sizeof s->peer);
	if (log_level_max >= LOG_DEBUG) {
		char q[300];
		log_debug("session", "connecting peer=%s mx=\"%s\" pref=%d src=%s", s->peer,
		    quote(q, sizeof q, t->host), t->pref, s->src_ip[0] ? s->src_ip : "default");
	}
	s->conn = conn_open(s->loop, &session_conn_ops, s, &dst.sa, s->src_ip,
	    s->cfg->connect_ms, err, sizeof err);
	if (s->conn == NULL) {
		/* This host cannot reach that kind of address at all (IPv6
		 * disabled, say): the next target may do; nothing has been
		 * reported yet, so no callback runs from here. A failed bind
		 * or a lack of descriptors is the source's fault. */
		size_t next = next_target(s, s->tidx + 1);
		if ((errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT) && next < s->mx->n) {
			char q[400];
			log_info("session", "target skipped peer=%s src=%s reason=\"%s\"", s->peer,
			    s->src_ip[0] ? s->src_ip : "default", quote(q, sizeof q, err));
			s->tidx = next;
			goto again;
		}
		local_fail(s, err);
	}
}

/* no_family_text - why no target suits this source. */
static void
no_family_text(const struct session *s, char *buf, size_t n)
{
	int v6 = s->src_family == AF_INET6;

	snprintf(buf, n, "source %s is %s and every MX address of this destination is %s "
	    "(%zu address(es), first host %s)", s->src_ip, v6 ? "IPv6" : "IPv4",
	    v6 ? "IPv4" : "IPv6", s->mx->n, s->mx->n ? s->mx->t[0].host : "?");
}

struct session *
session_open(struct loop *l, const struct session_ops *ops, const struct session_cfg *cfg,
    struct mxset *mx, const char *src_ip, unsigned max_msgs, void *owner)
{
	return session_open_relay(l, ops, cfg, mx, src_ip, max_msgs, owner, NULL);
}

struct session *
session_open_relay(struct loop *l, const struct session_ops *ops, const struct session_cfg *cfg,
    struct mxset *mx, const char *src_ip, unsigned max_msgs, void *owner,
    const struct session_relay *relay)
{
	struct session *s = xcalloc(1, sizeof *s);

	if (relay != NULL)
		s->relay = *relay;

	s->max_msgs = max_msgs ? max_msgs : cfg->max_msgs;
	s->loop = l;
	s->ops = ops;
	s->cfg = cfg;
	s->owner = owner;
	s->mx = mxset_ref(mx);
	s->c = smtp_client_new(cfg->ehlo, cfg->timeouts);
	s->tp = transport_raw_new(&session_upper, s);
	s->anext = all_sessions;
	if (all_sessions)
		all_sessions->aprev = s;
	all_sessions = s;
	if (src_ip)
		snprintf(s->src_ip, sizeof s->src_ip, "%s", src_ip);
	s->src_family = conn_ip_family(s->src_ip);
	if (s->src_family < 0) {
		char what[128];
		snprintf(what, sizeof what, "source %s is not an IP address", s->src_ip);
		local_fail(s, what);
		return s;
	}
	s->tidx = next_target(s, 0);
	if (s->tidx >= mx->n) {
		char what[512];
		s->tidx = 0;
		no_family_text(s, what, sizeof what);
		local_fail(s, what);
		return s;
	}
	session_try_target(s);
	return s;
}

/*
 * session_abort_all - the engine is stopping and cannot wait any longer:
 * every session gives its job back (TEMP, "engine stopped"; the scheduler
 * defers it) and closes now. Completions still arrive; the sessions are
 * freed, and on_closed called, as they do.
 */
void
session_abort_all(void)
{
	struct session *s, *next;
	struct smtp_result r;

	for (s = all_sessions; s; s = next) {
		next = s->anext;
		if (s->closing)
			continue;
		fail_result(&r, SMTP_CAUSE_DISCONNECT, SMTP_STAGE_CONNECT,
		    "engine stopped during the transaction (%s); not known whether the "
		    "server accepted it", s->peer);
		give_back_job(s, &r);
		session_close(s);
	}
}
