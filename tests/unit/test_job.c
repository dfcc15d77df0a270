/*
 * test_job.c - job decoding and validation: every malformed-job kind of
 * the contract gets a clear error; good jobs decode exactly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <cmocka.h>

#include "config.h"
#include "job.h"
#include "map.h"
#include "util.h"

static struct job *
decode(const char *key, ...)
{
	const char *f[16], *v[16];
	size_t fl[16], vl[16], n = 0;
	va_list ap;
	const char *name;

	va_start(ap, key);
	while ((name = va_arg(ap, const char *)) != NULL) {
		f[n] = name;
		fl[n] = strlen(name);
		v[n] = va_arg(ap, const char *);
		vl[n] = strlen(v[n]);
		n++;
	}
	va_end(ap);
	return job_decode(f, fl, v, vl, n, key, JOB_FROM_STREAM, NULL, 1000000);
}

static void
test_good_job(void **state)
{
	struct job *j = decode("1-0", "to", "Alice@Example.COM", "from", "news@shop.test",
	    "msg", "Subject: x\n\nhi\n", "id", "job-42", "campaign", "autumn",
	    "pool", "marketing", "expires_at", "2000000000", NULL);

	assert_null(j->error);
	assert_string_equal(j->id, "job-42");
	assert_string_equal(j->to, "Alice@Example.COM");
	assert_string_equal(j->to_lc, "alice@example.com");
	assert_string_equal(j->domain, "example.com");
	assert_string_equal(j->from, "news@shop.test");
	assert_string_equal(j->campaign, "autumn");
	assert_string_equal(j->pool, "marketing");
	assert_int_equal(j->expires_at_ms, 2000000000ULL * 1000);
	assert_int_equal(j->raw_len, strlen("Subject: x\n\nhi\n"));
	job_free(j);
}

static void
test_defaults(void **state)
{
	struct job *j = decode("7-1", "to", "a@b.test", "from", "", "msg_ref", "volley:msg:1", NULL);

	assert_null(j->error);
	assert_string_equal(j->id, "7-1");		/* default id: the entry ID */
	assert_string_equal(j->from, "");		/* null reverse-path */
	assert_string_equal(j->msg_ref, "volley:msg:1");
	assert_int_equal(j->expires_at_ms, 1000000 + 2ULL * 86400 * 1000);
	job_free(j);
}

struct bad_case {
	const char *name;
	const char *fields[12];
	const char *want;	/* substring of the error */
};

static const struct bad_case bad[] = {
	{ "missing to", { "from", "a@b.test", "msg", "x", NULL }, "missing field: to" },
	{ "missing from", { "to", "a@b.test", "msg", "x", NULL }, "missing field: from" },
	{ "no message", { "to", "a@b.test", "from", "a@b.test", NULL }, "no message" },
	{ "empty message", { "to", "a@b.test", "from", "a@b.test", "msg", "", NULL }, "empty message" },
	{ "both", { "to", "a@b.test", "from", "a@b.test", "msg", "x", "msg_ref", "k", NULL }, "both msg and msg_ref" },
	{ "no at", { "to", "alice.example.com", "from", "a@b.test", "msg", "x", NULL }, "no '@'" },
	{ "CR in to", { "to", "a@b.test\r\nRCPT TO:<x@y.test>", "from", "a@b.test", "msg", "x", NULL }, "CR or LF" },
	{ "LF in from", { "to", "a@b.test", "from", "a@b.test\nDATA", "msg", "x", NULL }, "CR or LF" },
	{ "space", { "to", "a b@c.test", "from", "a@b.test", "msg", "x", NULL }, "forbidden character" },
	{ "brackets", { "to", "<a@b.test>", "from", "a@b.test", "msg", "x", NULL }, "forbidden character" },
	{ "bad domain", { "to", "a@b..test", "from", "a@b.test", "msg", "x", NULL }, "bad domain" },
	{ "one label", { "to", "a@localhost", "from", "a@b.test", "msg", "x", NULL }, "bad domain" },
	{ "two ats", { "to", "a@@d0.test", "from", "a@b.test", "msg", "x", NULL }, "more than one '@'" },
	{ "empty local", { "to", "@b.test", "from", "a@b.test", "msg", "x", NULL }, "bad local part" },
	{ "bad expiry", { "to", "a@b.test", "from", "a@b.test", "msg", "x", "expires_at", "soon", NULL }, "expires_at" },
	{ "bad id", { "to", "a@b.test", "from", "a@b.test", "msg", "x", "id", "a b", NULL }, "invalid id" },
};

static void
test_bad_jobs(void **state)
{
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *f[6], *v[6];
		size_t fl[6], vl[6], n = 0;
		for (size_t k = 0; bad[i].fields[k]; k += 2) {
			f[n] = bad[i].fields[k];
			fl[n] = strlen(f[n]);
			v[n] = bad[i].fields[k + 1];
			vl[n] = strlen(v[n]);
			n++;
		}
		struct job *j = job_decode(f, fl, v, vl, n, "9-9", JOB_FROM_STREAM, NULL, 0);
		if (j->error == NULL || strstr(j->error, bad[i].want) == NULL)
			fail_msg("case '%s': error '%s', want '%s'", bad[i].name,
			    j->error ? j->error : "(none)", bad[i].want);
		assert_non_null(j->id);		/* the failed event needs it */
		assert_non_null(j->to);
		job_free(j);
	}
}

static void
test_binary_safe(void **state)
{
	const char *f[3] = { "to", "from", "msg" };
	size_t fl[3] = { 2, 4, 3 };
	const char *v[3] = { "a@b.test", "c@d.test", "x\0y" };
	size_t vl[3] = { 8, 8, 3 };
	struct job *j = job_decode(f, fl, v, vl, 3, "1-1", JOB_FROM_STREAM, NULL, 0);

	assert_null(j->error);
	assert_int_equal(j->raw_len, 3);
	assert_memory_equal(j->raw, "x\0y", 3);
	job_free(j);
}

static void
test_envelope_and_header(void **state)
{
	struct job *j = decode("1-0", "to", "a@b.test", "from", "news@shop.test", "msg", "x",
	    "id", "job/8812", NULL);
	size_t len;
	char *h = job_id_header(j, "X-Volley-Id", &len);
	char *verp = job_envelope_from(j, "bounces+{id}@bounces.example.com");
	char *plain = job_envelope_from(j, NULL);

	assert_string_equal(h, "X-Volley-Id: job/8812\r\n");
	assert_int_equal(len, strlen(h));
	assert_string_equal(verp, "bounces+job=8812@bounces.example.com");
	assert_string_equal(plain, "news@shop.test");
	free(h);
	free(verp);
	free(plain);
	job_free(j);
}

static void
test_map(void **state)
{
	struct map m = { 0 };
	char key[32];
	int vals[5000];

	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof key, "k%d", i);
		vals[i] = i;
		map_put(&m, key, &vals[i]);
	}
	for (int i = 0; i < 5000; i += 2) {
		snprintf(key, sizeof key, "k%d", i);
		assert_ptr_equal(map_del(&m, key), &vals[i]);
	}
	assert_int_equal(m.len, 2500);
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof key, "k%d", i);
		if (i % 2)
			assert_ptr_equal(map_get(&m, key), &vals[i]);
		else
			assert_null(map_get(&m, key));
	}
	size_t it = 0, seen = 0;
	const char *k;
	void *v;
	while (map_iter(&m, &it, &k, &v))
		seen++;
	assert_int_equal(seen, 2500);
	map_free(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_job),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_bad_jobs),
		cmocka_unit_test(test_binary_safe),
		cmocka_unit_test(test_envelope_and_header),
		cmocka_unit_test(test_map),
	};
	return cmocka_run_group_tests_name("job", tests, NULL, NULL);
}
