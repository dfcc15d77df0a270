/*
 * mtasts.c - MTA-STS (RFC 8461) parsing and MX matching (API: mtasts.h).
 * Pure functions over bounded input: every length comes from the caller,
 * nothing is read past it, nothing is allocated.
 */
#include "mtasts.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *
mtasts_mode_name(enum mtasts_mode m)
{
	switch (m) {
	case MTASTS_NONE: return "none";
	case MTASTS_TESTING: return "testing";
	case MTASTS_ENFORCE: return "enforce";
	}
	return "unknown";
}

static int
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* trim - [*b, *e) without leading and trailing spaces and tabs. */
static void
trim(const char **b, const char **e)
{
	while (*b < *e && is_wsp(**b))
		(*b)++;
	while (*e > *b && is_wsp((*e)[-1]))
		(*e)--;
}

static int
tok_is(const char *b, const char *e, const char *s)
{
	size_t n = strlen(s);

	return (size_t)(e - b) == n && memcmp(b, s, n) == 0;
}

int
mtasts_txt_parse(const char *txt, size_t n, char *id, size_t idsz)
{
	const char *p = txt, *end = txt + n;
	int first = 1, have_id = 0, tail = 0;

	if (idsz > 0)
		id[0] = '\0';
	if (n < 7 || memcmp(txt, "v=STSv1", 7) != 0)
		return 0;
	while (p <= end) {
		const char *b = p, *e = memchr(p, ';', (size_t)(end - p));

		if (e == NULL)
			e = end;
		p = e + 1;
		trim(&b, &e);
		if (first) {
			if (!tok_is(b, e, "v=STSv1"))
				return -1;	/* "v=STSv10", "v=STSv1x" */
			first = 0;
			continue;
		}
		if (b == e) {
			/* Only a trailing ";" may leave an empty field. */
			tail = 1;
			continue;
		}
		if (tail)
			return -1;
		if (e - b > 3 && memcmp(b, "id=", 3) == 0) {
			size_t len = (size_t)(e - b - 3);

			if (have_id)
				return -1;
			if (len > MTASTS_ID_MAX || len + 1 > idsz)
				return -1;
			for (size_t i = 0; i < len; i++)
				if (!isalnum((unsigned char)b[3 + i]))
					return -1;
			memcpy(id, b + 3, len);
			id[len] = '\0';
			have_id = 1;
			continue;
		}
		/* An extension field: name=value, printable, no spaces. */
		{
			const char *eq = memchr(b, '=', (size_t)(e - b));

			if (eq == NULL || eq == b || eq + 1 == e)
				return -1;
			for (const char *q = b; q < e; q++)
				if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
					return -1;
		}
	}
	return have_id ? 1 : -1;
}

/* host_ok - a host name (letters, digits, '-', '.'; labels 1..63). */
static int
host_ok(const char *h, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];

		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
	}
	return label > 0;
}

static int __attribute__((format(printf, 3, 4)))
perr(char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;

	if (errsz > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errsz, fmt, ap);
		va_end(ap);
	}
	return -1;
}

int
mtasts_parse(const char *buf, size_t n, struct mtasts_policy *pol, char *err, size_t errsz)
{
	const char *p = buf, *end = buf + n;
	int have_version = 0, have_mode = 0, have_age = 0;
	unsigned line = 0;

	memset(pol, 0, sizeof *pol);
	if (errsz > 0)
		err[0] = '\0';
	if (n > MTASTS_MAX_BODY)
		return perr(err, errsz, "policy larger than %d bytes", MTASTS_MAX_BODY);
	if (n > 0 && memchr(buf, '\0', n) != NULL)
		return perr(err, errsz, "NUL byte in the policy");
	while (p < end) {
		const char *b = p, *e = memchr(p, '\n', (size_t)(end - p)), *colon;
		size_t klen, vlen;
		const char *v;

		if (e == NULL)
			e = end;
		p = e + 1;
		line++;
		if (e > b && e[-1] == '\r')
			e--;
		trim(&b, &e);
		if (b == e)
			continue;	/* blank line (a final newline, trailing spaces) */
		if ((colon = memchr(b, ':', (size_t)(e - b))) == NULL)
			return perr(err, errsz, "line %u: no \":\"", line);
		klen = (size_t)(colon - b);
		v = colon + 1;
		{
			const char *ve = e;
			trim(&v, &ve);
			vlen = (size_t)(ve - v);
		}
		if (klen == 7 && memcmp(b, "version", 7) == 0) {
			if (have_version)
				return perr(err, errsz, "line %u: version repeated", line);
			if (vlen != 5 || memcmp(v, "STSv1", 5) != 0)
				return perr(err, errsz, "line %u: version is not STSv1", line);
			have_version = 1;
		} else if (klen == 4 && memcmp(b, "mode", 4) == 0) {
			if (have_mode)
				return perr(err, errsz, "line %u: mode repeated", line);
			if (vlen == 7 && memcmp(v, "enforce", 7) == 0)
				pol->mode = MTASTS_ENFORCE;
			else if (vlen == 7 && memcmp(v, "testing", 7) == 0)
				pol->mode = MTASTS_TESTING;
			else if (vlen == 4 && memcmp(v, "none", 4) == 0)
				pol->mode = MTASTS_NONE;
			else
				return perr(err, errsz, "line %u: unknown mode", line);
			have_mode = 1;
		} else if (klen == 7 && memcmp(b, "max_age", 7) == 0) {
			uint64_t age = 0;

			if (have_age)
				return perr(err, errsz, "line %u: max_age repeated", line);
			if (vlen == 0 || vlen > 10)
				return perr(err, errsz, "line %u: bad max_age", line);
			for (size_t i = 0; i < vlen; i++) {
				if (v[i] < '0' || v[i] > '9')
					return perr(err, errsz, "line %u: bad max_age", line);
				age = age * 10 + (uint64_t)(v[i] - '0');
			}
			pol->max_age = age > MTASTS_MAX_AGE_CAP ? MTASTS_MAX_AGE_CAP : (uint32_t)age;
			have_age = 1;
		} else if (klen == 2 && memcmp(b, "mx", 2) == 0) {
			const char *h = v;
			size_t hl = vlen;

			if (hl > 0 && h[hl - 1] == '.')
				hl--;
			if (hl > 2 && h[0] == '*' && h[1] == '.') {
				if (!host_ok(h + 2, hl - 2))
					return perr(err, errsz, "line %u: bad mx pattern", line);
			} else if (!host_ok(h, hl)) {
				return perr(err, errsz, "line %u: bad mx pattern", line);
			}
			if (pol->nmx < MTASTS_MAX_MX) {
				char *dst = pol->mx[pol->nmx++];

				memcpy(dst, h, hl);
				dst[hl] = '\0';
				for (char *q = dst; *q; q++)
					*q = (char)tolower((unsigned char)*q);
			}
		}
		/* Any other key: an extension, ignored (RFC 8461 3.2). */
	}
	if (!have_version)
		return perr(err, errsz, "no version");
	if (!have_mode)
		return perr(err, errsz, "no mode");
	if (!have_age)
		return perr(err, errsz, "no max_age");
	if (pol->mode != MTASTS_NONE && pol->nmx == 0)
		return perr(err, errsz, "mode %s without mx", mtasts_mode_name(pol->mode));
	return 0;
}

int
mtasts_mx_match(const struct mtasts_policy *pol, const char *host)
{
	char h[256];
	size_t n = host ? strlen(host) : 0;

	if (n > 0 && host[n - 1] == '.')
		n--;
	if (n == 0 || n >= sizeof h)
		return 0;
	for (size_t i = 0; i < n; i++)
		h[i] = (char)tolower((unsigned char)host[i]);
	h[n] = '\0';
	for (size_t i = 0; i < pol->nmx; i++) {
		const char *pat = pol->mx[i];

		if (pat[0] == '*' && pat[1] == '.') {
			/* One leftmost label: "*.example.com" matches
			 * "mx.example.com", not "a.b.example.com" nor
			 * "example.com". */
			const char *dot = strchr(h, '.');

			if (dot != NULL && dot > h && strcmp(dot + 1, pat + 2) == 0)
				return 1;
		} else if (strcmp(h, pat) == 0) {
			return 1;
		}
	}
	return 0;
}

const char *
mtasts_mx_text(const struct mtasts_policy *pol, char *buf, size_t n)
{
	size_t off = 0;

	if (n == 0)
		return buf;
	buf[0] = '\0';
	for (size_t i = 0; i < pol->nmx && off < n; i++) {
		int r = snprintf(buf + off, n - off, "%s%s", i ? ", " : "", pol->mx[i]);

		if (r < 0)
			break;
		off += (size_t)r;
	}
	return buf;
}

void
mtasts_keep(struct mtasts_kept *k, const struct mtasts_policy *p, uint64_t now)
{
	uint64_t age = (uint64_t)p->max_age * 1000;

	k->have = 1;
	k->pol = *p;
	k->expires = now + age;
	k->refresh_at = now + age / 2;
	k->retry_after = 0;
}

int
mtasts_in_force(const struct mtasts_kept *k, uint64_t now)
{
	return k->have && now < k->expires;
}

enum mtasts_step
mtasts_after_txt(const struct mtasts_kept *k, int txt, const char *id, uint64_t now)
{
	if (mtasts_in_force(k, now)) {
		if (txt == 1 && now >= k->retry_after &&
		    (strcmp(id, k->pol.id) != 0 || now >= k->refresh_at))
			return MTASTS_STEP_KEEP_REFRESH;
		return MTASTS_STEP_KEEP;
	}
	return txt == 1 ? MTASTS_STEP_FETCH : MTASTS_STEP_NONE;
}

int
mtasts_store_format(const struct mtasts_policy *p, uint64_t expires_ms, char *buf, size_t n)
{
	size_t off = 0;
	int r;

	r = snprintf(buf, n, "%s %llu version: STSv1\nmode: %s\nmax_age: %u\n", p->id,
	    (unsigned long long)expires_ms, mtasts_mode_name(p->mode), p->max_age);
	if (r < 0 || (size_t)r >= n)
		return -1;
	off = (size_t)r;
	for (size_t i = 0; i < p->nmx; i++) {
		r = snprintf(buf + off, n - off, "mx: %s\n", p->mx[i]);
		if (r < 0 || (size_t)r >= n - off)
			return -1;
		off += (size_t)r;
	}
	return (int)off;
}

int
mtasts_store_parse(const char *s, size_t n, struct mtasts_policy *p, uint64_t *expires_ms,
    char *err, size_t errsz)
{
	const char *sp, *q, *end = s + n;
	uint64_t x = 0;
	size_t idlen;

	memset(p, 0, sizeof *p);
	*expires_ms = 0;
	if (n > MTASTS_STORE_MAX)
		return perr(err, errsz, "stored policy too long");
	if ((sp = memchr(s, ' ', n)) == NULL)
		return perr(err, errsz, "no id");
	idlen = (size_t)(sp - s);
	if (idlen == 0 || idlen > MTASTS_ID_MAX)
		return perr(err, errsz, "bad id");
	for (size_t i = 0; i < idlen; i++)
		if (!isalnum((unsigned char)s[i]))
			return perr(err, errsz, "bad id");
	q = sp + 1;
	if (q == end || *q < '0' || *q > '9')
		return perr(err, errsz, "bad expiry");
	for (size_t digits = 0; q < end && *q >= '0' && *q <= '9'; q++) {
		if (++digits > 15)
			return perr(err, errsz, "bad expiry");
		x = x * 10 + (uint64_t)(*q - '0');
	}
	if (q == end || *q != ' ')
		return perr(err, errsz, "bad expiry");
	q++;
	if (mtasts_parse(q, (size_t)(end - q), p, err, errsz) < 0)
		return -1;
	memcpy(p->id, s, idlen);
	p->id[idlen] = '\0';
	*expires_ms = x;
	return 0;
}
