/*
 * test_trouble.c - every kind of SMTP result maps to the right job status
 * and bounce class (trouble.c), with the built-in classification rules.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "trouble.h"

struct tcase {
	const char *name;
	enum smtp_status st;
	enum smtp_cause cause;
	int code;
	const char *enh, *text;
	enum job_status want;
	int want_has_class;
	enum bounce_class want_cls;
};

static const struct tcase cases[] = {
	{ "delivered", SMTP_OK, SMTP_CAUSE_REPLY, 250, "2.0.0", "250 2.0.0 Ok: queued",
	  JOB_DELIVERED, 0, CLASS_UNKNOWN },
	{ "user unknown", SMTP_PERM, SMTP_CAUSE_REPLY, 550, "5.1.1",
	  "550 5.1.1 The email account that you tried to reach does not exist.",
	  JOB_BOUNCED, 1, CLASS_INVALID_RECIPIENT },
	{ "over quota 4xx", SMTP_TEMP, SMTP_CAUSE_REPLY, 452, "4.2.2", "452 4.2.2 Mailbox full",
	  JOB_DEFERRED, 1, CLASS_MAILBOX_FULL },
	{ "gmail rate", SMTP_TEMP, SMTP_CAUSE_REPLY, 421, "4.7.28",
	  "421 4.7.28 Our system has detected an unusual rate of unsolicited mail",
	  JOB_DEFERRED, 1, CLASS_RATE_LIMITED },
	{ "greylist", SMTP_TEMP, SMTP_CAUSE_REPLY, 451, "4.7.1", "451 4.7.1 Greylisting in action, please come back later",
	  JOB_DEFERRED, 1, CLASS_GREYLISTED },
	{ "timeout", SMTP_TEMP, SMTP_CAUSE_TIMEOUT, 0, "", "timeout waiting for reply to RCPT",
	  JOB_DEFERRED, 1, CLASS_CONNECTION_FAILURE },
	{ "disconnect", SMTP_TEMP, SMTP_CAUSE_DISCONNECT, 0, "", "connection lost after DATA",
	  JOB_DEFERRED, 1, CLASS_CONNECTION_FAILURE },
	{ "garbage", SMTP_TEMP, SMTP_CAUSE_PROTOCOL, 0, "", "protocol error: malformed reply to RCPT",
	  JOB_DEFERRED, 1, CLASS_PROTOCOL_ERROR },
	{ "size", SMTP_PERM, SMTP_CAUSE_SIZE, 0, "5.3.4", "message size 2048 exceeds server limit 1000",
	  JOB_BOUNCED, 1, CLASS_MESSAGE_TOO_LARGE },
	{ "unsafe rcpt", SMTP_PERM, SMTP_CAUSE_PROTOCOL, 0, "5.1.3", "invalid recipient address: control characters",
	  JOB_BOUNCED, 1, CLASS_INVALID_RECIPIENT },
	{ "no reply at all", SMTP_TEMP, SMTP_CAUSE_SESSION, 0, "", "connect: Connection refused",
	  JOB_DEFERRED, 1, CLASS_CONNECTION_FAILURE },
};

static void
test_table(void **state)
{
	struct classify_rules *rules = classify_rules_builtin();

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct tcase *c = &cases[i];
		struct smtp_result r;
		struct job_outcome o;

		memset(&r, 0, sizeof r);
		r.status = c->st;
		r.cause = c->cause;
		r.code = c->code;
		snprintf(r.enh, sizeof r.enh, "%s", c->enh);
		snprintf(r.text, sizeof r.text, "%s", c->text);
		trouble_from_smtp(rules, &r, 1, &o);
		if (o.status != c->want || o.has_class != c->want_has_class ||
		    (c->want_has_class && o.cls != c->want_cls))
			fail_msg("case '%s': status %s class %s, want %s %s", c->name,
			    job_status_name(o.status), o.has_class ? bounce_class_name(o.cls) : "-",
			    job_status_name(c->want),
			    c->want_has_class ? bounce_class_name(c->want_cls) : "-");
		assert_int_equal(o.code, c->code);
		assert_string_equal(o.enh, c->enh);
		assert_string_equal(o.reply, c->text);
	}
	classify_rules_free(rules);
}

static void
test_site_failure_defers(void **state)
{
	struct classify_rules *rules = classify_rules_builtin();
	struct smtp_result r;
	struct job_outcome o;

	/* A 5xx greeting says nothing about the recipient: retry later. */
	memset(&r, 0, sizeof r);
	r.status = SMTP_PERM;
	r.cause = SMTP_CAUSE_SESSION;
	r.stage = SMTP_STAGE_GREETING;
	r.code = 554;
	snprintf(r.text, sizeof r.text, "554 mx.test no SMTP service here");
	trouble_from_site(rules, &r, &o);
	assert_int_equal(o.status, JOB_DEFERRED);
	assert_int_equal(o.code, 554);
	assert_true(o.has_class);
	classify_rules_free(rules);
}

static void
test_reply_is_one_line(void **state)
{
	struct job_outcome o;

	trouble_outcome_init(&o, JOB_FAILED);
	trouble_set_reply(&o, "line one\r\nRCPT TO:<x@y>\nthree");
	assert_null(strchr(o.reply, '\r'));
	assert_null(strchr(o.reply, '\n'));
	assert_string_equal(o.reply, "line one  RCPT TO:<x@y> three");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_site_failure_defers),
		cmocka_unit_test(test_reply_is_one_line),
	};
	return cmocka_run_group_tests_name("trouble", tests, NULL, NULL);
}
