/*
 * smtp_client.c - the RFC 5321 client as a pure state machine.
 *
 * Owns: struct smtp_client and everything in smtp_client.h. No syscalls,
 * no clock, no TLS: bytes in, bytes out, outcomes.
 *
 * Time: the session tells the client the time (smtp_client_set_now) and
 * the client keeps absolute deadlines, so bytes trickling in do not push
 * them back; smtp_client_deadline() turns them into "ms from now".
 *
 * Design (after OpenSMTPD's and Postfix's clients): the send side and the
 * receive side are separate.
 *   - Send side: commands are formatted into `cmdq` as soon as they are
 *     decided. smtp_client_output() freezes what is queued into a "send
 *     set" of up to 3 segments (commands, prefix, body); the set stays
 *     untouched until smtp_client_sent() reports all of it, so the
 *     pointers handed out remain valid even if more commands are decided
 *     meanwhile (they wait in cmdq; the two buffers swap, so neither is
 *     ever reallocated while the kernel reads it).
 *   - Receive side: `expq` is the ordered list of replies expected, one
 *     entry per command queued. Each complete reply pops one entry and is
 *     judged against it. PIPELINING is then only a matter of queueing
 *     MAIL, RCPT and DATA together; without it, each positive reply queues
 *     the next command.
 * A transaction's first failure is its result; later replies of the same
 * pipelined group are consumed and ignored. A 421 anywhere, a disconnect,
 * a time-out or a malformed reply ends the session (CLOSED); a message in
 * flight then fails TEMP and smtp_client_session_error() says why.
 *
 * Invariants: at most one send in flight; a send set is never modified
 * while handed out; expq never holds more than 7 entries (RSET MAIL
 * RCPT, then DATA or up to BDAT_WINDOW chunks; or QUIT); the input
 * buffer never holds more than one partial reply (bounded by the reply
 * parser's limits). Results and texts are one line, bounded, free of
 * CR/LF.
 *
 * Size: about 800 bytes per client plus the two command buffers and the
 * partial-reply buffer (allocated on first use, usually a few hundred
 * bytes each); the 4 KB struct smtp_reply lives on the stack.
 */
#include "smtp_client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "msg.h"

/* What a queued command waits for. */
enum wait {
	W_GREETING = 0,
	W_EHLO,
	W_HELO,
	W_RSET,
	W_MAIL,
	W_RCPT,
	W_DATA,
	W_DOT,
	W_DOT_IGNORE,		/* "." sent after a failed pipelined group */
	W_QUIT,
	W_STARTTLS,
	W_AUTH,			/* AUTH PLAIN, or LOGIN's password: 235 */
	W_AUTH_USER,		/* AUTH LOGIN: 334 asks for the user name */
	W_AUTH_PASS,		/* LOGIN's user name sent: 334 asks for the password */
	W_BDAT,			/* BDAT n (RFC 3030): 250 */
	W_BDAT_LAST,		/* BDAT n LAST: the final reply, like the dot's */
};

/* BDAT: the chunk size unless set, and how many chunks may await replies
 * under PIPELINING (the reply queue holds EXPQ_MAX). */
#define BDAT_CHUNK_DEFAULT	(1024 * 1024)
#define BDAT_WINDOW		4

#define EXPQ_MAX	8
_Static_assert(3 + BDAT_WINDOW <= EXPQ_MAX, "RSET MAIL RCPT and a window of chunks fit expq");

struct seg {
	const char *p;
	size_t len;
};

struct smtp_client {
	enum smtp_state state;
	struct smtp_timeouts t;
	char *ehlo_name;
	struct smtp_ext ext;
	uint8_t tls_mode;	/* enum smtp_tls_mode */
	uint8_t tls_active;	/* the handshake is done on this connection */
	unsigned msgs;

	/* AUTH (smtp_client_set_auth); the secrets are wiped on free */
	char *auth_user, *auth_pass;	/* NULL: no AUTH */
	uint8_t auth_mech;	/* enum smtp_auth_mech */
	uint8_t auth_clear;	/* AUTH allowed without TLS (tls = "none") */
	uint8_t authed;		/* 235 seen on this connection */
	uint8_t secret_set;	/* the send set holds credentials: wipe it once sent */

	/* the transaction */
	struct smtp_msg msg;
	uint8_t txn;		/* started, result not yet final */
	uint8_t failed;		/* result decided; draining replies */
	uint8_t pipe;		/* this transaction is pipelined */
	uint8_t rset_needed;	/* last transaction failed before the dot */
	uint8_t have_result;	/* result ready for take_result */
	struct smtp_result result;
	struct smtp_result *serr;	/* session error, rare: allocated when set */

	/* receive side */
	uint8_t expq[EXPQ_MAX];
	uint8_t exp_head, exp_n;
	struct buf in;		/* partial reply carried between feeds */
	struct smtp_reply_cursor cur;	/* how far the partial reply was scanned */
	uint64_t scan_work;	/* bytes the reply scanner looked at, all told */

	/* time (ms on the session's clock; see smtp_client_set_now) */
	uint64_t now;
	uint8_t clock_set;	/* set_now called at least once */
	uint64_t wait_since;	/* the reply at the head of expq awaited since */
	uint64_t body_progress;	/* the body last moved (354, handed out, bytes sent) */
	uint64_t txn_deadline;	/* the transaction must end by then; 0 = no limit */

	/* send side */
	uint8_t inflight;	/* a send set is handed out */
	uint8_t body_pending;	/* 354 seen, body not yet in a send set */
	uint8_t body_sending;	/* body is in the current send set */
	uint8_t early_reply;	/* the dot's reply came before sent() did */
	struct smtp_result early_result;	/* that reply, held until the send is in */
	uint8_t nseg;
	struct seg seg[3];
	size_t seg_off;		/* bytes of the set already sent */
	struct buf cmdq;	/* decided, not yet in a send set */
	struct buf sendbuf;	/* the commands of the current set */

	/* BDAT (RFC 3030): settings, then the transaction's progress */
	uint64_t bdat_threshold;	/* larger messages go by BDAT; 0: never */
	uint64_t bdat_pipeline;	/* messages up to this size: BDAT with MAIL and RCPT; 0: never */
	size_t bdat_chunk;	/* body bytes per chunk */
	uint8_t bdat;		/* this transaction sends BDAT, not DATA */
	uint8_t bdat_go;	/* RCPT accepted (or pipelined behind it): chunks may go */
	uint8_t bdat_early;	/* the chunks go behind MAIL and RCPT (bdat_pipeline) */
	uint8_t bdat_last;	/* BDAT LAST is queued */
	uint8_t bdat_failed;	/* a chunk was refused: RSET before the next MAIL */
	unsigned bdat_out;	/* BDAT replies outstanding */
	size_t bdat_pos;	/* next byte of body->data (stuffed) to send */
	char *bdat_buf;		/* an unstuffed chunk (only when a chunk has a stuffed dot) */
};

static const char *const stage_names[] = {
	[SMTP_STAGE_CONNECT] = "connect",
	[SMTP_STAGE_GREETING] = "greeting",
	[SMTP_STAGE_EHLO] = "EHLO",
	[SMTP_STAGE_HELO] = "HELO",
	[SMTP_STAGE_MAIL] = "MAIL",
	[SMTP_STAGE_RCPT] = "RCPT",
	[SMTP_STAGE_DATA] = "DATA",
	[SMTP_STAGE_DOT] = "DOT",
	[SMTP_STAGE_RSET] = "RSET",
	[SMTP_STAGE_QUIT] = "QUIT",
	[SMTP_STAGE_STARTTLS] = "STARTTLS",
	[SMTP_STAGE_AUTH] = "AUTH",
};

const char *
smtp_stage_name(enum smtp_stage s)
{
	if ((unsigned)s >= sizeof stage_names / sizeof stage_names[0])
		return "unknown";
	return stage_names[s];
}

static enum smtp_stage
wait_stage(enum wait w)
{
	switch (w) {
	case W_GREETING: return SMTP_STAGE_GREETING;
	case W_EHLO: return SMTP_STAGE_EHLO;
	case W_HELO: return SMTP_STAGE_HELO;
	case W_RSET: return SMTP_STAGE_RSET;
	case W_MAIL: return SMTP_STAGE_MAIL;
	case W_RCPT: return SMTP_STAGE_RCPT;
	case W_DATA: return SMTP_STAGE_DATA;
	case W_DOT: case W_DOT_IGNORE: return SMTP_STAGE_DOT;
	case W_QUIT: return SMTP_STAGE_QUIT;
	case W_STARTTLS: return SMTP_STAGE_STARTTLS;
	case W_AUTH: case W_AUTH_USER: case W_AUTH_PASS: return SMTP_STAGE_AUTH;
	/* a chunk's reply judges the message as the dot's does */
	case W_BDAT: case W_BDAT_LAST: return SMTP_STAGE_DOT;
	}
	return SMTP_STAGE_CONNECT;
}

/* wait_what - what a reply answers, for texts ("timeout waiting for reply to X"). */
static const char *
wait_what(enum wait w)
{
	switch (w) {
	case W_DOT: case W_DOT_IGNORE: return "end of data";
	case W_GREETING: return "greeting";
	case W_BDAT: case W_BDAT_LAST: return "BDAT";
	default: return smtp_stage_name(wait_stage(w));
	}
}

/*
 * in_one_trip - the whole message went behind MAIL and RCPT (or is
 * going): their replies may come only once the server has taken it in,
 * as late as the dot's (a server answers a pipelined group when its input
 * runs dry), so they get the dot's time-out if it is the longer. Not for
 * chunks sent after RCPT's reply (bdat_threshold): each has its own wait.
 */
static int
in_one_trip(const struct smtp_client *c)
{
	return c->txn && c->bdat_early && c->bdat_last;
}

static uint64_t
max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static uint64_t
wait_timeout(const struct smtp_client *c, enum wait w)
{
	switch (w) {
	case W_GREETING: return c->t.greeting;
	case W_EHLO: case W_HELO: case W_STARTTLS: return c->t.ehlo;
	case W_AUTH: case W_AUTH_USER: case W_AUTH_PASS: return c->t.ehlo;
	case W_RSET: case W_MAIL:
		return in_one_trip(c) ? max_u64(c->t.mail, c->t.dot) : c->t.mail;
	case W_RCPT: return in_one_trip(c) ? max_u64(c->t.rcpt, c->t.dot) : c->t.rcpt;
	case W_DATA: return c->t.data;
	case W_DOT: case W_DOT_IGNORE: return c->t.dot;
	case W_BDAT: case W_BDAT_LAST: return c->t.dot;
	case W_QUIT: return c->t.quit;
	}
	return c->t.mail;
}

/*
 * bdat_ready - a BDAT chunk may be put in the next send set: the
 * recipient was accepted, nothing was refused, LAST is not queued yet,
 * and (PIPELINING) fewer than BDAT_WINDOW chunks await their replies, or
 * (without it) none does.
 */
static int
bdat_ready(const struct smtp_client *c)
{
	if (!c->txn || !c->bdat || !c->bdat_go || c->failed || c->bdat_last)
		return 0;
	return c->pipe ? c->bdat_out < BDAT_WINDOW : c->exp_n == 0;
}

/* ---- results ---- */

static enum smtp_status
status_of(int code)
{
	if (code >= 200 && code < 300)
		return SMTP_OK;
	return code >= 500 && code < 600 ? SMTP_PERM : SMTP_TEMP;
}

static void
result_from_reply(struct smtp_result *res, enum smtp_stage stage,
    const struct smtp_reply *r)
{
	res->status = status_of(r->code);
	/* a 2xx/3xx where a refusal is judged is not a success */
	if (res->status == SMTP_OK && stage != SMTP_STAGE_DOT)
		res->status = SMTP_TEMP;
	res->cause = SMTP_CAUSE_REPLY;
	res->stage = stage;
	res->code = r->code;
	memcpy(res->enh, r->enh, sizeof res->enh);
	res->enh[sizeof res->enh - 1] = '\0';
	smtp_reply_first_line(r, res->text, sizeof res->text);
}

static void __attribute__((format(printf, 5, 6)))
result_from_text(struct smtp_result *res, enum smtp_status st,
    enum smtp_cause cause, enum smtp_stage stage, const char *fmt, ...)
{
	va_list ap;

	res->status = st;
	res->cause = cause;
	res->stage = stage;
	res->code = 0;
	res->enh[0] = '\0';
	va_start(ap, fmt);
	vsnprintf(res->text, sizeof res->text, fmt, ap);
	va_end(ap);
	/* addresses can end up in texts: keep them one line */
	for (char *p = res->text; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
}

static void
set_serr(struct smtp_client *c, const struct smtp_result *r)
{
	if (c->serr == NULL)
		c->serr = xmalloc(sizeof *c->serr);
	*c->serr = *r;
}

/* fail_txn - the first failure of a transaction is its result. */
static void
fail_txn(struct smtp_client *c, const struct smtp_result *r)
{
	if (!c->txn || c->failed)
		return;
	c->result = *r;
	c->failed = 1;
}

static void
finish_txn(struct smtp_client *c)
{
	if (!c->txn)
		return;
	/* The server may still hold a sender or recipients: reset first
	 * next time. After the final reply to the dot it holds nothing. */
	if (c->result.status != SMTP_OK && c->result.stage != SMTP_STAGE_DOT)
		c->rset_needed = 1;
	/* RFC 3030 2: a refused chunk ends the transaction; reset it */
	if (c->bdat && c->bdat_failed)
		c->rset_needed = 1;
	c->bdat = c->bdat_go = c->bdat_last = c->bdat_failed = c->bdat_early = 0;
	c->bdat_out = 0;
	if (c->bdat_buf != NULL && !c->inflight) {
		free(c->bdat_buf);	/* no send reads it any more */
		c->bdat_buf = NULL;
	}
	c->txn = 0;
	c->failed = 0;
	c->have_result = 1;
	c->msgs++;
	memset(&c->msg, 0, sizeof c->msg);
	c->body_pending = 0;
	if (c->state != SMTP_STATE_CLOSED && c->exp_n == 0)
		c->state = SMTP_STATE_IDLE;
}

/* close_session - nothing more will be sent or read. */
static void
close_session(struct smtp_client *c)
{
	c->state = SMTP_STATE_CLOSED;
	c->exp_n = 0;
	c->cmdq.len = 0;
	c->body_pending = 0;
	c->in.len = 0;
	memset(&c->cur, 0, sizeof c->cur);
	if (c->txn) {
		if (!c->failed)	/* cannot happen: callers fail it first */
			result_from_text(&c->result, SMTP_TEMP, SMTP_CAUSE_SESSION,
			    SMTP_STAGE_CONNECT, "session closed");
		c->failed = 1;
		finish_txn(c);
	}
}

/* session_fail - the session ends for reason r; a message in flight fails with it. */
static void
session_fail(struct smtp_client *c, const struct smtp_result *r)
{
	fail_txn(c, r);
	set_serr(c, r);
	close_session(c);
}

/* tls_fail - the session ends for a TLS reason (TEMP, SMTP_CAUSE_TLS). */
static void __attribute__((format(printf, 2, 3)))
tls_fail(struct smtp_client *c, const char *fmt, ...)
{
	struct smtp_result r;
	va_list ap;

	memset(&r, 0, sizeof r);
	r.status = SMTP_TEMP;
	r.cause = SMTP_CAUSE_TLS;
	r.stage = SMTP_STAGE_STARTTLS;
	va_start(ap, fmt);
	vsnprintf(r.text, sizeof r.text, fmt, ap);
	va_end(ap);
	for (char *p = r.text; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	session_fail(c, &r);
}

/* AB_TXN: the transaction's own time limit passed (the text says so). */
enum abort_kind { AB_DISCONNECT, AB_TIMEOUT, AB_MALFORMED, AB_UNEXPECTED, AB_TXN };

/* ms_text - "30s" or "2500ms", for texts naming a limit. */
static void
ms_text(char *out, size_t outlen, uint64_t ms)
{
	if (ms % 1000 == 0)
		snprintf(out, outlen, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(out, outlen, "%llums", (unsigned long long)ms);
}

/* session_abort - disconnect, time-out or garbage: TEMP, code 0, a clear text. */
static void
session_abort(struct smtp_client *c, enum abort_kind kind)
{
	static const enum smtp_cause causes[] = {
		[AB_DISCONNECT] = SMTP_CAUSE_DISCONNECT,
		[AB_TIMEOUT] = SMTP_CAUSE_TIMEOUT,
		[AB_MALFORMED] = SMTP_CAUSE_PROTOCOL,
		[AB_UNEXPECTED] = SMTP_CAUSE_PROTOCOL,
	};
	struct smtp_result r;
	enum abort_kind k = kind == AB_TXN ? AB_TIMEOUT : kind;
	enum smtp_cause cause = causes[k];
	enum wait w = c->exp_n ? (enum wait)c->expq[c->exp_head] : W_QUIT;

	if (c->body_pending || c->body_sending || (bdat_ready(c) && c->exp_n == c->bdat_out)) {
		static const char *const t[] = {
			[AB_DISCONNECT] = "connection lost while sending message body",
			[AB_TIMEOUT] = "timeout sending message body",
			[AB_MALFORMED] = "protocol error: malformed reply while sending message body",
			[AB_UNEXPECTED] = "protocol error: reply before end of message body",
		};
		result_from_text(&r, SMTP_TEMP, cause, SMTP_STAGE_DOT, "%s", t[k]);
	} else if (c->exp_n == 0) {
		static const char *const t[] = {
			[AB_DISCONNECT] = "connection lost while idle",
			[AB_TIMEOUT] = "timeout while idle",
			[AB_MALFORMED] = "protocol error: malformed reply while idle",
			[AB_UNEXPECTED] = "protocol error: unexpected reply while idle",
		};
		result_from_text(&r, SMTP_TEMP, cause, SMTP_STAGE_CONNECT, "%s", t[k]);
	} else {
		static const char *const t[] = {
			[AB_DISCONNECT] = "connection lost after",
			[AB_TIMEOUT] = "timeout waiting for reply to",
			[AB_MALFORMED] = "protocol error: malformed reply to",
			[AB_UNEXPECTED] = "protocol error: unexpected reply to",
		};
		if (w == W_GREETING)
			result_from_text(&r, SMTP_TEMP, cause, SMTP_STAGE_GREETING, "%s",
			    k == AB_DISCONNECT ? "connection lost before greeting" :
			    k == AB_TIMEOUT ? "timeout waiting for greeting" :
			    "protocol error: malformed greeting");
		else
			result_from_text(&r, SMTP_TEMP, cause, wait_stage(w),
			    "%s %s", t[k], wait_what(w));
	}
	if (kind == AB_TXN) {
		size_t n = strlen(r.text);
		char lim[32];

		ms_text(lim, sizeof lim, c->t.transaction);
		snprintf(r.text + n, sizeof r.text - n,
		    ": transaction time limit of %s exceeded", lim);
	}
	session_fail(c, &r);
}

/* ---- send side ---- */

static void
expect(struct smtp_client *c, enum wait w)
{
	if (c->exp_n >= EXPQ_MAX)
		panic("smtp_client: reply queue overflow");
	if (c->exp_n == 0)
		c->wait_since = c->now;	/* it heads the queue: its wait begins */
	c->expq[(c->exp_head + c->exp_n) % EXPQ_MAX] = (uint8_t)w;
	c->exp_n++;
}

static enum wait
expect_pop(struct smtp_client *c)
{
	enum wait w = (enum wait)c->expq[c->exp_head];

	c->exp_head = (uint8_t)((c->exp_head + 1) % EXPQ_MAX);
	c->exp_n--;
	c->wait_since = c->now;	/* the next reply's wait begins now */
	return w;
}

/* addr_8bit - a byte >= 0x80: the address needs SMTPUTF8 (RFC 6531). */
static int
addr_8bit(const char *a)
{
	for (; *a; a++)
		if ((unsigned char)*a >= 0x80)
			return 1;
	return 0;
}

static void
queue_mail(struct smtp_client *c)
{
	const struct msg_body *b = c->msg.body;
	int utf8 = addr_8bit(c->msg.from) || addr_8bit(c->msg.to);

	buf_appendf(&c->cmdq, "MAIL FROM:<%s>", c->msg.from);
	if (c->ext.has_size)
		buf_appendf(&c->cmdq, " SIZE=%zu", b->size + c->msg.prefix_len);
	if (b->eightbit && c->ext.eightbitmime)
		buf_append(&c->cmdq, " BODY=8BITMIME", 14);
	if (utf8 && c->ext.smtputf8)
		buf_append(&c->cmdq, " SMTPUTF8", 9);
	buf_append(&c->cmdq, "\r\n", 2);
	expect(c, W_MAIL);
}

static void
queue_rcpt(struct smtp_client *c)
{
	buf_appendf(&c->cmdq, "RCPT TO:<%s>\r\n", c->msg.to);
	expect(c, W_RCPT);
}

static void
queue_cmd(struct smtp_client *c, const char *s, enum wait w)
{
	buf_append(&c->cmdq, s, strlen(s));
	expect(c, w);
}

/* ---- EHLO keywords ---- */

static int
kw_is(const char *line, size_t kl, const char *kw)
{
	return strlen(kw) == kl && strncasecmp(line, kw, kl) == 0;
}

/* parse_auth - the mechanisms after AUTH (or the old AUTH=), p..end. */
static void
parse_auth(struct smtp_client *c, const char *p, const char *end)
{
	c->ext.auth = 1;
	while (p < end) {
		const char *w;

		while (p < end && (*p == ' ' || *p == '='))
			p++;
		for (w = p; p < end && *p != ' '; p++)
			;
		if (kw_is(w, (size_t)(p - w), "PLAIN"))
			c->ext.auth_plain = 1;
		else if (kw_is(w, (size_t)(p - w), "LOGIN"))
			c->ext.auth_login = 1;
	}
}

/* parse_ehlo - keywords from the lines after the first (RFC 5321 4.1.1.1). */
static void
parse_ehlo(struct smtp_client *c, const struct smtp_reply *r)
{
	const char *p = strchr(r->text, '\n');

	memset(&c->ext, 0, sizeof c->ext);
	while (p != NULL) {
		const char *line = p + 1, *end, *q;
		size_t kl;

		p = strchr(line, '\n');
		end = p ? p : line + strlen(line);
		while (line < end && *line == ' ')
			line++;
		for (q = line; q < end && *q != ' ' && *q != '='; q++)
			;
		kl = (size_t)(q - line);
		if (kw_is(line, kl, "PIPELINING"))
			c->ext.pipelining = 1;
		else if (kw_is(line, kl, "8BITMIME"))
			c->ext.eightbitmime = 1;
		else if (kw_is(line, kl, "SMTPUTF8"))
			c->ext.smtputf8 = 1;
		else if (kw_is(line, kl, "STARTTLS"))
			c->ext.starttls = 1;
		else if (kw_is(line, kl, "CHUNKING"))
			c->ext.chunking = 1;
		else if (kw_is(line, kl, "ENHANCEDSTATUSCODES"))
			c->ext.enhancedstatuscodes = 1;
		else if (kw_is(line, kl, "AUTH"))
			parse_auth(c, q, end);
		else if (kw_is(line, kl, "SIZE")) {
			uint64_t v = 0;

			c->ext.has_size = 1;
			while (q < end && *q == ' ')
				q++;
			for (; q < end && *q >= '0' && *q <= '9'; q++) {
				if (v > (UINT64_MAX - 9) / 10) {
					v = 0;	/* absurd: treat as no limit */
					break;
				}
				v = v * 10 + (uint64_t)(*q - '0');
			}
			c->ext.size = v;
		}
	}
}

/* ---- AUTH (RFC 4954) ---- */

const char *
smtp_auth_mech_name(enum smtp_auth_mech m)
{
	return m == SMTP_AUTH_PLAIN ? "PLAIN" : m == SMTP_AUTH_LOGIN ? "LOGIN" : "ANY";
}

/* auth_fail - the session ends: TEMP, SMTP_CAUSE_AUTH, stage AUTH; r: the
 * server's reply (NULL: the text alone). Texts never carry a secret. */
static void __attribute__((format(printf, 3, 4)))
auth_fail(struct smtp_client *c, const struct smtp_reply *r, const char *fmt, ...)
{
	struct smtp_result res;
	va_list ap;

	memset(&res, 0, sizeof res);
	if (r != NULL) {
		result_from_reply(&res, SMTP_STAGE_AUTH, r);
	} else {
		va_start(ap, fmt);
		vsnprintf(res.text, sizeof res.text, fmt, ap);
		va_end(ap);
	}
	res.status = SMTP_TEMP;
	res.cause = SMTP_CAUSE_AUTH;
	res.stage = SMTP_STAGE_AUTH;
	session_fail(c, &res);
}

/* queue_b64 - prefix, base64 of p[0..n), CRLF: a command carrying a secret. */
static void
queue_b64(struct smtp_client *c, const char *prefix, const void *p, size_t n, enum wait w)
{
	size_t room = 4 * ((n + 2) / 3) + 1;
	unsigned char *b = xmalloc(room);
	int k = EVP_EncodeBlock(b, p, (int)n);

	buf_append(&c->cmdq, prefix, strlen(prefix));
	buf_append(&c->cmdq, (const char *)b, k > 0 ? (size_t)k : 0);
	buf_append(&c->cmdq, "\r\n", 2);
	OPENSSL_cleanse(b, room);
	free(b);
	c->secret_set = 1;
	expect(c, w);
}

/* auth_start - EHLO done (over TLS when TLS is used): log in. */
static void
auth_start(struct smtp_client *c)
{
	enum smtp_auth_mech m = (enum smtp_auth_mech)c->auth_mech;

	if (!c->tls_active && !c->auth_clear) {
		auth_fail(c, NULL, "refusing to send credentials without TLS (AUTH needs TLS "
		    "unless tls = \"none\" is set)");
		return;
	}
	if (!c->ext.auth) {
		auth_fail(c, NULL, "the server does not offer AUTH");
		return;
	}
	if (m == SMTP_AUTH_ANY)
		m = c->ext.auth_plain ? SMTP_AUTH_PLAIN : c->ext.auth_login ? SMTP_AUTH_LOGIN :
		    SMTP_AUTH_ANY;
	if (m == SMTP_AUTH_ANY || (m == SMTP_AUTH_PLAIN && !c->ext.auth_plain) ||
	    (m == SMTP_AUTH_LOGIN && !c->ext.auth_login)) {
		auth_fail(c, NULL, "the server does not offer AUTH %s", m == SMTP_AUTH_ANY ?
		    "PLAIN or LOGIN" : smtp_auth_mech_name(m));
		return;
	}
	c->state = SMTP_STATE_BUSY;
	if (m == SMTP_AUTH_LOGIN) {
		queue_cmd(c, "AUTH LOGIN\r\n", W_AUTH_USER);
		return;
	}
	{
		/* RFC 4616: authzid (empty) NUL authcid NUL passwd */
		size_t ul = strlen(c->auth_user), pl = strlen(c->auth_pass);
		size_t n = ul + pl + 2;
		char *raw = xmalloc(n);

		raw[0] = '\0';
		memcpy(raw + 1, c->auth_user, ul);
		raw[1 + ul] = '\0';
		memcpy(raw + 2 + ul, c->auth_pass, pl);
		queue_b64(c, "AUTH PLAIN ", raw, n, W_AUTH);
		OPENSSL_cleanse(raw, n);
		free(raw);
	}
}

/* auth_reply - the server's answer to an AUTH step (w). */
static void
auth_reply(struct smtp_client *c, enum wait w, const struct smtp_reply *r)
{
	if (w == W_AUTH && r->code / 100 == 2) {
		c->authed = 1;
		c->state = SMTP_STATE_IDLE;
		return;
	}
	if (w == W_AUTH_USER && r->code == 334) {
		queue_b64(c, "", c->auth_user, strlen(c->auth_user), W_AUTH_PASS);
		return;
	}
	if (w == W_AUTH_PASS && r->code == 334) {
		queue_b64(c, "", c->auth_pass, strlen(c->auth_pass), W_AUTH);
		return;
	}
	/* 535 5.7.8 bad credentials, 534 mechanism too weak, 530 needs
	 * TLS, 454, a 334 where none is due (PLAIN sent everything at
	 * once): the login failed. */
	auth_fail(c, r, "%s", "");
}

/* ---- BDAT (RFC 3030) ---- */

/* bdat_begin - the recipient is accepted: the chunks may go. */
static void
bdat_begin(struct smtp_client *c)
{
	c->bdat_go = 1;
	c->bdat_pos = 0;
	c->body_progress = c->now;	/* the block time-out until it is handed out */
}

/*
 * bdat_reply - the reply to a chunk. 250 to a chunk but the last: go on.
 * The reply to LAST is the outcome, as the dot's would be. A refusal of
 * any chunk fails the transaction (no more chunks go; RSET next time);
 * replies still due for chunks already pipelined are read and ignored.
 * When the transaction's last reply comes while a chunk is still being
 * sent (completion order), it is held until sent() reports the send.
 */
static void
bdat_reply(struct smtp_client *c, enum wait w, const struct smtp_reply *r)
{
	struct smtp_result res;
	int ok = r->code / 100 == 2;

	if (c->bdat_out > 0)
		c->bdat_out--;
	if (!ok || w == W_BDAT_LAST) {
		result_from_reply(&res, SMTP_STAGE_DOT, r);
		if (!ok)
			c->bdat_failed = 1;
		if (c->bdat_out == 0 && c->body_sending && !c->failed) {
			c->early_reply = 1;
			c->early_result = res;
			return;
		}
		fail_txn(c, &res);	/* success too, for LAST: it is the outcome */
	}
	if (c->bdat_out == 0 && c->failed) {
		if (c->body_sending) {
			c->early_reply = 1;
			c->early_result = c->result;
			return;
		}
		finish_txn(c);
	}
}

/* bdat_stuffed - is data[i] a dot added by stuffing (a line's first byte)? */
static int
bdat_stuffed(const char *d, size_t i)
{
	return d[i] == '.' && (i == 0 || d[i - 1] == '\n');
}

/*
 * bdat_chunk - the next chunk's body bytes, unstuffed: up to bdat_chunk
 * bytes from bdat_pos of the stuffed body, its dots dropped (and never
 * the final "."). A run without a stuffed dot is handed out in place;
 * one with dots is copied into bdat_buf, once. Sets *p, *n; returns 1
 * when the body is done (this is the LAST chunk).
 */
static int
bdat_chunk(struct smtp_client *c, const char **p, size_t *n)
{
	const char *d = c->msg.body->data;
	size_t end = c->msg.body->len - 3;	/* without ".\r\n" */
	size_t want = c->bdat_chunk, pos = c->bdat_pos, i = pos, o = 0;
	int copying = 0;

	while (o < want && i < end) {
		size_t s = i, run;

		if (bdat_stuffed(d, i)) {
			/* drop the dot: from here on the chunk is a copy */
			if (!copying) {
				if (c->bdat_buf == NULL)
					c->bdat_buf = xmalloc(c->bdat_chunk);
				memcpy(c->bdat_buf, d + pos, o);
				copying = 1;
			}
			i++;
			continue;
		}
		/* up to the next stuffed dot ("\n." ahead), or the end;
		 * looking no further than this chunk can take */
		{
			size_t lim = end - i > want - o + 1 ? i + want - o + 1 : end;
			const char *q = memmem(d + i, lim - i, "\n.", 2);

			s = q != NULL ? (size_t)(q - d) + 1 : lim;
		}
		run = s - i;
		if (run > want - o)
			run = want - o;
		if (copying)
			memcpy(c->bdat_buf + o, d + i, run);
		o += run;
		i += run;
	}
	c->bdat_pos = i;
	*p = copying ? c->bdat_buf : d + pos;
	*n = o;
	return i >= end;
}

/*
 * bdat_queue - put the next chunk in the send set being built: "BDAT n"
 * (with LAST at the end of the body) into sendbuf, then the prefix (first
 * chunk only) and the chunk's bytes as segments.
 */
static void
bdat_queue(struct smtp_client *c)
{
	const char *p;
	size_t n, pre = 0;
	int last;

	if (c->bdat_pos == 0 && !c->bdat_out && c->msg.prefix != NULL)
		pre = c->msg.prefix_len;
	last = bdat_chunk(c, &p, &n);
	buf_appendf(&c->sendbuf, "BDAT %zu%s\r\n", pre + n, last ? " LAST" : "");
	c->seg[c->nseg++] = (struct seg){ c->sendbuf.data, c->sendbuf.len };
	if (pre > 0)
		c->seg[c->nseg++] = (struct seg){ c->msg.prefix, pre };
	if (n > 0)
		c->seg[c->nseg++] = (struct seg){ p, n };
	c->bdat_last = (uint8_t)last;
	c->bdat_out++;
	expect(c, last ? W_BDAT_LAST : W_BDAT);
	c->body_sending = 1;
	c->body_progress = c->now;
}

/* ---- receive side ---- */

static void
on_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	struct smtp_result res;
	int cls = r->code / 100;
	enum wait w;

	if (c->exp_n == 0) {
		/* An idle session's server may time us out with 421: that
		 * is a close, not garbage. */
		if (r->code == 421) {
			result_from_reply(&res, SMTP_STAGE_CONNECT, r);
			session_fail(c, &res);
		} else {
			session_abort(c, AB_UNEXPECTED);
		}
		return;
	}
	if (c->body_pending) {
		/* A refusal before we even sent the body (size, content
		 * scanners that cut in): the stream is out of step now. */
		if (cls == 4 || cls == 5) {
			result_from_reply(&res, SMTP_STAGE_DOT, r);
			fail_txn(c, &res);
			if (r->code == 421)
				set_serr(c, &res);
			close_session(c);
		} else {
			session_abort(c, AB_UNEXPECTED);
		}
		return;
	}

	w = expect_pop(c);
	if (w == W_QUIT) {
		close_session(c);
		return;
	}
	if (r->code == 421) {
		result_from_reply(&res, wait_stage(w), r);
		session_fail(c, &res);
		return;
	}

	switch (w) {
	case W_GREETING:
		if (cls == 2) {
			buf_appendf(&c->cmdq, "EHLO %s\r\n", c->ehlo_name);
			expect(c, W_EHLO);
			return;
		}
		break;
	case W_EHLO:
		if (cls == 2) {
			parse_ehlo(c, r);
			if (!c->tls_active && c->tls_mode != SMTP_TLS_NO) {
				if (c->ext.starttls) {
					queue_cmd(c, "STARTTLS\r\n", W_STARTTLS);
					return;
				}
				if (c->tls_mode == SMTP_TLS_MUST) {
					tls_fail(c, "the server does not offer STARTTLS and TLS "
					    "is required");
					return;
				}
			}
			if (c->auth_user != NULL && !c->authed) {
				auth_start(c);
				return;
			}
			c->state = SMTP_STATE_IDLE;
			return;
		}
		if (cls == 5) {
			buf_appendf(&c->cmdq, "HELO %s\r\n", c->ehlo_name);
			expect(c, W_HELO);
			return;
		}
		break;
	case W_HELO:
		if (cls == 2) {
			memset(&c->ext, 0, sizeof c->ext);
			if (c->tls_mode == SMTP_TLS_MUST && !c->tls_active) {
				tls_fail(c, "the server refused EHLO (no STARTTLS) and TLS "
				    "is required");
				return;
			}
			if (c->auth_user != NULL) {
				auth_fail(c, NULL, "the server refused EHLO, and AUTH needs it");
				return;
			}
			c->state = SMTP_STATE_IDLE;
			return;
		}
		break;
	case W_STARTTLS:
		if (r->code == 220) {
			/* Nothing may follow in clear text (checked in feed). */
			c->state = SMTP_STATE_TLS;
			c->wait_since = c->now;		/* the handshake's time-out */
			return;
		}
		if (c->tls_mode == SMTP_TLS_MUST || cls == 2 || cls == 3) {
			char line[sizeof res.text];

			smtp_reply_first_line(r, line, sizeof line);
			tls_fail(c, "STARTTLS refused: %s", line);
			if (c->serr != NULL) {	/* keep the server's words for the event */
				c->serr->code = r->code;
				memcpy(c->serr->enh, r->enh, sizeof c->serr->enh);
				c->serr->enh[sizeof c->serr->enh - 1] = '\0';
			}
			return;
		}
		/* Opportunistic: a 4xx/5xx to STARTTLS, go on in clear text. */
		c->state = SMTP_STATE_IDLE;
		return;
	case W_AUTH:
	case W_AUTH_USER:
	case W_AUTH_PASS:
		auth_reply(c, w, r);
		return;
	case W_RSET:
	case W_MAIL:
	case W_RCPT:
		if (w == W_RSET && cls != 2) {
			/* A server that will not reset cannot be trusted with
			 * the next transaction: the session ends, and the job
			 * (which was never tried) is a temporary failure, not
			 * a verdict on its recipient. */
			result_from_reply(&res, SMTP_STAGE_RSET, r);
			res.status = SMTP_TEMP;
			res.cause = SMTP_CAUSE_SESSION;
			session_fail(c, &res);
			return;
		}
		if (cls == 2) {
			if (!c->pipe && !c->failed) {
				if (w == W_RSET)
					queue_mail(c);
				else if (w == W_MAIL)
					queue_rcpt(c);
				else if (c->bdat)
					bdat_begin(c);
				else
					queue_cmd(c, "DATA\r\n", W_DATA);
			} else if (c->pipe && c->bdat && w == W_RCPT) {
				/* BDAT after RCPT: the group ends with RCPT's
				 * reply. A chunk already pipelined behind it
				 * (bdat_pipeline) still has its reply due. */
				if (c->failed) {
					if (c->bdat_out == 0)
						finish_txn(c);
				} else if (!c->bdat_go) {
					bdat_begin(c);
				}
			}
			return;
		}
		result_from_reply(&res, wait_stage(w), r);
		fail_txn(c, &res);
		/* A refused RCPT is the outcome; with a chunk pipelined
		 * behind it, once that chunk's reply (read and ignored:
		 * "554 no valid recipients") is in. */
		if (!c->pipe || (c->bdat && w == W_RCPT && c->bdat_out == 0))
			finish_txn(c);
		return;
	case W_BDAT:
	case W_BDAT_LAST:
		bdat_reply(c, w, r);
		return;
	case W_DATA:
		if (cls == 3) {
			if (c->failed) {
				/* RFC 2920 3.1: no valid recipient, yet 354. */
				queue_cmd(c, ".\r\n", W_DOT_IGNORE);
			} else {
				c->body_pending = 1;
				c->body_progress = c->now;
				expect(c, W_DOT);
			}
			return;
		}
		result_from_reply(&res, SMTP_STAGE_DATA, r);
		fail_txn(c, &res);
		finish_txn(c);
		return;
	case W_DOT:
		result_from_reply(&res, SMTP_STAGE_DOT, r);
		if (c->body_sending) {
			/* The body is handed out and the session has not
			 * reported the send yet (it may see the reply first).
			 * The transaction stays open until it does: the send
			 * set still points at this message's header and body,
			 * so nothing may start the next one. If all of it
			 * went, this is the outcome; if not, the server cut
			 * in (smtp_client_sent() decides). */
			c->early_reply = 1;
			c->early_result = res;
			return;
		}
		fail_txn(c, &res);	/* success too: it is the outcome */
		finish_txn(c);
		return;
	case W_DOT_IGNORE:
		finish_txn(c);
		return;
	case W_QUIT:
		break;
	}

	/* greeting, EHLO or HELO refused: the session never opened */
	result_from_reply(&res, wait_stage(w), r);
	session_fail(c, &res);
}

/*
 * process - take whole replies from p[0..len); returns the bytes used.
 * A partial reply at the end stays scanned in c->cur: the next call must
 * start with the same bytes (moved to p[0]) and more. The text of a reply
 * is taken out once, when it is complete, so a reply dripped one byte per
 * feed costs time linear in its length.
 */
static size_t
process(struct smtp_client *c, const char *p, size_t len)
{
	struct smtp_reply r;
	size_t pos = 0, used;

	while (pos < len && c->state != SMTP_STATE_CLOSED && c->state != SMTP_STATE_TLS) {
		size_t before = c->cur.work;
		int rc = smtp_reply_scan(p + pos, len - pos, &c->cur);

		c->scan_work += c->cur.work - before;
		if (rc == 0)
			break;
		if (rc < 0) {
			memset(&c->cur, 0, sizeof c->cur);
			session_abort(c, AB_MALFORMED);
			break;
		}
		if (smtp_reply_parse(p + pos, c->cur.end, &r, &used) != 1 || used != c->cur.end)
			panic("smtp_client: scanned reply does not parse");
		c->scan_work += 2 * used;	/* its scan again, then its text */
		memset(&c->cur, 0, sizeof c->cur);
		pos += used;
		on_reply(c, &r);
	}
	return pos;
}

/* ---- API ---- */

struct smtp_client *
smtp_client_new(const char *ehlo_name, const struct smtp_timeouts *t)
{
	struct smtp_client *c = xcalloc(1, sizeof *c);

	c->ehlo_name = xstrdup(ehlo_name);
	c->t = *t;
	c->bdat_chunk = BDAT_CHUNK_DEFAULT;
	smtp_client_init(c);
	return c;
}

void
smtp_client_free(struct smtp_client *c)
{
	if (c == NULL)
		return;
	free(c->ehlo_name);
	free(c->serr);
	free(c->bdat_buf);
	smtp_client_set_auth(c, NULL, NULL, SMTP_AUTH_ANY, 0);	/* wipes them */
	if (c->cmdq.data)
		OPENSSL_cleanse(c->cmdq.data, c->cmdq.cap);
	if (c->sendbuf.data)
		OPENSSL_cleanse(c->sendbuf.data, c->sendbuf.cap);
	buf_free(&c->in);
	buf_free(&c->cmdq);
	buf_free(&c->sendbuf);
	free(c);
}

void
smtp_client_init(struct smtp_client *c)
{
	c->state = SMTP_STATE_BUSY;
	memset(&c->ext, 0, sizeof c->ext);
	c->tls_active = 0;
	c->authed = 0;
	c->msgs = 0;
	memset(&c->msg, 0, sizeof c->msg);
	c->txn = c->failed = c->pipe = c->rset_needed = c->have_result = 0;
	free(c->serr);
	c->serr = NULL;
	c->exp_head = c->exp_n = 0;
	c->in.len = 0;
	memset(&c->cur, 0, sizeof c->cur);
	c->inflight = c->body_pending = c->body_sending = c->nseg = 0;
	c->early_reply = 0;
	c->seg_off = 0;
	c->cmdq.len = 0;
	c->sendbuf.len = 0;
	c->txn_deadline = 0;
	c->body_progress = c->now;
	expect(c, W_GREETING);	/* awaited from now */
}

/*
 * injected - bytes came after the 220 to STARTTLS, before TLS: a
 * man-in-the-middle may have put commands' replies there to be read as
 * if they came over TLS (CVE-2011-0411). Never go on.
 */
static void
injected(struct smtp_client *c)
{
	struct smtp_result r;

	result_from_text(&r, SMTP_TEMP, SMTP_CAUSE_PROTOCOL, SMTP_STAGE_STARTTLS,
	    "protocol error: plaintext received after the reply to STARTTLS, before "
	    "the TLS handshake (possible injection)");
	session_fail(c, &r);
}

enum smtp_state
smtp_client_feed(struct smtp_client *c, const char *buf, size_t len)
{
	size_t used;

	if (c->state == SMTP_STATE_CLOSED || len == 0)
		return c->state;
	if (c->state == SMTP_STATE_TLS) {
		injected(c);
		return c->state;
	}
	if (c->in.len == 0) {
		/* the usual case: whole replies straight from the caller's buffer */
		used = process(c, buf, len);
		if (c->state != SMTP_STATE_CLOSED && used < len)
			buf_append(&c->in, buf + used, len - used);
	} else {
		buf_append(&c->in, buf, len);
		used = process(c, c->in.data, c->in.len);
		if (c->state != SMTP_STATE_CLOSED)
			buf_consume(&c->in, used);
	}
	if (c->state == SMTP_STATE_TLS && c->in.len > 0)
		injected(c);
	return c->state;
}

enum smtp_state
smtp_client_disconnected(struct smtp_client *c)
{
	if (c->state == SMTP_STATE_CLOSED)
		return c->state;
	if (c->state == SMTP_STATE_TLS)
		tls_fail(c, "connection lost during the TLS handshake");
	else if (c->exp_n > 0 && c->expq[c->exp_head] == W_QUIT)
		close_session(c);	/* QUIT sent: a close is its answer */
	else
		session_abort(c, AB_DISCONNECT);
	return c->state;
}

/*
 * stage_deadline - when what the client waits for now times out (absolute
 * ms), 0 if it waits for nothing. The body: block ms after it last moved.
 * A reply: its stage's time-out after its wait began (see expect()).
 */
static uint64_t
stage_deadline(const struct smtp_client *c)
{
	if (c->state == SMTP_STATE_TLS)
		return c->wait_since + c->t.ehlo;	/* the handshake */
	if (c->state != SMTP_STATE_BUSY)
		return 0;
	if (c->body_pending || c->body_sending || bdat_ready(c))
		return c->body_progress + c->t.block;
	if (c->exp_n == 0)
		return 0;
	return c->wait_since + wait_timeout(c, (enum wait)c->expq[c->exp_head]);
}

/* txn_limited - the transaction's own deadline comes first (or ties). */
static int
txn_limited(const struct smtp_client *c, uint64_t stage)
{
	return c->txn && c->txn_deadline != 0 && (stage == 0 || c->txn_deadline <= stage);
}

enum smtp_state
smtp_client_timeout(struct smtp_client *c)
{
	if (c->state == SMTP_STATE_TLS) {
		char lim[32];

		ms_text(lim, sizeof lim, c->t.ehlo);
		tls_fail(c, "timeout during the TLS handshake (%s)", lim);
		return c->state;
	}
	if (c->state != SMTP_STATE_BUSY)
		return c->state;	/* nothing was awaited: a stale timer */
	if (c->exp_n > 0 && c->expq[c->exp_head] == W_QUIT)
		close_session(c);
	else if (txn_limited(c, stage_deadline(c)))
		session_abort(c, AB_TXN);
	else
		session_abort(c, AB_TIMEOUT);
	return c->state;
}

void
smtp_client_set_now(struct smtp_client *c, uint64_t now_ms)
{
	if (!c->clock_set) {
		/* Waits begun before the clock was known begin now; a
		 * limit already set counted from 0 and moves with them. */
		c->clock_set = 1;
		c->wait_since = c->body_progress = now_ms;
		if (c->txn_deadline != 0)
			c->txn_deadline += now_ms;
	}
	if (now_ms > c->now)
		c->now = now_ms;
}

enum smtp_state
smtp_client_state(const struct smtp_client *c)
{
	return c->state;
}

uint64_t
smtp_client_deadline(const struct smtp_client *c)
{
	uint64_t d = stage_deadline(c);

	if (d == 0)
		return 0;
	if (txn_limited(c, d))
		d = c->txn_deadline;
	return d > c->now ? d - c->now : 1;	/* passed: fire at once */
}

int
smtp_client_output(struct smtp_client *c, struct iovec iov[3])
{
	size_t skip;
	int k = 0;

	if (c->inflight || c->state == SMTP_STATE_CLOSED)
		return 0;
	if (c->nseg == 0) {
		if (c->cmdq.len > 0) {
			struct buf tmp = c->sendbuf;

			c->sendbuf = c->cmdq;
			c->cmdq = tmp;
			c->cmdq.len = 0;
			if (!bdat_ready(c))
				c->seg[c->nseg++] = (struct seg){ c->sendbuf.data, c->sendbuf.len };
		}
		if (bdat_ready(c)) {
			bdat_queue(c);	/* appends to sendbuf: its segment after */
		} else if (c->body_pending) {
			if (c->msg.prefix != NULL && c->msg.prefix_len > 0)
				c->seg[c->nseg++] = (struct seg){ c->msg.prefix, c->msg.prefix_len };
			c->seg[c->nseg++] = (struct seg){ c->msg.body->data, c->msg.body->len };
			c->body_pending = 0;
			c->body_sending = 1;
			c->body_progress = c->now;
		}
		c->seg_off = 0;
		if (c->nseg == 0)
			return 0;
	}
	skip = c->seg_off;
	for (int i = 0; i < c->nseg; i++) {
		if (skip >= c->seg[i].len) {
			skip -= c->seg[i].len;
			continue;
		}
		iov[k].iov_base = (void *)(c->seg[i].p + skip);
		iov[k].iov_len = c->seg[i].len - skip;
		skip = 0;
		k++;
	}
	c->inflight = 1;
	return k;
}

void
smtp_client_sent(struct smtp_client *c, size_t n)
{
	size_t total = 0;

	if (!c->inflight)
		return;
	c->inflight = 0;
	for (int i = 0; i < c->nseg; i++)
		total += c->seg[i].len;
	if (n > total - c->seg_off)
		panic("smtp_client_sent: %zu bytes reported, %zu were handed out",
		    n, total - c->seg_off);
	c->seg_off += n;
	if (c->body_sending && n > 0)
		c->body_progress = c->now;
	if (c->seg_off == total) {
		/* The reply to the dot is awaited from the end of the body. */
		if (c->body_sending && c->exp_n > 0 && c->expq[c->exp_head] == W_DOT)
			c->wait_since = c->now;
		/* A chunk's reply, when it is the only one due, likewise;
		 * and in one round trip (in_one_trip) MAIL's or RCPT's at
		 * the head once the whole message is out. */
		if (c->body_sending && c->bdat && (c->exp_n == 1 || in_one_trip(c)))
			c->wait_since = c->now;
		c->nseg = 0;
		c->seg_off = 0;
		if (c->secret_set && c->sendbuf.data != NULL)
			OPENSSL_cleanse(c->sendbuf.data, c->sendbuf.len);
		c->secret_set = 0;
		c->sendbuf.len = 0;
		c->body_sending = 0;
		if (c->early_reply) {
			/* The whole body went: the held reply is the outcome. */
			c->early_reply = 0;
			fail_txn(c, &c->early_result);
			finish_txn(c);
		}
	} else if (c->early_reply && c->state != SMTP_STATE_CLOSED) {
		/* The server answered before it had the whole body: it cut
		 * in, and what we would send next is out of step. */
		struct smtp_result r;

		c->early_reply = 0;
		result_from_text(&r, SMTP_TEMP, SMTP_CAUSE_PROTOCOL, SMTP_STAGE_DOT,
		    "protocol error: reply before end of message body");
		session_fail(c, &r);
	}
}

static int
addr_bad(const char *a)
{
	for (; *a; a++)
		if ((unsigned char)*a < 0x20 || *a == 0x7f)
			return 1;
	return 0;
}

void
smtp_client_start(struct smtp_client *c, const struct smtp_msg *m)
{
	size_t size;
	int chunking, early;

	if (c->state != SMTP_STATE_IDLE || c->txn)
		panic("smtp_client_start: session not idle");
	size = m->body->size + m->prefix_len;
	if (c->ext.has_size && c->ext.size > 0 && size > c->ext.size) {
		result_from_text(&c->result, SMTP_PERM, SMTP_CAUSE_SIZE, SMTP_STAGE_MAIL,
		    "message size %zu exceeds server limit %llu",
		    size, (unsigned long long)c->ext.size);
		memcpy(c->result.enh, "5.3.4", 6);
		c->have_result = 1;
		c->msgs++;
		return;
	}
	/* A CR or LF in an address would smuggle commands: refuse to send
	 * it at all (the job layer should have caught it). */
	if (addr_bad(m->from) || addr_bad(m->to)) {
		int bad_from = addr_bad(m->from);

		result_from_text(&c->result, SMTP_PERM, SMTP_CAUSE_PROTOCOL,
		    bad_from ? SMTP_STAGE_MAIL : SMTP_STAGE_RCPT,
		    "invalid %s address: control characters",
		    bad_from ? "sender" : "recipient");
		memcpy(c->result.enh, bad_from ? "5.1.7" : "5.1.3", 6);
		c->have_result = 1;
		c->msgs++;
		return;
	}
	/* RFC 6531 3.4: an address with 8-bit bytes (a UTF-8 local part;
	 * domains arrive as A-labels) may only go to a server that offers
	 * SMTPUTF8. Without it, no MAIL is sent: the message cannot be
	 * delivered there (5.6.7, RFC 6531 3.6). */
	if (!c->ext.smtputf8 && (addr_8bit(m->from) || addr_8bit(m->to))) {
		int from8 = addr_8bit(m->from);

		result_from_text(&c->result, SMTP_PERM, SMTP_CAUSE_PROTOCOL, SMTP_STAGE_MAIL,
		    "%s address needs SMTPUTF8, which the server does not offer",
		    from8 ? "sender" : "recipient");
		memcpy(c->result.enh, "5.6.7", 6);
		c->have_result = 1;
		c->msgs++;
		return;
	}

	/* RFC 6152 3: 8-bit content may only go to a server that offers
	 * 8BITMIME. volley does not downgrade (a quoted-printable rewrite
	 * would break the DKIM body hash): no MAIL is sent, the message
	 * cannot be delivered there (5.6.3, RFC 3463: conversion required
	 * but not supported). */
	if (m->body->eightbit && !c->ext.eightbitmime) {
		result_from_text(&c->result, SMTP_PERM, SMTP_CAUSE_PROTOCOL, SMTP_STAGE_MAIL,
		    "message has 8-bit content and the server does not offer 8BITMIME");
		memcpy(c->result.enh, "5.6.3", 6);
		c->have_result = 1;
		c->msgs++;
		return;
	}

	if (c->bdat_buf != NULL && !c->inflight) {
		free(c->bdat_buf);	/* the last message's chunk copy */
		c->bdat_buf = NULL;
	}
	c->msg = *m;
	c->txn = 1;
	/* RFC 3030: a large message goes in chunks when the server offers
	 * it; a small one in one BDAT LAST pipelined behind MAIL and RCPT
	 * (one round trip instead of two; RFC 3030 4.2 shows it) when it
	 * offers PIPELINING too. bdat_threshold 0 turns BDAT off. */
	chunking = c->ext.chunking && c->bdat_threshold > 0;
	early = chunking && c->ext.pipelining && c->bdat_pipeline > 0 &&
	    size <= c->bdat_pipeline;
	c->bdat = early || (chunking && size > c->bdat_threshold);
	c->bdat_early = (uint8_t)early;
	c->bdat_go = c->bdat_last = c->bdat_failed = 0;
	c->bdat_out = 0;
	c->bdat_pos = 0;
	c->failed = 0;
	c->txn_deadline = c->t.transaction ? c->now + c->t.transaction : 0;
	c->pipe = c->ext.pipelining ? 1 : 0;
	c->state = SMTP_STATE_BUSY;
	if (c->rset_needed) {
		c->rset_needed = 0;
		queue_cmd(c, "RSET\r\n", W_RSET);
		if (!c->pipe)
			return;		/* MAIL follows RSET's reply */
	}
	queue_mail(c);
	if (c->pipe) {
		queue_rcpt(c);
		if (!c->bdat)
			queue_cmd(c, "DATA\r\n", W_DATA);
		else if (early)	/* the server reads and drops it if RCPT fails */
			bdat_begin(c);
		/* else BDAT waits for RCPT's reply (no large body for nobody) */
	}
}

void
smtp_client_quit(struct smtp_client *c)
{
	if (c->state == SMTP_STATE_CLOSED)
		return;
	if (c->state != SMTP_STATE_IDLE)
		panic("smtp_client_quit: session busy");
	queue_cmd(c, "QUIT\r\n", W_QUIT);
	c->state = SMTP_STATE_BUSY;
}

int
smtp_client_take_result(struct smtp_client *c, struct smtp_result *r)
{
	if (!c->have_result)
		return 0;
	*r = c->result;
	c->have_result = 0;
	return 1;
}

int
smtp_client_session_error(const struct smtp_client *c, struct smtp_result *r)
{
	if (c->serr == NULL)
		return 0;
	*r = *c->serr;
	return 1;
}

const struct smtp_ext *
smtp_client_ext(const struct smtp_client *c)
{
	return &c->ext;
}

unsigned
smtp_client_msgs(const struct smtp_client *c)
{
	return c->msgs;
}

void
smtp_client_set_tls(struct smtp_client *c, enum smtp_tls_mode m)
{
	c->tls_mode = (uint8_t)m;
	/* Implicit TLS: the handshake comes first, while the greeting is
	 * the only reply due and nothing has arrived. */
	if (m == SMTP_TLS_IMPLICIT && c->state == SMTP_STATE_BUSY && !c->tls_active &&
	    c->exp_n == 1 && c->expq[c->exp_head] == W_GREETING && c->in.len == 0) {
		c->state = SMTP_STATE_TLS;
		c->wait_since = c->now;		/* the handshake's time-out */
	}
}

void
smtp_client_set_auth(struct smtp_client *c, const char *user, const char *password,
    enum smtp_auth_mech mech, int allow_clear)
{
	if (c->auth_user != NULL) {
		OPENSSL_cleanse(c->auth_user, strlen(c->auth_user));
		free(c->auth_user);
	}
	if (c->auth_pass != NULL) {
		OPENSSL_cleanse(c->auth_pass, strlen(c->auth_pass));
		free(c->auth_pass);
	}
	c->auth_user = user ? xstrdup(user) : NULL;
	c->auth_pass = user ? xstrdup(password ? password : "") : NULL;
	c->auth_mech = (uint8_t)mech;
	c->auth_clear = allow_clear ? 1 : 0;
}

int
smtp_client_authenticated(const struct smtp_client *c)
{
	return c->authed;
}

void
smtp_client_tls_started(struct smtp_client *c)
{
	if (c->state != SMTP_STATE_TLS)
		panic("smtp_client_tls_started: not waiting for TLS");
	c->tls_active = 1;
	c->state = SMTP_STATE_BUSY;
	if (c->tls_mode == SMTP_TLS_IMPLICIT) {
		c->wait_since = c->now;		/* the greeting, over TLS, from now */
		return;
	}
	memset(&c->ext, 0, sizeof c->ext);	/* RFC 3207 4.2: forget them */
	buf_appendf(&c->cmdq, "EHLO %s\r\n", c->ehlo_name);
	expect(c, W_EHLO);
}

void
smtp_client_tls_failed(struct smtp_client *c, const char *why)
{
	if (c->state == SMTP_STATE_CLOSED)
		return;
	tls_fail(c, "%s: %s", c->tls_mode == SMTP_TLS_IMPLICIT ? "TLS" : "STARTTLS",
	    why && why[0] ? why : "TLS handshake failed");
}

void
smtp_client_set_bdat(struct smtp_client *c, uint64_t threshold, size_t chunk)
{
	c->bdat_threshold = threshold;
	c->bdat_chunk = chunk > 0 ? chunk : BDAT_CHUNK_DEFAULT;
}

void
smtp_client_set_bdat_pipeline(struct smtp_client *c, uint64_t max)
{
	c->bdat_pipeline = max;
}

int
smtp_client_tls_active(const struct smtp_client *c)
{
	return c->tls_active;
}

uint64_t
smtp_client_scan_work(const struct smtp_client *c)
{
	return c->scan_work;
}
