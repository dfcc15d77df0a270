/*
 * test_route.c - pool routing rules and pool ownership (route.c): the
 * first matching route in file order, case-insensitive globs, missing
 * fields, the default; config errors for routes (unknown pool with
 * file:line, no criterion, unknown key); ownership by explicit instance
 * globs and by test-bind results, and what follows from it: foreign
 * pools, shared pools and their retry ZSET.
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
#include "route.h"

static struct config *
load(const char *text)
{
	char *errors = NULL;
	struct config *c = config_load_string(text, strlen(text), "t.conf", &errors);

	if (c == NULL)
		fail_msg("%s", errors);
	return c;
}

static const char routes_conf[] =
	"pool \"acme-pool\" { ip = \"127.0.0.2\"; }\n"
	"pool \"bulk\" { ip = \"127.0.0.3\"; }\n"
	"pool \"news\" { ip = \"127.0.0.4\"; }\n"
	"pool \"both\" { ip = \"127.0.0.5\"; }\n"
	"route { tenant = \"acme\"; pool = \"acme-pool\"; }\n"
	"route { campaign = \"spring*\"; pool = \"bulk\"; }\n"
	"route { sender_domain = \"news.example.com\"; pool = \"news\"; }\n"
	"route { tenant = \"t2\"; campaign = \"c?\"; pool = \"both\"; }\n"
	"route { sender_domain = \"*.default.test\"; pool = \"default\"; }\n";

static void
test_route_table(void **state)
{
	static const struct {
		const char *tenant, *campaign, *from, *pool;
		int rule;
	} cases[] = {
		{ "acme", NULL, "a@x.test", "acme-pool", 0 },
		{ "ACME", NULL, "a@x.test", "acme-pool", 0 },		/* case-insensitive */
		{ "acme", "spring-sale", NULL, "acme-pool", 0 },	/* first match wins */
		{ "other", "spring-sale", "a@x.test", "bulk", 1 },
		{ NULL, "Spring", "a@x.test", "bulk", 1 },
		{ NULL, "summer", "a@news.example.com", "news", 2 },
		{ NULL, NULL, "A@NEWS.Example.COM", "news", 2 },
		{ NULL, NULL, "a@sub.news.example.com", "default", -1 },	/* exact, not a suffix */
		{ NULL, NULL, "", "default", -1 },			/* null sender */
		{ NULL, NULL, NULL, "default", -1 },
		{ "t2", "c1", "a@x.test", "both", 3 },			/* every criterion */
		{ "t2", "c12", "a@x.test", "default", -1 },
		{ "t2", NULL, "a@x.test", "default", -1 },		/* missing field: no match */
		{ NULL, NULL, "a@b.default.test", "default", 4 },
		{ "acmex", NULL, "a@x.test", "default", -1 },
	};
	struct config *c = load(routes_conf);

	assert_int_equal(c->nroutes, 5);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rule = 99;
		const char *p = route_pool(c, cases[i].tenant, cases[i].campaign, cases[i].from, &rule);

		if (strcmp(p, cases[i].pool) != 0 || rule != cases[i].rule)
			fail_msg("case %zu: got %s (rule %d), want %s (rule %d)", i, p, rule,
			    cases[i].pool, cases[i].rule);
	}
	config_free(c);
}

static void
test_route_no_rules(void **state)
{
	struct config *c = load("pool \"a\" { ip = \"127.0.0.2\"; }\n");

	assert_string_equal(route_pool(c, "t", "c", "x@y.test", NULL), "default");
	config_free(c);
}

static void
test_route_errors(void **state)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "pool \"a\" { ip = \"127.0.0.2\"; }\nroute {\n tenant = \"x\";\n pool = \"nope\";\n}\n",
		    "t.conf:4: route: pool \"nope\" is not defined" },
		{ "route { pool = \"default\"; }\n", "t.conf:1: route: needs tenant" },
		{ "route { tenant = \"x\"; }\n", "t.conf:1: route: pool is missing" },
		{ "route { tenant = \"x\"; pool = \"default\"; colour = \"red\"; }\n",
		    "route: unknown setting 'colour'" },
		{ "route { tenant = \"x\"; tenant = \"y\"; pool = \"default\"; }\n",
		    "route: tenant is already set" },
		{ "pool \"a\" { ip \"127.0.0.2\" { instance = \"\"; } }\n",
		    "instance: '' must not be empty" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *errors = NULL;
		struct config *c = config_load_string(cases[i].text, strlen(cases[i].text), "t.conf",
		    &errors);

		if (c != NULL)
			fail_msg("case %zu: loaded", i);
		if (errors == NULL || strstr(errors, cases[i].want) == NULL)
			fail_msg("case %zu: errors '%s', want '%s'", i, errors ? errors : "(none)",
			    cases[i].want);
		free(errors);
	}
}

static const char hosts_conf[] =
	"pool \"a\" { ip \"127.0.0.71\" { instance = \"mta1\"; } }\n"
	"pool \"b\" { ip \"127.0.0.72\" { instance = \"mta2\"; } }\n"
	"pool \"mixed\" { ip \"10.9.9.9\" { } ip \"127.0.0.73\" { } }\n"
	"pool \"local\" { ip = \"127.0.0.74\"; ip = \"127.0.0.75\"; }\n"
	"pool \"glob\" { ip \"127.0.0.76\" { instance = \"mta*\"; } }\n"
	"pool \"gone\" { ip = \"10.9.9.8\"; }\n";

static void
test_owner_table(void **state)
{
	struct config *c = load(hosts_conf);
	/* flat IPs: a .71, b .72, mixed 10.9.9.9 .73, local .74 .75, glob .76, gone 10.9.9.8 */
	enum route_bind bind[] = { ROUTE_BIND_OK, ROUTE_BIND_OK, ROUTE_BIND_NOT_HERE, ROUTE_BIND_OK,
	    ROUTE_BIND_OK, ROUTE_BIND_ERROR, ROUTE_BIND_OK, ROUTE_BIND_NOT_HERE };
	static const struct {
		const char *instance, *pool;
		int foreign;
		const char *retry;	/* NULL: PREFIXretry */
	} cases[] = {
		{ "mta1", "a", 0, "a" },	/* explicit: shared even when ours */
		{ "mta1", "b", 1, "b" },
		{ "mta2", "a", 1, "a" },
		{ "mta2", "b", 0, "b" },
		{ "mta1", "mixed", 0, "mixed" },	/* one IP not here */
		{ "mta1", "local", 0, NULL },	/* a bind error is not "not here" */
		{ "mta1", "glob", 0, "glob" },
		{ "other", "glob", 1, "glob" },
		{ "mta1", "gone", 1, "gone" },
		{ "mta1", "default", 0, NULL },	/* no IPs: always ours */
		{ "mta1", "unknown", 0, NULL },	/* fails elsewhere */
	};
	struct route_owner o = { 0 };

	assert_int_equal(route_ip_count(c), sizeof bind / sizeof bind[0]);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *r;

		route_owner_decide(&o, c, cases[i].instance, bind);
		r = route_retry_pool(&o, c, cases[i].pool);
		if (route_pool_foreign(&o, c, cases[i].pool) != cases[i].foreign)
			fail_msg("case %zu: %s on %s: foreign %d", i, cases[i].pool,
			    cases[i].instance, !cases[i].foreign);
		if ((r == NULL) != (cases[i].retry == NULL) ||
		    (r != NULL && strcmp(r, cases[i].retry) != 0))
			fail_msg("case %zu: %s on %s: retry pool %s", i, cases[i].pool,
			    cases[i].instance, r ? r : "(main)");
	}
	route_owner_decide(&o, c, "mta1", bind);
	assert_true(route_ip_ours(&o, 0));
	assert_false(route_ip_ours(&o, 1));
	assert_false(route_ip_ours(&o, 2));
	assert_true(route_ip_ours(&o, 3));
	assert_true(route_ip_ours(&o, 5));
	assert_true(route_ip_ours(NULL, 1));
	/* No bind results: every IP without an owner is ours. */
	route_owner_decide(&o, c, "mta1", NULL);
	assert_false(route_pool_foreign(&o, c, "gone"));
	assert_null(route_retry_pool(&o, c, "gone"));
	assert_true(route_pool_foreign(&o, c, "b"));
	/* No table: nothing is foreign, nothing shared. */
	assert_false(route_pool_foreign(NULL, c, "b"));
	assert_null(route_retry_pool(NULL, c, "b"));
	route_owner_free(&o);
	config_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_table),
		cmocka_unit_test(test_route_no_rules),
		cmocka_unit_test(test_route_errors),
		cmocka_unit_test(test_owner_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
