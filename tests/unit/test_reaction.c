/*
 * test_reaction.c - reaction rules (reaction.c) and the shaping_rule block
 * (config.c): which rule a reply matches (code and enhanced-code prefixes,
 * text globs, regexes, stages, sites, first rule wins), the sliding-window
 * counter under a fake clock (threshold reached within the window, not
 * outside it, reset after firing, per lane, time going backwards), the
 * sweep, the texts `volley classify` prints, and the config errors with
 * their file:line.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "reaction.h"

#define T0	1800000000000ull	/* the fake clock starts here (ms) */

static const char RULES[] =
	"site \"gmail\" { mx = [\"*.google.com\"]; }\n"
	"site \"yahoo\" { mx = [\"*.yahoodns.net\"]; }\n"
	"domain \"example.net\" { max_connections = 2; }\n"
	"shaping_rule \"gmail-rate\" { site = \"gmail\"; code = \"421\"; enh = \"4.7.28\";\n"
	"  threshold = \"3 in 10min\"; action = \"throttle\"; rate = \"600/h\"; duration = 30min; }\n"
	"shaping_rule \"tss04\" { site = \"yahoo\"; code = \"4\"; text = \"*tss04*\";\n"
	"  threshold = \"3 in 1min\"; action = \"throttle\"; rate = \"60/min\"; duration = 10min; }\n"
	"shaping_rule \"blocklist\" { enh = \"5.7\"; regex = \"block ?list|S3150\";\n"
	"  threshold = \"2 in 10min\"; action = \"suspend\"; scope = \"ip\"; duration = 1h; }\n"
	"shaping_rule \"greeting-421\" { code = \"421\"; stage = \"connect,greeting,ehlo\";\n"
	"  action = \"cap\"; connections = 2; duration = 15min; }\n"
	"shaping_rule \"net-busy\" { site = \"example.net\"; text = \"busy\";\n"
	"  threshold = \"1\"; action = \"suspend\"; scope = \"site\"; duration = 5min; }\n";

static struct config *
load(const char *text, char **err)
{
	*err = NULL;
	return config_load_string(text, strlen(text), "t.conf", err);
}

static void
test_match_table(void **state)
{
	static const struct {
		const char *line, *stage, *site, *dest, *want;
	} cases[] = {
		/* code and enhanced code, with the site */
		{ "421 4.7.28 Our system has detected an unusual rate", "DOT", "gmail", "gmail", "gmail-rate" },
		{ "421 4.7.28 unusual rate", "RCPT", "gmail", "gmail", "gmail-rate" },
		{ "421 4.7.28 unusual rate", "RCPT", "yahoo", "yahoo", NULL },	/* other site */
		{ "421 4.7.2 something", "RCPT", "gmail", "gmail", NULL },	/* 4.7.2 is not 4.7.28 */
		{ "451 4.7.28 unusual rate", "RCPT", "gmail", "gmail", NULL },	/* code differs */
		/* a glob must match the whole text; case does not count */
		{ "421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred", "MAIL", "yahoo", "yahoo", "tss04" },
		{ "451 [tss04] later", "RCPT", "yahoo", "yahoo", "tss04" },	/* "4" is a prefix of 451 */
		{ "554 [TSS04] no", "RCPT", "yahoo", "yahoo", NULL },
		/* a regex matches anywhere; an enhanced-code prefix matches 5.7.x */
		{ "550 5.7.1 part of their network is on our block list (S3150).", "RCPT", "outlook", "outlook", "blocklist" },
		{ "554 5.7.606 Access denied, banned sending IP (S3150)", "RCPT", NULL, "x.example", "blocklist" },
		{ "550 5.70.1 block list", "RCPT", NULL, "x.example", NULL },	/* 5.70 is not 5.7 */
		{ "550 5.1.1 user unknown", "RCPT", "gmail", "gmail", NULL },
		/* a stage list: only at connect/greeting/EHLO */
		{ "421 4.3.2 too many connections", "greeting", NULL, "x.example", "greeting-421" },
		{ "421 4.3.2 too many connections", "RCPT", NULL, "x.example", NULL },
		{ "421 4.3.2 too many connections", NULL, NULL, "x.example", NULL },	/* stage unknown */
		/* site names a domain block: matched against the destination */
		{ "450 busy", "RCPT", NULL, "example.net", "net-busy" },
		{ "450 busy", "RCPT", NULL, "example.org", NULL },
		/* volley classify without --site: any site */
		{ "421 4.7.28 unusual rate", "DOT", NULL, NULL, "gmail-rate" },
		/* first rule wins: gmail-rate before greeting-421 */
		{ "421 4.7.28 x", "greeting", "gmail", "gmail", "gmail-rate" },
		{ "", "RCPT", "gmail", "gmail", NULL },
	};
	char *err;
	struct config *c = load(RULES, &err);

	assert_non_null(c);
	assert_int_equal(c->nreactions, 5);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char enh[16];
		int code;
		const char *text = reaction_parse_reply(cases[i].line, &code, enh);
		const struct reaction_rule *r = reaction_match(c->reactions, c->nreactions, code, enh,
		    text, cases[i].stage, cases[i].site, cases[i].dest);

		if (cases[i].want == NULL) {
			if (r != NULL)
				fail_msg("case %zu (%s): matched %s, wanted none", i, cases[i].line, r->name);
		} else {
			if (r == NULL || strcmp(r->name, cases[i].want) != 0)
				fail_msg("case %zu (%s): matched %s, wanted %s", i, cases[i].line,
				    r ? r->name : "none", cases[i].want);
		}
	}
	config_free(c);
}

static void
test_parse_reply(void **state)
{
	char enh[16];
	int code;
	const char *t;

	t = reaction_parse_reply("421 4.7.28 text here", &code, enh);
	assert_int_equal(code, 421);
	assert_string_equal(enh, "4.7.28");
	assert_string_equal(t, "text here");
	t = reaction_parse_reply("550-5.1.1 first", &code, enh);
	assert_int_equal(code, 550);
	assert_string_equal(enh, "5.1.1");
	assert_string_equal(t, "first");
	t = reaction_parse_reply("554 delivery error: dd", &code, enh);
	assert_int_equal(code, 554);
	assert_string_equal(enh, "");
	assert_string_equal(t, "delivery error: dd");
	t = reaction_parse_reply("connection refused", &code, enh);
	assert_int_equal(code, 0);
	assert_string_equal(t, "connection refused");
	t = reaction_parse_reply(NULL, &code, enh);
	assert_int_equal(code, 0);
	assert_string_equal(t, "");
}

/* The counter: a table of (offset from T0 in s, lane, fires?). */
static void
test_count_window(void **state)
{
	static const struct { uint64_t at_s; const char *lane; int fires; } steps[] = {
		{ 0, "a", 0 }, { 10, "a", 0 },
		{ 20, "b", 0 },			/* another lane counts apart */
		{ 30, "a", 1 },			/* third within 1min: fires */
		{ 31, "a", 0 }, { 32, "a", 0 },	/* reset: needs three new ones */
		{ 33, "a", 1 },
		{ 100, "a", 0 }, { 150, "a", 0 },
		{ 170, "a", 0 },		/* the one at 100 left the window */
		{ 171, "a", 1 },		/* 150, 170, 171 */
		{ 50, "b", 0 },			/* b: 20 and 50 */
		{ 79, "b", 1 },			/* 20, 50, 79: within 60s */
		{ 500, "c", 0 }, { 400, "c", 0 },	/* backwards: counts as 500 */
		{ 501, "c", 1 },
	};
	struct reaction_rule r = { 0 };
	struct reaction_state st;

	r.name = (char *)"tss04";
	r.threshold = 3;
	r.window_ms = 60000;
	reaction_state_init(&st);
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		int f = reaction_count(&st, &r, steps[i].lane, T0 + steps[i].at_s * 1000);

		if (f != steps[i].fires)
			fail_msg("step %zu (t+%llus lane %s): fired %d, wanted %d", i,
			    (unsigned long long)steps[i].at_s, steps[i].lane, f, steps[i].fires);
	}
	assert_int_equal(reaction_counters(&st), 3);
	/* the sweep drops counters past their window */
	assert_int_equal(reaction_sweep(&st, T0 + 520000, 3600000), 3);
	assert_int_equal(reaction_counters(&st), 0);
	assert_int_equal(reaction_count(&st, &r, "a", T0), 0);
	assert_int_equal(reaction_sweep(&st, T0 + 30000, 3600000), 0);
	reaction_state_clear(&st);
	assert_int_equal(reaction_counters(&st), 0);
	/* threshold 1: every match fires, nothing kept */
	r.threshold = 1;
	assert_int_equal(reaction_count(&st, &r, "a", T0), 1);
	assert_int_equal(reaction_count(&st, &r, "a", T0), 1);
	assert_int_equal(reaction_counters(&st), 0);
	reaction_state_free(&st);
}

static void
test_texts(void **state)
{
	char *err, a[96], t[48];
	struct config *c = load(RULES, &err);

	assert_non_null(c);
	assert_string_equal(reaction_rule_text(&c->reactions[0], a, sizeof a), "throttle to 600/h for 30min");
	assert_string_equal(reaction_threshold_text(&c->reactions[0], t, sizeof t), "3 in 10min");
	assert_string_equal(reaction_rule_text(&c->reactions[2], a, sizeof a), "suspend ip for 1h");
	assert_string_equal(reaction_rule_text(&c->reactions[3], a, sizeof a), "cap 2 connections for 15min");
	assert_string_equal(reaction_threshold_text(&c->reactions[3], t, sizeof t), "every match");
	assert_string_equal(reaction_rule_text(&c->reactions[4], a, sizeof a), "suspend site for 5min");
	assert_string_equal(c->reactions[0].file, "t.conf");
	assert_int_equal(c->reactions[0].line, 4);
	assert_int_equal(c->reactions[1].window_ms, 60000);
	assert_int_equal(c->reactions[1].threshold, 3);
	config_free(c);
}

/* Each bad block: the error text expected (a substring) with its line. */
static void
test_config_errors(void **state)
{
	static const struct { const char *conf, *want; } cases[] = {
		{ "shaping_rule \"a\" { code = \"421\"; action = \"throttle\"; duration = 1h; }",
		  "t.conf:1: shaping_rule \"a\": action throttle needs rate" },
		{ "shaping_rule \"a\" { code = \"421\"; action = \"cap\"; duration = 1h; }",
		  "action cap needs connections" },
		{ "shaping_rule \"a\" { code = \"421\"; action = \"suspend\"; }",
		  "needs duration" },
		{ "shaping_rule \"a\" { action = \"suspend\"; duration = 1h; }",
		  "needs at least one of code, enh, text or regex" },
		{ "shaping_rule \"a\" { code = \"421\"; duration = 1h; }",
		  "needs action = throttle | cap | suspend" },
		{ "shaping_rule \"a\" { code = \"421\";\n action = \"slow\"; duration = 1h; }",
		  "t.conf:2: shaping_rule \"a\": action: 'slow' is not an action" },
		{ "shaping_rule \"a\" { code = \"621\"; action = \"suspend\"; duration = 1h; }",
		  "code: '621' is not a reply code" },
		{ "shaping_rule \"a\" { enh = \"4.7.x\"; action = \"suspend\"; duration = 1h; }",
		  "enh: '4.7.x' is not an enhanced status code" },
		{ "shaping_rule \"a\" { regex = \"(unclosed\"; action = \"suspend\"; duration = 1h; }",
		  "is not a POSIX extended regular expression" },
		{ "shaping_rule \"a\" { code = \"421\"; threshold = \"3\"; action = \"suspend\"; duration = 1h; }",
		  "threshold: '3' is not a threshold" },
		{ "shaping_rule \"a\" { code = \"421\"; threshold = \"3 per 10min\"; action = \"suspend\"; duration = 1h; }",
		  "is not a threshold" },
		{ "shaping_rule \"a\" { code = \"421\"; threshold = \"0 in 10min\"; action = \"suspend\"; duration = 1h; }",
		  "is not a threshold" },
		{ "shaping_rule \"a\" { code = \"421\"; action = \"suspend\"; scope = \"world\"; duration = 1h; }",
		  "'world' is not a scope" },
		{ "shaping_rule \"a\" { code = \"421\"; action = \"throttle\"; rate = \"600/h\"; scope = \"ip\"; duration = 1h; }",
		  "scope is only for action suspend" },
		{ "shaping_rule \"a\" { code = \"421\"; action = \"suspend\"; rate = \"600/h\"; duration = 1h; }",
		  "rate is only for action throttle" },
		{ "shaping_rule \"a\" { code = \"421\"; action = \"suspend\"; duration = 1h; site = \"nowhere\"; }",
		  "site \"nowhere\" is neither a site nor a domain block" },
		{ "shaping_rule \"a\" { code = \"421\"; action = \"suspend\"; duration = 1h; stage = \"rcpt,bogus\"; }",
		  "is not a list of stages" },
		{ "shaping_rule \"a\" { code = \"421\"; action = \"suspend\"; duration = 1h; treshold = 1; }",
		  "unknown setting 'treshold' (did you mean 'threshold'?)" },
		{ "shaping_rule \"a\" { code = \"421\"; code = \"451\"; action = \"suspend\"; duration = 1h; }",
		  "code is already set at line 1" },
		{ "shaping_rule \"a\" { code = \"421\"; action = \"suspend\"; duration = 0s; }",
		  "out of range (1s..30d)" },
		{ "shaping_rule \"a\" { code = \"421\"; action = \"suspend\"; duration = 1h; }\n"
		  "shaping_rule \"a\" { code = \"451\"; action = \"suspend\"; duration = 1h; }",
		  "t.conf:2: duplicate shaping_rule \"a\" (first defined at t.conf:1)" },
		{ "shaping_rule = 3;", "expected shaping_rule \"NAME\"" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *err;
		struct config *c = load(cases[i].conf, &err);

		if (c != NULL)
			fail_msg("case %zu: accepted %s", i, cases[i].conf);
		if (err == NULL || strstr(err, cases[i].want) == NULL)
			fail_msg("case %zu: got \"%s\", wanted \"%s\"", i, err ? err : "(none)",
			    cases[i].want);
		free(err);
	}
}

/* The shipped provider defaults load and match the wording they are for. */
static void
test_shipped_providers(void **state)
{
	char *err = NULL;
	struct config *c = config_load("pools/volley.conf", &err);

	if (c == NULL)
		fail_msg("pools/volley.conf: %s", err ? err : "?");
	assert_true(c->nreactions >= 5);
	for (size_t i = 0; i < c->nreactions; i++) {
		assert_non_null(c->reactions[i].site);
		assert_true(c->reactions[i].duration_ms >= 60000);
	}
	config_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match_table),
		cmocka_unit_test(test_parse_reply),
		cmocka_unit_test(test_count_window),
		cmocka_unit_test(test_texts),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_shipped_providers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
