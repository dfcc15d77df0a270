/*
 * fixture.h - read a sample file of tests/fixtures (or $VOLLEY_FIXTURES)
 * whole, for the unit tests of the parsers. Header-only, like tmpdir.h;
 * include it after cmocka.h and util.h (fail_msg, struct buf).
 */
#ifndef VOLLEY_TEST_FIXTURE_H
#define VOLLEY_TEST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

/* read_file - the whole file PATH, NUL-terminated (malloc'd); its length
 * in *len. Fails the test when it cannot be opened. */
static inline char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b = { 0 };
	char chunk[4096];
	size_t n;

	if (f == NULL)
		fail_msg("cannot open %s (run from the repository root)", path);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	buf_append(&b, "", 1);
	*len = b.len - 1;
	return b.data;
}

/* read_fixture - read_file of NAME in tests/fixtures (or $VOLLEY_FIXTURES). */
static inline char *
read_fixture(const char *name, size_t *len)
{
	const char *dir = getenv("VOLLEY_FIXTURES");
	char path[512];

	snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fixtures", name);
	return read_file(path, len);
}

#endif
