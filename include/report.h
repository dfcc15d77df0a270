/*
 * report.h - delivery status notifications (bounces) and feedback reports
 * (complaints) read from mail: bytes in, a struct out.
 *
 * report_parse() recognises:
 *   - RFC 3464 DSNs (multipart/report; report-type=delivery-status, or any
 *     message with a message/delivery-status part): one entry per
 *     recipient with its Action, Status, Diagnostic-Code, Remote-MTA;
 *   - the common bounces without one: Exim, qmail, Exchange/Office 365,
 *     Gmail and Yahoo texts (the recipient, the SMTP reply they quote, and
 *     the copy of the original they append);
 *   - RFC 5965 feedback reports (ARF), Microsoft JMRP (the recipient is in
 *     the original's X-HmXmrOriginalRecipient; the older JMRP without a
 *     feedback-report part is read as an abuse report too) and Yahoo's
 *     (redacted recipient: the job id is the only link);
 *   - abuse complaints that are not ARF (REPORT_NOT_ARF_ABUSE), for an
 *     operator to read.
 * In each, the returned original (message/rfc822, text/rfc822-headers, or
 * the copy a text bounce appends; base64 or quoted-printable decoded) is
 * searched for the job-id header the caller names and for its
 * Return-Path, To and Message-ID.
 *
 * Every string in a struct report is NUL-terminated, cut to its buffer,
 * and free of control characters (safe for logs and events). Inputs larger
 * than MIME_INPUT_MAX, nested deeper than MIME_DEPTH_MAX or otherwise
 * beyond the bounds in mime.h are rejected with a reason.
 */
#ifndef VOLLEY_REPORT_H
#define VOLLEY_REPORT_H

#include <stddef.h>

#include "classify.h"

enum report_kind {
	REPORT_UNKNOWN = 0,	/* not a report we understand: see reason */
	REPORT_DSN,
	REPORT_ARF,
	REPORT_NOT_ARF_ABUSE,	/* a complaint in free text: keep it for an operator */
};

enum report_action {
	REPORT_ACTION_NONE = 0,	/* no Action field */
	REPORT_ACTION_FAILED,
	REPORT_ACTION_DELAYED,	/* a delay, never a failure */
	REPORT_ACTION_DELIVERED,
	REPORT_ACTION_RELAYED,
	REPORT_ACTION_EXPANDED,
};

#define REPORT_RCPTS_MAX	100
#define REPORT_ADDR_MAX		256
#define REPORT_DIAG_MAX		512

struct report_rcpt {
	char final_rcpt[REPORT_ADDR_MAX];	/* address only: "alice@example.net" */
	char original_rcpt[REPORT_ADDR_MAX];
	enum report_action action;
	char status[16];			/* "5.1.1"; "" if none could be found */
	char diag_type[16];			/* "smtp" (lower case) */
	char diag[REPORT_DIAG_MAX];		/* "550 5.1.1 <alice@...>: Recipient ..." */
	char remote_mta[REPORT_ADDR_MAX];	/* "store.example.net" */
};

struct report_feedback {
	char feedback_type[32];		/* "abuse", "fraud", "virus", "other", ... (lower case) */
	char user_agent[128];
	char version[16];
	char original_mail_from[REPORT_ADDR_MAX];	/* address only */
	char original_rcpt_to[REPORT_ADDR_MAX];		/* address only, "" if redacted */
	char arrival_date[64];
	char source_ip[64];
	char reported_domain[REPORT_ADDR_MAX];
};

struct report_original {
	int found;			/* a returned original (or its headers) was there */
	char job_id[256];		/* value of the id header, "" if absent */
	char return_path[REPORT_ADDR_MAX];	/* address only */
	char from[REPORT_ADDR_MAX];
	char to[REPORT_ADDR_MAX];		/* first address only */
	char message_id[REPORT_ADDR_MAX];
	char subject[REPORT_ADDR_MAX];
	char ms_original_rcpt[REPORT_ADDR_MAX];	/* X-HmXmrOriginalRecipient (JMRP) */
};

struct report {
	enum report_kind kind;
	const char *format;	/* static: "rfc3464", "exim", "qmail", "exchange", "gmail",
				 * "yahoo", "arf", "jmrp", "yahoo-arf", "text", ... */
	char reason[128];	/* why kind is UNKNOWN / NOT_ARF_ABUSE; "" otherwise */
	char to[REPORT_ADDR_MAX];	/* the report's own To: (address only) */
	char from[REPORT_ADDR_MAX];	/* the report's own From: (address only) */
	char subject[REPORT_ADDR_MAX];
	char reporting_mta[REPORT_ADDR_MAX];

	/* DSN */
	struct report_rcpt *rcpts;	/* owned; nrcpts <= REPORT_RCPTS_MAX */
	size_t nrcpts;

	/* ARF: feedback.feedback_type[0] != '\0' */
	struct report_feedback feedback;
	char complained_rcpt[REPORT_ADDR_MAX];	/* Original-Rcpt-To, else JMRP's, else the original's To */

	struct report_original original;
};

/*
 * report_parse - read msg[0..len) into r. id_header names the job-id
 * header to look for in the returned original (NULL: "X-Volley-Id").
 * Returns 0 when r->kind is DSN, ARF or NOT_ARF_ABUSE; -1 when it is
 * UNKNOWN, with r->reason ("message larger than ...", "not a delivery
 * status or feedback report", ...). Call report_free() in both cases.
 */
int report_parse(const char *msg, size_t len, const char *id_header, struct report *r);
void report_free(struct report *r);

/*
 * report_verp_id - invert a VERP template such as
 * "bounces+{id}@bounces.example.com": if rcpt (an address, with or without
 * <>, the domain compared in any case) has the template's shape, copy what
 * stands for {id} into id (idlen bytes with the NUL) and return 0; -1 if it
 * does not match, the id is empty or does not fit, or the template has no
 * {id}. The id may have been rewritten when sending (characters other than
 * letters, digits, '-', '_' and '.' become '=').
 */
int report_verp_id(const char *rcpt, const char *return_path_template, char *id, size_t idlen);

/*
 * report_job_id - the job a parsed report belongs to, by the most reliable
 * link first: the envelope recipient it was delivered to (VERP, may be
 * NULL), the job-id header of the returned original, then VERP in the
 * report's To:, the ARF Original-Mail-From and the original's
 * Return-Path. template may be NULL (no VERP). Returns a static name of
 * the link used ("verp-envelope", "id-header", "verp-to",
 * "verp-original-mail-from", "verp-return-path"), or NULL when none.
 */
const char *report_job_id(const struct report *r, const char *envelope_rcpt,
    const char *return_path_template, char *id, size_t idlen);

const char *report_kind_name(enum report_kind k);	/* "dsn", "arf", "not_arf", "unknown" */
const char *report_action_name(enum report_action a);	/* "failed", ..., "" for NONE */

/*
 * report_rcpt_is_failure - does this recipient entry mean a bounce? Only
 * Action: failed does; without an Action (text bounces) a 5.x.x status.
 */
int report_rcpt_is_failure(const struct report_rcpt *rc);

/*
 * report_rcpt_classify - the bounce class of one recipient entry: its
 * Diagnostic-Code when that is an SMTP reply ("550 5.1.1 ..."), else its
 * Status and diagnostic words as a reply whose code is known only by its
 * class digit (a 5.x.x status matches code=5 rules, never code=550 ones).
 * m may be NULL.
 */
enum bounce_class report_rcpt_classify(const struct classify_rules *rules,
    const struct report_rcpt *rc, struct classify_match *m);

#endif
