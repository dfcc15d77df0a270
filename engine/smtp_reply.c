/*
 * smtp_reply.c - pure parser for SMTP replies (RFC 5321 4.2) with
 * enhanced status codes (RFC 2034, RFC 3463).
 *
 * Owns: smtp_reply_scan(), smtp_reply_parse(), smtp_reply_first_line(),
 * smtp_enh_parse().
 *
 * A reply is one or more lines "NNN-text" ending with "NNN text" (or a bare
 * "NNN"), every line carrying the same code. Two steps: smtp_reply_scan()
 * checks the lines as they arrive and says when a whole reply is there,
 * keeping its place in a small cursor so that no byte is searched twice;
 * then the reply's text is taken out once. smtp_reply_parse() does both
 * on a buffer in one call. Neither consumes a partial reply: the caller
 * keeps the bytes.
 *
 * Invariants: input is hostile. Every line is bounded (SMTP_REPLY_LINE_MAX),
 * the number of lines is bounded (SMTP_REPLY_LINES_MAX), so a caller never
 * needs to buffer more than about LINES_MAX * LINE_MAX bytes. Garbage is
 * reported as soon as it is visible (a partial line that cannot start a
 * reply is an error at once, not after LINE_MAX bytes or a time-out).
 * The stored text contains no control characters other than the '\n'
 * joining lines, and is always NUL-terminated.
 */
#include "smtp_reply.h"

#include <stdio.h>
#include <string.h>

static int
is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* smtp_enh_parse - "X.Y.Z", X in {2,4,5}, Y and Z 1-3 digits. */
size_t
smtp_enh_parse(const char *s, size_t len, char out[16])
{
	size_t i = 0, n;

	out[0] = '\0';
	if (len < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	i = 2;
	for (n = 0; i < len && is_digit(s[i]); i++)
		n++;
	if (n < 1 || n > 3 || i >= len || s[i] != '.')
		return 0;
	i++;
	for (n = 0; i < len && is_digit(s[i]); i++)
		n++;
	if (n < 1 || n > 3)
		return 0;
	/* "5.1.1234" or "5.1.1.2" is not an enhanced code. */
	if (i < len && (is_digit(s[i]) || s[i] == '.'))
		return 0;
	memcpy(out, s, i);
	out[i] = '\0';
	return i;
}

/*
 * prefix_ok - can these bytes (a line without its end yet) still become a
 * valid reply line with this code (0 = any)? Lets garbage fail at once.
 */
static int
prefix_ok(const char *p, size_t n, int code)
{
	if (n > 0 && (p[0] < '2' || p[0] > '5'))
		return 0;
	if (n > 1 && !is_digit(p[1]))
		return 0;
	if (n > 2) {
		if (!is_digit(p[2]))
			return 0;
		if (code != 0 && (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0') != code)
			return 0;
	}
	/* "250\r" may yet become the bare "250\r\n" */
	if (n > 3 && p[3] != ' ' && p[3] != '-' && !(n == 4 && p[3] == '\r'))
		return 0;
	return 1;
}

/* append_text - add s[0..n) to the reply text, sanitised and truncated. */
static void
append_text(struct smtp_reply *r, size_t *tlen, const char *s, size_t n)
{
	size_t room = sizeof r->text - 1 - *tlen;

	if (n > room)
		n = room;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		r->text[*tlen + i] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
	}
	*tlen += n;
	r->text[*tlen] = '\0';
}

/*
 * smtp_reply_scan - judge the lines of a reply as they arrive.
 *
 * k holds how far earlier calls got: complete lines before k->line were
 * checked (and were not the last line), and the first k->seen bytes of
 * the line at k->line hold no line end. Each call searches only the bytes
 * after those, and looks again at no more than the first 4 bytes of the
 * current line (the prefix check), so a reply fed one byte per call costs
 * time linear in its length.
 */
int
smtp_reply_scan(const char *buf, size_t len, struct smtp_reply_cursor *k)
{
	for (;;) {
		const char *line = buf + k->line;
		size_t avail = len - k->line;
		/* Look no further than the longest legal line: bounded work. */
		size_t lim = avail < SMTP_REPLY_LINE_MAX + 2 ? avail : SMTP_REPLY_LINE_MAX + 2;
		const char *nl = NULL;
		size_t llen;
		int c;

		if (k->seen < lim) {
			nl = memchr(line + k->seen, '\n', lim - k->seen);
			k->work += nl ? (size_t)(nl - line) + 1 - k->seen : lim - k->seen;
		}
		if (nl == NULL) {
			k->seen = lim;
			k->work += avail < 4 ? avail : 4;
			if (avail > SMTP_REPLY_LINE_MAX + 1)
				return -1;
			if (k->nlines + 1 > SMTP_REPLY_LINES_MAX)
				return -1;
			return prefix_ok(line, avail, k->code) ? 0 : -1;
		}
		llen = (size_t)(nl - line);
		if (llen > 0 && line[llen - 1] == '\r')
			llen--;
		if (llen > SMTP_REPLY_LINE_MAX || ++k->nlines > SMTP_REPLY_LINES_MAX)
			return -1;
		if (llen < 3 || !prefix_ok(line, 3, k->code) ||
		    (llen > 3 && line[3] != ' ' && line[3] != '-'))
			return -1;
		c = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (k->code == 0)
			k->code = c;
		k->line += (size_t)(nl - line) + 1;
		k->seen = 0;
		if (llen == 3 || line[3] == ' ') {
			k->end = k->line;
			return 1;
		}
	}
}

/*
 * extract - fill r from buf[0..end), a complete reply smtp_reply_scan()
 * has accepted: every line is known to be well formed.
 */
static void
extract(const char *buf, size_t end, struct smtp_reply *r)
{
	size_t pos = 0, tlen = 0;

	while (pos < end) {
		const char *line = buf + pos;
		const char *nl = memchr(line, '\n', end - pos);
		size_t llen = (size_t)(nl - line), tstart;

		pos += llen + 1;
		if (llen > 0 && line[llen - 1] == '\r')
			llen--;
		tstart = llen > 3 ? 4 : 3;
		r->nlines++;
		if (r->nlines == 1) {
			char enh[16];
			size_t n = smtp_enh_parse(line + tstart, llen - tstart, enh);

			r->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
			/* Only an enhanced code of the reply's own class, followed
			 * by a space or the end, counts ("250 2.0.0 Ok"); anything
			 * else stays part of the text. */
			if (n > 0 && enh[0] == line[0] &&
			    (tstart + n == llen || line[tstart + n] == ' ')) {
				memcpy(r->enh, enh, sizeof enh);
				tstart += n;
				while (tstart < llen && line[tstart] == ' ')
					tstart++;
			}
		} else {
			size_t el = strlen(r->enh);

			/* Servers repeat the code on each line
			 * ("550-5.1.1 ...\r\n550 5.1.1 ..."): drop the repeats. */
			if (el > 0 && llen - tstart >= el &&
			    memcmp(line + tstart, r->enh, el) == 0 &&
			    (tstart + el == llen || line[tstart + el] == ' ')) {
				tstart += el;
				while (tstart < llen && line[tstart] == ' ')
					tstart++;
			}
			if (tlen < sizeof r->text - 1) {
				r->text[tlen++] = '\n';
				r->text[tlen] = '\0';
			}
		}
		append_text(r, &tlen, line + tstart, llen - tstart);
	}
}

int
smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r, size_t *used)
{
	struct smtp_reply_cursor k;
	int rc;

	memset(&k, 0, sizeof k);
	r->code = 0;
	r->enh[0] = '\0';
	r->text[0] = '\0';
	r->nlines = 0;
	rc = smtp_reply_scan(buf, len, &k);
	if (rc != 1)
		return rc;
	extract(buf, k.end, r);
	*used = k.end;
	return 1;
}

/* smtp_reply_first_line - "550 5.1.1 text of line one", one line, bounded. */
void
smtp_reply_first_line(const struct smtp_reply *r, char *out, size_t outlen)
{
	size_t n, tl;
	int k;

	if (outlen == 0)
		return;
	k = snprintf(out, outlen, "%d%s%s", r->code, r->enh[0] ? " " : "", r->enh);
	if (k < 0)
		k = 0;
	n = (size_t)k < outlen ? (size_t)k : outlen - 1;
	tl = strcspn(r->text, "\n");
	if (tl > 0 && n + 1 < outlen) {
		out[n++] = ' ';
		if (tl > outlen - 1 - n)
			tl = outlen - 1 - n;
		memcpy(out + n, r->text, tl);
		n += tl;
	}
	out[n] = '\0';
	/* text is already clean; this guards replies built by hand. */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			out[i] = ' ';
}
