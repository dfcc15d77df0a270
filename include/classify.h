/*
 * classify.h - SMTP reply -> bounce class, from a rule table.
 *
 * The classes are a closed set (the event `class` field). Rules are tried in order;
 * the first that matches wins. A rule matches on any of: reply code
 * (prefix such as "5", "55", "421"), enhanced code (prefix such as
 * "5.1.", "4.7.28"), and a case-insensitive substring of the text (runs
 * of blanks and line breaks in the reply count as one space).
 * A rule may also name the stage of the reply (the command it answered).
 * The built-in rules are the text of pools/bounce-rules.conf, compiled in
 * (a unit test keeps the two identical); they cover the provider wordings
 * collected in tests/fixtures/replies.tsv and replies-corpus.tsv. A rule file
 * (smtp.classify_rules) is tried before them. Format, one rule per line,
 * '#' comments:
 *     NAME  CLASS  [stage=LIST] [code=PREFIX] [enh=PREFIX] [text="substring"]
 * (all that are given must match; pools/bounce-rules.conf documents each).
 */
#ifndef VOLLEY_CLASSIFY_H
#define VOLLEY_CLASSIFY_H

#include <stddef.h>

enum bounce_class {
	CLASS_UNKNOWN = 0,
	CLASS_INVALID_RECIPIENT,
	CLASS_BAD_DOMAIN,
	CLASS_INACTIVE_MAILBOX,
	CLASS_MAILBOX_FULL,
	CLASS_MESSAGE_TOO_LARGE,
	CLASS_SPAM_CONTENT,
	CLASS_REPUTATION_BLOCK,
	CLASS_AUTH_FAILURE,
	CLASS_RATE_LIMITED,
	CLASS_GREYLISTED,
	CLASS_RELAY_DENIED,
	CLASS_DNS_FAILURE,
	CLASS_CONNECTION_FAILURE,
	CLASS_TLS_FAILURE,
	CLASS_PROTOCOL_ERROR,
	CLASS__COUNT
};

const char *bounce_class_name(enum bounce_class c);	/* "invalid_recipient" */
int bounce_class_from_name(const char *s, enum bounce_class *out);	/* 0 ok, -1 unknown */

struct classify_rules;

/* Built-in rules only. */
struct classify_rules *classify_rules_builtin(void);
/* File rules first, then built-ins. NULL + *err (malloc'd "file:line: msg") on error. */
struct classify_rules *classify_rules_load(const char *path, char **err);
void classify_rules_free(struct classify_rules *r);

/*
 * classify_reply - class of a reply. code 0 = none; enh may be "" or NULL;
 * text is the reply text (may be NULL). *rule (if rule != NULL) gets the
 * name of the rule that matched ("default-5xx" style names for fallbacks).
 */
enum bounce_class classify_reply(const struct classify_rules *r, int code,
    const char *enh, const char *text, const char **rule);

/*
 * classify_line - same, from a whole reply line "550 5.1.1 text".
 */
enum bounce_class classify_line(const struct classify_rules *r, const char *line,
    const char **rule);

/* Where the rule that decided came from. */
#define CLASSIFY_BUILTIN_FILE "(built-in)"
struct classify_match {
	const char *rule;	/* rule name; "default" when none matched */
	const char *file;	/* the rule file's path, CLASSIFY_BUILTIN_FILE, or NULL */
	int line;		/* its line in that file (built-ins: in pools/bounce-rules.conf) */
};

/*
 * classify_reply_stage / classify_line_stage - as classify_reply() and
 * classify_line(), with the stage of the reply: "connect", "greeting",
 * "EHLO", "HELO", "MAIL", "RCPT", "DATA", "DOT", "RSET", "QUIT" in any
 * case (smtp_stage_name() gives them), or NULL when unknown, in which
 * case rules with a stage= never match. m may be NULL. The strings in *m
 * live as long as the rule set.
 */
enum bounce_class classify_reply_stage(const struct classify_rules *r, const char *stage,
    int code, const char *enh, const char *text, struct classify_match *m);
enum bounce_class classify_line_stage(const struct classify_rules *r, const char *stage,
    const char *line, struct classify_match *m);

/* Reading a rule set back (tests, `volley classify`). */
struct classify_rule_info {
	const char *name;
	enum bounce_class cls;
	const char *stage, *code, *enh, *text;	/* NULL when the rule does not say */
	const char *file;
	int line;
};
size_t classify_rules_count(const struct classify_rules *r);
int classify_rule_get(const struct classify_rules *r, size_t i, struct classify_rule_info *out);
/* The compiled-in text of pools/bounce-rules.conf. */
const char *classify_builtin_text(void);

/* Should a hard bounce of this class add the recipient to the suppression list? */
int bounce_class_suppresses(enum bounce_class c);

/* classify_enh_at - an enhanced status code "C.SSS.DDD" at s (C in 2, 4,
 * 5; 1-3 digits each) followed by the end or a non-code byte: copied to
 * out, its length returned, or 0. Shared with the shaping rules. */
size_t classify_enh_at(const char *s, char out[16]);
/* classify_enh_matches - enh is prefix or under it ("5.7" matches
 * "5.7.1", not "5.71.1"); an empty prefix matches anything. */
int classify_enh_matches(const char *prefix, const char *enh);

#endif
