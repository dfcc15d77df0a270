/*
 * test_headers.c - the header fields volley adds (headers.h): presence
 * checks on plain and dot-stuffed header blocks, folding, Date and
 * Message-ID forms, the per-job List-Unsubscribe(-Post) / Feedback-ID
 * table, and template expansion with hostile values.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <cmocka.h>

#include "dkim.h"
#include "headers.h"
#include "msg.h"
#include "util.h"

static void
test_present(void **state)
{
	static const char h[] = "From: a@b.test\r\nSubject: x\r\n list-unsubscribe: folded\r\n"
	    "Message-ID : <1@b>\r\nX-Date: no\r\nDated: no\r\n";
	size_t n = sizeof h - 1;

	assert_int_equal(hdr_present(h, n, "from"), 1);
	assert_int_equal(hdr_present(h, n, "SUBJECT"), 1);
	assert_int_equal(hdr_present(h, n, "Message-ID"), 1);	/* WSP before ':' */
	assert_int_equal(hdr_present(h, n, "List-Unsubscribe"), 0);	/* a continuation line */
	assert_int_equal(hdr_present(h, n, "Date"), 0);	/* X-Date, Dated */
	assert_int_equal(hdr_present(h, 0, "From"), 0);
	/* no line end on the last field */
	assert_int_equal(hdr_present("Date: x", 7, "date"), 1);
}

/* A body as the engine keeps it: where the header block ends, and what
 * a stuffed line looks like to the check. */
static void
test_present_stuffed(void **state)
{
	static const char raw[] = "Subject: hi\n.Date: not a field\n\nDate: in the body\n";
	struct msg_body *b = msg_body_new(raw, sizeof raw - 1);
	size_t hlen, boff;

	dkim_split(b->data, b->len, DKIM_STUFFED, &hlen, &boff);
	assert_int_equal(hdr_present(b->data, hlen, "Subject"), 1);
	assert_int_equal(hdr_present(b->data, hlen, "Date"), 0);
	msg_body_unref(b);
}

static const struct {
	const char *name, *value, *want;
} folds[] = {
	{ "Feedback-ID", "a:b:c:d", "Feedback-ID: a:b:c:d\r\n" },
	{ "X", "", "X:\r\n" },
	{ "List-Unsubscribe", "<mailto:unsubscribe@list.example.com?subject=unsubscribe>, "
	  "<https://list.example.com/u?id=1234567890>",
	  "List-Unsubscribe: <mailto:unsubscribe@list.example.com?subject=unsubscribe>,\r\n"
	  " <https://list.example.com/u?id=1234567890>\r\n" },
	/* exactly 78 columns stays on one line; 79 folds */
	{ "Subject", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
	  "Subject: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n" },
	{ "Subject", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
	  "Subject: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n" },
	/* a word longer than a line is not split */
	{ "X", "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy z",
	  "X: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n z\r\n" },
	/* runs of spaces collapse */
	{ "X", "a   b ", "X: a b\r\n" },
};

static void
test_fold(void **state)
{
	for (size_t i = 0; i < sizeof folds / sizeof folds[0]; i++) {
		struct buf b = { 0 };

		hdr_fold(&b, folds[i].name, folds[i].value);
		buf_append(&b, "", 1);
		assert_string_equal(b.data, folds[i].want);
		/* every line but an overlong word's is within 78 columns */
		for (char *l = b.data; *l;) {
			char *e = strstr(l, "\r\n");
			assert_non_null(e);
			if (strlen(folds[i].value) < 80)
				assert_true(e - l <= HDR_FOLD_COLS);
			l = e + 2;
		}
		buf_free(&b);
	}
}

static void
test_date_and_id(void **state)
{
	char d[64], id[128];
	unsigned char rnd[16];

	hdr_date(d, sizeof d, 0);
	assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 +0000");
	hdr_date(d, sizeof d, 1796026132);	/* 2026-11-30 08:08:52 UTC */
	assert_string_equal(d, "Mon, 30 Nov 2026 08:08:52 +0000");
	for (int i = 0; i < 16; i++)
		rnd[i] = (unsigned char)(i * 17);
	hdr_message_id(id, sizeof id, 36 * 36 + 35, rnd, "news.example");
	assert_string_equal(id, "<10z.00112233445566778899aabbccddeeff@news.example>");
	hdr_message_id(id, sizeof id, 0, rnd, NULL);
	assert_string_equal(id, "<0.00112233445566778899aabbccddeeff@localhost>");
}

static void
test_body_lines(void **state)
{
	unsigned char rnd[16] = { 0 };
	struct buf b = { 0 };
	static const char none[] = "From: a@b.test\r\n";
	static const char both[] = "From: a@b.test\r\nmessage-id: <x@y>\r\nDATE: whenever\r\n";
	static const char only_date[] = "Date: x\r\n";

	hdr_body_lines(&b, none, sizeof none - 1, "b.test", 0, 0, rnd);
	buf_append(&b, "", 1);
	assert_string_equal(b.data, "Message-ID: <0.00000000000000000000000000000000@b.test>\r\n"
	    "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n");
	b.len = 0;
	hdr_body_lines(&b, both, sizeof both - 1, "b.test", 0, 0, rnd);
	assert_int_equal(b.len, 0);
	hdr_body_lines(&b, only_date, sizeof only_date - 1, "b.test", 0, 0, rnd);
	buf_append(&b, "", 1);
	assert_string_equal(b.data, "Message-ID: <0.00000000000000000000000000000000@b.test>\r\n");
	buf_free(&b);
}

#define URL	"https://u.example/unsub?id=42"
#define MAILTO	"mailto:unsub@u.example?subject=unsub"
#define POST	"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"

static const struct {
	const char *what;
	const char *headers;
	struct hdr_job in;
	const char *want;
} jobs[] = {
	{ "url only: Post too", "Subject: x\r\n", { .unsub_url = URL, .pool = "default" },
	  "List-Unsubscribe: <" URL ">\r\n" POST "Feedback-ID: ::default:\r\n" },
	{ "mailto only: no Post", "Subject: x\r\n", { .unsub_mailto = MAILTO, .pool = "p" },
	  "List-Unsubscribe: <" MAILTO ">\r\nFeedback-ID: ::p:\r\n" },
	{ "both: mailto first, folded", "Subject: x\r\n",
	  { .unsub_url = URL, .unsub_mailto = MAILTO, .campaign = "c1", .tenant = "t1",
	    .pool = "p1", .sender = "esp" },
	  "List-Unsubscribe: <" MAILTO ">,\r\n <" URL ">\r\n" POST
	  "Feedback-ID: c1:t1:p1:esp\r\n" },
	{ "the message's own List-Unsubscribe wins (no Post either)",
	  "list-unsubscribe: <mailto:own@x>\r\n", { .unsub_url = URL, .pool = "p" },
	  "Feedback-ID: ::p:\r\n" },
	{ "the message's own Post is not doubled", "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
	  { .unsub_url = URL, .pool = "p" }, "List-Unsubscribe: <" URL ">\r\nFeedback-ID: ::p:\r\n" },
	{ "job feedback_id overrides", "", { .feedback_id = "x:y:z", .campaign = "c", .pool = "p" },
	  "Feedback-ID: x:y:z\r\n" },
	{ "the message's own Feedback-ID wins", "Feedback-ID: a:b\r\n",
	  { .feedback_id = "x:y:z", .pool = "p" }, "" },
	{ "hostile tags are sanitised", "",
	  { .campaign = "spring\r\nBcc: v@x", .tenant = "a:b c", .pool = "p", .sender = "s" },
	  "Feedback-ID: spring__Bcc__v@x:a_b_c:p:s\r\n" },
	{ "long tags are cut", "",
	  { .campaign = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
	    .pool = "p" },
	  "Feedback-ID: cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc::p:\r\n" },
};

static void
test_job_lines(void **state)
{
	for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++) {
		struct buf b = { 0 };

		hdr_job_lines(&b, jobs[i].headers, strlen(jobs[i].headers), &jobs[i].in);
		buf_append(&b, "", 1);
		if (strcmp(b.data, jobs[i].want) != 0)
			print_message("case: %s\n", jobs[i].what);
		assert_string_equal(b.data, jobs[i].want);
		assert_null(strstr(b.data, "\r\nBcc"));
		buf_free(&b);
	}
}

static void
test_expand(void **state)
{
	struct hdr_vars v = { .id = "job 1", .to = "Ann+x@b.test", .campaign = "c/1\r\n",
	    .tenant = NULL, .pool = "p" };
	char *s = hdr_expand("https://u.example/u?id={id}&r={to}&c={campaign}&t={tenant}"
	    "&p={pool}&k={unknown}", &v);
	char big[1000];

	assert_string_equal(s, "https://u.example/u?id=job%201&r=Ann%2Bx%40b.test&c=c%2F1%0D%0A"
	    "&t=&p=p&k={unknown}");
	free(s);
	/* past the cap: NULL, the caller leaves the header out */
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	v.campaign = big;
	assert_null(hdr_expand("https://u.example/{campaign}", &v));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_present),
		cmocka_unit_test(test_present_stuffed),
		cmocka_unit_test(test_fold),
		cmocka_unit_test(test_date_and_id),
		cmocka_unit_test(test_body_lines),
		cmocka_unit_test(test_job_lines),
		cmocka_unit_test(test_expand),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
