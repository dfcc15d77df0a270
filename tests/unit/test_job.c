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
	{ "literal v4", { "to", "user@[127.0.0.1]", "from", "a@b.test", "msg", "x", NULL },
	  "address literals are not accepted: [127.0.0.1]" },
	{ "literal v6", { "to", "user@[IPv6:2001:db8::1]", "from", "a@b.test", "msg", "x", NULL },
	  "address literals are not accepted" },
	{ "disallowed label", { "to", "a@\xe2\x98\x83.com", "from", "a@b.test", "msg", "x", NULL },
	  "recipient domain is not a valid internationalised domain name: label" },
	{ "label not UTF-8", { "to", "a@b\xff" "d.de", "from", "a@b.test", "msg", "x", NULL },
	  "not valid UTF-8" },
	{ "IDNA hyphens", { "to", "a@-b\xc3\xbc.de", "from", "a@b.test", "msg", "x", NULL },
	  "cannot be encoded as an IDNA A-label" },
	{ "local not UTF-8", { "to", "\xff\xfe@b.de", "from", "a@b.test", "msg", "x", NULL },
	  "local part is not valid UTF-8" },
	{ "msg_ref outside", { "to", "a@b.test", "from", "a@b.test", "msg_ref", "volley:jobp:1", NULL },
	  "msg_ref must name a key under volley:msg:" },
	{ "msg_ref bare", { "to", "a@b.test", "from", "a@b.test", "msg_ref", "secret", NULL },
	  "msg_ref must name a key under volley:msg:" },
	{ "msg_ref prefix only", { "to", "a@b.test", "from", "a@b.test", "msg_ref", "volley:msg:", NULL },
	  "msg_ref must name a key under volley:msg:" },
	{ "msg_ref near miss", { "to", "a@b.test", "from", "a@b.test", "msg_ref", "volley:msgs:1", NULL },
	  "msg_ref must name a key under volley:msg:" },
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

/* How a recipient is split into its DNS, RCPT and suppression forms. */
struct rcpt_case {
	const char *to;
	const char *domain, *rcpt, *to_lc;
	int utf8;
};

static const struct rcpt_case rcpts[] = {
	/* ASCII: unchanged, but never a root dot on the wire */
	{ "Alice@Example.COM", "example.com", "Alice@Example.COM", "alice@example.com", 0 },
	{ "a@example.com.", "example.com", "a@example.com", "a@example.com", 0 },
	{ "a@mail_1.example.com", "mail_1.example.com", "a@mail_1.example.com",
	  "a@mail_1.example.com", 0 },
	{ "a@xn--bcher-kva.de", "xn--bcher-kva.de", "a@xn--bcher-kva.de", "a@xn--bcher-kva.de", 0 },
	/* UTF-8 domain, ASCII local part: A-label on the wire; one
	 * suppression key for every spelling of the mailbox */
	{ "user@b\xc3\xbc" "cher.de", "xn--bcher-kva.de", "user@xn--bcher-kva.de",
	  "user@xn--bcher-kva.de", 0 },
	{ "User@B\xc3\x9c" "CHER.De", "xn--bcher-kva.de", "User@xn--bcher-kva.de",
	  "user@xn--bcher-kva.de", 0 },
	{ "x@mail.b\xc3\xbc" "cher.test.", "mail.xn--bcher-kva.test", "x@mail.xn--bcher-kva.test",
	  "x@mail.xn--bcher-kva.test", 0 },
	{ "u@fa\xc3\x9f.de", "xn--fa-hia.de", "u@xn--fa-hia.de", "u@xn--fa-hia.de", 0 },
	/* UTF-8 local part: under SMTPUTF8, the domain still as A-label */
	{ "jos\xc3\xa9@example.com", "example.com", "jos\xc3\xa9@example.com",
	  "jos\xc3\xa9@example.com", 1 },
	{ "jos\xc3\xa9@b\xc3\xbc" "cher.de", "xn--bcher-kva.de", "jos\xc3\xa9@xn--bcher-kva.de",
	  "jos\xc3\xa9@xn--bcher-kva.de", 1 },
};

/* A field given twice (a careless producer): the last one counts, and
 * nothing leaks (checked under ASan/LeakSanitizer in make asan). */
static void
test_fields_twice(void **state)
{
	struct job *j = decode("1-0", "to", "a@b.test", "from", "f@b.test", "msg", "x",
	    "tenant", "t1", "tenant", "t2", "campaign", "c1", "campaign", "c2",
	    "pool", "p1", "pool", "p2", "to", "z@b.test", NULL);

	assert_null(j->error);
	assert_string_equal(j->tenant, "t2");
	assert_string_equal(j->campaign, "c2");
	assert_string_equal(j->pool, "p2");
	assert_string_equal(j->to, "z@b.test");
	job_free(j);
}

/* An internationalised sender domain goes out as its A-label; a broken
 * one fails the job (the producer's fault, no recipient's). */
static void
test_sender_forms(void **state)
{
	struct job *j = decode("1-0", "to", "a@b.test", "from", "news@b\xc3\xbc" "cher.de",
	    "msg", "x", NULL);

	assert_null(j->error);
	assert_string_equal(j->from, "news@xn--bcher-kva.de");
	job_free(j);
	j = decode("1-0", "to", "a@b.test", "from", "jos\xc3\xa9@example.com", "msg", "x", NULL);
	assert_null(j->error);
	assert_string_equal(j->from, "jos\xc3\xa9@example.com");
	job_free(j);
	j = decode("1-0", "to", "a@b.test", "from", "n@[127.0.0.1]", "msg", "x", NULL);
	assert_non_null(j->error);
	job_free(j);
	j = decode("1-0", "to", "a@b.test", "from", "n@b\xff.de", "msg", "x", NULL);
	assert_non_null(j->error);
	job_free(j);
}

static void
test_recipient_forms(void **state)
{
	for (size_t i = 0; i < sizeof rcpts / sizeof rcpts[0]; i++) {
		const struct rcpt_case *c = &rcpts[i];
		struct job *j = decode("1-0", "to", c->to, "from", "a@b.test", "msg", "x", NULL);

		if (j->error != NULL)
			fail_msg("case %zu '%s': error '%s'", i, c->to, j->error);
		assert_string_equal(j->to, c->to);
		assert_string_equal(j->to_lc, c->to_lc);
		assert_string_equal(j->domain_ascii, c->domain);
		assert_ptr_equal(j->domain, j->domain_ascii);
		assert_string_equal(j->rcpt, c->rcpt);
		assert_int_equal(j->needs_smtputf8, c->utf8);
		job_free(j);
	}
}

static struct job *
decode_cfg(const struct config *cfg, const char *to, const char *msg_field, const char *msg,
    size_t msg_len)
{
	const char *f[3] = { "to", "from", msg_field };
	size_t fl[3] = { 2, 4, strlen(msg_field) };
	const char *v[3] = { to, "a@b.test", msg };
	size_t vl[3] = { strlen(to), 8, msg_len };

	return job_decode(f, fl, v, vl, 3, "5-5", JOB_FROM_STREAM, cfg, 0);
}

static void
test_message_size(void **state)
{
	struct config cfg;
	char *big = xmalloc(2048), why[200];
	struct job *j;

	memset(&cfg, 0, sizeof cfg);
	cfg.max_message_size = 1024;
	memset(big, 'x', 2048);
	j = decode_cfg(&cfg, "a@b.test", "msg", big, 1024);	/* at the limit: fine */
	assert_null(j->error);
	assert_int_equal(j->raw_len, 1024);
	job_free(j);
	j = decode_cfg(&cfg, "a@b.test", "msg", big, 1025);
	assert_non_null(j->error);
	assert_string_equal(j->error,
	    "message size 1025 bytes exceeds the limit of 1024 bytes (smtp.max_message_size)");
	assert_null(j->raw);		/* not kept in memory */
	assert_non_null(j->id);

	/* msg_ref bodies: the engine asks once it fetched them */
	assert_int_equal(job_body_too_large(j, 1024, &cfg, why, sizeof why), 0);
	assert_int_equal(job_body_too_large(j, 4096, &cfg, why, sizeof why), 1);
	assert_non_null(strstr(why, "4096 bytes exceeds the limit of 1024"));
	/* no config: 50M */
	assert_int_equal(job_body_too_large(j, 50u << 20, NULL, why, sizeof why), 0);
	assert_int_equal(job_body_too_large(j, (50u << 20) + 1, NULL, why, sizeof why), 1);
	job_free(j);
	free(big);
}

static void
test_msg_ref_prefix(void **state)
{
	struct config cfg;
	struct job *j;

	memset(&cfg, 0, sizeof cfg);
	cfg.prefix = "acme:";
	j = decode_cfg(&cfg, "a@b.test", "msg_ref", "acme:msg:welcome", 16);
	assert_null(j->error);
	assert_string_equal(j->msg_ref, "acme:msg:welcome");
	job_free(j);
	j = decode_cfg(&cfg, "a@b.test", "msg_ref", "volley:msg:welcome", 18);
	assert_non_null(j->error);
	assert_string_equal(j->error, "msg_ref must name a key under acme:msg:");
	assert_null(j->msg_ref);
	job_free(j);
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

/* `priority`: high|normal|low in any case, empty = normal; anything else
 * fails the job with a reason. The high stream makes any job high and its
 * default id is the bare entry ID (the key carries the "h-"). */
static const struct {
	const char *value;		/* NULL: field absent */
	enum job_origin origin;
	enum job_priority want;
	int invalid;
} prio_cases[] = {
	{ NULL, JOB_FROM_STREAM, JOB_PRIO_NORMAL, 0 },
	{ "", JOB_FROM_STREAM, JOB_PRIO_NORMAL, 0 },
	{ "high", JOB_FROM_STREAM, JOB_PRIO_HIGH, 0 },
	{ "HIGH", JOB_FROM_STREAM, JOB_PRIO_HIGH, 0 },
	{ "Normal", JOB_FROM_STREAM, JOB_PRIO_NORMAL, 0 },
	{ "low", JOB_FROM_STREAM, JOB_PRIO_LOW, 0 },
	{ "low", JOB_FROM_RETRY, JOB_PRIO_LOW, 0 },	/* kept in the retry hash */
	{ "bogus", JOB_FROM_STREAM, JOB_PRIO_NORMAL, 1 },
	{ "high ", JOB_FROM_STREAM, JOB_PRIO_NORMAL, 1 },
	{ "hig", JOB_FROM_STREAM, JOB_PRIO_NORMAL, 1 },
	{ "highest", JOB_FROM_STREAM, JOB_PRIO_NORMAL, 1 },
	{ NULL, JOB_FROM_HIGH, JOB_PRIO_HIGH, 0 },
	{ "low", JOB_FROM_HIGH, JOB_PRIO_HIGH, 0 },
	{ "normal", JOB_FROM_HIGH, JOB_PRIO_HIGH, 0 },
	{ "bogus", JOB_FROM_HIGH, JOB_PRIO_HIGH, 1 },
};

static void
test_priority(void **state)
{
	for (size_t i = 0; i < sizeof prio_cases / sizeof prio_cases[0]; i++) {
		const char *f[4] = { "to", "from", "msg", "priority" };
		const char *v[4] = { "a@b.test", "s@c.test", "Subject: x\n\nx\n", prio_cases[i].value };
		size_t fl[4], vl[4], n = prio_cases[i].value ? 4 : 3;
		const char *key = prio_cases[i].origin == JOB_FROM_HIGH ? "h-7-1" : "7-1";
		struct job *j;

		for (size_t k = 0; k < n; k++) {
			fl[k] = strlen(f[k]);
			vl[k] = strlen(v[k]);
		}
		j = job_decode(f, fl, v, vl, n, key, prio_cases[i].origin, NULL, 0);
		assert_int_equal(j->priority, prio_cases[i].want);
		if (prio_cases[i].invalid) {
			assert_non_null(j->error);
			assert_non_null(strstr(j->error, "invalid priority"));
		} else {
			assert_null(j->error);
		}
		assert_string_equal(j->key, key);
		assert_string_equal(j->id, "7-1");	/* the bare entry ID */
		assert_string_equal(job_entry_id(j), "7-1");
		job_free(j);
	}
	assert_string_equal(job_priority_name(JOB_PRIO_HIGH), "high");
	assert_string_equal(job_priority_name(JOB_PRIO_NORMAL), "normal");
	assert_string_equal(job_priority_name(JOB_PRIO_LOW), "low");
	assert_true(job_priority_rank(JOB_PRIO_HIGH) < job_priority_rank(JOB_PRIO_NORMAL));
	assert_true(job_priority_rank(JOB_PRIO_NORMAL) < job_priority_rank(JOB_PRIO_LOW));
}

/* A hostile priority value is not echoed raw into the reason. */
static void
test_priority_reason_printable(void **state)
{
	const char *f[4] = { "to", "from", "msg", "priority" };
	const char *v[4] = { "a@b.test", "s@c.test", "x\n\nx\n", "hi\r\ngh" };
	size_t fl[4], vl[4];
	struct job *j;

	for (size_t k = 0; k < 4; k++) {
		fl[k] = strlen(f[k]);
		vl[k] = strlen(v[k]);
	}
	j = job_decode(f, fl, v, vl, 4, "1-1", JOB_FROM_STREAM, NULL, 0);
	assert_non_null(j->error);
	assert_null(strchr(j->error, '\r'));
	assert_null(strchr(j->error, '\n'));
	job_free(j);
}

/* unsubscribe_url, unsubscribe_mailto, feedback_id: hostile values end
 * the job `failed` with the field named; good ones are kept as given. */
static const struct {
	const char *field, *value;
	const char *error;	/* NULL: accepted */
} hdr_fields[] = {
	{ "unsubscribe_url", "https://u.example/unsub?id=42&t=abc", NULL },
	{ "unsubscribe_url", "HTTPS://u.example/x", NULL },
	{ "unsubscribe_url", "", NULL },	/* empty: absent */
	{ "unsubscribe_url", "http://u.example/unsub",
	  "invalid unsubscribe_url: not an https: URL (RFC 8058 One-Click needs https)" },
	{ "unsubscribe_url", "https://u.example/x\r\nBcc: victim@example.net",
	  "invalid unsubscribe_url: CR, LF or NUL in value" },
	{ "unsubscribe_url", "https://u.example/x\nX-Evil: 1",
	  "invalid unsubscribe_url: CR, LF or NUL in value" },
	{ "unsubscribe_url", "https://u.example/\tx", "invalid unsubscribe_url: control character in value" },
	{ "unsubscribe_url", "https://u.example/a b",
	  "invalid unsubscribe_url: space, '<', '>' or '\"' in value (percent-encode it)" },
	{ "unsubscribe_url", "https://u.example/a>, <https://evil.example/",
	  "invalid unsubscribe_url: space, '<', '>' or '\"' in value (percent-encode it)" },
	{ "unsubscribe_url", "https://u.example/\xc3\xa9",
	  "invalid unsubscribe_url: 8-bit byte in value (percent-encode it)" },
	{ "unsubscribe_url", "https:///path", "invalid unsubscribe_url: no host in URL" },
	{ "unsubscribe_url", "javascript:alert(1)",
	  "invalid unsubscribe_url: not an https: URL (RFC 8058 One-Click needs https)" },
	{ "unsubscribe_mailto", "mailto:unsub@list.example?subject=unsubscribe%2042", NULL },
	{ "unsubscribe_mailto", "mailto:unsub@list.example", NULL },
	{ "unsubscribe_mailto", "unsub@list.example", "invalid unsubscribe_mailto: not a mailto: URI" },
	{ "unsubscribe_mailto", "mailto:nobody", "invalid unsubscribe_mailto: no '@' in address" },
	{ "unsubscribe_mailto", "mailto:a@b.example?subject=x\r\n",
	  "invalid unsubscribe_mailto: CR, LF or NUL in value" },
	{ "feedback_id", "c42:t7:marketing:esp1", NULL },
	{ "feedback_id", "a b", "invalid feedback_id: space, '<', '>' or '\"' in value (percent-encode it)" },
	{ "feedback_id", "a\rb", "invalid feedback_id: CR, LF or NUL in value" },
};

static void
test_header_fields(void **state)
{
	char longurl[1000];

	for (size_t i = 0; i < sizeof hdr_fields / sizeof hdr_fields[0]; i++) {
		struct job *j = decode("1-0", "to", "a@b.test", "from", "c@d.test", "msg", "x",
		    hdr_fields[i].field, hdr_fields[i].value, NULL);
		const char *got = strcmp(hdr_fields[i].field, "unsubscribe_url") == 0 ? j->unsub_url :
		    strcmp(hdr_fields[i].field, "unsubscribe_mailto") == 0 ? j->unsub_mailto :
		    j->feedback_id;

		if (hdr_fields[i].error == NULL) {
			if (j->error)
				print_message("case %zu: %s\n", i, j->error);
			assert_null(j->error);
			if (hdr_fields[i].value[0])
				assert_string_equal(got, hdr_fields[i].value);
			else
				assert_null(got);
		} else {
			assert_non_null(j->error);
			assert_string_equal(j->error, hdr_fields[i].error);
			assert_null(got);
			assert_string_equal(j->id, "1-0");	/* the event can carry it */
		}
		job_free(j);
	}
	/* length caps: a URI of more than 900 bytes cannot go on one line */
	memset(longurl, 'a', sizeof longurl - 1);
	memcpy(longurl, "https://u.example/", 18);
	longurl[sizeof longurl - 1] = '\0';
	{
		struct job *j = decode("1-0", "to", "a@b.test", "from", "c@d.test", "msg", "x",
		    "unsubscribe_url", longurl, NULL);
		assert_string_equal(j->error, "invalid unsubscribe_url: too long");
		job_free(j);
	}
	longurl[900] = '\0';
	{
		struct job *j = decode("1-0", "to", "a@b.test", "from", "c@d.test", "msg", "x",
		    "unsubscribe_url", longurl, NULL);
		assert_null(j->error);
		job_free(j);
	}
	/* a NUL inside a value (Redis values are binary) */
	{
		const char *f[4] = { "to", "from", "msg", "feedback_id" };
		const char *v[4] = { "a@b.test", "c@d.test", "x", "ab\0cd" };
		size_t fl[4] = { 2, 4, 3, 11 }, vl[4] = { 8, 8, 1, 5 };
		struct job *j = job_decode(f, fl, v, vl, 4, "1-0", JOB_FROM_STREAM, NULL, 1000000);

		assert_string_equal(j->error, "invalid feedback_id: CR, LF or NUL in value");
		job_free(j);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_job),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_bad_jobs),
		cmocka_unit_test(test_recipient_forms),
		cmocka_unit_test(test_sender_forms),
		cmocka_unit_test(test_fields_twice),
		cmocka_unit_test(test_message_size),
		cmocka_unit_test(test_msg_ref_prefix),
		cmocka_unit_test(test_binary_safe),
		cmocka_unit_test(test_envelope_and_header),
		cmocka_unit_test(test_map),
		cmocka_unit_test(test_priority),
		cmocka_unit_test(test_priority_reason_printable),
		cmocka_unit_test(test_header_fields),
	};
	return cmocka_run_group_tests_name("job", tests, NULL, NULL);
}
