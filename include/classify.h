/*
 * classify.h - SMTP reply -> bounce class, from a rule table.
 *
 * The classes are a closed set (the event `class` field, README). Rules are tried in order;
 * the first that matches wins. A rule matches on any of: reply code
 * (prefix such as "5", "55", "421"), enhanced code (prefix such as
 * "5.1.", "4.7.28"), and a case-insensitive substring of the text.
 * Built-in rules cover the common provider wordings (tests/fixtures/
 * replies.tsv); a rule file (smtp.classify_rules) is tried before them.
 * Rule file format, one rule per line, '#' comments:
 *     NAME  CLASS  code=PREFIX  enh=PREFIX  text="substring"
 * (any of code/enh/text may be omitted; all that are given must match).
 */
#ifndef VOLLEY_CLASSIFY_H
#define VOLLEY_CLASSIFY_H

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

/* Should a hard bounce of this class add the recipient to the suppression list? */
int bounce_class_suppresses(enum bounce_class c);

#endif
