/*
 * sink_session.c - one SMTP server session of volley-sink on the io_uring
 * loop: command parser, DATA dot-unstuffing, PIPELINING, STARTTLS through
 * memory BIOs, rule/tag verdicts, delayed replies, capture.
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

enum { ST_CMD = 0, ST_DATA };
enum { D_BOL = 0, D_MID, D_DOT, D_DOTCR };

struct txn {
	char *from;
	char *mail_params;		/* "BODY=8BITMIME SIZE=123", for the capture */
	char **rcpts;
	size_t nrcpt, cap;
	uint64_t bytes;
	struct buf body;		/* the message, only with --capture */
	int too_big;
	int dstate;
};

struct session {
	struct io_op rx_op, tx_op, shut_op;
	struct timer timer;
	struct session *prev, *next;	/* all sessions */
	struct session *flush_next;
	struct sink_peer *client, *local;
	struct txn *txn;
	char *helo;
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
	uint8_t state;
	unsigned rx_armed:1, tx_busy:1, on_flush:1, paused:1, closing:1, shut:1,
	    tls_want:1, tls_on:1, discard:1, pending_close:1, pending_stall:1,
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

static void
txn_free(struct txn *t)
{
	if (t == NULL)
		return;
	free(t->from);
	free(t->mail_params);
	for (size_t i = 0; i < t->nrcpt; i++)
		free(t->rcpts[i]);
	free(t->rcpts);
	buf_free(&t->body);
	free(t);
}

static void
sess_reset(struct session *s)
{
	txn_free(s->txn);
	s->txn = NULL;
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
	v->helo = s->helo ? s->helo : "";
	v->from = s->txn && s->txn->from ? s->txn->from : "";
	v->rcpt = rcpt ? rcpt : (s->txn && s->txn->nrcpt ? s->txn->rcpts[0] : "");
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
	v.helo = s->helo;
	v.from = s->txn ? s->txn->from : NULL;
	if (rcpt != NULL) {
		v.rcpts = &rcpt;
		v.nrcpts = 1;
	} else {
		v.rcpts = s->txn ? (const char *const *)s->txn->rcpts : NULL;
		v.nrcpts = s->txn ? s->txn->nrcpt : 0;
	}
	return sink_rules_eval(sink.conf, st, &v, &sink.rng);
}

/* --- capture --- */

static void
capture_write(struct session *s)
{
	static unsigned warned;
	struct txn *t = s->txn;
	struct buf h = { 0 };
	char *tmp, *path;
	int fd, ok = 1;

	buf_appendf(&h, "X-Sink-Client: %s:%u\r\nX-Sink-Local: %s\r\nX-Sink-Helo: %s\r\n"
	    "X-Sink-Mail-From: <%s>\r\n", s->client->ip, s->cport, s->local->name,
	    s->helo ? s->helo : "", t->from ? t->from : "");
	if (t->mail_params)
		buf_appendf(&h, "X-Sink-Mail-Params: %s\r\n", t->mail_params);
	for (size_t i = 0; i < t->nrcpt; i++)
		buf_appendf(&h, "X-Sink-Rcpt-To: <%s>\r\n", t->rcpts[i]);
	buf_appendf(&h, "X-Sink-TLS: %s\r\n", s->tls_on ? "yes" : "no");
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

/* --- commands --- */

/* Parse "<addr> params" after "FROM:"/"TO:"; *addr is malloc'd. */
static int
parse_path(const char *p, char **addr, const char **params)
{
	const char *e;
	size_t n;

	while (*p == ' ')
		p++;
	if (*p != '<') {	/* tolerate a bare address */
		e = p + strcspn(p, " ");
		if (e == p)
			return -1;
		n = (size_t)(e - p);
	} else {
		p++;
		e = strchr(p, '>');
		if (e == NULL)
			return -1;
		n = (size_t)(e - p);
		e++;
	}
	if (n > 512)
		return -1;
	/* Drop a source route "@a,@b:user@dom" (RFC 5321 4.1.2). */
	if (n > 0 && p[0] == '@') {
		const char *c = memchr(p, ':', n);
		if (c == NULL)
			return -1;
		n -= (size_t)(c + 1 - p);
		p = c + 1;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == '<' || p[i] == '>' || p[i] == ' ')
			return -1;
	*addr = xstrndup(p, n);
	*params = e;
	return 0;
}

static void
cmd_ehlo(struct session *s, const char *arg, int esmtp)
{
	struct buf d = { 0 };
	const char *ext[8];
	size_t n = 0;
	char sz[32];

	while (*arg == ' ')
		arg++;
	if (*arg == '\0') {
		reply(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		return;
	}
	sess_reset(s);
	free(s->helo);
	s->helo = xstrndup(arg, strnlen(arg, 255));
	sink_stats_ehlo(s->client, s->local, s->helo);
	if (esmtp) {
		snprintf(sz, sizeof sz, "SIZE %llu", (unsigned long long)sink.conf->size);
		ext[n++] = "PIPELINING";
		ext[n++] = sz;
		if (sink.tls && !s->tls_on)
			ext[n++] = "STARTTLS";
		ext[n++] = "ENHANCEDSTATUSCODES";
		ext[n++] = "8BITMIME";
		ext[n++] = "SMTPUTF8";
		buf_appendf(&d, "250-%s\r\n", sink.conf->hostname);
		for (size_t i = 0; i < n; i++)
			buf_appendf(&d, "250%c%s\r\n", i + 1 == n ? ' ' : '-', ext[i]);
	} else
		buf_appendf(&d, "250 %s\r\n", sink.conf->hostname);
	sess_answer(s, rules(s, STAGE_EHLO, NULL), &d, 250, NULL, 0);
}

static void
cmd_mail(struct session *s, const char *arg)
{
	const char *params;
	char *addr = NULL;
	struct sink_peer *cl = s->client;
	uint64_t now = loop_now(sink.loop);
	int code;

	if (s->helo == NULL) {
		reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->txn != NULL) {
		reply(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (strncasecmp(arg, "FROM:", 5) != 0 || parse_path(arg + 5, &addr, &params) != 0) {
		reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	for (const char *p = params; (p = strcasestr(p, "SIZE=")) != NULL; p += 5)
		if (p == params || p[-1] == ' ') {
			unsigned long long v = strtoull(p + 5, NULL, 10);
			if (v > sink.conf->size) {
				free(addr);
				reply(s, "552 5.3.4 Message size exceeds fixed limit");
				return;
			}
		}
	if (sink.conf->rate_n > 0) {
		if (now - cl->rate_start_ms >= sink.conf->rate_window_ms || cl->rate_start_ms == 0) {
			cl->rate_start_ms = now ? now : 1;
			cl->rate_count = 0;
		}
		if (cl->rate_count >= sink.conf->rate_n) {
			free(addr);
			answer_tpl(s, sink.conf->reply_rate, NULL, 1);
			return;
		}
	}
	s->txn = xcalloc(1, sizeof *s->txn);
	s->txn->from = addr;
	while (params && *params == ' ')
		params++;
	if (params && *params)
		s->txn->mail_params = xstrndup(params, strnlen(params, 256));
	code = answer_text(s, rules(s, STAGE_MAIL, NULL), "250 2.1.0 Ok", NULL, 0);
	if (code / 100 != 2)
		sess_reset(s);
}

static void
cmd_rcpt(struct session *s, const char *arg)
{
	struct txn *t = s->txn;
	const struct sink_action *a;
	struct sink_action tag;
	const char *params;
	char *addr = NULL;
	int code;

	if (t == NULL) {
		reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (t->nrcpt >= sink.conf->max_rcpts) {
		reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (strncasecmp(arg, "TO:", 3) != 0 || parse_path(arg + 3, &addr, &params) != 0 ||
	    addr[0] == '\0') {
		free(addr);
		reply(s, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	a = rules(s, STAGE_RCPT, addr);
	if (a == NULL && sink_tag_eval(sink.conf, addr, STAGE_RCPT, &tag))
		a = &tag;
	if ((a != NULL && a->act == ACT_GREY) || (a == NULL && sink.conf->grey_all)) {
		if (!sink_grey_check(s->client->ip, t->from, addr, loop_now(sink.loop),
		    sink.conf->grey_ms)) {
			code = answer_tpl(s, sink.conf->reply_grey, addr, 0);
			sink_stats_rcpt_rejected(s->client, s->local);
			free(addr);
			return;
		}
		a = NULL;
	}
	code = answer_text(s, a, "250 2.1.5 Ok", addr, 0);
	if (code / 100 == 2 && !s->closing) {
		if (t->nrcpt == t->cap) {
			t->cap = t->cap ? t->cap * 2 : 4;
			t->rcpts = xrealloc(t->rcpts, t->cap * sizeof *t->rcpts);
		}
		t->rcpts[t->nrcpt++] = addr;
	} else {
		sink_stats_rcpt_rejected(s->client, s->local);
		free(addr);
	}
}

static void
cmd_data(struct session *s, const char *arg)
{
	int code;

	if (s->txn == NULL) {
		reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (s->txn->nrcpt == 0) {
		reply(s, "554 5.5.1 Error: no valid recipients");
		return;
	}
	if (*arg != '\0') {
		reply(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	code = answer_text(s, rules(s, STAGE_DATA, NULL), "354 End data with <CR><LF>.<CR><LF>",
	    NULL, 0);
	if (code == 354) {
		s->state = ST_DATA;
		s->txn->dstate = D_BOL;
	} else if (code / 100 != 2)
		sess_reset(s);
}

/* The message has ended: decide, count, capture. */
static void
data_end(struct session *s)
{
	struct txn *t = s->txn;
	const struct sink_action *a;
	struct sink_action tag;
	char ok[64];
	int code;

	s->state = ST_CMD;
	if (t->too_big) {
		answer_tpl(s, sink.conf->reply_toobig, NULL, 0);
		sess_reset(s);
		return;
	}
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
	sess_reset(s);
}

static void
body_add(struct session *s, const char *p, size_t n)
{
	struct txn *t = s->txn;

	t->bytes += n;
	if (t->bytes > sink.conf->size) {
		t->too_big = 1;
		buf_free(&t->body);
	} else if (sink.capture_dir)
		buf_append(&t->body, p, n);
}

/*
 * data_feed - message bytes: undo dot-stuffing and find the end
 * (CRLF.CRLF; a bare LF is taken as a line end too). Returns the bytes
 * consumed, up to and including the terminating line.
 */
static size_t
data_feed(struct session *s, const char *p, size_t n)
{
	struct txn *t = s->txn;
	size_t i = 0;

	while (i < n) {
		switch (t->dstate) {
		case D_MID: {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t k = nl ? (size_t)(nl - (p + i)) + 1 : n - i;
			body_add(s, p + i, k);
			i += k;
			if (nl)
				t->dstate = D_BOL;
			break;
		}
		case D_BOL:
			if (p[i] == '.') {
				t->dstate = D_DOT;
				i++;
			} else
				t->dstate = D_MID;
			break;
		case D_DOT:
			if (p[i] == '\n') {
				i++;
				data_end(s);
				return i;
			}
			if (p[i] == '\r') {
				t->dstate = D_DOTCR;
				i++;
			} else
				t->dstate = D_MID;	/* the stuffed dot is dropped */
			break;
		case D_DOTCR:
			if (p[i] == '\n') {
				i++;
				data_end(s);
				return i;
			}
			body_add(s, "\r", 1);
			t->dstate = D_MID;
			break;
		}
	}
	return i;
}

static void
cmd_starttls(struct session *s, const char *arg)
{
	if (sink.tls == NULL) {
		reply(s, "502 5.5.1 Error: command not implemented");
		return;
	}
	if (s->tls_on) {
		reply(s, "554 5.5.1 Error: TLS already active");
		return;
	}
	if (*arg) {
		reply(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	/* RFC 3207: forget everything said in the clear, ignore what follows. */
	sess_reset(s);
	free(s->helo);
	s->helo = NULL;
	s->tls_want = 1;
}

static void
command(struct session *s, char *line)
{
	char *arg = line + strcspn(line, " ");
	size_t vl = (size_t)(arg - line);

	if (*arg == ' ')
		*arg++ = '\0';
#define IS(v) (vl == sizeof(v) - 1 && strncasecmp(line, v, vl) == 0)
	if (IS("EHLO"))
		cmd_ehlo(s, arg, 1);
	else if (IS("HELO"))
		cmd_ehlo(s, arg, 0);
	else if (IS("MAIL"))
		cmd_mail(s, arg);
	else if (IS("RCPT"))
		cmd_rcpt(s, arg);
	else if (IS("DATA"))
		cmd_data(s, arg);
	else if (IS("RSET")) {
		sess_reset(s);
		answer_text(s, rules(s, STAGE_RSET, NULL), "250 2.0.0 Ok", NULL, 0);
	} else if (IS("NOOP"))
		reply(s, "250 2.0.0 Ok");
	else if (IS("QUIT"))
		answer_text(s, rules(s, STAGE_QUIT, NULL), "221 2.0.0 Bye", NULL, 1);
	else if (IS("STARTTLS"))
		cmd_starttls(s, arg);
	else if (IS("VRFY"))
		reply(s, "252 2.0.0 Send some mail, I'll try my best");
	else if (IS("HELP"))
		reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT STARTTLS");
	else if (IS("AUTH"))
		reply(s, "503 5.5.1 Error: authentication not enabled");
	else if (IS("BDAT"))
		reply(s, "502 5.5.1 Error: command not implemented");
	else
		reply(s, "502 5.5.2 Error: command not recognized");
#undef IS
}

/*
 * sess_feed - parse plaintext input; returns the bytes consumed. Stops at
 * a partial command line, or when the session pauses, closes or starts TLS.
 */
static size_t
sess_feed(struct session *s, const char *p, size_t n)
{
	size_t off = 0;
	char line[16384];

	while (off < n && !s->paused && !s->closing) {
		const char *nl;
		size_t len;

		if (s->tls_want)
			return n;	/* anything pipelined after STARTTLS is dropped */
		if (s->state == ST_DATA) {
			off += data_feed(s, p + off, n - off);
			continue;
		}
		nl = memchr(p + off, '\n', n - off);
		if (nl == NULL)
			break;
		len = (size_t)(nl - (p + off));
		if (s->discard) {	/* the tail of an overlong line */
			s->discard = 0;
			off += len + 1;
			continue;
		}
		if (len > 0 && p[off + len - 1] == '\r')
			len--;
		if (len > sink.conf->max_line || len >= sizeof line) {
			reply(s, "500 5.5.2 Error: line too long");
		} else {
			memcpy(line, p + off, len);
			line[len] = '\0';
			command(s, line);
		}
		off = (size_t)(nl - p) + 1;
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
	if (s->state == ST_CMD && s->in.len > sink.conf->max_line + 2) {
		reply(s, "500 5.5.2 Error: line too long");
		s->discard = 1;
		buf_free(&s->in);
	}
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
	txn_free(s->txn);
	free(s->helo);
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
	if (s->tls != NULL) {
		size_t pend;

		if (s->out.len > 0 && tls_status(s->tls) == TLS_OPEN) {
			if (tls_write(s->tls, s->out.data, s->out.len) != s->out.len)
				s->closing = 1;
			buf_free(&s->out);
		}
		pend = tls_wire_pending(s->tls);
		if (pend > 0) {
			buf_reserve(&s->tx, pend);
			s->tx.len += tls_wire_take(s->tls, s->tx.data + s->tx.len, pend);
		}
	} else if (s->out.len > 0) {
		struct buf t = s->tx;	/* tx is empty: no send in flight */
		s->tx = s->out;
		s->out = t;
		s->out.len = 0;
	}
	if (s->tls_want && !s->closing) {
		/* The "220 Ready" is in tx, in the clear; all later bytes are TLS. */
		s->tls_want = 0;
		s->tls = tls_server_new(sink.tls);
		if (s->tls == NULL)
			s->closing = 1;
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
