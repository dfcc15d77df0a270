/*
 * sink_session.c - one SMTP server session of volley-sink on the io_uring
 * loop: STARTTLS through memory BIOs, rule/tag verdicts, delayed replies,
 * capture. The protocol itself (command parsing, sequence, DATA
 * dot-unstuffing, line and size limits, PIPELINING order) is the pure core
 * engine/smtp_server.c, shared with the engine's inbound listener: this
 * file feeds it bytes and answers its decisions.
 *
 * API (sink.h): sink_session_start(fd) on an accepted socket, or
 * sink_session_start_direct(slot, peer, local) on a direct descriptor,
 * sink_session_flush_all() at the end of every loop turn,
 * sink_session_sweep(now) every few seconds (idle timeout).
 *
 * I/O: one multishot recv per session on the loop's shared buffer ring
 * (on a direct descriptor every op names the slot with IOSQE_FIXED_FILE:
 * recv, send, shutdown, and close_direct via sink_direct_release());
 * each completion's bytes are parsed at once and the buffer recycled, so
 * an idle session holds no receive buffer: only struct session (~250
 * bytes) and the kernel socket. Leftovers (a partial command line, input
 * that arrives while a reply is being delayed) go to a small heap buffer
 * that is freed as soon as it empties. Replies are appended to `out`
 * while input is parsed and sent at the end of the turn, one send in flight
 * per session (`tx`): a PIPELINING client gets one segment per batch.
 *
 * Delays: a verdict with a delay (or a stall) pauses the parser; input keeps
 * arriving into `in`; the timer emits the reply and resumes parsing, so
 * replies stay in order. A dripped reply (rule `drip`) pauses it the same
 * way: the timer sends `drip_bytes` of the reply every `drip_ms`, and
 * parsing resumes once the last piece is out.
 *
 * Lifetime (counted teardown): closing sets `closing`, flushes
 * what is queued, shuts the socket down (which ends the multishot recv),
 * and frees the session only in sess_flush() — reached only from the end
 * of turn hook, never from inside a completion — once no send is in flight,
 * the recv has ended and (direct descriptors) the shutdown has completed.
 */
#include "sink.h"
#include "loop.h"
#include "smtp_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>


struct sink_server sink;

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))
#define MAX_PAUSED_INPUT (1024 * 1024)

struct session {
	struct io_op rx_op, tx_op, shut_op;
	struct timer timer;
	struct session *prev, *next;	/* all sessions */
	struct session *flush_next;
	struct sink_peer *client, *local;
	struct smtp_server smtp;	/* the protocol state (helo, transaction) */
	struct tls *tls;		/* after STARTTLS (engine/tls.c) */
	struct buf in;			/* unparsed input */
	struct buf out;			/* replies not yet sent */
	struct buf tx;			/* the send in flight */
	struct buf pending;		/* a delayed reply */
	size_t tx_off;
	uint64_t id;
	uint64_t last_ms;
	int fd;				/* a process fd, or the slot when direct */
	int pending_code;
	uint16_t cport;
	unsigned rx_armed:1, tx_busy:1, on_flush:1, paused:1, closing:1, shut:1,
	    tls_want:1, tls_on:1, pending_close:1, pending_stall:1,
	    direct:1, shut_busy:1;
	uint32_t drip_bytes, drip_ms;	/* dripping `pending` (0: not) */
};

static struct session *all_head;
static struct session *flush_head;
static uint64_t msg_seq;

static void sess_close(struct session *s);
static void sess_drain_in(struct session *s);
static void on_timer(struct timer *t);

static void
sess_want_flush(struct session *s)
{
	if (s->on_flush)
		return;
	s->on_flush = 1;
	s->flush_next = flush_head;
	flush_head = s;
}

/* --- output --- */

static void
emit(struct session *s, struct buf *r, int code)
{
	if (code > 0)
		sink_stats_code(s->client, s->local, code);
	if (s->out.len == 0) {
		buf_free(&s->out);
		s->out = *r;
		memset(r, 0, sizeof *r);
	} else {
		buf_append(&s->out, r->data, r->len);
		buf_free(r);
	}
	sess_want_flush(s);
}

static void
reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* reply - a plain reply that no rule or tag can change. */
static void
reply(struct session *s, const char *fmt, ...)
{
	char line[1024];
	struct buf r = { 0 };
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
	buf_append(&r, line, (size_t)n + 2);
	emit(s, &r, atoi(line));
}

/*
 * drip_next - send the next piece of the dripped reply in `pending`; the
 * last piece counts the reply's code and lets parsing resume (or closes).
 * Returns 1 while more pieces are due (the timer is armed for the next).
 */
static int
drip_next(struct session *s)
{
	size_t n = s->pending.len < s->drip_bytes ? s->pending.len : s->drip_bytes;
	struct buf piece = { 0 };
	int last = n == s->pending.len;

	buf_append(&piece, s->pending.data, n);
	buf_consume(&s->pending, n);
	emit(s, &piece, last ? s->pending_code : 0);
	if (!last) {
		timer_set(sink.loop, &s->timer, s->drip_ms, on_timer);
		return 1;
	}
	buf_free(&s->pending);
	s->drip_bytes = 0;
	return 0;
}

static void
on_timer(struct timer *t)
{
	struct session *s = container_of(t, struct session, timer);

	if (s->closing)
		return;
	if (s->drip_bytes > 0) {
		if (drip_next(s))
			return;
		s->paused = 0;
		if (s->pending_close) {
			sess_close(s);
			return;
		}
		sess_drain_in(s);
		return;
	}
	if (s->pending_stall) {
		s->pending_stall = 0;
		sess_close(s);
		return;
	}
	emit(s, &s->pending, s->pending_code);
	buf_free(&s->pending);
	s->paused = 0;
	if (s->pending_close) {
		sess_close(s);
		return;
	}
	sess_drain_in(s);
}

static void
vars_fill(struct session *s, struct sink_vars *v, const char *rcpt, char *port, char *id)
{
	snprintf(port, 8, "%u", s->cport);
	snprintf(id, 24, "%llX", (unsigned long long)msg_seq + 1);
	v->ip = s->client->ip;
	v->port = port;
	v->local = s->local->name;
	v->helo = s->smtp.helo ? s->smtp.helo : "";
	v->from = s->smtp.from ? s->smtp.from : "";
	v->rcpt = rcpt ? rcpt : (s->smtp.nrcpt ? s->smtp.rcpts[0] : "");
	v->id = id;
}

/*
 * sess_answer - deliver the reply for a stage: dflt (code dcode) unless
 * action a says otherwise. Takes dflt. Returns the code the client will
 * see, 0 when it sees none (disconnect, stall, garbage).
 */
static int
sess_answer(struct session *s, const struct sink_action *a, struct buf *dflt, int dcode,
    const char *rcpt, int close_after)
{
	struct buf r = { 0 };
	int code = dcode, close = close_after;
	uint32_t delay = 0;
	struct sink_vars v;
	char port[8], id[24];

	if (a != NULL) {
		delay = a->delay_ms;
		close |= a->close;
	}
	switch (a ? a->act : ACT_DEFAULT) {
	case ACT_DEFAULT:
	case ACT_GREY:
		r = *dflt;
		memset(dflt, 0, sizeof *dflt);
		break;
	case ACT_REPLY:
		vars_fill(s, &v, rcpt, port, id);
		code = sink_reply_expand(&r, a->reply, &v);
		break;
	case ACT_DISCONNECT:
		buf_free(dflt);
		sess_close(s);
		return 0;
	case ACT_STALL:
		buf_free(dflt);
		s->paused = 1;
		s->pending_stall = 1;
		timer_set(sink.loop, &s->timer, a->stall_ms ? a->stall_ms : sink.conf->stall_ms,
		    on_timer);
		return 0;
	case ACT_GARBAGE: {
		static const char g[] = "\x16\x03\x01 \x01garbage\xfe\xff not an SMTP reply\r\n";
		buf_append(&r, g, sizeof g - 1);
		code = 0;
		break;
	}
	case ACT_LONGLINE:
		buf_appendf(&r, "%d ", dcode);
		buf_reserve(&r, a->longline + 2);
		memset(r.data + r.len, 'x', a->longline);
		r.len += a->longline;
		buf_append(&r, "\r\n", 2);
		break;
	}
	buf_free(dflt);
	if (code == 421)
		close = 1;
	if (a != NULL && a->drip_bytes > 0 && r.len > a->drip_bytes) {
		/* Dripped: the first piece now (or after the delay), then one
		 * every drip_ms; the parser waits for the last. */
		buf_free(&s->pending);
		s->pending = r;
		s->pending_code = code;
		s->pending_close = close;
		s->drip_bytes = a->drip_bytes;
		s->drip_ms = a->drip_ms;
		s->paused = 1;
		if (delay > 0)
			timer_set(sink.loop, &s->timer, delay, on_timer);
		else
			drip_next(s);
		return code;
	}
	if (delay > 0) {
		buf_free(&s->pending);
		s->pending = r;
		s->pending_code = code;
		s->pending_close = close;
		s->paused = 1;
		timer_set(sink.loop, &s->timer, delay, on_timer);
		return code;
	}
	emit(s, &r, code);
	if (close)
		sess_close(s);
	return code;
}

/* answer_text - sess_answer with a one-line default reply. */
static int
answer_text(struct session *s, const struct sink_action *a, const char *text, const char *rcpt,
    int close_after)
{
	struct buf d = { 0 };

	buf_appendf(&d, "%s\r\n", text);
	return sess_answer(s, a, &d, atoi(text), rcpt, close_after);
}

/* answer_tpl - a reply template (from the config) with no rule involved. */
static int
answer_tpl(struct session *s, const char *tpl, const char *rcpt, int close)
{
	struct sink_action a;

	memset(&a, 0, sizeof a);
	a.act = ACT_REPLY;
	a.reply = (char *)tpl;
	a.close = close;
	return answer_text(s, &a, "250 unused", rcpt, 0);
}

static const struct sink_action *
rules(struct session *s, enum sink_stage st, const char *rcpt)
{
	struct sink_view v;

	if (sink.conf->nrules == 0)
		return NULL;
	v.client = s->client;
	v.local = s->local;
	v.helo = s->smtp.helo;
	v.from = s->smtp.from;
	if (rcpt != NULL) {
		v.rcpts = &rcpt;
		v.nrcpts = 1;
	} else {
		v.rcpts = (const char *const *)s->smtp.rcpts;
		v.nrcpts = s->smtp.nrcpt;
	}
	return sink_rules_eval(sink.conf, st, &v, &sink.rng);
}

/* --- capture --- */

static void
capture_write(struct session *s)
{
	static unsigned warned;
	const struct smtp_server *t = &s->smtp;
	struct buf h = { 0 };
	char *tmp, *path;
	int fd, ok = 1;

	buf_appendf(&h, "X-Sink-Client: %s:%u\r\nX-Sink-Local: %s\r\nX-Sink-Helo: %s\r\n"
	    "X-Sink-Mail-From: <%s>\r\n", s->client->ip, s->cport, s->local->name,
	    t->helo ? t->helo : "", t->from ? t->from : "");
	if (t->mail_params)
		buf_appendf(&h, "X-Sink-Mail-Params: %s\r\n", t->mail_params);
	for (size_t i = 0; i < t->nrcpt; i++)
		buf_appendf(&h, "X-Sink-Rcpt-To: <%s>\r\n", t->rcpts[i]);
	buf_appendf(&h, "X-Sink-TLS: %s\r\n", s->tls_on ? "yes" : "no");
	if (t->bdat)
		buf_appendf(&h, "X-Sink-Chunking: yes\r\n");
	if (t->authed && t->auth_user)
		buf_appendf(&h, "X-Sink-Auth: %s\r\n", t->auth_user);
	path = xasprintf("%s/%llu-%d-%llu.eml", sink.capture_dir,
	    (unsigned long long)clock_wall_ms(), (int)getpid(), (unsigned long long)msg_seq);
	tmp = xasprintf("%s/.tmp-%d-%llu", sink.capture_dir, (int)getpid(),
	    (unsigned long long)msg_seq);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		ok = 0;
	else {
		const struct buf *parts[2] = { &h, &t->body };
		for (int i = 0; i < 2 && ok; i++) {
			size_t off = 0;
			while (off < parts[i]->len) {
				ssize_t w = write(fd, parts[i]->data + off, parts[i]->len - off);
				if (w < 0) {
					if (errno == EINTR)
						continue;
					ok = 0;
					break;
				}
				off += (size_t)w;
			}
		}
		if (close(fd) != 0)
			ok = 0;
		if (ok && rename(tmp, path) != 0)
			ok = 0;
	}
	if (!ok) {
		if (warned++ < 5)
			log_warn("sink", "capture %s: %s", path, strerror(errno));
		unlink(tmp);
	}
	free(tmp);
	free(path);
	buf_free(&h);
}

/* --- the protocol core's decisions --- */

static int
on_helo(struct session *s)
{
	sink_stats_ehlo(s->client, s->local, s->smtp.helo);
	return sess_answer(s, rules(s, STAGE_EHLO, NULL), &s->smtp.reply, 250, NULL, 0);
}

static int
on_mail(struct session *s)
{
	struct sink_peer *cl = s->client;
	uint64_t now = loop_now(sink.loop);

	if (sink.conf->rate_n > 0) {
		if (now - cl->rate_start_ms >= sink.conf->rate_window_ms || cl->rate_start_ms == 0) {
			cl->rate_start_ms = now ? now : 1;
			cl->rate_count = 0;
		}
		if (cl->rate_count >= sink.conf->rate_n)
			return answer_tpl(s, sink.conf->reply_rate, NULL, 1);
	}
	return sess_answer(s, rules(s, STAGE_MAIL, NULL), &s->smtp.reply, 250, NULL, 0);
}

static int
on_rcpt(struct session *s)
{
	const char *addr = s->smtp.rcpt;
	const struct sink_action *a;
	struct sink_action tag;
	int code;

	a = rules(s, STAGE_RCPT, addr);
	if (a == NULL && sink_tag_eval(sink.conf, addr, STAGE_RCPT, &tag))
		a = &tag;
	if ((a != NULL && a->act == ACT_GREY) || (a == NULL && sink.conf->grey_all)) {
		if (!sink_grey_check(s->client->ip, s->smtp.from, addr, loop_now(sink.loop),
		    sink.conf->grey_ms)) {
			answer_tpl(s, sink.conf->reply_grey, addr, 0);
			sink_stats_rcpt_rejected(s->client, s->local);
			return 0;
		}
		a = NULL;
	}
	code = sess_answer(s, a, &s->smtp.reply, 250, addr, 0);
	if (code / 100 == 2 && !s->closing)
		return code;
	sink_stats_rcpt_rejected(s->client, s->local);
	return 0;
}

/* The message has ended: decide, count, capture. */
static int
on_dot(struct session *s)
{
	struct smtp_server *t = &s->smtp;
	const struct sink_action *a;
	struct sink_action tag;
	char ok[64];
	int code;

	if (t->too_big)
		return answer_tpl(s, sink.conf->reply_toobig, NULL, 0);
	a = rules(s, STAGE_DOT, NULL);
	for (size_t i = 0; a == NULL && i < t->nrcpt; i++)
		if (sink_tag_eval(sink.conf, t->rcpts[i], STAGE_DOT, &tag))
			a = &tag;
	snprintf(ok, sizeof ok, "250 2.0.0 Ok: queued as %llX", (unsigned long long)msg_seq + 1);
	code = answer_text(s, a, ok, NULL, 0);
	if (code / 100 == 2) {
		msg_seq++;
		sink_stats_message(s->client, s->local, t->nrcpt, t->bytes, loop_now(sink.loop));
		s->client->rate_count++;
		if (sink.capture_dir)
			capture_write(s);
	}
	return code;
}

/* AUTH: 235 for the configured user and password, 535 5.7.8 otherwise. */
static int
on_auth(struct session *s)
{
	const struct smtp_server *t = &s->smtp;
	const struct sink_conf *c = sink.conf;
	int ok = c->auth_user != NULL && strcmp(t->auth_user, c->auth_user) == 0 &&
	    strcmp(t->auth_pass, c->auth_pass) == 0;
	struct buf r = { 0 };

	log_debug("sink", "s=%llu AUTH %s as %s: %s", (unsigned long long)s->id,
	    t->auth_mech ? t->auth_mech : "?", t->auth_user, ok ? "ok" : "failed");
	if (ok) {
		buf_appendf(&r, "%s\r\n", SMTP_SERVER_AUTH_OK);
		emit(s, &r, 235);
		return 235;
	}
	r = s->smtp.reply;
	memset(&s->smtp.reply, 0, sizeof s->smtp.reply);
	emit(s, &r, 535);
	return 535;
}

/* handle - one event of the core; decisions are answered at once (a delayed
 * reply pauses the parser, so the state may move on now). */
static void
handle(struct session *s, enum smtp_srv_event ev)
{
	int code = 0;

	switch (ev) {
	case SMTP_SRV_NONE:
		return;
	case SMTP_SRV_REPLY: {
		struct buf r = s->smtp.reply;
		memset(&s->smtp.reply, 0, sizeof s->smtp.reply);
		emit(s, &r, atoi(r.data));
		return;
	}
	case SMTP_SRV_HELO:
		code = on_helo(s);
		break;
	case SMTP_SRV_MAIL:
		code = on_mail(s);
		break;
	case SMTP_SRV_RCPT:
		code = on_rcpt(s);
		break;
	case SMTP_SRV_DATA:
		code = sess_answer(s, rules(s, STAGE_DATA, NULL), &s->smtp.reply, 354, NULL, 0);
		break;
	case SMTP_SRV_DOT:
		code = on_dot(s);
		break;
	case SMTP_SRV_RSET:
		code = sess_answer(s, rules(s, STAGE_RSET, NULL), &s->smtp.reply, 250, NULL, 0);
		break;
	case SMTP_SRV_QUIT:
		code = sess_answer(s, rules(s, STAGE_QUIT, NULL), &s->smtp.reply, 221, NULL, 1);
		break;
	case SMTP_SRV_STARTTLS: {
		struct buf r = s->smtp.reply;
		memset(&s->smtp.reply, 0, sizeof s->smtp.reply);
		emit(s, &r, 220);
		code = 220;
		s->tls_want = 1;	/* sess_flush() starts TLS after the 220 */
		break;
	}
	case SMTP_SRV_AUTH:
		code = on_auth(s);
		break;
	}
	smtp_server_done(&s->smtp, code);
}

/*
 * sess_feed - parse plaintext input; returns the bytes consumed. Stops at
 * a partial command line, or when the session pauses, closes or starts TLS.
 */
static size_t
sess_feed(struct session *s, const char *p, size_t n)
{
	size_t off = 0;

	while (off < n && !s->paused && !s->closing) {
		enum smtp_srv_event ev;

		if (s->tls_want)
			return n;	/* anything pipelined after STARTTLS is dropped */
		off += smtp_server_feed(&s->smtp, p + off, n - off, &ev);
		if (ev == SMTP_SRV_NONE)
			break;
		handle(s, ev);
	}
	return s->tls_want ? n : off;
}

/* After input was kept: an unfinished command line may not grow forever. */
static void
in_check(struct session *s)
{
	if (s->in.len == 0 || s->closing) {
		buf_free(&s->in);
		return;
	}
	if (s->paused) {
		if (s->in.len > MAX_PAUSED_INPUT) {
			log_debug("sink", "s=%llu too much input while paused",
			    (unsigned long long)s->id);
			sess_close(s);
		}
		return;
	}
	/* Not paused: the core already refused an overlong partial line. */
}

static void
sess_drain_in(struct session *s)
{
	size_t c;

	if (s->in.len == 0)
		return;
	c = sess_feed(s, s->in.data, s->in.len);
	buf_consume(&s->in, c);
	in_check(s);
}

static void
plain_input(struct session *s, const char *p, size_t n)
{
	size_t c;

	if (s->in.len == 0 && !s->paused) {
		c = sess_feed(s, p, n);
		if (c < n && !s->closing)
			buf_append(&s->in, p + c, n - c);
	} else {
		buf_append(&s->in, p, n);
		if (!s->paused)
			sess_drain_in(s);
	}
	if (!s->closing)
		in_check(s);
	else
		buf_free(&s->in);
}

static void
sess_tls_input(struct session *s, const char *p, size_t n)
{
	char tmp[16384];
	size_t k;
	int was_open = tls_status(s->tls) == TLS_OPEN;

	if (tls_input(s->tls, p, n) == TLS_FAILED) {
		log_debug("sink", "s=%llu TLS handshake failed: %s", (unsigned long long)s->id,
		    tls_error(s->tls));
		sess_close(s);
		return;
	}
	if (!was_open && tls_status(s->tls) == TLS_OPEN) {
		s->tls_on = 1;
		sink_stats_tls(s->client, s->local);
	}
	while (!s->closing && (k = tls_read(s->tls, tmp, sizeof tmp)) > 0)
		plain_input(s, tmp, k);
	if (!s->closing && (tls_status(s->tls) == TLS_FAILED || tls_status(s->tls) == TLS_CLOSED))
		sess_close(s);
	sess_want_flush(s);
}

/* --- I/O and lifetime --- */

/* Per-session I/O: a direct descriptor goes by its slot (IOSQE_FIXED_FILE). */
static void
sess_recv(struct session *s)
{
	if (s->direct)
		loop_recv_multishot_fixed(sink.loop, (unsigned)s->fd, &s->rx_op);
	else
		loop_recv_multishot(sink.loop, s->fd, &s->rx_op);
}

static void
sess_send(struct session *s, const void *p, size_t n)
{
	if (s->direct)
		loop_send_fixed(sink.loop, (unsigned)s->fd, p, n, &s->tx_op);
	else
		loop_send(sink.loop, s->fd, p, n, &s->tx_op);
}

static void
sess_free(struct session *s)
{
	if (s->direct)
		sink_direct_release((unsigned)s->fd);	/* no op of s is in flight */
	else
		close(s->fd);
	sink_stats_session_close(s->client, s->local);
	sink.sessions--;
	if (s->prev)
		s->prev->next = s->next;
	else
		all_head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	timer_cancel(sink.loop, &s->timer);
	smtp_server_free(&s->smtp);
	tls_free(s->tls);
	buf_free(&s->in);
	buf_free(&s->out);
	buf_free(&s->tx);
	buf_free(&s->pending);
	free(s);
}

static void
sess_close(struct session *s)
{
	if (s->closing)
		return;
	s->closing = 1;
	s->paused = 1;
	timer_cancel(sink.loop, &s->timer);
	sess_want_flush(s);	/* s->in may be being parsed: freed later */
}

/*
 * sess_flush - send what is queued (through TLS when on); for a closing
 * session with nothing left to send, shut down and, once the recv has
 * ended, free. Only called from sink_session_flush_all().
 */
static void
sess_flush(struct session *s)
{
	if (s->tx_busy)
		return;		/* on_tx brings us back */
	if (tls_stage_out(s->tls, &s->out, &s->tx) < 0)
		s->closing = 1;
	if (s->tls_want && !s->closing) {
		/* The "220 Ready" is in tx, in the clear; all later bytes are TLS. */
		s->tls_want = 0;
		s->tls = tls_server_new(sink.tls);
		if (s->tls == NULL)
			s->closing = 1;
		else
			smtp_server_tls_on(&s->smtp);
	}
	if (s->tx.len > 0) {
		s->tx_busy = 1;
		s->tx_off = 0;
		sess_send(s, s->tx.data, s->tx.len);
		return;
	}
	if (!s->closing)
		return;
	if (!s->shut) {
		s->shut = 1;
		/*
		 * Ends the multishot recv (res 0). Direct: the kernel always
		 * runs a shutdown in an io-wq worker, which looks the slot up
		 * only then; a close_direct issued meanwhile could hand the slot
		 * to the next accept and the shutdown would hit that new
		 * session. So the shutdown is counted (shut_busy) and the slot is
		 * closed after it completes; when the recv has already ended
		 * there is nothing to end and close_direct alone will do.
		 */
		if (!s->direct)
			shutdown(s->fd, SHUT_RDWR);
		else if (s->rx_armed) {
			s->shut_busy = 1;
			loop_shutdown_fixed(sink.loop, (unsigned)s->fd, SHUT_RDWR, &s->shut_op);
		}
	}
	if (!s->rx_armed && !s->shut_busy)
		sess_free(s);
}

static void
on_shut(struct io_op *op, int res, uint32_t flags)
{
	struct session *s = container_of(op, struct session, shut_op);

	(void)res;
	(void)flags;
	s->shut_busy = 0;
	sess_want_flush(s);
}

static void
on_tx(struct io_op *op, int res, uint32_t flags)
{
	struct session *s = container_of(op, struct session, tx_op);

	(void)flags;
	s->tx_busy = 0;
	if (res < 0) {
		s->closing = 1;
		s->paused = 1;
		buf_free(&s->tx);
		buf_free(&s->out);
		sess_want_flush(s);
		return;
	}
	s->tx_off += (size_t)res;
	if (s->tx_off < s->tx.len) {	/* short send: the rest */
		s->tx_busy = 1;
		sess_send(s, s->tx.data + s->tx_off, s->tx.len - s->tx_off);
		return;
	}
	buf_free(&s->tx);
	s->tx_off = 0;
	if (s->out.len > 0 || s->closing || (s->tls && tls_wire_pending(s->tls)))
		sess_want_flush(s);
}

static void
on_rx(struct io_op *op, int res, uint32_t flags)
{
	struct session *s = container_of(op, struct session, rx_op);

	if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
		unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
		if (!s->closing) {
			s->last_ms = loop_now(sink.loop);
			if (s->tls)
				sess_tls_input(s, loop_buf(sink.loop, bid), (size_t)res);
			else if (!s->tls_want)
				plain_input(s, loop_buf(sink.loop, bid), (size_t)res);
		}
		loop_buf_recycle(sink.loop, bid);
	}
	if (flags & IORING_CQE_F_MORE)
		return;
	s->rx_armed = 0;
	if (!s->closing && (res > 0 || res == -ENOBUFS)) {
		s->rx_armed = 1;	/* buffers are back in the ring: re-arm */
		sess_recv(s);
		return;
	}
	if (!s->closing) {	/* EOF or error from the peer */
		s->closing = 1;
		s->paused = 1;
		timer_cancel(sink.loop, &s->timer);
		buf_free(&s->in);
	}
	sess_want_flush(s);
}

static void
sess_begin(struct session *s, int fd, int direct, const struct sockaddr *peer,
    const struct sockaddr *local)
{
	struct sink_peer *cl, *lo;
	const struct sink_action *a;

	cl = sink_peer_get(1, peer);
	s->cport = peer->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)peer)->sin_port) :
	    peer->sa_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)peer)->sin6_port) : 0;
	lo = sink_peer_get(0, local);

	{
		struct smtp_server_conf sc;

		memset(&sc, 0, sizeof sc);
		sc.hostname = sink.conf->hostname;
		sc.max_size = sink.conf->size;
		sc.max_line = sink.conf->max_line;
		sc.max_rcpts = sink.conf->max_rcpts;
		sc.starttls = sink.tls != NULL && !sink.tls_implicit;
		sc.keep_body = sink.capture_dir != NULL;
		sc.auth = sink.conf->auth_user != NULL;
		sc.auth_clear = sink.conf->auth_clear;
		sc.chunking = sink.conf->chunking;
		smtp_server_init(&s->smtp, &sc);
	}
	s->fd = fd;
	s->direct = direct ? 1 : 0;
	s->client = cl;
	s->local = lo;
	s->id = ++sink.next_id;
	s->last_ms = loop_now(sink.loop);
	s->rx_op.cb = on_rx;
	s->tx_op.cb = on_tx;
	s->shut_op.cb = on_shut;
	s->next = all_head;
	if (all_head)
		all_head->prev = s;
	all_head = s;
	sink.sessions++;
	sink_stats_session_open(cl, lo);
	if (sink.tls_implicit && sink.tls != NULL) {
		/* SMTPS: the handshake first; the greeting waits in `out` until it is done. */
		s->tls = tls_server_new(sink.tls);
		if (s->tls == NULL)
			s->closing = 1;
		else
			smtp_server_tls_on(&s->smtp);
	}
	s->rx_armed = 1;
	sess_recv(s);
	log_debug("sink", "s=%llu connect from %s:%u to %s (%s %d)", (unsigned long long)s->id,
	    cl->ip, s->cport, lo->name, direct ? "direct slot" : "fd", fd);

	if (sink.sessions > sink.conf->max_sessions) {
		answer_tpl(s, sink.conf->reply_busy, NULL, 1);
		return;
	}
	if (sink.conf->per_ip_conns > 0 && cl->c.cur > sink.conf->per_ip_conns) {
		answer_tpl(s, sink.conf->reply_conns, NULL, 1);
		return;
	}
	a = rules(s, STAGE_CONNECT, NULL);
	{
		struct buf d = { 0 };
		buf_appendf(&d, "220 %s %s\r\n", sink.conf->hostname, sink.conf->banner);
		sess_answer(s, a, &d, 220, NULL, 0);
	}
}

void
sink_session_start(int fd)
{
	struct sockaddr_storage peer, local;
	socklen_t sl = sizeof peer;

	memset(&peer, 0, sizeof peer);
	if (getpeername(fd, (struct sockaddr *)&peer, &sl) != 0)
		peer.ss_family = AF_UNSPEC;
	sl = sizeof local;
	memset(&local, 0, sizeof local);
	if (getsockname(fd, (struct sockaddr *)&local, &sl) != 0)
		local.ss_family = AF_UNSPEC;
	sess_begin(xcalloc(1, sizeof(struct session)), fd, 0, (struct sockaddr *)&peer,
	    (struct sockaddr *)&local);
}

void
sink_session_start_direct(unsigned slot, const struct sockaddr *peer,
    const struct sockaddr *local)
{
	sess_begin(xcalloc(1, sizeof(struct session)), (int)slot, 1, peer, local);
}

void
sink_session_flush_all(void)
{
	while (flush_head != NULL) {
		struct session *s = flush_head;
		flush_head = s->flush_next;
		s->on_flush = 0;
		sess_flush(s);
	}
}

void
sink_session_sweep(uint64_t now_ms)
{
	for (struct session *s = all_head; s; s = s->next)
		if (!s->closing && !s->paused && now_ms - s->last_ms > sink.conf->idle_ms) {
			reply(s, "421 4.4.2 %s Error: timeout exceeded", sink.conf->hostname);
			sess_close(s);
		}
}
