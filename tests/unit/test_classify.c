/*
 * test_classify.c - bounce classification: every line of
 * tests/fixtures/replies.tsv classifies as given (the file is read, so a
 * new fixture line is a new test); rule names; enhanced-code boundaries;
 * rule files (order, errors with file:line); class names; suppression;
 * the provider corpus tests/fixtures/replies-corpus.tsv through the shipped
 * pools/bounce-rules.conf, with accuracy per provider.
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
#include <unistd.h>

#include "classify.h"
#include "smtp_reply.h"
#include "util.h"
#include "fixture.h"

/*
 * The corpus: real provider wording, one reply a line,
 * "REPLY<TAB>CLASS[<TAB>STAGE]". Every class is there; the accuracy
 * (replies that land in their class) is printed, and every line must.
 */
static void
test_fixtures(void **state)
{
	const char *dir = getenv("VOLLEY_FIXTURES");
	char path[512], line[4096];
	struct classify_rules *r = classify_rules_builtin();
	FILE *f;
	int n = 0, bad = 0, seen[CLASS__COUNT] = { 0 };

	snprintf(path, sizeof path, "%s/replies.tsv", dir ? dir : "tests/fixtures");
	f = fopen(path, "r");
	if (f == NULL)
		fail_msg("cannot open %s (run from the repository root)", path);
	while (fgets(line, sizeof line, f) != NULL) {
		char *tab, *stage;
		struct classify_match m;
		enum bounce_class want, got;

		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		tab = strchr(line, '\t');
		assert_non_null(tab);
		*tab++ = '\0';
		stage = strchr(tab, '\t');
		if (stage != NULL)
			*stage++ = '\0';
		if (bounce_class_from_name(tab, &want) < 0)
			fail_msg("fixture has unknown class '%s'", tab);
		got = classify_line_stage(r, stage, line, &m);
		assert_non_null(m.rule);
		if (got != want) {
			print_error("MISMATCH %s (rule %s) want %s: %s\n", bounce_class_name(got), m.rule,
			    tab, line);
			bad++;
		}
		seen[want]++;
		n++;
	}
	fclose(f);
	classify_rules_free(r);
	print_message("classify corpus: %d of %d replies in the right class (%.1f%%)\n", n - bad, n,
	    n ? 100.0 * (n - bad) / n : 0.0);
	assert_true(n >= 80);
	for (int c = 0; c < CLASS__COUNT; c++)
		if (seen[c] == 0)
			fail_msg("no reply of class %s in the corpus", bounce_class_name((enum bounce_class)c));
	assert_int_equal(bad, 0);
}

/*
 * The provider corpus: tests/fixtures/replies-corpus.tsv, rows of
 * "STAGE<TAB>REPLY<TAB>CLASS<TAB>PROVIDER<TAB>SOURCE", the reply as it
 * comes off the wire ("\n" between the lines of a multi-line reply). Each
 * goes through the reply parser and classify_reply_stage() as the engine
 * does, with the SHIPPED pools/bounce-rules.conf loaded as a rule file.
 * Prints the accuracy per provider (the table in docs/classify.md); every
 * row must land in its class.
 */
#define CORPUS_PROVIDERS 32

static void
test_corpus(void **state)
{
	const char *dir = getenv("VOLLEY_FIXTURES");
	char path[512], line[8192], *err = NULL;
	struct classify_rules *r = classify_rules_load("pools/bounce-rules.conf", &err);
	struct { char name[32]; int n, ok; } prov[CORPUS_PROVIDERS];
	size_t nprov = 0;
	int n = 0, bad = 0, lineno = 0, seen[CLASS__COUNT] = { 0 };
	FILE *f;

	if (r == NULL)
		fail_msg("pools/bounce-rules.conf: %s (run from the repository root)", err);
	snprintf(path, sizeof path, "%s/replies-corpus.tsv", dir ? dir : "tests/fixtures");
	f = fopen(path, "r");
	if (f == NULL)
		fail_msg("cannot open %s (run from the repository root)", path);
	while (fgets(line, sizeof line, f) != NULL) {
		char *col[5], *p = line, wire[4096];
		size_t w = 0, used = 0, k;
		struct smtp_reply rep;
		struct classify_match m;
		enum bounce_class want, got;

		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		for (int i = 0; i < 5; i++) {
			col[i] = p;
			p = strchr(p, '\t');
			if (p == NULL && i < 4)
				fail_msg("%s:%d: want 5 tab-separated columns", path, lineno);
			if (p != NULL)
				*p++ = '\0';
		}
		if (bounce_class_from_name(col[2], &want) < 0)
			fail_msg("%s:%d: unknown class '%s'", path, lineno, col[2]);
		/* "\n" in the file is a line break on the wire */
		for (const char *s = col[1]; *s && w + 3 < sizeof wire; s++) {
			if (s[0] == '\\' && s[1] == 'n') {
				wire[w++] = '\r';
				wire[w++] = '\n';
				s++;
			} else {
				wire[w++] = *s;
			}
		}
		wire[w++] = '\r';
		wire[w++] = '\n';
		if (smtp_reply_parse(wire, w, &rep, &used) != 1 || used != w)
			fail_msg("%s:%d: not one complete SMTP reply: %s", path, lineno, col[1]);
		got = classify_reply_stage(r, strcmp(col[0], "-") == 0 ? NULL : col[0], rep.code,
		    rep.enh, rep.text, &m);
		for (k = 0; k < nprov && strcmp(prov[k].name, col[3]) != 0; k++)
			;
		if (k == nprov) {
			assert_true(nprov < CORPUS_PROVIDERS);
			snprintf(prov[k].name, sizeof prov[k].name, "%s", col[3]);
			prov[k].n = prov[k].ok = 0;
			nprov++;
		}
		prov[k].n++;
		if (got == want) {
			prov[k].ok++;
		} else {
			print_error("MISMATCH %s:%d %s (rule %s at %s:%d) want %s: %s\n", path, lineno,
			    bounce_class_name(got), m.rule, m.file ? m.file : "-", m.line, col[2], col[1]);
			bad++;
		}
		seen[want]++;
		n++;
	}
	fclose(f);
	classify_rules_free(r);
	print_message("| provider | right class |\n|---|---|\n");
	for (size_t k = 0; k < nprov; k++)
		print_message("| %s | %d of %d |\n", prov[k].name, prov[k].ok, prov[k].n);
	print_message("| all | %d of %d (%.1f%%) |\n", n - bad, n, n ? 100.0 * (n - bad) / n : 0.0);
	assert_true(n >= 150);
	for (size_t k = 0; k < nprov; k++)
		if (prov[k].n < 10)
			fail_msg("provider %s has %d replies in the corpus, want at least 10", prov[k].name,
			    prov[k].n);
	assert_true(nprov >= 13);
	for (int c = 0; c < CLASS__COUNT; c++)
		if (seen[c] == 0)
			fail_msg("no reply of class %s in the corpus", bounce_class_name((enum bounce_class)c));
	assert_int_equal(bad, 0);
}

/* Which rule decides matters to operators reading logs: pin the names. */
static void
test_rule_names(void **state)
{
	static const struct { const char *line; const char *cls, *rule; } cases[] = {
		{ "550 5.1.1 The email account that you tried to reach does not exist.", "invalid_recipient", "gmail-no-such-user" },
		{ "550 5.1.1 <x@example.com>: Recipient address rejected: User unknown", "invalid_recipient", "enh-5.1.1" },
		{ "550 5.1.10 unknown", "invalid_recipient", "enh-5.1.10" },
		{ "550 5.1.2 bad destination system", "bad_domain", "enh-5.1.2" },
		{ "553 5.1.3 bad syntax", "invalid_recipient", "enh-5.1.x" },
		{ "550 5.2.1 mailbox disabled", "inactive_mailbox", "enh-5.2.1" },
		{ "452 4.2.2 The email account that you tried to reach is over quota.", "mailbox_full", "gmail-over-quota" },
		{ "552 5.2.2 sorry", "mailbox_full", "enh-x.2.2" },
		{ "552 5.2.3 too big", "message_too_large", "enh-x.2.3" },
		{ "552 5.3.4 too big", "message_too_large", "enh-x.3.4" },
		{ "451 4.7.1 Greylisting in action", "greylisted", "greylisted" },
		{ "450 4.2.0 <x@example.com>: Recipient address rejected: Greylisted", "greylisted", "greylisted" },
		{ "554 5.7.1 <d@example.org>: Relay access denied", "relay_denied", "relay-denied" },
		{ "553 5.1.8 <f@sender.test>: Sender address rejected: Domain not found", "auth_failure", "sender-rejected" },
		{ "450 4.1.8 <f@sender.test>: Sender address rejected: Domain not found", "auth_failure", "sender-rejected" },
		{ "553 5.1.8 bad sender domain", "auth_failure", "enh-x.1.8" },
		{ "501 5.1.7 Bad sender address syntax", "auth_failure", "enh-x.1.7" },
		{ "550 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org", "reputation_block", "rbl-spamhaus" },
		{ "550 5.7.1 listed at b.barracudacentral.org", "reputation_block", "rbl-barracuda" },
		{ "550 5.7.1 Message rejected as spam", "spam_content", "spam-content" },
		{ "550 5.7.26 unauthenticated", "auth_failure", "enh-x.7.26" },
		{ "550 5.7.23 SPF", "auth_failure", "enh-x.7.23" },
		{ "554 5.7.5 Permanent error evaluating DMARC policy", "auth_failure", "auth-dmarc" },
		{ "421 4.7.28 rate limited", "rate_limited", "gmail-rate-limited" },
		{ "421 4.7.0 [TSS04] Messages temporarily deferred", "rate_limited", "yahoo-tss04" },
		{ "451 4.7.500 Server busy, too many connections", "rate_limited", "rate-limited" },
		{ "421 Service not available", "rate_limited", "code-421" },
		{ "500 5.5.1 Command unrecognized", "protocol_error", "enh-x.5.x" },
		{ "503 Bad sequence of commands", "protocol_error", "code-50x" },
		{ "550 5.7.1 Delivery not authorized", "unknown", "default-5xx" },
		{ "451 4.3.0 Local error in processing", "unknown", "default-4xx" },
		{ "250 2.0.0 OK", "unknown", "default" },
		{ "", "unknown", "default" },
		{ "garbage without a code", "unknown", "default" },
		{ "550-5.1.1 first line of a multi-line reply", "invalid_recipient", "enh-5.1.1" },
		{ "550 user unknown", "invalid_recipient", "text-no-such-user" },
		{ "550 Host unknown", "bad_domain", "text-bad-domain" },
		{ "450 mailbox unavailable", "unknown", "default-4xx" },
	};
	struct classify_rules *r = classify_rules_builtin();

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *rule = NULL;
		enum bounce_class c = classify_line(r, cases[i].line, &rule);

		if (strcmp(bounce_class_name(c), cases[i].cls) != 0 || strcmp(rule, cases[i].rule) != 0)
			fail_msg("'%s': got %s/%s want %s/%s", cases[i].line, bounce_class_name(c), rule,
			    cases[i].cls, cases[i].rule);
	}
	assert_int_equal(classify_line(r, NULL, NULL), CLASS_UNKNOWN);
	classify_rules_free(r);
}

static void
test_classify_reply_parts(void **state)
{
	struct classify_rules *r = classify_rules_builtin();
	const char *rule;

	/* enhanced code given separately */
	assert_int_equal(classify_reply(r, 550, "5.1.1", "whatever", &rule), CLASS_INVALID_RECIPIENT);
	assert_string_equal(rule, "enh-5.1.1");
	/* or left in the text */
	assert_int_equal(classify_reply(r, 550, NULL, "5.1.2 no such host", &rule), CLASS_BAD_DOMAIN);
	assert_int_equal(classify_reply(r, 550, "", "5.2.1 gone", &rule), CLASS_INACTIVE_MAILBOX);
	/* no code at all: text rules still apply, code rules do not */
	assert_int_equal(classify_reply(r, 0, NULL, "Relay access denied", &rule), CLASS_UNKNOWN);
	assert_int_equal(classify_reply(r, 0, NULL, "blocked using zen.spamhaus.org", &rule),
	    CLASS_REPUTATION_BLOCK);
	assert_int_equal(classify_reply(r, 0, NULL, NULL, &rule), CLASS_UNKNOWN);
	assert_string_equal(rule, "default");
	/* a malformed enhanced code is ignored rather than half-matched */
	assert_int_equal(classify_reply(r, 550, "5.1.1x", "", &rule), CLASS_UNKNOWN);
	assert_string_equal(rule, "default-5xx");
	/* case-insensitive text */
	assert_int_equal(classify_reply(r, 451, NULL, "GREYLISTED, come back", &rule), CLASS_GREYLISTED);
	/* a phrase may wrap between the lines of a multi-line reply; blanks are squeezed */
	assert_int_equal(classify_reply(r, 421, NULL, "Our system has detected an unusual rate of\n"
	    "unsolicited mail", &rule), CLASS_RATE_LIMITED);
	assert_string_equal(rule, "gmail-rate-limited");
	assert_int_equal(classify_reply(r, 554, NULL, "\r\n <d@example.org>: Relay   access\r\n\tdenied ", &rule),
	    CLASS_RELAY_DENIED);
	assert_string_equal(rule, "relay-denied");
	/* text past what is matched cannot decide, however long the reply */
	char *huge = xmalloc(20000);

	memset(huge, 'x', 19999);
	huge[19999] = '\0';
	memcpy(huge + 19000, "relay access denied", 19);
	assert_int_equal(classify_reply(r, 554, NULL, huge, &rule), CLASS_UNKNOWN);
	free(huge);
	classify_rules_free(r);
}

static void
test_class_names(void **state)
{
	static const char *const names[] = {
		"unknown", "invalid_recipient", "bad_domain", "inactive_mailbox", "mailbox_full",
		"message_too_large", "spam_content", "reputation_block", "auth_failure",
		"rate_limited", "greylisted", "relay_denied", "dns_failure", "connection_failure",
		"tls_failure", "protocol_error",
	};

	assert_int_equal(sizeof names / sizeof names[0], CLASS__COUNT);
	for (int i = 0; i < CLASS__COUNT; i++) {
		enum bounce_class c;

		assert_string_equal(bounce_class_name((enum bounce_class)i), names[i]);
		assert_int_equal(bounce_class_from_name(names[i], &c), 0);
		assert_int_equal(c, i);
	}
	enum bounce_class c;

	assert_int_equal(bounce_class_from_name("Invalid_Recipient", &c), -1);
	assert_int_equal(bounce_class_from_name("", &c), -1);
	assert_int_equal(bounce_class_from_name(NULL, &c), -1);
	assert_string_equal(bounce_class_name((enum bounce_class)99), "unknown");
}

static void
test_suppresses(void **state)
{
	for (int i = 0; i < CLASS__COUNT; i++) {
		int want = i == CLASS_INVALID_RECIPIENT || i == CLASS_BAD_DOMAIN ||
		    i == CLASS_INACTIVE_MAILBOX;

		assert_int_equal(bounce_class_suppresses((enum bounce_class)i), want);
	}
}

/* --- rule files ------------------------------------------------------- */

static char rules_path[64];

static void
write_rules(const char *text)
{
	FILE *f = fopen(rules_path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int
setup_file(void **state)
{
	int fd;

	snprintf(rules_path, sizeof rules_path, "/tmp/volley-rules-XXXXXX");
	fd = mkstemp(rules_path);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int
teardown_file(void **state)
{
	unlink(rules_path);
	return 0;
}

static void
test_rule_file(void **state)
{
	char *err = NULL;
	const char *rule;
	struct classify_rules *r;

	write_rules(
	    "# operator rules, tried before the built-ins\n"
	    "\n"
	    "acme-full     mailbox_full      code=5 enh=5.1.1 text=\"mailbox is \\\"stuffed\\\"\"\n"
	    "   acme-policy   reputation_block  code=550 enh=5.7.1   # trailing comment\n"
	    "exact-511     bad_domain        enh=5.1.1\n"
	    "any-5.1       inactive_mailbox  enh=5.1.\n"
	    "words         greylisted        text=\"please wait\"\n");
	r = classify_rules_load(rules_path, &err);
	if (r == NULL)
		fail_msg("%s", err);
	assert_null(err);

	/* file rules come first and their conditions are all required */
	assert_int_equal(classify_line(r, "550 5.1.1 mailbox is \"stuffed\" today", &rule), CLASS_MAILBOX_FULL);
	assert_string_equal(rule, "acme-full");
	assert_int_equal(classify_line(r, "550 5.7.1 Delivery not authorized", &rule), CLASS_REPUTATION_BLOCK);
	assert_string_equal(rule, "acme-policy");
	assert_int_equal(classify_line(r, "554 5.7.1 Delivery not authorized", &rule), CLASS_UNKNOWN);
	assert_string_equal(rule, "default-5xx");
	/* enh=5.1.1 does not match 5.1.10; enh=5.1. does */
	assert_int_equal(classify_line(r, "550 5.1.1 nobody", &rule), CLASS_BAD_DOMAIN);
	assert_string_equal(rule, "exact-511");
	assert_int_equal(classify_line(r, "550 5.1.10 nobody", &rule), CLASS_INACTIVE_MAILBOX);
	assert_string_equal(rule, "any-5.1");
	assert_int_equal(classify_line(r, "250 PLEASE WAIT", &rule), CLASS_GREYLISTED);
	/* the built-ins follow */
	assert_int_equal(classify_line(r, "552 5.2.2 full", &rule), CLASS_MAILBOX_FULL);
	assert_string_equal(rule, "enh-x.2.2");
	classify_rules_free(r);
}

#define STAGE_ERR "bad or repeated stage= (any, or a list of " \
	"connect,greeting,ehlo,helo,mail,rcpt,data,dot,rset,quit)"

static void
test_rule_file_errors(void **state)
{
	static const struct { const char *text; int line; const char *msg; } cases[] = {
		{ "ok spam_content text=x\n\nbad no_such_class\n", 3, "unknown class 'no_such_class'" },
		{ "lonely\n", 1, "a rule needs NAME CLASS [stage=..] [code=..] [enh=..] [text=\"..\"]" },
		{ "r spam_content stage=rcpt stage=dot\n", 1, STAGE_ERR },
		{ "r spam_content stage=\n", 1, STAGE_ERR },
		{ "r spam_content stage=rcpt,\n", 1, STAGE_ERR },
		{ "r spam_content stage=rcpt,,dot\n", 1, STAGE_ERR },
		{ "r spam_content stage=envelope\n", 1, STAGE_ERR },
		{ "# c\nr spam_content code=5x\n", 2, "bad or repeated code= (1 to 3 digits, e.g. code=5 or code=421)" },
		{ "r spam_content code=5 code=4\n", 1, "bad or repeated code= (1 to 3 digits, e.g. code=5 or code=421)" },
		{ "r spam_content code=6\n", 1, "bad or repeated code= (1 to 3 digits, e.g. code=5 or code=421)" },
		{ "r spam_content enh=x.1\n", 1, "bad or repeated enh= (e.g. enh=5.1.1 or enh=4.7.)" },
		{ "r spam_content enh=5..1\n", 1, "bad or repeated enh= (e.g. enh=5.1.1 or enh=4.7.)" },
		{ "r spam_content text=\"open\n", 1, "unterminated quoted string" },
		{ "r spam_content text=\"\"\n", 1, "empty or repeated text=" },
		{ "r spam_content txt=x\n", 1, "unknown field 'txt=x' (want stage=, code=, enh= or text=)" },
		{ "r spam_content text=\"a\\qb\"\n", 1, "only \\\" and \\\\ are escapes in quoted text" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *err = NULL, want[512];

		write_rules(cases[i].text);
		assert_null(classify_rules_load(rules_path, &err));
		snprintf(want, sizeof want, "%s:%d: %s", rules_path, cases[i].line, cases[i].msg);
		if (err == NULL || strcmp(err, want) != 0)
			fail_msg("case %zu: got '%s' want '%s'", i, err ? err : "(null)", want);
		free(err);
	}

	char *err = NULL;

	assert_null(classify_rules_load("/nonexistent/rules", &err));
	assert_string_equal(err, "/nonexistent/rules: cannot open: No such file or directory");
	free(err);

	/* an empty file is just the built-ins */
	write_rules("# nothing\n");
	struct classify_rules *r = classify_rules_load(rules_path, &err);

	assert_non_null(r);
	assert_int_equal(classify_line(r, "550 5.1.1 x", NULL), CLASS_INVALID_RECIPIENT);
	classify_rules_free(r);
}

/* --- the shipped rule file is the built-in rule set -------------------- */

static void
test_shipped_file(void **state)
{
	const char *path = "pools/bounce-rules.conf";
	size_t len;
	char *text = read_file(path, &len);
	char *err = NULL;

	/* byte for byte: regenerate the block in classify.c after editing the file */
	if (strcmp(text, classify_builtin_text()) != 0)
		fail_msg("%s and the rules compiled into classify.c differ", path);
	free(text);

	/* and rule by rule, loaded as an operator file */
	struct classify_rules *builtin = classify_rules_builtin();
	struct classify_rules *file = classify_rules_load(path, &err);

	if (file == NULL)
		fail_msg("%s", err);
	size_t nb = classify_rules_count(builtin);

	assert_true(nb >= 150);
	assert_int_equal(classify_rules_count(file), 2 * nb);	/* the file's, then the built-ins */
	for (size_t i = 0; i < 2 * nb; i++) {
		struct classify_rule_info x, y;

		assert_int_equal(classify_rule_get(file, i, &x), 0);
		assert_int_equal(classify_rule_get(builtin, i % nb, &y), 0);
		assert_string_equal(x.name, y.name);
		assert_int_equal(x.cls, y.cls);
#define SAME(a, b) assert_true(((a) == NULL && (b) == NULL) || ((a) && (b) && strcmp((a), (b)) == 0))
		SAME(x.stage, y.stage);
		SAME(x.code, y.code);
		SAME(x.enh, y.enh);
		SAME(x.text, y.text);
		assert_int_equal(x.line, y.line);
		assert_string_equal(x.file, i < nb ? path : CLASSIFY_BUILTIN_FILE);
		assert_string_equal(y.file, CLASSIFY_BUILTIN_FILE);
		assert_true(x.code || x.enh || x.text);	/* no rule matches everything */
	}
	assert_int_equal(classify_rule_get(builtin, nb, &(struct classify_rule_info){ 0 }), -1);
	classify_rules_free(builtin);
	classify_rules_free(file);
}

/* A match names its file and line; built-ins name the shipped file's line. */
static void
test_match_origin(void **state)
{
	struct classify_rules *r = classify_rules_builtin();
	struct classify_match m;
	const char *t = classify_builtin_text();
	int line = 1;

	assert_int_equal(classify_line_stage(r, NULL, "550 5.1.1 nobody here", &m), CLASS_INVALID_RECIPIENT);
	assert_string_equal(m.rule, "enh-5.1.1");
	assert_string_equal(m.file, CLASSIFY_BUILTIN_FILE);
	/* that line of the shipped text is the rule */
	for (const char *p = t; *p && line < m.line; p++)
		if (*p == '\n') {
			line++;
			t = p + 1;
		}
	assert_int_equal(strncmp(t, "enh-5.1.1 ", 10), 0);
	assert_int_equal(classify_line_stage(r, NULL, "250 ok", &m), CLASS_UNKNOWN);
	assert_string_equal(m.rule, "default");
	assert_null(m.file);
	assert_int_equal(m.line, 0);
	classify_rules_free(r);
}

static void
test_stages(void **state)
{
	struct classify_rules *r = classify_rules_builtin();
	struct classify_match m;

	/* a bare 554 greeting refuses the IP; unknown without the stage */
	assert_int_equal(classify_line_stage(r, "greeting", "554 mx.example.org ESMTP not accepting messages", &m),
	    CLASS_REPUTATION_BLOCK);
	assert_string_equal(m.rule, "greeting-refused");
	assert_int_equal(classify_line_stage(r, "CONNECT", "554 go away", &m), CLASS_REPUTATION_BLOCK);
	assert_int_equal(classify_line_stage(r, NULL, "554 go away", &m), CLASS_UNKNOWN);
	assert_int_equal(classify_line_stage(r, "RCPT", "554 go away", &m), CLASS_UNKNOWN);
	/* a policy refusal after DATA is about the content */
	assert_int_equal(classify_line_stage(r, "DOT", "550 5.7.1 Delivery not authorized", &m), CLASS_SPAM_CONTENT);
	assert_string_equal(m.rule, "dot-policy");
	assert_int_equal(classify_line(r, "550 5.7.1 Delivery not authorized", NULL), CLASS_UNKNOWN);
	/* wording still comes first */
	assert_int_equal(classify_line_stage(r, "DOT", "550 5.7.1 blocked using zen.spamhaus.org", &m),
	    CLASS_REPUTATION_BLOCK);
	classify_rules_free(r);

	/* operator rules: lists, any, case */
	char *err = NULL;

	write_rules("a reputation_block stage=MAIL,rcpt code=550 text=\"nope\"\n"
	    "b greylisted stage=any text=\"wait\"\n");
	r = classify_rules_load(rules_path, &err);
	assert_non_null(r);
	assert_int_equal(classify_line_stage(r, "mail", "550 nope", &m), CLASS_REPUTATION_BLOCK);
	assert_string_equal(m.file, rules_path);
	assert_int_equal(m.line, 1);
	assert_int_equal(classify_line_stage(r, "RCPT", "550 nope", &m), CLASS_REPUTATION_BLOCK);
	assert_int_equal(classify_line_stage(r, "DATA", "550 nope", &m), CLASS_UNKNOWN);
	assert_int_equal(classify_line_stage(r, "rcp", "550 nope", &m), CLASS_UNKNOWN);
	assert_int_equal(classify_line_stage(r, NULL, "450 wait", &m), CLASS_GREYLISTED);
	assert_int_equal(m.line, 2);
	classify_rules_free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures),
		cmocka_unit_test(test_corpus),
		cmocka_unit_test(test_rule_names),
		cmocka_unit_test(test_classify_reply_parts),
		cmocka_unit_test(test_class_names),
		cmocka_unit_test(test_suppresses),
		cmocka_unit_test(test_rule_file),
		cmocka_unit_test(test_rule_file_errors),
		cmocka_unit_test(test_shipped_file),
		cmocka_unit_test(test_match_origin),
		cmocka_unit_test(test_stages),
	};

	return cmocka_run_group_tests_name("classify", tests, setup_file, teardown_file);
}
