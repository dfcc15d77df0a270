/*
 * dane.c - TLSA record sets and the policy they give an MX host (API and
 * contract: dane.h, RFC 7672). Pure: every byte of a record came from the
 * network and is checked before it is kept.
 *
 * A set is one allocation (records, then their data back to back) and
 * refcounted: every target of the host, the DNS cache entry and the
 * scheduler's MX sets share it.
 */
#include "dane.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {
	[DANE_OFF] = "off",
	[DANE_INSECURE] = "insecure",
	[DANE_NO_TLSA] = "no-tlsa",
	[DANE_TLSA] = "tlsa",
};

const char *
dane_state_name(enum dane_state s)
{
	if ((unsigned)s >= sizeof state_names / sizeof state_names[0])
		return "unknown";
	return state_names[s];
}

struct dane_set *
dane_set_new(size_t cap)
{
	struct dane_set *s = xcalloc(1, sizeof *s + cap);

	s->refs = 1;
	s->cap = cap;
	s->digest = 2166136261u;
	return s;
}

int
dane_set_add(struct dane_set *s, const unsigned char *rdata, size_t rdlen)
{
	struct dane_tlsa *r;
	size_t len;

	s->seen++;
	if (rdata == NULL || rdlen < 4 || rdlen - 3 > DANE_MAX_DATA)
		return 0;
	len = rdlen - 3;
	if (s->n >= DANE_MAX_RECORDS || len > s->cap - s->datalen)
		return 0;
	r = &s->r[s->n];
	r->usage = rdata[0];
	r->selector = rdata[1];
	r->mtype = rdata[2];
	r->len = (uint16_t)len;
	memcpy(s->data + s->datalen, rdata + 3, len);
	r->data = s->data + s->datalen;
	s->datalen += len;
	for (size_t i = 0; i < rdlen; i++) {	/* FNV-1a over the rdata */
		s->digest ^= rdata[i];
		s->digest *= 16777619u;
	}
	s->n++;
	if (dane_usable(r))
		s->nusable++;
	return 1;
}

struct dane_set *
dane_ref(struct dane_set *s)
{
	if (s)
		s->refs++;
	return s;
}

void
dane_unref(struct dane_set *s)
{
	if (s && --s->refs == 0)
		free(s);
}

int
dane_usable(const struct dane_tlsa *r)
{
	if (r->usage != 2 && r->usage != 3)
		return 0;	/* PKIX-TA(0), PKIX-EE(1): not for SMTP */
	if (r->selector > 1)
		return 0;
	switch (r->mtype) {
	case 0:
		return r->len > 0;
	case 1:
		return r->len == 32;
	case 2:
		return r->len == 64;
	default:
		return 0;
	}
}

enum tls_policy
dane_policy(enum tls_policy configured, const struct dane_set *s)
{
	if (s == NULL || s->seen == 0 || configured == TLS_POLICY_DISABLED)
		return configured;
	if (s->nusable > 0)
		return TLS_POLICY_DANE;
	return configured == TLS_POLICY_VERIFY ? TLS_POLICY_VERIFY : TLS_POLICY_REQUIRED;
}

const char *
dane_to_text(const struct dane_set *s, char *buf, size_t n)
{
	size_t len;

	if (s == NULL) {
		snprintf(buf, n, "none");
		return buf;
	}
	snprintf(buf, n, "%zu usable of %zu (", s->nusable, s->seen);
	len = strlen(buf);
	for (size_t i = 0; i < s->n && len + 12 < n; i++) {
		snprintf(buf + len, n - len, "%s%u %u %u", i ? ", " : "", s->r[i].usage,
		    s->r[i].selector, s->r[i].mtype);
		len = strlen(buf);
	}
	if (len + 2 < n)
		snprintf(buf + len, n - len, ")");
	return buf;
}
