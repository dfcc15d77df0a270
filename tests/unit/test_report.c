/*
 * test_report.c - bounces and feedback reports: every sample under
 * tests/fixtures/dsn and tests/fixtures/arf against what it must yield
 * (kind, format, recipients with action/status/diagnostic, the job it
 * belongs to and how it was found, the complained-about recipient);
 * VERP inversion; the link order of report_job_id(); CRLF and LF alike;
 * every prefix of every sample and hostile inputs rejected cleanly.
 * Run from the repository root (make unit does), or set VOLLEY_FIXTURES.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "classify.h"
#include "mime.h"
#include "report.h"
#include "util.h"
#include "fixture.h"

#define TPL "bounces+{id}@bounces.example.com"

struct want_rcpt {
	const char *addr, *action, *status, *diag;	/* diag: a prefix */
};

struct golden {
	const char *file;
	int rc;
	const char *kind, *format;
	const char *job, *via;		/* report_job_id() with no envelope */
	const char *complained;		/* ARF: complained_rcpt */
	const char *reason;		/* UNKNOWN / NOT_ARF: a prefix */
	size_t nrcpts;
	struct want_rcpt r[3];
};

static const struct golden golden[] = {
	/* RFC 3464, with the shared samples first */
	{ "dsn/hard-user-unknown.eml", 0, "dsn", "rfc3464", "job-8812", "id-header", "", "", 1, {
		{ "alice@example.net", "failed", "5.1.1",
		  "550 5.1.1 <alice@example.net>: Recipient address rejected: User unknown in virtual mailbox table" } } },
	{ "dsn/delayed-mailbox-full.eml", 0, "dsn", "rfc3464", "job-9001", "id-header", "", "", 1, {
		{ "bob@example.org", "delayed", "4.2.2", "452 4.2.2 Mailbox full" } } },
	{ "dsn/exchange-ndr.eml", 0, "dsn", "rfc3464", "job-7733", "id-header", "", "", 1, {
		{ "carol@contoso.example", "failed", "5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound;" } } },
	{ "dsn/postfix-multi-rcpt.eml", 0, "dsn", "rfc3464", "job-1001", "id-header", "", "", 3, {
		{ "erin@example.net", "failed", "5.1.1", "550 5.1.1 <erin@example.net>: Recipient address rejected" },
		{ "frank@example.net", "failed", "5.2.2", "552 5.2.2 <frank@example.net>: Mailbox full" },
		{ "gina@example.net", "delayed", "4.4.1", "connect to store2.example.net" } } },
	{ "dsn/o365-ndr.eml", 0, "dsn", "rfc3464", "job-1005", "id-header", "", "", 1, {
		{ "mike@fabrikam.example", "failed", "5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound" } } },
	{ "dsn/gmail-dsn-base64.eml", 0, "dsn", "rfc3464", "job-1008", "id-header", "", "", 1, {
		{ "paul@corp.example", "failed", "5.7.26", "550-5.7.26 This mail has been blocked" } } },
	{ "dsn/sendmail-qp.eml", 0, "dsn", "rfc3464", "job-1011", "verp-to", "", "", 1, {
		{ "sam@mimecast-customer.example", "failed", "5.0.0", "554 Email rejected due to security policies" } } },
	{ "dsn/global-dsn.eml", 0, "dsn", "rfc3464", "job-1020", "id-header", "", "", 1, {
		{ "zo\xc3\xa9@exemple.example", "failed", "5.7.1", "554 5.7.1 Service unavailable; Client host" } } },
	{ "dsn/truncated.eml", 0, "dsn", "rfc3464", "job-8812", "verp-to", "", "", 1, {
		{ "alice@example.net", "failed", "5.1.1", "" } } },
	/* bounces without a delivery-status part */
	{ "dsn/exim-text.eml", 0, "dsn", "exim", "job-1002", "id-header", "", "", 2, {
		{ "henry@exim.example", "failed", "5.1.1", "550 5.1.1 <henry@exim.example>: Recipient address rejected: User unknown" },
		{ "ivy@exim.example", "failed", "5.2.1", "550 5.2.1 <ivy@exim.example>: This mailbox has been disabled" } } },
	{ "dsn/exim-delayed.eml", 0, "dsn", "exim", "job-1003", "id-header", "", "", 1, {
		{ "jack@slow.example", "delayed", "4.7.1", "451 4.7.1 Greylisted, please try again later" } } },
	{ "dsn/qmail.eml", 0, "dsn", "qmail", "job-1004", "id-header", "", "", 2, {
		{ "kate@qmail.example", "failed", "5.1.1", "Sorry, no mailbox here by that name. (#5.1.1)" },
		{ "leo@far.example", "failed", "5.7.1", "550 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org" } } },
	{ "dsn/exchange-text-only.eml", 0, "dsn", "exchange", "job-1006", "id-header", "", "", 1, {
		{ "nina@legacy.example", "failed", "5.1.1", "550 5.1.1 RESOLVER.ADR.RecipNotFound" } } },
	{ "dsn/gmail-text.eml", 0, "dsn", "gmail", "job-1007", "id-header", "", "", 1, {
		{ "oscar@gmail.example", "failed", "5.1.1", "550 5.1.1 The email account that you tried to reach does not exist." } } },
	{ "dsn/gmail-delayed.eml", 0, "dsn", "gmail", "job-1010", "verp-to", "", "", 1, {
		{ "rita@busy.example", "delayed", "4.7.0", "421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred" } } },
	{ "dsn/yahoo-text.eml", 0, "dsn", "yahoo", "job-1009", "id-header", "", "", 1, {
		{ "quinn@yahoo.example", "failed", "5.0.0", "554 delivery error: dd This user doesn't have a yahoo.example account" } } },
	{ "dsn/postfix-text.eml", 0, "dsn", "postfix", "job-1030", "id-header", "", "", 2, {
		{ "olga@store.example", "failed", "5.1.1", "550 5.1.1 <olga@store.example>: Recipient address rejected: User unknown in virtual mailbox table" },
		{ "pete@full.example", "failed", "5.2.2", "552 5.2.2 <pete@full.example>: Recipient address rejected: Mailbox full" } } },
	{ "dsn/postfix-delayed-text.eml", 0, "dsn", "postfix", "job-1031", "verp-to", "", "", 1, {
		{ "quentin@slow.example", "delayed", "4.7.1", "451 4.7.1 <quentin@slow.example>: Recipient address rejected: Greylisted" } } },
	{ "dsn/o365-html-only.eml", 0, "dsn", "exchange", "job-1032", "id-header", "", "", 1, {
		{ "rosa@fabrikam.example", "failed", "5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup" } } },
	/* feedback reports */
	{ "arf/abuse-report.eml", 0, "arf", "arf", "job-8813", "id-header", "dave@isp.example", "", 0, { { 0 } } },
	{ "arf/redacted-yahoo-style.eml", 0, "arf", "yahoo-arf", "job-8814", "id-header", "", "", 0, { { 0 } } },
	{ "arf/jmrp.eml", 0, "arf", "jmrp", "job-1012", "id-header", "tom@outlook.example", "", 0, { { 0 } } },
	{ "arf/jmrp-legacy.eml", 0, "arf", "jmrp", "job-1033", "id-header", "sven@outlook.example", "", 0, { { 0 } } },
	{ "arf/aol-base64.eml", 0, "arf", "arf", "job-1013", "id-header", "ursula@aol.example", "", 0, { { 0 } } },
	{ "arf/fraud-headers-only.eml", 0, "arf", "arf", "job-1014", "id-header", "victor@mailbox.example", "", 0, { { 0 } } },
	{ "arf/not-arf-forward.eml", 0, "not_arf", "text", "job-1015", "id-header", "",
	  "abuse report without a message/feedback-report part", 0, { { 0 } } },
	/* not reports */
	{ "dsn/vacation.eml", -1, "unknown", "", "job-1016", "verp-to", "", "an automatic reply, not a report", 0, { { 0 } } },
	{ "dsn/garbage.eml", -1, "unknown", "", "", NULL, "", "not a delivery status or feedback report", 0, { { 0 } } },
	{ "dsn/garbage-nested.eml", -1, "unknown", "", "", NULL, "", "multiparts nested deeper than 8", 0, { { 0 } } },
};

static void
check_golden(const struct golden *g, const char *msg, size_t len, const char *how)
{
	struct report r;
	char id[128];
	const char *via;
	int rc = report_parse(msg, len, NULL, &r);

	if (rc != g->rc || strcmp(report_kind_name(r.kind), g->kind) != 0 ||
	    strcmp(r.format, g->format) != 0 || strncmp(r.reason, g->reason, strlen(g->reason)) != 0)
		fail_msg("%s (%s): rc %d kind %s format '%s' reason '%s'", g->file, how, rc,
		    report_kind_name(r.kind), r.format, r.reason);
	if (r.nrcpts != g->nrcpts)
		fail_msg("%s (%s): %zu recipients, want %zu", g->file, how, r.nrcpts, g->nrcpts);
	for (size_t i = 0; i < g->nrcpts; i++) {
		const struct report_rcpt *x = &r.rcpts[i];
		const struct want_rcpt *w = &g->r[i];

		if (strcmp(x->final_rcpt, w->addr) != 0 || strcmp(report_action_name(x->action), w->action) != 0 ||
		    strcmp(x->status, w->status) != 0 || strncmp(x->diag, w->diag, strlen(w->diag)) != 0)
			fail_msg("%s (%s) rcpt %zu: %s %s %s '%s'", g->file, how, i, x->final_rcpt,
			    report_action_name(x->action), x->status, x->diag);
		assert_int_equal(report_rcpt_is_failure(x), x->action == REPORT_ACTION_FAILED);
	}
	via = report_job_id(&r, NULL, TPL, id, sizeof id);
	if (strcmp(id, g->job) != 0 || (via == NULL) != (g->via == NULL) ||
	    (via != NULL && strcmp(via, g->via) != 0))
		fail_msg("%s (%s): job '%s' via %s", g->file, how, id, via ? via : "-");
	if (strcmp(r.complained_rcpt, g->complained) != 0)
		fail_msg("%s (%s): complained '%s'", g->file, how, r.complained_rcpt);
	report_free(&r);
}

static void
test_golden(void **state)
{
	for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
		size_t len;
		char *msg = read_fixture(golden[i].file, &len);
		struct buf other = { 0 };

		check_golden(&golden[i], msg, len, "as stored");
		/* the same with the other line ending */
		for (size_t k = 0; k < len; k++) {
			if (msg[k] == '\r' && k + 1 < len && msg[k + 1] == '\n')
				continue;
			buf_append(&other, msg[k] == '\n' ? "\r\n" : msg + k, msg[k] == '\n' ? 2 : 1);
		}
		if (memchr(msg, '\r', len) != NULL) {
			buf_free(&other);
			for (size_t k = 0; k < len; k++)
				if (!(msg[k] == '\r' && k + 1 < len && msg[k + 1] == '\n'))
					buf_append(&other, msg + k, 1);
		}
		if (strcmp(golden[i].file, "dsn/garbage.eml") != 0)
			check_golden(&golden[i], other.data, other.len, "line endings swapped");
		buf_free(&other);
		free(msg);
	}
}

/* A DSN in detail: every field of the shared Postfix sample. */
/* Each recipient of each sample gets the class an operator would give it. */
static void
test_classes(void **state)
{
	static const struct { const char *file; const char *cls[3]; } cases[] = {
		{ "dsn/hard-user-unknown.eml", { "invalid_recipient" } },
		{ "dsn/delayed-mailbox-full.eml", { "mailbox_full" } },
		{ "dsn/exchange-ndr.eml", { "invalid_recipient" } },
		{ "dsn/postfix-multi-rcpt.eml", { "invalid_recipient", "mailbox_full", "connection_failure" } },
		{ "dsn/o365-ndr.eml", { "invalid_recipient" } },
		{ "dsn/gmail-dsn-base64.eml", { "auth_failure" } },
		{ "dsn/sendmail-qp.eml", { "spam_content" } },
		{ "dsn/global-dsn.eml", { "reputation_block" } },
		{ "dsn/truncated.eml", { "invalid_recipient" } },
		{ "dsn/exim-text.eml", { "invalid_recipient", "inactive_mailbox" } },
		{ "dsn/exim-delayed.eml", { "greylisted" } },
		{ "dsn/qmail.eml", { "invalid_recipient", "reputation_block" } },
		{ "dsn/exchange-text-only.eml", { "invalid_recipient" } },
		{ "dsn/gmail-text.eml", { "invalid_recipient" } },
		{ "dsn/gmail-delayed.eml", { "rate_limited" } },
		{ "dsn/yahoo-text.eml", { "invalid_recipient" } },
		{ "dsn/postfix-text.eml", { "invalid_recipient", "mailbox_full" } },
		{ "dsn/postfix-delayed-text.eml", { "greylisted" } },
		{ "dsn/o365-html-only.eml", { "invalid_recipient" } },
	};
	struct classify_rules *rules = classify_rules_builtin();

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t len;
		char *msg = read_fixture(cases[i].file, &len);
		struct report r;

		assert_int_equal(report_parse(msg, len, NULL, &r), 0);
		for (size_t k = 0; k < r.nrcpts; k++) {
			struct classify_match m;
			enum bounce_class c = report_rcpt_classify(rules, &r.rcpts[k], &m);

			assert_non_null(cases[i].cls[k]);
			if (strcmp(bounce_class_name(c), cases[i].cls[k]) != 0)
				fail_msg("%s rcpt %zu: %s (rule %s), want %s", cases[i].file, k,
				    bounce_class_name(c), m.rule, cases[i].cls[k]);
		}
		report_free(&r);
		free(msg);
	}
	/* no SMTP reply: the status and the words, the code known by its class only */
	struct report_rcpt rc = { .status = "5.0.0", .diag = "Email rejected due to security policies" };

	assert_int_equal(report_rcpt_classify(rules, &rc, NULL), CLASS_SPAM_CONTENT);
	snprintf(rc.diag, sizeof rc.diag, "mailbox unavailable");	/* a code=550 rule: not for a guess */
	assert_int_equal(report_rcpt_classify(rules, &rc, NULL), CLASS_UNKNOWN);
	snprintf(rc.diag, sizeof rc.diag, "550 no such user here");
	assert_int_equal(report_rcpt_classify(rules, &rc, NULL), CLASS_INVALID_RECIPIENT);
	snprintf(rc.diag, sizeof rc.diag, "550");
	snprintf(rc.status, sizeof rc.status, "5.2.2");
	assert_int_equal(report_rcpt_classify(rules, &rc, NULL), CLASS_MAILBOX_FULL);
	classify_rules_free(rules);
}

static void
test_dsn_fields(void **state)
{
	size_t len;
	char *msg = read_fixture("dsn/hard-user-unknown.eml", &len);
	struct report r;

	assert_int_equal(report_parse(msg, len, "X-Volley-Id", &r), 0);
	assert_string_equal(r.to, "bounces+job-8812@bounces.example.com");
	assert_string_equal(r.from, "MAILER-DAEMON@mx.example.net");
	assert_string_equal(r.subject, "Undelivered Mail Returned to Sender");
	assert_string_equal(r.reporting_mta, "mx.example.net");
	assert_string_equal(r.rcpts[0].original_rcpt, "alice@example.net");
	assert_string_equal(r.rcpts[0].diag_type, "smtp");
	assert_string_equal(r.rcpts[0].remote_mta, "store.example.net");
	assert_int_equal(r.original.found, 1);
	assert_string_equal(r.original.job_id, "job-8812");
	assert_string_equal(r.original.return_path, "bounces+job-8812@bounces.example.com");
	assert_string_equal(r.original.to, "alice@example.net");
	assert_string_equal(r.original.message_id, "<job-8812@mta1.example.com>");
	assert_string_equal(r.original.subject, "Autumn sale");
	report_free(&r);

	/* another id header name: not found in the original, VERP still works */
	char id[64];

	assert_int_equal(report_parse(msg, len, "X-Job", &r), 0);
	assert_string_equal(r.original.job_id, "");
	assert_string_equal(report_job_id(&r, NULL, TPL, id, sizeof id), "verp-to");
	assert_string_equal(id, "job-8812");
	assert_null(report_job_id(&r, NULL, NULL, id, sizeof id));
	assert_string_equal(id, "");
	/* the envelope recipient wins over everything */
	assert_string_equal(report_job_id(&r, "<bounces+job-1@BOUNCES.example.com>", TPL, id, sizeof id),
	    "verp-envelope");
	assert_string_equal(id, "job-1");
	report_free(&r);
	free(msg);
}

static void
test_arf_fields(void **state)
{
	size_t len;
	char *msg = read_fixture("arf/abuse-report.eml", &len);
	struct report r;
	char id[64];

	assert_int_equal(report_parse(msg, len, NULL, &r), 0);
	assert_string_equal(r.feedback.feedback_type, "abuse");
	assert_string_equal(r.feedback.user_agent, "SomeGenerator/1.0");
	assert_string_equal(r.feedback.version, "1");
	assert_string_equal(r.feedback.original_mail_from, "bounces+job-8813@bounces.example.com");
	assert_string_equal(r.feedback.original_rcpt_to, "dave@isp.example");
	assert_string_equal(r.feedback.arrival_date, "Thu, 19 Nov 2026 10:02:11 +0000");
	assert_string_equal(r.feedback.source_ip, "192.0.2.10");
	assert_string_equal(r.feedback.reported_domain, "example.com");
	assert_string_equal(r.reporting_mta, "mail.isp.example");
	assert_int_equal(r.nrcpts, 0);
	report_free(&r);
	free(msg);

	/* Microsoft's older JMRP: no feedback-report part, an abuse complaint all the same */
	msg = read_fixture("arf/jmrp-legacy.eml", &len);
	assert_int_equal(report_parse(msg, len, NULL, &r), 0);
	assert_int_equal(r.kind, REPORT_ARF);
	assert_string_equal(r.feedback.feedback_type, "abuse");
	assert_string_equal(r.original.ms_original_rcpt, "sven@outlook.example");
	report_free(&r);
	free(msg);
	/* the same header in a text with no attached original is not enough */
	static const char stamped[] = "From: someone@example.org\nSubject: look at this spam\n\n"
	    "X-HmXmrOriginalRecipient: <sven@outlook.example>\nX-Volley-Id: job-9\n";

	assert_int_equal(report_parse(stamped, sizeof stamped - 1, NULL, &r), 0);
	assert_int_equal(r.kind, REPORT_NOT_ARF_ABUSE);
	report_free(&r);

	/* Yahoo: redacted everywhere; the id header and VERP are the links */
	msg = read_fixture("arf/redacted-yahoo-style.eml", &len);
	assert_int_equal(report_parse(msg, len, "X-Nothing", &r), 0);
	assert_string_equal(r.feedback.original_rcpt_to, "");
	assert_string_equal(r.complained_rcpt, "");
	assert_string_equal(report_job_id(&r, NULL, TPL, id, sizeof id), "verp-original-mail-from");
	assert_string_equal(id, "job-8814");
	report_free(&r);
	free(msg);

	/* fraud, two Original-Rcpt-To: the first one */
	msg = read_fixture("arf/fraud-headers-only.eml", &len);
	assert_int_equal(report_parse(msg, len, NULL, &r), 0);
	assert_string_equal(r.feedback.feedback_type, "fraud");
	assert_string_equal(r.feedback.source_ip, "2001:db8::25");
	report_free(&r);
	free(msg);
}

static void
test_verp(void **state)
{
	static const struct { const char *rcpt, *tpl, *want; } cases[] = {
		{ "bounces+job-1@bounces.example.com", TPL, "job-1" },
		{ "<bounces+job-1@bounces.example.com>", TPL, "job-1" },
		{ "Bounces+abc.def_g=h@Bounces.Example.COM", TPL, "abc.def_g=h" },
		{ "bounces+@bounces.example.com", TPL, NULL },		/* empty id */
		{ "bounces+x@other.example.com", TPL, NULL },
		{ "other+x@bounces.example.com", TPL, NULL },
		{ "bounces+a b@bounces.example.com", TPL, NULL },
		{ "bounces+x@bounces.example.com", "bounces@bounces.example.com", NULL },	/* no {id} */
		{ "b-x-y.example", "b-{id}.example", NULL },		/* not an address */
		{ "x-123-b@v.example", "x-{id}-b@v.example", "123" },
		{ "", TPL, NULL },
		{ NULL, TPL, NULL },
		{ "bounces+x@bounces.example.com", NULL, NULL },
	};
	char id[16];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rc = report_verp_id(cases[i].rcpt, cases[i].tpl, id, sizeof id);

		if (cases[i].want == NULL) {
			if (rc != -1)
				fail_msg("case %zu: matched '%s'", i, id);
			continue;
		}
		if (rc != 0 || strcmp(id, cases[i].want) != 0)
			fail_msg("case %zu: rc %d id '%s'", i, rc, rc == 0 ? id : "");
	}
	/* an id longer than the buffer is refused, never cut */
	assert_int_equal(report_verp_id("bounces+0123456789abcdef@bounces.example.com", TPL, id, sizeof id), -1);
}

/* Every prefix of every sample parses or is refused, cleanly and quickly. */
static void
test_prefixes(void **state)
{
	for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
		size_t len;
		char *msg = read_fixture(golden[i].file, &len);

		for (size_t n = 0; n <= len; n += 1 + n / 64) {
			struct report r;
			char *copy = xmalloc(n + 1);

			memcpy(copy, msg, n);	/* exactly n bytes, so ASan sees any overread */
			report_parse(copy, n, NULL, &r);
			assert_true(r.nrcpts <= REPORT_RCPTS_MAX);
			assert_true(strlen(r.reason) < sizeof r.reason);
			report_free(&r);
			free(copy);
		}
		free(msg);
	}
}

static void
test_hostile(void **state)
{
	struct report r;
	struct buf b = { 0 };
	char *big;
	clock_t t0;

	/* empty and oversized */
	assert_int_equal(report_parse("", 0, NULL, &r), -1);
	assert_string_equal(r.reason, "empty message");
	report_free(&r);
	big = xmalloc(MIME_INPUT_MAX + 1);
	memset(big, 'x', MIME_INPUT_MAX + 1);
	assert_int_equal(report_parse(big, MIME_INPUT_MAX + 1, NULL, &r), -1);
	assert_string_equal(r.reason, "message larger than 10485760 bytes");
	report_free(&r);

	/* 10 MB of text-bounce lines: linear time, recipients capped */
	t0 = clock();
	buf_appendf(&b, "Subject: failure notice\n\nHi. This is the qmail-send program at x.\n\n");
	while (b.len < MIME_INPUT_MAX - 64)
		buf_appendf(&b, "<u%zu@example.org>:\n550 5.1.1 no\n\n", b.len);
	assert_int_equal(report_parse(b.data, b.len, NULL, &r), 0);
	assert_int_equal(r.nrcpts, REPORT_RCPTS_MAX);
	report_free(&r);
	buf_free(&b);

	/* a delivery-status part with many thousands of groups */
	buf_appendf(&b, "Content-Type: multipart/report; boundary=z\n\n--z\n"
	    "Content-Type: message/delivery-status\n\n");
	while (b.len < MIME_INPUT_MAX / 2)
		buf_appendf(&b, "Final-Recipient: rfc822; a@b.example\nAction: failed\n\n");
	buf_appendf(&b, "--z--\n");
	assert_int_equal(report_parse(b.data, b.len, NULL, &r), 0);
	assert_int_equal(r.nrcpts, REPORT_RCPTS_MAX);
	report_free(&r);
	buf_free(&b);

	/* one huge header line, one huge base64 part */
	memcpy(big, "Subject: ", 9);
	assert_int_equal(report_parse(big, MIME_INPUT_MAX, NULL, &r), -1);
	report_free(&r);
	buf_appendf(&b, "Content-Type: multipart/report; boundary=z\n\n--z\n"
	    "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n");
	while (b.len < MIME_INPUT_MAX - 16)
		buf_append(&b, "QUFB", 4);
	assert_int_equal(report_parse(b.data, b.len, NULL, &r), -1);
	report_free(&r);
	buf_free(&b);
	assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 10.0);
	free(big);

	/* NUL bytes and control characters never reach the strings */
	static const char nul[] =
	    "Content-Type: multipart/report; boundary=z\n\n--z\nContent-Type: message/delivery-status\n\n"
	    "Final-Recipient: rfc822; a\0b@x.example\nAction: failed\nStatus: 5.1.1\n"
	    "Diagnostic-Code: smtp; 550 \033[31mred\r\n\n--z--\n";

	assert_int_equal(report_parse(nul, sizeof nul - 1, NULL, &r), 0);
	assert_int_equal(r.nrcpts, 1);
	assert_string_equal(r.rcpts[0].final_rcpt, "b@x.example");
	assert_string_equal(r.rcpts[0].diag, "550 [31mred");
	report_free(&r);
}

static void
test_names(void **state)
{
	assert_string_equal(report_kind_name(REPORT_UNKNOWN), "unknown");
	assert_string_equal(report_kind_name(REPORT_DSN), "dsn");
	assert_string_equal(report_kind_name(REPORT_ARF), "arf");
	assert_string_equal(report_kind_name(REPORT_NOT_ARF_ABUSE), "not_arf");
	assert_string_equal(report_action_name(REPORT_ACTION_NONE), "");
	assert_string_equal(report_action_name(REPORT_ACTION_EXPANDED), "expanded");

	struct report_rcpt rc = { .action = REPORT_ACTION_NONE, .status = "5.1.1" };

	assert_true(report_rcpt_is_failure(&rc));
	rc.action = REPORT_ACTION_DELAYED;	/* a delay is never a failure, whatever its status */
	assert_false(report_rcpt_is_failure(&rc));
	rc.action = REPORT_ACTION_NONE;
	memcpy(rc.status, "4.2.2", 6);
	assert_false(report_rcpt_is_failure(&rc));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden),
		cmocka_unit_test(test_classes),
		cmocka_unit_test(test_dsn_fields),
		cmocka_unit_test(test_arf_fields),
		cmocka_unit_test(test_verp),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests_name("report", tests, NULL, NULL);
}
