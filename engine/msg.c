/*
 * msg.c - the message body, prepared once for the wire and shared.
 *
 * Owns: msg_body_new(), msg_body_ref(), msg_body_unref(), msg_unstuff().
 *
 * msg_body_new() turns raw RFC 5322 bytes into what follows "354" on the
 * wire, in one pass that is run twice (count, then write) so the result
 * takes exactly one allocation together with its struct:
 *   - CRLF, bare LF and bare CR all become CRLF;
 *   - a final CRLF is added when the last line lacks one;
 *   - a line starting with '.' gets another '.' (RFC 5321 4.5.2);
 *   - ".\r\n" is appended.
 * size is the normalised length before stuffing (what RFC 1870 SIZE=
 * declares); eightbit is set if any byte is >= 0x80 (BODY=8BITMIME).
 * An empty message becomes just ".\r\n" (size 0): the CRLF that ends the
 * DATA command, or the prefix, supplies the line end before the dot.
 *
 * Invariants: data[len-3..len) == ".\r\n"; every line in data ends in
 * CRLF; no line in data but the last is ".". refs counts owners; the body
 * is freed when it drops to zero. Not thread-safe (one loop per thread).
 */
#include "msg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/*
 * normalise - write (if out != NULL) the stuffed, CRLF form of raw and
 * return its length without the terminator; *size gets the unstuffed
 * length and *eightbit whether a byte >= 0x80 was seen.
 */
static size_t
normalise(const char *raw, size_t len, char *out, size_t *size, int *eightbit)
{
	size_t o = 0, sz = 0;
	int bol = 1, hi = 0;

#define PUT(ch) do { if (out != NULL) out[o] = (ch); o++; } while (0)
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)raw[i];

		if (ch == '\r' || ch == '\n') {
			/* CRLF, bare CR, bare LF: one line end each. */
			if (ch == '\r' && i + 1 < len && raw[i + 1] == '\n')
				i++;
			PUT('\r');
			PUT('\n');
			sz += 2;
			bol = 1;
			continue;
		}
		if (bol && ch == '.')
			PUT('.');
		PUT((char)ch);
		sz++;
		hi |= ch >= 0x80;
		bol = 0;
	}
	if (!bol) {
		PUT('\r');
		PUT('\n');
		sz += 2;
	}
#undef PUT
	*size = sz;
	*eightbit = hi;
	return o;
}

struct msg_body *
msg_body_new(const char *raw, size_t len)
{
	struct msg_body *b;
	size_t n, size;
	int eightbit;

	/* Stuffing at most doubles the bytes: guard the arithmetic. */
	if (len > (SIZE_MAX - sizeof *b - 8) / 2)
		return NULL;
	n = normalise(raw, len, NULL, &size, &eightbit);
	b = xmalloc(sizeof *b + n + 4);
	memset(b, 0, sizeof *b);
	b->data = (char *)(b + 1);
	normalise(raw, len, b->data, &size, &eightbit);
	memcpy(b->data + n, ".\r\n", 4);	/* with a NUL, for debugging */
	b->len = n + 3;
	b->size = size;
	b->eightbit = eightbit;
	b->refs = 1;
	return b;
}

struct msg_body *
msg_body_ref(struct msg_body *b)
{
	if (b->refs == 0 || b->refs == UINT32_MAX)
		panic("msg_body_ref: bad refcount %u", b->refs);
	b->refs++;
	return b;
}

void
msg_body_unref(struct msg_body *b)
{
	if (b == NULL)
		return;
	if (b->refs == 0)
		panic("msg_body_unref: refcount already zero");
	if (--b->refs == 0) {
		free(b->dkim_sig);
		free(b->dkim_extra);
		free(b->added);
		free(b);
	}
}

/*
 * msg_unstuff - the inverse of msg_body_new's stuffing: a leading ".." on
 * a line loses one dot, and the line "." ends the data (it and anything
 * after it are dropped). out needs room for len bytes. Lines may end in
 * CRLF or bare LF.
 */
size_t
msg_unstuff(const char *in, size_t len, char *out)
{
	size_t i = 0, o = 0;

	while (i < len) {
		const char *nl = memchr(in + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - in) + 1 : len;
		size_t body = end - i;	/* line length with its end */

		if (in[i] == '.') {
			size_t rest = body - 1;

			/* "." alone: "\r\n", "\n" or the end of input. */
			if (rest == 0 || (rest == 1 && in[i + 1] == '\n') ||
			    (rest == 2 && in[i + 1] == '\r' && in[i + 2] == '\n') ||
			    (rest == 1 && in[i + 1] == '\r'))
				break;
			i++;
			body--;
		}
		memcpy(out + o, in + i, body);
		o += body;
		i += body;
	}
	return o;
}
