/*
 * fuzz_smtp_server.c - libFuzzer target for the pure SMTP server core.
 *
 * The first byte sets the host's policy (which decisions it refuses) and
 * the limits (bit 0 also: AUTH without TLS; AUTH takes any password for
 * user "u"); the rest is client input, fed once whole and once in pieces
 * whose sizes come from a generator seeded by the input, the host keeping
 * the unused tail as a real one does. The core must never crash, never use
 * more than it was given, never stop on an event without using a byte,
 * always leave a CRLF-terminated reply that starts with a code, keep a
 * body no longer than max_size (and equal to the byte count below it), and
 * -- unless STARTTLS made the rest depend on the host -- produce the same
 * transcript however the input was split.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude \
 *     tests/fuzz/fuzz_smtp_server.c engine/smtp_server.c engine/util.c -o /tmp/fzs
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	char tr[8192];
	size_t trlen;
	int tls;	/* STARTTLS was accepted */
};

static void
tr_add(struct run *r, int ev, int code)
{
	if (r->trlen + 8 < sizeof r->tr)
		r->trlen += (size_t)snprintf(r->tr + r->trlen, sizeof r->tr - r->trlen, "%d:%d ",
		    ev, code);
}

static void
run(const uint8_t *p, size_t n, uint8_t policy, uint64_t seed, struct run *r)
{
	struct smtp_server_conf sc = { "mx.test", (policy & 3) ? 64u << (policy & 3) : 1u << 20,
	    (policy & 4) ? 32 : 1000, (policy & 8) ? 2 : 100, 1, 1, 1, policy & 1,
	    (policy & 2) != 0 };
	struct smtp_server s;
	char *pend = malloc(n + 1);
	size_t plen = 0, off = 0;

	if (pend == NULL)
		abort();
	memset(r, 0, sizeof *r);
	smtp_server_init(&s, &sc);
	while (off < n) {
		size_t k = n - off;

		if (seed) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			k = 1 + seed % 17;
			if (k > n - off)
				k = n - off;
		}
		memcpy(pend + plen, p + off, k);
		plen += k;
		off += k;
		for (;;) {
			enum smtp_srv_event ev;
			size_t used = smtp_server_feed(&s, pend, plen, &ev);
			int code;

			if (used > plen)
				abort();
			memmove(pend, pend + used, plen - used);
			plen -= used;
			if (ev == SMTP_SRV_NONE)
				break;
			if (used == 0)
				abort();	/* an event must use input */
			if (s.reply.len < 5 || s.reply.data[s.reply.len - 1] != '\n' ||
			    s.reply.data[s.reply.len - 2] != '\r' || s.reply.data[0] < '2' ||
			    s.reply.data[0] > '5')
				abort();
			code = atoi(s.reply.data);
			if (ev == SMTP_SRV_REPLY) {
				tr_add(r, ev, code);
				continue;
			}
			if (s.pending != ev)
				abort();
			if ((ev == SMTP_SRV_RCPT && (policy & 0x10)) ||
			    (ev == SMTP_SRV_MAIL && (policy & 0x20) && s.from[0] == '\0') ||
			    (ev == SMTP_SRV_DATA && (policy & 0x40)))
				code = 451;
			if (ev == SMTP_SRV_DOT) {
				if (s.body.len > sc.max_size && sc.max_size)
					abort();
				if (!s.too_big && s.body.len != s.bytes)
					abort();
			}
			if (ev == SMTP_SRV_STARTTLS && (policy & 0x80))
				code = 454;
			if (ev == SMTP_SRV_AUTH) {
				if (s.auth_user == NULL || s.auth_pass == NULL ||
				    strlen(s.auth_user) > SMTP_SERVER_AUTH_MAX ||
				    strlen(s.auth_pass) > SMTP_SERVER_AUTH_MAX)
					abort();
				code = strcmp(s.auth_user, "u") == 0 ? 235 : 535;
			}
			tr_add(r, ev, code);
			smtp_server_done(&s, code);
			if (ev == SMTP_SRV_STARTTLS && code == 220) {
				r->tls = 1;
				smtp_server_tls_on(&s);
			}
		}
	}
	smtp_server_free(&s);
	free(pend);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run a, b;
	uint64_t seed = 0x9e3779b97f4a7c15ull;

	if (size < 1 || size > 65536)
		return 0;
	for (size_t i = 0; i < size && i < 8; i++)
		seed = seed * 31 + data[i];
	run(data + 1, size - 1, data[0], 0, &a);
	run(data + 1, size - 1, data[0], seed | 1, &b);
	if (!a.tls && !b.tls && (a.trlen != b.trlen || memcmp(a.tr, b.tr, a.trlen) != 0))
		abort();
	return 0;
}
