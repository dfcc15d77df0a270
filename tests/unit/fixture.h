/*
 * fixture.h - read a sample file of tests/fixtures (or $VOLLEY_FIXTURES)
 * whole, for the unit tests of the parsers. Header-only, like tmpdir.h;
 * include it after cmocka.h and util.h (fail_msg, struct buf).
 */
#ifndef VOLLEY_TEST_FIXTURE_H
#define VOLLEY_TEST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

/* read_fixture - the whole file NAME, NUL-terminated (malloc'd); its
 * length in *len. Fails the test when it cannot be opened. */
static char *
read_fixture(const char *name, size_t *len)
{
	const char *dir = getenv("VOLLEY_FIXTURES");
	char path[512];
	FILE *f;
	struct buf b = { 0 };
	char chunk[4096];
	size_t n;

	snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fixtures", name);
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s (run from the repository root)", path);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	buf_append(&b, "", 1);
	*len = b.len - 1;
	return b.data;
}

#endif
