/*
 * tmpdir.h - a scratch directory for unit tests that read files (config
 * includes): tmpdir_make() in a cmocka group setup, write_file() relative
 * to it, tmpdir_remove() in the teardown. Header-only: each test binary
 * has its own.
 */
#ifndef VOLLEY_TEST_TMPDIR_H
#define VOLLEY_TEST_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static char tmpdir[64];

/* tmpdir_make - create /tmp/PREFIX-XXXXXX and the subdirectories named
 * in the NULL-terminated list. 0 or -1. */
static int
tmpdir_make(const char *prefix, const char *const *subdirs)
{
	char path[256];

	snprintf(tmpdir, sizeof tmpdir, "/tmp/%s-XXXXXX", prefix);
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	for (; subdirs && *subdirs; subdirs++) {
		snprintf(path, sizeof path, "%s/%s", tmpdir, *subdirs);
		if (mkdir(path, 0700) != 0)
			return -1;
	}
	return 0;
}

static int
tmpdir_remove(void)
{
	char cmd[300];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
write_file(const char *rel, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

#endif
