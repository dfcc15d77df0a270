/*
 * test_smtp_client.c - scripted conversations with the pure SMTP client.
 *
 * Each script is a table of steps: bytes the server sends (SRV), exactly
 * what the client must have sent since the last check (CLI; CLI1 also
 * demands it came as one iovec in one output() call), calls into the
 * client (START, QUIT, DISC, TMO, NOW: the clock) and checks (RES, NORES,
 * SERR, NOSERR, STATE, DEADL, MSGS). Every script runs under many delivery modes: the
 * server's bytes whole, one byte per feed, or split in two at every
 * offset 1..40; and the client's sends completed whole or in pieces of
 * 1, 2, 5 and 13 bytes (partial sends across the iovecs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "msg.h"
#include "smtp_client.h"
#include "util.h"

enum op {
	OP_END = 0, OP_SRV, OP_CLI, OP_CLI1, OP_START, OP_QUIT, OP_DISC, OP_TMO,
	OP_RES, OP_NORES, OP_SERR, OP_NOSERR, OP_STATE, OP_DEADL, OP_MSGS, OP_NOW,
	OP_TLSMODE, OP_TLSUP, OP_TLSFAIL, OP_AUTHSET, OP_AUTHED, OP_BDATSET, OP_BDATPIPE,
};

struct step {
	enum op op;
	const char *s;
	int status, cause, stage, code;
	const char *enh;
	long n;
};

#define SRV(x)		{ .op = OP_SRV, .s = (x) }
#define CLI(x)		{ .op = OP_CLI, .s = (x) }
#define CLI1(x)		{ .op = OP_CLI1, .s = (x) }
#define START(i)	{ .op = OP_START, .n = (i) }
#define QUIT		{ .op = OP_QUIT }
#define DISC		{ .op = OP_DISC }
#define TMO		{ .op = OP_TMO }
#define RES(st, ca, sg, cd, e, t) \
	{ .op = OP_RES, .status = SMTP_##st, .cause = SMTP_CAUSE_##ca, \
	  .stage = SMTP_STAGE_##sg, .code = (cd), .enh = (e), .s = (t) }
#define SERR(st, ca, sg, cd, e, t) \
	{ .op = OP_SERR, .status = SMTP_##st, .cause = SMTP_CAUSE_##ca, \
	  .stage = SMTP_STAGE_##sg, .code = (cd), .enh = (e), .s = (t) }
#define NORES		{ .op = OP_NORES }
#define NOSERR		{ .op = OP_NOSERR }
#define STATE(x)	{ .op = OP_STATE, .n = SMTP_STATE_##x }
#define DEADL(x)	{ .op = OP_DEADL, .n = (x) }
#define MSGS(x)		{ .op = OP_MSGS, .n = (x) }
#define NOW(x)		{ .op = OP_NOW, .n = (x) }	/* the session's clock, ms */
#define TLSMODE(x)	{ .op = OP_TLSMODE, .n = SMTP_TLS_##x }	/* before the greeting */
#define TLSUP		{ .op = OP_TLSUP }	/* the session's handshake is done */
#define TLSFAIL(x)	{ .op = OP_TLSFAIL, .s = (x) }	/* ... or failed */
/* AUTH as user "u", password "p@ss" (clear: allowed without TLS) */
#define AUTHSET(m, clear) { .op = OP_AUTHSET, .n = SMTP_AUTH_##m, .code = (clear) }
#define AUTHED(x)	{ .op = OP_AUTHED, .n = (x) }
/* BDAT above `thr` bytes, chunks of `chunk` body bytes */
#define BDATSET(thr, chunk) { .op = OP_BDATSET, .n = (thr), .code = (chunk) }
/* BDAT pipelined behind MAIL and RCPT up to `max` bytes */
#define BDATPIPE(max)	{ .op = OP_BDATPIPE, .n = (max) }

/* The secret and every encoding of it the client may send: never in a
 * result or session error text. */
static const char *const secrets[] = { "p@ss", "cEBzcw==", "AHUAcEBzcw==" };

/* Distinct time-outs so a deadline names its wait. */
static const struct smtp_timeouts tmo = {
	.greeting = 1001, .ehlo = 1002, .mail = 1003, .rcpt = 1004,
	.data = 1005, .block = 1006, .dot = 1007, .quit = 1008,
};

/* The same with a 2.5 s limit on the whole transaction. */
static const struct smtp_timeouts tmo_txn = {
	.greeting = 1001, .ehlo = 1002, .mail = 1003, .rcpt = 1004,
	.data = 1005, .block = 1006, .dot = 1007, .quit = 1008, .transaction = 2500,
};
static const struct smtp_timeouts *run_tmo = &tmo;	/* what run() uses */

/* Messages: [0] 7-bit with a prefix (SIZE 31), [1] 8-bit, null sender
 * (SIZE 7), [2] 1502 bytes, [3] CRLF in the recipient, [4] UTF-8
 * recipient, [5] UTF-8 sender, 8-bit body. */
/* [6] dot-leading lines (the first too) with a prefix: SIZE 29; the
 * unstuffed bytes: "X-Id: 6\r\n" BODY6. */
#define NMSGS 7
static struct smtp_msg msgs[NMSGS];
static const char *const bodies[] = {
	"Subject: hi\n\nhello\n", "caf\xc3\xa9\n", NULL, "x\n", "x\n", "caf\xc3\xa9\n",
	".a\nb\n..c\n.\nend\n",
};
#define BODY6	".a\r\nb\r\n..c\r\n.\r\nend\r\n"
#define BODY6S	"..a\r\nb\r\n...c\r\n..\r\nend\r\n.\r\n"

#define BODY0	"X-Id: 1\r\nSubject: hi\r\n\r\nhello\r\n.\r\n"
#define BODY1	"caf\xc3\xa9\r\n.\r\n"
#define CMDS0	"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
#define CMDS0S	"MAIL FROM:<a@x.test> SIZE=31\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
#define CMDS1S8	"MAIL FROM:<> SIZE=7 BODY=8BITMIME\r\nRCPT TO:<c@y.test>\r\nDATA\r\n"

static int
setup(void **state)
{
	static char big[1501];

	memset(big, 'x', 1500);
	big[1500] = '\n';
	for (int i = 0; i < NMSGS; i++) {
		const char *raw = i == 2 ? big : bodies[i];

		msgs[i].body = msg_body_new(raw, i == 2 ? sizeof big : strlen(raw));
	}
	msgs[0].from = "a@x.test";
	msgs[0].to = "b@y.test";
	msgs[0].prefix = "X-Id: 1\r\n";
	msgs[0].prefix_len = 9;
	msgs[1].from = "";
	msgs[1].to = "c@y.test";
	msgs[2].from = "a@x.test";
	msgs[2].to = "b@y.test";
	msgs[3].from = "a@x.test";
	msgs[3].to = "b@y.test>\r\nDATA\r\n";
	msgs[4].from = "a@x.test";
	msgs[4].to = "j\xc3\xbcrgen@y.test";
	msgs[5].from = "\xc3\xa9t\xc3\xa9@x.test";
	msgs[5].to = "c@y.test";
	msgs[6].from = "a@x.test";
	msgs[6].to = "b@y.test";
	msgs[6].prefix = "X-Id: 6\r\n";
	msgs[6].prefix_len = 9;
	return 0;
}

static int
teardown(void **state)
{
	for (int i = 0; i < NMSGS; i++)
		msg_body_unref(msgs[i].body);
	return 0;
}

/* ---- the runner ---- */

static const char *ctx_script;
static int ctx_step, ctx_feed, ctx_send;

#define FAIL_CTX() print_message("script %s step %d feed mode %d send chunk %d\n", \
	ctx_script, ctx_step, ctx_feed, ctx_send)
#define CHECK_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
	if (a_ != b_) { FAIL_CTX(); assert_int_equal(a_, b_); } } while (0)
#define CHECK_STR(a, b) do { if (strcmp((a), (b)) != 0) { FAIL_CTX(); \
	assert_string_equal((a), (b)); } } while (0)

/* feed_srv - deliver s as the mode says: whole (0), a byte at a time (1),
 * or split in two at offset mode-1 (mode >= 2). */
static void
feed_srv(struct smtp_client *c, const char *s, int mode)
{
	size_t len = strlen(s);

	if (mode == 0) {
		smtp_client_feed(c, s, len);
	} else if (mode == 1) {
		for (size_t i = 0; i < len; i++)
			smtp_client_feed(c, s + i, 1);
	} else {
		size_t k = (size_t)(mode - 1) < len ? (size_t)(mode - 1) : len;
		/* heap copies: ASan sees any read past the bytes given */
		char *a = malloc(k + 1), *b = malloc(len - k + 1);

		memcpy(a, s, k);
		memcpy(b, s + k, len - k);
		smtp_client_feed(c, a, k);
		smtp_client_feed(c, b, len - k);
		free(a);
		free(b);
	}
}

/* send_some - complete the send handed out in iov, chunk bytes at most (0 = all). */
static void
send_some(struct smtp_client *c, struct iovec *iov, int n, int chunk, struct buf *out)
{
	size_t total = 0, take, done = 0;
	struct iovec again[3];

	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	take = chunk && (size_t)chunk < total ? (size_t)chunk : total;
	for (int i = 0; i < n && done < take; i++) {
		size_t k = iov[i].iov_len < take - done ? iov[i].iov_len : take - done;

		buf_append(out, iov[i].iov_base, k);
		done += k;
	}
	/* one send in flight: nothing more is handed out meanwhile */
	CHECK_INT(smtp_client_output(c, again), 0);
	smtp_client_sent(c, take);
}

static void
pump(struct smtp_client *c, int chunk, struct buf *out)
{
	struct iovec iov[3];
	int n;

	while ((n = smtp_client_output(c, iov)) > 0) {
		assert_true(n <= 3);
		send_some(c, iov, n, chunk, out);
	}
}

static void
check_result(const struct smtp_result *r, const struct step *s)
{
	CHECK_INT(r->status, s->status);
	CHECK_INT(r->cause, s->cause);
	CHECK_INT(r->stage, s->stage);
	CHECK_INT(r->code, s->code);
	CHECK_STR(r->enh, s->enh);
	CHECK_STR(r->text, s->s);
	assert_null(strpbrk(r->text, "\r\n"));
	for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
		if (strstr(r->text, secrets[i]) != NULL) {
			FAIL_CTX();
			fail_msg("a secret in a result text: %s", r->text);
		}
}

static void
run_once(const char *name, const struct step *steps, int feed, int chunk)
{
	struct smtp_client *c = smtp_client_new("client.test", run_tmo);
	struct buf out = { 0 };
	struct smtp_result r;

	ctx_script = name;
	ctx_feed = feed;
	ctx_send = chunk;
	for (int i = 0; steps[i].op != OP_END; i++) {
		const struct step *s = &steps[i];

		ctx_step = i;
		switch (s->op) {
		case OP_END:
			break;
		case OP_SRV:
			feed_srv(c, s->s, feed);
			break;
		case OP_CLI:
			out.len = 0;
			pump(c, chunk, &out);
			buf_append(&out, "", 0);
			CHECK_STR(out.data, s->s);
			break;
		case OP_CLI1: {
			struct iovec iov[3];

			out.len = 0;
			CHECK_INT(smtp_client_output(c, iov), 1);
			CHECK_INT(iov[0].iov_len, strlen(s->s));
			send_some(c, iov, 1, chunk, &out);
			pump(c, chunk, &out);
			buf_append(&out, "", 0);
			CHECK_STR(out.data, s->s);
			break;
		}
		case OP_START:
			smtp_client_start(c, &msgs[s->n]);
			break;
		case OP_QUIT:
			smtp_client_quit(c);
			break;
		case OP_DISC:
			smtp_client_disconnected(c);
			break;
		case OP_TMO:
			smtp_client_timeout(c);
			break;
		case OP_RES:
			CHECK_INT(smtp_client_take_result(c, &r), 1);
			check_result(&r, s);
			CHECK_INT(smtp_client_take_result(c, &r), 0);
			break;
		case OP_NORES:
			CHECK_INT(smtp_client_take_result(c, &r), 0);
			break;
		case OP_SERR:
			CHECK_INT(smtp_client_session_error(c, &r), 1);
			check_result(&r, s);
			break;
		case OP_NOSERR:
			CHECK_INT(smtp_client_session_error(c, &r), 0);
			break;
		case OP_STATE:
			CHECK_INT(smtp_client_state(c), s->n);
			break;
		case OP_DEADL:
			CHECK_INT(smtp_client_deadline(c), s->n);
			break;
		case OP_MSGS:
			CHECK_INT(smtp_client_msgs(c), s->n);
			break;
		case OP_NOW:
			smtp_client_set_now(c, (uint64_t)s->n);
			break;
		case OP_TLSMODE:
			smtp_client_set_tls(c, (enum smtp_tls_mode)s->n);
			break;
		case OP_TLSUP:
			smtp_client_tls_started(c);
			break;
		case OP_TLSFAIL:
			smtp_client_tls_failed(c, s->s);
			break;
		case OP_AUTHSET:
			smtp_client_set_auth(c, "u", "p@ss", (enum smtp_auth_mech)s->n, s->code);
			break;
		case OP_AUTHED:
			CHECK_INT(smtp_client_authenticated(c), s->n);
			break;
		case OP_BDATSET:
			smtp_client_set_bdat(c, (uint64_t)s->n, (size_t)s->code);
			break;
		case OP_BDATPIPE:
			smtp_client_set_bdat_pipeline(c, (uint64_t)s->n);
			break;
		}
	}
	/* whatever happened, a closed client sends and expects nothing */
	if (smtp_client_state(c) == SMTP_STATE_CLOSED) {
		struct iovec iov[3];

		CHECK_INT(smtp_client_output(c, iov), 0);
		CHECK_INT(smtp_client_deadline(c), 0);
	}
	buf_free(&out);
	smtp_client_free(c);
}

static void
run(const char *name, const struct step *steps)
{
	static const int chunks[] = { 0, 1, 2, 5, 13 };

	for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++)
		for (int feed = 0; feed <= 41; feed++)
			run_once(name, steps, feed, chunks[k]);
}

#define RUN(steps) run(#steps, steps)

/* ---- scripts ---- */

#define GREET \
	DEADL(1001), SRV("220 mx.y.test ESMTP\r\n"), CLI("EHLO client.test\r\n"), DEADL(1002)
#define EHLO_PIPE \
	GREET, SRV("250-mx.y.test\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-8BITMIME\r\n" \
	    "250 ENHANCEDSTATUSCODES\r\n"), STATE(IDLE), DEADL(0)
#define EHLO_PLAIN \
	GREET, SRV("250-mx.y.test\r\n250 8BITMIME\r\n"), STATE(IDLE)
/* a pipelined message 0 that succeeds */
#define PIPE_OK0(cmds) \
	START(0), STATE(BUSY), DEADL(1003), CLI1(cmds), \
	SRV("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"), \
	DEADL(1006), CLI(BODY0), DEADL(1007), STATE(BUSY), NORES, \
	SRV("250 2.0.0 Ok: queued as 4Xy\r\n"), \
	RES(OK, REPLY, DOT, 250, "2.0.0", "250 2.0.0 Ok: queued as 4Xy"), STATE(IDLE)
#define QUIT_OK \
	QUIT, STATE(BUSY), CLI("QUIT\r\n"), DEADL(1008), SRV("221 2.0.0 Bye\r\n"), \
	STATE(CLOSED), NOSERR, DEADL(0)

static const struct step pipe_reuse[] = {
	EHLO_PIPE, NOSERR,
	PIPE_OK0(CMDS0S), MSGS(1), NOSERR,
	START(1), CLI1(CMDS1S8),
	SRV("250 ok\r\n250 ok\r\n354 go\r\n"), CLI(BODY1), SRV("250 2.0.0 queued\r\n"),
	RES(OK, REPLY, DOT, 250, "2.0.0", "250 2.0.0 queued"), MSGS(2),
	PIPE_OK0(CMDS0S), MSGS(3),
	QUIT_OK, MSGS(3), NORES,
	{ 0 }
};

static const struct step nopipe_reuse[] = {
	EHLO_PLAIN,
	START(0), DEADL(1003), CLI("MAIL FROM:<a@x.test>\r\n"), CLI(""), SRV("250 ok\r\n"),
	DEADL(1004), CLI("RCPT TO:<b@y.test>\r\n"), SRV("250 ok\r\n"),
	DEADL(1005), CLI("DATA\r\n"), SRV("354 go\r\n"),
	DEADL(1006), CLI(BODY0), DEADL(1007), SRV("250 ok\r\n"),
	RES(OK, REPLY, DOT, 250, "", "250 ok"), STATE(IDLE), MSGS(1),
	START(1), CLI("MAIL FROM:<> BODY=8BITMIME\r\n"), SRV("250 ok\r\n"),
	CLI("RCPT TO:<c@y.test>\r\n"), SRV("250 ok\r\n"), CLI("DATA\r\n"),
	SRV("354 go\r\n"), CLI(BODY1), SRV("250 ok 2\r\n"),
	RES(OK, REPLY, DOT, 250, "", "250 ok 2"), MSGS(2),
	START(0), CLI("MAIL FROM:<a@x.test>\r\n"), SRV("250 ok\r\n"),
	CLI("RCPT TO:<b@y.test>\r\n"), SRV("250 ok\r\n"), CLI("DATA\r\n"),
	SRV("354 go\r\n"), CLI(BODY0), SRV("250 ok 3\r\n"),
	RES(OK, REPLY, DOT, 250, "", "250 ok 3"), MSGS(3),
	QUIT_OK,
	{ 0 }
};

/* all the pipelined replies, and the greeting, in single reads */
static const struct step one_read[] = {
	SRV("220-mx.y.test ESMTP\r\n220 second line\r\n"), CLI("EHLO client.test\r\n"),
	SRV("250-mx\r\n250-pipelining\r\n250-8bitmime\r\n250 SIZE\r\n"), STATE(IDLE),
	START(1), CLI1("MAIL FROM:<> SIZE=7 BODY=8BITMIME\r\nRCPT TO:<c@y.test>\r\nDATA\r\n"),
	SRV("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n"), CLI(BODY1),
	SRV("250 2.0.0 Ok\r\n"), RES(OK, REPLY, DOT, 250, "2.0.0", "250 2.0.0 Ok"),
	QUIT, CLI("QUIT\r\n"), SRV("221 bye\r\n"), STATE(CLOSED),
	{ 0 }
};

static const struct step helo_fallback[] = {
	GREET, SRV("502 5.5.2 Error: command not recognized\r\n"),
	STATE(BUSY), DEADL(1002), CLI("HELO client.test\r\n"), SRV("250 mx.y.test\r\n"),
	STATE(IDLE), NOSERR,
	/* no extensions after HELO: no BODY=, no SIZE=, no pipelining; and
	 * so no 8-bit body (RFC 6152): refused at once, nothing sent */
	START(1), STATE(IDLE), CLI(""),
	RES(PERM, PROTOCOL, MAIL, 0, "5.6.3",
	    "message has 8-bit content and the server does not offer 8BITMIME"),
	START(0), CLI("MAIL FROM:<a@x.test>\r\n"), SRV("250 ok\r\n"),
	CLI("RCPT TO:<b@y.test>\r\n"),
	SRV("250 ok\r\n"), CLI("DATA\r\n"), SRV("354 go\r\n"), CLI(BODY0), SRV("250 ok\r\n"),
	RES(OK, REPLY, DOT, 250, "", "250 ok"),
	QUIT_OK,
	{ 0 }
};

static const struct step helo_refused[] = {
	GREET, SRV("500 unrecognized\r\n"), CLI("HELO client.test\r\n"),
	SRV("550 5.7.1 go away\r\n"), STATE(CLOSED), NORES,
	SERR(PERM, REPLY, HELO, 550, "5.7.1", "550 5.7.1 go away"), CLI(""),
	{ 0 }
};

static const struct step greeting_554[] = {
	SRV("554 5.7.1 No SMTP service here\r\n"), STATE(CLOSED), CLI(""), NORES,
	SERR(PERM, REPLY, GREETING, 554, "5.7.1", "554 5.7.1 No SMTP service here"),
	{ 0 }
};

static const struct step greeting_421[] = {
	SRV("421-mx.y.test busy\r\n421 try later\r\n"), STATE(CLOSED), CLI(""),
	SERR(TEMP, REPLY, GREETING, 421, "", "421 mx.y.test busy"),
	{ 0 }
};

static const struct step greeting_450[] = {
	SRV("450 4.3.2 not now\r\n"), STATE(CLOSED),
	SERR(TEMP, REPLY, GREETING, 450, "4.3.2", "450 4.3.2 not now"),
	{ 0 }
};

static const struct step ehlo_4xx[] = {
	GREET, SRV("451 4.3.0 local error\r\n"), STATE(CLOSED), CLI(""),
	SERR(TEMP, REPLY, EHLO, 451, "4.3.0", "451 4.3.0 local error"),
	{ 0 }
};

static const struct step ehlo_421[] = {
	GREET, SRV("421 4.7.0 Try again later, closing connection. (EHLO)\r\n"),
	STATE(CLOSED),
	SERR(TEMP, REPLY, EHLO, 421, "4.7.0", "421 4.7.0 Try again later, closing connection. (EHLO)"),
	{ 0 }
};

static const struct step pipe_mail_5xx[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S),
	SRV("553 5.7.1 Sender rejected\r\n554 5.5.1 Error: no valid recipients\r\n"),
	STATE(BUSY), NORES,
	SRV("554 5.5.1 Error: no valid recipients\r\n"),
	RES(PERM, REPLY, MAIL, 553, "5.7.1", "553 5.7.1 Sender rejected"), STATE(IDLE), MSGS(1),
	CLI(""), NOSERR,
	/* the next message resets first, in the same send */
	START(0), DEADL(1003), CLI1("RSET\r\n" CMDS0S),
	SRV("250 2.0.0 Ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"), CLI(BODY0), SRV("250 queued\r\n"),
	RES(OK, REPLY, DOT, 250, "", "250 queued"), MSGS(2),
	/* and not after a success */
	PIPE_OK0(CMDS0S), MSGS(3),
	{ 0 }
};

static const struct step pipe_rcpt_5xx_354[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S),
	SRV("250 2.1.0 Ok\r\n550 5.1.1 <b@y.test>: Recipient address rejected: no such user\r\n"
	    "354 go ahead\r\n"),
	/* RFC 2920: "." alone, its reply ignored */
	CLI(".\r\n"), DEADL(1007), STATE(BUSY), NORES,
	SRV("554 5.5.1 Error: no valid recipients\r\n"),
	RES(PERM, REPLY, RCPT, 550, "5.1.1",
	    "550 5.1.1 <b@y.test>: Recipient address rejected: no such user"),
	STATE(IDLE), NOSERR,
	START(1), CLI1("RSET\r\n" CMDS1S8), SRV("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
	CLI(BODY1), SRV("250 ok\r\n"), RES(OK, REPLY, DOT, 250, "", "250 ok"),
	QUIT_OK,
	{ 0 }
};

static const struct step pipe_rcpt_4xx[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S),
	SRV("250 ok\r\n450 4.2.0 <b@y.test>: Recipient address rejected: Greylisted\r\n"
	    "554 5.5.1 Error: no valid recipients\r\n"),
	RES(TEMP, REPLY, RCPT, 450, "4.2.0", "450 4.2.0 <b@y.test>: Recipient address rejected: Greylisted"),
	STATE(IDLE), CLI(""),
	{ 0 }
};

static const struct step pipe_data_5xx[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S),
	SRV("250 ok\r\n250 ok\r\n554 5.7.1 Spam\r\n"),
	RES(PERM, REPLY, DATA, 554, "5.7.1", "554 5.7.1 Spam"), STATE(IDLE), CLI(""),
	START(0), CLI1("RSET\r\n" CMDS0S),
	{ 0 }
};

static const struct step nopipe_failures[] = {
	EHLO_PLAIN,
	/* MAIL 4xx: nothing else is sent */
	START(0), CLI("MAIL FROM:<a@x.test>\r\n"), SRV("451 4.3.0 try later\r\n"),
	RES(TEMP, REPLY, MAIL, 451, "4.3.0", "451 4.3.0 try later"), STATE(IDLE), CLI(""),
	/* RSET on its own first, then MAIL after its reply; RCPT 5xx */
	START(0), DEADL(1003), CLI("RSET\r\n"), SRV("250 ok\r\n"),
	CLI("MAIL FROM:<a@x.test>\r\n"), SRV("250 ok\r\n"), CLI("RCPT TO:<b@y.test>\r\n"),
	SRV("550 5.1.1 unknown\r\n"),
	RES(PERM, REPLY, RCPT, 550, "5.1.1", "550 5.1.1 unknown"), STATE(IDLE), CLI(""),
	/* DATA 4xx */
	START(0), CLI("RSET\r\n"), SRV("250 ok\r\n"), CLI("MAIL FROM:<a@x.test>\r\n"),
	SRV("250 ok\r\n"), CLI("RCPT TO:<b@y.test>\r\n"), SRV("250 ok\r\n"), CLI("DATA\r\n"),
	SRV("451 4.3.0 no\r\n"), RES(TEMP, REPLY, DATA, 451, "4.3.0", "451 4.3.0 no"),
	/* RSET refused: the session ends; the job was never tried (TEMP) */
	START(0), CLI("RSET\r\n"), SRV("502 no RSET today\r\n"),
	RES(TEMP, SESSION, RSET, 502, "", "502 no RSET today"), STATE(CLOSED), CLI(""),
	MSGS(4), SERR(TEMP, SESSION, RSET, 502, "", "502 no RSET today"),
	{ 0 }
};

static const struct step dot_4xx_5xx[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S), SRV("250 ok\r\n250 ok\r\n354 go\r\n"), CLI(BODY0),
	SRV("451 4.7.1 Please try again later\r\n"),
	RES(TEMP, REPLY, DOT, 451, "4.7.1", "451 4.7.1 Please try again later"), STATE(IDLE),
	/* the dot's reply ends the transaction: no RSET */
	START(0), CLI1(CMDS0S), SRV("250 ok\r\n250 ok\r\n354 go\r\n"), CLI(BODY0),
	SRV("554-5.7.1 rejected\r\n554 5.7.1 as spam\r\n"),
	RES(PERM, REPLY, DOT, 554, "5.7.1", "554 5.7.1 rejected"), STATE(IDLE),
	PIPE_OK0(CMDS0S), MSGS(3), NOSERR,
	{ 0 }
};

static const struct step size_limit[] = {
	GREET, SRV("250-mx\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"), STATE(IDLE),
	START(2), STATE(IDLE), CLI(""), DEADL(0),
	RES(PERM, SIZE, MAIL, 0, "5.3.4", "message size 1502 exceeds server limit 1000"),
	MSGS(1), NOSERR,
	/* the session is fine for the next one; no RSET: nothing was sent */
	START(0), CLI1("MAIL FROM:<a@x.test> SIZE=31\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"),
	{ 0 }
};

static const struct step eightbit[] = {
	/* server without 8BITMIME: an 8-bit body is never sent as is
	 * (RFC 6152 3): no MAIL at all, 5.6.3, the session stays usable */
	GREET, SRV("250-mx\r\n250 PIPELINING\r\n"),
	START(1), STATE(IDLE), CLI(""), DEADL(0),
	RES(PERM, PROTOCOL, MAIL, 0, "5.6.3",
	    "message has 8-bit content and the server does not offer 8BITMIME"),
	MSGS(1), NOSERR,
	/* a 7-bit body never gets BODY=, and no RSET is owed */
	START(0), CLI1(CMDS0),
	{ 0 }
};

static const struct step smtputf8[] = {
	GREET, SRV("250-mx\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n"),
	START(4), CLI("MAIL FROM:<a@x.test> SMTPUTF8\r\n"), SRV("250 2.1.0 Ok\r\n"),
	CLI("RCPT TO:<j\xc3\xbcrgen@y.test>\r\n"), SRV("250 2.1.5 Ok\r\n"),
	CLI("DATA\r\n"), SRV("354 go\r\n"), CLI("x\r\n.\r\n"), SRV("250 2.0.0 Ok\r\n"),
	RES(OK, REPLY, DOT, 250, "2.0.0", "250 2.0.0 Ok"),
	{ 0 }
};

static const struct step smtputf8_pipe[] = {
	GREET, SRV("250-mx\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n"),
	START(5), CLI1("MAIL FROM:<\xc3\xa9t\xc3\xa9@x.test> SIZE=7 BODY=8BITMIME SMTPUTF8\r\n"
	    "RCPT TO:<c@y.test>\r\nDATA\r\n"),
	SRV("250 ok\r\n250 ok\r\n354 go\r\n"), CLI(BODY1), SRV("250 ok\r\n"),
	RES(OK, REPLY, DOT, 250, "", "250 ok"),
	START(0), CLI1("MAIL FROM:<a@x.test> SIZE=31\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"),
	{ 0 }
};

/* an 8-bit address and a server without SMTPUTF8: nothing is sent */
static const struct step smtputf8_missing[] = {
	EHLO_PIPE,
	START(4), STATE(IDLE), CLI(""), DEADL(0),
	RES(PERM, PROTOCOL, MAIL, 0, "5.6.7",
	    "recipient address needs SMTPUTF8, which the server does not offer"),
	MSGS(1), NOSERR,
	START(5), STATE(IDLE), CLI(""),
	RES(PERM, PROTOCOL, MAIL, 0, "5.6.7",
	    "sender address needs SMTPUTF8, which the server does not offer"),
	/* the session goes on, without an RSET: nothing was sent */
	PIPE_OK0(CMDS0S), MSGS(3),
	{ 0 }
};

/* after HELO there are no extensions at all */
static const struct step smtputf8_helo[] = {
	GREET, SRV("502 no\r\n"), CLI("HELO client.test\r\n"), SRV("250 mx\r\n"),
	START(4), STATE(IDLE), CLI(""),
	RES(PERM, PROTOCOL, MAIL, 0, "5.6.7",
	    "recipient address needs SMTPUTF8, which the server does not offer"),
	{ 0 }
};

static const struct step bad_address[] = {
	EHLO_PIPE,
	START(3), STATE(IDLE), CLI(""),
	RES(PERM, PROTOCOL, RCPT, 0, "5.1.3", "invalid recipient address: control characters"),
	{ 0 }
};

static const struct step close_421[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S),
	SRV("250 ok\r\n421 4.7.0 Try again later, closing connection.\r\n"),
	RES(TEMP, REPLY, RCPT, 421, "4.7.0", "421 4.7.0 Try again later, closing connection."),
	STATE(CLOSED), CLI(""),
	SERR(TEMP, REPLY, RCPT, 421, "4.7.0", "421 4.7.0 Try again later, closing connection."),
	{ 0 }
};

static const struct step close_421_dot[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S), SRV("250 ok\r\n250 ok\r\n354 go\r\n"), CLI(BODY0),
	SRV("421 4.3.2 Service shutting down\r\n"),
	RES(TEMP, REPLY, DOT, 421, "4.3.2", "421 4.3.2 Service shutting down"), STATE(CLOSED),
	SERR(TEMP, REPLY, DOT, 421, "4.3.2", "421 4.3.2 Service shutting down"),
	{ 0 }
};

/* after a refused recipient the result stays the refusal; 421 is the session's */
static const struct step close_421_after_fail[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S), SRV("250 ok\r\n550 5.1.1 nobody\r\n421 4.7.0 bye\r\n"),
	RES(PERM, REPLY, RCPT, 550, "5.1.1", "550 5.1.1 nobody"), STATE(CLOSED),
	SERR(TEMP, REPLY, DATA, 421, "4.7.0", "421 4.7.0 bye"),
	{ 0 }
};

static const struct step idle_421[] = {
	EHLO_PIPE, PIPE_OK0(CMDS0S),
	SRV("421 4.4.2 mx.y.test Error: timeout exceeded\r\n"), STATE(CLOSED), NORES,
	SERR(TEMP, REPLY, CONNECT, 421, "4.4.2", "421 4.4.2 mx.y.test Error: timeout exceeded"),
	{ 0 }
};

static const struct step idle_unsolicited[] = {
	EHLO_PIPE,
	SRV("250 surprise\r\n"), STATE(CLOSED), NORES,
	SERR(TEMP, PROTOCOL, CONNECT, 0, "", "protocol error: unexpected reply while idle"),
	{ 0 }
};

static const struct step garbage_mail[] = {
	EHLO_PLAIN,
	START(0), CLI("MAIL FROM:<a@x.test>\r\n"), SRV("HTTP/1.1 400 Bad Request\r\n"),
	RES(TEMP, PROTOCOL, MAIL, 0, "", "protocol error: malformed reply to MAIL"),
	STATE(CLOSED), CLI(""),
	SERR(TEMP, PROTOCOL, MAIL, 0, "", "protocol error: malformed reply to MAIL"),
	{ 0 }
};

static const struct step garbage_greeting[] = {
	SRV("SSH-2.0-OpenSSH_9.2\r\n"), STATE(CLOSED),
	SERR(TEMP, PROTOCOL, GREETING, 0, "", "protocol error: malformed greeting"),
	{ 0 }
};

static const struct step disc_after_dot[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S), SRV("250 ok\r\n250 ok\r\n354 go\r\n"), CLI(BODY0), DISC,
	RES(TEMP, DISCONNECT, DOT, 0, "", "connection lost after end of data"), STATE(CLOSED),
	SERR(TEMP, DISCONNECT, DOT, 0, "", "connection lost after end of data"), MSGS(1),
	{ 0 }
};

static const struct step disc_in_body[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S), SRV("250 ok\r\n250 ok\r\n354 go\r\n"), DISC,
	RES(TEMP, DISCONNECT, DOT, 0, "", "connection lost while sending message body"),
	STATE(CLOSED), CLI(""),
	{ 0 }
};

static const struct step disc_after_data[] = {
	EHLO_PLAIN,
	START(0), CLI("MAIL FROM:<a@x.test>\r\n"), SRV("250 ok\r\n"), CLI("RCPT TO:<b@y.test>\r\n"),
	SRV("250 ok\r\n"), CLI("DATA\r\n"), SRV("35"), DISC,
	RES(TEMP, DISCONNECT, DATA, 0, "", "connection lost after DATA"), STATE(CLOSED),
	SERR(TEMP, DISCONNECT, DATA, 0, "", "connection lost after DATA"),
	SRV("4 late\r\n"), STATE(CLOSED), NORES,
	{ 0 }
};

static const struct step disc_early[] = {
	DISC, STATE(CLOSED), NORES,
	SERR(TEMP, DISCONNECT, GREETING, 0, "", "connection lost before greeting"),
	{ 0 }
};

static const struct step disc_idle[] = {
	EHLO_PIPE, DISC, STATE(CLOSED), NORES,
	SERR(TEMP, DISCONNECT, CONNECT, 0, "", "connection lost while idle"),
	{ 0 }
};

static const struct step disc_quit[] = {
	EHLO_PIPE, QUIT, CLI("QUIT\r\n"), DISC, STATE(CLOSED), NOSERR,
	{ 0 }
};

static const struct step timeouts[] = {
	EHLO_PLAIN,
	TMO, STATE(IDLE), NOSERR,	/* a stale timer when idle */
	START(0), CLI("MAIL FROM:<a@x.test>\r\n"), SRV("250 ok\r\n"), CLI("RCPT TO:<b@y.test>\r\n"),
	DEADL(1004), TMO,
	RES(TEMP, TIMEOUT, RCPT, 0, "", "timeout waiting for reply to RCPT"), STATE(CLOSED),
	SERR(TEMP, TIMEOUT, RCPT, 0, "", "timeout waiting for reply to RCPT"),
	TMO, STATE(CLOSED), NORES,
	{ 0 }
};

static const struct step timeout_greeting[] = {
	TMO, STATE(CLOSED),
	SERR(TEMP, TIMEOUT, GREETING, 0, "", "timeout waiting for greeting"),
	{ 0 }
};

static const struct step timeout_ehlo[] = {
	GREET, SRV("250-mx\r\n25"), TMO, STATE(CLOSED),
	SERR(TEMP, TIMEOUT, EHLO, 0, "", "timeout waiting for reply to EHLO"),
	{ 0 }
};

static const struct step timeout_body[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S), SRV("250 ok\r\n250 ok\r\n354 go\r\n"), DEADL(1006), TMO,
	RES(TEMP, TIMEOUT, DOT, 0, "", "timeout sending message body"), STATE(CLOSED),
	{ 0 }
};

static const struct step timeout_quit[] = {
	EHLO_PIPE, QUIT, CLI("QUIT\r\n"), DEADL(1008), TMO, STATE(CLOSED), NOSERR,
	{ 0 }
};

/* a refusal before the body was even handed out */
static const struct step cut_in_before_body[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S), SRV("250 ok\r\n250 ok\r\n354 go\r\n552 5.3.4 too big\r\n"),
	RES(PERM, REPLY, DOT, 552, "5.3.4", "552 5.3.4 too big"), STATE(CLOSED), CLI(""),
	{ 0 }
};

/* a 2xx where DATA wants 354 is no success */
static const struct step data_250[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S), SRV("250 ok\r\n250 ok\r\n250 2.0.0 what\r\n"),
	RES(TEMP, REPLY, DATA, 250, "2.0.0", "250 2.0.0 what"), STATE(IDLE), CLI(""),
	{ 0 }
};

static const struct step ok_before_body[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S), SRV("250 ok\r\n250 ok\r\n354 go\r\n250 early\r\n"),
	RES(TEMP, PROTOCOL, DOT, 0, "", "protocol error: reply before end of message body"),
	STATE(CLOSED),
	SERR(TEMP, PROTOCOL, DOT, 0, "", "protocol error: reply before end of message body"),
	{ 0 }
};

static const struct step close_421_before_body[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S), SRV("250 ok\r\n250 ok\r\n354 go\r\n421 4.3.2 going down\r\n"),
	RES(TEMP, REPLY, DOT, 421, "4.3.2", "421 4.3.2 going down"), STATE(CLOSED),
	SERR(TEMP, REPLY, DOT, 421, "4.3.2", "421 4.3.2 going down"),
	{ 0 }
};

/* an absurd SIZE is no limit; leading spaces on keywords are tolerated */
static const struct step size_absurd[] = {
	GREET, SRV("250-mx\r\n250-  PIPELINING\r\n250 SIZE 99999999999999999999999\r\n"),
	START(2), CLI1("MAIL FROM:<a@x.test> SIZE=1502\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"),
	{ 0 }
};

/*
 * Deadlines are absolute: bytes arriving do not push them back. The clock
 * is first set after the greeting's wait began (it starts then).
 */
static const struct step clock_stages[] = {
	DEADL(1001), NOW(100000), DEADL(1001), NOW(100400), DEADL(601),
	SRV("220 mx ESMTP\r\n"), CLI("EHLO client.test\r\n"), DEADL(1002),
	NOW(100900), SRV("250-mx\r\n"), DEADL(502), SRV("250 8BITMIME\r\n"), STATE(IDLE), DEADL(0),
	NOW(200000),
	START(0), CLI("MAIL FROM:<a@x.test>\r\n"), DEADL(1003),
	NOW(200500), SRV("25"), DEADL(503), NOW(201000), SRV("0 ok\r\n"),
	/* RCPT's wait begins with MAIL's reply */
	CLI("RCPT TO:<b@y.test>\r\n"), DEADL(1004), NOW(201300), SRV("2"), NOW(201600), SRV("5"),
	NOW(201900), SRV("0"), DEADL(104), NOW(202004), DEADL(1), NOW(202100), DEADL(1),
	TMO, RES(TEMP, TIMEOUT, RCPT, 0, "", "timeout waiting for reply to RCPT"), STATE(CLOSED),
	{ 0 }
};

/* the reply to the dot is awaited from the end of the body's send */
static const struct step clock_dot[] = {
	NOW(5000), EHLO_PIPE,
	START(0), CLI1(CMDS0S), NOW(5100), SRV("250 ok\r\n250 ok\r\n"), DEADL(1005),
	NOW(5200), SRV("354 go\r\n"), DEADL(1006), NOW(6000), DEADL(206),
	CLI(BODY0), DEADL(1007), NOW(7000), DEADL(7), SRV("250 ok\r\n"),
	RES(OK, REPLY, DOT, 250, "", "250 ok"), DEADL(0),
	{ 0 }
};

/* the whole transaction's limit (tmo_txn: 2500 ms) */
static const struct step clock_txn[] = {
	NOW(1000), EHLO_PIPE,
	START(0), CLI1(CMDS0S), DEADL(1003), NOW(1900), SRV("250 ok\r\n"), DEADL(1004),
	NOW(2800), SRV("250 ok\r\n"), DEADL(700), NOW(3400), DEADL(100),
	TMO, RES(TEMP, TIMEOUT, DATA, 0, "",
	    "timeout waiting for reply to DATA: transaction time limit of 2500ms exceeded"),
	STATE(CLOSED),
	SERR(TEMP, TIMEOUT, DATA, 0, "",
	    "timeout waiting for reply to DATA: transaction time limit of 2500ms exceeded"),
	{ 0 }
};

/* in the body: the body's own progress, then the limit */
static const struct step clock_txn_body[] = {
	NOW(1000), EHLO_PIPE,
	START(0), CLI1(CMDS0S), NOW(2600), SRV("250 ok\r\n250 ok\r\n354 go\r\n"), DEADL(900),
	NOW(3000), DEADL(500), TMO,
	RES(TEMP, TIMEOUT, DOT, 0, "",
	    "timeout sending message body: transaction time limit of 2500ms exceeded"),
	{ 0 }
};

/* the limit does not outlive its transaction */
static const struct step clock_txn_next[] = {
	NOW(1000), EHLO_PIPE,
	START(0), CLI1(CMDS0S), NOW(1100), SRV("250 ok\r\n250 ok\r\n354 go\r\n"),
	CLI(BODY0), NOW(1200), SRV("250 ok\r\n"), RES(OK, REPLY, DOT, 250, "", "250 ok"),
	NOW(9000), QUIT, CLI("QUIT\r\n"), DEADL(1008),
	{ 0 }
};

/*
 * Each refusal is reported at its own stage. Pipelined, the first refusal
 * decides: MAIL refused, then RCPT and DATA refused (or even accepted, or
 * a 354) because of it, is still a MAIL-stage result.
 */
static const struct step stage_mail_pipe[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S),
	SRV("553 5.1.8 <a@x.test>: Sender address rejected: Domain not found\r\n"
	    "503 5.5.1 Error: need MAIL command\r\n554 5.5.1 Error: no valid recipients\r\n"),
	RES(PERM, REPLY, MAIL, 553, "5.1.8",
	    "553 5.1.8 <a@x.test>: Sender address rejected: Domain not found"), STATE(IDLE),
	START(0), CLI1("RSET\r\n" CMDS0S),
	SRV("250 ok\r\n553 5.1.8 no\r\n550 5.1.1 unknown\r\n354 go\r\n"),
	CLI(".\r\n"), NORES, SRV("554 5.5.1 no valid recipients\r\n"),
	RES(PERM, REPLY, MAIL, 553, "5.1.8", "553 5.1.8 no"),
	START(0), CLI1("RSET\r\n" CMDS0S),
	SRV("250 ok\r\n451 4.1.8 later\r\n250 ok\r\n451 4.5.0 no\r\n"),
	RES(TEMP, REPLY, MAIL, 451, "4.1.8", "451 4.1.8 later"),
	{ 0 }
};

static const struct step stage_mail_nopipe[] = {
	EHLO_PLAIN,
	START(0), CLI("MAIL FROM:<a@x.test>\r\n"),
	SRV("553 5.1.8 <a@x.test>: Sender address rejected: Domain not found\r\n"),
	RES(PERM, REPLY, MAIL, 553, "5.1.8",
	    "553 5.1.8 <a@x.test>: Sender address rejected: Domain not found"),
	STATE(IDLE), CLI(""),
	{ 0 }
};

static const struct step stage_rcpt[] = {
	EHLO_PIPE,
	START(0), CLI1(CMDS0S),
	SRV("250 2.1.0 Ok\r\n550 5.1.1 <b@y.test>: Recipient address rejected\r\n"
	    "554 5.5.1 Error: no valid recipients\r\n"),
	RES(PERM, REPLY, RCPT, 550, "5.1.1", "550 5.1.1 <b@y.test>: Recipient address rejected"),
	{ 0 }
};

static const struct step stage_data_dot[] = {
	EHLO_PLAIN,
	START(0), CLI("MAIL FROM:<a@x.test>\r\n"), SRV("250 ok\r\n"),
	CLI("RCPT TO:<b@y.test>\r\n"), SRV("250 ok\r\n"), CLI("DATA\r\n"),
	SRV("554 5.7.1 <unknown[192.0.2.1]>: Client host rejected\r\n"),
	RES(PERM, REPLY, DATA, 554, "5.7.1", "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected"),
	START(0), CLI("RSET\r\n"), SRV("250 ok\r\n"), CLI("MAIL FROM:<a@x.test>\r\n"),
	SRV("250 ok\r\n"), CLI("RCPT TO:<b@y.test>\r\n"), SRV("250 ok\r\n"), CLI("DATA\r\n"),
	SRV("354 go\r\n"), CLI(BODY0), SRV("550 5.7.1 Message rejected\r\n"),
	RES(PERM, REPLY, DOT, 550, "5.7.1", "550 5.7.1 Message rejected"),
	/* after the dot nothing is held: no RSET */
	START(0), CLI("MAIL FROM:<a@x.test>\r\n"),
	{ 0 }
};

/* ---- BDAT (RFC 3030) ---- */

#define EHLO_CHUNK \
	GREET, SRV("250-mx.y.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SIZE 100000\r\n" \
	    "250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"), STATE(IDLE)
#define EHLO_CHUNK_NOPIPE \
	GREET, SRV("250-mx.y.test\r\n250 CHUNKING\r\n"), STATE(IDLE)
#define CMDS6S	"MAIL FROM:<a@x.test> SIZE=29\r\nRCPT TO:<b@y.test>\r\n"
/* message 6 in chunks of 8 body bytes, unstuffed, the prefix in the first */
#define CHUNKS6_8 \
	"BDAT 17\r\nX-Id: 6\r\n.a\r\nb\r\n." "BDAT 8\r\n.c\r\n.\r\ne" "BDAT 4 LAST\r\nnd\r\n"

/* offered, pipelined: MAIL+RCPT, then the chunks back to back; replies in order */
static const struct step bdat_pipe[] = {
	BDATSET(10, 8), EHLO_CHUNK,
	START(6), STATE(BUSY), DEADL(1003), CLI1(CMDS6S),
	SRV("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"), DEADL(1006),
	CLI(CHUNKS6_8), DEADL(1007), STATE(BUSY), NORES,
	SRV("250 2.0.0 17 octets\r\n250 2.0.0 8 octets\r\n"), NORES, STATE(BUSY),
	SRV("250 2.0.0 Ok: queued as 4Xy\r\n"),
	RES(OK, REPLY, DOT, 250, "2.0.0", "250 2.0.0 Ok: queued as 4Xy"), STATE(IDLE), MSGS(1),
	/* a small message still goes by DATA, and no RSET after a success */
	START(1), CLI1(CMDS1S8), SRV("250 ok\r\n250 ok\r\n354 go\r\n"), CLI(BODY1),
	SRV("250 2.0.0 queued\r\n"), RES(OK, REPLY, DOT, 250, "2.0.0", "250 2.0.0 queued"),
	START(6), CLI1(CMDS6S), SRV("250 ok\r\n250 ok\r\n"), CLI(CHUNKS6_8),
	SRV("250 ok\r\n250 ok\r\n250 2.0.0 again\r\n"),
	RES(OK, REPLY, DOT, 250, "2.0.0", "250 2.0.0 again"), MSGS(3),
	QUIT_OK,
	{ 0 }
};

/* offered without PIPELINING: each chunk waits for the 250 to the one before */
static const struct step bdat_nopipe[] = {
	BDATSET(10, 8), EHLO_CHUNK_NOPIPE,
	START(6), CLI("MAIL FROM:<a@x.test>\r\n"), SRV("250 ok\r\n"),
	CLI("RCPT TO:<b@y.test>\r\n"), SRV("250 ok\r\n"), DEADL(1006),
	CLI("BDAT 17\r\nX-Id: 6\r\n.a\r\nb\r\n."), DEADL(1007), CLI(""), SRV("250 ok\r\n"),
	CLI("BDAT 8\r\n.c\r\n.\r\ne"), CLI(""), SRV("250 ok\r\n"),
	CLI("BDAT 4 LAST\r\nnd\r\n"), NORES, STATE(BUSY), SRV("250 2.0.0 done\r\n"),
	RES(OK, REPLY, DOT, 250, "2.0.0", "250 2.0.0 done"), STATE(IDLE),
	QUIT_OK,
	{ 0 }
};

/* not offered: DATA and the stuffed body, whatever the size */
static const struct step bdat_not_offered[] = {
	BDATSET(10, 8), EHLO_PIPE,
	START(6), CLI1(CMDS6S "DATA\r\n"), SRV("250 ok\r\n250 ok\r\n354 go\r\n"),
	CLI("X-Id: 6\r\n" BODY6S), SRV("250 ok\r\n"), RES(OK, REPLY, DOT, 250, "", "250 ok"),
	{ 0 }
};

/* the threshold: larger than it goes by BDAT (the prefix counts); 0: never */
static const struct step bdat_threshold[] = {
	BDATSET(29, 8), EHLO_CHUNK,
	START(6), CLI1(CMDS6S "DATA\r\n"), SRV("250 ok\r\n250 ok\r\n354 go\r\n"),
	CLI("X-Id: 6\r\n" BODY6S), SRV("250 ok\r\n"), RES(OK, REPLY, DOT, 250, "", "250 ok"),
	BDATSET(28, 0),
	START(6), CLI1(CMDS6S), SRV("250 ok\r\n250 ok\r\n"),
	CLI("BDAT 29 LAST\r\nX-Id: 6\r\n" BODY6), SRV("250 ok\r\n"),
	RES(OK, REPLY, DOT, 250, "", "250 ok"),
	BDATSET(0, 8),
	START(6), CLI1(CMDS6S "DATA\r\n"), SRV("250 ok\r\n250 ok\r\n354 go\r\n"),
	CLI("X-Id: 6\r\n" BODY6S), SRV("250 ok\r\n"), RES(OK, REPLY, DOT, 250, "", "250 ok"),
	{ 0 }
};

/* pipelined: the middle chunk refused; the rest's replies are read and
 * ignored; RSET first next time; a refused RCPT sends no chunk at all */
static const struct step bdat_mid_5xx_pipe[] = {
	BDATSET(10, 8), EHLO_CHUNK,
	START(6), CLI1(CMDS6S), SRV("250 ok\r\n250 ok\r\n"), CLI(CHUNKS6_8),
	SRV("250 ok\r\n554 5.6.0 chunk refused\r\n"), NORES, STATE(BUSY),
	SRV("503 5.5.1 no transaction\r\n"),
	RES(PERM, REPLY, DOT, 554, "5.6.0", "554 5.6.0 chunk refused"), STATE(IDLE), CLI(""),
	START(6), CLI1("RSET\r\n" CMDS6S), SRV("250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n"),
	RES(PERM, REPLY, RCPT, 550, "5.1.1", "550 5.1.1 no such user"), STATE(IDLE), CLI(""),
	START(6), CLI1("RSET\r\n" CMDS6S), SRV("250 ok\r\n250 ok\r\n250 ok\r\n"),
	CLI(CHUNKS6_8), SRV("250 ok\r\n250 ok\r\n550 5.7.1 spam\r\n"),
	RES(PERM, REPLY, DOT, 550, "5.7.1", "550 5.7.1 spam"),
	START(0), CLI1("RSET\r\nMAIL FROM:<a@x.test> SIZE=31\r\nRCPT TO:<b@y.test>\r\n"),
	{ 0 }
};

/* without PIPELINING: a refused middle chunk stops the rest */
static const struct step bdat_mid_4xx_nopipe[] = {
	BDATSET(10, 8), EHLO_CHUNK_NOPIPE,
	START(6), CLI("MAIL FROM:<a@x.test>\r\n"), SRV("250 ok\r\n"),
	CLI("RCPT TO:<b@y.test>\r\n"), SRV("250 ok\r\n"),
	CLI("BDAT 17\r\nX-Id: 6\r\n.a\r\nb\r\n."), SRV("250 ok\r\n"),
	CLI("BDAT 8\r\n.c\r\n.\r\ne"), SRV("452 4.3.1 out of space\r\n"),
	RES(TEMP, REPLY, DOT, 452, "4.3.1", "452 4.3.1 out of space"), STATE(IDLE), CLI(""),
	START(6), CLI("RSET\r\n"), SRV("250 ok\r\n"), CLI("MAIL FROM:<a@x.test>\r\n"),
	{ 0 }
};

/* one round trip: up to the limit (the prefix counts) the message goes
 * as one BDAT LAST right behind MAIL and RCPT, unstuffed, and their
 * replies get the dot's time-out (the server may answer the group only
 * once it has the message); above the limit, DATA (or chunks after RCPT
 * above the threshold); 0: never, nor when BDAT is off (threshold 0) */
#define FLIGHT6	CMDS6S "BDAT 29 LAST\r\nX-Id: 6\r\n" BODY6
/* BDAT on (above 1000 bytes in chunks), one round trip up to 100 */
#define ONE_TRIP	BDATSET(1000, 0), BDATPIPE(100), EHLO_CHUNK
static const struct step bdat_pipeline[] = {
	ONE_TRIP,
	START(6), STATE(BUSY), CLI(FLIGHT6), DEADL(1007), NORES,
	SRV("250 2.1.0 Ok\r\n"), DEADL(1007), SRV("250 2.1.5 Ok\r\n"), DEADL(1007), NORES,
	STATE(BUSY), SRV("250 2.0.0 Ok: queued as 4Xy\r\n"),
	RES(OK, REPLY, DOT, 250, "2.0.0", "250 2.0.0 Ok: queued as 4Xy"), STATE(IDLE), MSGS(1),
	BDATPIPE(29),
	START(6), CLI(FLIGHT6), SRV("250 ok\r\n250 ok\r\n250 ok\r\n"),
	RES(OK, REPLY, DOT, 250, "", "250 ok"),
	BDATPIPE(28),
	START(6), CLI1(CMDS6S "DATA\r\n"), SRV("250 ok\r\n250 ok\r\n354 go\r\n"),
	CLI("X-Id: 6\r\n" BODY6S), SRV("250 ok\r\n"), RES(OK, REPLY, DOT, 250, "", "250 ok"),
	BDATSET(10, 8),
	START(6), CLI1(CMDS6S), SRV("250 ok\r\n250 ok\r\n"), CLI(CHUNKS6_8),
	SRV("250 ok\r\n250 ok\r\n250 ok\r\n"), RES(OK, REPLY, DOT, 250, "", "250 ok"),
	BDATSET(1000, 0), BDATPIPE(0),
	START(6), CLI1(CMDS6S "DATA\r\n"), SRV("250 ok\r\n250 ok\r\n354 go\r\n"),
	CLI("X-Id: 6\r\n" BODY6S), SRV("250 ok\r\n"), RES(OK, REPLY, DOT, 250, "", "250 ok"),
	BDATSET(0, 0), BDATPIPE(100),
	START(6), CLI1(CMDS6S "DATA\r\n"), SRV("250 ok\r\n250 ok\r\n354 go\r\n"),
	CLI("X-Id: 6\r\n" BODY6S), SRV("250 ok\r\n"), RES(OK, REPLY, DOT, 250, "", "250 ok"),
	MSGS(6), QUIT_OK,
	{ 0 }
};

/* ... in chunks when the limit is above the chunk size: 4 await their
 * replies at once, the fifth goes after the first chunk's 250 */
static const struct step bdat_pipeline_chunks[] = {
	BDATSET(1000, 4), BDATPIPE(100), EHLO_CHUNK,
	START(6), CLI(CMDS6S "BDAT 13\r\nX-Id: 6\r\n.a\r\n" "BDAT 4\r\nb\r\n." "BDAT 4\r\n.c\r\n"
	    "BDAT 4\r\n.\r\ne"), NORES,
	SRV("250 ok\r\n250 ok\r\n"), CLI(""), SRV("250 ok\r\n"), CLI("BDAT 4 LAST\r\nnd\r\n"),
	SRV("250 ok\r\n250 ok\r\n250 ok\r\n"), NORES, STATE(BUSY),
	SRV("250 2.0.0 queued\r\n"), RES(OK, REPLY, DOT, 250, "2.0.0", "250 2.0.0 queued"),
	{ 0 }
};

/* not without PIPELINING: each command waits, the body goes by DATA */
static const struct step bdat_pipeline_nopipe[] = {
	BDATSET(1000, 0), BDATPIPE(100), EHLO_CHUNK_NOPIPE,
	START(6), CLI("MAIL FROM:<a@x.test>\r\n"), SRV("250 ok\r\n"),
	CLI("RCPT TO:<b@y.test>\r\n"), SRV("250 ok\r\n"), CLI("DATA\r\n"),
	SRV("354 go\r\n"), CLI("X-Id: 6\r\n" BODY6S), SRV("250 ok\r\n"),
	RES(OK, REPLY, DOT, 250, "", "250 ok"),
	{ 0 }
};

/* the first refusal is the outcome, once every reply due is in: a refused
 * RCPT (the chunk's "no valid recipients" read and ignored), a refused
 * MAIL (RCPT's and the chunk's 503 ignored), the chunk's own refusal;
 * RSET before the next MAIL after each */
static const struct step bdat_pipeline_refused[] = {
	ONE_TRIP,
	START(6), CLI(FLIGHT6), SRV("250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n"),
	NORES, STATE(BUSY), DEADL(1007),
	SRV("554 5.5.1 Error: no valid recipients\r\n"),
	RES(PERM, REPLY, RCPT, 550, "5.1.1", "550 5.1.1 no such user"), STATE(IDLE),
	START(6), CLI("RSET\r\n" FLIGHT6), SRV("250 ok\r\n451 4.7.1 try later\r\n"), NORES,
	SRV("503 5.5.1 need MAIL\r\n"), NORES, SRV("503 5.5.1 need MAIL\r\n"),
	RES(TEMP, REPLY, MAIL, 451, "4.7.1", "451 4.7.1 try later"), STATE(IDLE),
	START(6), CLI("RSET\r\n" FLIGHT6), SRV("250 ok\r\n250 ok\r\n250 ok\r\n"), NORES,
	SRV("550 5.7.1 spam\r\n"), RES(PERM, REPLY, DOT, 550, "5.7.1", "550 5.7.1 spam"),
	START(6), CLI("RSET\r\n" FLIGHT6), SRV("250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n"),
	RES(OK, REPLY, DOT, 250, "", "250 ok"), STATE(IDLE),
	/* after a success nothing is held: no RSET */
	START(6), CLI(FLIGHT6),
	{ 0 }
};

/* a lost connection or a silent server with the whole flight out: a
 * temporary failure at the reply awaited first */
static const struct step bdat_pipeline_lost[] = {
	ONE_TRIP,
	START(6), CLI(FLIGHT6), SRV("250 ok\r\n"), DISC,
	RES(TEMP, DISCONNECT, RCPT, 0, "", "connection lost after RCPT"), STATE(CLOSED),
	{ 0 }
};
static const struct step bdat_pipeline_tmo[] = {
	ONE_TRIP,
	START(6), CLI(FLIGHT6), SRV("250 ok\r\n250 ok\r\n"), DEADL(1007), TMO,
	RES(TEMP, TIMEOUT, DOT, 0, "", "timeout waiting for reply to BDAT"), STATE(CLOSED),
	{ 0 }
};
static const struct step bdat_pipeline_tmo_mail[] = {
	ONE_TRIP,
	START(6), CLI(FLIGHT6), DEADL(1007), TMO,
	RES(TEMP, TIMEOUT, MAIL, 0, "", "timeout waiting for reply to MAIL"), STATE(CLOSED),
	{ 0 }
};

/* chunks after RCPT's reply keep their own waits: the end of the last
 * chunk's send does not restart the wait for an earlier chunk's reply
 * (only in one round trip do MAIL's and RCPT's waits restart there) */
static const struct step bdat_chunks_wait[] = {
	BDATSET(10, 4), EHLO_CHUNK,
	START(6), CLI1(CMDS6S), SRV("250 ok\r\n250 ok\r\n"),
	NOW(900), CLI("BDAT 13\r\nX-Id: 6\r\n.a\r\n" "BDAT 4\r\nb\r\n." "BDAT 4\r\n.c\r\n"
	    "BDAT 4\r\n.\r\ne"),
	NOW(950), SRV("250 ok\r\n"), NOW(1500), CLI("BDAT 4 LAST\r\nnd\r\n"), DEADL(457),
	{ 0 }
};

/* a chunk's reply has the dot's time-out, counted from its send */
static const struct step bdat_timeout[] = {
	BDATSET(10, 0), EHLO_CHUNK,
	START(6), CLI1(CMDS6S), SRV("250 ok\r\n250 ok\r\n"),
	CLI("BDAT 29 LAST\r\nX-Id: 6\r\n" BODY6), DEADL(1007), TMO,
	RES(TEMP, TIMEOUT, DOT, 0, "", "timeout waiting for reply to BDAT"), STATE(CLOSED),
	{ 0 }
};

/* 421 to a chunk: the session ends */
static const struct step bdat_421[] = {
	BDATSET(10, 8), EHLO_CHUNK,
	START(6), CLI1(CMDS6S), SRV("250 ok\r\n250 ok\r\n"), CLI(CHUNKS6_8),
	SRV("421 4.3.2 shutting down\r\n"),
	RES(TEMP, REPLY, DOT, 421, "4.3.2", "421 4.3.2 shutting down"), STATE(CLOSED),
	SERR(TEMP, REPLY, DOT, 421, "4.3.2", "421 4.3.2 shutting down"),
	{ 0 }
};

/*
 * bdat_roundtrip - message 6 with chunks of `chunk` bytes, sends completed
 * `piece` bytes at a time, every command answered 250: the BDAT payloads
 * put together are exactly the prefix and the unstuffed body, each chunk
 * holds at most `chunk` body bytes, only the last says LAST.
 */
static void
bdat_roundtrip(int pipe, size_t chunk, int piece)
{
	static const char want[] = "X-Id: 6\r\n" BODY6;
	struct smtp_client *c = smtp_client_new("client.test", &tmo);
	struct buf out = { 0 }, got = { 0 };
	struct smtp_result r;
	size_t pos = 0, nchunks = 0;
	int last = 0, rounds = 0;
	const char *ehlo = pipe ? "250-x\r\n250-PIPELINING\r\n250 CHUNKING\r\n" :
	    "250-x\r\n250 CHUNKING\r\n";

	smtp_client_set_bdat(c, 1, chunk);
	smtp_client_feed(c, "220 hi\r\n", 8);
	pump(c, 0, &out);
	smtp_client_feed(c, ehlo, strlen(ehlo));
	out.len = 0;
	smtp_client_start(c, &msgs[6]);
	while (smtp_client_state(c) == SMTP_STATE_BUSY) {
		unsigned due = 0;

		assert_true(++rounds < 200);
		pump(c, piece, &out);
		while (pos < out.len) {
			const char *p = out.data + pos, *nl = memchr(p, '\n', out.len - pos);
			size_t n;
			char *end;

			assert_non_null(nl);
			if (strncmp(p, "BDAT ", 5) == 0) {
				n = strtoul(p + 5, &end, 10);
				assert_false(last);
				last = strncmp(end, " LAST\r\n", 7) == 0;
				assert_true(last || strncmp(end, "\r\n", 2) == 0);
				assert_true(n <= chunk + (nchunks == 0 ? 9 : 0));
				pos = (size_t)(nl - out.data) + 1;
				assert_true(pos + n <= out.len);
				buf_append(&got, out.data + pos, n);
				pos += n;
				nchunks++;
			} else {
				pos = (size_t)(nl - out.data) + 1;
			}
			due++;
		}
		assert_true(due > 0);
		while (due-- > 0)
			smtp_client_feed(c, "250 ok\r\n", 8);
	}
	assert_int_equal(smtp_client_take_result(c, &r), 1);
	assert_int_equal(r.status, SMTP_OK);
	assert_true(last);
	assert_int_equal(nchunks, (20 + chunk - 1) / chunk);
	assert_int_equal(got.len, sizeof want - 1);
	assert_memory_equal(got.data, want, sizeof want - 1);
	buf_free(&out);
	buf_free(&got);
	smtp_client_free(c);
}

static void
test_bdat(void **s)
{
	RUN(bdat_pipe);
	RUN(bdat_nopipe);
	RUN(bdat_not_offered);
	RUN(bdat_threshold);
	RUN(bdat_mid_5xx_pipe);
	RUN(bdat_mid_4xx_nopipe);
	RUN(bdat_timeout);
	RUN(bdat_421);
	RUN(bdat_pipeline);
	RUN(bdat_pipeline_chunks);
	RUN(bdat_pipeline_nopipe);
	RUN(bdat_pipeline_refused);
	RUN(bdat_pipeline_lost);
	RUN(bdat_pipeline_tmo);
	RUN(bdat_pipeline_tmo_mail);
	RUN(bdat_chunks_wait);
}

static void
test_bdat_chunks(void **s)
{
	static const int pieces[] = { 0, 1, 7 };

	for (int pipe = 0; pipe <= 1; pipe++)
		for (size_t chunk = 1; chunk <= 24; chunk++)
			for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++)
				bdat_roundtrip(pipe, chunk, pieces[k]);
}

/* a chunk without a dot-leading line is handed out in place, not copied */
static void
test_bdat_zero_copy(void **state)
{
	struct smtp_client *c = smtp_client_new("client.test", &tmo);
	struct iovec iov[3];
	static const char ehlo[] = "250-x\r\n250-PIPELINING\r\n250 CHUNKING\r\n";
	int n;

	smtp_client_set_bdat(c, 1000, 1000);
	smtp_client_feed(c, "220 hi\r\n", 8);
	n = smtp_client_output(c, iov);
	smtp_client_sent(c, iov[0].iov_len);
	smtp_client_feed(c, ehlo, sizeof ehlo - 1);
	smtp_client_start(c, &msgs[2]);		/* 1502 bytes, no prefix */
	n = smtp_client_output(c, iov);
	assert_int_equal(n, 1);
	smtp_client_sent(c, iov[0].iov_len);
	smtp_client_feed(c, "250 ok\r\n250 ok\r\n", 16);
	n = smtp_client_output(c, iov);
	assert_int_equal(n, 2);
	assert_int_equal(iov[0].iov_len, 11);
	assert_memory_equal(iov[0].iov_base, "BDAT 1000\r\n", 11);
	assert_ptr_equal(iov[1].iov_base, msgs[2].body->data);
	assert_int_equal(iov[1].iov_len, 1000);
	smtp_client_sent(c, 1011);
	n = smtp_client_output(c, iov);
	assert_int_equal(n, 2);
	assert_memory_equal(iov[0].iov_base, "BDAT 502 LAST\r\n", 15);
	assert_ptr_equal(iov[1].iov_base, msgs[2].body->data + 1000);
	assert_int_equal(iov[1].iov_len, 502);
	smtp_client_free(c);
}

/* open_chunking - a client after EHLO with PIPELINING and CHUNKING, BDAT
 * above 1 byte in chunks of `chunk` bytes. */
static struct smtp_client *
open_chunking(size_t chunk)
{
	struct smtp_client *c = smtp_client_new("client.test", &tmo);
	struct iovec iov[3];
	static const char ehlo[] = "250-x\r\n250-PIPELINING\r\n250 CHUNKING\r\n";

	smtp_client_set_bdat(c, 1, chunk);
	smtp_client_feed(c, "220 hi\r\n", 8);
	smtp_client_output(c, iov);
	smtp_client_sent(c, iov[0].iov_len);
	smtp_client_feed(c, ehlo, sizeof ehlo - 1);
	assert_int_equal(smtp_client_state(c), SMTP_STATE_IDLE);
	smtp_client_start(c, &msgs[6]);
	assert_int_equal(smtp_client_output(c, iov), 1);
	smtp_client_sent(c, iov[0].iov_len);
	smtp_client_feed(c, "250 a\r\n250 b\r\n", 14);
	return c;
}

static size_t
iov_total(const struct iovec *iov, int n)
{
	size_t t = 0;

	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

/* open_one_trip - a client after EHLO with PIPELINING and CHUNKING, BDAT
 * on, one round trip up to 1000 bytes, message 6 started (not sent). */
static struct smtp_client *
open_one_trip(void)
{
	static const char ehlo[] = "250-x\r\n250-PIPELINING\r\n250 CHUNKING\r\n";
	struct smtp_client *c = smtp_client_new("client.test", &tmo);
	struct iovec iov[3];

	smtp_client_set_bdat(c, 1000, 0);
	smtp_client_set_bdat_pipeline(c, 1000);
	smtp_client_feed(c, "220 hi\r\n", 8);
	smtp_client_output(c, iov);
	smtp_client_sent(c, iov[0].iov_len);
	smtp_client_feed(c, ehlo, sizeof ehlo - 1);
	smtp_client_start(c, &msgs[6]);
	return c;
}

/* one round trip, every reply in before sent() reports the flight
 * (completion order): the outcome waits for the send, and is the first
 * refusal (RCPT's), not the chunk's "no valid recipients" */
static void
test_bdat_pipeline_early(void **state)
{
	static const char *const replies[] = {
		"250 a\r\n250 b\r\n250 2.0.0 ok\r\n",
		"250 a\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n",
	};
	(void)state;
	for (int k = 0; k < 2; k++) {
		struct smtp_client *c = open_one_trip();
		struct iovec iov[3];
		struct smtp_result r;
		int n;

		n = smtp_client_output(c, iov);
		assert_int_equal(n, 3);	/* commands, prefix, the unstuffed body */
		smtp_client_feed(c, replies[k], strlen(replies[k]));
		assert_int_equal(smtp_client_state(c), SMTP_STATE_BUSY);
		assert_int_equal(smtp_client_take_result(c, &r), 0);
		smtp_client_sent(c, iov_total(iov, n));
		assert_int_equal(smtp_client_state(c), SMTP_STATE_IDLE);
		assert_int_equal(smtp_client_take_result(c, &r), 1);
		if (k == 0) {
			assert_int_equal(r.status, SMTP_OK);
			assert_int_equal(r.stage, SMTP_STAGE_DOT);
		} else {
			assert_int_equal(r.status, SMTP_PERM);
			assert_int_equal(r.stage, SMTP_STAGE_RCPT);
			assert_int_equal(r.code, 550);
		}
		smtp_client_free(c);
	}
}

/* one round trip, RCPT refused while the flight is still being sent
 * (part of it reported): the chunk goes on to its end, the outcome is
 * RCPT's once the chunk's reply is in and the send is done, whichever
 * comes last; RSET next time. A 421 instead of the chunk's reply closes
 * the session, the outcome still RCPT's. */
static void
test_bdat_pipeline_partial(void **state)
{
	(void)state;
	for (int k = 0; k < 3; k++) {
		struct smtp_client *c = open_one_trip();
		struct iovec iov[3];
		struct smtp_result r;
		size_t total;
		int n;

		n = smtp_client_output(c, iov);
		total = iov_total(iov, n);
		smtp_client_sent(c, 5);
		smtp_client_feed(c, "250 a\r\n550 5.1.1 no such user\r\n", 31);
		assert_int_equal(smtp_client_take_result(c, &r), 0);
		assert_int_equal(smtp_client_state(c), SMTP_STATE_BUSY);
		if (k == 2) {
			smtp_client_feed(c, "421 4.3.2 bye\r\n", 15);
			assert_int_equal(smtp_client_state(c), SMTP_STATE_CLOSED);
		} else {
			if (k == 1)	/* the chunk's reply before the send is done */
				smtp_client_feed(c, "554 5.5.1 no valid recipients\r\n", 31);
			assert_int_equal(smtp_client_take_result(c, &r), 0);
			n = smtp_client_output(c, iov);
			assert_int_equal(iov_total(iov, n), total - 5);
			smtp_client_sent(c, total - 5);
			if (k == 0) {
				assert_int_equal(smtp_client_take_result(c, &r), 0);
				smtp_client_feed(c, "554 5.5.1 no valid recipients\r\n", 31);
			}
			assert_int_equal(smtp_client_state(c), SMTP_STATE_IDLE);
		}
		assert_int_equal(smtp_client_take_result(c, &r), 1);
		assert_int_equal(r.status, SMTP_PERM);
		assert_int_equal(r.stage, SMTP_STAGE_RCPT);
		assert_int_equal(r.code, 550);
		if (k < 2) {
			smtp_client_start(c, &msgs[6]);
			n = smtp_client_output(c, iov);
			assert_true(n >= 1);
			assert_memory_equal(iov[0].iov_base, "RSET\r\n", 6);
		}
		smtp_client_free(c);
	}
}

/* a chunk's reply before sent() reports the chunk (completion order) */
static void
test_bdat_early_reply(void **state)
{
	struct smtp_client *c = open_chunking(0);
	struct iovec iov[3];
	struct smtp_result r;
	size_t total;
	int n;

	/* LAST answered before its send is reported: held until it is */
	n = smtp_client_output(c, iov);
	assert_int_equal(n, 3);
	total = iov_total(iov, n);
	smtp_client_feed(c, "250 ok\r\n", 8);
	assert_int_equal(smtp_client_state(c), SMTP_STATE_BUSY);
	assert_int_equal(smtp_client_take_result(c, &r), 0);
	smtp_client_sent(c, total);
	assert_int_equal(smtp_client_state(c), SMTP_STATE_IDLE);
	assert_int_equal(smtp_client_take_result(c, &r), 1);
	assert_int_equal(r.status, SMTP_OK);
	smtp_client_free(c);

	/* ... and when only part of it went, the server cut in */
	c = open_chunking(0);
	n = smtp_client_output(c, iov);
	smtp_client_feed(c, "550 5.7.1 no\r\n", 14);
	assert_int_equal(smtp_client_take_result(c, &r), 0);
	smtp_client_sent(c, 4);
	assert_int_equal(smtp_client_state(c), SMTP_STATE_CLOSED);
	assert_int_equal(smtp_client_take_result(c, &r), 1);
	assert_int_equal(r.status, SMTP_TEMP);
	assert_int_equal(r.cause, SMTP_CAUSE_PROTOCOL);
	assert_int_equal(r.stage, SMTP_STAGE_DOT);
	assert_string_equal(r.text, "protocol error: reply before end of message body");
	smtp_client_free(c);

	/* the first chunk refused while the second is being sent: the
	 * second's reply comes early too; the refusal is the outcome once
	 * the send is in, no third chunk goes, RSET comes first next time */
	c = open_chunking(8);
	n = smtp_client_output(c, iov);
	smtp_client_sent(c, iov_total(iov, n));
	n = smtp_client_output(c, iov);
	assert_int_equal(n, 2);
	assert_memory_equal(iov[0].iov_base, "BDAT 8\r\n", 8);
	total = iov_total(iov, n);
	smtp_client_feed(c, "554 5.6.0 bad\r\n", 15);
	assert_int_equal(smtp_client_take_result(c, &r), 0);
	smtp_client_feed(c, "503 5.5.1 no\r\n", 14);
	assert_int_equal(smtp_client_take_result(c, &r), 0);
	assert_int_equal(smtp_client_state(c), SMTP_STATE_BUSY);
	smtp_client_sent(c, total);
	assert_int_equal(smtp_client_state(c), SMTP_STATE_IDLE);
	assert_int_equal(smtp_client_output(c, iov), 0);
	assert_int_equal(smtp_client_take_result(c, &r), 1);
	assert_int_equal(r.status, SMTP_PERM);
	assert_int_equal(r.code, 554);
	assert_int_equal(r.stage, SMTP_STAGE_DOT);
	smtp_client_start(c, &msgs[6]);
	assert_int_equal(smtp_client_output(c, iov), 1);
	assert_memory_equal(iov[0].iov_base, "RSET\r\nMAIL FROM:<a@x.test>\r\n", 28);
	smtp_client_free(c);
}

static void test_pipe_reuse(void **s) { RUN(pipe_reuse); }
static void test_nopipe_reuse(void **s) { RUN(nopipe_reuse); }
static void test_one_read(void **s) { RUN(one_read); }
static void test_helo(void **s) { RUN(helo_fallback); RUN(helo_refused); }
static void test_greeting(void **s) { RUN(greeting_554); RUN(greeting_421); RUN(greeting_450); }
static void test_ehlo_fail(void **s) { RUN(ehlo_4xx); RUN(ehlo_421); }
static void test_pipe_failures(void **s)
{
	RUN(pipe_mail_5xx);
	RUN(pipe_rcpt_5xx_354);
	RUN(pipe_rcpt_4xx);
	RUN(pipe_data_5xx);
}
static void test_nopipe_failures(void **s) { RUN(nopipe_failures); }
static void
test_stages(void **s)
{
	RUN(stage_mail_pipe);
	RUN(stage_mail_nopipe);
	RUN(stage_rcpt);
	RUN(stage_data_dot);
}
static void test_dot(void **s) { RUN(dot_4xx_5xx); }
static void test_size(void **s) { RUN(size_limit); }
static void test_8bit(void **s) { RUN(eightbit); RUN(smtputf8); RUN(bad_address); }
static void
test_smtputf8(void **s)
{
	RUN(smtputf8);
	RUN(smtputf8_pipe);
	RUN(smtputf8_missing);
	RUN(smtputf8_helo);
}
static void test_421(void **s)
{
	RUN(close_421);
	RUN(close_421_dot);
	RUN(close_421_after_fail);
	RUN(idle_421);
}
static void test_protocol(void **s)
{
	RUN(idle_unsolicited);
	RUN(garbage_mail);
	RUN(garbage_greeting);
	RUN(cut_in_before_body);
	RUN(data_250);
	RUN(ok_before_body);
	RUN(close_421_before_body);
	RUN(size_absurd);
}
static void test_disconnect(void **s)
{
	RUN(disc_after_dot);
	RUN(disc_in_body);
	RUN(disc_after_data);
	RUN(disc_early);
	RUN(disc_idle);
	RUN(disc_quit);
}
static void
test_clock(void **s)
{
	RUN(clock_stages);
	RUN(clock_dot);
	run_tmo = &tmo_txn;
	RUN(clock_txn);
	RUN(clock_txn_body);
	RUN(clock_txn_next);
	RUN(clock_stages);
	run_tmo = &tmo;
}

static void test_timeouts(void **s)
{
	RUN(timeouts);
	RUN(timeout_greeting);
	RUN(timeout_ehlo);
	RUN(timeout_body);
	RUN(timeout_quit);
}

/* ---- STARTTLS (RFC 3207) ---- */

#define EHLO_TLS \
	GREET, SRV("250-mx.y.test\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-STARTTLS\r\n" \
	    "250 8BITMIME\r\n")
#define TLS_220 \
	EHLO_TLS, STATE(BUSY), CLI("STARTTLS\r\n"), DEADL(1002), \
	SRV("220 2.0.0 Ready to start TLS\r\n"), STATE(TLS), DEADL(1002), CLI("")

/* opportunistic: STARTTLS, handshake, EHLO again; what the clear-text EHLO
 * said (SIZE) is forgotten, and STARTTLS is not sent twice */
static const struct step tls_try_ok[] = {
	TLSMODE(TRY), TLS_220, NOSERR,
	TLSUP, STATE(BUSY), CLI("EHLO client.test\r\n"), DEADL(1002),
	SRV("250-mx.y.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"), STATE(IDLE), NOSERR,
	PIPE_OK0(CMDS0), MSGS(1),
	QUIT_OK,
	{ 0 }
};

static const struct step tls_must_ok[] = {
	TLSMODE(MUST), TLS_220, TLSUP, CLI("EHLO client.test\r\n"),
	SRV("250 mx.y.test\r\n"), STATE(IDLE), NOSERR,
	{ 0 }
};

/* not offered: opportunistic goes on in clear text, required fails */
static const struct step tls_try_absent[] = {
	TLSMODE(TRY), EHLO_PIPE, NOSERR, PIPE_OK0(CMDS0S),
	{ 0 }
};

static const struct step tls_must_absent[] = {
	TLSMODE(MUST), GREET, SRV("250-mx.y.test\r\n250 PIPELINING\r\n"), STATE(CLOSED), CLI(""),
	SERR(TEMP, TLS, STARTTLS, 0, "", "the server does not offer STARTTLS and TLS is required"),
	{ 0 }
};

static const struct step tls_must_helo[] = {
	TLSMODE(MUST), GREET, SRV("502 5.5.2 what\r\n"), CLI("HELO client.test\r\n"),
	SRV("250 mx.y.test\r\n"), STATE(CLOSED),
	SERR(TEMP, TLS, STARTTLS, 0, "", "the server refused EHLO (no STARTTLS) and TLS is required"),
	{ 0 }
};

/* never: STARTTLS offered and ignored */
static const struct step tls_never[] = {
	TLSMODE(NO), EHLO_TLS, STATE(IDLE), CLI(""), NOSERR,
	{ 0 }
};

/* refused: opportunistic goes on in clear text, required fails with the reply */
static const struct step tls_try_refused[] = {
	TLSMODE(TRY), EHLO_TLS, CLI("STARTTLS\r\n"), SRV("454 4.7.0 TLS not available\r\n"),
	STATE(IDLE), NOSERR, PIPE_OK0(CMDS0S),
	{ 0 }
};

static const struct step tls_must_refused[] = {
	TLSMODE(MUST), EHLO_TLS, CLI("STARTTLS\r\n"), SRV("454 4.7.0 TLS not available\r\n"),
	STATE(CLOSED), CLI(""),
	SERR(TEMP, TLS, STARTTLS, 454, "4.7.0", "STARTTLS refused: 454 4.7.0 TLS not available"),
	{ 0 }
};

static const struct step tls_421[] = {
	TLSMODE(TRY), EHLO_TLS, CLI("STARTTLS\r\n"), SRV("421 4.3.2 shutting down\r\n"),
	STATE(CLOSED), SERR(TEMP, REPLY, STARTTLS, 421, "4.3.2", "421 4.3.2 shutting down"),
	{ 0 }
};

/* plaintext after the 220, before TLS: injected (CVE-2011-0411 class) */
static const struct step tls_injection[] = {
	TLSMODE(TRY), EHLO_TLS, CLI("STARTTLS\r\n"),
	SRV("220 2.0.0 Ready\r\n250-mx.y.test\r\n250 PIPELINING\r\n"), STATE(CLOSED), CLI(""),
	SERR(TEMP, PROTOCOL, STARTTLS, 0, "", "protocol error: plaintext received after the "
	    "reply to STARTTLS, before the TLS handshake (possible injection)"),
	{ 0 }
};

static const struct step tls_injection_later[] = {
	TLSMODE(MUST), TLS_220, SRV("x"), STATE(CLOSED),
	SERR(TEMP, PROTOCOL, STARTTLS, 0, "", "protocol error: plaintext received after the "
	    "reply to STARTTLS, before the TLS handshake (possible injection)"),
	{ 0 }
};

static const struct step tls_handshake_failed[] = {
	TLSMODE(TRY), TLS_220, TLSFAIL("TLS handshake failed: bad record"), STATE(CLOSED), CLI(""),
	SERR(TEMP, TLS, STARTTLS, 0, "", "STARTTLS: TLS handshake failed: bad record"),
	{ 0 }
};

static const struct step tls_handshake_timeout[] = {
	TLSMODE(TRY), NOW(50), TLS_220, NOW(1000), DEADL(52), NOW(1052), DEADL(1), TMO,
	STATE(CLOSED), DEADL(0),
	SERR(TEMP, TLS, STARTTLS, 0, "", "timeout during the TLS handshake (1002ms)"),
	{ 0 }
};

static const struct step tls_handshake_disc[] = {
	TLSMODE(TRY), TLS_220, DISC, STATE(CLOSED),
	SERR(TEMP, TLS, STARTTLS, 0, "", "connection lost during the TLS handshake"),
	{ 0 }
};

static void
test_starttls(void **s)
{
	RUN(tls_try_ok);
	RUN(tls_must_ok);
	RUN(tls_try_absent);
	RUN(tls_must_absent);
	RUN(tls_must_helo);
	RUN(tls_never);
	RUN(tls_try_refused);
	RUN(tls_must_refused);
	RUN(tls_421);
	RUN(tls_injection);
	RUN(tls_injection_later);
	RUN(tls_handshake_failed);
	RUN(tls_handshake_timeout);
	RUN(tls_handshake_disc);
}

/* ---- AUTH (RFC 4954, 4616) ---- */

#define EHLO_AUTH(mechs) \
	GREET, SRV("250-relay.test\r\n250-PIPELINING\r\n250-AUTH " mechs "\r\n250 8BITMIME\r\n")

/* after STARTTLS: PLAIN with an initial response, then mail as usual */
static const struct step auth_plain_tls[] = {
	TLSMODE(MUST), AUTHSET(ANY, 0), EHLO_TLS, CLI("STARTTLS\r\n"),
	SRV("220 go\r\n"), STATE(TLS), TLSUP, CLI("EHLO client.test\r\n"),
	SRV("250-relay.test\r\n250-PIPELINING\r\n250-AUTH LOGIN PLAIN\r\n250 8BITMIME\r\n"),
	STATE(BUSY), AUTHED(0), CLI("AUTH PLAIN AHUAcEBzcw==\r\n"), DEADL(1002),
	SRV("235 2.7.0 Authentication successful\r\n"), STATE(IDLE), AUTHED(1), NOSERR,
	PIPE_OK0(CMDS0), MSGS(1), QUIT_OK,
	{ 0 }
};

/* LOGIN: user name and password each after a 334 */
static const struct step auth_login[] = {
	AUTHSET(LOGIN, 1), EHLO_AUTH("PLAIN LOGIN"), CLI("AUTH LOGIN\r\n"),
	SRV("334 VXNlcm5hbWU6\r\n"), CLI("dQ==\r\n"), SRV("334 UGFzc3dvcmQ6\r\n"),
	CLI("cEBzcw==\r\n"), STATE(BUSY), SRV("235 ok\r\n"), STATE(IDLE), AUTHED(1),
	PIPE_OK0(CMDS0),
	{ 0 }
};

/* ANY without PLAIN offered: LOGIN; the old "AUTH=" form counts */
static const struct step auth_any_login[] = {
	AUTHSET(ANY, 1), GREET, SRV("250-relay.test\r\n250-AUTH=LOGIN\r\n250 8BITMIME\r\n"),
	CLI("AUTH LOGIN\r\n"), SRV("334 VXNlcm5hbWU6\r\n"), CLI("dQ==\r\n"),
	SRV("334 UGFzc3dvcmQ6\r\n"), CLI("cEBzcw==\r\n"), SRV("235 ok\r\n"), STATE(IDLE),
	{ 0 }
};

/* the wrong password: 535 is a TEMP session failure of cause AUTH */
static const struct step auth_plain_535[] = {
	AUTHSET(PLAIN, 1), EHLO_AUTH("PLAIN"), CLI("AUTH PLAIN AHUAcEBzcw==\r\n"),
	SRV("535 5.7.8 Authentication credentials invalid\r\n"), STATE(CLOSED), CLI(""),
	AUTHED(0),
	SERR(TEMP, AUTH, AUTH, 535, "5.7.8", "535 5.7.8 Authentication credentials invalid"),
	{ 0 }
};

static const struct step auth_login_535[] = {
	AUTHSET(LOGIN, 1), EHLO_AUTH("LOGIN"), CLI("AUTH LOGIN\r\n"),
	SRV("334 VXNlcm5hbWU6\r\n"), CLI("dQ==\r\n"), SRV("334 UGFzc3dvcmQ6\r\n"),
	CLI("cEBzcw==\r\n"), SRV("535 5.7.8 no\r\n"), STATE(CLOSED),
	SERR(TEMP, AUTH, AUTH, 535, "5.7.8", "535 5.7.8 no"),
	{ 0 }
};

/* 534 (mechanism too weak) to AUTH LOGIN itself */
static const struct step auth_534[] = {
	AUTHSET(LOGIN, 1), EHLO_AUTH("LOGIN"), CLI("AUTH LOGIN\r\n"),
	SRV("534 5.7.9 Authentication mechanism is too weak\r\n"), STATE(CLOSED),
	SERR(TEMP, AUTH, AUTH, 534, "5.7.9", "534 5.7.9 Authentication mechanism is too weak"),
	{ 0 }
};

/* a 334 to PLAIN (it sent everything): the login failed */
static const struct step auth_plain_334[] = {
	AUTHSET(PLAIN, 1), EHLO_AUTH("PLAIN"), CLI("AUTH PLAIN AHUAcEBzcw==\r\n"),
	SRV("334 \r\n"), STATE(CLOSED), SERR(TEMP, AUTH, AUTH, 334, "", "334"),
	{ 0 }
};

/* 421 while logging in: a 421 */
static const struct step auth_421[] = {
	AUTHSET(PLAIN, 1), EHLO_AUTH("PLAIN"), CLI("AUTH PLAIN AHUAcEBzcw==\r\n"),
	SRV("421 4.3.2 bye\r\n"), STATE(CLOSED),
	SERR(TEMP, REPLY, AUTH, 421, "4.3.2", "421 4.3.2 bye"),
	{ 0 }
};

/* not offered at all, or not the mechanism asked for */
static const struct step auth_absent[] = {
	AUTHSET(ANY, 1), GREET, SRV("250-relay.test\r\n250 PIPELINING\r\n"), STATE(CLOSED), CLI(""),
	SERR(TEMP, AUTH, AUTH, 0, "", "the server does not offer AUTH"),
	{ 0 }
};

static const struct step auth_mech_absent[] = {
	AUTHSET(LOGIN, 1), EHLO_AUTH("PLAIN CRAM-MD5"), STATE(CLOSED), CLI(""),
	SERR(TEMP, AUTH, AUTH, 0, "", "the server does not offer AUTH LOGIN"),
	{ 0 }
};

static const struct step auth_any_absent[] = {
	AUTHSET(ANY, 1), EHLO_AUTH("CRAM-MD5 XOAUTH2"), STATE(CLOSED), CLI(""),
	SERR(TEMP, AUTH, AUTH, 0, "", "the server does not offer AUTH PLAIN or LOGIN"),
	{ 0 }
};

/* never over clear text unless allowed, whatever the server offers */
static const struct step auth_no_tls[] = {
	AUTHSET(PLAIN, 0), EHLO_AUTH("PLAIN"), STATE(CLOSED), CLI(""),
	SERR(TEMP, AUTH, AUTH, 0, "", "refusing to send credentials without TLS (AUTH needs "
	    "TLS unless tls = \"none\" is set)"),
	{ 0 }
};

/* opportunistic TLS not offered: still no AUTH in clear text */
static const struct step auth_try_no_starttls[] = {
	TLSMODE(TRY), AUTHSET(ANY, 0), EHLO_AUTH("PLAIN"), STATE(CLOSED), CLI(""),
	SERR(TEMP, AUTH, AUTH, 0, "", "refusing to send credentials without TLS (AUTH needs "
	    "TLS unless tls = \"none\" is set)"),
	{ 0 }
};

static const struct step auth_helo[] = {
	AUTHSET(ANY, 1), GREET, SRV("502 5.5.2 what\r\n"), CLI("HELO client.test\r\n"),
	SRV("250 relay.test\r\n"), STATE(CLOSED),
	SERR(TEMP, AUTH, AUTH, 0, "", "the server refused EHLO, and AUTH needs it"),
	{ 0 }
};

static const struct step auth_timeout[] = {
	AUTHSET(PLAIN, 1), EHLO_AUTH("PLAIN"), CLI("AUTH PLAIN AHUAcEBzcw==\r\n"), DEADL(1002),
	TMO, STATE(CLOSED),
	SERR(TEMP, TIMEOUT, AUTH, 0, "", "timeout waiting for reply to AUTH"),
	{ 0 }
};

/* without AUTH configured, an AUTH offer changes nothing */
static const struct step auth_unset[] = {
	EHLO_AUTH("PLAIN LOGIN"), STATE(IDLE), CLI(""), AUTHED(0),
	{ 0 }
};

/* implicit TLS: the handshake first, then the greeting over TLS, no STARTTLS */
static const struct step implicit_ok[] = {
	NOW(10), TLSMODE(IMPLICIT), STATE(TLS), CLI(""), DEADL(1002), NOW(500), TLSUP,
	STATE(BUSY), DEADL(1001), CLI(""), AUTHSET(ANY, 0),
	SRV("220 relay.test ESMTP\r\n"), CLI("EHLO client.test\r\n"),
	SRV("250-relay.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n"),
	CLI("AUTH PLAIN AHUAcEBzcw==\r\n"), SRV("235 ok\r\n"), STATE(IDLE), AUTHED(1),
	PIPE_OK0(CMDS0),
	{ 0 }
};

static const struct step implicit_failed[] = {
	TLSMODE(IMPLICIT), STATE(TLS), TLSFAIL("certificate verify failed"), STATE(CLOSED),
	SERR(TEMP, TLS, STARTTLS, 0, "", "TLS: certificate verify failed"),
	{ 0 }
};

static const struct step implicit_timeout[] = {
	TLSMODE(IMPLICIT), STATE(TLS), DEADL(1002), TMO, STATE(CLOSED),
	SERR(TEMP, TLS, STARTTLS, 0, "", "timeout during the TLS handshake (1002ms)"),
	{ 0 }
};

static void
test_auth(void **s)
{
	RUN(auth_plain_tls);
	RUN(auth_login);
	RUN(auth_any_login);
	RUN(auth_plain_535);
	RUN(auth_login_535);
	RUN(auth_534);
	RUN(auth_plain_334);
	RUN(auth_421);
	RUN(auth_absent);
	RUN(auth_mech_absent);
	RUN(auth_any_absent);
	RUN(auth_no_tls);
	RUN(auth_try_no_starttls);
	RUN(auth_helo);
	RUN(auth_timeout);
	RUN(auth_unset);
	RUN(implicit_ok);
	RUN(implicit_failed);
	RUN(implicit_timeout);
}

/* ---- hand-driven tests ---- */

static struct smtp_client *
open_pipe(void)
{
	struct smtp_client *c = smtp_client_new("client.test", &tmo);
	struct iovec iov[3];
	static const char ehlo[] = "250-mx\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
	    "250 SIZE 100000\r\n";

	smtp_client_feed(c, "220 hi\r\n", 8);
	assert_int_equal(smtp_client_output(c, iov), 1);
	smtp_client_sent(c, iov[0].iov_len);
	smtp_client_feed(c, ehlo, sizeof ehlo - 1);
	assert_int_equal(smtp_client_state(c), SMTP_STATE_IDLE);
	return c;
}

static void
test_ext(void **state)
{
	struct smtp_client *c = smtp_client_new("client.test", &tmo);
	struct iovec iov[3];
	static const char ehlo[] = "250-mx.y.test Hello [192.0.2.1]\r\n250-pipelining\r\n"
	    "250-Size 5000\r\n250-8bitmime\r\n250-SmtpUtf8\r\n250-STARTTLS\r\n"
	    "250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN\r\n250 enhancedstatuscodes\r\n";
	const struct smtp_ext *e;

	smtp_client_feed(c, "220 hi\r\n", 8);
	assert_int_equal(smtp_client_output(c, iov), 1);
	assert_int_equal(iov[0].iov_len, 18);
	assert_memory_equal(iov[0].iov_base, "EHLO client.test\r\n", 18);
	smtp_client_sent(c, 18);
	smtp_client_feed(c, ehlo, sizeof ehlo - 1);
	e = smtp_client_ext(c);
	assert_int_equal(e->pipelining, 1);
	assert_int_equal(e->has_size, 1);
	assert_int_equal(e->size, 5000);
	assert_int_equal(e->eightbitmime, 1);
	assert_int_equal(e->smtputf8, 1);
	assert_int_equal(e->starttls, 1);
	assert_int_equal(e->enhancedstatuscodes, 1);
	smtp_client_free(c);

	/* the greeting line's own words are not keywords; SIZE without a number */
	c = smtp_client_new("client.test", &tmo);
	smtp_client_feed(c, "220 hi\r\n", 8);
	smtp_client_output(c, iov);
	smtp_client_sent(c, 18);
	smtp_client_feed(c, "250-PIPELINING\r\n250 SIZE\r\n", 26);
	e = smtp_client_ext(c);
	assert_int_equal(e->pipelining, 0);
	assert_int_equal(e->has_size, 1);
	assert_int_equal(e->size, 0);
	smtp_client_free(c);
}

/* partial sends advance across the iovecs; pointers point into the right places */
static void
test_partial_iov(void **state)
{
	struct smtp_client *c = open_pipe();
	struct iovec iov[3];
	struct smtp_result r;
	const struct msg_body *b = msgs[0].body;

	smtp_client_start(c, &msgs[0]);
	assert_int_equal(smtp_client_output(c, iov), 1);
	smtp_client_sent(c, 10);
	assert_int_equal(smtp_client_output(c, iov), 1);
	assert_memory_equal(iov[0].iov_base, "<a@x.test> SIZE=31\r\nRCPT", 24);
	smtp_client_sent(c, iov[0].iov_len);
	assert_int_equal(smtp_client_output(c, iov), 0);
	smtp_client_feed(c, "250 a\r\n250 b\r\n354 c\r\n", 21);
	assert_int_equal(smtp_client_output(c, iov), 2);
	assert_ptr_equal(iov[0].iov_base, msgs[0].prefix);
	assert_int_equal(iov[0].iov_len, 9);
	assert_ptr_equal(iov[1].iov_base, b->data);
	assert_int_equal(iov[1].iov_len, b->len);
	smtp_client_sent(c, 12);
	assert_int_equal(smtp_client_output(c, iov), 1);
	assert_ptr_equal(iov[0].iov_base, b->data + 3);
	assert_int_equal(iov[0].iov_len, b->len - 3);
	smtp_client_sent(c, 0);
	assert_int_equal(smtp_client_output(c, iov), 1);
	assert_ptr_equal(iov[0].iov_base, b->data + 3);
	smtp_client_sent(c, b->len - 3);
	assert_int_equal(smtp_client_output(c, iov), 0);
	assert_int_equal(smtp_client_deadline(c), 1007);
	smtp_client_feed(c, "250 ok\r\n", 8);
	assert_int_equal(smtp_client_take_result(c, &r), 1);
	assert_int_equal(r.status, SMTP_OK);
	smtp_client_free(c);
}

/* the dot's reply seen before the session reports the body's send: the
 * transaction stays open (its send set still points at this message's
 * header and body) until the send is reported */
static void
test_early_reply(void **state)
{
	struct smtp_client *c = open_pipe();
	struct iovec iov[3];
	struct smtp_result r;
	size_t total;

	/* all of it went: the held reply is the outcome, then the next one */
	smtp_client_start(c, &msgs[1]);
	smtp_client_output(c, iov);
	smtp_client_sent(c, iov[0].iov_len);
	smtp_client_feed(c, "250 a\r\n250 b\r\n354 c\r\n", 21);
	assert_int_equal(smtp_client_output(c, iov), 1);
	total = iov[0].iov_len;
	smtp_client_feed(c, "250 ok\r\n", 8);
	assert_int_equal(smtp_client_state(c), SMTP_STATE_BUSY);
	assert_int_equal(smtp_client_take_result(c, &r), 0);
	smtp_client_sent(c, total);
	assert_int_equal(smtp_client_state(c), SMTP_STATE_IDLE);
	assert_int_equal(smtp_client_take_result(c, &r), 1);
	assert_int_equal(r.status, SMTP_OK);
	smtp_client_start(c, &msgs[1]);
	assert_int_equal(smtp_client_state(c), SMTP_STATE_BUSY);
	assert_int_equal(smtp_client_output(c, iov), 1);
	assert_memory_equal(iov[0].iov_base, "MAIL FROM:<> SIZE=7 BODY=8BITMIME\r\n", 35);
	smtp_client_free(c);

	/* part of it went: the server cut in, the session is out of step,
	 * and the outcome is that (not the early reply) */
	c = open_pipe();
	smtp_client_start(c, &msgs[0]);
	smtp_client_output(c, iov);
	smtp_client_sent(c, iov[0].iov_len);
	smtp_client_feed(c, "250 a\r\n250 b\r\n354 c\r\n", 21);
	assert_int_equal(smtp_client_output(c, iov), 2);
	smtp_client_feed(c, "250 2.0.0 queued before the end\r\n", 33);
	assert_int_equal(smtp_client_take_result(c, &r), 0);
	smtp_client_sent(c, 4);
	assert_int_equal(smtp_client_state(c), SMTP_STATE_CLOSED);
	assert_int_equal(smtp_client_take_result(c, &r), 1);
	assert_int_equal(r.status, SMTP_TEMP);
	assert_int_equal(r.cause, SMTP_CAUSE_PROTOCOL);
	assert_int_equal(r.stage, SMTP_STAGE_DOT);
	assert_int_equal(smtp_client_session_error(c, &r), 1);
	assert_int_equal(r.cause, SMTP_CAUSE_PROTOCOL);
	assert_string_equal(r.text, "protocol error: reply before end of message body");
	assert_int_equal(smtp_client_output(c, iov), 0);
	smtp_client_free(c);
}

/* init resets a client for a new connection */
static void
test_reinit(void **state)
{
	struct smtp_client *c = open_pipe();
	struct iovec iov[3];
	struct smtp_result r;

	smtp_client_disconnected(c);
	assert_int_equal(smtp_client_state(c), SMTP_STATE_CLOSED);
	smtp_client_init(c);
	assert_int_equal(smtp_client_state(c), SMTP_STATE_BUSY);
	assert_int_equal(smtp_client_session_error(c, &r), 0);
	assert_int_equal(smtp_client_deadline(c), 1001);
	assert_int_equal(smtp_client_ext(c)->pipelining, 0);
	smtp_client_feed(c, "220 hi\r\n", 8);
	assert_int_equal(smtp_client_output(c, iov), 1);
	assert_memory_equal(iov[0].iov_base, "EHLO client.test\r\n", 18);
	smtp_client_free(c);
}

/* long result texts are bounded and one line */
static void
test_long_text(void **state)
{
	struct smtp_client *c = open_pipe();
	struct smtp_result r;
	struct iovec iov[3];
	char big[1200];

	memcpy(big, "550-5.1.1 ", 10);
	memset(big + 10, 'z', 1000);
	memcpy(big + 1010, "\r\n550 5.1.1 x\r\n", 15);
	smtp_client_start(c, &msgs[0]);
	smtp_client_output(c, iov);
	smtp_client_sent(c, iov[0].iov_len);
	smtp_client_feed(c, "250 ok\r\n", 8);
	smtp_client_feed(c, big, 1025);
	smtp_client_feed(c, "554 no\r\n", 8);
	assert_int_equal(smtp_client_take_result(c, &r), 1);
	assert_int_equal(strlen(r.text), 511);
	assert_null(strpbrk(r.text, "\r\n"));
	assert_int_equal(r.code, 550);
	smtp_client_free(c);
}

/*
 * A maximal reply (SMTP_REPLY_LINES_MAX lines of SMTP_REPLY_LINE_MAX
 * bytes) fed one byte per call: the parser's work stays linear in the
 * bytes fed (a rescan from the start on every feed is ~65,000 times that).
 */
static void
test_drip_linear(void **state)
{
	size_t cap = SMTP_REPLY_LINES_MAX * (SMTP_REPLY_LINE_MAX + 2), n = 0;
	char *b = malloc(cap);
	struct smtp_client *c = smtp_client_new("client.test", &tmo);
	struct iovec iov[3];

	for (int i = 0; i < SMTP_REPLY_LINES_MAX; i++) {
		memcpy(b + n, i == SMTP_REPLY_LINES_MAX - 1 ? "220 " : "220-", 4);
		memset(b + n + 4, 'x', SMTP_REPLY_LINE_MAX - 4);
		memcpy(b + n + SMTP_REPLY_LINE_MAX, "\r\n", 2);
		n += SMTP_REPLY_LINE_MAX + 2;
	}
	assert_int_equal(n, cap);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(smtp_client_state(c), SMTP_STATE_BUSY);
		assert_int_equal(smtp_client_output(c, iov), 0);
		smtp_client_feed(c, b + i, 1);
	}
	/* the greeting was taken whole: EHLO follows */
	assert_int_equal(smtp_client_output(c, iov), 1);
	assert_memory_equal(iov[0].iov_base, "EHLO client.test\r\n", 18);
	assert_true(smtp_client_scan_work(c) <= 8 * (uint64_t)n);
	smtp_client_free(c);

	/* the same bytes in 7-byte pieces, and a refused RCPT as big */
	c = open_pipe();
	smtp_client_start(c, &msgs[0]);
	smtp_client_output(c, iov);
	smtp_client_sent(c, iov[0].iov_len);
	smtp_client_feed(c, "250 ok\r\n", 8);
	for (size_t i = 0; i < n; i += SMTP_REPLY_LINE_MAX + 2) {
		memcpy(b + i, i + SMTP_REPLY_LINE_MAX + 2 == n ? "550 " : "550-", 4);
	}
	uint64_t w0 = smtp_client_scan_work(c);
	for (size_t i = 0; i < n; i += 7)
		smtp_client_feed(c, b + i, n - i < 7 ? n - i : 7);
	assert_true(smtp_client_scan_work(c) - w0 <= 8 * (uint64_t)n);
	smtp_client_feed(c, "554 no\r\n", 8);
	struct smtp_result r;
	assert_int_equal(smtp_client_take_result(c, &r), 1);
	assert_int_equal(r.stage, SMTP_STAGE_RCPT);
	assert_int_equal(r.code, 550);
	smtp_client_free(c);
	free(b);
}

/*
 * A session as the engine runs it: the clock moves, the timer is re-armed
 * from smtp_client_deadline() after every call, and fires when due.
 */
struct sim {
	struct smtp_client *c;
	uint64_t now, due;	/* due: the armed timer (0: none) */
	uint64_t fired_at;	/* when it last fired */
	int fired;
};

static void
sim_rearm(struct sim *m)
{
	uint64_t d = smtp_client_deadline(m->c);

	m->due = d ? m->now + d : 0;
}

/* sim_advance - move the clock to t, firing the timer on the way. */
static void
sim_advance(struct sim *m, uint64_t t)
{
	if (m->due != 0 && m->due <= t) {
		m->now = m->due;
		smtp_client_set_now(m->c, m->now);
		smtp_client_timeout(m->c);
		m->fired_at = m->now;
		m->fired++;
		sim_rearm(m);
	}
	m->now = t;
	smtp_client_set_now(m->c, m->now);
}

static void
sim_feed(struct sim *m, const char *p, size_t n)
{
	smtp_client_feed(m->c, p, n);
	sim_rearm(m);
}

static void
sim_send_all(struct sim *m)
{
	struct iovec iov[3];
	int n;

	while ((n = smtp_client_output(m->c, iov)) > 0) {
		size_t len = 0;

		for (int i = 0; i < n; i++)
			len += iov[i].iov_len;
		smtp_client_sent(m->c, len);
	}
	sim_rearm(m);
}

/*
 * A server dripping its RCPT reply one byte every 900 ms (each byte inside
 * the 1004 ms RCPT time-out, as a per-read time-out would measure it): the
 * reply times out 1004 ms after its wait began, not 14 bytes later.
 */
static void
test_drip_deadline(void **state)
{
	static const char rcpt_reply[] = "250 2.1.5 Ok\r\n";
	struct sim m = { .now = 50000 };
	struct smtp_result r;
	size_t i;

	m.c = smtp_client_new("client.test", &tmo);
	smtp_client_set_now(m.c, m.now);
	smtp_client_init(m.c);
	sim_feed(&m, "220 hi\r\n", 8);
	sim_send_all(&m);
	sim_feed(&m, "250 mx\r\n", 8);
	assert_int_equal(smtp_client_state(m.c), SMTP_STATE_IDLE);
	smtp_client_start(m.c, &msgs[0]);
	sim_send_all(&m);
	sim_advance(&m, m.now + 100);
	sim_feed(&m, "250 ok\r\n", 8);
	sim_send_all(&m);		/* RCPT: its wait begins now */
	uint64_t rcpt_at = m.now;

	for (i = 0; i < sizeof rcpt_reply - 1 && m.fired == 0; i++) {
		sim_advance(&m, m.now + 900);
		if (m.fired == 0)
			sim_feed(&m, rcpt_reply + i, 1);
	}
	assert_int_equal(m.fired, 1);
	assert_int_equal(i, 2);		/* one byte went in, the second came too late */
	assert_int_equal(m.fired_at, rcpt_at + 1004);
	assert_int_equal(smtp_client_take_result(m.c, &r), 1);
	assert_int_equal(r.status, SMTP_TEMP);
	assert_int_equal(r.cause, SMTP_CAUSE_TIMEOUT);
	assert_int_equal(r.stage, SMTP_STAGE_RCPT);
	assert_string_equal(r.text, "timeout waiting for reply to RCPT");
	assert_int_equal(smtp_client_state(m.c), SMTP_STATE_CLOSED);
	smtp_client_free(m.c);

	/* the time-out fired at exactly rcpt_at + 1004 */
	m = (struct sim){ .now = 50000 };
	m.c = smtp_client_new("client.test", &tmo);
	smtp_client_set_now(m.c, m.now);
	smtp_client_init(m.c);
	sim_feed(&m, "220 hi\r\n", 8);
	sim_send_all(&m);
	sim_feed(&m, "250 mx\r\n", 8);
	smtp_client_start(m.c, &msgs[0]);
	sim_send_all(&m);
	sim_feed(&m, "250 ok\r\n", 8);
	sim_send_all(&m);
	rcpt_at = m.now;
	for (i = 0; i < 3; i++) {
		sim_advance(&m, m.now + 300);
		sim_feed(&m, rcpt_reply + i, 1);
		assert_int_equal(m.due, rcpt_at + 1004);
	}
	sim_advance(&m, rcpt_at + 2000);
	assert_int_equal(m.fired, 1);
	assert_int_equal(m.fired_at, rcpt_at + 1004);
	assert_int_equal(smtp_client_take_result(m.c, &r), 1);
	assert_int_equal(r.stage, SMTP_STAGE_RCPT);
	smtp_client_free(m.c);
}

/*
 * A long body sent in small pieces, each send completing 900 ms after the
 * last (inside the 1006 ms block time-out), takes many times the block
 * time-out in all and does not time out; a send that makes no progress
 * for the block time-out does.
 */
static void
test_slow_body(void **state)
{
	struct sim m = { .now = 7000 };
	struct smtp_result r;
	struct iovec iov[3];
	size_t total = 0;
	int n, sends = 0;

	m.c = smtp_client_new("client.test", &tmo);
	smtp_client_set_now(m.c, m.now);
	smtp_client_init(m.c);
	sim_feed(&m, "220 hi\r\n", 8);
	sim_send_all(&m);
	sim_feed(&m, "250-mx\r\n250 PIPELINING\r\n", 24);
	smtp_client_start(m.c, &msgs[2]);
	sim_send_all(&m);
	sim_feed(&m, "250 a\r\n250 b\r\n354 c\r\n", 21);
	while ((n = smtp_client_output(m.c, iov)) > 0) {
		size_t len = 0;

		for (int i = 0; i < n; i++)
			len += iov[i].iov_len;
		sim_rearm(&m);
		sim_advance(&m, m.now + 900);
		assert_int_equal(m.fired, 0);
		smtp_client_sent(m.c, len < 100 ? len : 100);
		total += len < 100 ? len : 100;
		sends++;
		sim_rearm(&m);
	}
	assert_int_equal(total, 1505);	/* 1500 x's, CRLF, ".\r\n" */
	assert_true(sends >= 15);	/* about 13.5 s against a 1 s block time-out */
	assert_int_equal(m.fired, 0);
	assert_int_equal(smtp_client_deadline(m.c), 1007);
	sim_feed(&m, "250 ok\r\n", 8);
	assert_int_equal(smtp_client_take_result(m.c, &r), 1);
	assert_int_equal(r.status, SMTP_OK);
	smtp_client_free(m.c);

	/* a send that does not complete: block time-out after the hand-out */
	m = (struct sim){ .now = 7000 };
	m.c = smtp_client_new("client.test", &tmo);
	smtp_client_set_now(m.c, m.now);
	smtp_client_init(m.c);
	sim_feed(&m, "220 hi\r\n", 8);
	sim_send_all(&m);
	sim_feed(&m, "250-mx\r\n250 PIPELINING\r\n", 24);
	smtp_client_start(m.c, &msgs[2]);
	sim_send_all(&m);
	sim_feed(&m, "250 a\r\n250 b\r\n354 c\r\n", 21);
	sim_advance(&m, m.now + 500);
	assert_int_equal(smtp_client_output(m.c, iov), 1);
	sim_rearm(&m);
	assert_int_equal(m.due, 7500 + 1006);
	/* bytes from the server meanwhile do not count as progress */
	sim_advance(&m, 8000);
	sim_feed(&m, "2", 1);
	assert_int_equal(m.due, 7500 + 1006);
	sim_advance(&m, 9000);
	assert_int_equal(m.fired, 1);
	assert_int_equal(m.fired_at, 7500 + 1006);
	assert_int_equal(smtp_client_take_result(m.c, &r), 1);
	assert_string_equal(r.text, "timeout sending message body");
	assert_int_equal(r.stage, SMTP_STAGE_DOT);
	smtp_client_free(m.c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipe_reuse),
		cmocka_unit_test(test_nopipe_reuse),
		cmocka_unit_test(test_one_read),
		cmocka_unit_test(test_helo),
		cmocka_unit_test(test_greeting),
		cmocka_unit_test(test_ehlo_fail),
		cmocka_unit_test(test_pipe_failures),
		cmocka_unit_test(test_nopipe_failures),
		cmocka_unit_test(test_stages),
		cmocka_unit_test(test_dot),
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_8bit),
		cmocka_unit_test(test_smtputf8),
		cmocka_unit_test(test_421),
		cmocka_unit_test(test_protocol),
		cmocka_unit_test(test_disconnect),
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_clock),
		cmocka_unit_test(test_drip_deadline),
		cmocka_unit_test(test_slow_body),
		cmocka_unit_test(test_ext),
		cmocka_unit_test(test_partial_iov),
		cmocka_unit_test(test_early_reply),
		cmocka_unit_test(test_reinit),
		cmocka_unit_test(test_long_text),
		cmocka_unit_test(test_drip_linear),
		cmocka_unit_test(test_starttls),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_bdat),
		cmocka_unit_test(test_bdat_chunks),
		cmocka_unit_test(test_bdat_zero_copy),
		cmocka_unit_test(test_bdat_early_reply),
		cmocka_unit_test(test_bdat_pipeline_early),
		cmocka_unit_test(test_bdat_pipeline_partial),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
