/*
 * fuzz_mtasts.c - libFuzzer target for the MTA-STS parsers: the policy
 * file (mtasts_parse), the TXT record (mtasts_txt_parse), MX matching
 * against whatever policy came out, and the HTTP response head and
 * chunked body of https_get.c. Any byte string must be accepted or
 * refused without reading outside the buffer; an accepted policy must be
 * well-formed (mode known, max_age capped, mx patterns NUL-terminated and
 * at most MTASTS_MAX_MX). Build: make fuzz.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "https_get.h"
#include "mtasts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mtasts_policy p;
	char err[200], id[MTASTS_ID_MAX + 1], ct[64];
	char *copy;
	int st, ch;
	long long cl;
	long h;
	size_t out;

	if (size > MTASTS_MAX_BODY + 16)
		return 0;
	/* An exact-size heap copy, so ASan sees any read past the end. */
	copy = malloc(size ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	if (mtasts_parse(copy, size, &p, err, sizeof err) == 0) {
		if (p.mode > MTASTS_ENFORCE || p.max_age > MTASTS_MAX_AGE_CAP ||
		    p.nmx > MTASTS_MAX_MX || (p.mode != MTASTS_NONE && p.nmx == 0))
			abort();
		for (size_t i = 0; i < p.nmx; i++)
			if (strnlen(p.mx[i], sizeof p.mx[i]) == sizeof p.mx[i])
				abort();
		(void)mtasts_mx_match(&p, "mx.example.com");
		(void)mtasts_mx_match(&p, p.nmx ? p.mx[0] : "a");
	}
	if (mtasts_txt_parse(copy, size, id, sizeof id) == 1 && strlen(id) > MTASTS_ID_MAX)
		abort();
	h = https_parse_head(copy, size, &st, ct, sizeof ct, &cl, &ch, err, sizeof err);
	if (h > (long)size)
		abort();
	if (https_dechunk(copy, size, &out) == 1 && out > size)
		abort();
	free(copy);
	return 0;
}
