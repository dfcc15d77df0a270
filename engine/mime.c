/*
 * mime.c - a bounded MIME walker (see mime.h).
 *
 * Owns: mime_parse(), mime_free(), mime_headers_parse(),
 * mime_headers_free(), mime_header_get(), mime_param(),
 * mime_decode_base64(), mime_decode_qp().
 *
 * Invariants: the input is hostile. Every loop advances through the input
 * and every count is capped (mime.h). A multipart is split by scanning its
 * own bytes once for delimiter lines, so the total work is the input
 * length times the nesting depth (at most MIME_DEPTH_MAX). Header values
 * are copied with control bytes turned into blanks, so nothing a caller
 * prints from them can forge a log line. Pure: no I/O.
 */
#include "mime.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* line_at - the line at p[pos..len): *end is its end without CR/LF, return the next line's start. */
static size_t
line_at(const char *p, size_t len, size_t pos, size_t *end)
{
	const char *nl = memchr(p + pos, '\n', len - pos);
	size_t e = nl ? (size_t)(nl - p) : len;
	size_t next = nl ? e + 1 : len;

	if (e > pos && p[e - 1] == '\r')
		e--;
	*end = e;
	return next;
}

/* ------------------------------------------------------------------ */
/* headers                                                              */

/* value_append - append p[0..n) to b, control bytes as blanks, up to MIME_VALUE_MAX. */
static void
value_append(struct buf *b, const char *p, size_t n)
{
	if (b->len >= MIME_VALUE_MAX)
		return;
	if (n > MIME_VALUE_MAX - b->len)
		n = MIME_VALUE_MAX - b->len;
	buf_reserve(b, n + 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		b->data[b->len++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	b->data[b->len] = '\0';
}

/* header_finish - trim the value in b and store it as the last header's value. */
static void
header_finish(struct mime_headers *hs, struct buf *b)
{
	size_t s = 0, e = b->len;
	struct mime_header *h = &hs->h[hs->n - 1];

	while (s < e && is_blank(b->data[s]))
		s++;
	while (e > s && (is_blank(b->data[e - 1])))
		e--;
	h->value = xstrndup(b->data ? b->data + s : "", e - s);
	b->len = 0;
}

static int
valid_name(const char *p, size_t n)
{
	if (n == 0 || n > 200)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c <= 0x20 || c >= 0x7f || c == ':')
			return 0;
	}
	return 1;
}

int
mime_headers_parse(const char *p, size_t len, struct mime_headers *hs, size_t *body_off,
    const char **why)
{
	struct buf b = { 0 };
	size_t pos = 0, cap = 0;
	int open = 0;		/* the last header may still get continuation lines */

	memset(hs, 0, sizeof *hs);
	*body_off = len;
	while (pos < len) {
		size_t e, next = line_at(p, len, pos, &e);

		if (e == pos) {
			*body_off = next;
			break;
		}
		if (is_blank(p[pos])) {
			if (open)	/* unfolding: the line break goes, the blank stays */
				value_append(&b, p + pos, e - pos);
			pos = next;
			continue;
		}
		if (open) {
			header_finish(hs, &b);
			open = 0;
		}
		const char *colon = memchr(p + pos, ':', e - pos);
		size_t nlen = colon ? (size_t)(colon - (p + pos)) : 0;

		while (nlen > 0 && is_blank(p[pos + nlen - 1]))
			nlen--;
		if (colon == NULL || !valid_name(p + pos, nlen)) {
			pos = next;	/* not a header ("From " line, junk): skip */
			continue;
		}
		if (hs->n >= MIME_HEADERS_MAX) {
			*why = "too many header lines";
			buf_free(&b);
			return -1;
		}
		if (hs->n == cap) {
			cap = cap ? cap * 2 : 16;
			hs->h = xrealloc(hs->h, cap * sizeof *hs->h);
		}
		hs->h[hs->n].name = xstrndup(p + pos, nlen);
		hs->h[hs->n].value = NULL;
		hs->n++;
		open = 1;
		b.len = 0;
		value_append(&b, colon + 1, (size_t)(p + e - (colon + 1)));
		pos = next;
	}
	if (open)
		header_finish(hs, &b);
	buf_free(&b);
	return 0;
}

void
mime_headers_free(struct mime_headers *hs)
{
	for (size_t i = 0; i < hs->n; i++) {
		free(hs->h[i].name);
		free(hs->h[i].value);
	}
	free(hs->h);
	hs->h = NULL;
	hs->n = 0;
}

const char *
mime_header_get(const struct mime_headers *hs, const char *name)
{
	for (size_t i = 0; i < hs->n; i++)
		if (strcasecmp(hs->h[i].name, name) == 0)
			return hs->h[i].value;
	return NULL;
}

int
mime_param(const char *value, const char *name, char *out, size_t outlen)
{
	const char *p = value ? strchr(value, ';') : NULL;
	size_t want = strlen(name);

	if (p == NULL || outlen == 0)
		return -1;
	while (*p) {
		const char *n0, *n1;
		size_t o = 0;
		int match;

		while (*p == ';' || is_blank(*p))
			p++;
		n0 = p;
		while (*p && *p != '=' && *p != ';')
			p++;
		n1 = p;
		while (n1 > n0 && is_blank(n1[-1]))
			n1--;
		if (*p != '=')
			continue;
		p++;
		while (is_blank(*p))
			p++;
		match = (size_t)(n1 - n0) == want && strncasecmp(n0, name, want) == 0;
		if (*p == '"') {
			p++;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				if (match && o + 1 < outlen)
					out[o++] = *p;
				p++;
			}
			if (*p == '"')
				p++;
		} else {
			while (*p && *p != ';' && !is_blank(*p)) {
				if (match && o + 1 < outlen)
					out[o++] = *p;
				p++;
			}
		}
		if (match) {
			out[o] = '\0';
			return 0;
		}
		while (*p && *p != ';')
			p++;
	}
	return -1;
}

/* ------------------------------------------------------------------ */
/* decoding                                                             */

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

size_t
mime_decode_base64(const char *src, size_t len, char *dst)
{
	unsigned acc = 0;
	int bits = 0;
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		int v = b64_value((unsigned char)src[i]);

		if (src[i] == '=')
			break;
		if (v < 0)
			continue;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			dst[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	return o;
}

static int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

size_t
mime_decode_qp(const char *src, size_t len, char *dst)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (src[i] != '=') {
			dst[o++] = src[i];
			continue;
		}
		if (i + 1 < len && src[i + 1] == '\n') {	/* soft break */
			i += 1;
			continue;
		}
		if (i + 2 < len && src[i + 1] == '\r' && src[i + 2] == '\n') {
			i += 2;
			continue;
		}
		int h = i + 2 < len ? hex_value((unsigned char)src[i + 1]) : -1;
		int l = h >= 0 ? hex_value((unsigned char)src[i + 2]) : -1;

		if (h >= 0 && l >= 0) {
			dst[o++] = (char)(h * 16 + l);
			i += 2;
		} else {
			dst[o++] = '=';
		}
	}
	return o;
}

/* ------------------------------------------------------------------ */
/* the walk                                                             */

/* ctype_of - lower-cased "type/subtype" of a Content-Type value, or def. */
static void
ctype_of(const char *v, const char *def, char *out, size_t outlen)
{
	size_t n = 0;
	int slash = 0;

	if (v != NULL) {
		while (is_blank(*v))
			v++;
		for (; *v && *v != ';' && !is_blank(*v) && n + 1 < outlen; v++) {
			unsigned char c = (unsigned char)*v;

			if (c == '/')
				slash++;
			else if (c <= 0x20 || c >= 0x7f || strchr("()<>@,:\\\"[]?=", c))
				break;
			out[n++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		}
		if (*v && *v != ';' && !is_blank(*v))
			n = 0;	/* junk or too long: the default */
	}
	if (n == 0 || slash != 1 || out[0] == '/' || out[n - 1] == '/') {
		snprintf(out, outlen, "%s", def);
		return;
	}
	out[n] = '\0';
}

/*
 * delimiter_at - is the line p[pos..e) "--boundary" or "--boundary--"
 * (blanks may follow)? 1 for a delimiter, 2 for the closing one, 0 not.
 */
static int
delimiter_at(const char *p, size_t pos, size_t e, const char *bd, size_t bdlen)
{
	size_t n = e - pos, i;
	int ret = 1;

	if (n < bdlen + 2 || p[pos] != '-' || p[pos + 1] != '-' ||
	    memcmp(p + pos + 2, bd, bdlen) != 0)
		return 0;
	i = pos + 2 + bdlen;
	if (i + 1 < e && p[i] == '-' && p[i + 1] == '-') {
		ret = 2;
		i += 2;
	}
	for (; i < e; i++)
		if (!is_blank(p[i]))
			return 0;
	return ret;
}

static int parse_entity(struct mime_msg *m, const char *p, size_t len, int depth, int parent,
    const char *def);

/* split_multipart - children of the multipart at body[0..len) with boundary bd. */
static int
split_multipart(struct mime_msg *m, const char *p, size_t len, const char *bd, int depth,
    int self, const char *child_def)
{
	size_t bdlen = strlen(bd), pos = 0, start = 0;
	int inside = 0;

	while (pos < len) {
		size_t e, next = line_at(p, len, pos, &e);
		int d = p[pos] == '-' ? delimiter_at(p, pos, e, bd, bdlen) : 0;

		if (d != 0) {
			if (inside) {
				/* the line break before the delimiter belongs to it */
				size_t end = pos;

				if (end > start && p[end - 1] == '\n')
					end--;
				if (end > start && p[end - 1] == '\r')
					end--;
				if (parse_entity(m, p + start, end - start, depth + 1, self, child_def) < 0)
					return -1;
			}
			if (d == 2)
				return 0;
			inside = 1;
			start = next;
		}
		pos = next;
	}
	if (inside) {
		m->truncated = 1;
		return parse_entity(m, p + start, len - start, depth + 1, self, child_def);
	}
	return 0;
}

static int
parse_entity(struct mime_msg *m, const char *p, size_t len, int depth, int parent, const char *def)
{
	struct mime_part *pt;
	const char *why = NULL, *cte;
	size_t off, idx;
	char bd[MIME_BOUNDARY_MAX + 1];

	if (depth > MIME_DEPTH_MAX) {
		snprintf(m->reason, sizeof m->reason, "multiparts nested deeper than %d", MIME_DEPTH_MAX);
		return -1;
	}
	if (m->n >= MIME_PARTS_MAX) {
		snprintf(m->reason, sizeof m->reason, "more than %d MIME parts", MIME_PARTS_MAX);
		return -1;
	}
	/* grow by doubling: parts never move while a pointer to one is held */
	if ((m->n & (m->n - 1)) == 0)
		m->parts = xrealloc(m->parts, (m->n ? m->n * 2 : 1) * sizeof *m->parts);
	idx = m->n++;
	pt = &m->parts[idx];
	memset(pt, 0, sizeof *pt);
	pt->depth = depth;
	pt->parent = parent;
	if (mime_headers_parse(p, len, &pt->hdr, &off, &why) < 0) {
		snprintf(m->reason, sizeof m->reason, "%s", why);
		return -1;
	}
	ctype_of(mime_header_get(&pt->hdr, "Content-Type"), def, pt->ctype, sizeof pt->ctype);
	pt->body = p + off;
	pt->body_len = len - off;
	if (strncmp(pt->ctype, "multipart/", 10) == 0) {
		const char *child_def = strcmp(pt->ctype, "multipart/digest") == 0 ?
		    "message/rfc822" : "text/plain";

		if (mime_param(mime_header_get(&pt->hdr, "Content-Type"), "boundary", bd, sizeof bd) < 0 ||
		    bd[0] == '\0' || strlen(bd) >= MIME_BOUNDARY_MAX)
			return 0;	/* a multipart without a boundary: one opaque body */
		return split_multipart(m, pt->body, pt->body_len, bd, depth, (int)idx, child_def);
	}
	cte = mime_header_get(&pt->hdr, "Content-Transfer-Encoding");
	if (cte != NULL && pt->body_len > 0) {
		int b64 = strncasecmp(cte, "base64", 6) == 0;
		int qp = strncasecmp(cte, "quoted-printable", 16) == 0;

		if (b64 || qp) {
			pt->owned = xmalloc(pt->body_len + 1);
			pt->body_len = b64 ? mime_decode_base64(pt->body, pt->body_len, pt->owned)
			    : mime_decode_qp(pt->body, pt->body_len, pt->owned);
			pt->owned[pt->body_len] = '\0';
			pt->body = pt->owned;
		}
	}
	return 0;
}

int
mime_parse(const char *msg, size_t len, struct mime_msg *m)
{
	memset(m, 0, sizeof *m);
	if (msg == NULL || len == 0) {
		snprintf(m->reason, sizeof m->reason, "empty message");
		return -1;
	}
	if (len > MIME_INPUT_MAX) {
		snprintf(m->reason, sizeof m->reason, "message larger than %u bytes", MIME_INPUT_MAX);
		return -1;
	}
	return parse_entity(m, msg, len, 0, -1, "text/plain");
}

void
mime_free(struct mime_msg *m)
{
	for (size_t i = 0; i < m->n; i++) {
		mime_headers_free(&m->parts[i].hdr);
		free(m->parts[i].owned);
	}
	free(m->parts);
	m->parts = NULL;
	m->n = 0;
}
