/*
 * headers.h - the header fields volley adds to a message: Message-ID and
 * Date when the message has none (once per distinct body), and per job
 * List-Unsubscribe / List-Unsubscribe-Post (RFC 2369, RFC 8058) and
 * Feedback-ID (Gmail's "a:b:c:SenderId").
 *
 * Pure: no clock, no randomness, no I/O; the caller passes the time and
 * the random bytes. Every function writes complete CRLF-ended fields,
 * folded at white space so that lines stay within 78 columns where the
 * value allows it (a single URL is never split: values are capped well
 * below RFC 5322's 998). The values come from job fields and config
 * templates that job.c and config.c validated (printable ASCII, no
 * CR/LF); what comes from opaque tags (campaign, tenant, pool) is
 * sanitised here.
 *
 * A field the message already carries is never added again: the
 * message's own List-Unsubscribe, Message-ID, Date or Feedback-ID wins.
 *
 * On the wire (session.c) the prefix is, top to bottom:
 *   DKIM-Signature(s), body lines (Message-ID, Date), job lines
 *   (List-Unsubscribe, List-Unsubscribe-Post, Feedback-ID), the job id
 *   header (X-Volley-Id, never signed), then the message itself.
 * The body and job lines are given to dkim_sign() as `extra`, so they
 * are signed when their names are in the signer's header list (they are
 * in the default list).
 */
#ifndef VOLLEY_HEADERS_H
#define VOLLEY_HEADERS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct buf;

#define HDR_FOLD_COLS		78	/* RFC 5322 2.1.1: SHOULD */
#define HDR_URI_MAX		900	/* one unsubscribe URI, bytes (one line) */
#define HDR_FEEDBACK_ID_MAX	200	/* a job's feedback_id, bytes */
#define HDR_FEEDBACK_PART_MAX	64	/* each generated Feedback-ID part */

/*
 * hdr_present - 1 if the header block headers[0..hlen) (CRLF fields as
 * dkim_split() delimits them, plain or dot-stuffed) has a field called
 * name (any case), else 0.
 */
int hdr_present(const char *headers, size_t hlen, const char *name);

/*
 * hdr_fold - append "Name: value\r\n" to out, breaking at the spaces of
 * value so that no line passes HDR_FOLD_COLS unless one word alone does.
 */
void hdr_fold(struct buf *out, const char *name, const char *value);

/* hdr_date - RFC 5322 3.3 date in UTC: "Mon, 30 Nov 2026 08:08:52 +0000". */
void hdr_date(char *out, size_t len, time_t t);

/*
 * hdr_message_id - "<TIME.RANDOM@domain>" (RFC 5322 3.6.4): TIME is
 * now_ms in base 36, RANDOM the 16 bytes of rnd in hex. domain NULL or
 * empty: "localhost".
 */
void hdr_message_id(char *out, size_t len, uint64_t now_ms, const unsigned char rnd[16],
    const char *domain);

/*
 * hdr_body_lines - append to out the Message-ID and Date fields the
 * header block lacks (nothing if it has both). domain: for Message-ID.
 */
void hdr_body_lines(struct buf *out, const char *headers, size_t hlen, const char *domain,
    time_t now, uint64_t now_ms, const unsigned char rnd[16]);

/* What one job's fields ask for (NULL: absent). */
struct hdr_job {
	const char *unsub_url;		/* https://... (validated) */
	const char *unsub_mailto;	/* mailto:... (validated) */
	const char *feedback_id;	/* the job's own value: used as is */
	const char *campaign, *tenant, *pool, *sender;	/* else these, sanitised */
};

/*
 * hdr_job_lines - append to out the per-job fields the header block
 * lacks: List-Unsubscribe "<mailto:...>, <https://...>" (either or both;
 * not when the message has its own), List-Unsubscribe-Post:
 * List-Unsubscribe=One-Click (only with an https URL, only when the
 * List-Unsubscribe is ours and the message has no Post field), and
 * Feedback-ID (the job's value, else campaign:tenant:pool:sender with
 * empty parts left empty; each part's bytes outside printable ASCII, and
 * ':', become '_', and each part is cut at HDR_FEEDBACK_PART_MAX).
 */
void hdr_job_lines(struct buf *out, const char *headers, size_t hlen, const struct hdr_job *in);

/* What a template may name: {id} {to} {campaign} {tenant} {pool}. */
struct hdr_vars {
	const char *id, *to, *campaign, *tenant, *pool;	/* NULL reads as "" */
};

/*
 * hdr_expand - tmpl with each {name} replaced by the value
 * percent-encoded (RFC 3986: everything but A-Z a-z 0-9 - . _ ~), so a
 * hostile tag cannot break out of the URI. Unknown {names} stay as
 * they are. Malloc'd; NULL if the result is longer than HDR_URI_MAX.
 */
char *hdr_expand(const char *tmpl, const struct hdr_vars *v);

#endif
