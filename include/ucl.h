/*
 * ucl.h - a parser for the subset of UCL that volley's configuration uses.
 *
 * Why not libucl: the contract names libucl, but Debian 12 does not package
 * it (Debian's "libucl-dev" is the unrelated UCL compression library), and
 * nothing may be vendored. This parser reads the same syntax for what volley
 * documents, and keeps file:line on every node, which libucl does not.
 * Swap it for libucl once Debian ships it; the config code only sees the
 * tree below.
 *
 * Accepted syntax (a subset of UCL / nginx style):
 *   key = value;            key value;          key: value,
 *   key { ... }             key "name" { ... }  (named blocks, repeatable)
 *   key = [ v1, v2, ... ];  values: "double-quoted" (\" \\ \n \t escapes),
 *   'single-quoted', bare words (numbers, 5min, 3000/h, true, *.google.com)
 *   comments: # to end of line, // to end of line, and C block comments
 *   .include "path";        relative to the including file; globs allowed
 *                           (pools, then "/", then "*.conf"), expanded in
 *                           sorted (bytewise) order; no match is no error
 * Repeated keys are kept in order (a block may hold several "pool" nodes).
 * Separators (; and ,) are optional between entries.
 *
 * Limits (garbage in never means unbounded memory or a crash): a file is at
 * most 4 MiB, includes nest at most 16 deep and pull in at most 256 files,
 * blocks/arrays nest at most 64 deep, a tree holds at most 200000 nodes.
 * A bare word runs to white space or one of ; , { } [ ] " '  (so URLs and
 * host:port need no quotes); a key also stops at = and :. Comments start
 * only where a token could start ("redis://x" is one word).
 */
#ifndef VOLLEY_UCL_H
#define VOLLEY_UCL_H

#include <stddef.h>

enum ucl_type {
	UCL_NULL = 0,
	UCL_STRING,		/* every scalar is kept as its text */
	UCL_OBJECT,		/* { ... } : children are key/value nodes */
	UCL_ARRAY,		/* [ ... ] : children have key NULL */
};

struct ucl_node {
	enum ucl_type type;
	char *key;		/* NULL for array elements and the root */
	char *arg;		/* the "name" of `key "name" { }`, else NULL */
	char *str;		/* UCL_STRING value */
	int quoted;		/* the scalar was quoted in the source */
	const char *file;	/* interned; valid while the root lives */
	int line;
	struct ucl_node *child;	/* first child (OBJECT/ARRAY) */
	struct ucl_node *next;	/* next sibling */
};

/*
 * ucl_parse_file - parse path. On error returns NULL and sets *err to a
 * malloc'd "file:line: message". Includes are followed (depth <= 16).
 */
struct ucl_node *ucl_parse_file(const char *path, char **err);
/* Same, from memory; name is used in messages and to resolve includes. */
struct ucl_node *ucl_parse_string(const char *text, size_t len, const char *name, char **err);
/*
 * Same, with flags: UCL_NO_INCLUDE makes .include an error (the fuzz target
 * uses it so that garbage input never reads files).
 */
#define UCL_NO_INCLUDE 1
struct ucl_node *ucl_parse_string_flags(const char *text, size_t len, const char *name,
    int flags, char **err);
void ucl_free(struct ucl_node *root);

/* First child of obj with this key (case-sensitive), or NULL. */
const struct ucl_node *ucl_get(const struct ucl_node *obj, const char *key);
/* Next sibling after n with the same key, or NULL. */
const struct ucl_node *ucl_next_same(const struct ucl_node *n);

#endif
