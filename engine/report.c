/*
 * report.c - bounces (DSN and the common text formats) and feedback
 * reports (ARF, JMRP, Yahoo) read from mail (see report.h).
 *
 * Owns: report_parse(), report_free(), report_verp_id(), report_job_id(),
 * report_kind_name(), report_action_name(), report_rcpt_is_failure(),
 * report_rcpt_classify().
 *
 * How a message is read, in order:
 *   1. mime_parse() splits it (bounded; a rejection ends here).
 *   2. A message/feedback-report part makes it ARF; a
 *      message/delivery-status part makes it a DSN, whatever the outer
 *      content type says (generators get report-type wrong).
 *   3. Otherwise its text (text/plain parts, else text/html with the tags
 *      taken out) is searched for the wording of the common bounce
 *      generators; each names a recipient and quotes the remote reply.
 *   4. Otherwise, an attached original stamped with Outlook.com's
 *      X-HmXmrOriginalRecipient is Microsoft's older JMRP complaint (ARF,
 *      format "jmrp", Feedback-Type abuse); wording about abuse or spam
 *      makes it NOT_ARF_ABUSE, and anything else is UNKNOWN.
 * The returned original is the first message/rfc822 (or headers-only)
 * part, else the copy a text bounce appends after its marker line; as a
 * last resort, the job-id header is looked for at the start of any line
 * of any part.
 *
 * Invariants: pure (no I/O, no clock); every copy is bounded and cleaned
 * (clean_copy); every scan moves forward through a bounded text, so the
 * work is linear in the input.
 */
#include "report.h"
#include "mime.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TEXT_MAX	(1u << 20)	/* bytes of bounce text searched */

/* ------------------------------------------------------------------ */
/* small string helpers                                                 */

/* clean_copy - s[0..n) into out: control bytes become blanks, runs of blanks one, trimmed. */
static void
clean_copy(char *out, size_t outlen, const char *s, size_t n)
{
	size_t o = 0;
	int blank = 1;

	for (size_t i = 0; i < n && o + 1 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || c == ' ') {
			if (!blank)
				out[o++] = ' ';
			blank = 1;
			continue;
		}
		out[o++] = (char)c;
		blank = 0;
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
}

static void
clean_str(char *out, size_t outlen, const char *s)
{
	clean_copy(out, outlen, s ? s : "", s ? strlen(s) : 0);
}

static int
addr_char(unsigned char c)
{
	return c >= 0x80 || (c > 0x20 && c < 0x7f && !strchr("<>()[],;:\"'\\", c));
}

/*
 * addr_in - the first address in s: inside <...> if there is one with an
 * '@', else the first run of address characters containing '@'. "" if
 * none (a redacted or empty field).
 */
static void
addr_in(const char *s, size_t n, char *out, size_t outlen)
{
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '@')
			continue;
		size_t a = i, b = i + 1;

		while (a > 0 && addr_char((unsigned char)s[a - 1]))
			a--;
		while (b < n && addr_char((unsigned char)s[b]))
			b++;
		while (b > i + 1 && s[b - 1] == '.')
			b--;
		if (a == i || b == i + 1)
			continue;	/* "@" alone, or no local part / domain */
		clean_copy(out, outlen, s + a, b - a);
		return;
	}
}

static void
addr_str(const char *s, char *out, size_t outlen)
{
	addr_in(s ? s : "", s ? strlen(s) : 0, out, outlen);
}

/* after_semicolon - "rfc822; alice@x" -> "alice@x" (the whole value if no ';'). */
static const char *
after_semicolon(const char *v)
{
	const char *p = strchr(v, ';');

	p = p ? p + 1 : v;
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* ci_find - case-insensitive memmem of the NUL-terminated needle in hay[0..n). */
static const char *
ci_find(const char *hay, size_t n, const char *needle)
{
	size_t m = strlen(needle);

	if (m == 0 || m > n)
		return NULL;
	char f = (char)(needle[0] | 0x20);
	int alpha = (needle[0] | 0x20) >= 'a' && (needle[0] | 0x20) <= 'z';

	for (size_t i = 0; i + m <= n; i++) {
		char c = hay[i];

		if (alpha ? (char)(c | 0x20) != f : c != needle[0])
			continue;
		if (strncasecmp(hay + i, needle, m) == 0)
			return hay + i;
	}
	return NULL;
}

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* enh_at - an enhanced status code "C.S.D" at s[0..n) (not followed by a digit or '.digit'). */
static size_t
enh_at(const char *s, size_t n, char out[16])
{
	size_t i = 0;

	if (n == 0 || (s[0] != '2' && s[0] != '4' && s[0] != '5'))
		return 0;
	i = 1;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;

		if (i >= n || s[i] != '.')
			return 0;
		i++;
		while (i < n && is_digit(s[i]) && d < 4) {
			i++;
			d++;
		}
		if (d == 0 || d > 3)
			return 0;
	}
	if (i < n && (is_digit(s[i]) || (s[i] == '.' && i + 1 < n && is_digit(s[i + 1]))))
		return 0;
	memcpy(out, s, i);
	out[i] = '\0';
	return i;
}

/* enh_in - the first enhanced status code standing alone in s, into out; 0 if none. */
static int
enh_in(const char *s, char out[16])
{
	size_t n = strlen(s);

	for (size_t i = 0; i < n; i++) {
		if (i > 0 && (is_digit(s[i - 1]) || s[i - 1] == '.'))
			continue;
		if (enh_at(s + i, n - i, out) > 0)
			return 1;
	}
	out[0] = '\0';
	return 0;
}

/* ------------------------------------------------------------------ */
/* names                                                                */

const char *
report_kind_name(enum report_kind k)
{
	switch (k) {
	case REPORT_DSN: return "dsn";
	case REPORT_ARF: return "arf";
	case REPORT_NOT_ARF_ABUSE: return "not_arf";
	case REPORT_UNKNOWN: break;
	}
	return "unknown";
}

const char *
report_action_name(enum report_action a)
{
	switch (a) {
	case REPORT_ACTION_FAILED: return "failed";
	case REPORT_ACTION_DELAYED: return "delayed";
	case REPORT_ACTION_DELIVERED: return "delivered";
	case REPORT_ACTION_RELAYED: return "relayed";
	case REPORT_ACTION_EXPANDED: return "expanded";
	case REPORT_ACTION_NONE: break;
	}
	return "";
}

int
report_rcpt_is_failure(const struct report_rcpt *rc)
{
	if (rc->action == REPORT_ACTION_FAILED)
		return 1;
	return rc->action == REPORT_ACTION_NONE && rc->status[0] == '5';
}

static enum report_action
action_from(const char *v)
{
	static const struct { const char *w; enum report_action a; } t[] = {
		{ "failed", REPORT_ACTION_FAILED }, { "failure", REPORT_ACTION_FAILED },
		{ "delayed", REPORT_ACTION_DELAYED }, { "delivered", REPORT_ACTION_DELIVERED },
		{ "relayed", REPORT_ACTION_RELAYED }, { "expanded", REPORT_ACTION_EXPANDED },
	};

	while (*v == ' ')
		v++;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		size_t n = strlen(t[i].w);

		if (strncasecmp(v, t[i].w, n) == 0 && !((v[n] | 0x20) >= 'a' && (v[n] | 0x20) <= 'z'))
			return t[i].a;
	}
	return REPORT_ACTION_NONE;
}

enum bounce_class
report_rcpt_classify(const struct classify_rules *rules, const struct report_rcpt *rc,
    struct classify_match *m)
{
	const char *d = rc->diag;
	enum bounce_class c;

	if ((d[0] == '4' || d[0] == '5') && is_digit(d[1]) && is_digit(d[2]) &&
	    (d[3] == ' ' || d[3] == '-' || d[3] == '\0')) {
		char enh[16];

		c = classify_line_stage(rules, NULL, d, m);
		/* a bare code says little: the Status may say more */
		if (c != CLASS_UNKNOWN || rc->status[0] == '\0' || enh_in(d, enh))
			return c;
	}
	int code = rc->status[0] == '4' || rc->status[0] == '5' ? (rc->status[0] - '0') * 100 + 99 : 0;

	return classify_reply_stage(rules, NULL, code, rc->status, d, m);
}

/* ------------------------------------------------------------------ */
/* recipients                                                           */

static struct report_rcpt *
rcpt_add(struct report *r)
{
	if (r->nrcpts >= REPORT_RCPTS_MAX)
		return NULL;
	if (r->rcpts == NULL)
		r->rcpts = xcalloc(REPORT_RCPTS_MAX, sizeof *r->rcpts);
	return &r->rcpts[r->nrcpts++];
}

/* status_fill - a status from the diagnostic when the report gave none. */
static void
status_fill(struct report_rcpt *rc)
{
	char enh[16];
	const char *d = rc->diag;

	if (rc->status[0] != '\0')
		return;
	if (enh_in(d, enh) && (d[0] < '2' || d[0] > '5' || enh[0] == d[0])) {
		snprintf(rc->status, sizeof rc->status, "%s", enh);
		return;
	}
	if ((d[0] == '4' || d[0] == '5') && is_digit(d[1]) && is_digit(d[2]))
		snprintf(rc->status, sizeof rc->status, "%c.0.0", d[0]);
}

/* ------------------------------------------------------------------ */
/* RFC 3464                                                             */

static void
dsn_fields(struct report *r, const char *p, size_t len)
{
	size_t pos = 0;
	int first = 1;

	while (pos < len) {
		struct mime_headers hs;
		size_t off;
		const char *why, *v;

		if (mime_headers_parse(p + pos, len - pos, &hs, &off, &why) < 0) {
			mime_headers_free(&hs);
			return;
		}
		pos += off;
		if (hs.n == 0) {
			mime_headers_free(&hs);
			continue;
		}
		if (first && (v = mime_header_get(&hs, "Reporting-MTA")) != NULL)
			clean_str(r->reporting_mta, sizeof r->reporting_mta, after_semicolon(v));
		first = 0;
		const char *fin = mime_header_get(&hs, "Final-Recipient");
		const char *orig = mime_header_get(&hs, "Original-Recipient");
		const char *act = mime_header_get(&hs, "Action");
		struct report_rcpt *rc;

		if ((fin == NULL && orig == NULL) || (rc = rcpt_add(r)) == NULL) {
			mime_headers_free(&hs);
			continue;
		}
		if (fin)
			addr_str(after_semicolon(fin), rc->final_rcpt, sizeof rc->final_rcpt);
		if (orig)
			addr_str(after_semicolon(orig), rc->original_rcpt, sizeof rc->original_rcpt);
		if (rc->final_rcpt[0] == '\0')
			memcpy(rc->final_rcpt, rc->original_rcpt, sizeof rc->final_rcpt);
		rc->action = act ? action_from(act) : REPORT_ACTION_NONE;
		if ((v = mime_header_get(&hs, "Status")) != NULL) {
			char enh[16];

			while (*v == ' ')
				v++;
			if (enh_at(v, strlen(v), enh) > 0)
				memcpy(rc->status, enh, sizeof rc->status);
		}
		if ((v = mime_header_get(&hs, "Diagnostic-Code")) != NULL) {
			const char *semi = strchr(v, ';');

			if (semi != NULL && semi - v < (long)sizeof rc->diag_type) {
				clean_copy(rc->diag_type, sizeof rc->diag_type, v, (size_t)(semi - v));
				str_lower(rc->diag_type);
			}
			clean_str(rc->diag, sizeof rc->diag, after_semicolon(v));
		}
		if ((v = mime_header_get(&hs, "Remote-MTA")) != NULL) {
			const char *h = after_semicolon(v);
			size_t k = strcspn(h, " \t(");

			while (k > 0 && h[k - 1] == '.')
				k--;
			clean_copy(rc->remote_mta, sizeof rc->remote_mta, h, k);
		}
		status_fill(rc);
		mime_headers_free(&hs);
	}
}

/* ------------------------------------------------------------------ */
/* the returned original                                                */

static void
original_read(struct report_original *o, const char *p, size_t len, const char *id_header)
{
	struct mime_headers hs;
	size_t off;
	const char *why, *v;

	/* a copy may start with blank lines */
	while (len > 0 && (*p == '\n' || *p == '\r' || *p == ' ' || *p == '\t')) {
		p++;
		len--;
	}
	if (mime_headers_parse(p, len, &hs, &off, &why) < 0 || hs.n == 0) {
		mime_headers_free(&hs);
		return;
	}
	o->found = 1;
	if ((v = mime_header_get(&hs, id_header)) != NULL) {
		size_t n = strcspn(v, " \t;");

		clean_copy(o->job_id, sizeof o->job_id, v, n);
	}
	addr_str(mime_header_get(&hs, "Return-Path"), o->return_path, sizeof o->return_path);
	addr_str(mime_header_get(&hs, "From"), o->from, sizeof o->from);
	addr_str(mime_header_get(&hs, "To"), o->to, sizeof o->to);
	clean_str(o->message_id, sizeof o->message_id, mime_header_get(&hs, "Message-ID"));
	clean_str(o->subject, sizeof o->subject, mime_header_get(&hs, "Subject"));
	addr_str(mime_header_get(&hs, "X-HmXmrOriginalRecipient"), o->ms_original_rcpt,
	    sizeof o->ms_original_rcpt);
	mime_headers_free(&hs);
}

static int
is_original_type(const char *ct)
{
	return strcmp(ct, "message/rfc822") == 0 || strcmp(ct, "text/rfc822-headers") == 0 ||
	    strcmp(ct, "message/rfc822-headers") == 0 || strcmp(ct, "message/global") == 0 ||
	    strcmp(ct, "message/global-headers") == 0 || strcmp(ct, "message/partial") == 0;
}

/* the lines after which text bounces append the original */
static const char *const copy_markers[] = {
	"------ This is a copy of the message, including all the headers.",
	"------ This is a copy of the message's headers.",
	"--- Below this line is a copy of the message.",
	"----- Original message -----",
	"------ Original message ------",
	"Original message headers:",
};

/* original_from_text - the original a text bounce appends after a marker line. */
static int
original_from_text(struct report_original *o, const char *p, size_t len, const char *id_header)
{
	for (size_t i = 0; i < sizeof copy_markers / sizeof copy_markers[0]; i++) {
		const char *m = ci_find(p, len, copy_markers[i]);

		if (m == NULL)
			continue;
		const char *nl = memchr(m, '\n', len - (size_t)(m - p));

		if (nl == NULL)
			continue;
		nl++;
		original_read(o, nl, len - (size_t)(nl - p), id_header);
		if (o->found)
			return 1;
	}
	return 0;
}

/* id_anywhere - the job-id header at the start of any line of p[0..len). */
static void
id_anywhere(struct report_original *o, const char *p, size_t len, const char *id_header)
{
	size_t hl = strlen(id_header), pos = 0;

	while (pos < len) {
		const char *nl = memchr(p + pos, '\n', len - pos);
		size_t e = nl ? (size_t)(nl - p) : len;

		if (e - pos > hl && strncasecmp(p + pos, id_header, hl) == 0 && p[pos + hl] == ':') {
			const char *v = p + pos + hl + 1;
			size_t n = e - (pos + hl + 1);

			while (n > 0 && (*v == ' ' || *v == '\t')) {
				v++;
				n--;
			}
			size_t t = 0;

			while (t < n && v[t] != ' ' && v[t] != '\t' && v[t] != '\r' && v[t] != ';')
				t++;
			clean_copy(o->job_id, sizeof o->job_id, v, t);
			if (o->job_id[0])
				return;
		}
		pos = e + 1;
	}
}

/* ------------------------------------------------------------------ */
/* text of the human-readable parts                                     */

/* html_to_text - append p[0..n) to b with tags removed and a few entities decoded. */
static void
html_to_text(struct buf *b, const char *p, size_t n)
{
	static const struct { const char *e; char c; } ent[] = {
		{ "&#39;", '\'' }, { "&apos;", '\'' }, { "&quot;", '"' }, { "&amp;", '&' },
		{ "&lt;", '<' }, { "&gt;", '>' }, { "&nbsp;", ' ' }, { "&#43;", '+' },
	};
	int tag = 0;

	for (size_t i = 0; i < n && b->len < TEXT_MAX; i++) {
		char c = p[i];

		if (tag) {
			if (c == '>')
				tag = 0;
			continue;
		}
		if (c == '<') {
			/* block-level tags end a line */
			if (i + 3 < n && (strncasecmp(p + i, "<br", 3) == 0 || strncasecmp(p + i, "<p", 2) == 0 ||
			    strncasecmp(p + i, "</p", 3) == 0 || strncasecmp(p + i, "<div", 4) == 0 ||
			    strncasecmp(p + i, "<tr", 3) == 0 || strncasecmp(p + i, "</tr", 4) == 0))
				buf_append(b, "\n", 1);
			tag = 1;
			continue;
		}
		if (c == '&') {
			size_t k;

			for (k = 0; k < sizeof ent / sizeof ent[0]; k++) {
				size_t el = strlen(ent[k].e);

				if (i + el <= n && strncasecmp(p + i, ent[k].e, el) == 0) {
					buf_append(b, &ent[k].c, 1);
					i += el - 1;
					break;
				}
			}
			if (k < sizeof ent / sizeof ent[0])
				continue;
		}
		buf_append(b, &c, 1);
	}
}

/* human_text - the text/plain parts outside any returned original, else the text/html ones. */
static void
human_text(const struct mime_msg *m, struct buf *b)
{
	for (int pass = 0; pass < 2 && b->len == 0; pass++) {
		for (size_t i = 0; i < m->n && b->len < TEXT_MAX; i++) {
			const struct mime_part *pt = &m->parts[i];
			size_t n = pt->body_len;

			if (strncmp(pt->ctype, "multipart/", 10) == 0)
				continue;
			if (pass == 0 && strcmp(pt->ctype, "text/plain") == 0) {
				if (n > TEXT_MAX - b->len)
					n = TEXT_MAX - b->len;
				buf_append(b, pt->body, n);
				buf_append(b, "\n", 1);
			} else if (pass == 1 && strcmp(pt->ctype, "text/html") == 0) {
				html_to_text(b, pt->body, n);
				buf_append(b, "\n", 1);
			}
		}
	}
	buf_append(b, "", 1);	/* NUL-terminate; len counts it */
	b->len--;
}

/* ------------------------------------------------------------------ */
/* text bounces                                                         */

struct text_format {
	const char *name;
	const char *marker;
};

/* The wording that makes a text a bounce, and which generator wrote it. */
static const struct text_format text_formats[] = {
	{ "exim", "This message was created automatically by mail delivery software" },
	{ "qmail", "This is the qmail-send program" },
	{ "yahoo", "Sorry, we were unable to deliver your message to the following address" },
	{ "yahoo", "Sorry, we were unable to deliver your message" },
	{ "gmail", "** Address not found **" },
	{ "gmail", "** Message not delivered **" },
	{ "gmail", "** Message blocked **" },
	{ "gmail", "** Delivery incomplete **" },
	{ "gmail", "Delivery to the following recipient failed permanently" },
	{ "gmail", "Delivery to the following recipients failed permanently" },
	{ "gmail", "Your message wasn't delivered to" },
	{ "gmail", "There was a temporary problem delivering your message to" },
	{ "exchange", "Remote Server returned '" },
	{ "exchange", "Remote server returned '" },
	{ "exchange", "Delivery has failed to these recipients or groups" },
	{ "exchange", "Diagnostic information for administrators" },
	{ "exchange", "couldn't be delivered" },
	{ "postfix", "This is the mail system at host" },
	{ "postfix", "I'm sorry to have to inform you that your message could not" },
	{ "sendmail", "The original message was received at" },
	{ "text", "Your message could not be delivered" },
	{ "text", "could not be delivered to the following" },
	{ "text", "Delivery to the following recipient" },
	{ "text", "undeliverable to the following" },
	{ "text", "permanent fatal errors" },
};

static const char *const delay_words[] = {
	"has not yet been delivered", "have yet to be delivered", "Delivery incomplete",
	"will retry", "will be retried", "still being retried", "Delivery delayed",
	"delivery is delayed", "Delayed Mail", "temporary problem delivering",
	"not been delivered yet", "Warning: message still undelivered",
};

/* the phrases that introduce the remote server's reply */
static const char *const reply_markers[] = {
	"Remote Server returned '", "Remote server returned '", "The response from the remote server was:",
	"The error that the other server returned was:", "Remote host said:",
	"SMTP error from remote mail server after", "said:", "returned:",
};

/*
 * reply_at - is there an SMTP reply "NNN[ -:]..." at s (inside s[0..n))?
 * Returns the length of the code part, 0 if not.
 */
static size_t
reply_at(const char *s, size_t n)
{
	if (n < 5 || (s[0] != '4' && s[0] != '5') || !is_digit(s[1]) || !is_digit(s[2]))
		return 0;
	if (s[3] != ' ' && s[3] != '-' && s[3] != ':')
		return 0;
	return 3;
}

/*
 * reply_copy - the SMTP reply starting at s (bounded by end and by the
 * end of its paragraph) into out, normalised to "NNN text". A reply that
 * opened after a quote ends at the closing quote.
 */
static void
reply_copy(const char *s, const char *end, char quote, char *out, size_t outlen)
{
	const char *p = s + 3, *e = s;
	char tmp[REPORT_DIAG_MAX - 4];

	/*
	 * The reply's lines: the first, then those that are indented (a
	 * wrapped line) or repeat the code (a multi-line reply); a blank or
	 * an unindented line ends it.
	 */
	for (;;) {
		const char *nl = memchr(e, '\n', (size_t)(end - e));

		if (nl == NULL) {
			e = end;
			break;
		}
		const char *q = nl + 1;
		size_t k = 0;

		while (q + k < end && (q[k] == ' ' || q[k] == '\t'))
			k++;
		if (q + k >= end || q[k] == '\n' || q[k] == '\r' ||
		    (k == 0 && !(end - q > 3 && memcmp(q, s, 3) == 0))) {
			e = nl;
			break;
		}
		e = q;
	}
	if (quote) {
		const char *q = memchr(s, quote, (size_t)(e - s));

		if (q != NULL)
			e = q;
	}
	while (p < e && (*p == ':' || *p == '-' || *p == ' '))
		p++;
	clean_copy(tmp, sizeof tmp, p, (size_t)(e - p));
	snprintf(out, outlen, "%.3s %s", s, tmp);
	/* a multi-line reply repeats its code: "550-5.1.1 a 550-5.1.1 b" stays readable */
}

/* reply_find - the first SMTP reply in s[0..n), preferring one after a marker. */
static const char *
reply_find(const char *s, size_t n, char *quote)
{
	*quote = '\0';
	for (size_t k = 0; k < sizeof reply_markers / sizeof reply_markers[0]; k++) {
		const char *m = ci_find(s, n, reply_markers[k]);

		if (m == NULL)
			continue;
		size_t ml = strlen(reply_markers[k]);
		const char *p = m + ml, *end = s + n;

		/* within the next few lines */
		for (int lines = 0; p < end && lines < 4; p++) {
			if (*p == '\n')
				lines++;
			if (reply_at(p, (size_t)(end - p)) && (p == m + ml || !is_digit(p[-1]))) {
				if (reply_markers[k][ml - 1] == '\'')
					*quote = '\'';
				return p;
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && (is_digit(s[i - 1]) || s[i - 1] == '.' ||
		    ((s[i - 1] | 0x20) >= 'a' && (s[i - 1] | 0x20) <= 'z')))
			continue;
		if (reply_at(s + i, n - i)) {
			char enh[16];
			const char *p = s + i + 4;

			while (p < s + n && *p == ' ')
				p++;
			/* without a marker, only a reply with an enhanced code of
			 * its class, or one that starts a line */
			if ((enh_at(p, (size_t)(s + n - p), enh) > 0 && enh[0] == s[i]) ||
			    i == 0 || s[i - 1] == '\n')
				return s + i;
		}
	}
	return NULL;
}

/* rcpt_from_block - one recipient whose block (its lines) is s[0..n). */
static void
rcpt_from_block(struct report *r, const char *addr, size_t alen, const char *s, size_t n,
    enum report_action action, int words)
{
	struct report_rcpt *rc;
	char quote;
	const char *rep, *h;
	char a[REPORT_ADDR_MAX];

	addr_in(addr, alen, a, sizeof a);
	if (a[0] == '\0')
		return;
	for (size_t i = 0; i < r->nrcpts; i++)
		if (strcasecmp(r->rcpts[i].final_rcpt, a) == 0)
			return;
	if ((rc = rcpt_add(r)) == NULL)
		return;
	memcpy(rc->final_rcpt, a, sizeof rc->final_rcpt);
	rc->action = action;
	if ((rep = reply_find(s, n, &quote)) != NULL) {
		reply_copy(rep, s + n, quote, rc->diag, sizeof rc->diag);
		snprintf(rc->diag_type, sizeof rc->diag_type, "smtp");
	} else if (words) {
		/* qmail and local failures: the block's words are the diagnostic */
		while (n > 0 && (*s == ':' || *s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) {
			s++;
			n--;
		}
		clean_copy(rc->diag, sizeof rc->diag, s, n);
		const char *hash = strstr(rc->diag, "(#");
		char enh[16];

		if (hash && enh_at(hash + 2, strlen(hash + 2), enh) > 0)
			memcpy(rc->status, enh, sizeof rc->status);
	}
	if ((h = ci_find(s, n, "host ")) != NULL) {
		const char *p = h + 5, *e = s + n;
		size_t k = 0;

		while (p + k < e && addr_char((unsigned char)p[k]) && p[k] != '[')
			k++;
		if (k > 0 && memchr(p, '.', k) != NULL)
			clean_copy(rc->remote_mta, sizeof rc->remote_mta, p, k);
	}
	status_fill(rc);
	if (rc->status[0] == '\0' && action == REPORT_ACTION_FAILED)
		snprintf(rc->status, sizeof rc->status, "5.0.0");
	if (rc->status[0] == '\0' && action == REPORT_ACTION_DELAYED)
		snprintf(rc->status, sizeof rc->status, "4.0.0");
}

/* block_end - end of the paragraph that starts at p (the blank line, or end). */
static const char *
block_end(const char *p, const char *end, int exim)
{
	const char *q = p;

	while (q < end) {
		const char *nl = memchr(q, '\n', (size_t)(end - q));
		const char *next = nl ? nl + 1 : end;

		if (q != p) {
			size_t k = 0;

			while (q + k < next && (q[k] == ' ' || q[k] == '\t'))
				k++;
			if (q + k >= next || q[k] == '\n' || q[k] == '\r')
				return q;
			/* exim: the next address line (two spaces, then text) ends a block */
			if (exim && k == 2)
				return q;
		}
		q = next;
	}
	return end;
}

/*
 * text_rcpts - the recipients of a text bounce. Lines of the shapes
 *   "<addr>:" (qmail, Yahoo, Postfix)    "  addr" (Exim, after "failed:")
 * start a block; otherwise one recipient from the sentence that names it.
 */
static void
text_rcpts(struct report *r, const char *t, size_t n, enum report_action action)
{
	const char *end = t + n, *p = t;
	const char *exim = ci_find(t, n, "following address(es)");

	if (exim == NULL)
		exim = ci_find(t, n, "not yet been delivered is:");
	if (exim == NULL)
		exim = ci_find(t, n, "not yet been delivered are:");
	static const char *const sentences[] = {
		"wasn't delivered to ", "Your message to ", "delivering your message to ",
		"Delivery to the following recipient failed permanently:",
		"Delivery to the following recipients failed permanently:",
		"Delivery has failed to these recipients or groups:",
		"could not be delivered to the following recipients:",
		"unable to deliver your message to the following address",
		"Delivery to the following recipient has been delayed:",
		"Original-Recipient: rfc822;", "Final-Recipient: rfc822;",
	};

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end, *next = nl ? nl + 1 : end;
		const char *q = p;

		if (e > p && e[-1] == '\r')
			e--;

		if (*q == '<') {
			const char *gt = memchr(q, '>', (size_t)(e - q));

			if (gt != NULL && (gt + 1 == e || gt[1] == ':') &&
			    memchr(q, '@', (size_t)(gt - q)) != NULL) {
				const char *be = block_end(p, end, 0);

				rcpt_from_block(r, q, (size_t)(gt + 1 - q), gt + 1, (size_t)(be - (gt + 1)), action, 1);
				next = be;
			}
		} else if (exim && p > exim && e - p > 3 && p[0] == ' ' && p[1] == ' ' && p[2] != ' ' &&
		    memchr(p, '@', (size_t)(e - p)) != NULL) {
			const char *be = block_end(p, end, 1);
			size_t alen = strcspn(p + 2, " \t\r\n");

			rcpt_from_block(r, p + 2, alen, e, (size_t)(be - e), action, 1);
			next = be;
		}
		if (next <= p)
			break;
		p = next;
	}
	if (r->nrcpts > 0)
		return;
	for (size_t k = 0; k < sizeof sentences / sizeof sentences[0]; k++) {
		const char *s = ci_find(t, n, sentences[k]);

		if (s == NULL)
			continue;
		s += strlen(sentences[k]);
		/* the address is on this line or among the next two */
		const char *lim = s;

		for (int lines = 0; lim < end && lines < 3; lim++)
			if (*lim == '\n')
				lines++;
		const char *at = memchr(s, '@', (size_t)(lim - s));

		if (at == NULL)
			continue;
		const char *a = at, *b = at;

		while (a > s && addr_char((unsigned char)a[-1]))
			a--;
		while (b < lim && addr_char((unsigned char)*b))
			b++;
		rcpt_from_block(r, a, (size_t)(b - a), t, n, action, 0);
		return;
	}
}

static const char *
text_format_of(const char *t, size_t n)
{
	for (size_t i = 0; i < sizeof text_formats / sizeof text_formats[0]; i++)
		if (ci_find(t, n, text_formats[i].marker) != NULL)
			return text_formats[i].name;
	return NULL;
}

static enum report_action
text_action(const char *t, size_t n)
{
	for (size_t i = 0; i < sizeof delay_words / sizeof delay_words[0]; i++)
		if (ci_find(t, n, delay_words[i]) != NULL)
			return REPORT_ACTION_DELAYED;
	return REPORT_ACTION_FAILED;
}

/* ------------------------------------------------------------------ */
/* ARF                                                                  */

static int
is_redacted(const char *a)
{
	return a[0] == '\0' || strcasestr(a, "redacted") != NULL;
}

static void
arf_fields(struct report *r, const char *p, size_t len)
{
	struct mime_headers hs;
	size_t off;
	const char *why, *v;
	struct report_feedback *f = &r->feedback;

	if (mime_headers_parse(p, len, &hs, &off, &why) < 0) {
		mime_headers_free(&hs);
		return;
	}
	if ((v = mime_header_get(&hs, "Feedback-Type")) != NULL) {
		clean_copy(f->feedback_type, sizeof f->feedback_type, v, strcspn(v, " \t;"));
		str_lower(f->feedback_type);
	}
	clean_str(f->user_agent, sizeof f->user_agent, mime_header_get(&hs, "User-Agent"));
	clean_str(f->version, sizeof f->version, mime_header_get(&hs, "Version"));
	addr_str(mime_header_get(&hs, "Original-Mail-From"), f->original_mail_from,
	    sizeof f->original_mail_from);
	addr_str(mime_header_get(&hs, "Original-Rcpt-To"), f->original_rcpt_to,
	    sizeof f->original_rcpt_to);
	if (is_redacted(f->original_rcpt_to))
		f->original_rcpt_to[0] = '\0';
	v = mime_header_get(&hs, "Arrival-Date");
	clean_str(f->arrival_date, sizeof f->arrival_date, v ? v : mime_header_get(&hs, "Received-Date"));
	clean_str(f->source_ip, sizeof f->source_ip, mime_header_get(&hs, "Source-IP"));
	clean_str(f->reported_domain, sizeof f->reported_domain, mime_header_get(&hs, "Reported-Domain"));
	if ((v = mime_header_get(&hs, "Reporting-MTA")) != NULL)
		clean_str(r->reporting_mta, sizeof r->reporting_mta, after_semicolon(v));
	if (f->feedback_type[0] == '\0')
		snprintf(f->feedback_type, sizeof f->feedback_type, "abuse");
	mime_headers_free(&hs);
}

static void
arf_finish(struct report *r)
{
	struct report_feedback *f = &r->feedback;
	struct report_original *o = &r->original;
	int jmrp = o->ms_original_rcpt[0] != '\0' || strcasestr(f->user_agent, "hotmail") ||
	    strcasestr(f->user_agent, "jmrp") || strcasestr(f->user_agent, "outlook");

	r->format = jmrp ? "jmrp" : strcasestr(f->user_agent, "yahoo") ? "yahoo-arf" : "arf";
	if (f->original_rcpt_to[0])
		memcpy(r->complained_rcpt, f->original_rcpt_to, sizeof r->complained_rcpt);
	else if (o->ms_original_rcpt[0] && !is_redacted(o->ms_original_rcpt))
		memcpy(r->complained_rcpt, o->ms_original_rcpt, sizeof r->complained_rcpt);
	else if (!is_redacted(o->to))
		memcpy(r->complained_rcpt, o->to, sizeof r->complained_rcpt);
}

/* ------------------------------------------------------------------ */
/* the walk                                                             */

static const char *const abuse_words[] = {
	"abuse", "spam", "complaint", "unsolicited", "phishing", "junk mail", "junk e-mail",
};

static const char *const autoreply_words[] = {
	"out of office", "out of the office", "automatic reply", "auto-reply", "autoreply",
	"vacation",
};

static int
any_word(const char *s, size_t n, const char *const *w, size_t nw)
{
	for (size_t i = 0; i < nw; i++)
		if (ci_find(s, n, w[i]) != NULL)
			return 1;
	return 0;
}

int
report_parse(const char *msg, size_t len, const char *id_header, struct report *r)
{
	struct mime_msg m;
	struct buf text = { 0 };
	const struct mime_part *dsn = NULL, *fb = NULL, *orig = NULL;
	const struct mime_headers *top;
	const char *fmt;

	memset(r, 0, sizeof *r);
	r->format = "";
	if (id_header == NULL || *id_header == '\0')
		id_header = "X-Volley-Id";
	if (mime_parse(msg, len, &m) < 0) {
		snprintf(r->reason, sizeof r->reason, "%s", m.reason);
		mime_free(&m);
		return -1;
	}
	top = &m.parts[0].hdr;
	addr_str(mime_header_get(top, "To"), r->to, sizeof r->to);
	addr_str(mime_header_get(top, "From"), r->from, sizeof r->from);
	clean_str(r->subject, sizeof r->subject, mime_header_get(top, "Subject"));
	for (size_t i = 1; i < m.n; i++) {
		const char *ct = m.parts[i].ctype;

		if (fb == NULL && strcmp(ct, "message/feedback-report") == 0)
			fb = &m.parts[i];
		else if (dsn == NULL && (strcmp(ct, "message/delivery-status") == 0 ||
		    strcmp(ct, "message/global-delivery-status") == 0))
			dsn = &m.parts[i];
		else if (orig == NULL && is_original_type(ct))
			orig = &m.parts[i];
	}
	if (orig != NULL)
		original_read(&r->original, orig->body, orig->body_len, id_header);
	human_text(&m, &text);

	if (fb != NULL) {
		r->kind = REPORT_ARF;
		arf_fields(r, fb->body, fb->body_len);
	} else if (dsn != NULL) {
		r->kind = REPORT_DSN;
		r->format = "rfc3464";
		dsn_fields(r, dsn->body, dsn->body_len);
		if (r->nrcpts == 0) {
			fmt = text_format_of(text.data, text.len);
			text_rcpts(r, text.data, text.len, text_action(text.data, text.len));
			if (r->nrcpts > 0)
				r->format = fmt ? fmt : "text";
		}
		if (r->nrcpts == 0) {
			r->kind = REPORT_UNKNOWN;
			snprintf(r->reason, sizeof r->reason, "delivery status without any recipient");
		}
	} else if ((fmt = text_format_of(text.data, text.len)) != NULL) {
		text_rcpts(r, text.data, text.len, text_action(text.data, text.len));
		if (r->nrcpts > 0) {
			r->kind = REPORT_DSN;
			r->format = fmt;
		} else {
			snprintf(r->reason, sizeof r->reason, "%s bounce without a recipient address", fmt);
		}
	}
	if (!r->original.found)
		original_from_text(&r->original, text.data, text.len, id_header);
	for (size_t i = 0; i < m.n && r->original.job_id[0] == '\0'; i++)
		if (strncmp(m.parts[i].ctype, "multipart/", 10) != 0)
			id_anywhere(&r->original, m.parts[i].body, m.parts[i].body_len, id_header);
	/*
	 * Microsoft's older JMRP: no feedback-report part, only the attached
	 * original, which Outlook.com stamped with X-HmXmrOriginalRecipient
	 * on delivery (so a bounce of ours never carries it).
	 */
	if (r->kind == REPORT_UNKNOWN && r->reason[0] == '\0' && orig != NULL &&
	    r->original.ms_original_rcpt[0] != '\0') {
		r->kind = REPORT_ARF;
		snprintf(r->feedback.feedback_type, sizeof r->feedback.feedback_type, "abuse");
	}
	if (r->kind == REPORT_ARF)
		arf_finish(r);

	if (r->kind == REPORT_UNKNOWN && r->reason[0] == '\0') {
		const char *as = mime_header_get(top, "Auto-Submitted");

		if ((as && strncasecmp(as, "auto-replied", 12) == 0) ||
		    any_word(r->subject, strlen(r->subject), autoreply_words,
		    sizeof autoreply_words / sizeof autoreply_words[0])) {
			snprintf(r->reason, sizeof r->reason, "an automatic reply, not a report");
		} else if (any_word(r->subject, strlen(r->subject), abuse_words,
		    sizeof abuse_words / sizeof abuse_words[0]) ||
		    any_word(text.data, text.len < 65536 ? text.len : 65536, abuse_words,
		    sizeof abuse_words / sizeof abuse_words[0])) {
			r->kind = REPORT_NOT_ARF_ABUSE;
			r->format = "text";
			snprintf(r->reason, sizeof r->reason,
			    "abuse report without a message/feedback-report part");
			if (!is_redacted(r->original.to))
				memcpy(r->complained_rcpt, r->original.to, sizeof r->complained_rcpt);
		} else {
			snprintf(r->reason, sizeof r->reason, "not a delivery status or feedback report");
		}
	}
	buf_free(&text);
	mime_free(&m);
	return r->kind == REPORT_UNKNOWN ? -1 : 0;
}

void
report_free(struct report *r)
{
	free(r->rcpts);
	r->rcpts = NULL;
	r->nrcpts = 0;
}

/* ------------------------------------------------------------------ */
/* tying a report to its job                                            */

int
report_verp_id(const char *rcpt, const char *tpl, char *id, size_t idlen)
{
	char a[REPORT_ADDR_MAX];
	const char *hole;
	size_t pre, suf, alen, n;

	if (rcpt == NULL || tpl == NULL || idlen == 0 || (hole = strstr(tpl, "{id}")) == NULL)
		return -1;
	addr_str(rcpt, a, sizeof a);
	alen = strlen(a);
	pre = (size_t)(hole - tpl);
	suf = strlen(hole + 4);
	if (alen <= pre + suf || strncasecmp(a, tpl, pre) != 0 ||
	    strcasecmp(a + alen - suf, hole + 4) != 0)
		return -1;
	n = alen - pre - suf;
	if (n + 1 > idlen)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)a[pre + i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit((char)c) ||
		    c == '-' || c == '_' || c == '.' || c == '='))
			return -1;
	}
	memcpy(id, a + pre, n);
	id[n] = '\0';
	return 0;
}

const char *
report_job_id(const struct report *r, const char *envelope_rcpt, const char *tpl, char *id,
    size_t idlen)
{
	if (idlen == 0)
		return NULL;
	id[0] = '\0';
	if (tpl && envelope_rcpt && report_verp_id(envelope_rcpt, tpl, id, idlen) == 0)
		return "verp-envelope";
	if (r->original.job_id[0] && strlen(r->original.job_id) < idlen) {
		memcpy(id, r->original.job_id, strlen(r->original.job_id) + 1);
		return "id-header";
	}
	if (tpl && report_verp_id(r->to, tpl, id, idlen) == 0)
		return "verp-to";
	if (tpl && report_verp_id(r->feedback.original_mail_from, tpl, id, idlen) == 0)
		return "verp-original-mail-from";
	if (tpl && report_verp_id(r->original.return_path, tpl, id, idlen) == 0)
		return "verp-return-path";
	id[0] = '\0';
	return NULL;
}
