/*
 * smtp_reply.h - pure parser for SMTP replies (RFC 5321 4.2, multi-line,
 * RFC 2034/3463 enhanced status codes).
 *
 * Input is untrusted bytes from the network. A reply line longer than
 * SMTP_REPLY_LINE_MAX, a non-digit code, mixed codes inside one multi-line
 * reply, or more than SMTP_REPLY_LINES_MAX lines is a protocol error.
 * Garbage is reported as soon as it is visible (a partial line that cannot
 * start a reply line), not after LINE_MAX bytes.
 *
 * The enhanced code is taken from the first line only when its class
 * matches the reply's ("550 5.1.1 ..."; "250 5.1.1" keeps it as text) and
 * a space or the line end follows it. Later lines that repeat the same
 * code ("550-5.1.1 a\r\n550 5.1.1 b") have it stripped too. Control
 * characters in the text become spaces; lines are joined with '\n'.
 */
#ifndef VOLLEY_SMTP_REPLY_H
#define VOLLEY_SMTP_REPLY_H

#include <stddef.h>

#define SMTP_REPLY_LINE_MAX	2048	/* RFC says 512; be lenient */
#define SMTP_REPLY_LINES_MAX	64
#define SMTP_REPLY_TEXT_MAX	4096

struct smtp_reply {
	int code;		/* 200..599 */
	char enh[16];		/* "5.1.1" or "" */
	/* All lines' text after "NNN[- ]" (and after the enhanced code on the
	 * first line), joined with '\n', NUL-terminated, truncated to fit. */
	char text[SMTP_REPLY_TEXT_MAX];
	int nlines;
};

/*
 * Where an incremental scan stands; zero it before the first call and
 * after each call that returned 1 or -1. Offsets count from the reply's
 * first byte, so the caller may move the bytes (realloc, memmove) between
 * calls as long as the reply still starts at buf[0].
 */
struct smtp_reply_cursor {
	size_t line;		/* start of the first line not yet complete */
	size_t seen;		/* bytes of that line already searched for its end */
	size_t end;		/* after 1: the reply's length in bytes */
	size_t work;		/* bytes looked at so far (tests check it is linear) */
	int code, nlines;
};

/*
 * smtp_reply_scan - is buf[0..len) a complete reply yet? buf holds the
 * bytes of the previous call for the same cursor plus any new ones.
 * Returns 1 (k->end = its length; smtp_reply_parse() on those bytes takes
 * it), 0 when more bytes are needed, -1 on a protocol error. Each byte is
 * searched once, whatever the pieces it arrives in.
 */
int smtp_reply_scan(const char *buf, size_t len, struct smtp_reply_cursor *k);

/*
 * smtp_reply_parse - try to take one complete reply from buf[0..len).
 * Returns 1 and sets *used (bytes consumed) when a reply is complete,
 * 0 when more bytes are needed (nothing consumed), -1 on a protocol error.
 * Lines end in CRLF; a bare LF is accepted.
 */
int smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r, size_t *used);

/* smtp_reply_first_line - "550 5.1.1 text of line one" into out (one line). */
void smtp_reply_first_line(const struct smtp_reply *r, char *out, size_t outlen);

/* Parse "X.Y.Z" at s (class 2/4/5, 1-3 digit subject, 1-3 digit detail).
 * Returns its length, or 0 if s does not start with one. */
size_t smtp_enh_parse(const char *s, size_t len, char out[16]);

#endif
