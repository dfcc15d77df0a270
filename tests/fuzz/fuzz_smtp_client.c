/*
 * fuzz_smtp_client.c - libFuzzer target for the pure SMTP client.
 *
 * The input is a little program: each byte picks an action - feed the
 * next bytes (arbitrary server output, split where the input says), feed
 * a canned reply (so the fuzzer reaches deep states fast), complete all
 * or part of the pending send, start a message or QUIT when idle, a
 * time-out, the clock moving on, a disconnect. BDAT is on: the short
 * 8-bit message goes in one round trip behind MAIL and RCPT, the other
 * (over 30 bytes with its prefix) in 8-byte chunks after RCPT, once the
 * canned EHLO with CHUNKING was fed. The client must never
 * crash, never hand out more than 3 iovecs or a second send, never ask
 * for a deadline beyond its longest time-out, its parser's work must stay
 * linear in the bytes fed, and every result text must be one bounded line.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude \
 *     tests/fuzz/fuzz_smtp_client.c engine/smtp_client.c engine/smtp_reply.c \
 *     engine/msg.c engine/util.c -o /tmp/fzc
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "smtp_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const canned[] = {
	"220 mx ESMTP\r\n",
	"250-mx\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
	"250 2.0.0 ok\r\n",
	"354 go\r\n",
	"550 5.1.1 no\r\n",
	"421 4.7.0 bye\r\n",
	"451 4.3.0 later\r\n",
	"221 bye\r\n",
	"502 no\r\n",
	"250-mx\r\n250 SIZE 10\r\n",
	"250-mx\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n",
	"554 5.5.1 no valid recipients\r\n",
};

static void
check_result(const struct smtp_result *r)
{
	if (strlen(r->text) >= sizeof r->text || strpbrk(r->text, "\r\n") != NULL)
		abort();
	if (strlen(r->enh) >= sizeof r->enh)
		abort();
	if (r->status < SMTP_OK || r->status > SMTP_PERM)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct smtp_timeouts t = { 1, 2, 3, 4, 5, 6, 7, 8, .transaction = 6 };
	static struct msg_body *bodies[2];
	struct smtp_client *c;
	struct smtp_msg m[2];
	struct iovec iov[3];
	size_t pos = 0, handed = 0, fed = 0;
	uint64_t now = 1000;
	int inflight = 0;
	struct smtp_result r;

	if (bodies[0] == NULL) {
		bodies[0] = msg_body_new("Subject: x\n\n.\nbody\n", 19);
		bodies[1] = msg_body_new("caf\xc3\xa9", 5);
	}
	memset(m, 0, sizeof m);
	m[0].from = "a@x.test";
	m[0].to = "b@y.test";
	m[0].prefix = "X-Id: 1\r\n";
	m[0].prefix_len = 9;
	m[0].body = bodies[0];
	m[1].from = "";
	m[1].to = "\xc3\xbc@y.test";
	m[1].body = bodies[1];

	c = smtp_client_new("client.test", &t);
	smtp_client_set_bdat(c, 16, 8);
	smtp_client_set_bdat_pipeline(c, 30);
	smtp_client_set_now(c, now);
	while (pos < size) {
		uint8_t op = data[pos++];
		size_t n;

		switch (op % 10) {
		case 0: case 1: case 2:	/* raw bytes, a chunk of them */
			n = (size_t)(op / 10) + 1;
			if (n > size - pos)
				n = size - pos;
			smtp_client_feed(c, (const char *)data + pos, n);
			fed += n;
			pos += n;
			break;
		case 3: case 4:		/* a canned reply */
			n = (op / 10) % (sizeof canned / sizeof canned[0]);
			smtp_client_feed(c, canned[n], strlen(canned[n]));
			fed += strlen(canned[n]);
			break;
		case 5: case 6: {	/* complete the send, whole or part */
			if (!inflight) {
				int k = smtp_client_output(c, iov);

				if (k < 0 || k > 3)
					abort();
				handed = 0;
				for (int i = 0; i < k; i++)
					handed += iov[i].iov_len;
				inflight = k > 0;
				if (!inflight)
					break;
			}
			if (smtp_client_output(c, iov) != 0)
				abort();	/* one send in flight */
			n = op % 10 == 5 ? handed : (size_t)(op / 10) % (handed + 1);
			smtp_client_sent(c, n);
			inflight = 0;
			break;
		}
		case 7:			/* the session asks for a message or QUIT */
			if (smtp_client_state(c) == SMTP_STATE_IDLE) {
				if (op >= 200)
					smtp_client_quit(c);
				else
					smtp_client_start(c, &m[op & 1]);
			}
			break;
		case 8:
			if (smtp_client_deadline(c) > 8)
				abort();
			if (op >= 128) {	/* time passes */
				now += op % 16;
				smtp_client_set_now(c, now);
			} else {
				smtp_client_timeout(c);
			}
			break;
		case 9:
			if (op >= 128)
				smtp_client_disconnected(c);
			else if (smtp_client_take_result(c, &r))
				check_result(&r);
			break;
		}
		if (smtp_client_state(c) == SMTP_STATE_CLOSED && smtp_client_deadline(c) != 0)
			abort();
		if (smtp_client_scan_work(c) > 8 * (uint64_t)fed + 16)
			abort();
	}
	if (smtp_client_take_result(c, &r))
		check_result(&r);
	if (smtp_client_session_error(c, &r))
		check_result(&r);
	smtp_client_free(c);
	return 0;
}
