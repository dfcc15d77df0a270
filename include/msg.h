/*
 * msg.h - a message body ready for the wire, refcounted and shared.
 *
 * msg_body_new() takes raw RFC 5322 bytes (from a job's `msg` field or a
 * `msg_ref` key) and does, once: bare LF and bare CR -> CRLF, a final CRLF
 * if missing, dot-stuffing (RFC 5321 4.5.2), and appends the ".\r\n"
 * terminator. It records whether any byte is 8-bit (for BODY=8BITMIME)
 * and the size (for SIZE=). A body shared by a million jobs exists once.
 * An empty message becomes ".\r\n" alone (size 0). msg_body_new returns
 * NULL only when len is absurd (size_t overflow); out of memory is fatal.
 * struct and data are one allocation: only msg_body_new() makes bodies.
 */
#ifndef VOLLEY_MSG_H
#define VOLLEY_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "dkim.h"

struct msg_body {
	uint32_t refs;
	int eightbit;		/* any byte >= 0x80 */
	size_t size;		/* RFC 1870 size: the normalised message, before stuffing */
	size_t len;		/* bytes in data, including the final ".\r\n" */
	char *data;		/* stuffed, CRLF, ends in "\r\n.\r\n" (or is ".\r\n") */
	int has_8bit_headers;	/* reserved */
	/* Header fields added once per body (headers.h): Message-ID and
	 * Date when the message has none; sent above the message and
	 * signed with it. NULL until intake filled them (added_done). */
	int added_done;
	char *added;
	size_t added_len;
	/* DKIM: signed once per body, over the body's added fields and the
	 * per-job fields of the first job (dkim_extra: most jobs sharing a
	 * body share them too); a job whose fields differ gets its own
	 * signature (job->dkim_sig). The id header is never signed. */
	int dkim_state;		/* MSG_DKIM_*: not tried yet, signed, no key, failed, being signed */
	char *dkim_sig;		/* the DKIM-Signature field(s), CRLF-ended, or NULL */
	size_t dkim_sig_len;
	char *dkim_extra;	/* the per-job lines dkim_sig covers (may be "") */
	size_t dkim_extra_len;
	struct dkim_body_hashes dkim_bh;	/* bh= per canonicalisation, cached */
	void *dkim_wait;	/* MSG_DKIM_PENDING: the intake's jobs waiting for the signing pool */
};

enum { MSG_DKIM_UNTRIED = 0, MSG_DKIM_SIGNED, MSG_DKIM_NO_KEY, MSG_DKIM_FAILED,
    MSG_DKIM_PENDING };

struct msg_body *msg_body_new(const char *raw, size_t len);
struct msg_body *msg_body_ref(struct msg_body *b);
void msg_body_unref(struct msg_body *b);

/* Undo dot-stuffing (for the sink and tests): "\r\n.." -> "\r\n.", drops ".\r\n". */
size_t msg_unstuff(const char *in, size_t len, char *out);

#endif
