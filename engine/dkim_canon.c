/*
 * dkim_canon.c - DKIM canonicalisation (RFC 6376 3.4) and the message
 * parsing signing needs: header/body split, the index of header fields,
 * the From domain.
 *
 * Owns: dkim_split(), dkim_fields(), dkim_from_domain(), dkim_canon_body(),
 * dkim_canon_header() and their dkim_out forms.
 *
 * Lines are read as msg_body_new() writes them to the wire: CRLF, bare LF
 * and bare CR each end a line, a last line without an end gets one; with
 * DKIM_STUFFED the leading dot that stuffing added is dropped and the line
 * "." ends the input. So the canonical form is always that of the bytes a
 * receiver sees after DATA, whichever form the caller holds.
 *
 * Canonicalisation, in short:
 *   body simple   lines as they are; trailing empty lines dropped; an
 *                 empty body is one CRLF.
 *   body relaxed  WSP runs -> one SP, WSP at line ends dropped, trailing
 *                 empty lines dropped; an empty body stays empty.
 *   header simple  the field as it is.
 *   header relaxed name lower-case, unfolded, WSP runs -> one SP, no WSP
 *                 around the colon nor at the end: "name:value\r\n".
 * All of it is bounded by the input: nothing here allocates but the
 * field index, which grows with the number of header lines.
 */
#include "dkim_canon.h"

#include <ctype.h>
#include <string.h>

#include <idn2.h>
#include <openssl/evp.h>

#include "util.h"

/* ------------------------------------------------------------------ */
/* output                                                               */

void
dkim_out_flush(struct dkim_out *o)
{
	if (o->n == 0)
		return;
	if (o->buf != NULL)
		buf_append(o->buf, o->pend, o->n);
	else if (EVP_DigestUpdate(o->md, o->pend, o->n) != 1)
		panic("dkim: EVP_DigestUpdate failed");
	o->n = 0;
}

void
dkim_out_write(struct dkim_out *o, const char *p, size_t n)
{
	if (n >= sizeof o->pend) {
		dkim_out_flush(o);
		if (o->buf != NULL)
			buf_append(o->buf, p, n);
		else if (EVP_DigestUpdate(o->md, p, n) != 1)
			panic("dkim: EVP_DigestUpdate failed");
		return;
	}
	if (o->n + n > sizeof o->pend)
		dkim_out_flush(o);
	memcpy(o->pend + o->n, p, n);
	o->n += n;
}

static void
out_byte(struct dkim_out *o, char ch)
{
	if (o->n == sizeof o->pend)
		dkim_out_flush(o);
	o->pend[o->n++] = ch;
}

/* ------------------------------------------------------------------ */
/* lines                                                                */

struct lines {
	const char *p;
	size_t len, pos;
	unsigned flags;
	int done;
};

static void
lines_init(struct lines *it, const char *p, size_t len, unsigned flags)
{
	it->p = p;
	it->len = len;
	it->pos = 0;
	it->flags = flags;
	it->done = 0;
}

/*
 * lines_next - the next line's content (without its end) in *s, *n;
 * 0 at the end of input or at the stuffed terminator. Each search is
 * bounded by the line it finds, so a whole pass is linear.
 */
static int
lines_next(struct lines *it, const char **s, size_t *n)
{
	const char *b, *lf, *cr;
	size_t rest, i, adv;

	if (it->done || it->pos >= it->len)
		return 0;
	b = it->p + it->pos;
	rest = it->len - it->pos;
	lf = memchr(b, '\n', rest);
	cr = memchr(b, '\r', lf != NULL ? (size_t)(lf - b) : rest);
	if (cr != NULL) {
		i = (size_t)(cr - b);
		adv = (lf == cr + 1) ? i + 2 : i + 1;
	} else if (lf != NULL) {
		i = (size_t)(lf - b);
		adv = i + 1;
	} else {
		i = rest;
		adv = rest;
	}
	it->pos += adv;
	if ((it->flags & DKIM_STUFFED) && i > 0 && b[0] == '.') {
		if (i == 1) {
			it->done = 1;	/* "." alone: the end of the data */
			return 0;
		}
		b++;
		i--;
	}
	*s = b;
	*n = i;
	return 1;
}

static int
is_wsp(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* ------------------------------------------------------------------ */
/* split                                                                */

void
dkim_split(const char *msg, size_t len, unsigned flags, size_t *hlen, size_t *body_off)
{
	struct lines it;
	const char *s;
	size_t n, start = 0;

	lines_init(&it, msg, len, flags);
	for (;;) {
		start = it.pos;
		if (!lines_next(&it, &s, &n))
			break;
		if (n == 0) {
			*hlen = start;
			*body_off = it.pos;
			return;
		}
	}
	/* no empty line: all headers; the body is empty (or the terminator) */
	*hlen = it.done ? start : len;
	*body_off = *hlen;
}

/* ------------------------------------------------------------------ */
/* body                                                                 */

static void
out_crlfs(struct dkim_out *o, size_t k)
{
	static const char crlfs[] = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";

	while (k > 0) {
		size_t m = k < 8 ? k : 8;

		dkim_out_write(o, crlfs, 2 * m);
		k -= m;
	}
}

void
dkim_canon_body_out(enum dkim_canon c, const char *body, size_t len, unsigned flags,
    struct dkim_out *o)
{
	struct lines it;
	const char *s;
	size_t n, empty = 0;	/* empty lines seen but not yet written */
	int any = 0;

	lines_init(&it, body, len, flags);
	while (lines_next(&it, &s, &n)) {
		if (c == DKIM_CANON_RELAXED)
			while (n > 0 && is_wsp(s[n - 1]))
				n--;
		if (n == 0) {
			empty++;
			continue;
		}
		out_crlfs(o, empty);
		empty = 0;
		any = 1;
		if (c == DKIM_CANON_SIMPLE) {
			dkim_out_write(o, s, n);
		} else {
			/* copy spans; only a TAB or a run of 2+ WSP needs rewriting
			 * (a single SP is already canonical), so typical text goes
			 * out a line at a time */
			size_t i = 0, start = 0;

			while (i < n) {
				if (s[i] == '\t' || (s[i] == ' ' && is_wsp(s[i + 1]))) {
					dkim_out_write(o, s + start, i - start);
					out_byte(o, ' ');
					while (is_wsp(s[i]))
						i++;	/* stops inside the line: its end has no WSP */
					start = i;
				} else {
					i++;
				}
			}
			dkim_out_write(o, s + start, n - start);
		}
		dkim_out_write(o, "\r\n", 2);
	}
	if (!any && c == DKIM_CANON_SIMPLE)
		dkim_out_write(o, "\r\n", 2);
	dkim_out_flush(o);
}

void
dkim_canon_body(enum dkim_canon c, const char *body, size_t len, unsigned flags, struct buf *out)
{
	struct dkim_out *o = xcalloc(1, sizeof *o);

	o->buf = out;
	dkim_canon_body_out(c, body, len, flags, o);
	free(o);
}

/* ------------------------------------------------------------------ */
/* headers                                                              */

void
dkim_canon_header_out(enum dkim_canon c, const char *field, size_t len, unsigned flags,
    struct dkim_out *o)
{
	struct lines it;
	const char *s;
	size_t n;
	int first = 1, started = 0, space = 0;

	lines_init(&it, field, len, flags);
	while (lines_next(&it, &s, &n)) {
		size_t i = 0;

		if (c == DKIM_CANON_SIMPLE) {
			dkim_out_write(o, s, n);
			dkim_out_write(o, "\r\n", 2);
			continue;
		}
		if (first) {
			const char *colon = memchr(s, ':', n);
			size_t nl = colon ? (size_t)(colon - s) : n;

			while (nl > 0 && is_wsp(s[nl - 1]))
				nl--;
			for (size_t k = 0; k < nl; k++)
				out_byte(o, (char)tolower((unsigned char)s[k]));
			if (colon == NULL) {
				first = 0;
				continue;
			}
			out_byte(o, ':');
			i = (size_t)(colon - s) + 1;
			first = 0;
		}
		/* unfolded: a line end is nothing, the WSP after it a run */
		for (; i < n; i++) {
			if (is_wsp(s[i])) {
				space = started;
				continue;
			}
			if (space)
				out_byte(o, ' ');
			out_byte(o, s[i]);
			started = 1;
			space = 0;
		}
	}
	if (c == DKIM_CANON_RELAXED)
		dkim_out_write(o, "\r\n", 2);
	dkim_out_flush(o);
}

void
dkim_canon_header(enum dkim_canon c, const char *field, size_t len, unsigned flags,
    struct buf *out)
{
	struct dkim_out *o = xcalloc(1, sizeof *o);

	o->buf = out;
	dkim_canon_header_out(c, field, len, flags, o);
	free(o);
}

void
dkim_fields(const char *hdr, size_t hlen, unsigned flags, struct dkim_field **v, size_t *n,
    size_t *cap)
{
	struct lines it;
	const char *s;
	size_t ln;
	struct dkim_field *cur = NULL;

	lines_init(&it, hdr, hlen, flags);
	for (;;) {
		size_t start = it.pos;

		if (!lines_next(&it, &s, &ln))
			break;
		if (cur != NULL && ln > 0 && is_wsp(s[0])) {
			cur->len = it.pos - (size_t)(cur->p - hdr);
			continue;
		}
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 32;
			*v = xrealloc(*v, *cap * sizeof **v);
		}
		cur = &(*v)[(*n)++];
		cur->p = hdr + start;
		cur->len = it.pos - start;
		cur->flags = flags;
		cur->name = NULL;
		cur->name_len = 0;
		if (ln > 0 && !is_wsp(s[0])) {
			const char *colon = memchr(s, ':', ln);

			if (colon != NULL) {
				size_t nl = (size_t)(colon - s);

				while (nl > 0 && is_wsp(s[nl - 1]))
					nl--;
				cur->name = s;
				cur->name_len = nl;
			}
		}
	}
}

/* ------------------------------------------------------------------ */
/* From domain                                                          */

/*
 * first_address - the address part of the first mailbox in an unfolded
 * From value: comments dropped, inside <...> if there is an angle
 * bracket, else the text up to the first top-level comma after an '@'. Writes at most
 * outlen - 1 bytes; returns its length.
 */
static size_t
first_address(const char *v, size_t n, char *out, size_t outlen)
{
	size_t o = 0, i = 0;
	int depth = 0, quoted = 0, angle = 0;

	for (i = 0; i < n; i++) {
		char ch = v[i];

		if (ch == '\\' && (quoted || depth > 0) && i + 1 < n) {
			if (!depth && o + 1 < outlen)
				out[o++] = v[i + 1];
			i++;
			continue;
		}
		if (quoted) {
			if (ch == '"')
				quoted = 0;
			else if (o + 1 < outlen)
				out[o++] = ch;
			continue;
		}
		if (depth > 0) {
			if (ch == '(')
				depth++;
			else if (ch == ')')
				depth--;
			continue;
		}
		if (ch == '(') {
			depth = 1;
			continue;
		}
		if (ch == '"') {
			quoted = 1;
			continue;
		}
		if (angle) {
			if (ch == '>')
				break;
			if (o + 1 < outlen)
				out[o++] = ch;
			continue;
		}
		if (ch == '<') {
			angle = 1;
			o = 0;	/* the display name was not the address */
			continue;
		}
		if (ch == ',') {
			/* the end of the first mailbox, unless no address came
			 * yet ("Smith, John <j@example.com>", unquoted) */
			if (memchr(out, '@', o) != NULL)
				break;
			o = 0;
			continue;
		}
		if (o + 1 < outlen)
			out[o++] = ch;
	}
	out[o] = '\0';
	return o;
}

int
dkim_from_domain(const char *headers, size_t hlen, unsigned flags, char *out, size_t outlen)
{
	struct dkim_field *f = NULL, *from = NULL;
	size_t nf = 0, cap = 0;
	char val[2048], addr[1024];
	size_t vn = 0, an;
	int count = 0;

	dkim_fields(headers, hlen, flags, &f, &nf, &cap);
	for (size_t i = 0; i < nf; i++)
		if (f[i].name != NULL && f[i].name_len == 4 && strncasecmp(f[i].name, "from", 4) == 0) {
			from = &f[i];
			count++;
		}
	if (count != 1) {
		free(f);
		return -1;
	}
	/* the unfolded value after the colon, bounded */
	{
		struct lines it;
		const char *s;
		size_t n;
		int first = 1;

		lines_init(&it, from->p, from->len, from->flags);
		while (lines_next(&it, &s, &n)) {
			if (first) {
				const char *colon = memchr(s, ':', n);
				size_t skip = (size_t)(colon - s) + 1;

				s += skip;
				n -= skip;
				first = 0;
			}
			for (size_t i = 0; i < n && vn + 1 < sizeof val; i++)
				val[vn++] = s[i];
		}
	}
	free(f);
	an = first_address(val, vn, addr, sizeof addr);
	/* trim WSP, take what follows the last '@' */
	while (an > 0 && is_wsp(addr[an - 1]))
		an--;
	addr[an] = '\0';
	char *at = strrchr(addr, '@');

	if (at == NULL)
		return -1;
	char *d = at + 1, *alabel = NULL;

	while (is_wsp(*d))
		d++;
	size_t dl = strlen(d);

	if (dl > 0 && d[dl - 1] == '.')
		d[--dl] = '\0';
	for (size_t i = 0; i < dl; i++)
		if ((unsigned char)d[i] >= 0x80) {
			/* a U-label domain (RFC 6532 From): sign for its A-label form */
			if (idn2_to_ascii_8z(d, &alabel, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT) != IDN2_OK)
				alabel = NULL;
			if (alabel == NULL)
				return -1;
			d = alabel;
			dl = strlen(d);
			break;
		}
	if (dl == 0 || dl >= outlen || dl > 253) {
		idn2_free(alabel);
		return -1;
	}
	for (size_t i = 0; i < dl; i++) {
		unsigned char ch = (unsigned char)d[i];

		if (!(isalnum(ch) || ch == '-' || ch == '.' || ch == '_')) {
			idn2_free(alabel);
			return -1;
		}
		out[i] = (char)tolower(ch);
	}
	out[dl] = '\0';
	idn2_free(alabel);
	if (out[0] == '.' || strstr(out, "..") != NULL)
		return -1;
	return 0;
}
