/*
 * fuzz_smtp_reply.c - libFuzzer target for the SMTP reply parser.
 *
 * Takes replies one after another from the input, as the client does, and
 * checks what the parser promises: it consumes whole replies only, the
 * result is bounded and clean, a prefix of a reply never parses as a
 * reply, the one-line form has no CR/LF, and the incremental scanner fed
 * the same bytes one at a time reaches the same verdict with linear work.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude \
 *     tests/fuzz/fuzz_smtp_reply.c engine/smtp_reply.c engine/util.c -o /tmp/fz
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* scan_bytewise - smtp_reply_scan() over p[0..n), one more byte per call. */
static int
scan_bytewise(const char *p, size_t n, struct smtp_reply_cursor *k)
{
	int rc = 0;

	memset(k, 0, sizeof *k);
	for (size_t i = 1; i <= n && rc == 0; i++)
		rc = smtp_reply_scan(p, i, k);
	if (k->work > 5 * n + 5)
		abort();
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct smtp_reply r, r2;
	const char *p = (const char *)data;
	size_t pos = 0;

	while (pos < size) {
		size_t used = 0, used2 = 0;
		int rc = smtp_reply_parse(p + pos, size - pos, &r, &used);
		struct smtp_reply_cursor k;
		int rc2 = scan_bytewise(p + pos, size - pos, &k);
		char line[512], tiny[7];

		if (rc2 != rc || (rc == 1 && k.end != used))
			abort();
		if (rc <= 0) {
			if (used != 0)
				abort();
			break;
		}
		if (used == 0 || used > size - pos)
			abort();
		if (r.code < 200 || r.code > 599 || r.nlines < 1 || r.nlines > SMTP_REPLY_LINES_MAX)
			abort();
		if (strlen(r.text) >= sizeof r.text || strlen(r.enh) >= sizeof r.enh)
			abort();
		for (const char *t = r.text; *t; t++)
			if (*t != '\n' && ((unsigned char)*t < 0x20 || *t == 0x7f))
				abort();
		/* exactly the reply's bytes parse the same; one fewer needs more */
		if (smtp_reply_parse(p + pos, used, &r2, &used2) != 1 || used2 != used ||
		    r2.code != r.code || strcmp(r2.text, r.text) != 0)
			abort();
		if (smtp_reply_parse(p + pos, used - 1, &r2, &used2) != 0)
			abort();
		smtp_reply_first_line(&r, line, sizeof line);
		if (strlen(line) > 511 || strpbrk(line, "\r\n") != NULL)
			abort();
		smtp_reply_first_line(&r, tiny, sizeof tiny);
		if (strlen(tiny) > 6)
			abort();
		pos += used;
	}
	return 0;
}
