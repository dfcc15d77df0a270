/*
 * test_smtp_server.c - tables for the SMTP server protocol core: commands
 * and their sequence, pipelining, dot handling, size and line limits,
 * STARTTLS and QUIT input dropping, AUTH PLAIN/LOGIN (the host accepts
 * u/p), hostile input. Every script is fed
 * whole, one byte at a time and split in two at every point, with the host
 * keeping the unused tail as a real one does; the transcript (events and
 * the codes answered) and the stored messages must be the same each time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "smtp_server.h"

struct tcase {
	const char *name;
	const char *in;
	const char *want;	/* transcript */
	const char *bodies;	/* stored messages, each followed by '|' */
	uint64_t max_size;	/* 0: 1000 */
	int whole_only;		/* STARTTLS: what follows depends on the host */
	int auth;		/* 1: AUTH on (TLS only), 2: also without TLS */
	int chunking;		/* offer and accept BDAT */
};

static const struct tcase cases[] = {
	{ "one transaction",
	  "EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n"
	  "Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
	  "helo:250 mail:250 rcpt:250 data:354 dot:250 quit:221 ",
	  "Subject: hi\r\n\r\nbody\r\n|", 0, 0, 0, 0 },
	{ "null sender, two messages on one session, HELO",
	  "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<x@y>\r\nDATA\r\na\r\n.\r\n"
	  "MAIL FROM:<> SIZE=10\r\nRCPT TO:<z@y>\r\nDATA\r\nb\r\n.\r\n",
	  "helo:250 mail:250 rcpt:250 data:354 dot:250 mail:250 rcpt:250 data:354 dot:250 ",
	  "a\r\n|b\r\n|", 0, 0, 0, 0 },
	{ "sequence errors",
	  "MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\nEHLO c\r\nRCPT TO:<x@y>\r\nDATA\r\n"
	  "MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nDATA\r\n",
	  "503 503 503 helo:250 503 503 mail:250 503 554 ", "", 0, 0, 0, 0 },
	{ "syntax errors",
	  "EHLO\r\nEHLO c\r\nMAIL FROM:\r\nMAIL TO:<a@b>\r\nMAIL FROM:<a b>\r\nMAIL FROM:<a@b\r\n"
	  "MAIL FROM:<a@b>\r\nRCPT TO:<>\r\nRCPT FROM:<x@y>\r\nRCPT TO:<x@y>\r\nDATA now\r\n"
	  "STARTTLS please\r\nFOO\r\nBDAT 10\r\nAUTH PLAIN\r\nnoop\r\nVRFY x\r\nHELP\r\n",
	  "501 helo:250 501 501 501 501 mail:250 501 501 rcpt:250 501 501 502 502 503 250 252 214 ",
	  "", 0, 0, 0, 0 },
	{ "the host refuses a recipient: no valid one, no DATA",
	  "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<reject@y>\r\nDATA\r\nRCPT TO:<ok@y>\r\nDATA\r\nm\r\n.\r\n",
	  "helo:250 mail:250 rcpt:550 554 rcpt:250 data:354 dot:250 ", "m\r\n|", 0, 0, 0, 0 },
	{ "too many recipients (max 3)",
	  "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<1@y>\r\nRCPT TO:<2@y>\r\nRCPT TO:<3@y>\r\nRCPT TO:<4@y>\r\n",
	  "helo:250 mail:250 rcpt:250 rcpt:250 rcpt:250 452 ", "", 0, 0, 0, 0 },
	{ "SIZE= at MAIL",
	  "EHLO c\r\nMAIL FROM:<a@b> SIZE=1001\r\nMAIL FROM:<a@b> BODY=8BITMIME SIZE=x\r\n"
	  "MAIL FROM:<a@b> SIZE=1000\r\n",
	  "helo:250 552 501 mail:250 ", "", 0, 0, 0, 0 },
	{ "dot-unstuffing",
	  "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n"
	  "..lead\r\n. space\r\n...\r\nmid.dot\r\n.\rX\r\nlast\r\n.\r\nNOOP\r\n",
	  "helo:250 mail:250 rcpt:250 data:354 dot:250 250 ",
	  ".lead\r\n space\r\n..\r\nmid.dot\r\n\rX\r\nlast\r\n|", 0, 0, 0, 0 },
	{ "bare LF line ends, and an empty message",
	  "EHLO c\nMAIL FROM:<a@b>\nRCPT TO:<x@y>\nDATA\na\n.\nMAIL FROM:<a@b>\nRCPT TO:<x@y>\nDATA\n.\n",
	  "helo:250 mail:250 rcpt:250 data:354 dot:250 mail:250 rcpt:250 data:354 dot:250 ",
	  "a\n||", 0, 0, 0, 0 },
	{ "a message over max_size (20): 552 after the dot, the session goes on",
	  "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n0123456789\r\n0123456789\r\n.\r\n"
	  "MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\nsmall\r\n.\r\n",
	  "helo:250 mail:250 rcpt:250 data:354 dot:552 mail:250 rcpt:250 data:354 dot:250 ",
	  "|small\r\n|", 20, 0, 0, 0 },
	{ "overlong command lines (max 64)",
	  "EHLO c\r\nNOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"
	  "NOOP\r\n",
	  "helo:250 500 250 ", "", 0, 0, 0, 0 },
	{ "RSET forgets the transaction",
	  "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nRSET\r\nDATA\r\nRCPT TO:<x@y>\r\n",
	  "helo:250 mail:250 rcpt:250 rset:250 503 503 ", "", 0, 0, 0, 0 },
	{ "EHLO starts over",
	  "EHLO c\r\nMAIL FROM:<a@b>\r\nEHLO d\r\nRCPT TO:<x@y>\r\n",
	  "helo:250 mail:250 helo:250 503 ", "", 0, 0, 0, 0 },
	{ "a source route is dropped, a bare address tolerated",
	  "EHLO c\r\nMAIL FROM:a@b\r\nRCPT TO:<@r1,@r2:x@y>\r\nRCPT TO:<@r1>\r\n",
	  "helo:250 mail:250 rcpt:250 501 ", "", 0, 0, 0, 0 },
	{ "hostile bytes in commands",
	  "EHLO c\x01\x7f\r\nNO\0OP\r\nMAIL FROM:<a\x01@b>\r\n\r\n\xff\xfe\r\n",
	  "helo:250 502 501 502 502 ", "", 0, 0, 0, 0 },
	{ "QUIT: whatever follows is dropped",
	  "EHLO c\r\nQUIT\r\nMAIL FROM:<a@b>\r\nNOOP\r\n",
	  "helo:250 quit:221 ", "", 0, 0, 0, 0 },
	{ "STARTTLS: input pipelined after it is dropped",
	  "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@b>\r\n",
	  "helo:250 starttls:220 ", "", 0, 1, 0, 0 },
	/* AUTH: the host takes u/p ("\0u\0p" = AHUAcA==, "u" = dQ==, "p" = cA==) */
	{ "AUTH PLAIN with an initial response; once only; kept over RSET and EHLO",
	  "EHLO c\r\nAUTH PLAIN AHUAcA==\r\nAUTH PLAIN AHUAcA==\r\nMAIL FROM:<a@b>\r\nRSET\r\n"
	  "EHLO c\r\nAUTH LOGIN\r\n",
	  "helo:250 auth:235 503 mail:250 rset:250 helo:250 503 ", "", 0, 0, 2, 0 },
	{ "AUTH PLAIN after a 334; authzid empty or the same user",
	  "EHLO c\r\nauth plain\r\nAHUAcA==\r\n",
	  "helo:250 334 auth:235 ", "", 0, 0, 2, 0 },
	{ "AUTH PLAIN: an authzid equal to the user is fine",
	  "EHLO c\r\nAUTH PLAIN dQB1AHA=\r\n", "helo:250 auth:235 ", "", 0, 0, 2, 0 },
	{ "AUTH LOGIN, then a message",
	  "EHLO c\r\nAUTH LOGIN\r\ndQ==\r\ncA==\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n"
	  "m\r\n.\r\n",
	  "helo:250 334 334 auth:235 mail:250 rcpt:250 data:354 dot:250 ", "m\r\n|", 0, 0, 2, 0 },
	{ "AUTH LOGIN with the user as initial response",
	  "EHLO c\r\nAUTH LOGIN dQ==\r\ncA==\r\n", "helo:250 334 auth:235 ", "", 0, 0, 2, 0 },
	{ "AUTH: a wrong password (535 from the host), then the right one",
	  "EHLO c\r\nAUTH PLAIN AHUAYmFk\r\nAUTH LOGIN\r\ndQ==\r\nYmFk\r\nAUTH PLAIN AHUAcA==\r\n",
	  "helo:250 auth:535 334 334 auth:535 auth:235 ", "", 0, 0, 2, 0 },
	{ "AUTH sequence: before EHLO, after HELO, in a transaction",
	  "AUTH PLAIN AHUAcA==\r\nHELO c\r\nAUTH PLAIN AHUAcA==\r\nEHLO c\r\nMAIL FROM:<a@b>\r\n"
	  "AUTH PLAIN AHUAcA==\r\n",
	  "503 helo:250 503 helo:250 mail:250 503 ", "", 0, 0, 2, 0 },
	{ "AUTH syntax: no or unknown mechanism, extra words, cancel",
	  "EHLO c\r\nAUTH\r\nAUTH CRAM-MD5\r\nAUTH PLAIN a b\r\nAUTH LOGIN\r\n*\r\n"
	  "AUTH PLAIN\r\n*\r\nNOOP\r\n",
	  "helo:250 501 504 501 334 501 334 501 250 ", "", 0, 0, 2, 0 },
	{ "AUTH: undecodable or malformed responses (501), another authzid (535)",
	  "EHLO c\r\nAUTH PLAIN !!!!\r\nAUTH PLAIN AHUAcA=\r\nAUTH PLAIN AH=AcA==\r\n"
	  "AUTH PLAIN =\r\nAUTH PLAIN dQ==\r\nAUTH PLAIN AHUA\r\nAUTH PLAIN AABw\r\n"
	  "AUTH PLAIN AHUBAHA=\r\nAUTH PLAIN eAB1AHA=\r\nAUTH LOGIN\r\ndQ==\r\ndQBw\r\n"
	  "AUTH LOGIN\r\n=\r\n",
	  "helo:250 501 501 501 501 501 501 501 501 535 334 334 501 334 501 ", "", 0, 0, 2, 0 },
	{ "AUTH: an overlong response ends the exchange (max 64)",
	  "EHLO c\r\nAUTH LOGIN\r\n"
	  "dQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQdQ==\r\ncA==\r\n",
	  "helo:250 334 500 502 ", "", 0, 0, 2, 0 },
	{ "AUTH without TLS when TLS is required: 538",
	  "EHLO c\r\nAUTH PLAIN AHUAcA==\r\nNOOP\r\n", "helo:250 538 250 ", "", 0, 0, 1, 0 },
	/* BDAT (RFC 3030): raw chunks, nothing unstuffed, command words inside are data */
	{ "BDAT: chunks kept byte for byte, LAST ends the message",
	  "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nBDAT 8\r\n.a\r\nb\r\n."
	  "BDAT 11 LAST\r\n.\r\nc\nRSET\r\nNOOP\r\n"
	  "MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n..x\r\n.\r\n",
	  "helo:250 mail:250 rcpt:250 250 dot:250 250 mail:250 rcpt:250 data:354 dot:250 ",
	  ".a\r\nb\r\n..\r\nc\nRSET\r\n|.x\r\n|", 0, 0, 0, 1 },
	{ "BDAT sequence: refused chunks are read all the same; no DATA after BDAT; BDAT 0 LAST",
	  "EHLO c\r\nBDAT 6\r\nMAIL\r\nMAIL FROM:<a@b>\r\nBDAT 6 LAST\r\nQUIT\r\n"
	  "RCPT TO:<x@y>\r\nBDAT 3\r\nabcDATA\r\nBDAT 0 LAST\r\nNOOP\r\n",
	  "helo:250 503 mail:250 554 rcpt:250 250 503 dot:250 250 ", "abc|", 0, 0, 0, 1 },
	{ "BDAT syntax",
	  "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nBDAT\r\nBDAT x\r\nBDAT 5 FIRST\r\n"
	  "BDAT 99999999999999999999999\r\nBDAT -1\r\nBDAT 2 last\r\nokNOOP\r\n",
	  "helo:250 mail:250 rcpt:250 501 501 501 501 501 dot:250 250 ", "ok|", 0, 0, 0, 1 },
	{ "BDAT over max_size (20): 250 to the chunks, 552 at LAST, the session goes on",
	  "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nBDAT 15\r\n012345678901234"
	  "BDAT 10 LAST\r\n0123456789MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nBDAT 2 LAST\r\nok",
	  "helo:250 mail:250 rcpt:250 250 dot:552 mail:250 rcpt:250 dot:250 ", "|ok|", 20, 0, 0, 1 },
};

struct host {
	struct smtp_server s;
	char tr[4096];
	char bodies[4096];
};

static void
tr_add(struct host *h, const char *fmt, ...)
{
	size_t n = strlen(h->tr);
	va_list va;

	va_start(va, fmt);
	vsnprintf(h->tr + n, sizeof h->tr - n, fmt, va);
	va_end(va);
}

static void
handle(struct host *h, enum smtp_srv_event ev)
{
	struct smtp_server *s = &h->s;
	int code;

	assert_non_null(s->reply.data);
	assert_true(s->reply.len >= 5);
	assert_memory_equal(s->reply.data + s->reply.len - 2, "\r\n", 2);
	code = atoi(s->reply.data);
	if (ev == SMTP_SRV_REPLY) {
		tr_add(h, "%d ", code);
		return;
	}
	assert_int_equal(s->pending, ev);
	if (ev == SMTP_SRV_RCPT && strstr(s->rcpt, "reject") != NULL)
		code = 550;
	if (ev == SMTP_SRV_RCPT)
		assert_null(strpbrk(s->rcpt, "<> \r\n"));
	if (ev == SMTP_SRV_AUTH) {
		assert_non_null(s->auth_user);
		assert_non_null(s->auth_pass);
		assert_non_null(s->auth_mech);
		assert_false(s->authed);
		code = strcmp(s->auth_user, "u") == 0 && strcmp(s->auth_pass, "p") == 0 ? 235 : 535;
		assert_int_equal(atoi(s->reply.data), 535);	/* the usual reply */
	}
	if (ev == SMTP_SRV_DOT) {
		size_t n = strlen(h->bodies);
		assert_true(s->too_big || s->body.len == s->bytes);
		assert_true(n + s->body.len + 1 < sizeof h->bodies);
		if (s->body.len)
			memcpy(h->bodies + n, s->body.data, s->body.len);
		h->bodies[n + s->body.len] = '|';
		h->bodies[n + s->body.len + 1] = '\0';
	}
	tr_add(h, "%s:%d ", smtp_server_event_name(ev), code);
	smtp_server_done(s, code);
	assert_int_equal(s->pending, SMTP_SRV_NONE);
	if (ev == SMTP_SRV_AUTH) {
		assert_null(s->auth_pass);	/* wiped at once */
		assert_int_equal(s->authed, code == 235);
		if (code == 235)
			assert_string_equal(s->auth_user, "u");
		else
			assert_null(s->auth_user);
	}
}

/* run - feed in[0..n) in pieces of `step` bytes (0: whole) or split at `at`. */
static void
run(const struct tcase *c, size_t n, size_t step, size_t at, struct host *h)
{
	struct smtp_server_conf sc = { "mx.test", c->max_size ? c->max_size : 1000, 64, 3, 1, 1,
	    c->auth > 0, c->auth > 1, c->chunking };
	char pend[8192];
	size_t plen = 0, off = 0;

	memset(h, 0, sizeof *h);
	smtp_server_init(&h->s, &sc);
	while (off < n) {
		size_t k = step ? step : at ? (off < at ? at - off : n - off) : n - off;

		if (k > n - off)
			k = n - off;
		assert_true(plen + k <= sizeof pend);
		memcpy(pend + plen, c->in + off, k);
		plen += k;
		off += k;
		for (;;) {
			enum smtp_srv_event ev;
			size_t used = smtp_server_feed(&h->s, pend, plen, &ev);

			assert_true(used <= plen);
			memmove(pend, pend + used, plen - used);
			plen -= used;
			if (ev == SMTP_SRV_NONE)
				break;
			handle(h, ev);
		}
	}
	smtp_server_free(&h->s);
}

static size_t
case_len(const struct tcase *c)
{
	/* NUL inside a script: the "hostile bytes" one spells its length out. */
	if (strcmp(c->name, "hostile bytes in commands") == 0)
		return sizeof "EHLO c\x01\x7f\r\nNO\0OP\r\nMAIL FROM:<a\x01@b>\r\n\r\n\xff\xfe\r\n" - 1;
	return strlen(c->in);
}

static void
test_tables(void **state)
{
	struct host *h = malloc(sizeof *h);

	(void)state;
	assert_non_null(h);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct tcase *c = &cases[i];
		size_t n = case_len(c);

		run(c, n, 0, 0, h);
		if (strcmp(h->tr, c->want) != 0 || strcmp(h->bodies, c->bodies) != 0)
			fail_msg("%s (whole):\n got %s\nwant %s\n bodies %s", c->name, h->tr, c->want,
			    h->bodies);
		if (c->whole_only)
			continue;
		run(c, n, 1, 0, h);
		if (strcmp(h->tr, c->want) != 0 || strcmp(h->bodies, c->bodies) != 0)
			fail_msg("%s (bytewise):\n got %s\nwant %s", c->name, h->tr, c->want);
		for (size_t at = 1; at < n; at++) {
			run(c, n, 0, at, h);
			if (strcmp(h->tr, c->want) != 0 || strcmp(h->bodies, c->bodies) != 0)
				fail_msg("%s (split at %zu):\n got %s\nwant %s", c->name, at, h->tr,
				    c->want);
		}
	}
	free(h);
}

/* EHLO offers CHUNKING only when configured (the inbound listener does not) */
static void
test_chunking_ehlo(void **state)
{
	for (int on = 0; on <= 1; on++) {
		struct smtp_server_conf sc = { .hostname = "mx.test", .max_size = 1000,
		    .chunking = on };
		struct smtp_server s;
		enum smtp_srv_event ev;
		char *r;

		smtp_server_init(&s, &sc);
		assert_int_equal(smtp_server_feed(&s, "EHLO c\r\n", 8, &ev), 8);
		assert_int_equal(ev, SMTP_SRV_HELO);
		r = strndup(s.reply.data, s.reply.len);
		assert_int_equal(strstr(r, "\r\n250-CHUNKING\r\n") != NULL, on);
		free(r);
		smtp_server_done(&s, 250);
		smtp_server_free(&s);
	}
}

/* EHLO offers STARTTLS only when configured and not yet on; TLS then
 * restarts the session (RFC 3207: no HELO, no transaction kept). */
static void
test_starttls(void **state)
{
	struct smtp_server_conf sc = { "mx.test", 5000, 512, 10, 1, 0, 0, 0, 0 };
	struct smtp_server s;
	enum smtp_srv_event ev;
	const char *in = "EHLO c\r\nMAIL FROM:<a@b>\r\nSTARTTLS\r\n";
	size_t off = 0, n = strlen(in);

	(void)state;
	smtp_server_init(&s, &sc);
	off += smtp_server_feed(&s, in, n, &ev);
	assert_int_equal(ev, SMTP_SRV_HELO);
	assert_non_null(strstr(s.reply.data, "250-STARTTLS\r\n"));
	assert_non_null(strstr(s.reply.data, "250-SIZE 5000\r\n"));
	assert_non_null(strstr(s.reply.data, "250 SMTPUTF8\r\n"));
	smtp_server_done(&s, 250);
	off += smtp_server_feed(&s, in + off, n - off, &ev);
	assert_int_equal(ev, SMTP_SRV_MAIL);
	smtp_server_done(&s, 250);
	off += smtp_server_feed(&s, in + off, n - off, &ev);
	assert_int_equal(ev, SMTP_SRV_STARTTLS);
	assert_int_equal(off, n);
	smtp_server_done(&s, 220);
	assert_null(s.helo);
	assert_null(s.from);
	assert_int_equal(smtp_server_feed(&s, "NOOP\r\n", 6, &ev), 6);	/* dropped */
	assert_int_equal(ev, SMTP_SRV_NONE);
	smtp_server_tls_on(&s);
	assert_int_equal(smtp_server_feed(&s, "MAIL FROM:<a@b>\r\n", 17, &ev), 17);
	assert_int_equal(ev, SMTP_SRV_REPLY);	/* 503: HELO again first */
	assert_int_equal(atoi(s.reply.data), 503);
	assert_int_equal(smtp_server_feed(&s, "EHLO c\r\n", 8, &ev), 8);
	assert_int_equal(ev, SMTP_SRV_HELO);
	assert_null(strstr(s.reply.data, "STARTTLS"));
	smtp_server_done(&s, 250);
	assert_int_equal(smtp_server_feed(&s, "STARTTLS\r\n", 10, &ev), 10);
	assert_int_equal(atoi(s.reply.data), 554);	/* already on */
	smtp_server_free(&s);

	sc.starttls = 0;
	smtp_server_init(&s, &sc);
	smtp_server_feed(&s, "EHLO c\r\n", 8, &ev);
	assert_null(strstr(s.reply.data, "STARTTLS"));
	smtp_server_done(&s, 250);
	smtp_server_feed(&s, "STARTTLS\r\n", 10, &ev);
	assert_int_equal(ev, SMTP_SRV_REPLY);
	assert_int_equal(atoi(s.reply.data), 502);
	smtp_server_free(&s);
}

/* AUTH is offered and taken only over TLS (unless auth_clear); STARTTLS
 * forgets an identity proved in the clear; a decision holds the parser. */
static void
test_auth_tls(void **state)
{
	struct smtp_server_conf sc = { "mx.test", 5000, 512, 10, 1, 0, 1, 0, 0 };
	struct smtp_server s;
	enum smtp_srv_event ev;

	(void)state;
	smtp_server_init(&s, &sc);
	smtp_server_feed(&s, "EHLO c\r\n", 8, &ev);
	assert_int_equal(ev, SMTP_SRV_HELO);
	assert_null(strstr(s.reply.data, "AUTH"));
	smtp_server_done(&s, 250);
	smtp_server_feed(&s, "AUTH LOGIN\r\n", 12, &ev);
	assert_int_equal(atoi(s.reply.data), 538);
	smtp_server_feed(&s, "STARTTLS\r\n", 10, &ev);
	smtp_server_done(&s, 220);
	smtp_server_tls_on(&s);
	smtp_server_feed(&s, "EHLO c\r\n", 8, &ev);
	assert_non_null(strstr(s.reply.data, "250-AUTH PLAIN LOGIN\r\n"));
	smtp_server_done(&s, 250);
	/* a pending AUTH decision holds what follows */
	assert_int_equal(smtp_server_feed(&s, "AUTH PLAIN AHUAcA==\r\nNOOP\r\n", 27, &ev), 21);
	assert_int_equal(ev, SMTP_SRV_AUTH);
	assert_string_equal(s.auth_mech, "PLAIN");
	assert_string_equal(s.auth_user, "u");
	assert_string_equal(s.auth_pass, "p");
	assert_int_equal(smtp_server_feed(&s, "NOOP\r\n", 6, &ev), 0);
	smtp_server_done(&s, 235);
	assert_true(s.authed);
	assert_null(s.auth_pass);
	assert_null(s.auth_mech);
	smtp_server_free(&s);
	assert_null(s.auth_user);

	sc.auth_clear = 1;
	smtp_server_init(&s, &sc);
	smtp_server_feed(&s, "EHLO c\r\n", 8, &ev);
	assert_non_null(strstr(s.reply.data, "250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n"));
	smtp_server_done(&s, 250);
	smtp_server_feed(&s, "AUTH PLAIN AHUAcA==\r\n", 21, &ev);
	assert_int_equal(ev, SMTP_SRV_AUTH);
	smtp_server_done(&s, 235);
	assert_true(s.authed);
	smtp_server_feed(&s, "STARTTLS\r\n", 10, &ev);
	smtp_server_done(&s, 220);
	assert_false(s.authed);		/* RFC 3207: nothing from the clear is kept */
	assert_null(s.auth_user);
	smtp_server_tls_on(&s);
	smtp_server_free(&s);

	/* the engine's listener leaves AUTH off: refused as before */
	sc.auth = 0;
	smtp_server_init(&s, &sc);
	smtp_server_feed(&s, "EHLO c\r\n", 8, &ev);
	assert_null(strstr(s.reply.data, "AUTH"));
	smtp_server_done(&s, 250);
	smtp_server_feed(&s, "AUTH PLAIN AHUAcA==\r\n", 21, &ev);
	assert_int_equal(ev, SMTP_SRV_REPLY);
	assert_int_equal(atoi(s.reply.data), 503);
	smtp_server_free(&s);
}

/* A pending decision holds the parser; a partial line is left to the host;
 * an overlong partial line is refused once and its tail skipped. */
static void
test_pending_and_partial(void **state)
{
	struct smtp_server_conf sc = { "mx.test", 5000, 64, 10, 0, 1, 0, 0, 0 };
	struct smtp_server s;
	enum smtp_srv_event ev;
	char big[300];

	(void)state;
	smtp_server_init(&s, &sc);
	assert_int_equal(smtp_server_feed(&s, "EHLO c\r\nNOOP\r\n", 14, &ev), 8);
	assert_int_equal(ev, SMTP_SRV_HELO);
	assert_int_equal(smtp_server_feed(&s, "NOOP\r\n", 6, &ev), 0);	/* pending */
	assert_int_equal(ev, SMTP_SRV_NONE);
	smtp_server_done(&s, 250);
	assert_int_equal(smtp_server_feed(&s, "NOO", 3, &ev), 0);		/* partial */
	assert_int_equal(ev, SMTP_SRV_NONE);
	memset(big, 'x', sizeof big);
	assert_int_equal(smtp_server_feed(&s, big, sizeof big, &ev), sizeof big);
	assert_int_equal(ev, SMTP_SRV_REPLY);
	assert_int_equal(atoi(s.reply.data), 500);
	assert_int_equal(smtp_server_feed(&s, big, sizeof big, &ev), sizeof big);
	assert_int_equal(ev, SMTP_SRV_NONE);	/* still the same line */
	assert_int_equal(smtp_server_feed(&s, "xx\r\nNOOP\r\n", 10, &ev), 10);
	assert_int_equal(ev, SMTP_SRV_REPLY);
	assert_int_equal(atoi(s.reply.data), 250);
	/* DATA bytes are all used, whatever the line length */
	smtp_server_feed(&s, "MAIL FROM:<>\r\n", 14, &ev);
	smtp_server_done(&s, 250);
	smtp_server_feed(&s, "RCPT TO:<a@b>\r\n", 15, &ev);
	smtp_server_done(&s, 250);
	smtp_server_feed(&s, "DATA\r\n", 6, &ev);
	smtp_server_done(&s, 354);
	assert_int_equal(smtp_server_feed(&s, big, sizeof big, &ev), sizeof big);
	assert_int_equal(ev, SMTP_SRV_NONE);
	assert_int_equal(s.bytes, sizeof big);
	assert_int_equal(smtp_server_feed(&s, "\r\n.\r\nNOOP\r\n", 11, &ev), 5);
	assert_int_equal(ev, SMTP_SRV_DOT);
	assert_int_equal(s.body.len, sizeof big + 2);
	assert_int_equal(s.nrcpt, 1);
	assert_string_equal(s.from, "");
	smtp_server_done(&s, 250);
	assert_null(s.from);
	assert_int_equal(s.body.len, 0);
	smtp_server_free(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tables),
		cmocka_unit_test(test_starttls),
		cmocka_unit_test(test_pending_and_partial),
		cmocka_unit_test(test_auth_tls),
		cmocka_unit_test(test_chunking_ehlo),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
