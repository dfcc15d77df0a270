/*
 * fuzz_report.c - libFuzzer target for the bounce and feedback-report
 * parser and the MIME walker under it.
 *
 * Checks what report.h and mime.h promise: no crash, leak or overread
 * (the sanitizers); the return value agrees with the kind; every string
 * in the result is NUL-terminated inside its buffer and free of control
 * bytes; the recipient count is capped; every part body lies inside the
 * input or inside the part's own decoded copy, and is no longer than the
 * input; report_job_id() and report_verp_id() never write past their
 * buffer, whatever the input; every recipient gets a class; a DSN has a
 * recipient, an ARF report a feedback type, a delay is never a failure.
 * `make fuzz-smoke` seeds it with tests/fixtures/dsn and arf (every
 * format: RFC 3464, Exim, qmail, Exchange text and HTML, Gmail, Yahoo,
 * Postfix text, ARF, JMRP old and new, not-ARF abuse; fuzz_report.seeds).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude \
 *     tests/fuzz/fuzz_report.c engine/report.c engine/mime.c engine/classify.c \
 *     engine/util.c -o /tmp/fz
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"
#include "report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_str(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n >= cap)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			abort();
}

#define CHECK(field) check_str(field, sizeof field)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct classify_rules *rules;
	const char *p = (const char *)data;
	struct report r;
	struct mime_msg m;
	char id[24];
	int rc;

	if (rules == NULL)
		rules = classify_rules_builtin();
	rc = report_parse(p, size, "X-Volley-Id", &r);

	if ((rc == 0) != (r.kind != REPORT_UNKNOWN) || r.nrcpts > REPORT_RCPTS_MAX)
		abort();
	if (r.kind == REPORT_UNKNOWN && r.reason[0] == '\0')
		abort();
	/* a DSN names at least one recipient; an ARF report (the older JMRP
	 * too) has a feedback type; every report names its format */
	if (r.format == NULL || (r.kind == REPORT_DSN && r.nrcpts == 0) ||
	    (r.kind == REPORT_ARF && r.feedback.feedback_type[0] == '\0'))
		abort();
	CHECK(r.reason);
	CHECK(r.to);
	CHECK(r.from);
	CHECK(r.subject);
	CHECK(r.reporting_mta);
	CHECK(r.complained_rcpt);
	CHECK(r.feedback.feedback_type);
	CHECK(r.feedback.user_agent);
	CHECK(r.feedback.original_mail_from);
	CHECK(r.feedback.original_rcpt_to);
	CHECK(r.feedback.source_ip);
	CHECK(r.original.job_id);
	CHECK(r.original.return_path);
	CHECK(r.original.to);
	CHECK(r.original.message_id);
	for (size_t i = 0; i < r.nrcpts; i++) {
		CHECK(r.rcpts[i].final_rcpt);
		CHECK(r.rcpts[i].original_rcpt);
		CHECK(r.rcpts[i].status);
		CHECK(r.rcpts[i].diag_type);
		CHECK(r.rcpts[i].diag);
		CHECK(r.rcpts[i].remote_mta);
		if (r.rcpts[i].final_rcpt[0] == '\0' && r.rcpts[i].original_rcpt[0] != '\0')
			abort();
		if ((unsigned)report_rcpt_classify(rules, &r.rcpts[i], NULL) >= CLASS__COUNT)
			abort();
		/* a delay is never a failure */
		if (r.rcpts[i].action == REPORT_ACTION_DELAYED && report_rcpt_is_failure(&r.rcpts[i]))
			abort();
	}
	report_job_id(&r, r.to, "bounces+{id}@bounces.example.com", id, sizeof id);
	if (strnlen(id, sizeof id) >= sizeof id)
		abort();
	report_free(&r);

	/* the input as an address, against a template made of its own bytes */
	if (size > 0 && size < 600) {
		char a[300], t[300];
		size_t h = size / 2;

		memcpy(a, p, h < 299 ? h : 299);
		a[h < 299 ? h : 299] = '\0';
		memcpy(t, p + h, size - h < 299 ? size - h : 299);
		t[size - h < 299 ? size - h : 299] = '\0';
		if (report_verp_id(a, t, id, sizeof id) == 0 && strnlen(id, sizeof id) >= sizeof id)
			abort();
	}

	if (mime_parse(p, size, &m) == 0) {
		for (size_t i = 0; i < m.n; i++) {
			const struct mime_part *pt = &m.parts[i];
			int in_input = pt->body >= p && pt->body + pt->body_len <= p + size;
			int in_owned = pt->owned != NULL && pt->body == pt->owned;

			if (!(in_input || in_owned) || pt->body_len > size || pt->depth > MIME_DEPTH_MAX)
				abort();
			if ((i == 0) != (pt->parent == -1))
				abort();
		}
	}
	mime_free(&m);
	return 0;
}
