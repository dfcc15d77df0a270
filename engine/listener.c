/*
 * listener.c - the inbound SMTP server (inbound.listen) on the engine's
 * io_uring loop: accepts, sessions, timeouts, the recipient-domain policy,
 * optional STARTTLS, and the hand-off of each message to Redis.
 *
 * API: listener.h. Policy, in the order a client meets it:
 *   connect      more than inbound.max_sessions open: 421 4.3.2, closed
 *   MAIL         any sender, <> included (DSNs come from the null sender);
 *                SIZE= above inbound.max_size: 552 5.3.4 (smtp_server.c)
 *   RCPT         only an address whose domain is one of inbound.domains
 *                (exact, case-insensitive); anything else 550 5.7.1: no relay
 *   DATA         more than max_size bytes: 552 5.3.4 after the dot
 *   the dot      XADD to PREFIXinbound; 250 once Redis answered with the
 *                entry id, 451 4.3.0 on an error or without a connection
 *   timeouts     inbound.timeout between commands (and between DATA
 *                bytes), inbound.data_timeout for a whole DATA: 421 4.4.2
 * One log line per accepted message and per refusal; never a body.
 *
 * I/O (as volley-sink's sessions): plain process fds from one multishot
 * accept; one multishot recv per session on the loop's shared buffer ring,
 * bytes parsed at once and the buffer recycled; replies collected in `out`
 * and sent at the end of the turn, one send in flight (`tx`). While the
 * message is with Redis the parser waits; input keeps arriving into `in`
 * (at most MAX_WAIT_INPUT bytes, then the session is closed).
 *
 * Lifetime (counted teardown): closing flushes what is queued, shuts the
 * socket down (which ends the multishot recv) and frees the session in
 * the end-of-turn hook only once no send is in flight, the recv has ended
 * and no Redis call is outstanding (rq_inbound_add always calls back).
 */
#include "listener.h"
#include "config.h"
#include "loop.h"
#include "redis.h"
#include "smtp_server.h"
#include "tls.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))
#define MAX_WAIT_INPUT (1024 * 1024)
/* Replies queued and not yet taken by the client: past this, input is not
 * parsed (it waits in `in`, itself capped by MAX_WAIT_INPUT), so a client
 * that pipelines without reading cannot grow our memory. */
#define MAX_WAIT_OUTPUT (64 * 1024)
/* A closing session whose last send does not complete (a client that
 * stopped reading) is cut off after this. */
#define CLOSE_GRACE_MS 10000
#define SWEEP_MS 1000

struct lsess {
	struct io_op rx_op, tx_op;
	struct listener *ls;
	struct lsess *prev, *next;	/* all sessions */
	struct lsess *flush_next;
	struct smtp_server smtp;
	struct tls *tls;		/* after STARTTLS */
	struct buf in;			/* input not parsed yet */
	struct buf out;			/* replies not yet sent */
	struct buf tx;			/* the send in flight */
	size_t tx_off;
	uint64_t id;
	uint64_t last_ms;		/* last input */
	uint64_t data_ms;		/* DATA began (0: not in DATA) */
	uint64_t closing_ms;		/* the sweep first saw it closing (0: not yet) */
	int fd;
	char client[INET6_ADDRSTRLEN];
	unsigned rx_armed:1, tx_busy:1, on_flush:1, closing:1, shut:1, tls_want:1,
	    waiting:1, counted:1;
};

struct listener {
	struct loop *loop;
	struct rq *rq;
	const struct config *cfg;	/* the first one: a reload keeps the listener */
	struct tls_ctx *tls;
	struct io_op accept_op;
	struct timer sweep, retry;
	struct loop_hook hook;
	struct lsess *all, *flush;
	char hostname[256];
	char name[80];			/* the listen address */
	int fd;
	unsigned sessions;		/* open (allocated) sessions */
	unsigned active;		/* of those, counted against max_sessions */
	uint64_t next_id;
	int stopping, accept_armed;
};

static void sess_close(struct lsess *s);
static void sess_drain(struct lsess *s);

static void
sess_want_flush(struct lsess *s)
{
	if (s->on_flush)
		return;
	s->on_flush = 1;
	s->flush_next = s->ls->flush;
	s->ls->flush = s;
}

static void
emit(struct lsess *s, const char *p, size_t n)
{
	buf_append(&s->out, p, n);
	sess_want_flush(s);
}

static void
reply(struct lsess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
reply(struct lsess *s, const char *fmt, ...)
{
	char line[512];
	va_list va;
	int n;

	va_start(va, fmt);
	n = vsnprintf(line, sizeof line - 2, fmt, va);
	va_end(va);
	if (n < 0)
		return;
	if ((size_t)n > sizeof line - 3)
		n = (int)sizeof line - 3;
	memcpy(line + n, "\r\n", 2);
	emit(s, line, (size_t)n + 2);
}

/* --- policy --- */

/* domain_ok - the domain of addr is one of inbound.domains (lower-cased). */
static int
domain_ok(const struct config *cfg, const char *addr)
{
	const char *at = strrchr(addr, '@');

	if (at == NULL || at[1] == '\0')
		return 0;
	for (size_t i = 0; i < cfg->ninbound_domains; i++)
		if (strcasecmp(at + 1, cfg->inbound_domains[i]) == 0)
			return 1;
	return 0;
}

/* The envelope for logs: quoted so that a peer cannot forge fields. */
static void
log_refusal(struct lsess *s, const char *what, const char *detail)
{
	char q[300];

	log_quote(q, sizeof q, detail);
	log_info("inbound", "s=%llu client=%s refused: %s \"%s\"", (unsigned long long)s->id,
	    s->client, what, q);
}

/* stored - the answer to the dot, once Redis took the message (or not). */
static void
stored(struct lsess *s, int ok)
{
	struct smtp_server *m = &s->smtp;
	char from[300], rc[300];
	struct buf rcpts = { 0 };

	s->waiting = 0;
	for (size_t i = 0; i < m->nrcpt; i++)
		buf_appendf(&rcpts, "%s%s", i ? "," : "", m->rcpts[i]);
	buf_append(&rcpts, "", 1);
	log_quote(from, sizeof from, m->from);
	log_quote(rc, sizeof rc, rcpts.data);
	buf_free(&rcpts);
	if (ok) {
		log_info("inbound", "s=%llu client=%s accepted from=<%s> rcpt=<%s> size=%llu",
		    (unsigned long long)s->id, s->client, from, rc, (unsigned long long)m->bytes);
		if (!s->closing)
			reply(s, "250 2.0.0 Ok: stored");
		smtp_server_done(m, 250);
	} else {
		log_warn("inbound", "s=%llu client=%s deferred from=<%s> rcpt=<%s> size=%llu: "
		    "Redis did not store it", (unsigned long long)s->id, s->client, from, rc,
		    (unsigned long long)m->bytes);
		if (!s->closing)
			reply(s, "451 4.3.0 Error: queue unavailable, try again later");
		smtp_server_done(m, 451);
	}
	if (s->ls->stopping && !s->closing) {
		reply(s, "421 4.3.2 %s Service shutting down", s->ls->hostname);
		sess_close(s);
	}
}

static void
on_stored(void *arg, int ok)
{
	struct lsess *s = arg;

	stored(s, ok);
	if (s->closing) {
		sess_want_flush(s);
		return;
	}
	sess_drain(s);	/* what was pipelined behind the message */
}

/* The message ended: too big, or off to Redis. Returns 1 while waiting. */
static int
on_dot(struct lsess *s)
{
	struct smtp_server *m = &s->smtp;
	struct buf rcpts = { 0 };
	char source[80];
	int r;

	if (m->too_big) {
		char sz[32];
		snprintf(sz, sizeof sz, "%llu bytes", (unsigned long long)m->bytes);
		log_refusal(s, "message too big", sz);
		emit(s, m->reply.data, m->reply.len);
		smtp_server_done(m, 552);
		return 0;
	}
	for (size_t i = 0; i < m->nrcpt; i++)
		buf_appendf(&rcpts, "%s%s", i ? "," : "", m->rcpts[i]);
	buf_append(&rcpts, "", 1);
	snprintf(source, sizeof source, "smtp %s", s->client);
	s->waiting = 1;
	r = rq_inbound_add(s->ls->rq, m->body.data, m->body.len, rcpts.data, m->from, source,
	    on_stored, s);
	buf_free(&rcpts);
	if (r != 0) {
		stored(s, 0);	/* no connection: 451 now */
		return 0;
	}
	return 1;
}

/* handle - one event of the protocol core. Returns 1 when the parser must
 * wait (the message is with Redis). */
static int
handle(struct lsess *s, enum smtp_srv_event ev)
{
	struct smtp_server *m = &s->smtp;
	const struct config *cfg = s->ls->cfg;

	switch (ev) {
	case SMTP_SRV_NONE:
		return 0;
	case SMTP_SRV_REPLY:
		if (strncmp(m->reply.data, "552", 3) == 0)
			log_refusal(s, "declared size too big", m->from ? m->from : "");
		emit(s, m->reply.data, m->reply.len);
		return 0;
	case SMTP_SRV_RCPT:
		if (!domain_ok(cfg, m->rcpt)) {
			log_refusal(s, "relaying denied for", m->rcpt);
			reply(s, "550 5.7.1 <%s>: Relay access denied", m->rcpt);
			smtp_server_done(m, 550);
			return 0;
		}
		break;
	case SMTP_SRV_DATA:
		s->data_ms = loop_now(s->ls->loop);
		if (s->data_ms == 0)
			s->data_ms = 1;
		break;
	case SMTP_SRV_DOT:
		s->data_ms = 0;
		return on_dot(s);
	case SMTP_SRV_QUIT:
		emit(s, m->reply.data, m->reply.len);
		smtp_server_done(m, 221);
		sess_close(s);
		return 0;
	case SMTP_SRV_STARTTLS:
		s->tls_want = 1;	/* sess_flush() starts TLS after the 220 */
		break;
	default:
		break;
	}
	emit(s, m->reply.data, m->reply.len);
	smtp_server_done(m, atoi(m->reply.data));
	if (s->ls->stopping && m->from == NULL && m->state == SMTP_SRV_ST_CMD && !s->tls_want) {
		reply(s, "421 4.3.2 %s Service shutting down", s->ls->hostname);
		sess_close(s);
	}
	return 0;
}

/* feed - parse plaintext; returns the bytes used (the rest waits in `in`). */
static size_t
feed(struct lsess *s, const char *p, size_t n)
{
	size_t off = 0;

	while (off < n && !s->closing && !s->waiting &&
	    s->out.len + s->tx.len <= MAX_WAIT_OUTPUT) {
		enum smtp_srv_event ev;

		if (s->tls_want)
			return n;	/* pipelined after STARTTLS: dropped (RFC 3207) */
		off += smtp_server_feed(&s->smtp, p + off, n - off, &ev);
		if (ev == SMTP_SRV_NONE)
			break;
		handle(s, ev);
	}
	return s->tls_want ? n : off;
}

static void
in_check(struct lsess *s)
{
	if (s->closing) {
		buf_free(&s->in);
		return;
	}
	if (s->in.len > MAX_WAIT_INPUT) {
		log_refusal(s, "too much pipelined input", "");
		sess_close(s);
		buf_free(&s->in);
	} else if (s->in.len == 0)
		buf_free(&s->in);
}

static void
sess_drain(struct lsess *s)
{
	size_t c;

	if (s->in.len == 0)
		return;
	c = feed(s, s->in.data, s->in.len);
	buf_consume(&s->in, c);
	in_check(s);
}

static void
plain_input(struct lsess *s, const char *p, size_t n)
{
	if (s->in.len == 0 && !s->waiting) {
		size_t c = feed(s, p, n);
		if (c < n && !s->closing)
			buf_append(&s->in, p + c, n - c);
	} else {
		buf_append(&s->in, p, n);
		if (!s->waiting)
			sess_drain(s);
	}
	in_check(s);
}

static void
tls_input_bytes(struct lsess *s, const char *p, size_t n)
{
	char tmp[16384];
	size_t k;

	if (tls_input(s->tls, p, n) == TLS_FAILED) {
		log_info("inbound", "s=%llu client=%s TLS handshake failed: %s",
		    (unsigned long long)s->id, s->client, tls_error(s->tls));
		sess_close(s);
		return;
	}
	while (!s->closing && (k = tls_read(s->tls, tmp, sizeof tmp)) > 0)
		plain_input(s, tmp, k);
	if (!s->closing && (tls_status(s->tls) == TLS_FAILED || tls_status(s->tls) == TLS_CLOSED))
		sess_close(s);
	sess_want_flush(s);
}

/* --- I/O and lifetime --- */

static void
sess_free(struct lsess *s)
{
	struct listener *ls = s->ls;

	close(s->fd);
	ls->sessions--;
	if (s->counted)
		ls->active--;
	if (s->prev)
		s->prev->next = s->next;
	else
		ls->all = s->next;
	if (s->next)
		s->next->prev = s->prev;
	smtp_server_free(&s->smtp);
	tls_free(s->tls);
	buf_free(&s->in);
	buf_free(&s->out);
	buf_free(&s->tx);
	free(s);
}

static void
sess_close(struct lsess *s)
{
	if (s->closing)
		return;
	s->closing = 1;
	sess_want_flush(s);	/* `in` may be being parsed: freed later */
}

/* sess_flush - send what is queued; a closing session, once drained, is
 * shut down and freed. Only from the end-of-turn hook. */
static void
sess_flush(struct lsess *s)
{
	if (s->tx_busy)
		return;		/* on_tx brings us back */
	if (tls_stage_out(s->tls, &s->out, &s->tx) < 0)
		s->closing = 1;
	if (s->tls_want && !s->closing) {
		/* The "220 Ready" is in tx, in the clear; all later bytes are TLS. */
		s->tls_want = 0;
		s->tls = tls_server_new(s->ls->tls);
		if (s->tls == NULL)
			s->closing = 1;
		else
			smtp_server_tls_on(&s->smtp);
	}
	if (s->tx.len > 0) {
		s->tx_busy = 1;
		s->tx_off = 0;
		loop_send(s->ls->loop, s->fd, s->tx.data, s->tx.len, &s->tx_op);
		return;
	}
	if (!s->closing)
		return;
	if (!s->shut) {
		s->shut = 1;
		shutdown(s->fd, SHUT_RDWR);	/* ends the multishot recv */
	}
	if (!s->rx_armed && !s->waiting)
		sess_free(s);
}

static void
on_tx(struct io_op *op, int res, uint32_t flags)
{
	struct lsess *s = container_of(op, struct lsess, tx_op);

	(void)flags;
	s->tx_busy = 0;
	if (res < 0) {
		s->closing = 1;
		buf_free(&s->tx);
		buf_free(&s->out);
		sess_want_flush(s);
		return;
	}
	s->tx_off += (size_t)res;
	if (s->tx_off < s->tx.len) {	/* short send: the rest */
		s->tx_busy = 1;
		loop_send(s->ls->loop, s->fd, s->tx.data + s->tx_off, s->tx.len - s->tx_off,
		    &s->tx_op);
		return;
	}
	buf_free(&s->tx);
	s->tx_off = 0;
	/* Input held back while replies waited for the client: on with it. */
	if (!s->closing && !s->waiting && s->in.len > 0)
		sess_drain(s);
	if (s->out.len > 0 || s->closing || (s->tls && tls_wire_pending(s->tls)))
		sess_want_flush(s);
}

static void
on_rx(struct io_op *op, int res, uint32_t flags)
{
	struct lsess *s = container_of(op, struct lsess, rx_op);
	struct loop *l = s->ls->loop;

	if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
		unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
		if (!s->closing) {
			s->last_ms = loop_now(l);
			if (s->tls)
				tls_input_bytes(s, loop_buf(l, bid), (size_t)res);
			else if (!s->tls_want)
				plain_input(s, loop_buf(l, bid), (size_t)res);
		}
		loop_buf_recycle(l, bid);
	}
	if (flags & IORING_CQE_F_MORE)
		return;
	s->rx_armed = 0;
	if (!s->closing && (res > 0 || res == -ENOBUFS)) {
		s->rx_armed = 1;	/* buffers are back in the ring: re-arm */
		loop_recv_multishot(l, s->fd, &s->rx_op);
		return;
	}
	if (!s->closing) {	/* EOF or an error from the peer */
		if (s->smtp.state == SMTP_SRV_ST_DATA || s->waiting)
			log_info("inbound", "s=%llu client=%s closed the connection in the middle "
			    "of a message", (unsigned long long)s->id, s->client);
		s->closing = 1;
		buf_free(&s->in);
	}
	sess_want_flush(s);
}

static void
sess_start(struct listener *ls, int fd)
{
	struct lsess *s = xcalloc(1, sizeof *s);
	struct smtp_server_conf sc;
	struct sockaddr_storage peer;
	socklen_t sl = sizeof peer;

	memset(&peer, 0, sizeof peer);
	if (getpeername(fd, (struct sockaddr *)&peer, &sl) == 0 && peer.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&peer)->sin_addr, s->client,
		    sizeof s->client);
	else if (peer.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&peer)->sin6_addr, s->client,
		    sizeof s->client);
	else
		snprintf(s->client, sizeof s->client, "unknown");
	memset(&sc, 0, sizeof sc);
	sc.hostname = ls->hostname;
	sc.max_size = ls->cfg->inbound_max_size;
	sc.max_line = 2048;
	sc.max_rcpts = 100;
	sc.starttls = ls->tls != NULL;
	sc.keep_body = 1;
	smtp_server_init(&s->smtp, &sc);
	s->ls = ls;
	s->fd = fd;
	s->id = ++ls->next_id;
	s->last_ms = loop_now(ls->loop);
	s->rx_op.cb = on_rx;
	s->tx_op.cb = on_tx;
	s->next = ls->all;
	if (ls->all)
		ls->all->prev = s;
	ls->all = s;
	ls->sessions++;
	s->rx_armed = 1;
	loop_recv_multishot(ls->loop, fd, &s->rx_op);
	if (ls->active >= ls->cfg->inbound_max_sessions) {
		log_refusal(s, "too many sessions", "inbound.max_sessions");
		reply(s, "421 4.3.2 %s Too many sessions, try again later", ls->hostname);
		sess_close(s);
		return;
	}
	s->counted = 1;
	ls->active++;
	log_debug("inbound", "s=%llu connect from %s", (unsigned long long)s->id, s->client);
	reply(s, "220 %s ESMTP volley", ls->hostname);
}

/* --- accepting --- */

static void
accept_arm(struct listener *ls)
{
	ls->accept_armed = 1;
	loop_accept_multishot(ls->loop, ls->fd, &ls->accept_op);
}

static void
on_accept_retry(struct timer *t)
{
	struct listener *ls = container_of(t, struct listener, retry);

	if (!ls->stopping)
		accept_arm(ls);
}

static void
on_accept(struct io_op *op, int res, uint32_t flags)
{
	struct listener *ls = container_of(op, struct listener, accept_op);
	static uint64_t warned_ms;

	if (res >= 0) {
		if (ls->stopping)
			close(res);
		else
			sess_start(ls, res);
	} else if (res != -ECONNABORTED && res != -EINTR && res != -EAGAIN && res != -ECANCELED) {
		uint64_t now = loop_now(ls->loop);
		if (now - warned_ms > 5000 || warned_ms == 0) {
			log_warn("inbound", "accept on %s: %s", ls->name, strerror(-res));
			warned_ms = now;
		}
	}
	if (flags & IORING_CQE_F_MORE)
		return;
	ls->accept_armed = 0;
	if (ls->stopping) {
		if (ls->fd >= 0) {
			close(ls->fd);
			ls->fd = -1;
		}
		return;
	}
	if (res < 0 && (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS))
		timer_set(ls->loop, &ls->retry, 100, on_accept_retry);	/* don't spin */
	else
		accept_arm(ls);
}

/* --- timeouts, end of turn --- */

static void
on_sweep(struct timer *t)
{
	struct listener *ls = container_of(t, struct listener, sweep);
	uint64_t now = loop_now(ls->loop);

	for (struct lsess *s = ls->all; s; s = s->next) {
		if (s->closing) {
			if (s->closing_ms == 0)
				s->closing_ms = now;
			else if (now - s->closing_ms > CLOSE_GRACE_MS && !s->shut) {
				/* Its last replies are not being read: cut it off
				 * (the send fails, and the session is freed). */
				s->shut = 1;
				shutdown(s->fd, SHUT_RDWR);
			}
			continue;
		}
		if (s->waiting)
			continue;
		if (s->tx_busy && now - s->last_ms > ls->cfg->inbound_timeout_ms) {
			/* Sending to a client that neither reads nor writes. */
			log_info("inbound", "s=%llu client=%s does not read its replies; closing",
			    (unsigned long long)s->id, s->client);
			sess_close(s);
			continue;
		}
		if (s->data_ms && now - s->data_ms > ls->cfg->inbound_data_timeout_ms) {
			log_refusal(s, "DATA took too long", "inbound.data_timeout");
			reply(s, "421 4.4.2 %s Error: timeout exceeded", ls->hostname);
			sess_close(s);
		} else if (now - s->last_ms > ls->cfg->inbound_timeout_ms) {
			log_info("inbound", "s=%llu client=%s idle timeout", (unsigned long long)s->id,
			    s->client);
			reply(s, "421 4.4.2 %s Error: timeout exceeded", ls->hostname);
			sess_close(s);
		}
	}
	timer_set(ls->loop, &ls->sweep, SWEEP_MS, on_sweep);
}

static void
on_turn_end(void *arg)
{
	struct listener *ls = arg;

	while (ls->flush != NULL) {
		struct lsess *s = ls->flush;
		ls->flush = s->flush_next;
		s->on_flush = 0;
		sess_flush(s);
	}
}

/* --- the API --- */

/* parse_listen - "ADDR:PORT" or "[v6]:PORT" (checked by config.c). */
static socklen_t
parse_listen(const char *spec, struct sockaddr_storage *ss)
{
	char host[128];
	const char *colon;
	long port;
	char *end;

	memset(ss, 0, sizeof *ss);
	if (spec[0] == '[') {
		const char *rb = strchr(spec, ']');
		if (rb == NULL || rb[1] != ':' || (size_t)(rb - spec) >= sizeof host)
			return 0;
		memcpy(host, spec + 1, (size_t)(rb - spec - 1));
		host[rb - spec - 1] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(spec, ':');
		if (colon == NULL || (size_t)(colon - spec) >= sizeof host)
			return 0;
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = '\0';
	}
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || end == colon + 1 || port < 1 || port > 65535)
		return 0;
	if (spec[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		return inet_pton(AF_INET6, host, &s6->sin6_addr) == 1 ? sizeof *s6 : 0;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		return inet_pton(AF_INET, host, &s4->sin_addr) == 1 ? sizeof *s4 : 0;
	}
}

struct listener *
listener_new(struct loop *l, struct rq *q, const struct config *cfg)
{
	struct listener *ls;
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1;

	if (cfg->inbound_listen == NULL)
		return NULL;
	sl = parse_listen(cfg->inbound_listen, &ss);
	if (sl == 0)
		fatal("inbound.listen %s: not ADDR:PORT", cfg->inbound_listen);
	ls = xcalloc(1, sizeof *ls);
	ls->loop = l;
	ls->rq = q;
	ls->cfg = cfg;
	snprintf(ls->name, sizeof ls->name, "%s", cfg->inbound_listen);
	snprintf(ls->hostname, sizeof ls->hostname, "%s", cfg->ehlo ? cfg->ehlo : "localhost");
	if (cfg->inbound_tls_cert != NULL) {
		char err[256];
		ls->tls = tls_ctx_server(cfg->inbound_tls_cert, cfg->inbound_tls_key, ls->hostname,
		    err, sizeof err);
		if (ls->tls == NULL)
			fatal("inbound.tls_cert %s: %s", cfg->inbound_tls_cert, err);
	}
	ls->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls->fd < 0)
		fatal("inbound.listen %s: socket: %s", ls->name, strerror(errno));
	setsockopt(ls->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(ls->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (ss.ss_family == AF_INET6)
		setsockopt(ls->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(ls->fd, (struct sockaddr *)&ss, sl) != 0)
		fatal("inbound.listen %s: bind: %s", ls->name, strerror(errno));
	if (listen(ls->fd, 512) != 0)
		fatal("inbound.listen %s: listen: %s", ls->name, strerror(errno));
	ls->accept_op.cb = on_accept;
	accept_arm(ls);
	ls->hook.fn = on_turn_end;
	ls->hook.arg = ls;
	loop_add_hook(l, &ls->hook);
	timer_set(l, &ls->sweep, SWEEP_MS, on_sweep);
	log_info("inbound", "listening on %s for %zu domain(s), max %u sessions, max size %llu%s",
	    ls->name, cfg->ninbound_domains, cfg->inbound_max_sessions,
	    (unsigned long long)cfg->inbound_max_size, ls->tls ? ", STARTTLS" : "");
	return ls;
}

void
listener_stop(struct listener *ls)
{
	if (ls == NULL || ls->stopping)
		return;
	ls->stopping = 1;
	timer_cancel(ls->loop, &ls->retry);
	if (ls->accept_armed)
		loop_cancel_fd(ls->loop, ls->fd);	/* the completion closes the fd */
	else if (ls->fd >= 0) {
		close(ls->fd);
		ls->fd = -1;
	}
	/* Sessions between transactions go now; the others after their dot. */
	for (struct lsess *s = ls->all; s; s = s->next)
		if (!s->closing && !s->waiting && s->smtp.from == NULL &&
		    s->smtp.state == SMTP_SRV_ST_CMD && s->smtp.pending == SMTP_SRV_NONE) {
			reply(s, "421 4.3.2 %s Service shutting down", ls->hostname);
			sess_close(s);
		}
	log_info("inbound", "stopped accepting on %s; %u session(s) open", ls->name, ls->sessions);
}

void
listener_abort(struct listener *ls)
{
	if (ls == NULL)
		return;
	listener_stop(ls);
	for (struct lsess *s = ls->all; s; s = s->next)
		if (!s->closing) {
			reply(s, "421 4.3.2 %s Service shutting down", ls->hostname);
			sess_close(s);
		}
}

unsigned
listener_sessions(const struct listener *ls)
{
	return ls ? ls->sessions : 0;
}

int
listener_free(struct listener *ls)
{
	if (ls == NULL)
		return 0;
	timer_cancel(ls->loop, &ls->sweep);
	timer_cancel(ls->loop, &ls->retry);
	if (ls->sessions > 0 || ls->accept_armed)
		return -1;
	if (ls->fd >= 0)
		close(ls->fd);
	tls_ctx_free(ls->tls);
	/* Its end-of-turn hook stays in the loop's list: free the loop next,
	 * without another turn. */
	free(ls);
	return 0;
}
