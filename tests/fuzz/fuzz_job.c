/*
 * fuzz_job.c - libFuzzer target for job decoding (what a producer writes
 * into the jobs stream is foreign input) and for DKIM's reading of a
 * message: the input is split at NUL bytes into field, value, field,
 * value...; job_decode() must return a job (valid, or with a reason) and
 * never crash, and its forms stay consistent: a valid job has a domain in
 * A-label form, an RCPT address without CR/LF, a suppression key in lower
 * case. The last value, as a message, goes through msg_body_new() and the
 * DKIM header/body split and From-domain reading.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dkim.h"
#include "job.h"
#include "msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXF 24

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *f[MAXF], *v[MAXF];
	size_t fl[MAXF], vl[MAXF], n = 0, pos = 0;
	const char *p = (const char *)data;
	struct job *j;

	while (pos < size && n < MAXF) {
		const char *a = p + pos, *z = memchr(a, '\0', size - pos);
		size_t al = z ? (size_t)(z - a) : size - pos;
		const char *b;
		size_t bl;

		pos += al + (z ? 1 : 0);
		b = p + pos;
		z = pos < size ? memchr(b, '\0', size - pos) : NULL;
		bl = pos < size ? (z ? (size_t)(z - b) : size - pos) : 0;
		pos += bl + (z ? 1 : 0);
		f[n] = a; fl[n] = al;
		v[n] = b; vl[n] = bl;
		n++;
	}
	j = job_decode(f, fl, v, vl, n, "1-0", JOB_FROM_STREAM, NULL, 1000);
	if (j == NULL || j->id == NULL || j->to == NULL || j->from == NULL)
		abort();
	if (j->error == NULL) {
		if (j->domain == NULL || j->rcpt == NULL || j->to_lc == NULL)
			abort();
		if (strpbrk(j->rcpt, "\r\n") || strpbrk(j->from, "\r\n"))
			abort();
		for (const char *c = j->to_lc; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				abort();
		for (const char *c = j->domain; *c; c++)
			if ((unsigned char)*c >= 0x80)
				abort();
	}
	job_free(j);
	if (n > 0 && vl[n - 1] > 0) {
		struct msg_body *b = msg_body_new(v[n - 1], vl[n - 1]);
		size_t hlen = 0, off = 0;
		char dom[DKIM_DOMAIN_MAX];

		if (b != NULL) {
			dkim_split(b->data, b->len, DKIM_STUFFED, &hlen, &off);
			if (hlen > b->len || off > b->len)
				abort();
			(void)dkim_from_domain(b->data, hlen, DKIM_STUFFED, dom, sizeof dom);
			msg_body_unref(b);
		}
	}
	return 0;
}
