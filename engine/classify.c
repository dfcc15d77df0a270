/*
 * classify.c - SMTP reply -> bounce class (see classify.h).
 *
 * Owns: the closed set of bounce class names, the built-in rule table,
 * loading operator rule files, and matching a reply against the rules.
 *
 * API: bounce_class_name(), bounce_class_from_name(), classify_rules_builtin(),
 * classify_rules_load(), classify_rules_free(), classify_reply(),
 * classify_line(), bounce_class_suppresses().
 *
 * How the built-in table is ordered (first match wins), and why:
 *   1. provider wording (Gmail, Yahoo, Microsoft): their texts are specific
 *      and sometimes contradict the generic codes (Microsoft answers 5.4.1
 *      for an unknown recipient; Gmail's 421 4.7.28 talks about spam).
 *   2. greylisting, relay and sender wording: unambiguous, and a greylist
 *      reply often carries 4.7.1 which would otherwise read as a policy
 *      block. A refused sender (x.1.7/x.1.8, "Sender address rejected")
 *      is auth_failure wherever it comes: Postfix delays sender checks to
 *      RCPT by default, and a 5.1.8 must not read as an unknown recipient.
 *   3. enhanced codes about the address or mailbox (RFC 3463 x.1.x, x.2.x,
 *      x.3.4): a 5.1.1 is an unknown user whatever else the text says.
 *   4. block-list wording (before spam wording: "spamhaus" contains "spam").
 *   5. temporary rate/volume wording (before spam: Gmail's rate limit
 *      mentions "unsolicited mail").
 *   6. authentication (SPF/DKIM/DMARC, 5.7.2x).
 *   7. spam/content wording.
 *   8. wording without enhanced codes (user unknown, mailbox full, ...).
 *   9. fallbacks by code class: 421 -> rate_limited, 5.5.x/50x -> protocol,
 *      anything else -> unknown ("default-5xx", "default-4xx", "default").
 * Operator rules from a file are tried before all of these.
 *
 * Matching: code is a prefix of the 3-digit code; enh is a prefix of the
 * enhanced code that ends at a component boundary ("5.1.1" matches 5.1.1
 * but not 5.1.10; "5.1." matches both); text is a case-insensitive
 * substring. All conditions a rule gives must hold. Pure: no I/O except
 * reading the rule file in classify_rules_load().
 */
#include "classify.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RULES_MAX_FILE	(1u << 20)
#define RULES_MAX	10000
#define RULE_FIELD_MAX	512

static const char *const class_names[CLASS__COUNT] = {
	[CLASS_UNKNOWN] = "unknown",
	[CLASS_INVALID_RECIPIENT] = "invalid_recipient",
	[CLASS_BAD_DOMAIN] = "bad_domain",
	[CLASS_INACTIVE_MAILBOX] = "inactive_mailbox",
	[CLASS_MAILBOX_FULL] = "mailbox_full",
	[CLASS_MESSAGE_TOO_LARGE] = "message_too_large",
	[CLASS_SPAM_CONTENT] = "spam_content",
	[CLASS_REPUTATION_BLOCK] = "reputation_block",
	[CLASS_AUTH_FAILURE] = "auth_failure",
	[CLASS_RATE_LIMITED] = "rate_limited",
	[CLASS_GREYLISTED] = "greylisted",
	[CLASS_RELAY_DENIED] = "relay_denied",
	[CLASS_DNS_FAILURE] = "dns_failure",
	[CLASS_CONNECTION_FAILURE] = "connection_failure",
	[CLASS_TLS_FAILURE] = "tls_failure",
	[CLASS_PROTOCOL_ERROR] = "protocol_error",
};

const char *
bounce_class_name(enum bounce_class c)
{
	if ((unsigned)c >= CLASS__COUNT)
		return "unknown";
	return class_names[c];
}

int
bounce_class_from_name(const char *s, enum bounce_class *out)
{
	if (s == NULL)
		return -1;
	for (int i = 0; i < CLASS__COUNT; i++)
		if (strcmp(s, class_names[i]) == 0) {
			*out = (enum bounce_class)i;
			return 0;
		}
	return -1;
}

int
bounce_class_suppresses(enum bounce_class c)
{
	return c == CLASS_INVALID_RECIPIENT || c == CLASS_BAD_DOMAIN ||
	    c == CLASS_INACTIVE_MAILBOX;
}

struct rule {
	const char *name;
	enum bounce_class cls;
	const char *code;	/* prefix of the 3-digit code, or NULL */
	const char *enh;	/* prefix of the enhanced code, or NULL */
	const char *text;	/* case-insensitive substring, or NULL */
};

#define R(n, c, code, enh, text) { n, CLASS_##c, code, enh, text }

static const struct rule builtin_rules[] = {
	/* 1. providers: Gmail */
	R("gmail-no-such-user", INVALID_RECIPIENT, "5", NULL, "account that you tried to reach does not exist"),
	R("gmail-disabled", INACTIVE_MAILBOX, NULL, NULL, "account that you tried to reach is disabled"),
	R("gmail-over-quota", MAILBOX_FULL, NULL, NULL, "account that you tried to reach is over quota"),
	R("gmail-inactive", INACTIVE_MAILBOX, NULL, NULL, "account that you tried to reach is inactive"),
	R("gmail-rate-limited", RATE_LIMITED, "4", "4.7.28", NULL),
	R("gmail-rate-limited", RATE_LIMITED, "4", NULL, "unusual rate of unsolicited mail"),
	R("gmail-rate-limited", RATE_LIMITED, "4", "4.2.1", "receiving mail at a rate"),
	R("gmail-unauthenticated", AUTH_FAILURE, NULL, NULL, "requires all senders to authenticate"),
	R("gmail-spam", SPAM_CONTENT, "5", NULL, "likely unsolicited mail"),
	R("gmail-size", MESSAGE_TOO_LARGE, NULL, NULL, "exceeded google's message size limits"),
	R("gmail-blocked-ip", REPUTATION_BLOCK, "5", NULL, "low reputation of the sending ip"),
	/* Yahoo: TSS04/TS01/TS02 temporary, TSS09/TS03 permanent */
	R("yahoo-tss04", RATE_LIMITED, NULL, NULL, "[TSS04]"),
	R("yahoo-ts01", RATE_LIMITED, NULL, NULL, "[TS01]"),
	R("yahoo-ts02", RATE_LIMITED, NULL, NULL, "[TS02]"),
	R("yahoo-tss09", REPUTATION_BLOCK, NULL, NULL, "[TSS09]"),
	R("yahoo-ts03", REPUTATION_BLOCK, NULL, NULL, "[TS03]"),
	R("yahoo-permanently-deferred", REPUTATION_BLOCK, "5", NULL, "permanently deferred"),
	R("yahoo-no-such-user", INVALID_RECIPIENT, "5", NULL, "doesn't have a yahoo.com account"),
	R("yahoo-no-such-user", INVALID_RECIPIENT, "5", NULL, "dd This user doesn't have"),
	R("yahoo-disabled", INACTIVE_MAILBOX, "5", NULL, "mailbox is disabled"),
	/* Microsoft (Outlook.com / Office 365) */
	R("microsoft-blocklist", REPUTATION_BLOCK, "5", NULL, "(S3150)"),
	R("microsoft-blocklist", REPUTATION_BLOCK, "5", NULL, "(S3140)"),
	R("microsoft-rate-limited", RATE_LIMITED, "4", "4.7.650", NULL),
	R("microsoft-rate-limited", RATE_LIMITED, "4", NULL, "(S775)"),
	R("microsoft-rate-limited", RATE_LIMITED, "4", NULL, "(S843)"),
	R("microsoft-recipient-not-found", INVALID_RECIPIENT, "5", NULL, "RecipientNotFound"),
	R("microsoft-recipient-not-found", INVALID_RECIPIENT, "5", NULL, "AS(201806281)"),
	R("microsoft-recipient-not-found", INVALID_RECIPIENT, "5", "5.4.1", "Recipient address rejected: Access denied"),
	R("microsoft-over-quota", MAILBOX_FULL, NULL, NULL, "QuotaExceeded"),
	R("microsoft-banned-ip", REPUTATION_BLOCK, "5", NULL, "banned sending ip"),
	R("microsoft-relay", RELAY_DENIED, "5", "5.7.54", NULL),

	/* 2. greylisting and relaying */
	R("greylisted", GREYLISTED, "4", NULL, "greylist"),
	R("greylisted", GREYLISTED, "4", NULL, "graylist"),
	R("greylisted", GREYLISTED, "4", NULL, "grey-list"),
	R("greylisted", GREYLISTED, "4", NULL, "gray-list"),
	R("greylisted", GREYLISTED, "4", NULL, "greylisting"),
	R("relay-denied", RELAY_DENIED, "5", NULL, "relay access denied"),
	R("relay-denied", RELAY_DENIED, "5", NULL, "relaying denied"),
	R("relay-denied", RELAY_DENIED, "5", NULL, "relay not permitted"),
	R("relay-denied", RELAY_DENIED, "5", NULL, "not permitted to relay"),
	R("relay-denied", RELAY_DENIED, "5", NULL, "unable to relay"),
	R("relay-denied", RELAY_DENIED, "5", NULL, "relaying not allowed"),
	R("relay-denied", RELAY_DENIED, "5", NULL, "we do not relay"),
	R("relay-denied", RELAY_DENIED, "5", NULL, "relay denied"),
	R("sender-rejected", AUTH_FAILURE, NULL, NULL, "sender address rejected"),
	R("enh-x.1.7", AUTH_FAILURE, NULL, "5.1.7", NULL),
	R("enh-x.1.7", AUTH_FAILURE, NULL, "4.1.7", NULL),
	R("enh-x.1.8", AUTH_FAILURE, NULL, "5.1.8", NULL),
	R("enh-x.1.8", AUTH_FAILURE, NULL, "4.1.8", NULL),

	/* 3. RFC 3463 address and mailbox status */
	R("enh-5.1.1", INVALID_RECIPIENT, NULL, "5.1.1", NULL),
	R("enh-5.1.10", INVALID_RECIPIENT, NULL, "5.1.10", NULL),
	R("enh-5.1.2", BAD_DOMAIN, NULL, "5.1.2", NULL),
	R("enh-5.1.x", INVALID_RECIPIENT, NULL, "5.1.", NULL),
	R("enh-5.2.1", INACTIVE_MAILBOX, NULL, "5.2.1", NULL),
	R("enh-x.2.2", MAILBOX_FULL, NULL, "5.2.2", NULL),
	R("enh-x.2.2", MAILBOX_FULL, NULL, "4.2.2", NULL),
	R("enh-x.2.3", MESSAGE_TOO_LARGE, NULL, "5.2.3", NULL),
	R("enh-x.2.3", MESSAGE_TOO_LARGE, NULL, "4.2.3", NULL),
	R("enh-x.3.4", MESSAGE_TOO_LARGE, NULL, "5.3.4", NULL),
	R("enh-x.3.4", MESSAGE_TOO_LARGE, NULL, "4.3.4", NULL),
	R("enh-5.4.4", BAD_DOMAIN, NULL, "5.4.4", NULL),

	/* 4. block lists and reputation */
	R("rbl-spamhaus", REPUTATION_BLOCK, NULL, NULL, "spamhaus"),
	R("rbl-spamcop", REPUTATION_BLOCK, NULL, NULL, "spamcop"),
	R("rbl-barracuda", REPUTATION_BLOCK, NULL, NULL, "barracudacentral"),
	R("rbl-sorbs", REPUTATION_BLOCK, NULL, NULL, "sorbs.net"),
	R("rbl-listed", REPUTATION_BLOCK, NULL, NULL, "blocked using"),
	R("rbl-listed", REPUTATION_BLOCK, NULL, NULL, "dnsbl"),
	R("rbl-listed", REPUTATION_BLOCK, NULL, NULL, "block list"),
	R("rbl-listed", REPUTATION_BLOCK, NULL, NULL, "blocklist"),
	R("rbl-listed", REPUTATION_BLOCK, NULL, NULL, "blacklist"),
	R("rbl-listed", REPUTATION_BLOCK, NULL, NULL, "black list"),
	R("rbl-listed", REPUTATION_BLOCK, NULL, NULL, "listed at"),
	R("rbl-listed", REPUTATION_BLOCK, NULL, NULL, "listed in"),
	R("reputation", REPUTATION_BLOCK, "5", NULL, "poor reputation"),
	R("reputation", REPUTATION_BLOCK, "5", NULL, "bad reputation"),
	R("reputation", REPUTATION_BLOCK, "5", NULL, "ip reputation"),
	R("reputation", REPUTATION_BLOCK, "5", NULL, "sender reputation"),

	/* 5. temporary rate and volume limits */
	R("rate-limited", RATE_LIMITED, "4", NULL, "rate limit"),
	R("rate-limited", RATE_LIMITED, "4", NULL, "rate-limit"),
	R("rate-limited", RATE_LIMITED, "4", NULL, "ratelimit"),
	R("rate-limited", RATE_LIMITED, "4", NULL, "too many"),
	R("rate-limited", RATE_LIMITED, "4", NULL, "volume"),
	R("rate-limited", RATE_LIMITED, "4", NULL, "throttl"),
	R("rate-limited", RATE_LIMITED, "4", NULL, "slow down"),
	R("rate-limited", RATE_LIMITED, "4", NULL, "temporarily deferred"),
	R("rate-limited", RATE_LIMITED, "4", NULL, "exceeded"),
	R("rate-limited", RATE_LIMITED, "4", "4.7.", "rate"),
	R("reputation-temporary", RATE_LIMITED, "4", NULL, "reputation"),

	/* 6. authentication (RFC 7372: 5.7.20-5.7.27) */
	R("enh-x.7.20", AUTH_FAILURE, NULL, "5.7.20", NULL),
	R("enh-x.7.21", AUTH_FAILURE, NULL, "5.7.21", NULL),
	R("enh-x.7.22", AUTH_FAILURE, NULL, "5.7.22", NULL),
	R("enh-x.7.23", AUTH_FAILURE, NULL, "5.7.23", NULL),
	R("enh-x.7.24", AUTH_FAILURE, NULL, "5.7.24", NULL),
	R("enh-x.7.25", AUTH_FAILURE, NULL, "5.7.25", NULL),
	R("enh-x.7.26", AUTH_FAILURE, NULL, "5.7.26", NULL),
	R("enh-x.7.27", AUTH_FAILURE, NULL, "5.7.27", NULL),
	R("enh-x.7.26", AUTH_FAILURE, NULL, "4.7.26", NULL),
	R("enh-x.7.27", AUTH_FAILURE, NULL, "4.7.27", NULL),
	R("auth-dmarc", AUTH_FAILURE, NULL, NULL, "dmarc"),
	R("auth-spf", AUTH_FAILURE, NULL, NULL, "sender policy framework"),
	R("auth-spf", AUTH_FAILURE, NULL, NULL, "spf"),
	R("auth-dkim", AUTH_FAILURE, NULL, NULL, "dkim"),
	R("auth-unauthenticated", AUTH_FAILURE, NULL, NULL, "unauthenticated"),

	/* 7. spam and content */
	R("spam-content", SPAM_CONTENT, NULL, NULL, "spam"),
	R("spam-content", SPAM_CONTENT, NULL, NULL, "unsolicited"),
	R("spam-content", SPAM_CONTENT, NULL, NULL, "junk mail"),
	R("spam-content", SPAM_CONTENT, NULL, NULL, "content filter"),
	R("spam-content", SPAM_CONTENT, NULL, NULL, "content rejected"),
	R("spam-content", SPAM_CONTENT, NULL, NULL, "virus"),
	R("spam-content", SPAM_CONTENT, NULL, NULL, "malware"),
	R("spam-content", SPAM_CONTENT, NULL, NULL, "phishing"),
	R("enh-x.7.28", RATE_LIMITED, NULL, "5.7.28", NULL),

	/* 8. wording without (useful) enhanced codes */
	R("text-bad-domain", BAD_DOMAIN, "5", NULL, "host unknown"),
	R("text-bad-domain", BAD_DOMAIN, "5", NULL, "domain not found"),
	R("text-bad-domain", BAD_DOMAIN, "5", NULL, "no such domain"),
	R("text-bad-domain", BAD_DOMAIN, "5", NULL, "domain does not exist"),
	R("text-inactive", INACTIVE_MAILBOX, "5", NULL, "account disabled"),
	R("text-inactive", INACTIVE_MAILBOX, "5", NULL, "account is disabled"),
	R("text-inactive", INACTIVE_MAILBOX, "5", NULL, "mailbox disabled"),
	R("text-inactive", INACTIVE_MAILBOX, "5", NULL, "account has been disabled"),
	R("text-inactive", INACTIVE_MAILBOX, "5", NULL, "inactive"),
	R("text-inactive", INACTIVE_MAILBOX, "5", NULL, "deactivated"),
	R("text-mailbox-full", MAILBOX_FULL, NULL, NULL, "over quota"),
	R("text-mailbox-full", MAILBOX_FULL, NULL, NULL, "quota exceeded"),
	R("text-mailbox-full", MAILBOX_FULL, NULL, NULL, "mailbox full"),
	R("text-mailbox-full", MAILBOX_FULL, NULL, NULL, "mailbox is full"),
	R("text-too-large", MESSAGE_TOO_LARGE, NULL, NULL, "message size exceeds"),
	R("text-too-large", MESSAGE_TOO_LARGE, NULL, NULL, "message too large"),
	R("text-too-large", MESSAGE_TOO_LARGE, NULL, NULL, "message too big"),
	R("text-too-large", MESSAGE_TOO_LARGE, NULL, NULL, "size limit"),
	R("text-no-such-user", INVALID_RECIPIENT, "5", NULL, "user unknown"),
	R("text-no-such-user", INVALID_RECIPIENT, "5", NULL, "unknown user"),
	R("text-no-such-user", INVALID_RECIPIENT, "5", NULL, "no such user"),
	R("text-no-such-user", INVALID_RECIPIENT, "5", NULL, "recipient not found"),
	R("text-no-such-user", INVALID_RECIPIENT, "5", NULL, "invalid recipient"),
	R("text-no-such-user", INVALID_RECIPIENT, "5", NULL, "mailbox not found"),
	R("text-no-such-user", INVALID_RECIPIENT, "5", NULL, "no mailbox here"),
	R("text-no-such-user", INVALID_RECIPIENT, "5", NULL, "does not exist"),
	R("text-no-such-user", INVALID_RECIPIENT, "550", NULL, "mailbox unavailable"),

	/* 9. fallbacks by code class */
	R("code-421", RATE_LIMITED, "421", NULL, NULL),
	R("enh-x.5.x", PROTOCOL_ERROR, NULL, "5.5.", NULL),
	R("enh-x.5.x", PROTOCOL_ERROR, NULL, "4.5.", NULL),
	R("code-50x", PROTOCOL_ERROR, "50", NULL, NULL),
	R("default-5xx", UNKNOWN, "5", NULL, NULL),
	R("default-4xx", UNKNOWN, "4", NULL, NULL),
};
#define NBUILTIN (sizeof builtin_rules / sizeof builtin_rules[0])

struct classify_rules {
	struct rule *rules;	/* file rules (owned strings) then a copy of the built-ins */
	size_t n;
	size_t nowned;		/* the first nowned have malloc'd strings */
};

struct classify_rules *
classify_rules_builtin(void)
{
	struct classify_rules *r = xcalloc(1, sizeof *r);

	r->rules = xmalloc(sizeof builtin_rules);
	memcpy(r->rules, builtin_rules, sizeof builtin_rules);
	r->n = NBUILTIN;
	return r;
}

void
classify_rules_free(struct classify_rules *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nowned; i++) {
		free((char *)r->rules[i].name);
		free((char *)r->rules[i].code);
		free((char *)r->rules[i].enh);
		free((char *)r->rules[i].text);
	}
	free(r->rules);
	free(r);
}

/* ------------------------------------------------------------------ */
/* rule files                                                           */

static int
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* next_field - one field at *pp: bare, or key="quoted" with \" \\ escapes. */
static int
next_field(const char **pp, char *out, size_t outlen, const char **why)
{
	const char *p = *pp;
	size_t n = 0;

	while (*p && !is_ws(*p)) {
		char c = *p++;

		if (c == '"') {
			for (;;) {
				if (*p == '\0') {
					*why = "unterminated quoted string";
					return -1;
				}
				c = *p++;
				if (c == '"')
					break;
				if (c == '\\') {
					if (*p != '"' && *p != '\\') {
						*why = "only \\\" and \\\\ are escapes in quoted text";
						return -1;
					}
					c = *p++;
				}
				if (n + 1 >= outlen) {
					*why = "field too long";
					return -1;
				}
				out[n++] = c;
			}
			continue;
		}
		if (n + 1 >= outlen) {
			*why = "field too long";
			return -1;
		}
		out[n++] = c;
	}
	out[n] = '\0';
	*pp = p;
	return 0;
}

static int
all_digits(const char *s, size_t maxlen)
{
	size_t n = 0;

	for (; *s; s++, n++)
		if (*s < '0' || *s > '9')
			return 0;
	return n > 0 && n <= maxlen;
}

static int
valid_enh_prefix(const char *s)
{
	/* digits and dots, starting with a class digit: "5", "5.", "5.1.1", "4.7." */
	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return 0;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || *p == '.') || (p[0] == '.' && p[1] == '.'))
			return 0;
	return strlen(s) <= 11;
}

/* parse_rule_line - one non-empty line into *out (owned strings). */
static int
parse_rule_line(const char *line, struct rule *out, char *why, size_t whylen)
{
	char f[RULE_FIELD_MAX];
	const char *p = line, *w = NULL;
	int nf = 0;

	memset(out, 0, sizeof *out);
	for (;;) {
		while (is_ws(*p))
			p++;
		if (*p == '\0' || *p == '#')
			break;
		if (next_field(&p, f, sizeof f, &w) < 0) {
			snprintf(why, whylen, "%s", w);
			return -1;
		}
		if (nf == 0) {
			out->name = xstrdup(f);
		} else if (nf == 1) {
			if (bounce_class_from_name(f, &out->cls) < 0) {
				snprintf(why, whylen, "unknown class '%.100s'", f);
				return -1;
			}
		} else if (strncmp(f, "code=", 5) == 0) {
			if (out->code != NULL || !all_digits(f + 5, 3) || (f[5] < '2' || f[5] > '5')) {
				snprintf(why, whylen, "bad or repeated code= (1 to 3 digits, e.g. code=5 or code=421)");
				return -1;
			}
			out->code = xstrdup(f + 5);
		} else if (strncmp(f, "enh=", 4) == 0) {
			if (out->enh != NULL || !valid_enh_prefix(f + 4)) {
				snprintf(why, whylen, "bad or repeated enh= (e.g. enh=5.1.1 or enh=4.7.)");
				return -1;
			}
			out->enh = xstrdup(f + 4);
		} else if (strncmp(f, "text=", 5) == 0) {
			if (out->text != NULL || f[5] == '\0') {
				snprintf(why, whylen, "empty or repeated text=");
				return -1;
			}
			out->text = xstrdup(f + 5);
		} else {
			snprintf(why, whylen, "unknown field '%.100s' (want code=, enh= or text=)", f);
			return -1;
		}
		nf++;
	}
	if (nf < 2) {
		snprintf(why, whylen, "a rule needs NAME CLASS [code=..] [enh=..] [text=\"..\"]");
		return -1;
	}
	return 0;
}

static void
rule_clear(struct rule *r)
{
	free((char *)r->name);
	free((char *)r->code);
	free((char *)r->enh);
	free((char *)r->text);
	memset(r, 0, sizeof *r);
}

struct classify_rules *
classify_rules_load(const char *path, char **err)
{
	FILE *f;
	struct stat st;
	struct classify_rules *r;
	char *line = NULL, why[256];
	size_t cap = 0;
	ssize_t len;
	int lineno = 0;

	*err = NULL;
	/* O_NONBLOCK: opening a FIFO must not hang before the S_ISREG check */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	f = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (f == NULL) {
		if (fd >= 0)
			close(fd);
		*err = xasprintf("%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)RULES_MAX_FILE) {
		*err = xasprintf("%s: not a regular file of at most %u bytes", path, RULES_MAX_FILE);
		fclose(f);
		return NULL;
	}
	r = xcalloc(1, sizeof *r);
	while ((len = getline(&line, &cap, f)) >= 0) {
		struct rule rule;

		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if ((size_t)len != strlen(line)) {
			*err = xasprintf("%s:%d: NUL byte in line", path, lineno);
			break;
		}
		const char *p = line;

		while (is_ws(*p))
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		if (parse_rule_line(p, &rule, why, sizeof why) < 0) {
			rule_clear(&rule);
			*err = xasprintf("%s:%d: %s", path, lineno, why);
			break;
		}
		if (r->nowned >= RULES_MAX) {
			rule_clear(&rule);
			*err = xasprintf("%s:%d: more than %d rules", path, lineno, RULES_MAX);
			break;
		}
		r->rules = xrealloc(r->rules, (r->nowned + 1) * sizeof *r->rules);
		r->rules[r->nowned++] = rule;
	}
	free(line);
	fclose(f);
	r->n = r->nowned;
	if (*err != NULL) {
		classify_rules_free(r);
		return NULL;
	}
	r->rules = xrealloc(r->rules, (r->nowned + NBUILTIN) * sizeof *r->rules);
	memcpy(r->rules + r->nowned, builtin_rules, sizeof builtin_rules);
	r->n = r->nowned + NBUILTIN;
	return r;
}

/* ------------------------------------------------------------------ */
/* matching                                                             */

/*
 * parse_enh - an enhanced status code "C.SSS.DDD" at s (C in 2,4,5; 1-3
 * digits each), followed by the end or a non-code byte. Copies it to out
 * and returns its length, or 0.
 */
static size_t
parse_enh(const char *s, char out[16])
{
	const char *p = s;

	if (*p != '2' && *p != '4' && *p != '5')
		return 0;
	p++;
	for (int part = 0; part < 2; part++) {
		int nd = 0;

		if (*p != '.')
			return 0;
		p++;
		while (*p >= '0' && *p <= '9' && nd < 4) {
			p++;
			nd++;
		}
		if (nd == 0 || nd > 3)
			return 0;
	}
	if (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
		return 0;
	size_t n = (size_t)(p - s);

	memcpy(out, s, n);
	out[n] = '\0';
	return n;
}

static int
enh_matches(const char *prefix, const char *enh)
{
	size_t n = strlen(prefix);

	if (strncmp(enh, prefix, n) != 0)
		return 0;
	return prefix[n - 1] == '.' || enh[n] == '\0' || enh[n] == '.';
}

static int
rule_matches(const struct rule *r, const char *code, const char *enh, const char *text)
{
	if (r->code != NULL && (code[0] == '\0' || strncmp(code, r->code, strlen(r->code)) != 0))
		return 0;
	if (r->enh != NULL && (enh[0] == '\0' || !enh_matches(r->enh, enh)))
		return 0;
	if (r->text != NULL && strcasestr(text, r->text) == NULL)
		return 0;
	return 1;
}

enum bounce_class
classify_reply(const struct classify_rules *r, int code, const char *enh, const char *text,
    const char **rule)
{
	char codebuf[8] = "", enhbuf[16] = "";

	if (text == NULL)
		text = "";
	if (code >= 200 && code <= 599)
		snprintf(codebuf, sizeof codebuf, "%03d", code);
	if (enh != NULL && enh[0] != '\0') {
		if (parse_enh(enh, enhbuf) == 0)
			enhbuf[0] = '\0';
	} else {
		/* the caller left the enhanced code in the text */
		while (*text == ' ')
			text++;
		size_t n = parse_enh(text, enhbuf);

		if (n > 0)
			text += n;
	}
	for (size_t i = 0; r != NULL && i < r->n; i++) {
		if (rule_matches(&r->rules[i], codebuf, enhbuf, text)) {
			if (rule != NULL)
				*rule = r->rules[i].name;
			return r->rules[i].cls;
		}
	}
	if (rule != NULL)
		*rule = "default";
	return CLASS_UNKNOWN;
}

enum bounce_class
classify_line(const struct classify_rules *r, const char *line, const char **rule)
{
	int code = 0;
	char enhbuf[16] = "";
	const char *p = line ? line : "";

	if (p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
	    p[2] <= '9' && (p[3] == '\0' || p[3] == ' ' || p[3] == '-')) {
		code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
		p += p[3] ? 4 : 3;
		while (*p == ' ')
			p++;
		size_t n = parse_enh(p, enhbuf);

		p += n;
		while (*p == ' ')
			p++;
	}
	return classify_reply(r, code, enhbuf, p, rule);
}
