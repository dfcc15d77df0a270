/*
 * headers.c - the header fields volley adds (headers.h): Message-ID and
 * Date per distinct body, List-Unsubscribe(-Post) and Feedback-ID per
 * job.
 *
 * Owns: hdr_present(), hdr_fold(), hdr_date(), hdr_message_id(),
 * hdr_body_lines(), hdr_job_lines(), hdr_expand().
 *
 * Pure (time and random bytes come in as arguments). The values it is
 * handed were validated by job.c or config.c: printable ASCII without
 * spaces. The opaque tags that go into a generated Feedback-ID were not
 * (a campaign may hold anything but NUL), so they are sanitised here:
 * nothing a job carries can add a line to a header.
 */
#include "headers.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int
hdr_present(const char *h, size_t hlen, const char *name)
{
	size_t nl = strlen(name), i = 0;

	while (i < hlen) {
		const char *eol = memchr(h + i, '\n', hlen - i);
		size_t end = eol ? (size_t)(eol - h) + 1 : hlen;

		/* a field starts at a line that does not begin with WSP */
		if (h[i] != ' ' && h[i] != '\t' && end - i > nl &&
		    strncasecmp(h + i, name, nl) == 0) {
			size_t k = i + nl;

			while (k < end && (h[k] == ' ' || h[k] == '\t'))
				k++;
			if (k < end && h[k] == ':')
				return 1;
		}
		i = end;
	}
	return 0;
}

void
hdr_fold(struct buf *out, const char *name, const char *value)
{
	size_t col = strlen(name) + 1;
	const char *p = value;
	int first = 1;

	buf_append(out, name, strlen(name));
	buf_append(out, ":", 1);
	while (*p) {
		const char *sp = strchr(p, ' ');
		size_t wl = sp ? (size_t)(sp - p) : strlen(p);

		if (wl > 0) {
			if (!first && col + 1 + wl > HDR_FOLD_COLS) {
				buf_append(out, "\r\n", 2);
				col = 0;
			}
			buf_append(out, " ", 1);
			buf_append(out, p, wl);
			col += 1 + wl;
			first = 0;
		}
		p += wl;
		while (*p == ' ')
			p++;
	}
	buf_append(out, "\r\n", 2);
}

void
hdr_date(char *out, size_t len, time_t t)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof tm);
	snprintf(out, len, "%s, %02d %s %04d %02d:%02d:%02d +0000",
	    days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
	    tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void
hdr_message_id(char *out, size_t len, uint64_t now_ms, const unsigned char rnd[16],
    const char *domain)
{
	char t[16], hex[33];
	size_t n = 0;

	do {
		t[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[now_ms % 36];
		now_ms /= 36;
	} while (now_ms > 0 && n < sizeof t - 1);
	for (size_t i = 0; i < n / 2; i++) {
		char c = t[i];
		t[i] = t[n - 1 - i];
		t[n - 1 - i] = c;
	}
	t[n] = '\0';
	for (size_t i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
	snprintf(out, len, "<%s.%s@%s>", t, hex,
	    domain != NULL && domain[0] != '\0' ? domain : "localhost");
}

void
hdr_body_lines(struct buf *out, const char *headers, size_t hlen, const char *domain,
    time_t now, uint64_t now_ms, const unsigned char rnd[16])
{
	char v[400];

	if (!hdr_present(headers, hlen, "Message-ID")) {
		hdr_message_id(v, sizeof v, now_ms, rnd, domain);
		hdr_fold(out, "Message-ID", v);
	}
	if (!hdr_present(headers, hlen, "Date")) {
		hdr_date(v, sizeof v, now);
		hdr_fold(out, "Date", v);
	}
}

/* One Feedback-ID part: printable ASCII but ':' kept, the rest '_'. */
static void
feedback_part(struct buf *b, const char *s)
{
	for (size_t i = 0; s != NULL && s[i] != '\0' && i < HDR_FEEDBACK_PART_MAX; i++) {
		unsigned char c = (unsigned char)s[i];
		char o = c > 0x20 && c < 0x7f && c != ':' ? (char)c : '_';

		buf_append(b, &o, 1);
	}
}

void
hdr_job_lines(struct buf *out, const char *headers, size_t hlen, const struct hdr_job *in)
{
	int url = in->unsub_url != NULL && in->unsub_url[0] != '\0';
	int mailto = in->unsub_mailto != NULL && in->unsub_mailto[0] != '\0';

	if ((url || mailto) && !hdr_present(headers, hlen, "List-Unsubscribe")) {
		struct buf v = { 0 };

		/* mailto first: RFC 2369 lists in order of preference, and
		 * a client without One-Click support prefers mail */
		if (mailto)
			buf_appendf(&v, "<%s>", in->unsub_mailto);
		if (url)
			buf_appendf(&v, "%s<%s>", mailto ? ", " : "", in->unsub_url);
		buf_append(&v, "", 1);
		hdr_fold(out, "List-Unsubscribe", v.data);
		buf_free(&v);
		/* RFC 8058 3.1: One-Click needs an https URI in List-Unsubscribe */
		if (url && !hdr_present(headers, hlen, "List-Unsubscribe-Post"))
			hdr_fold(out, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
	}
	if (!hdr_present(headers, hlen, "Feedback-ID")) {
		struct buf v = { 0 };

		if (in->feedback_id != NULL && in->feedback_id[0] != '\0') {
			buf_append(&v, in->feedback_id, strlen(in->feedback_id));
		} else {
			feedback_part(&v, in->campaign);
			buf_append(&v, ":", 1);
			feedback_part(&v, in->tenant);
			buf_append(&v, ":", 1);
			feedback_part(&v, in->pool);
			buf_append(&v, ":", 1);
			feedback_part(&v, in->sender);
		}
		buf_append(&v, "", 1);
		hdr_fold(out, "Feedback-ID", v.data);
		buf_free(&v);
	}
}

static void
pct_encode(struct buf *b, const char *s)
{
	for (; s != NULL && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~')
			buf_append(b, s, 1);
		else
			buf_appendf(b, "%%%02X", c);
	}
}

char *
hdr_expand(const char *tmpl, const struct hdr_vars *v)
{
	static const struct { const char *name; size_t off; } names[] = {
		{ "{id}", offsetof(struct hdr_vars, id) },
		{ "{to}", offsetof(struct hdr_vars, to) },
		{ "{campaign}", offsetof(struct hdr_vars, campaign) },
		{ "{tenant}", offsetof(struct hdr_vars, tenant) },
		{ "{pool}", offsetof(struct hdr_vars, pool) },
	};
	struct buf b = { 0 };

	for (const char *p = tmpl; *p;) {
		size_t i;

		for (i = 0; i < sizeof names / sizeof names[0]; i++) {
			size_t nl = strlen(names[i].name);

			if (strncmp(p, names[i].name, nl) == 0) {
				pct_encode(&b, *(const char *const *)((const char *)v + names[i].off));
				p += nl;
				break;
			}
		}
		if (i == sizeof names / sizeof names[0])
			buf_append(&b, p++, 1);
		if (b.len > HDR_URI_MAX) {
			buf_free(&b);
			return NULL;
		}
	}
	buf_append(&b, "", 1);
	return b.data;
}
