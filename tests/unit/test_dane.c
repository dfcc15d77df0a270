/*
 * test_dane.c - dane.c: which TLSA records are usable for SMTP (RFC 7672
 * 3.1), how records from the wire are kept (hostile lengths, a full set),
 * and the policy a host's records give it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "dane.h"

static void
test_usable_table(void **state)
{
	static const struct {
		uint8_t u, s, m;
		uint16_t len;
		int want;
	} t[] = {
		{ 3, 1, 1, 32, 1 }, { 3, 0, 1, 32, 1 }, { 2, 1, 1, 32, 1 }, { 2, 0, 2, 64, 1 },
		{ 3, 1, 0, 91, 1 }, { 2, 0, 0, 500, 1 },
		{ 0, 1, 1, 32, 0 },	/* PKIX-TA: not for SMTP */
		{ 1, 1, 1, 32, 0 },	/* PKIX-EE: not for SMTP */
		{ 4, 1, 1, 32, 0 }, { 255, 1, 1, 32, 0 },
		{ 3, 2, 1, 32, 0 }, { 3, 255, 1, 32, 0 },
		{ 3, 1, 3, 32, 0 }, { 3, 1, 255, 32, 0 },
		{ 3, 1, 1, 31, 0 }, { 3, 1, 1, 33, 0 }, { 3, 1, 2, 32, 0 }, { 3, 1, 2, 65, 0 },
		{ 3, 1, 0, 0, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct dane_tlsa r = { t[i].u, t[i].s, t[i].m, t[i].len, NULL };

		if (dane_usable(&r) != t[i].want)
			fail_msg("%u %u %u len %u: usable %d, want %d", t[i].u, t[i].s, t[i].m,
			    t[i].len, dane_usable(&r), t[i].want);
	}
}

static void
test_set_add(void **state)
{
	unsigned char rd[3 + DANE_MAX_DATA + 1];
	struct dane_set *s = dane_set_new(sizeof rd * 2);
	char buf[200];

	(void)state;
	memset(rd, 0xab, sizeof rd);
	rd[0] = 3, rd[1] = 1, rd[2] = 1;
	assert_int_equal(dane_set_add(s, rd, 3 + 32), 1);
	assert_int_equal(s->n, 1);
	assert_int_equal(s->nusable, 1);
	assert_int_equal(s->r[0].len, 32);
	assert_memory_equal(s->r[0].data, rd + 3, 32);
	/* too short: no data byte; NULL; too long */
	assert_int_equal(dane_set_add(s, rd, 3), 0);
	assert_int_equal(dane_set_add(s, rd, 0), 0);
	assert_int_equal(dane_set_add(s, NULL, 40), 0);
	assert_int_equal(dane_set_add(s, rd, sizeof rd), 0);
	assert_int_equal(s->seen, 5);
	assert_int_equal(s->n, 1);
	/* kept but unusable */
	rd[0] = 1;
	assert_int_equal(dane_set_add(s, rd, 3 + 32), 1);
	assert_int_equal(s->nusable, 1);
	assert_string_equal(dane_to_text(s, buf, sizeof buf), "1 usable of 6 (3 1 1, 1 1 1)");
	/* the largest record still fits; more than the set's room does not */
	rd[0] = 3, rd[2] = 0;
	assert_int_equal(dane_set_add(s, rd, 3 + DANE_MAX_DATA), 1);
	assert_int_equal(dane_set_add(s, rd, 3 + DANE_MAX_DATA), 0);
	dane_unref(s);

	/* at most DANE_MAX_RECORDS kept, the rest only counted */
	s = dane_set_new(64 * (DANE_MAX_RECORDS + 4));
	rd[0] = 3, rd[1] = 1, rd[2] = 1;
	for (int i = 0; i < DANE_MAX_RECORDS + 4; i++)
		dane_set_add(s, rd, 3 + 32);
	assert_int_equal(s->n, DANE_MAX_RECORDS);
	assert_int_equal(s->seen, DANE_MAX_RECORDS + 4);
	/* a tiny buffer truncates the text, never overflows */
	dane_to_text(s, buf, 8);
	assert_true(strlen(buf) < 8);
	assert_ptr_equal(dane_ref(s), s);
	dane_unref(s);
	dane_unref(s);
	dane_unref(NULL);
	assert_null(dane_ref(NULL));
	assert_string_equal(dane_to_text(NULL, buf, sizeof buf), "none");
}

static void
test_digest(void **state)
{
	unsigned char a[35], b[35];
	struct dane_set *x = dane_set_new(64), *y = dane_set_new(64);

	(void)state;
	memset(a, 1, sizeof a);
	memcpy(b, a, sizeof b);
	b[34] = 2;
	dane_set_add(x, a, sizeof a);
	dane_set_add(y, b, sizeof b);
	assert_int_not_equal(x->digest, y->digest);
	dane_unref(x);
	dane_unref(y);
}

static void
test_policy_table(void **state)
{
	unsigned char usable[35] = { 3, 1, 1 }, pkix[35] = { 1, 1, 1 };
	struct dane_set *good = dane_set_new(100), *bad = dane_set_new(100);
	struct dane_set *empty = dane_set_new(10);
	const struct {
		enum tls_policy conf;
		struct dane_set *s;
		enum tls_policy want;
	} t[] = {
		{ TLS_POLICY_DEFAULT, NULL, TLS_POLICY_DEFAULT },
		{ TLS_POLICY_OPPORTUNISTIC, NULL, TLS_POLICY_OPPORTUNISTIC },
		{ TLS_POLICY_VERIFY, NULL, TLS_POLICY_VERIFY },
		{ TLS_POLICY_OPPORTUNISTIC, empty, TLS_POLICY_OPPORTUNISTIC },
		{ TLS_POLICY_DEFAULT, good, TLS_POLICY_DANE },
		{ TLS_POLICY_OPPORTUNISTIC, good, TLS_POLICY_DANE },
		{ TLS_POLICY_REQUIRED, good, TLS_POLICY_DANE },
		{ TLS_POLICY_VERIFY, good, TLS_POLICY_DANE },
		{ TLS_POLICY_DISABLED, good, TLS_POLICY_DISABLED },
		/* records, none usable: mandatory, unauthenticated TLS */
		{ TLS_POLICY_OPPORTUNISTIC, bad, TLS_POLICY_REQUIRED },
		{ TLS_POLICY_DEFAULT, bad, TLS_POLICY_REQUIRED },
		{ TLS_POLICY_REQUIRED, bad, TLS_POLICY_REQUIRED },
		{ TLS_POLICY_VERIFY, bad, TLS_POLICY_VERIFY },
		{ TLS_POLICY_DISABLED, bad, TLS_POLICY_DISABLED },
	};

	(void)state;
	dane_set_add(good, pkix, sizeof pkix);
	dane_set_add(good, usable, sizeof usable);
	dane_set_add(bad, pkix, sizeof pkix);
	dane_set_add(bad, usable, 3 + 31);	/* SHA-256 of the wrong length */
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		enum tls_policy got = dane_policy(t[i].conf, t[i].s);

		if (got != t[i].want)
			fail_msg("case %zu: %s -> %s, want %s", i, tls_policy_name(t[i].conf),
			    tls_policy_name(got), tls_policy_name(t[i].want));
	}
	assert_string_equal(tls_policy_name(TLS_POLICY_DANE), "dane");
	/* "dane" is chosen per MX host, never configured */
	{
		enum tls_policy p;

		assert_int_equal(tls_policy_parse("dane", &p), -1);
	}
	assert_string_equal(dane_state_name(DANE_TLSA), "tlsa");
	assert_string_equal(dane_state_name((enum dane_state)99), "unknown");
	dane_unref(good);
	dane_unref(bad);
	dane_unref(empty);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usable_table),
		cmocka_unit_test(test_set_add),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_policy_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
