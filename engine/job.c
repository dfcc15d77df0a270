/*
 * job.c - decoding and validating jobs; job ids and envelope senders.
 *
 * Pure: field/value pairs in, a struct job out. Every field comes from
 * Redis and is hostile: lengths are explicit (values may hold NULs), and
 * nothing from a job reaches the wire without passing job_check_address()
 * or the id check (no CR/LF can ever be injected into an SMTP command or
 * a header).
 *
 * Recipients: the domain is turned into its A-label form with libidn2
 * (IDNA 2008 with UTS #46 mapping, non-transitional), one label at a time
 * so that an ASCII label is never judged by IDNA's stricter rules; DNS
 * and the destination key use that form, RCPT TO uses it too unless the
 * local part itself is UTF-8 (then the address goes as given, under
 * SMTPUTF8). Address literals are refused: a producer must not be able to
 * aim the engine at an arbitrary IP address.
 *
 * Bodies: an inline message larger than smtp.max_message_size makes the
 * job invalid; a msg_ref must name a key under PREFIXmsg: so that a job
 * cannot mail out an arbitrary Redis key.
 */
#include "job.h"
#include "config.h"
#include "headers.h"
#include "msg.h"
#include "util.h"

#include <ctype.h>
#include <idn2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* smtp.max_message_size when there is no config (unit tests, tools). */
#define JOB_DEFAULT_MAX_MESSAGE	(50ull << 20)

static const char *const status_names[] = {
	[JOB_DELIVERED] = "delivered",
	[JOB_BOUNCED] = "bounced",
	[JOB_EXPIRED] = "expired",
	[JOB_SUPPRESSED] = "suppressed",
	[JOB_FAILED] = "failed",
	[JOB_DEFERRED] = "deferred",
	[JOB_COMPLAINED] = "complained",
};

const char *
job_status_name(enum job_status s)
{
	return status_names[s];
}

int
job_status_final(enum job_status s)
{
	return s != JOB_DEFERRED && s != JOB_COMPLAINED;
}

static const char *const priority_names[JOB_PRIO__N] = {
	[JOB_PRIO_NORMAL] = "normal",
	[JOB_PRIO_HIGH] = "high",
	[JOB_PRIO_LOW] = "low",
};

const char *
job_priority_name(enum job_priority p)
{
	return (unsigned)p < JOB_PRIO__N ? priority_names[p] : "normal";
}

unsigned
job_priority_rank(enum job_priority p)
{
	switch (p) {
	case JOB_PRIO_HIGH: return 0;
	case JOB_PRIO_LOW: return 2;
	default: return 1;
	}
}

const char *
job_entry_id(const struct job *j)
{
	size_t pl = sizeof JOB_HIGH_KEY_PREFIX - 1;

	if (j->origin == JOB_FROM_HIGH && strncmp(j->key, JOB_HIGH_KEY_PREFIX, pl) == 0)
		return j->key + pl;
	return j->key;
}

/*
 * priority_parse - `priority`: high, normal or low in any case; empty is
 * normal. 0, or -1 for anything else.
 */
static int
priority_parse(const char *v, size_t vl, enum job_priority *p)
{
	for (unsigned i = 0; i < JOB_PRIO__N; i++)
		if (vl == strlen(priority_names[i]) && strncasecmp(v, priority_names[i], vl) == 0) {
			*p = (enum job_priority)i;
			return 0;
		}
	if (vl == 0) {
		*p = JOB_PRIO_NORMAL;
		return 0;
	}
	return -1;
}

static int
domain_ok(const char *d, size_t len)
{
	size_t label = 0;
	int dots = 0;

	if (len == 0 || len > 253)
		return 0;
	if (d[0] == '[')	/* address literal: [1.2.3.4] */
		return len > 2 && d[len - 1] == ']';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			dots++;
			continue;
		}
		if (!(isalnum(c) || c == '-' || c == '_' || c >= 0x80))
			return 0;
		if (++label > 63)
			return 0;
	}
	/* A trailing dot is allowed ("example.com."); an empty label is not. */
	if (label == 0 && d[len - 1] != '.')
		return 0;
	return dots > 0 || len == 0 ? 1 : 0;
}

int
job_check_address(const char *s, size_t len, const char **why)
{
	const char *at = NULL;

	*why = NULL;
	if (len == 0) {
		*why = "empty address";
		return -1;
	}
	if (len > 254) {
		*why = "address longer than 254 bytes";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r' || c == '\n') {
			*why = "CR or LF in address";
			return -1;
		}
		if (c < 0x20 || c == 0x7f || c == ' ' || c == '<' || c == '>' ||
		    c == '\\' || c == ',' || c == ';' || c == '"' || c == '(' || c == ')') {
			*why = "forbidden character in address";
			return -1;
		}
		if (c == '@') {
			/* Quoted local parts ("a@b"@c) are not supported: one '@'. */
			if (at != NULL) {
				*why = "more than one '@' in address";
				return -1;
			}
			at = s + i;
		}
	}
	if (at == NULL) {
		*why = "no '@' in address";
		return -1;
	}
	if (at == s || at - s > 64) {
		*why = "bad local part";
		return -1;
	}
	if (!domain_ok(at + 1, len - (size_t)(at + 1 - s))) {
		*why = "bad domain";
		return -1;
	}
	return 0;
}

static char *
dup_field(const char *v, size_t len)
{
	return xstrndup(v, len);
}

static int
has_nul(const char *v, size_t len)
{
	return memchr(v, '\0', len) != NULL;
}

static int
id_ok(const char *v, size_t len)
{
	if (len == 0 || len > 200)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c < 0x21 || c == 0x7f)
			return 0;
	}
	return 1;
}

/* Keep the first error: it is the one the caller must fix first.
 * Returns -1 for the callers' convenience. */
static int
set_error(struct job *j, const char *what, const char *detail)
{
	if (j->error == NULL)
		j->error = detail ? xasprintf("%s: %s", what, detail) : xstrdup(what);
	return -1;
}

static int
is_ascii(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 0;
	return 1;
}

/* utf8_valid - well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
static int
utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	while (p < end) {
		unsigned c = *p++;
		unsigned n, cp;

		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1; cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2; cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3; cp = c & 0x07;
		} else {
			return 0;
		}
		if ((size_t)(end - p) < n)
			return 0;
		for (unsigned k = 0; k < n; k++, p++) {
			if ((*p & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (*p & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return 0;
	}
	return 1;
}

/*
 * domain_to_ascii - the A-label form of a domain (without a trailing dot),
 * lower case, malloc'd; NULL with the reason in why if a label cannot be
 * encoded. ASCII labels are only lower-cased.
 */
static char *
domain_to_ascii(const char *d, size_t len, char *why, size_t whylen)
{
	struct buf b = { 0 };
	size_t start = 0;

	if (len > 0 && d[len - 1] == '.')
		len--;
	while (start < len) {
		const char *dot = memchr(d + start, '.', len - start);
		size_t end = dot ? (size_t)(dot - d) : len;
		size_t ll = end - start;

		if (b.len > 0)
			buf_append(&b, ".", 1);
		if (is_ascii(d + start, ll)) {
			for (size_t i = start; i < end; i++) {
				char c = (char)tolower((unsigned char)d[i]);
				buf_append(&b, &c, 1);
			}
		} else {
			char *label = xstrndup(d + start, ll), *out = NULL;
			int rc = -1;

			if (utf8_valid(label, ll))
				rc = idn2_to_ascii_8z(label, &out,
				    IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
			if (rc != IDN2_OK || out == NULL || out[0] == '\0' ||
			    strlen(out) > 63 || !is_ascii(out, strlen(out))) {
				snprintf(why, whylen, "label '%s' cannot be encoded as an "
				    "IDNA A-label (%s)", label, rc == -1 ?
				    "not valid UTF-8" : rc != IDN2_OK ? idn2_strerror(rc) :
				    "result too long");
				/* the label went through utf8_valid() or not:
				 * keep the reason printable either way */
				for (char *p = why; *p; p++)
					if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f ||
					    (rc == -1 && (unsigned char)*p >= 0x80))
						*p = '?';
				idn2_free(out);
				free(label);
				buf_free(&b);
				return NULL;
			}
			str_lower(out);
			buf_append(&b, out, strlen(out));
			idn2_free(out);
			free(label);
		}
		start = end + 1;
	}
	if (b.len == 0 || b.len > 253) {
		snprintf(why, whylen, "domain longer than 253 bytes in A-label form");
		buf_free(&b);
		return NULL;
	}
	buf_append(&b, "", 1);
	return b.data;
}

/*
 * recipient_forms - fill domain_ascii, domain and rcpt for the valid
 * address j->to; 0, or -1 with the job's error set.
 */
static int
recipient_forms(struct job *j)
{
	const char *at = strrchr(j->to, '@');
	const char *dom = at + 1;
	size_t local_len = (size_t)(at - j->to), dlen = strlen(dom);
	char why[400];

	/* "example.com." and "example.com" are one destination, and RCPT TO
	 * never carries the root dot. */
	if (dlen > 1 && dom[dlen - 1] == '.')
		dlen--;

	if (dom[0] == '[') {
		set_error(j, "address literals are not accepted", dom);
		return -1;
	}
	if (!is_ascii(j->to, local_len) && !utf8_valid(j->to, local_len)) {
		set_error(j, "malformed recipient address", "local part is not valid UTF-8");
		return -1;
	}
	j->domain_ascii = domain_to_ascii(dom, dlen, why, sizeof why);
	if (j->domain_ascii == NULL) {
		set_error(j, "recipient domain is not a valid internationalised domain name",
		    why);
		return -1;
	}
	j->domain = j->domain_ascii;
	j->needs_smtputf8 = !is_ascii(j->to, local_len);
	if (is_ascii(dom, dlen))
		j->rcpt = xasprintf("%.*s@%.*s", (int)local_len, j->to, (int)dlen, dom);
	else
		j->rcpt = xasprintf("%.*s@%s", (int)local_len, j->to, j->domain_ascii);
	/* The suppression key: every spelling of one mailbox (upper case,
	 * U-label or A-label domain, a root dot) is one key. */
	free(j->to_lc);
	j->to_lc = xasprintf("%.*s@%s", (int)local_len, j->to, j->domain_ascii);
	str_lower(j->to_lc);
	return 0;
}

/*
 * sender_forms - an internationalised sender domain goes out as its
 * A-label (no SMTPUTF8 needed for it); only a UTF-8 local part needs
 * SMTPUTF8. An unencodable domain fails the job: the producer's fault,
 * not any recipient's.
 */
static void
sender_forms(struct job *j)
{
	const char *at = strrchr(j->from, '@');
	size_t local_len, dlen;
	char why[400], *ascii;

	if (at == NULL || j->from[0] == '\0')
		return;
	local_len = (size_t)(at - j->from);
	dlen = strlen(at + 1);
	if (at[1] == '[') {
		set_error(j, "sender address literals are not accepted", at + 1);
		return;
	}
	if (!is_ascii(j->from, local_len) && !utf8_valid(j->from, local_len)) {
		set_error(j, "malformed sender address", "local part is not valid UTF-8");
		return;
	}
	if (is_ascii(at + 1, dlen))
		return;
	ascii = domain_to_ascii(at + 1, dlen, why, sizeof why);
	if (ascii == NULL) {
		set_error(j, "sender domain is not a valid internationalised domain name", why);
		return;
	}
	{
		char *f = xasprintf("%.*s@%s", (int)local_len, j->from, ascii);
		free(j->from);
		j->from = f;
	}
	free(ascii);
}

static uint64_t
max_message(const struct config *cfg)
{
	return cfg && cfg->max_message_size ? cfg->max_message_size : JOB_DEFAULT_MAX_MESSAGE;
}

int
job_body_too_large(const struct job *j, size_t len, const struct config *cfg,
    char *why, size_t whylen)
{
	uint64_t max = max_message(cfg);

	if ((uint64_t)len <= max)
		return 0;
	snprintf(why, whylen, "message size %zu bytes exceeds the limit of %llu bytes "
	    "(smtp.max_message_size)", len, (unsigned long long)max);
	return 1;
}

/*
 * header_chars - what every value that goes into a header must be:
 * 1..max bytes of printable ASCII, no space, no '<' '>' '"' (which would
 * end the <URI> of a List-Unsubscribe early). 0, or -1 with *why.
 */
static int
header_chars(const char *v, size_t len, size_t max, const char **why)
{
	if (len == 0) {
		*why = "empty";
		return -1;
	}
	if (len > max) {
		*why = "too long";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '\r' || c == '\n' || c == '\0') {
			*why = "CR, LF or NUL in value";
			return -1;
		}
		if (c < 0x20 || c == 0x7f) {
			*why = "control character in value";
			return -1;
		}
		if (c >= 0x80) {
			*why = "8-bit byte in value (percent-encode it)";
			return -1;
		}
		if (c == ' ' || c == '<' || c == '>' || c == '"') {
			*why = "space, '<', '>' or '\"' in value (percent-encode it)";
			return -1;
		}
	}
	return 0;
}

int
job_check_unsub_url(const char *v, size_t len, const char **why)
{
	if (header_chars(v, len, HDR_URI_MAX, why) != 0)
		return -1;
	if (len < 9 || strncasecmp(v, "https://", 8) != 0) {
		*why = "not an https: URL (RFC 8058 One-Click needs https)";
		return -1;
	}
	if (v[8] == '/' || v[8] == '?' || v[8] == '#') {
		*why = "no host in URL";
		return -1;
	}
	return 0;
}

int
job_check_unsub_mailto(const char *v, size_t len, const char **why)
{
	const char *q;
	size_t alen;

	if (header_chars(v, len, HDR_URI_MAX, why) != 0)
		return -1;
	if (len < 8 || strncasecmp(v, "mailto:", 7) != 0) {
		*why = "not a mailto: URI";
		return -1;
	}
	q = memchr(v + 7, '?', len - 7);
	alen = q ? (size_t)(q - (v + 7)) : len - 7;
	if (job_check_address(v + 7, alen, why) != 0)
		return -1;
	return 0;
}

int
job_check_feedback_id(const char *v, size_t len, const char **why)
{
	return header_chars(v, len, HDR_FEEDBACK_ID_MAX, why);
}

/* A field given twice: the last one counts (as for to, from...). */
static void
replace_field(char **dst, const char *v, size_t vl)
{
	free(*dst);
	*dst = dup_field(v, vl);
}

struct job *
job_decode(const char *const *fields, const size_t *flens,
    const char *const *values, const size_t *vlens, size_t n,
    const char *key, enum job_origin origin, const struct config *cfg,
    uint64_t now_ms)
{
	struct job *j = xcalloc(1, sizeof *j);
	const char *to = NULL, *from = NULL, *msg = NULL, *ref = NULL, *id = NULL;
	size_t to_len = 0, from_len = 0, msg_len = 0, ref_len = 0, id_len = 0;
	const char *why;
	int have_from = 0;

	j->origin = origin;
	j->key = xstrdup(key);
	for (size_t i = 0; i < n; i++) {
		const char *f = fields[i], *v = values[i];
		size_t fl = flens[i], vl = vlens[i];

#define IS(name) (fl == sizeof(name) - 1 && memcmp(f, name, fl) == 0)
		if (IS("to")) {
			to = v; to_len = vl;
		} else if (IS("from")) {
			from = v; from_len = vl; have_from = 1;
		} else if (IS("msg")) {
			msg = v; msg_len = vl;
		} else if (IS("msg_ref")) {
			ref = v; ref_len = vl;
		} else if (IS("id")) {
			id = v; id_len = vl;
		} else if (IS("pool")) {
			if (vl > 0 && vl < 128 && !has_nul(v, vl))
				replace_field(&j->pool, v, vl);
			else if (vl > 0)
				set_error(j, "invalid pool name", NULL);
		} else if (IS("campaign")) {
			if (vl > 0 && vl < 256 && !has_nul(v, vl))
				replace_field(&j->campaign, v, vl);
		} else if (IS("tenant")) {
			if (vl > 0 && vl < 256 && !has_nul(v, vl))
				replace_field(&j->tenant, v, vl);
		} else if (IS("unsubscribe_url") || IS("unsubscribe_mailto") ||
		    IS("feedback_id")) {
			int (*chk)(const char *, size_t, const char **) =
			    IS("unsubscribe_url") ? job_check_unsub_url :
			    IS("unsubscribe_mailto") ? job_check_unsub_mailto :
			    job_check_feedback_id;
			char **dst = IS("unsubscribe_url") ? &j->unsub_url :
			    IS("unsubscribe_mailto") ? &j->unsub_mailto : &j->feedback_id;

			if (vl == 0)
				continue;	/* empty: absent, as for campaign */
			if (chk(v, vl, &why) != 0) {
				char *what = xasprintf("invalid %.*s", (int)fl, f);
				set_error(j, what, why);
				free(what);
			} else {
				replace_field(dst, v, vl);
			}
		} else if (IS("expires_at")) {
			char tmp[32], *end;
			unsigned long long t;
			if (vl == 0 || vl >= sizeof tmp) {
				set_error(j, "invalid expires_at (unix seconds expected)", NULL);
				continue;
			}
			memcpy(tmp, v, vl);
			tmp[vl] = '\0';
			t = strtoull(tmp, &end, 10);
			if (*end != '\0' || t == 0)
				set_error(j, "invalid expires_at (unix seconds expected)", NULL);
			else
				j->expires_at_ms = (uint64_t)t * 1000;
		} else if (IS("last_reply")) {
			if (vl > 0 && vl < 512 && !has_nul(v, vl))
				replace_field(&j->last_reply, v, vl);
		} else if (IS("last_code")) {
			if (vl == 3)
				j->last_code = (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
		} else if (IS("last_enh")) {
			if (vl > 0 && vl < sizeof j->last_enh) {
				memcpy(j->last_enh, v, vl);
				j->last_enh[vl] = '\0';
			}
		} else if (IS("last_class")) {
			if (vl > 0 && vl < 64 && !has_nul(v, vl))
				replace_field(&j->last_class, v, vl);
		} else if (IS("priority")) {
			if (priority_parse(v, vl, &j->priority) != 0) {
				char shown[40];
				size_t k = 0;
				/* echo a short printable value only */
				for (; k < vl && k < 32; k++)
					shown[k] = (unsigned char)v[k] < 0x21 ||
					    (unsigned char)v[k] >= 0x7f ? '?' : v[k];
				shown[k] = '\0';
				set_error(j, "invalid priority (high, normal or low expected)",
				    vl <= 32 ? shown : NULL);
			}
		} else if (IS("attempts")) {
			char tmp[16];
			if (vl > 0 && vl < sizeof tmp) {
				memcpy(tmp, v, vl);
				tmp[vl] = '\0';
				j->attempts = (unsigned)strtoul(tmp, NULL, 10);
			}
		}
#undef IS
	}

	/* The high stream's jobs are high, whatever they say. */
	if (origin == JOB_FROM_HIGH)
		j->priority = JOB_PRIO_HIGH;

	/* The id first, so that every later error event carries it. */
	if (id != NULL && id_ok(id, id_len))
		j->id = dup_field(id, id_len);
	else {
		j->id = xstrdup(job_entry_id(j));
		if (id != NULL)
			set_error(j, "invalid id (1-200 printable characters, no spaces)", NULL);
	}

	if (to == NULL) {
		set_error(j, "missing field: to", NULL);
	} else if (job_check_address(to, to_len, &why) != 0) {
		j->to = xstrdup("");
		set_error(j, "malformed recipient address", why);
	} else {
		j->to = dup_field(to, to_len);
		j->to_lc = str_lower(xstrdup(j->to));
		recipient_forms(j);
	}
	if (j->to == NULL)
		j->to = xstrdup("");

	if (!have_from) {
		set_error(j, "missing field: from", NULL);
		j->from = xstrdup("");
	} else if (from_len > 0 && job_check_address(from, from_len, &why) != 0) {
		set_error(j, "malformed sender address", why);
		j->from = xstrdup("");
	} else {
		j->from = dup_field(from, from_len);
		sender_forms(j);
	}

	if (msg != NULL && ref != NULL) {
		set_error(j, "both msg and msg_ref given", NULL);
	} else if (msg != NULL) {
		char big[200];

		if (msg_len == 0)
			set_error(j, "empty message (field msg)", NULL);
		else if (job_body_too_large(j, msg_len, cfg, big, sizeof big))
			set_error(j, big, NULL);
		else {
			j->raw = xmalloc(msg_len);
			memcpy(j->raw, msg, msg_len);
			j->raw_len = msg_len;
		}
	} else if (ref != NULL) {
		const char *prefix = cfg && cfg->prefix ? cfg->prefix : "volley:";
		size_t pl = strlen(prefix);

		if (ref_len == 0 || ref_len > 512 || has_nul(ref, ref_len))
			set_error(j, "invalid msg_ref", NULL);
		else if (ref_len <= pl + 4 || memcmp(ref, prefix, pl) != 0 ||
		    memcmp(ref + pl, "msg:", 4) != 0) {
			char *e = xasprintf("msg_ref must name a key under %smsg:", prefix);
			set_error(j, e, NULL);
			free(e);
		} else
			j->msg_ref = dup_field(ref, ref_len);
	} else {
		set_error(j, "no message: neither msg nor msg_ref given", NULL);
	}

	if (j->expires_at_ms == 0)
		j->expires_at_ms = now_ms + (cfg ? cfg->max_age_ms : 2ULL * 86400 * 1000);
	return j;
}

void
job_free(struct job *j)
{
	if (j == NULL)
		return;
	free(j->key);
	free(j->id);
	free(j->to);
	free(j->to_lc);
	free(j->domain_ascii);
	free(j->rcpt);
	free(j->from);
	free(j->pool);
	free(j->retry_pool);
	free(j->campaign);
	free(j->tenant);
	free(j->unsub_url);
	free(j->unsub_mailto);
	free(j->feedback_id);
	free(j->hdrs);
	free(j->dkim_sig);
	free(j->msg_ref);
	free(j->raw);
	free(j->error);
	free(j->last_reply);
	free(j->last_class);
	if (j->body)
		msg_body_unref(j->body);
	free(j);
}

char *
job_id_header(const struct job *j, const char *header_name, size_t *len)
{
	char *h = xasprintf("%s: %s\r\n", header_name, j->id);

	*len = strlen(h);
	return h;
}

char *
job_envelope_from(const struct job *j, const char *return_path)
{
	const char *p;
	struct buf b = { 0 };

	if (return_path == NULL || *return_path == '\0' || j->from[0] == '\0')
		return xstrdup(j->from);
	/* VERP: the id goes into the local part; keep only safe characters. */
	for (p = return_path; *p; p++) {
		if (strncmp(p, "{id}", 4) == 0) {
			for (const char *q = j->id; *q; q++) {
				unsigned char c = (unsigned char)*q;
				buf_append(&b, isalnum(c) || c == '-' || c == '_' || c == '.' ? q : "=", 1);
			}
			p += 3;
		} else {
			buf_append(&b, p, 1);
		}
	}
	return b.data ? b.data : xstrdup("");
}
