/*
 * mime.h - a bounded MIME walker for mail from strangers (RFC 2045-2049,
 * RFC 5322 header syntax).
 *
 * mime_parse() takes a whole message (bytes, any mix of CRLF and bare LF,
 * 8-bit tolerated) and returns a flat, pre-order list of its parts: the
 * message itself is part 0; a multipart's children follow it. Each part
 * has its headers (unfolded, names compared case-insensitively), its
 * lower-cased content type, and its body decoded from base64 or
 * quoted-printable where its Content-Transfer-Encoding says so.
 * message/rfc822 parts are NOT descended into: their body is the enclosed
 * message, which a caller may parse with mime_headers_parse() or
 * mime_parse().
 *
 * Bounds (every one a clean rejection with a reason, never a crash):
 * input size MIME_INPUT_MAX, nesting MIME_DEPTH_MAX, parts MIME_PARTS_MAX,
 * headers per block MIME_HEADERS_MAX, a header value MIME_VALUE_MAX
 * (longer values are cut). Work is linear in the input times the depth;
 * decoded bodies are never longer than the encoded ones, so memory is
 * bounded by a small multiple of the input.
 */
#ifndef VOLLEY_MIME_H
#define VOLLEY_MIME_H

#include <stddef.h>

#define MIME_INPUT_MAX		(10u << 20)
#define MIME_DEPTH_MAX		8
#define MIME_PARTS_MAX		256
#define MIME_HEADERS_MAX	512
#define MIME_VALUE_MAX		8192
#define MIME_BOUNDARY_MAX	200	/* RFC 2046 says 70; be lenient */

struct mime_header {
	char *name;		/* as written, NUL-terminated */
	char *value;		/* unfolded, leading/trailing blanks trimmed, no CR/LF/NUL */
};

struct mime_headers {
	struct mime_header *h;
	size_t n;
};

struct mime_part {
	struct mime_headers hdr;
	char ctype[128];	/* "multipart/report", lower case; default text/plain */
	int depth;		/* 0 for the message itself */
	int parent;		/* index of the enclosing multipart, -1 for part 0 */
	const char *body;	/* decoded body: points into the input or into owned */
	size_t body_len;
	char *owned;		/* decoded copy, or NULL */
};

struct mime_msg {
	struct mime_part *parts;
	size_t n;
	int truncated;		/* a multipart lacked its closing boundary */
	char reason[128];	/* why mime_parse() failed */
};

/*
 * mime_parse - parse msg[0..len) into m. 0 on success; -1 with m->reason
 * on a rejection (too large, too deep, too many parts or headers). A part
 * that is merely odd (missing boundary, bad base64) is kept as well as can
 * be: the walker is lenient in what it reads, strict in what it spends.
 * The input must outlive m. Always call mime_free(), even after -1.
 */
int mime_parse(const char *msg, size_t len, struct mime_msg *m);
void mime_free(struct mime_msg *m);

/*
 * mime_headers_parse - the header block at p[0..len) into hs: stops at the
 * first empty line (*body_off is the offset just after it) or at the end
 * (*body_off = len, a headers-only block). Lines that are not headers are
 * skipped. 0, or -1 with *why when there are more than MIME_HEADERS_MAX.
 */
int mime_headers_parse(const char *p, size_t len, struct mime_headers *hs, size_t *body_off,
    const char **why);
void mime_headers_free(struct mime_headers *hs);

/* mime_header_get - the first header called name (any case), or NULL. */
const char *mime_header_get(const struct mime_headers *hs, const char *name);

/*
 * mime_param - the parameter called name (any case) of a structured value
 * such as a Content-Type, quoted or not, into out (NUL-terminated, cut to
 * outlen - 1). 0 if found, -1 if not.
 */
int mime_param(const char *value, const char *name, char *out, size_t outlen);

/*
 * mime_decode_base64 / mime_decode_qp - decode src[0..len) into dst, which
 * must hold len bytes; returns the decoded length. Lenient: characters
 * outside the alphabet are skipped, a bad escape is kept as written.
 */
size_t mime_decode_base64(const char *src, size_t len, char *dst);
size_t mime_decode_qp(const char *src, size_t len, char *dst);

#endif
