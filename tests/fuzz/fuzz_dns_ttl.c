/*
 * fuzz_dns_ttl.c - libFuzzer target for the raw DNS reply walkers of
 * dns.c (dns_answer_min_ttl, dns_negative_ttl): any byte string must give
 * -1 or a TTL in [0, 2^31-1], without reading outside the buffer or
 * looping on compression pointers. Build: make fuzz.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *copy;
	long a, n;

	if (size > 65535)	/* a DNS message is at most 64 KiB */
		return 0;
	/* An exact-size heap copy, so ASan sees any read past the end. */
	copy = malloc(size ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	a = dns_answer_min_ttl(copy, (int)size);
	n = dns_negative_ttl(copy, (int)size);
	if (a < -1 || a > 0x7fffffffL || n < -1 || n > 0x7fffffffL)
		abort();
	free(copy);
	return 0;
}
