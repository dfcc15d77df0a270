/*
 * job.c - decoding and validating jobs; job ids and envelope senders.
 *
 * Pure: field/value pairs in, a struct job out. Every field comes from
 * Redis and is hostile: lengths are explicit (values may hold NULs), and
 * nothing from a job reaches the wire without passing job_check_address()
 * or the id check (no CR/LF can ever be injected into an SMTP command or
 * a header).
 */
#include "job.h"
#include "config.h"
#include "msg.h"
#include "util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

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

/* Keep the first error: it is the one the caller must fix first. */
static void
set_error(struct job *j, const char *what, const char *detail)
{
	if (j->error == NULL)
		j->error = detail ? xasprintf("%s: %s", what, detail) : xstrdup(what);
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
				j->pool = dup_field(v, vl);
			else if (vl > 0)
				set_error(j, "invalid pool name", NULL);
		} else if (IS("campaign")) {
			if (vl > 0 && vl < 256 && !has_nul(v, vl))
				j->campaign = dup_field(v, vl);
		} else if (IS("tenant")) {
			if (vl > 0 && vl < 256 && !has_nul(v, vl))
				j->tenant = dup_field(v, vl);
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
				j->last_reply = dup_field(v, vl);
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
				j->last_class = dup_field(v, vl);
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

	/* The id first, so that every later error event carries it. */
	if (id != NULL && id_ok(id, id_len))
		j->id = dup_field(id, id_len);
	else {
		j->id = xstrdup(key);
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
		j->domain = strrchr(j->to_lc, '@') + 1;
		/* "example.com." and "example.com" are one destination */
		size_t dl = strlen(j->domain);
		if (dl > 1 && j->domain[dl - 1] == '.')
			j->to_lc[strlen(j->to_lc) - 1] = '\0';
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
	}

	if (msg != NULL && ref != NULL) {
		set_error(j, "both msg and msg_ref given", NULL);
	} else if (msg != NULL) {
		if (msg_len == 0)
			set_error(j, "empty message (field msg)", NULL);
		else {
			j->raw = xmalloc(msg_len);
			memcpy(j->raw, msg, msg_len);
			j->raw_len = msg_len;
		}
	} else if (ref != NULL) {
		if (ref_len == 0 || ref_len > 512 || has_nul(ref, ref_len))
			set_error(j, "invalid msg_ref", NULL);
		else
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
	free(j->from);
	free(j->pool);
	free(j->campaign);
	free(j->tenant);
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
