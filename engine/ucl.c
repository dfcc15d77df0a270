/*
 * ucl.c - the UCL-subset parser (see ucl.h for the accepted syntax).
 *
 * Owns: reading config files (and what they .include) into a tree of
 * struct ucl_node, each carrying the file and line it came from.
 *
 * API: ucl_parse_file(), ucl_parse_string(), ucl_parse_string_flags(),
 * ucl_free(), ucl_get(), ucl_next_same().
 *
 * Invariants:
 *  - The root is really a struct ucl_root (node first), which owns the
 *    interned file names every node points at; only the root may be freed.
 *  - The first error stops the parse; the partial tree is freed and the
 *    caller gets one "file:line: message" string.
 *  - Input is hostile: every limit in ucl.h is checked before the work it
 *    bounds, and no byte sequence makes us read past the buffer.
 */
#include "ucl.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UCL_MAX_INCLUDE_DEPTH	16
#define UCL_MAX_NEST		64
#define UCL_MAX_FILE_SIZE	(4u << 20)
#define UCL_MAX_NODES		200000
#define UCL_MAX_FILES		256

struct ucl_root {
	struct ucl_node node;	/* must stay first: ucl_free() casts back */
	char **files;		/* interned file names */
	size_t nfiles;
	size_t nnodes;
};

struct lexer {
	struct ucl_root *root;
	const char *file;	/* interned name of the text being read */
	const char *p, *end;
	int line;
	int incl_depth;		/* 0 for the top file */
	int nest;		/* open { and [ */
	int flags;
	char *err;		/* first error, "file:line: message" */
};

static struct ucl_node *parse_text(struct ucl_root *root, const char *text, size_t len,
    const char *name, int incl_depth, int flags, struct ucl_node *obj,
    struct ucl_node ***tailp, char **err);

static void __attribute__((format(printf, 3, 4)))
lx_error(struct lexer *lx, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (lx->err != NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	lx->err = xasprintf("%s:%d: %s", lx->file, line, msg);
}

/* A printable rendering of the byte at p for messages: never echo control bytes. */
static const char *
byte_text(char c, char out[8])
{
	unsigned char u = (unsigned char)c;

	if (u >= 0x21 && u < 0x7f)
		snprintf(out, 8, "'%c'", c);
	else
		snprintf(out, 8, "0x%02x", u);
	return out;
}

static const char *
intern_file(struct ucl_root *root, const char *name)
{
	for (size_t i = 0; i < root->nfiles; i++)
		if (strcmp(root->files[i], name) == 0)
			return root->files[i];
	root->files = xrealloc(root->files, (root->nfiles + 1) * sizeof *root->files);
	root->files[root->nfiles] = xstrdup(name);
	return root->files[root->nfiles++];
}

static struct ucl_node *
new_node(struct lexer *lx, int line)
{
	struct ucl_node *n;

	if (lx->root->nnodes >= UCL_MAX_NODES) {
		lx_error(lx, line, "too many entries (limit %d)", UCL_MAX_NODES);
		return NULL;
	}
	lx->root->nnodes++;
	n = xcalloc(1, sizeof *n);
	n->file = lx->file;
	n->line = line;
	return n;
}

static void
free_nodes(struct ucl_node *n)
{
	while (n != NULL) {
		struct ucl_node *next = n->next;

		free_nodes(n->child);
		free(n->key);
		free(n->arg);
		free(n->str);
		free(n);
		n = next;
	}
}

static int
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* Control bytes other than white space are never valid outside comments. */
static int
is_bad_byte(char c)
{
	unsigned char u = (unsigned char)c;

	return (u < 0x20 && !is_space(c)) || u == 0x7f;
}

/* skip_ws - skip white space and comments. -1 on an unterminated comment. */
static int
skip_ws(struct lexer *lx)
{
	while (lx->p < lx->end) {
		char c = *lx->p;

		if (c == '\n') {
			lx->line++;
			lx->p++;
		} else if (is_space(c)) {
			lx->p++;
		} else if (c == '#' || (c == '/' && lx->end - lx->p >= 2 && lx->p[1] == '/')) {
			while (lx->p < lx->end && *lx->p != '\n')
				lx->p++;
		} else if (c == '/' && lx->end - lx->p >= 2 && lx->p[1] == '*') {
			int start = lx->line;

			lx->p += 2;
			for (;;) {
				if (lx->p >= lx->end) {
					lx_error(lx, start, "unterminated /* comment");
					return -1;
				}
				if (*lx->p == '\n')
					lx->line++;
				if (*lx->p == '*' && lx->end - lx->p >= 2 && lx->p[1] == '/') {
					lx->p += 2;
					break;
				}
				lx->p++;
			}
		} else {
			break;
		}
	}
	return 0;
}

static void
put_utf8(struct buf *b, unsigned cp)
{
	char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	}
	buf_append(b, u, n);
}

/* read_quoted - a "..." or '...' string at lx->p; returns malloc'd text or NULL. */
static char *
read_quoted(struct lexer *lx)
{
	char q = *lx->p++;
	struct buf b = { 0 };
	char bt[8];

	buf_reserve(&b, 16);
	b.data[0] = '\0';
	for (;;) {
		if (lx->p >= lx->end || *lx->p == '\n') {
			lx_error(lx, lx->line, "unterminated string");
			goto fail;
		}
		char c = *lx->p++;

		if (c == q)
			break;
		if (is_bad_byte(c) && c != '\t') {
			lx_error(lx, lx->line, "invalid byte %s in string", byte_text(c, bt));
			goto fail;
		}
		if (c != '\\') {
			buf_append(&b, &c, 1);
			continue;
		}
		if (lx->p >= lx->end) {
			lx_error(lx, lx->line, "unterminated string");
			goto fail;
		}
		c = *lx->p++;
		if (q == '\'') {
			/* single quotes: only \' and \\ are escapes, as in UCL */
			if (c == '\n') {
				lx_error(lx, lx->line, "unterminated string");
				goto fail;
			}
			if (c != '\'' && c != '\\')
				buf_append(&b, "\\", 1);
			buf_append(&b, &c, 1);
			continue;
		}
		switch (c) {
		case '"': case '\\': case '/': case '\'':
			buf_append(&b, &c, 1);
			break;
		case 'n': buf_append(&b, "\n", 1); break;
		case 't': buf_append(&b, "\t", 1); break;
		case 'r': buf_append(&b, "\r", 1); break;
		case 'b': buf_append(&b, "\b", 1); break;
		case 'f': buf_append(&b, "\f", 1); break;
		case 'u': {
			unsigned cp = 0;

			for (int i = 0; i < 4; i++) {
				char h = lx->p < lx->end ? *lx->p : '\0';
				int v = h >= '0' && h <= '9' ? h - '0' :
				    h >= 'a' && h <= 'f' ? h - 'a' + 10 :
				    h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;

				if (v < 0) {
					lx_error(lx, lx->line, "bad \\u escape");
					goto fail;
				}
				cp = cp * 16 + (unsigned)v;
				lx->p++;
			}
			if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff)) {
				lx_error(lx, lx->line, "bad \\u escape");
				goto fail;
			}
			put_utf8(&b, cp);
			break;
		}
		default:
			lx_error(lx, lx->line, "unknown escape \\%s", byte_text(c, bt));
			goto fail;
		}
	}
	return b.data;
fail:
	buf_free(&b);
	return NULL;
}

static int
ends_bare(char c, int key)
{
	if (is_space(c) || c == ';' || c == ',' || c == '{' || c == '}' ||
	    c == '[' || c == ']' || c == '"' || c == '\'')
		return 1;
	return key && (c == '=' || c == ':' || c == '#');
}

/*
 * read_word - a scalar or key at lx->p: quoted, or bare up to a delimiter.
 * Returns malloc'd text, NULL on error (with lx->err set) or when there is
 * no word here (lx->err unset).
 */
static char *
read_word(struct lexer *lx, int key, int *quoted)
{
	const char *s = lx->p;
	char bt[8];

	*quoted = 0;
	if (lx->p < lx->end && (*lx->p == '"' || *lx->p == '\'')) {
		*quoted = 1;
		return read_quoted(lx);
	}
	while (lx->p < lx->end && !ends_bare(*lx->p, key)) {
		if (is_bad_byte(*lx->p)) {
			lx_error(lx, lx->line, "invalid byte %s", byte_text(*lx->p, bt));
			return NULL;
		}
		lx->p++;
	}
	if (lx->p == s)
		return NULL;
	return xstrndup(s, (size_t)(lx->p - s));
}

static int parse_body(struct lexer *lx, struct ucl_node *obj, struct ucl_node ***tailp,
    int toplevel, int open_line);

static int
open_nest(struct lexer *lx, int line)
{
	if (++lx->nest > UCL_MAX_NEST) {
		lx_error(lx, line, "blocks nested too deep (limit %d)", UCL_MAX_NEST);
		return -1;
	}
	return 0;
}

static int parse_value(struct lexer *lx, struct ucl_node *n, int allow_named);

static int
parse_array(struct lexer *lx, struct ucl_node *n)
{
	int open_line = lx->line;
	struct ucl_node **tail = &n->child;
	char bt[8];

	lx->p++;	/* '[' */
	n->type = UCL_ARRAY;
	if (open_nest(lx, open_line) < 0)
		return -1;
	for (;;) {
		if (skip_ws(lx) < 0)
			return -1;
		if (lx->p >= lx->end) {
			lx_error(lx, lx->line, "unexpected end of file: missing ']' for the list opened at line %d",
			    open_line);
			return -1;
		}
		char c = *lx->p;

		if (c == ']') {
			lx->p++;
			break;
		}
		if (c == ',') {
			lx->p++;
			continue;
		}
		if (c == '}' || c == ';' || c == '=' || c == ':') {
			lx_error(lx, lx->line, "unexpected %s in list (opened at line %d)",
			    byte_text(c, bt), open_line);
			return -1;
		}
		struct ucl_node *e = new_node(lx, lx->line);

		if (e == NULL)
			return -1;
		*tail = e;
		tail = &e->next;
		if (parse_value(lx, e, 0) < 0)
			return -1;
	}
	lx->nest--;
	return 0;
}

static int
parse_object(struct lexer *lx, struct ucl_node *n)
{
	int open_line = lx->line;
	struct ucl_node **tail = &n->child;

	lx->p++;	/* '{' */
	n->type = UCL_OBJECT;
	if (open_nest(lx, open_line) < 0)
		return -1;
	if (parse_body(lx, n, &tail, 0, open_line) < 0)
		return -1;
	lx->nest--;
	return 0;
}

/*
 * parse_value - the value of n at lx->p: { object }, [ array ] or a scalar.
 * allow_named: the key had no '=' so `key "name" { ... }` is possible.
 */
static int
parse_value(struct lexer *lx, struct ucl_node *n, int allow_named)
{
	char bt[8];

	if (lx->p >= lx->end || *lx->p == ';' || *lx->p == ',' || *lx->p == '}' ||
	    *lx->p == ']' || *lx->p == '=' || *lx->p == ':') {
		if (n->key != NULL)
			lx_error(lx, n->line, "missing value for '%s'", n->key);
		else
			lx_error(lx, lx->line, "missing value in list");
		return -1;
	}
	if (*lx->p == '{')
		return parse_object(lx, n);
	if (*lx->p == '[')
		return parse_array(lx, n);

	char *s = read_word(lx, 0, &n->quoted);

	if (s == NULL) {
		if (lx->err == NULL)
			lx_error(lx, lx->line, "unexpected %s", byte_text(*lx->p, bt));
		return -1;
	}
	n->type = UCL_STRING;
	n->str = s;
	if (!allow_named)
		return 0;
	if (skip_ws(lx) < 0)
		return -1;
	if (lx->p < lx->end && *lx->p == '{') {
		/* key "name" { ... }: the scalar was the block's name */
		n->arg = n->str;
		n->str = NULL;
		n->quoted = 0;
		return parse_object(lx, n);
	}
	return 0;
}

static int
has_glob_magic(const char *s)
{
	return strpbrk(s, "*?[") != NULL;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* read_file - the whole file, bounded; NULL + message on failure. */
static char *
read_file(const char *path, size_t *len, char *why, size_t whylen)
{
	/* O_NONBLOCK: opening a FIFO must not hang before the S_ISREG check */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
	struct stat st;
	char *data;

	if (f == NULL) {
		if (fd >= 0)
			close(fd);
		snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "cannot read %s: not a regular file", path);
		fclose(f);
		return NULL;
	}
	if (st.st_size > (off_t)UCL_MAX_FILE_SIZE) {
		snprintf(why, whylen, "%s is larger than %u bytes", path, UCL_MAX_FILE_SIZE);
		fclose(f);
		return NULL;
	}
	data = xmalloc((size_t)st.st_size + 1);
	*len = fread(data, 1, (size_t)st.st_size, f);
	if (ferror(f)) {
		snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
		fclose(f);
		free(data);
		return NULL;
	}
	data[*len] = '\0';
	fclose(f);
	return data;
}

/* include_one - parse path into obj (appending at *tailp). */
static int
include_one(struct lexer *lx, int line, const char *path, struct ucl_node *obj,
    struct ucl_node ***tailp)
{
	char why[512];
	char *text, *err = NULL;
	size_t len = 0;

	if (lx->root->nfiles >= UCL_MAX_FILES) {
		lx_error(lx, line, "too many included files (limit %d)", UCL_MAX_FILES);
		return -1;
	}
	text = read_file(path, &len, why, sizeof why);
	if (text == NULL) {
		lx_error(lx, line, "%s", why);
		return -1;
	}
	parse_text(lx->root, text, len, path, lx->incl_depth + 1, lx->flags, obj, tailp, &err);
	free(text);
	if (err != NULL) {
		lx->err = err;	/* already "file:line: message" of the inner file */
		return -1;
	}
	return 0;
}

/* do_include - `.include "pattern";` relative to the including file. */
static int
do_include(struct lexer *lx, int line, const char *pattern, struct ucl_node *obj,
    struct ucl_node ***tailp)
{
	char *path;
	const char *slash;
	int rc = 0;

	if (lx->flags & UCL_NO_INCLUDE) {
		lx_error(lx, line, ".include is not allowed here");
		return -1;
	}
	if (lx->incl_depth + 1 > UCL_MAX_INCLUDE_DEPTH) {
		lx_error(lx, line, "includes nested too deep (limit %d; a loop?)",
		    UCL_MAX_INCLUDE_DEPTH);
		return -1;
	}
	if (pattern[0] == '\0') {
		lx_error(lx, line, ".include needs a path");
		return -1;
	}
	slash = strrchr(lx->file, '/');
	if (pattern[0] == '/' || slash == NULL)
		path = xstrdup(pattern);
	else
		path = xasprintf("%.*s/%s", (int)(slash - lx->file), lx->file, pattern);

	if (!has_glob_magic(pattern)) {
		rc = include_one(lx, line, path, obj, tailp);
		free(path);
		return rc;
	}

	glob_t g;
	int gr = glob(path, 0, NULL, &g);

	if (gr == GLOB_NOMATCH) {
		/* an empty directory of optional snippets is fine */
		free(path);
		return 0;
	}
	if (gr != 0) {
		lx_error(lx, line, "cannot expand %s", path);
		free(path);
		return -1;
	}
	/* glob(3) sorts with strcoll; sort bytewise so order never depends on locale */
	qsort(g.gl_pathv, g.gl_pathc, sizeof *g.gl_pathv, cmp_str);
	for (size_t i = 0; i < g.gl_pathc && rc == 0; i++)
		rc = include_one(lx, line, g.gl_pathv[i], obj, tailp);
	globfree(&g);
	free(path);
	return rc;
}

static int
parse_directive(struct lexer *lx, struct ucl_node *obj, struct ucl_node ***tailp)
{
	int line = lx->line, quoted;
	char *name, *arg;
	int rc;

	lx->p++;	/* '.' */
	name = read_word(lx, 1, &quoted);
	if (name == NULL || strcmp(name, "include") != 0) {
		if (lx->err == NULL)
			lx_error(lx, line, "unknown directive '.%s'", name ? name : "");
		free(name);
		return -1;
	}
	free(name);
	if (skip_ws(lx) < 0)
		return -1;
	arg = read_word(lx, 0, &quoted);
	if (arg == NULL) {
		if (lx->err == NULL)
			lx_error(lx, line, ".include needs a path");
		return -1;
	}
	rc = do_include(lx, line, arg, obj, tailp);
	free(arg);
	return rc;
}

/*
 * parse_body - entries of an object up to '}' (or end of text at top level),
 * appended at *tailp. open_line is where the '{' was, for messages.
 */
static int
parse_body(struct lexer *lx, struct ucl_node *obj, struct ucl_node ***tailp, int toplevel,
    int open_line)
{
	char bt[8];

	for (;;) {
		if (skip_ws(lx) < 0)
			return -1;
		if (lx->p >= lx->end) {
			if (toplevel)
				return 0;
			lx_error(lx, lx->line, "unexpected end of file: missing '}' for the block opened at line %d",
			    open_line);
			return -1;
		}
		char c = *lx->p;

		if (c == '}') {
			if (toplevel) {
				lx_error(lx, lx->line, "unexpected '}'");
				return -1;
			}
			lx->p++;
			return 0;
		}
		if (c == ';' || c == ',') {
			lx->p++;
			continue;
		}
		if (c == '.') {
			if (parse_directive(lx, obj, tailp) < 0)
				return -1;
			continue;
		}

		int line = lx->line, quoted;
		char *key = read_word(lx, 1, &quoted);

		if (key == NULL) {
			if (lx->err == NULL)
				lx_error(lx, line, "expected a key, got %s", byte_text(c, bt));
			return -1;
		}
		struct ucl_node *n = new_node(lx, line);

		if (n == NULL) {
			free(key);
			return -1;
		}
		n->key = key;
		**tailp = n;
		*tailp = &n->next;
		if (skip_ws(lx) < 0)
			return -1;
		int named = 1;

		if (lx->p < lx->end && (*lx->p == '=' || *lx->p == ':')) {
			lx->p++;
			named = 0;
			if (skip_ws(lx) < 0)
				return -1;
		}
		if (parse_value(lx, n, named) < 0)
			return -1;
	}
}

/*
 * parse_text - parse text into obj (a new root if obj is NULL). Returns the
 * root it filled; on error NULL (a new root is freed) and *err is set.
 */
static struct ucl_node *
parse_text(struct ucl_root *root, const char *text, size_t len, const char *name,
    int incl_depth, int flags, struct ucl_node *obj, struct ucl_node ***tailp, char **err)
{
	struct lexer lx = { 0 };
	struct ucl_node **tail;
	int own = root == NULL;

	if (own) {
		root = xcalloc(1, sizeof *root);
		root->node.type = UCL_OBJECT;
		obj = &root->node;
		tail = &obj->child;
		tailp = &tail;
	}
	lx.root = root;
	lx.file = intern_file(root, name);
	lx.p = text;
	lx.end = text + len;
	lx.line = 1;
	lx.incl_depth = incl_depth;
	lx.flags = flags;
	if (own) {
		root->node.file = lx.file;
		root->node.line = 1;
	}
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		lx.p += 3;	/* UTF-8 byte order mark */
	if (len > UCL_MAX_FILE_SIZE)
		lx_error(&lx, 1, "larger than %u bytes", UCL_MAX_FILE_SIZE);
	else
		parse_body(&lx, obj, tailp, 1, 1);
	if (lx.err != NULL) {
		*err = lx.err;
		if (own)
			ucl_free(&root->node);
		return NULL;
	}
	return obj;
}

struct ucl_node *
ucl_parse_string_flags(const char *text, size_t len, const char *name, int flags, char **err)
{
	*err = NULL;
	if (text == NULL) {
		text = "";
		len = 0;
	}
	return parse_text(NULL, text, len, name ? name : "(string)", 0, flags, NULL, NULL, err);
}

struct ucl_node *
ucl_parse_string(const char *text, size_t len, const char *name, char **err)
{
	return ucl_parse_string_flags(text, len, name, 0, err);
}

struct ucl_node *
ucl_parse_file(const char *path, char **err)
{
	char why[512];
	size_t len = 0;
	char *text = read_file(path, &len, why, sizeof why);
	struct ucl_node *root;

	*err = NULL;
	if (text == NULL) {
		*err = xstrdup(why);	/* names the path already */
		return NULL;
	}
	root = parse_text(NULL, text, len, path, 0, 0, NULL, NULL, err);
	free(text);
	return root;
}

void
ucl_free(struct ucl_node *node)
{
	struct ucl_root *root = (struct ucl_root *)node;

	if (root == NULL)
		return;
	free_nodes(root->node.child);
	for (size_t i = 0; i < root->nfiles; i++)
		free(root->files[i]);
	free(root->files);
	free(root);
}

const struct ucl_node *
ucl_get(const struct ucl_node *obj, const char *key)
{
	if (obj == NULL || obj->type != UCL_OBJECT)
		return NULL;
	for (const struct ucl_node *n = obj->child; n != NULL; n = n->next)
		if (n->key != NULL && strcmp(n->key, key) == 0)
			return n;
	return NULL;
}

const struct ucl_node *
ucl_next_same(const struct ucl_node *n)
{
	if (n == NULL || n->key == NULL)
		return NULL;
	for (const struct ucl_node *m = n->next; m != NULL; m = m->next)
		if (m->key != NULL && strcmp(m->key, n->key) == 0)
			return m;
	return NULL;
}
