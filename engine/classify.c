/*
 * classify.c - SMTP reply -> bounce class (see classify.h).
 *
 * Owns: the closed set of bounce class names, the built-in rules, loading
 * operator rule files, and matching a reply against the rules.
 *
 * API: bounce_class_name(), bounce_class_from_name(), classify_rules_builtin(),
 * classify_rules_load(), classify_rules_free(), classify_reply(),
 * classify_line(), classify_reply_stage(), classify_line_stage(),
 * classify_rules_count(), classify_rule_get(), classify_builtin_text(),
 * bounce_class_suppresses().
 *
 * The built-in rules are data: the text of pools/bounce-rules.conf,
 * compiled in below and parsed by the same code as an operator's file, so
 * the two cannot disagree in meaning, and a built-in rule is reported as
 * "(built-in):N", line N of that file. The file explains the order of the
 * rules (first match wins). Operator rules from a file are tried before
 * all of them.
 *
 * Matching: stage is one of the rule's comma-separated stages (any case;
 * a rule with a stage never matches a reply of unknown stage); code is a
 * prefix of the 3-digit code; enh is a prefix of the enhanced code that
 * ends at a component boundary ("5.1.1" matches 5.1.1 but not 5.1.10;
 * "5.1." matches both); text is a case-insensitive substring of the
 * reply text with its runs of blanks (line breaks too) squeezed to one
 * space, cut at CLASSIFY_TEXT_MAX bytes. All
 * conditions a rule gives must hold. Pure: no I/O except reading the rule
 * file in classify_rules_load().
 */
#include "classify.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define RULES_MAX_FILE	(1u << 20)
#define RULES_MAX	10000
#define RULE_FIELD_MAX	512
#define CLASSIFY_TEXT_MAX	8192	/* bytes of reply text matched (a reply has at most 4096) */

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
	char *name;
	enum bounce_class cls;
	char *stage;		/* "rcpt" or "connect,greeting" (lower case), or NULL: any */
	char *code;		/* prefix of the 3-digit code, or NULL */
	char *enh;		/* prefix of the enhanced code, or NULL */
	char *text;		/* case-insensitive substring, or NULL */
	const char *file;	/* CLASSIFY_BUILTIN_FILE or the owning set's path */
	int line;
};

struct classify_rules {
	struct rule *rules;	/* file rules, then the built-ins */
	size_t n, cap;
	char *path;		/* the file loaded, or NULL */
};

/*
 * The built-in rules: the text of pools/bounce-rules.conf, byte for byte
 * (test_classify compares them). After editing that file, regenerate this
 * block with
 *   sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/\t"/' -e 's/$/\\n"/' pools/bounce-rules.conf
 */
static const char builtin_text[] =
/* BEGIN pools/bounce-rules.conf */
	"# bounce-rules.conf - how volley names the class of an SMTP reply.\n"
	"#\n"
	"# These are volley's built-in rules, shipped as data: the same text is\n"
	"# compiled into volley (a unit test keeps the two identical), so this file\n"
	"# documents them and is where a site's own rules start. Set\n"
	"# smtp.classify_rules to a file of rules to try before the built-ins\n"
	"# (reloaded on SIGHUP); an edited full copy of this file replaces them in\n"
	"# effect, since its last rules match every 4xx and 5xx reply.\n"
	"# `volley classify [--stage STAGE] \"REPLY\"` prints the class, the rule and\n"
	"# its file:line (\"(built-in):N\" is line N of this file).\n"
	"#\n"
	"# One rule per line, '#' starts a comment:\n"
	"#   NAME  CLASS  [stage=LIST] [code=PREFIX] [enh=PREFIX] [text=\"substring\"]\n"
	"#   CLASS   unknown invalid_recipient bad_domain inactive_mailbox\n"
	"#           mailbox_full message_too_large spam_content reputation_block\n"
	"#           auth_failure rate_limited greylisted relay_denied dns_failure\n"
	"#           connection_failure tls_failure protocol_error\n"
	"#   stage=  the command the reply answered: connect greeting ehlo helo mail\n"
	"#           rcpt data dot rset quit, or any (the default); several with\n"
	"#           commas (stage=connect,greeting). A rule with a stage never\n"
	"#           matches a reply whose stage is not known.\n"
	"#   code=   prefix of the 3-digit reply code: 5, 55, 421\n"
	"#   enh=    prefix of the enhanced status code that ends at a component:\n"
	"#           5.1.1 matches 5.1.1 but not 5.1.10; 5.1. matches both\n"
	"#   text=   case-insensitive substring of the reply text; quote it when it\n"
	"#           has blanks; \\\" and \\\\ are the only escapes inside quotes\n"
	"# All conditions a rule gives must hold. Rules are tried in order and the\n"
	"# first that matches decides, so the order below is the design:\n"
	"#   1. provider wording (Gmail, Yahoo, Microsoft, Apple, GMX, Mimecast,\n"
	"#      Barracuda, ...): specific, and sometimes at odds with the generic\n"
	"#      codes (Microsoft answers 5.4.1 for an unknown recipient; Gmail's 421\n"
	"#      4.7.28 talks about spam, its 4.7.29 is about TLS).\n"
	"#   2. greylisting, relaying and the sender: unambiguous, and a greylist\n"
	"#      reply often carries 4.7.1, which would otherwise read as a policy\n"
	"#      block. A refused sender (x.1.7/x.1.8, \"Sender address rejected\") is\n"
	"#      auth_failure wherever it comes: Postfix delays sender checks to RCPT\n"
	"#      by default, and a 5.1.8 must not read as an unknown recipient.\n"
	"#   3. enhanced codes about the address, the mailbox, the network and\n"
	"#      authentication (RFC 3463, RFC 7372): a 5.1.1 is an unknown user\n"
	"#      whatever else the text says.\n"
	"#   4. block lists and reputation (before spam wording: \"spamhaus\" contains\n"
	"#      \"spam\").\n"
	"#   5. temporary rate and volume limits (before spam: Gmail's rate limit\n"
	"#      mentions \"unsolicited mail\").\n"
	"#   6. authentication wording (SPF, DKIM, DMARC), TLS, DNS and connections.\n"
	"#   7. spam and content wording.\n"
	"#   8. wording without useful enhanced codes (user unknown, mailbox full...).\n"
	"#   9. the stage, then fallbacks by code: 421 -> rate_limited, 5.5.x, 5.6.x\n"
	"#      and 50x -> protocol_error, anything else -> unknown.\n"
	"# Text is matched with the lines of a multi-line reply joined by one blank\n"
	"# and every run of blanks as one, so a phrase may wrap.\n"
	"\n"
	"# 1. providers: Gmail\n"
	"gmail-no-such-user           invalid_recipient  code=5 text=\"account that you tried to reach does not exist\"\n"
	"gmail-disabled               inactive_mailbox   text=\"account that you tried to reach is disabled\"\n"
	"gmail-over-quota             mailbox_full       text=\"account that you tried to reach is over quota\"\n"
	"gmail-inactive               inactive_mailbox   text=\"account that you tried to reach is inactive\"\n"
	"gmail-rate-limited           rate_limited       code=4 enh=4.7.28\n"
	"gmail-rate-limited           rate_limited       code=4 text=\"unusual rate of unsolicited mail\"\n"
	"gmail-rate-limited           rate_limited       code=4 enh=4.2.1 text=\"receiving mail at a rate\"\n"
	"gmail-unauthenticated        auth_failure       text=\"requires all senders to authenticate\"\n"
	"gmail-spam                   spam_content       code=5 text=\"likely unsolicited mail\"\n"
	"gmail-size                   message_too_large  text=\"exceeded google's message size limits\"\n"
	"gmail-blocked-ip             reputation_block   code=5 text=\"low reputation of the sending ip\"\n"
	"gmail-security               spam_content       code=5 text=\"content presents a potential security issue\"\n"
	"gmail-over-quota-inactive    inactive_mailbox   text=\"out of storage space and inactive\"\n"
	"gmail-rate-limited           rate_limited       code=4 text=\"receiving mail too quickly\"\n"
	"gmail-sending-quota          rate_limited       code=5 text=\"email quota exceeded\"\n"
	"gmail-dynamic-ip             reputation_block   code=5 text=\"not authorized to send email directly to our servers\"\n"
	"gmail-tls                    tls_failure        code=4 text=\"wasn't sent over a TLS connection\"\n"
	"gmail-dkim                   auth_failure       code=4 text=\"DKIM authentication didn't pass\"\n"
	"gmail-alignment              auth_failure       text=\"isn't aligned with either the authenticated SPF or DKIM\"\n"
	"gmail-from-header            protocol_error     code=5 text=\"multiple addresses in From: header\"\n"
	"gmail-pipelining             protocol_error     text=\"no commands allowed to pipeline after STARTTLS\"\n"
	"gmail-unauth-commands        protocol_error     text=\"too many unauthenticated commands\"\n"
	"\n"
	"# Yahoo: TSS04/TS01/TS02 temporary, TSS09/TS03 permanent\n"
	"yahoo-tss04                  rate_limited       text=\"[TSS04]\"\n"
	"yahoo-ts01                   rate_limited       text=\"[TS01]\"\n"
	"yahoo-ts02                   rate_limited       text=\"[TS02]\"\n"
	"yahoo-tss09                  reputation_block   text=\"[TSS09]\"\n"
	"yahoo-ts03                   reputation_block   text=\"[TS03]\"\n"
	"yahoo-permanently-deferred   reputation_block   code=5 text=\"permanently deferred\"\n"
	"yahoo-no-such-user           invalid_recipient  code=5 text=\"doesn't have a yahoo.com account\"\n"
	"yahoo-no-such-user           invalid_recipient  code=5 text=\"dd This user doesn't have\"\n"
	"yahoo-disabled               inactive_mailbox   code=5 text=\"mailbox is disabled\"\n"
	"\n"
	"# Microsoft (Outlook.com / Office 365)\n"
	"microsoft-blocklist          reputation_block   code=5 text=\"(S3150)\"\n"
	"microsoft-blocklist          reputation_block   code=5 text=\"(S3140)\"\n"
	"microsoft-rate-limited       rate_limited       code=4 enh=4.7.650\n"
	"microsoft-rate-limited       rate_limited       code=4 text=\"(S775)\"\n"
	"microsoft-rate-limited       rate_limited       code=4 text=\"(S843)\"\n"
	"microsoft-recipient-not-found invalid_recipient  code=5 text=\"RecipientNotFound\"\n"
	"microsoft-recipient-not-found invalid_recipient  code=5 text=\"AS(201806281)\"\n"
	"microsoft-recipient-not-found invalid_recipient  code=5 enh=5.4.1 text=\"Recipient address rejected: Access denied\"\n"
	"microsoft-over-quota         mailbox_full       text=\"QuotaExceeded\"\n"
	"microsoft-banned-ip          reputation_block   code=5 text=\"banned sending ip\"\n"
	"microsoft-banned-sender      reputation_block   code=5 text=\"banned sender\"\n"
	"microsoft-relay              relay_denied       code=5 enh=5.7.54\n"
	"microsoft-blocked-ip         reputation_block   code=5 enh=5.7.708\n"
	"microsoft-auth-level         auth_failure       code=5 enh=5.7.515\n"
	"\n"
	"# Proofpoint\n"
	"proofpoint-ipcheck           reputation_block   code=5 text=\"ipcheck.proofpoint.com\"\n"
	"\n"
	"# Apple iCloud: [CS01] after the body is about the content, [HM08] about the sender\n"
	"apple-cs01                   spam_content       code=5 text=\"[CS01]\"\n"
	"apple-hm08                   reputation_block   code=5 text=\"[HM08]\"\n"
	"\n"
	"# GMX / Web.de: the sender domain without MX or A (\"mailbox unavailable\" comes first in the reply)\n"
	"gmx-sender-dns               auth_failure       code=5 text=\"invalid DNS MX or A/AAAA resource record\"\n"
	"gmx-policy                   spam_content       code=5 text=\"Reject due to policy restrictions\"\n"
	"\n"
	"# Mimecast\n"
	"mimecast-blocked             reputation_block   code=5 text=\"envelope blocked\"\n"
	"mimecast-blocked             reputation_block   code=5 text=\"Blocked Senders\"\n"
	"mimecast-unresolvable-sender dns_failure        code=4 text=\"unresolvable RFC.5321 from address\"\n"
	"mimecast-open-relay          relay_denied       text=\"Open relay not allowed\"\n"
	"\n"
	"# Barracuda: a refusal after the body names the recipient and \":blocked\"\n"
	"barracuda-blocked            spam_content       code=5 text=\":blocked)\"\n"
	"\n"
	"# 2. greylisting, relaying and the sender's identity\n"
	"greylisted                   greylisted         code=4 text=\"greylist\"\n"
	"greylisted                   greylisted         code=4 text=\"graylist\"\n"
	"greylisted                   greylisted         code=4 text=\"grey-list\"\n"
	"greylisted                   greylisted         code=4 text=\"gray-list\"\n"
	"greylisted                   greylisted         code=4 text=\"greylisting\"\n"
	"relay-denied                 relay_denied       code=5 text=\"relay access denied\"\n"
	"relay-denied                 relay_denied       code=5 text=\"relaying denied\"\n"
	"relay-denied                 relay_denied       code=5 text=\"relay not permitted\"\n"
	"relay-denied                 relay_denied       code=5 text=\"not permitted to relay\"\n"
	"relay-denied                 relay_denied       code=5 text=\"unable to relay\"\n"
	"relay-denied                 relay_denied       code=5 text=\"relaying not allowed\"\n"
	"relay-denied                 relay_denied       code=5 text=\"we do not relay\"\n"
	"relay-denied                 relay_denied       code=5 text=\"relay denied\"\n"
	"relay-denied                 relay_denied       code=4 text=\"relay access denied\"\n"
	"sender-rejected              auth_failure       text=\"sender address rejected\"\n"
	"sender-rejected              auth_failure       code=5 text=\"sender address is not allowed\"\n"
	"# RFC 7505: the recipient's domain publishes a null MX (Microsoft's 5.1.10 is an unknown user)\n"
	"null-mx                      bad_domain         code=5 text=\"(nullMX)\"\n"
	"null-mx                      bad_domain         enh=5.1.10 text=\"null MX\"\n"
	"enh-x.1.7                    auth_failure       enh=5.1.7\n"
	"enh-x.1.7                    auth_failure       enh=4.1.7\n"
	"enh-x.1.8                    auth_failure       enh=5.1.8\n"
	"enh-x.1.8                    auth_failure       enh=4.1.8\n"
	"sender-verify                auth_failure       text=\"sender verify failed\"\n"
	"sender-verify                auth_failure       text=\"sender verification failed\"\n"
	"sender-verify                auth_failure       text=\"could not complete sender verify\"\n"
	"sender-spoofing              auth_failure       text=\"spoof\"\n"
	"reverse-dns                  auth_failure       text=\"cannot find your hostname\"\n"
	"reverse-dns                  auth_failure       text=\"reverse dns\"\n"
	"reverse-dns                  auth_failure       text=\"ptr record\"\n"
	"reverse-dns                  auth_failure       text=\"ptr resource record\"\n"
	"reverse-dns                  auth_failure       text=\"reverse hostname\"\n"
	"helo-unknown                 auth_failure       text=\"Helo command rejected: Host not found\"\n"
	"greylisted                   greylisted         code=4 text=\"is not yet authorized to deliver mail from\"\n"
	"\n"
	"# 3. enhanced codes: address, mailbox, network (RFC 3463), authentication (RFC 7372)\n"
	"enh-5.1.1                    invalid_recipient  enh=5.1.1\n"
	"enh-5.1.10                   invalid_recipient  enh=5.1.10\n"
	"enh-5.1.2                    bad_domain         enh=5.1.2\n"
	"enh-5.1.x                    invalid_recipient  enh=5.1.\n"
	"enh-5.2.1                    inactive_mailbox   enh=5.2.1\n"
	"enh-x.2.2                    mailbox_full       enh=5.2.2\n"
	"enh-x.2.2                    mailbox_full       enh=4.2.2\n"
	"enh-x.2.3                    message_too_large  enh=5.2.3\n"
	"enh-x.2.3                    message_too_large  enh=4.2.3\n"
	"enh-x.3.4                    message_too_large  enh=5.3.4\n"
	"enh-x.3.4                    message_too_large  enh=4.3.4\n"
	"enh-x.4.5                    rate_limited       enh=4.4.5\n"
	"enh-x.4.5                    rate_limited       enh=5.4.5\n"
	"enh-5.4.4                    bad_domain         enh=5.4.4\n"
	"enh-4.1.2                    dns_failure        enh=4.1.2\n"
	"enh-4.4.1                    connection_failure enh=4.4.1\n"
	"enh-4.4.2                    connection_failure enh=4.4.2\n"
	"enh-4.4.3                    dns_failure        enh=4.4.3\n"
	"enh-x.7.10                   tls_failure        enh=5.7.10\n"
	"enh-x.7.10                   tls_failure        enh=4.7.10\n"
	"enh-x.7.11                   tls_failure        enh=5.7.11\n"
	"enh-x.7.20                   auth_failure       enh=5.7.20\n"
	"enh-x.7.21                   auth_failure       enh=5.7.21\n"
	"enh-x.7.22                   auth_failure       enh=5.7.22\n"
	"enh-x.7.23                   auth_failure       enh=5.7.23\n"
	"enh-x.7.24                   auth_failure       enh=5.7.24\n"
	"enh-x.7.25                   auth_failure       enh=5.7.25\n"
	"enh-x.7.26                   auth_failure       enh=5.7.26\n"
	"enh-x.7.27                   auth_failure       enh=5.7.27\n"
	"enh-x.7.26                   auth_failure       enh=4.7.26\n"
	"enh-x.7.27                   auth_failure       enh=4.7.27\n"
	"enh-x.7.25                   auth_failure       enh=4.7.25\n"
	"\n"
	"# 4. block lists and reputation\n"
	"rbl-spamhaus                 reputation_block   text=\"spamhaus\"\n"
	"rbl-spamcop                  reputation_block   text=\"spamcop\"\n"
	"rbl-barracuda                reputation_block   text=\"barracudacentral\"\n"
	"rbl-sorbs                    reputation_block   text=\"sorbs.net\"\n"
	"rbl-listed                   reputation_block   text=\"blocked using\"\n"
	"rbl-listed                   reputation_block   text=\"dnsbl\"\n"
	"rbl-listed                   reputation_block   text=\"block list\"\n"
	"rbl-listed                   reputation_block   text=\"blocklist\"\n"
	"rbl-listed                   reputation_block   text=\"blacklist\"\n"
	"rbl-listed                   reputation_block   text=\"black list\"\n"
	"rbl-listed                   reputation_block   text=\"listed at\"\n"
	"rbl-listed                   reputation_block   text=\"listed in\"\n"
	"blocked-host                 reputation_block   code=5 text=\"client host blocked\"\n"
	"blocked-host                 reputation_block   code=5 text=\"client host rejected\"\n"
	"blocked-host                 reputation_block   code=5 text=\"blocked for spam\"\n"
	"blocked-host                 reputation_block   code=5 text=\"block for spam\"\n"
	"reputation                   reputation_block   code=5 text=\"poor reputation\"\n"
	"reputation                   reputation_block   code=5 text=\"bad reputation\"\n"
	"reputation                   reputation_block   code=5 text=\"ip reputation\"\n"
	"reputation                   reputation_block   code=5 text=\"sender reputation\"\n"
	"reputation                   reputation_block   code=5 text=\"reputation\"\n"
	"\n"
	"# 5. temporary rate and volume limits\n"
	"# the sender's own errors, before \"too many\"\n"
	"too-many-errors              protocol_error     code=4 text=\"too many errors\"\n"
	"rate-limited                 rate_limited       code=4 text=\"rate limit\"\n"
	"rate-limited                 rate_limited       code=4 text=\"rate-limit\"\n"
	"rate-limited                 rate_limited       code=4 text=\"ratelimit\"\n"
	"rate-limited                 rate_limited       code=4 text=\"too many\"\n"
	"rate-limited                 rate_limited       code=4 text=\"volume\"\n"
	"rate-limited                 rate_limited       code=4 text=\"throttl\"\n"
	"rate-limited                 rate_limited       code=4 text=\"slow down\"\n"
	"rate-limited                 rate_limited       code=4 text=\"server busy\"\n"
	"rate-limited                 rate_limited       code=4 text=\"temporarily deferred\"\n"
	"rate-limited                 rate_limited       code=4 text=\"exceeded\"\n"
	"rate-limited                 rate_limited       code=4 enh=4.7. text=\"rate\"\n"
	"rate-limited                 rate_limited       code=4 text=\"reached its limit\"\n"
	"reputation-temporary         rate_limited       code=4 text=\"reputation\"\n"
	"\n"
	"# 6. authentication, TLS, DNS and connection wording\n"
	"auth-dmarc                   auth_failure       text=\"dmarc\"\n"
	"auth-spf                     auth_failure       text=\"sender policy framework\"\n"
	"auth-spf                     auth_failure       text=\"spf\"\n"
	"auth-dkim                    auth_failure       text=\"dkim\"\n"
	"auth-unauthenticated         auth_failure       text=\"unauthenticated\"\n"
	"tls-required                 tls_failure        text=\"starttls\"\n"
	"tls-required                 tls_failure        text=\"tls not available\"\n"
	"tls-required                 tls_failure        text=\"tls required\"\n"
	"tls-required                 tls_failure        text=\"tls is required\"\n"
	"tls-required                 tls_failure        text=\"encryption required\"\n"
	"dns-temporary                dns_failure        code=4 text=\"dns query failed\"\n"
	"dns-temporary                dns_failure        code=4 text=\"dns lookup failed\"\n"
	"dns-temporary                dns_failure        code=4 text=\"dns failure\"\n"
	"connection                   connection_failure code=4 text=\"connection refused\"\n"
	"connection                   connection_failure code=4 text=\"connection dropped\"\n"
	"connection                   connection_failure code=4 text=\"connection timed out\"\n"
	"connection                   connection_failure code=4 text=\"connection reset\"\n"
	"connection                   connection_failure code=4 text=\"lost connection\"\n"
	"connection                   connection_failure code=4 text=\"socket error\"\n"
	"\n"
	"# 7. spam and content\n"
	"spam-content                 spam_content       text=\"spam\"\n"
	"spam-content                 spam_content       text=\"unsolicited\"\n"
	"spam-content                 spam_content       text=\"junk mail\"\n"
	"spam-content                 spam_content       text=\"content filter\"\n"
	"spam-content                 spam_content       text=\"content rejected\"\n"
	"spam-content                 spam_content       text=\"virus\"\n"
	"spam-content                 spam_content       text=\"malware\"\n"
	"spam-content                 spam_content       text=\"phishing\"\n"
	"spam-content                 spam_content       text=\"content restriction\"\n"
	"spam-content                 spam_content       code=5 text=\"unacceptable content\"\n"
	"spam-content                 spam_content       code=5 text=\"rejected due to security polic\"\n"
	"\n"
	"# 8. wording without (useful) enhanced codes\n"
	"text-bad-domain              bad_domain         code=5 text=\"host unknown\"\n"
	"text-bad-domain              bad_domain         code=5 text=\"domain not found\"\n"
	"text-bad-domain              bad_domain         code=5 text=\"no such domain\"\n"
	"text-bad-domain              bad_domain         code=5 text=\"domain does not exist\"\n"
	"text-bad-domain              bad_domain         code=5 text=\"unrouteable address\"\n"
	"text-bad-domain              bad_domain         code=5 text=\"unroutable address\"\n"
	"text-inactive                inactive_mailbox   code=5 text=\"account disabled\"\n"
	"text-inactive                inactive_mailbox   code=5 text=\"account is disabled\"\n"
	"text-inactive                inactive_mailbox   code=5 text=\"mailbox disabled\"\n"
	"text-inactive                inactive_mailbox   code=5 text=\"account has been disabled\"\n"
	"text-inactive                inactive_mailbox   code=5 text=\"inactive\"\n"
	"text-inactive                inactive_mailbox   code=5 text=\"deactivated\"\n"
	"text-mailbox-full            mailbox_full       text=\"over quota\"\n"
	"text-mailbox-full            mailbox_full       text=\"quota exceeded\"\n"
	"text-mailbox-full            mailbox_full       text=\"mailbox full\"\n"
	"text-mailbox-full            mailbox_full       text=\"mailbox is full\"\n"
	"text-mailbox-full            mailbox_full       text=\"exceeded storage allocation\"\n"
	"text-too-large               message_too_large  text=\"message size exceeds\"\n"
	"text-too-large               message_too_large  text=\"message too large\"\n"
	"text-too-large               message_too_large  text=\"message too big\"\n"
	"text-too-large               message_too_large  text=\"size limit\"\n"
	"text-too-large               message_too_large  text=\"size exceeded\"\n"
	"text-no-such-user            invalid_recipient  code=5 text=\"user unknown\"\n"
	"text-no-such-user            invalid_recipient  code=5 text=\"unknown user\"\n"
	"text-no-such-user            invalid_recipient  code=5 text=\"no such user\"\n"
	"text-no-such-user            invalid_recipient  code=5 text=\"recipient not found\"\n"
	"text-no-such-user            invalid_recipient  code=5 text=\"invalid recipient\"\n"
	"text-no-such-user            invalid_recipient  code=5 text=\"mailbox not found\"\n"
	"text-no-such-user            invalid_recipient  code=5 text=\"no mailbox here\"\n"
	"text-no-such-user            invalid_recipient  code=5 text=\"does not exist\"\n"
	"text-no-such-user            invalid_recipient  code=550 text=\"mailbox unavailable\"\n"
	"\n"
	"# 9. the stage, then fallbacks by code class\n"
	"sync-error                   protocol_error     text=\"synchronization error\"\n"
	"# a 5xx greeting refuses this IP before it has said anything\n"
	"greeting-refused             reputation_block   stage=connect,greeting code=5\n"
	"# at the end of DATA, sender and recipients were accepted: a policy refusal is about the content\n"
	"dot-policy                   spam_content       stage=dot enh=5.7.\n"
	"code-421                     rate_limited       code=421\n"
	"enh-x.5.x                    protocol_error     enh=5.5.\n"
	"enh-x.5.x                    protocol_error     enh=4.5.\n"
	"enh-x.6.x                    protocol_error     enh=5.6.\n"
	"enh-x.6.x                    protocol_error     enh=4.6.\n"
	"invalid-mime                 protocol_error     code=5 text=\"invalid mime\"\n"
	"code-50x                     protocol_error     code=50\n"
	"default-5xx                  unknown            code=5\n"
	"default-4xx                  unknown            code=4\n"
/* END pools/bounce-rules.conf */
	;

const char *
classify_builtin_text(void)
{
	return builtin_text;
}

static void
rule_clear(struct rule *r)
{
	free(r->name);
	free(r->stage);
	free(r->code);
	free(r->enh);
	free(r->text);
	memset(r, 0, sizeof *r);
}

void
classify_rules_free(struct classify_rules *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		rule_clear(&r->rules[i]);
	free(r->rules);
	free(r->path);
	free(r);
}

/* ------------------------------------------------------------------ */
/* rule text                                                            */

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

static const char *const stage_names[] = {
	"connect", "greeting", "ehlo", "helo", "mail", "rcpt", "data", "dot", "rset", "quit",
};

/* stage_known - is s[0..n) one of stage_names (any case)? */
static int
stage_known(const char *s, size_t n)
{
	for (size_t i = 0; i < sizeof stage_names / sizeof stage_names[0]; i++)
		if (strlen(stage_names[i]) == n && strncasecmp(s, stage_names[i], n) == 0)
			return 1;
	return 0;
}

/* valid_stage_list - "rcpt" or "connect,greeting": known names, commas, nothing empty. */
static int
valid_stage_list(const char *s)
{
	for (;;) {
		size_t n = strcspn(s, ",");

		if (!stage_known(s, n))
			return 0;
		if (s[n] == '\0')
			return 1;
		s += n + 1;
	}
}

/* parse_rule_line - one non-empty line into *out (owned strings). */
static int
parse_rule_line(const char *line, struct rule *out, char *why, size_t whylen)
{
	char f[RULE_FIELD_MAX];
	const char *p = line, *w = NULL;
	int nf = 0, stage_seen = 0;

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
		} else if (strncmp(f, "stage=", 6) == 0) {
			if (stage_seen || (strcmp(f + 6, "any") != 0 && !valid_stage_list(f + 6))) {
				snprintf(why, whylen, "bad or repeated stage= (any, or a list of "
				    "connect,greeting,ehlo,helo,mail,rcpt,data,dot,rset,quit)");
				return -1;
			}
			stage_seen = 1;
			if (strcmp(f + 6, "any") != 0)
				out->stage = str_lower(xstrdup(f + 6));
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
			snprintf(why, whylen, "unknown field '%.100s' (want stage=, code=, enh= or text=)", f);
			return -1;
		}
		nf++;
	}
	if (nf < 2) {
		snprintf(why, whylen, "a rule needs NAME CLASS [stage=..] [code=..] [enh=..] [text=\"..\"]");
		return -1;
	}
	return 0;
}

/*
 * rules_parse - append the rules of text[0..len) to r, each remembering
 * file and its line. NULL on success, else a malloc'd "file:line: why".
 */
static char *
rules_parse(struct classify_rules *r, const char *text, size_t len, const char *file, int builtin)
{
	size_t pos = 0, added = 0;
	int lineno = 0;
	char why[256];

	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t e = nl ? (size_t)(nl - text) : len;
		struct rule rule;
		char *line;

		lineno++;
		if (memchr(text + pos, '\0', e - pos) != NULL)
			return xasprintf("%s:%d: NUL byte in line", file, lineno);
		line = xstrndup(text + pos, e - pos);
		pos = e + 1;

		const char *p = line;

		while (is_ws(*p))
			p++;
		if (*p == '\0' || *p == '#') {
			free(line);
			continue;
		}
		if (parse_rule_line(p, &rule, why, sizeof why) < 0) {
			rule_clear(&rule);
			free(line);
			return xasprintf("%s:%d: %s", file, lineno, why);
		}
		free(line);
		if (!builtin && added >= RULES_MAX) {
			rule_clear(&rule);
			return xasprintf("%s:%d: more than %d rules", file, lineno, RULES_MAX);
		}
		if (r->n == r->cap) {
			r->cap = r->cap ? r->cap * 2 : 256;
			r->rules = xrealloc(r->rules, r->cap * sizeof *r->rules);
		}
		rule.file = file;
		rule.line = lineno;
		r->rules[r->n++] = rule;
		added++;
	}
	return NULL;
}

struct classify_rules *
classify_rules_builtin(void)
{
	struct classify_rules *r = xcalloc(1, sizeof *r);
	char *err = rules_parse(r, builtin_text, sizeof builtin_text - 1, CLASSIFY_BUILTIN_FILE, 1);

	if (err != NULL)
		panic("built-in bounce rules: %s", err);
	return r;
}

struct classify_rules *
classify_rules_load(const char *path, char **err)
{
	struct stat st;
	struct classify_rules *r;
	char *text;
	ssize_t got;
	size_t len = 0;

	*err = NULL;
	/* O_NONBLOCK: opening a FIFO must not hang before the S_ISREG check */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		*err = xasprintf("%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)RULES_MAX_FILE) {
		*err = xasprintf("%s: not a regular file of at most %u bytes", path, RULES_MAX_FILE);
		close(fd);
		return NULL;
	}
	text = xmalloc(RULES_MAX_FILE + 1);
	while (len <= RULES_MAX_FILE && (got = read(fd, text + len, RULES_MAX_FILE + 1 - len)) != 0) {
		if (got < 0) {
			if (errno == EINTR)
				continue;
			*err = xasprintf("%s: cannot read: %s", path, strerror(errno));
			break;
		}
		len += (size_t)got;
	}
	close(fd);
	if (*err == NULL && len > RULES_MAX_FILE)
		*err = xasprintf("%s: not a regular file of at most %u bytes", path, RULES_MAX_FILE);
	if (*err != NULL) {
		free(text);
		return NULL;
	}
	r = xcalloc(1, sizeof *r);
	r->path = xstrdup(path);
	*err = rules_parse(r, text, len, r->path, 0);
	free(text);
	if (*err == NULL)
		*err = rules_parse(r, builtin_text, sizeof builtin_text - 1, CLASSIFY_BUILTIN_FILE, 1);
	if (*err != NULL) {
		classify_rules_free(r);
		return NULL;
	}
	return r;
}

size_t
classify_rules_count(const struct classify_rules *r)
{
	return r ? r->n : 0;
}

int
classify_rule_get(const struct classify_rules *r, size_t i, struct classify_rule_info *out)
{
	if (r == NULL || i >= r->n)
		return -1;
	out->name = r->rules[i].name;
	out->cls = r->rules[i].cls;
	out->stage = r->rules[i].stage;
	out->code = r->rules[i].code;
	out->enh = r->rules[i].enh;
	out->text = r->rules[i].text;
	out->file = r->rules[i].file;
	out->line = r->rules[i].line;
	return 0;
}

/* ------------------------------------------------------------------ */
/* matching                                                             */

size_t
classify_enh_at(const char *s, char out[16])
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

int
classify_enh_matches(const char *prefix, const char *enh)
{
	size_t n = strlen(prefix);

	if (n == 0)
		return 1;
	if (strncmp(enh, prefix, n) != 0)
		return 0;
	return prefix[n - 1] == '.' || enh[n] == '\0' || enh[n] == '.';
}

/* stage_in - is stage (a name, any case) in the rule's comma list? */
static int
stage_in(const char *list, const char *stage)
{
	size_t n = strlen(stage);

	for (;;) {
		size_t k = strcspn(list, ",");

		if (k == n && strncasecmp(list, stage, n) == 0)
			return 1;
		if (list[k] == '\0')
			return 0;
		list += k + 1;
	}
}

/*
 * squeeze_blanks - text with every run of blanks (space, tab, CR, LF) as
 * one space into out, cut at outlen - 1 bytes: the lines of a multi-line
 * reply arrive joined by '\n', and a phrase may wrap between them.
 */
static const char *
squeeze_blanks(const char *text, char *out, size_t outlen)
{
	size_t o = 0;
	int blank = 0;

	for (const char *p = text; *p && o + 1 < outlen; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
			blank = 1;
			continue;
		}
		if (blank && o > 0 && o + 2 < outlen)
			out[o++] = ' ';
		blank = 0;
		out[o++] = *p;
	}
	out[o] = '\0';
	return out;
}

static int
rule_matches(const struct rule *r, const char *stage, const char *code, const char *enh,
    const char *text)
{
	if (r->stage != NULL && (stage == NULL || !stage_in(r->stage, stage)))
		return 0;
	if (r->code != NULL && (code[0] == '\0' || strncmp(code, r->code, strlen(r->code)) != 0))
		return 0;
	if (r->enh != NULL && (enh[0] == '\0' || !classify_enh_matches(r->enh, enh)))
		return 0;
	if (r->text != NULL && strcasestr(text, r->text) == NULL)
		return 0;
	return 1;
}

enum bounce_class
classify_reply_stage(const struct classify_rules *r, const char *stage, int code, const char *enh,
    const char *text, struct classify_match *m)
{
	char codebuf[8] = "", enhbuf[16] = "", flat[CLASSIFY_TEXT_MAX];

	if (text == NULL)
		text = "";
	if (code >= 200 && code <= 599)
		snprintf(codebuf, sizeof codebuf, "%03d", code);
	if (enh != NULL && enh[0] != '\0') {
		if (classify_enh_at(enh, enhbuf) == 0)
			enhbuf[0] = '\0';
	} else {
		/* the caller left the enhanced code in the text */
		while (*text == ' ')
			text++;
		size_t n = classify_enh_at(text, enhbuf);

		if (n > 0)
			text += n;
	}
	text = squeeze_blanks(text, flat, sizeof flat);
	for (size_t i = 0; r != NULL && i < r->n; i++) {
		if (rule_matches(&r->rules[i], stage, codebuf, enhbuf, text)) {
			if (m != NULL) {
				m->rule = r->rules[i].name;
				m->file = r->rules[i].file;
				m->line = r->rules[i].line;
			}
			return r->rules[i].cls;
		}
	}
	if (m != NULL) {
		m->rule = "default";
		m->file = NULL;
		m->line = 0;
	}
	return CLASS_UNKNOWN;
}

enum bounce_class
classify_reply(const struct classify_rules *r, int code, const char *enh, const char *text,
    const char **rule)
{
	struct classify_match m;
	enum bounce_class c = classify_reply_stage(r, NULL, code, enh, text, &m);

	if (rule != NULL)
		*rule = m.rule;
	return c;
}

enum bounce_class
classify_line_stage(const struct classify_rules *r, const char *stage, const char *line,
    struct classify_match *m)
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
		size_t n = classify_enh_at(p, enhbuf);

		p += n;
		while (*p == ' ')
			p++;
	}
	return classify_reply_stage(r, stage, code, enhbuf, p, m);
}

enum bounce_class
classify_line(const struct classify_rules *r, const char *line, const char **rule)
{
	struct classify_match m;
	enum bounce_class c = classify_line_stage(r, NULL, line, &m);

	if (rule != NULL)
		*rule = m.rule;
	return c;
}
