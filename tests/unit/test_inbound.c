/*
 * test_inbound.c - the inbound pipeline's decision: every sample under
 * tests/fixtures/dsn and tests/fixtures/arf (and a few hand-made inputs)
 * against what it must come to: events (status, class, enhanced code,
 * recipient, suppression) for which job and by which link, unmatched
 * with a reason, or ignored (delay notices). Also the two verdicts in
 * trouble.c (trouble_async_bounce, trouble_complaint) and the id key.
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

#include "classify.h"
#include "config.h"
#include "inbound.h"
#include "trouble.h"
#include "util.h"
#include "fixture.h"

#define TPL "bounces+{id}@bounces.example.com"

struct want {
	const char *file;		/* fixture, or NULL: text is the message */
	const char *text;
	const char *rcpts;		/* envelope recipients */
	enum inbound_kind kind;
	const char *job, *link;		/* EVENTS */
	size_t nevents;
	const char *status;		/* first event */
	const char *cls;		/* first event's class, "" none */
	const char *enh;
	const char *rcpt;
	int suppress;
	const char *reason;		/* UNMATCHED / IGNORED: substring */
};

static const struct want cases[] = {
	/* a hard bounce: invalid recipient, suppress; the envelope's VERP first */
	{ "dsn/hard-user-unknown.eml", NULL, "bounces+job-1@bounces.example.com",
	    INBOUND_EVENTS, "job-1", "verp-envelope", 1, "bounced", "invalid_recipient", "5.1.1",
	    "alice@example.net", 1, NULL },
	/* no envelope (platform XADD of msg only): the id header */
	{ "dsn/hard-user-unknown.eml", NULL, NULL,
	    INBOUND_EVENTS, "job-8812", "id-header", 1, "bounced", "invalid_recipient", "5.1.1",
	    "alice@example.net", 1, NULL },
	/* an envelope that is not VERP, then one that is, comma-separated */
	{ "dsn/hard-user-unknown.eml", NULL, "postmaster@bounces.example.com, <bounces+j-9@BOUNCES.example.com>",
	    INBOUND_EVENTS, "j-9", "verp-envelope", 1, "bounced", "invalid_recipient", "5.1.1",
	    "alice@example.net", 1, NULL },
	{ "dsn/exchange-ndr.eml", NULL, NULL,
	    INBOUND_EVENTS, "job-7733", "id-header", 1, "bounced", NULL, NULL,
	    "carol@contoso.example", -1, NULL },
	/* two failed recipients and one delayed: one event per failure */
	{ "dsn/postfix-multi-rcpt.eml", NULL, NULL,
	    INBOUND_EVENTS, "job-1001", "id-header", 2, "bounced", NULL, NULL,
	    "erin@example.net", -1, NULL },
	/* delays change nothing */
	{ "dsn/delayed-mailbox-full.eml", NULL, NULL,
	    INBOUND_IGNORED, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0, "delayed only" },
	{ "dsn/exim-delayed.eml", NULL, NULL,
	    INBOUND_IGNORED, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0, "delayed only" },
	{ "dsn/gmail-delayed.eml", NULL, NULL,
	    INBOUND_IGNORED, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0, "delayed" },
	/* complaints: always suppress; Yahoo's redacted recipient has none */
	{ "arf/abuse-report.eml", NULL, NULL,
	    INBOUND_EVENTS, "job-8813", "id-header", 1, "complained", "", "",
	    "dave@isp.example", 1, NULL },
	{ "arf/redacted-yahoo-style.eml", NULL, NULL,
	    INBOUND_EVENTS, "job-8814", "id-header", 1, "complained", "", "", "", 1, NULL },
	{ "arf/jmrp.eml", NULL, NULL,
	    INBOUND_EVENTS, "job-1012", "id-header", 1, "complained", "", "", NULL, 1, NULL },
	/* free-text complaint: kept for an operator */
	{ "arf/not-arf-forward.eml", NULL, NULL,
	    INBOUND_UNMATCHED, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0, "not in ARF" },
	/* not a report */
	{ "dsn/garbage.eml", NULL, NULL,
	    INBOUND_UNMATCHED, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0, "not a report" },
	{ "dsn/vacation.eml", NULL, NULL,
	    INBOUND_UNMATCHED, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0, "not a report" },
	{ NULL, "hello\r\n", "bounces+j-1@bounces.example.com",
	    INBOUND_UNMATCHED, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0, "not a report" },
	{ NULL, "", NULL,
	    INBOUND_UNMATCHED, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0, "empty message" },
	/* a bounce with no way back to the job */
	{ NULL, "From: MAILER-DAEMON@x.example\r\nTo: someone@else.example\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n"
	    "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x.example\r\n\r\n"
	    "Final-Recipient: rfc822; zed@y.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
	    "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n--b--\r\n",
	    "abuse@bounces.example.com",
	    INBOUND_UNMATCHED, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0, "no job id" },
	/* a mailbox-full failure (4.2.2 after retries): bounced, never suppress */
	{ NULL, "From: MAILER-DAEMON@x.example\r\nTo: bounces+j-7@bounces.example.com\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n"
	    "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x.example\r\n\r\n"
	    "Final-Recipient: rfc822; Full@Y.example\r\nAction: failed\r\nStatus: 4.2.2\r\n"
	    "Diagnostic-Code: smtp; 452 4.2.2 Mailbox full\r\n\r\n--b--\r\n",
	    NULL,
	    INBOUND_EVENTS, "j-7", "verp-to", 1, "bounced", "mailbox_full", "4.2.2",
	    "full@y.example", 0, NULL },
	/* a policy refusal: bounced, spam, never suppress */
	{ NULL, "From: MAILER-DAEMON@x.example\r\nTo: bounces+j-8@bounces.example.com\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n"
	    "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x.example\r\n\r\n"
	    "Final-Recipient: rfc822; p@y.example\r\nAction: failed\r\nStatus: 5.7.1\r\n"
	    "Diagnostic-Code: smtp; 554 5.7.1 Message rejected as spam\r\n\r\n--b--\r\n",
	    NULL,
	    INBOUND_EVENTS, "j-8", "verp-to", 1, "bounced", "spam_content", "5.7.1",
	    "p@y.example", 0, NULL },
};

static void
test_cases(void **state)
{
	struct classify_rules *rules = classify_rules_builtin();
	struct inbound_params p = { rules, NULL, TPL };

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct want *w = &cases[i];
		const char *name = w->file ? w->file : w->text;
		struct inbound_verdict v;
		size_t len;
		char *msg = w->file ? read_fixture(w->file, &len) : xstrdup(w->text);

		if (!w->file)
			len = strlen(msg);
		inbound_decide(&p, msg, len, w->rcpts, &v);
		if (v.kind != w->kind)
			fail_msg("%zu %s: kind %d, want %d (%s)", i, name, v.kind, w->kind, v.reason);
		if (w->reason && strstr(v.reason, w->reason) == NULL)
			fail_msg("%zu %s: reason \"%s\", want \"%s\"", i, name, v.reason, w->reason);
		if (w->kind == INBOUND_EVENTS) {
			const struct inbound_event *e = &v.events[0];
			if (strcmp(v.job_id, w->job) != 0 || strcmp(v.link, w->link) != 0)
				fail_msg("%zu %s: job %s via %s, want %s via %s", i, name, v.job_id,
				    v.link, w->job, w->link);
			if (v.nevents != w->nevents)
				fail_msg("%zu %s: %zu events, want %zu", i, name, v.nevents, w->nevents);
			assert_string_equal(job_status_name(e->o.status), w->status);
			assert_int_equal(e->o.async, e->o.status == JOB_BOUNCED);
			if (w->cls && strcmp(w->cls, e->o.has_class ?
			    bounce_class_name(e->o.cls) : "") != 0)
				fail_msg("%zu %s: class %s, want %s", i, name,
				    bounce_class_name(e->o.cls), w->cls);
			if (w->enh)
				assert_string_equal(e->o.enh, w->enh);
			if (w->rcpt)
				assert_string_equal(e->rcpt, w->rcpt);
			if (w->suppress >= 0 && e->o.suppress != w->suppress)
				fail_msg("%zu %s: suppress %d, want %d", i, name, e->o.suppress,
				    w->suppress);
			for (size_t k = 0; k < v.nevents; k++) {
				/* the verdict's invariant: a bounce suppresses only
				 * for the recipient classes */
				const struct inbound_event *x = &v.events[k];
				if (x->o.status == JOB_BOUNCED && x->o.suppress)
					assert_true(bounce_class_suppresses(x->o.cls));
				assert_true(x->why[0] != '\0');
			}
		} else {
			assert_int_equal(v.nevents, 0);
		}
		inbound_verdict_free(&v);
		free(msg);
	}
	classify_rules_free(rules);
}

/* A message with no msg field, and a renamed id header. */
static void
test_no_msg_and_header(void **state)
{
	struct classify_rules *rules = classify_rules_builtin();
	struct inbound_params p = { rules, "X-Job-Id", NULL };
	struct inbound_verdict v;
	size_t len;
	char *msg = read_fixture("dsn/hard-user-unknown.eml", &len);

	(void)state;
	inbound_decide(&p, NULL, 0, NULL, &v);
	assert_int_equal(v.kind, INBOUND_UNMATCHED);
	assert_string_equal(v.reason, "no msg field");
	inbound_verdict_free(&v);
	/* X-Volley-Id is not the configured header, no VERP template: no job */
	inbound_decide(&p, msg, len, "bounces+job-1@bounces.example.com", &v);
	assert_int_equal(v.kind, INBOUND_UNMATCHED);
	assert_non_null(strstr(v.reason, "X-Job-Id"));
	inbound_verdict_free(&v);
	free(msg);
	classify_rules_free(rules);
}

static void
test_trouble_verdicts(void **state)
{
	static const struct {
		enum bounce_class cls;
		int suppress;
	} b[] = {
		{ CLASS_INVALID_RECIPIENT, 1 }, { CLASS_BAD_DOMAIN, 1 }, { CLASS_INACTIVE_MAILBOX, 1 },
		{ CLASS_MAILBOX_FULL, 0 }, { CLASS_SPAM_CONTENT, 0 }, { CLASS_REPUTATION_BLOCK, 0 },
		{ CLASS_UNKNOWN, 0 }, { CLASS_RATE_LIMITED, 0 },
	};
	static const struct {
		const char *type;
		int suppress;
	} c[] = {
		{ "abuse", 1 }, { "fraud", 1 }, { "virus", 1 }, { "other", 1 }, { "", 1 },
		{ "not-spam", 0 }, { "auth-failure", 0 }, { "Auth-Failure", 0 },
	};
	struct job_outcome o;

	(void)state;
	for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
		trouble_async_bounce(b[i].cls, 550, "5.1.1", "550 5.1.1 x\r\ny", &o);
		assert_int_equal(o.status, JOB_BOUNCED);
		assert_int_equal(o.async, 1);
		assert_int_equal(o.has_class, 1);
		assert_int_equal(o.suppress, b[i].suppress);
		assert_int_equal(o.slow_down, 0);
		assert_null(strchr(o.reply, '\n'));
	}
	trouble_async_bounce(CLASS_UNKNOWN, 42, NULL, NULL, &o);
	assert_int_equal(o.code, 0);
	assert_string_equal(o.enh, "");
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		trouble_complaint(c[i].type, &o);
		assert_int_equal(o.status, JOB_COMPLAINED);
		assert_false(job_status_final(o.status));
		assert_int_equal(o.suppress, c[i].suppress);
	}
}

static void
test_id_key(void **state)
{
	char k[16];

	(void)state;
	inbound_id_key("job-1_a.b", k, sizeof k);
	assert_string_equal(k, "job-1_a.b");
	inbound_id_key("odd/id+x:y", k, sizeof k);
	assert_string_equal(k, "odd=id=x=y");
	inbound_id_key("0123456789abcdefghij", k, sizeof k);
	assert_string_equal(k, "0123456789abcde");
	inbound_id_key(NULL, k, sizeof k);
	assert_string_equal(k, "");
}

/* inbound.keep_sent counts only with an inbound block. */
static void
test_keep_sent(void **state)
{
	static const struct {
		const char *text;
		uint64_t want;
	} c[] = {
		{ "smtp { ehlo = \"a.example\"; }\n", 0 },
		{ "inbound { }\n", 7ull * 86400000 },
		{ "inbound { keep_sent = 0; }\n", 0 },
		{ "inbound { keep_sent = 1h; }\n", 3600000 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		char *err = NULL;
		struct config *cfg = config_load_string(c[i].text, strlen(c[i].text), "t.conf", &err);
		if (cfg == NULL)
			fail_msg("%s: %s", c[i].text, err);
		assert_int_equal(config_keep_sent_ms(cfg), c[i].want);
		config_free(cfg);
	}
	{
		struct config *d = config_default();
		assert_int_equal(config_keep_sent_ms(d), 0);
		config_free(d);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_no_msg_and_header),
		cmocka_unit_test(test_trouble_verdicts),
		cmocka_unit_test(test_id_key),
		cmocka_unit_test(test_keep_sent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
