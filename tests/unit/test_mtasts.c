/*
 * test_mtasts.c - MTA-STS (RFC 8461) pure parts: the TXT record (mtasts.c),
 * the policy file (well-formed, CRLF and LF, and a table of malformed or
 * hostile ones), MX pattern matching, the HTTP response head and chunked
 * bodies of https_get.c, and the TXT walker of dns.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "https_get.h"
#include "mtasts.h"

static void
test_txt_table(void **state)
{
	static const struct {
		const char *txt;
		int want;
		const char *id;
	} t[] = {
		{ "v=STSv1; id=20160831085700Z;", 1, "20160831085700Z" },
		{ "v=STSv1; id=1", 1, "1" },
		{ "v=STSv1;id=abc", 1, "abc" },
		{ "v=STSv1;  id=abc ;  ", 1, "abc" },
		{ "v=STSv1; id=abc; ext=val;", 1, "abc" },
		{ "v=STSv1; ext=val; id=abc", 1, "abc" },
		{ "v=STSv1; id=12345678901234567890123456789012", 1, "12345678901234567890123456789012" },
		{ "v=spf1 -all", 0, "" },
		{ "", 0, "" },
		{ "V=STSv1; id=1", 0, "" },	/* case matters */
		{ " v=STSv1; id=1", 0, "" },	/* must start with it */
		{ "v=STSv10; id=1", -1, "" },
		{ "v=STSv1", -1, "" },		/* no id */
		{ "v=STSv1;", -1, "" },
		{ "v=STSv1; id=", -1, "" },
		{ "v=STSv1; id=a-b", -1, "" },	/* id: letters and digits */
		{ "v=STSv1; id=123456789012345678901234567890123", -1, "" },	/* 33 */
		{ "v=STSv1; id=1; id=2", -1, "" },
		{ "v=STSv1; id=1;; x=y", -1, "" },
		{ "v=STSv1; id=1; junk", -1, "" },
		{ "v=STSv1; id=1; x=", -1, "" },
		{ "v=STSv1; id=1; =y", -1, "" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char id[MTASTS_ID_MAX + 1];
		int got = mtasts_txt_parse(t[i].txt, strlen(t[i].txt), id, sizeof id);

		if (got != t[i].want)
			fail_msg("case %zu \"%s\": %d, want %d", i, t[i].txt, got, t[i].want);
		if (got == 1 && strcmp(id, t[i].id) != 0)
			fail_msg("case %zu: id \"%s\", want \"%s\"", i, id, t[i].id);
	}
	/* Bounded by n: "v=STSv1; id=1" cut after "v=STS" is not a record. */
	{
		char id[40];
		assert_int_equal(mtasts_txt_parse("v=STSv1; id=1", 5, id, sizeof id), 0);
		assert_int_equal(mtasts_txt_parse("v=STSv1; id=123", 13, id, sizeof id), 1);
		assert_string_equal(id, "1");
		/* a NUL inside */
		assert_int_equal(mtasts_txt_parse("v=STSv1; id=1\0x", 15, id, sizeof id), -1);
	}
}

static void
test_policy_good(void **state)
{
	struct mtasts_policy p;
	char err[200];
	const char *crlf = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
	    "mx: *.Example.NET.\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";
	const char *lf = "version:STSv1\nmode:   testing  \nmx: a.test\nmax_age: 86400";
	const char *none = "version: STSv1\nmode: none\nmax_age: 86400\nfuture: thing\n";
	const char *cap = "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 9999999999\n";

	(void)state;
	assert_int_equal(mtasts_parse(crlf, strlen(crlf), &p, err, sizeof err), 0);
	assert_int_equal(p.mode, MTASTS_ENFORCE);
	assert_int_equal(p.max_age, 604800);
	assert_int_equal(p.nmx, 3);
	assert_string_equal(p.mx[1], "*.example.net");
	assert_int_equal(mtasts_parse(lf, strlen(lf), &p, err, sizeof err), 0);
	assert_int_equal(p.mode, MTASTS_TESTING);
	assert_int_equal(p.max_age, 86400);
	assert_int_equal(mtasts_parse(none, strlen(none), &p, err, sizeof err), 0);
	assert_int_equal(p.mode, MTASTS_NONE);
	assert_int_equal(p.nmx, 0);
	assert_int_equal(mtasts_parse(cap, strlen(cap), &p, err, sizeof err), 0);
	assert_int_equal(p.max_age, MTASTS_MAX_AGE_CAP);
	assert_string_equal(mtasts_mode_name(MTASTS_ENFORCE), "enforce");
}

static void
test_policy_bad(void **state)
{
	static const struct {
		const char *body;
		const char *why;
	} t[] = {
		{ "", "no version" },
		{ "mode: enforce\nmx: a.test\nmax_age: 1\n", "no version" },
		{ "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n", "not STSv1" },
		{ "version: STSv1\nversion: STSv1\nmode: none\nmax_age: 1\n", "repeated" },
		{ "version: STSv1\nmx: a.test\nmax_age: 1\n", "no mode" },
		{ "version: STSv1\nmode: Enforce\nmx: a.test\nmax_age: 1\n", "unknown mode" },
		{ "version: STSv1\nmode: enforce\nmode: none\nmx: a.test\nmax_age: 1\n", "repeated" },
		{ "version: STSv1\nmode: enforce\nmx: a.test\n", "no max_age" },
		{ "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n", "bad max_age" },
		{ "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 12345678901\n", "bad max_age" },
		{ "version: STSv1\nmode: enforce\nmx: a.test\nmax_age:\n", "bad max_age" },
		{ "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1d\n", "bad max_age" },
		{ "version: STSv1\nmode: enforce\nmax_age: 1\n", "without mx" },
		{ "version: STSv1\nmode: testing\nmax_age: 1\n", "without mx" },
		{ "version: STSv1\nmode: enforce\nmx: a..test\nmax_age: 1\n", "bad mx" },
		{ "version: STSv1\nmode: enforce\nmx: *.\nmax_age: 1\n", "bad mx" },
		{ "version: STSv1\nmode: enforce\nmx: a.*.test\nmax_age: 1\n", "bad mx" },
		{ "version: STSv1\nmode: enforce\nmx: **.test\nmax_age: 1\n", "bad mx" },
		{ "version: STSv1\nmode: enforce\nmx: a b.test\nmax_age: 1\n", "bad mx" },
		{ "version: STSv1\nmode: enforce\nmx:\nmax_age: 1\n", "bad mx" },
		{ "version: STSv1\nmode enforce\nmx: a.test\nmax_age: 1\n", "no \":\"" },
		{ "<html><body>hello</body></html>", "no \":\"" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct mtasts_policy p;
		char err[200];

		if (mtasts_parse(t[i].body, strlen(t[i].body), &p, err, sizeof err) != -1)
			fail_msg("case %zu accepted", i);
		if (strstr(err, t[i].why) == NULL)
			fail_msg("case %zu: \"%s\", want \"%s\"", i, err, t[i].why);
	}
	/* A NUL byte, and a body over the cap. */
	{
		struct mtasts_policy p;
		char err[200];
		const char nul[] = "version: STSv1\nmode: none\0\nmax_age: 1\n";
		size_t big = MTASTS_MAX_BODY + 1;
		char *b = malloc(big);

		assert_int_equal(mtasts_parse(nul, sizeof nul - 1, &p, err, sizeof err), -1);
		assert_non_null(strstr(err, "NUL"));
		assert_non_null(b);
		memset(b, '\n', big);
		assert_int_equal(mtasts_parse(b, big, &p, err, sizeof err), -1);
		assert_non_null(strstr(err, "larger"));
		free(b);
	}
	/* Many mx lines: the first MTASTS_MAX_MX are kept. */
	{
		struct mtasts_policy p;
		char err[200], *b = malloc(100000);
		size_t n = 0;

		assert_non_null(b);
		n += (size_t)sprintf(b + n, "version: STSv1\nmode: enforce\nmax_age: 5\n");
		for (int i = 0; i < 100; i++)
			n += (size_t)sprintf(b + n, "mx: mx%d.test\n", i);
		assert_int_equal(mtasts_parse(b, n, &p, err, sizeof err), 0);
		assert_int_equal(p.nmx, MTASTS_MAX_MX);
		free(b);
	}
}

static void
test_mx_match(void **state)
{
	struct mtasts_policy p;
	char err[200], txt[200];
	const char *b = "version: STSv1\nmode: enforce\nmx: mail.example.com\n"
	    "mx: *.example.net\nmax_age: 1\n";
	static const struct {
		const char *host;
		int want;
	} t[] = {
		{ "mail.example.com", 1 }, { "MAIL.Example.COM", 1 }, { "mail.example.com.", 1 },
		{ "mx1.example.net", 1 }, { "MX1.EXAMPLE.NET.", 1 },
		{ "example.net", 0 },		/* the wildcard needs one label */
		{ "a.b.example.net", 0 },	/* ... exactly one */
		{ ".example.net", 0 },
		{ "xmail.example.com", 0 }, { "mail.example.com.evil", 0 },
		{ "example.com", 0 }, { "", 0 }, { ".", 0 },
	};

	(void)state;
	assert_int_equal(mtasts_parse(b, strlen(b), &p, err, sizeof err), 0);
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (mtasts_mx_match(&p, t[i].host) != t[i].want)
			fail_msg("case %zu (%s): want %d", i, t[i].host, t[i].want);
	assert_string_equal(mtasts_mx_text(&p, txt, sizeof txt), "mail.example.com, *.example.net");
	assert_string_equal(mtasts_mx_text(&p, txt, 8), "mail.ex");
}

static void
test_http_head(void **state)
{
	int st, ch;
	long long cl;
	char ct[64], err[100];
	const char *ok = "HTTP/1.1 200 OK\r\nContent-Type: Text/Plain; charset=utf-8\r\n"
	    "Content-Length: 12\r\n\r\nversion: STS";
	const char *lf = "HTTP/1.0 301 Moved\nLocation: x\n\nbody";
	const char *chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

	(void)state;
	assert_int_equal(https_parse_head(ok, strlen(ok), &st, ct, sizeof ct, &cl, &ch, err,
	    sizeof err), (long)(strlen(ok) - 12));
	assert_int_equal(st, 200);
	assert_string_equal(ct, "text/plain");
	assert_int_equal(cl, 12);
	assert_int_equal(ch, 0);
	assert_int_equal(https_parse_head(lf, strlen(lf), &st, ct, sizeof ct, &cl, &ch, err,
	    sizeof err), (long)(strlen(lf) - 4));
	assert_int_equal(st, 301);
	assert_int_equal(cl, -1);
	assert_int_equal(https_parse_head(chunked, strlen(chunked), &st, ct, sizeof ct, &cl, &ch,
	    err, sizeof err), (long)strlen(chunked));
	assert_int_equal(ch, 1);
	/* incomplete */
	assert_int_equal(https_parse_head(ok, 20, &st, ct, sizeof ct, &cl, &ch, err, sizeof err), 0);
	/* malformed */
	{
		static const char *bad[] = {
			"HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "SMTP 220 hi\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999\r\n\r\n",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
			"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
		};
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
			if (https_parse_head(bad[i], strlen(bad[i]), &st, ct, sizeof ct, &cl, &ch, err,
			    sizeof err) != -1)
				fail_msg("bad head %zu accepted", i);
	}
	/* A head that never ends is refused past 16 KiB. */
	{
		size_t n = 20000;
		char *b = malloc(n);

		assert_non_null(b);
		memset(b, 'a', n);
		memcpy(b, "HTTP/1.1 200 OK\r\n", 17);
		assert_int_equal(https_parse_head(b, n, &st, ct, sizeof ct, &cl, &ch, err, sizeof err), -1);
		free(b);
	}
}

static void
test_dechunk(void **state)
{
	char b[200];
	size_t out = 0;

	(void)state;
	strcpy(b, "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n");
	assert_int_equal(https_dechunk(b, strlen(b), &out), 1);
	assert_int_equal(out, 12);
	assert_memory_equal(b, "hello, world", 12);
	strcpy(b, "5\nhello\n0\nTrailer: x\n\n");
	assert_int_equal(https_dechunk(b, strlen(b), &out), 1);
	assert_int_equal(out, 5);
	strcpy(b, "5\r\nhel");
	assert_int_equal(https_dechunk(b, strlen(b), &out), 0);
	strcpy(b, "5\r\nhello\r\n0\r\n");
	assert_int_equal(https_dechunk(b, strlen(b), &out), 0);
	strcpy(b, "zz\r\nhello\r\n");
	assert_int_equal(https_dechunk(b, strlen(b), &out), -1);
	strcpy(b, "5\r\nhelloXX0\r\n\r\n");
	assert_int_equal(https_dechunk(b, strlen(b), &out), -1);
	strcpy(b, "fffffffff\r\n");
	assert_int_equal(https_dechunk(b, strlen(b), &out), -1);
}

/* A raw reply: one question, then the given answer RRs. */
static size_t
reply(unsigned char *m, const unsigned char *ans, size_t alen, unsigned an)
{
	static const unsigned char hdr[] = {
		0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0,
		8, '_', 'm', 't', 'a', '-', 's', 't', 's', 1, 'a', 0, 0, 16, 0, 1,
	};
	memcpy(m, hdr, sizeof hdr);
	m[7] = (unsigned char)an;
	memcpy(m + sizeof hdr, ans, alen);
	return sizeof hdr + alen;
}

static void
test_dns_txt(void **state)
{
	/* name: pointer to the question (0xc00c), TXT IN ttl 300 */
	static const unsigned char two[] = {
		0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 1, 44, 0, 16,
		7, 'v', '=', 'S', 'T', 'S', 'v', '1', 7, ';', ' ', 'i', 'd', '=', '4', '2',
		0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 1, 44, 0, 4,
		3, 'a', 'b', 'c',
	};
	static const unsigned char cut[] = {
		0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 1, 44, 0, 5,
		9, 'v', '=', 'S', 'T',
	};
	unsigned char m[600];
	struct dns_txt_result *r = malloc(sizeof *r);
	size_t n;

	(void)state;
	assert_non_null(r);
	n = reply(m, two, sizeof two, 2);
	assert_int_equal(dns_parse_txt(m, (int)n, r), 0);
	assert_int_equal(r->n, 2);
	assert_string_equal(r->txt[0], "v=STSv1; id=42");
	assert_int_equal(r->len[0], 14);
	assert_string_equal(r->txt[1], "abc");
	/* a string longer than its RR */
	n = reply(m, cut, sizeof cut, 1);
	assert_int_equal(dns_parse_txt(m, (int)n, r), -1);
	/* an RR cut short, every prefix of a good reply */
	n = reply(m, two, sizeof two, 2);
	for (size_t k = 0; k < n; k++) {
		unsigned char *c = malloc(k ? k : 1);

		assert_non_null(c);
		memcpy(c, m, k);
		assert_int_equal(dns_parse_txt(c, (int)k, r), -1);
		free(c);
	}
	free(r);
}

/*
 * Keep or refresh (RFC 8461 5.1), with a fake clock (ms): a policy with
 * max_age 100 s fetched at t=1000 s. Before half its age the same id
 * keeps it; past half, or with a new id, it is kept AND refreshed in the
 * background; a failed TXT lookup or a vanished record never drops it;
 * after a failed refresh (retry_after) it is only kept; once expired, an
 * id means fetch (the caller waits) and anything else no policy.
 */
static void
test_keep_refresh(void **state)
{
	struct mtasts_kept k;
	struct mtasts_policy p;
	char err[200];
	const uint64_t t0 = 1000000;
	static const struct {
		uint64_t at;		/* ms after t0 */
		int txt;
		const char *id;
		uint64_t retry_after;	/* ms after t0; 0: none */
		enum mtasts_step want;
	} t[] = {
		{ 0, 1, "a1", 0, MTASTS_STEP_KEEP },
		{ 49999, 1, "a1", 0, MTASTS_STEP_KEEP },
		{ 50000, 1, "a1", 0, MTASTS_STEP_KEEP_REFRESH },	/* half its max_age */
		{ 99999, 1, "a1", 0, MTASTS_STEP_KEEP_REFRESH },
		{ 10, 1, "a2", 0, MTASTS_STEP_KEEP_REFRESH },		/* the id changed */
		{ 10, 0, "", 0, MTASTS_STEP_KEEP },			/* the record vanished */
		{ 60000, 0, "", 0, MTASTS_STEP_KEEP },
		{ 60000, -1, "", 0, MTASTS_STEP_KEEP },			/* the lookup failed */
		{ 60000, 1, "a1", 70000, MTASTS_STEP_KEEP },		/* a refresh failed */
		{ 70000, 1, "a1", 70000, MTASTS_STEP_KEEP_REFRESH },	/* ... and is due again */
		{ 10, 1, "a2", 70000, MTASTS_STEP_KEEP },
		{ 100000, 1, "a1", 0, MTASTS_STEP_FETCH },		/* expired */
		{ 100000, 0, "", 0, MTASTS_STEP_NONE },
		{ 100000, -1, "", 0, MTASTS_STEP_NONE },
	};

	(void)state;
	{
		const char *pol = "version: STSv1\nmode: enforce\nmx: mx.a.test\nmax_age: 100\n";

		assert_int_equal(mtasts_parse(pol, strlen(pol), &p, err, sizeof err), 0);
	}
	snprintf(p.id, sizeof p.id, "a1");
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		memset(&k, 0, sizeof k);
		mtasts_keep(&k, &p, t0);
		if (t[i].retry_after)
			k.retry_after = t0 + t[i].retry_after;
		if (mtasts_after_txt(&k, t[i].txt, t[i].id, t0 + t[i].at) != t[i].want)
			fail_msg("row %zu: at +%llu ms txt %d id %s: got %d, want %d", i,
			    (unsigned long long)t[i].at, t[i].txt, t[i].id,
			    mtasts_after_txt(&k, t[i].txt, t[i].id, t0 + t[i].at), t[i].want);
	}
	/* in force until, not at, the expiry; nothing kept: never in force */
	mtasts_keep(&k, &p, t0);
	assert_true(mtasts_in_force(&k, t0 + 99999));
	assert_false(mtasts_in_force(&k, t0 + 100000));
	memset(&k, 0, sizeof k);
	assert_false(mtasts_in_force(&k, 0));
	assert_int_equal(mtasts_after_txt(&k, 1, "x", 5), MTASTS_STEP_FETCH);
	assert_int_equal(mtasts_after_txt(&k, 0, "", 5), MTASTS_STEP_NONE);
}

/* The stored form: written, read back equal; the largest policy fits. */
static void
test_store_roundtrip(void **state)
{
	struct mtasts_policy p, q;
	char buf[MTASTS_STORE_MAX], err[200], body[MTASTS_MAX_MX * 300];
	uint64_t exp;
	size_t off = 0;
	int n;

	(void)state;
	off += (size_t)snprintf(body, sizeof body, "version: STSv1\nmode: testing\nmax_age: 31557600\n");
	for (int i = 0; i < MTASTS_MAX_MX; i++) {
		char h[260];

		/* labels of 60, 60, 60 and 50 letters: a long, valid host name */
		memset(h, 'a', 233);
		h[60] = h[121] = h[182] = '.';
		snprintf(h + 233, sizeof h - 233, ".%02d.example", i);
		off += (size_t)snprintf(body + off, sizeof body - off, "mx: *.%s\n", h);
	}
	assert_int_equal(mtasts_parse(body, off, &p, err, sizeof err), 0);
	snprintf(p.id, sizeof p.id, "12345678901234567890123456789012");
	n = mtasts_store_format(&p, 1893456000123ull, buf, sizeof buf);
	assert_true(n > 0 && (size_t)n < sizeof buf);
	assert_int_equal(mtasts_store_parse(buf, (size_t)n, &q, &exp, err, sizeof err), 0);
	assert_int_equal(exp, 1893456000123ull);
	assert_string_equal(q.id, p.id);
	assert_int_equal(q.mode, MTASTS_TESTING);
	assert_int_equal(q.max_age, 31557600);
	assert_int_equal(q.nmx, MTASTS_MAX_MX);
	for (size_t i = 0; i < q.nmx; i++)
		assert_string_equal(q.mx[i], p.mx[i]);
	/* too small a buffer: -1, never a cut policy */
	assert_int_equal(mtasts_store_format(&p, 1, buf, 100), -1);
	/* a small one, as Redis holds it */
	{
		const char *pol = "version: STSv1\nmode: enforce\nmx: mx.a.test\nmax_age: 86400\n";

		assert_int_equal(mtasts_parse(pol, strlen(pol), &p, err, sizeof err), 0);
	}
	snprintf(p.id, sizeof p.id, "20160831085700Z");
	n = mtasts_store_format(&p, 1700000000000ull, buf, sizeof buf);
	assert_string_equal(buf, "20160831085700Z 1700000000000 version: STSv1\nmode: enforce\n"
	    "max_age: 86400\nmx: mx.a.test\n");
}

/* Stored values come from Redis: hostile. Each of these is refused. */
static void
test_store_hostile(void **state)
{
	static const char *const bad[] = {
		"",
		"id",
		"id ",
		" 1700000000000 version: STSv1\nmode: none\nmax_age: 1\n",		/* no id */
		"a-b 1700000000000 version: STSv1\nmode: none\nmax_age: 1\n",	/* bad id */
		"123456789012345678901234567890123 1 version: STSv1\nmode: none\nmax_age: 1\n",
		"id x version: STSv1\nmode: none\nmax_age: 1\n",			/* bad expiry */
		"id 17000000000000000 version: STSv1\nmode: none\nmax_age: 1\n",	/* too long */
		"id 1700000000000version: STSv1\nmode: none\nmax_age: 1\n",
		"id 1700000000000 version: STSv2\nmode: none\nmax_age: 1\n",		/* bad policy */
		"id 1700000000000 version: STSv1\nmode: enforce\nmax_age: 1\n",		/* no mx */
		"id 1700000000000 ",
	};
	struct mtasts_policy p;
	char err[200];
	uint64_t exp;

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		if (mtasts_store_parse(bad[i], strlen(bad[i]), &p, &exp, err, sizeof err) != -1)
			fail_msg("row %zu accepted: %s", i, bad[i]);
		assert_true(err[0] != '\0');
	}
	/* a NUL inside, and a length that stops before the policy's end */
	assert_int_equal(mtasts_store_parse("id 1 version: STSv1\nmode: none\0\nmax_age: 1\n", 44,
	    &p, &exp, err, sizeof err), -1);
	assert_int_equal(mtasts_store_parse("id 1 version: STSv1\nmode: none\nmax_age: 1\n", 20,
	    &p, &exp, err, sizeof err), -1);
	{
		static char big[MTASTS_STORE_MAX + 10];

		memset(big, 'a', sizeof big);
		assert_int_equal(mtasts_store_parse(big, sizeof big, &p, &exp, err, sizeof err), -1);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_txt_table),
		cmocka_unit_test(test_keep_refresh),
		cmocka_unit_test(test_store_roundtrip),
		cmocka_unit_test(test_store_hostile),
		cmocka_unit_test(test_policy_good),
		cmocka_unit_test(test_policy_bad),
		cmocka_unit_test(test_mx_match),
		cmocka_unit_test(test_http_head),
		cmocka_unit_test(test_dechunk),
		cmocka_unit_test(test_dns_txt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
