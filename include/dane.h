/*
 * dane.h - DANE for SMTP (RFC 7672): the TLSA records of one MX host and
 * the TLS policy they give it. Pure: no DNS, no OpenSSL, no clock.
 *
 * dns.c builds a struct dane_set from an authenticated TLSA answer
 * (dns_parse_tlsa); the set travels, refcounted, with every target of
 * that host (dns_target.tlsa) through the cache and the scheduler's MX
 * sets to the session, which asks dane_policy() what TLS it must use and
 * hands the set to tls.c for verification.
 *
 * Usable records (RFC 7672 3.1): usage DANE-TA(2) or DANE-EE(3), selector
 * Cert(0) or SPKI(1), matching type Full(0), SHA2-256(1) or SHA2-512(2),
 * with data of the length the matching type calls for. PKIX-TA(0) and
 * PKIX-EE(1) are unusable for SMTP and ignored, as is anything unknown.
 *
 * dane_policy: a host with at least one usable record gets
 * TLS_POLICY_DANE (TLS mandatory, the peer authenticated by its TLSA
 * records); a host whose records are all unusable gets mandatory but
 * unauthenticated TLS (TLS_POLICY_REQUIRED, or VERIFY if that was
 * configured: RFC 7672 2.2); no records: the configured policy. An
 * explicit `tls = disabled` is the operator's word and stays.
 */
#ifndef VOLLEY_DANE_H
#define VOLLEY_DANE_H

#include <stddef.h>
#include <stdint.h>

#include "tls.h"

#define DANE_MAX_RECORDS	16	/* records kept per host */
#define DANE_MAX_DATA		4096	/* bytes of association data per record */

/* What DNSSEC said about a target (dns_target.dane). */
enum dane_state {
	DANE_OFF = 0,		/* dns.dnssec off, or not looked up (smarthost) */
	DANE_INSECURE,		/* MX, address or TLSA answer not authenticated */
	DANE_NO_TLSA,		/* authenticated: the host has no TLSA records */
	DANE_TLSA,		/* authenticated TLSA records (dns_target.tlsa) */
};
const char *dane_state_name(enum dane_state s);

struct dane_tlsa {
	uint8_t usage, selector, mtype;
	uint16_t len;
	const unsigned char *data;	/* inside the set */
};

struct dane_set {
	unsigned refs;
	size_t n;		/* records kept in r[] */
	size_t seen;		/* TLSA records in the answer (kept or not) */
	size_t nusable;		/* of r[], usable ones */
	uint32_t digest;	/* of every kept record: part of TLS cache keys */
	struct dane_tlsa r[DANE_MAX_RECORDS];
	size_t datalen, cap;	/* bytes of data used, allocated */
	unsigned char data[];	/* the records' data, back to back */
};

/* dane_set_new - an empty set with room for cap data bytes (refs 1). */
struct dane_set *dane_set_new(size_t cap);
/*
 * dane_set_add - one TLSA record from the wire: rdata of rdlen bytes
 * (usage, selector, mtype, data). Counted in seen; kept when well-formed
 * (at least one byte of data, at most DANE_MAX_DATA, room left) and the
 * set is not full. 1 kept, 0 not.
 */
int dane_set_add(struct dane_set *s, const unsigned char *rdata, size_t rdlen);
struct dane_set *dane_ref(struct dane_set *s);		/* NULL is fine */
void dane_unref(struct dane_set *s);			/* NULL is fine */
/* dane_usable - may this record authenticate an SMTP server (above)? */
int dane_usable(const struct dane_tlsa *r);
/* dane_policy - the policy for a host with these records (NULL: none). */
enum tls_policy dane_policy(enum tls_policy configured, const struct dane_set *s);
/* dane_to_text - "3 usable of 4 (3 1 1, 2 1 1, ...)" for logs. */
const char *dane_to_text(const struct dane_set *s, char *buf, size_t n);

#endif
