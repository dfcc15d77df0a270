/*
 * test_ucl.c - the UCL-subset parser: syntax tables (input -> a dump of the
 * tree with line numbers), error tables (input -> exact "file:line: msg"),
 * includes with globs in sorted order, limits, and garbage that must not
 * crash.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tmpdir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ucl.h"
#include "util.h"

/* dump - compact text of a tree: key(arg)@line=value; lists [v@line,...]. */
static void
dump(struct buf *b, const struct ucl_node *n)
{
	switch (n->type) {
	case UCL_STRING:
		buf_appendf(b, n->quoted ? "\"%s\"" : "%s", n->str);
		break;
	case UCL_OBJECT:
		buf_append(b, "{", 1);
		for (const struct ucl_node *c = n->child; c; c = c->next) {
			buf_appendf(b, "%s", c->key);
			if (c->arg)
				buf_appendf(b, "(%s)", c->arg);
			buf_appendf(b, "@%d=", c->line);
			dump(b, c);
			if (c->next)
				buf_append(b, ";", 1);
		}
		buf_append(b, "}", 1);
		break;
	case UCL_ARRAY:
		buf_append(b, "[", 1);
		for (const struct ucl_node *c = n->child; c; c = c->next) {
			dump(b, c);
			buf_appendf(b, "@%d", c->line);
			if (c->next)
				buf_append(b, ",", 1);
		}
		buf_append(b, "]", 1);
		break;
	default:
		buf_append(b, "null", 4);
	}
}

static char *
parse_dump(const char *text, char **err)
{
	struct ucl_node *root = ucl_parse_string(text, strlen(text), "t.conf", err);
	struct buf b = { 0 };

	if (root == NULL)
		return NULL;
	dump(&b, root);
	ucl_free(root);
	return b.data;
}

static void
test_syntax_table(void **state)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "", "{}" },
		{ "# only a comment\n", "{}" },
		{ "a = 1;", "{a@1=1}" },
		{ "a 1\nb: \"two\", c = 'three'", "{a@1=1;b@2=\"two\";c@2=\"three\"}" },
		{ "a 1 b 2", "{a@1=1;b@1=2}" },
		{ "smtp {\n port = 25;\n timeouts { connect = 30s }\n}",
		  "{smtp@1={port@2=25;timeouts@3={connect@3=30s}}}" },
		{ "pool \"m\" {\n  ip \"127.0.0.2\" { ehlo = x; }\n}",
		  "{pool(m)@1={ip(127.0.0.2)@2={ehlo@2=x}}}" },
		{ "retry = [1min, 5min,\n 1h]", "{retry@1=[1min@1,5min@1,1h@2]}" },
		{ "retry = [1min, 5min, ]", "{retry@1=[1min@1,5min@1]}" },
		{ "x = []", "{x@1=[]}" },
		{ "x = [[1,2],[3]]", "{x@1=[[1@1,2@1]@1,[3@1]@1]}" },
		{ "x = [{a=1},{b=2}]", "{x@1=[{a@1=1}@1,{b@1=2}@1]}" },
		{ "# c\n// c\n/* multi\nline */ a = 1 # trailing\n", "{a@4=1}" },
		{ "url = redis://127.0.0.1:6379/0;", "{url@1=redis://127.0.0.1:6379/0}" },
		{ "servers = [127.0.0.1:5353, \"::1\"]", "{servers@1=[127.0.0.1:5353@1,\"::1\"@1]}" },
		{ "mx = *.google.com", "{mx@1=*.google.com}" },
		{ "max_rate = 3000/h", "{max_rate@1=3000/h}" },
		{ "a = 1;\r\nb = 2;\r\n", "{a@1=1;b@2=2}" },
		{ "\"my key\" = v", "{my key@1=v}" },
		{ "site \"a\" {}\nsite \"b\" {}", "{site(a)@1={};site(b)@2={}}" },
		{ "a=1;;;b=2,,", "{a@1=1;b@1=2}" },
		{ "s = 'it\\'s'", "{s@1=\"it's\"}" },
		{ "s = 'a\\nb'", "{s@1=\"a\\nb\"}" },
		{ "s = \"\\u00e9\"", "{s@1=\"\xc3\xa9\"}" },
		{ "\xef\xbb\xbf" "a = 1", "{a@1=1}" },
		{ "a\n=\n1", "{a@1=1}" },
		{ "key value\n{ x = 1 }", "{key(value)@1={x@2=1}}" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *err = NULL;
		char *got = parse_dump(cases[i].in, &err);

		if (got == NULL)
			fail_msg("case %zu: unexpected error %s", i, err);
		if (strcmp(got, cases[i].out) != 0)
			fail_msg("case %zu: got %s want %s", i, got, cases[i].out);
		free(got);
	}
}

static void
test_escapes(void **state)
{
	char *err = NULL;
	const char *in = "s = \"a\\\"b\\\\c\\td\\/e\";";
	struct ucl_node *r = ucl_parse_string(in, strlen(in), "t.conf", &err);

	assert_non_null(r);
	const struct ucl_node *s = ucl_get(r, "s");

	assert_non_null(s);
	assert_string_equal(s->str, "a\"b\\c\td/e");
	assert_int_equal(s->quoted, 1);
	assert_string_equal(s->file, "t.conf");
	ucl_free(r);
}

static void
test_error_table(void **state)
{
	static const struct { const char *in, *err; } cases[] = {
		{ "a = ;", "t.conf:1: missing value for 'a'" },
		{ "\n\na", "t.conf:3: missing value for 'a'" },
		{ "a {\n b = 1;\n", "t.conf:3: unexpected end of file: missing '}' for the block opened at line 1" },
		{ "a = 1\n}", "t.conf:2: unexpected '}'" },
		{ "a = \"abc\nb = 1", "t.conf:1: unterminated string" },
		{ "\n\n/* x\n\n", "t.conf:3: unterminated /* comment" },
		{ "a = [1, 2\n", "t.conf:2: unexpected end of file: missing ']' for the list opened at line 1" },
		{ "= 5", "t.conf:1: expected a key, got '='" },
		{ "a = 1\n.foo \"x\"", "t.conf:2: unknown directive '.foo'" },
		{ "a = \"\\q\"", "t.conf:1: unknown escape \\'q'" },
		{ "a = \"\\u12\"", "t.conf:1: bad \\u escape" },
		{ "a = [1; 2]", "t.conf:1: unexpected ';' in list (opened at line 1)" },
		{ "a = b\x01", "t.conf:1: invalid byte 0x01" },
		{ "a = 1;\nb = \"x\" \"y\";", "t.conf:2: missing value for 'y'" },
		{ "a = [1, }", "t.conf:1: unexpected '}' in list (opened at line 1)" },
		{ "a = 1\n\n\n.include", "t.conf:4: .include needs a path" },
		{ "x {\n\n  y = [\n\n", "t.conf:5: unexpected end of file: missing ']' for the list opened at line 3" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *err = NULL;
		char *got = parse_dump(cases[i].in, &err);

		if (got != NULL)
			fail_msg("case %zu: parsed as %s", i, got);
		assert_non_null(err);
		if (strcmp(err, cases[i].err) != 0)
			fail_msg("case %zu: got '%s' want '%s'", i, err, cases[i].err);
		free(err);
	}
}

static void
test_nesting_limit(void **state)
{
	char in[512] = "";
	char *err = NULL;

	for (int i = 0; i < 70; i++)
		strcat(in, "a{");
	assert_null(parse_dump(in, &err));
	assert_string_equal(err, "t.conf:1: blocks nested too deep (limit 64)");
	free(err);

	/* 64 deep is fine */
	in[0] = '\0';
	for (int i = 0; i < 64; i++)
		strcat(in, "a{");
	for (int i = 0; i < 64; i++)
		strcat(in, "}");
	char *got = parse_dump(in, &err);

	assert_non_null(got);
	free(got);
}

static void
test_get_next_same(void **state)
{
	const char *in = "site \"a\" {}\nx = 1\nsite \"b\" {}\nsite \"c\" {}\n";
	char *err = NULL;
	struct ucl_node *r = ucl_parse_string(in, strlen(in), "t.conf", &err);
	const struct ucl_node *s;
	int n = 0;
	const char *want[] = { "a", "b", "c" };

	assert_non_null(r);
	for (s = ucl_get(r, "site"); s != NULL; s = ucl_next_same(s)) {
		assert_true(n < 3);
		assert_string_equal(s->arg, want[n]);
		n++;
	}
	assert_int_equal(n, 3);
	assert_null(ucl_get(r, "nope"));
	assert_string_equal(ucl_get(r, "x")->str, "1");
	assert_int_equal(ucl_get(r, "x")->line, 2);
	ucl_free(r);
}

/* --- includes ------------------------------------------------------- */

static int
setup_dir(void **state)
{
	static const char *const subdirs[] = { "sub", "empty", NULL };

	return tmpdir_make("volley-ucl", subdirs);
}

static int
teardown_dir(void **state)
{
	return tmpdir_remove();
}

static char *
load_dump(const char *rel, char **err)
{
	char path[256];
	struct ucl_node *root;
	struct buf b = { 0 };

	snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
	root = ucl_parse_file(path, err);
	if (root == NULL)
		return NULL;
	dump(&b, root);
	ucl_free(root);
	return b.data;
}

static void
test_include_glob_sorted(void **state)
{
	char *err = NULL, *got, want[512];

	write_file("sub/b.conf", "# b\nsite \"b\" { mx = [\"*.b\"] }\n");
	write_file("sub/a.conf", "site \"a\" {\n  mx = [\"*.a\"]\n}\n");
	write_file("sub/c.txt", "not = included\n");
	write_file("main.conf", "x = 1;\n.include \"sub/*.conf\";\ny {\n  .include \"inner.conf\"\n}\n"
	    ".include \"empty/*.conf\"\nz = 2\n");
	write_file("inner.conf", "\n\nin = 3\n");
	got = load_dump("main.conf", &err);
	if (got == NULL)
		fail_msg("%s", err);
	snprintf(want, sizeof want,
	    "{x@1=1;site(a)@1={mx@2=[\"*.a\"@2]};site(b)@2={mx@2=[\"*.b\"@2]};y@3={in@3=3};z@7=2}");
	assert_string_equal(got, want);
	free(got);

	/* file names on the nodes are the included files' paths */
	char path[256];

	snprintf(path, sizeof path, "%s/main.conf", tmpdir);
	struct ucl_node *r = ucl_parse_file(path, &err);

	assert_non_null(r);
	const struct ucl_node *s = ucl_get(r, "site");
	char wantf[256];

	snprintf(wantf, sizeof wantf, "%s/sub/a.conf", tmpdir);
	assert_string_equal(s->file, wantf);
	assert_int_equal(s->line, 1);
	assert_string_equal(ucl_get(r, "z")->file, path);
	ucl_free(r);
}

static void
test_include_errors(void **state)
{
	char *err = NULL, want[512];

	/* an error inside an included file names that file and its line */
	write_file("bad.conf", "ok = 1\n\nbroken = ;\n");
	write_file("main2.conf", "a = 1\n.include \"bad.conf\"\n");
	assert_null(load_dump("main2.conf", &err));
	snprintf(want, sizeof want, "%s/bad.conf:3: missing value for 'broken'", tmpdir);
	assert_string_equal(err, want);
	free(err);

	/* a missing plain include is an error at the .include line */
	write_file("main3.conf", "a = 1\n\n.include \"nope.conf\"\n");
	assert_null(load_dump("main3.conf", &err));
	snprintf(want, sizeof want, "%s/main3.conf:3: cannot open %s/nope.conf: No such file or directory",
	    tmpdir, tmpdir);
	assert_string_equal(err, want);
	free(err);

	/* a loop hits the depth limit instead of recursing forever */
	write_file("loop.conf", "a = 1\n.include \"loop.conf\"\n");
	assert_null(load_dump("loop.conf", &err));
	snprintf(want, sizeof want, "%s/loop.conf:2: includes nested too deep (limit 16; a loop?)", tmpdir);
	assert_string_equal(err, want);
	free(err);

	/* a missing top-level file */
	assert_null(load_dump("absent.conf", &err));
	snprintf(want, sizeof want, "cannot open %s/absent.conf: No such file or directory", tmpdir);
	assert_string_equal(err, want);
	free(err);

	/* a directory matched by a glob is not silently read */
	write_file("main4.conf", ".include \"s*\"\n");
	assert_null(load_dump("main4.conf", &err));
	snprintf(want, sizeof want, "%s/main4.conf:1: cannot read %s/sub: not a regular file", tmpdir, tmpdir);
	assert_string_equal(err, want);
	free(err);
}

static void
test_no_include_flag(void **state)
{
	const char *in = "a = 1\n.include \"/etc/passwd\"\n";
	char *err = NULL;

	assert_null(ucl_parse_string_flags(in, strlen(in), "f.conf", UCL_NO_INCLUDE, &err));
	assert_string_equal(err, "f.conf:2: .include is not allowed here");
	free(err);
}

/* garbage in: never crash, always either a tree or an error */
static void
test_garbage(void **state)
{
	static const char alphabet[] = "{}[]=;:,\"'#/*\\. \n\tabc019xyz-_@\x01\xff";
	uint32_t seed = 12345;
	char in[256];

	for (int iter = 0; iter < 20000; iter++) {
		size_t len = (size_t)(iter % 200);

		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
		}
		char *err = NULL;
		struct ucl_node *r = ucl_parse_string_flags(in, len, "g.conf", UCL_NO_INCLUDE, &err);

		assert_true((r == NULL) != (err == NULL));
		if (err != NULL)
			assert_memory_equal(err, "g.conf:", 7);
		ucl_free(r);
		free(err);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_syntax_table),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_error_table),
		cmocka_unit_test(test_nesting_limit),
		cmocka_unit_test(test_get_next_same),
		cmocka_unit_test(test_include_glob_sorted),
		cmocka_unit_test(test_include_errors),
		cmocka_unit_test(test_no_include_flag),
		cmocka_unit_test(test_garbage),
	};

	return cmocka_run_group_tests_name("ucl", tests, setup_dir, teardown_dir);
}
