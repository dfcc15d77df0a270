/*
 * dns.h - MX resolution with c-ares, driven by the io_uring loop.
 *
 * dns_query_mx(domain) resolves a recipient domain to an ordered list of
 * delivery addresses and calls back once (dns_on_mx style). Order: MX
 * preference ascending, random among equal preferences; each MX host's
 * addresses follow their host, its A records before its AAAA records. No
 * MX records but the domain exists -> implicit MX (the domain's own A and
 * AAAA records, RFC 5321 5.1). Null MX (RFC 7505, a single MX "." ) ->
 * DNS_NULLMX. NXDOMAIN -> DNS_NXDOMAIN. SERVFAIL, refused, time-outs ->
 * DNS_TEMPFAIL.
 *
 * Unless the config's dns_allow_private is set, addresses that are not
 * public (dns_addr_private) are left out; when that leaves none, the
 * result is DNS_TEMPFAIL and its error names the host, the refused address
 * and the setting that would allow it.
 *
 * Answers are cached by TTL (clamped by config dns_min/max_ttl); negative
 * answers (NXDOMAIN, null MX) are cached too, temporary failures are not.
 * Concurrent queries for the same domain are merged into one lookup.
 *
 * DANE (dns.dnssec = true; RFC 7672): every query asks for authenticated
 * data (the AD bit set in the query, RFC 6840 5.7) and the AD bit of each
 * answer is trusted: the configured resolver must validate DNSSEC and be
 * reached over a path nobody can tamper with (loopback). When the MX answer
 * (or, for an implicit MX, its authenticated denial) has AD, TLSA records
 * of _PORT._tcp.HOST are looked up for every host, in parallel with its
 * addresses; they are kept only when that answer has AD and every address
 * answer that gave the host's addresses did too. Each target then carries
 * its host's enum dane_state and, for DANE_TLSA, the records (dane.h). A
 * TLSA lookup that fails (SERVFAIL, time-out) for a host that needs one
 * leaves that host out: RFC 7672 2.2 forbids delivering to it without the
 * answer; when no host is left the result is DNS_TEMPFAIL naming it.
 * dnssec off: no TLSA query is ever sent and every target is DANE_OFF.
 */
#ifndef VOLLEY_DNS_H
#define VOLLEY_DNS_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct config;

enum dns_status {
	DNS_OK = 0,
	DNS_NXDOMAIN,		/* domain does not exist: bounce 5.1.2 */
	DNS_NULLMX,		/* RFC 7505: bounce 5.1.10 */
	DNS_NOADDR,		/* MX hosts exist but none has an address: defer */
	DNS_TEMPFAIL,		/* SERVFAIL / time-out: defer */
};

/* An IPv4 or IPv6 address; sa.sa_family says which. */
union dns_addr {
	struct sockaddr sa;
	struct sockaddr_in v4;
	struct sockaddr_in6 v6;
};

struct dns_target {
	char host[256];			/* MX host name (or the domain for implicit MX) */
	int pref;
	union dns_addr addr;		/* port left 0: the caller sets it */
	int dane;			/* enum dane_state (dane.h) */
	struct dane_set *tlsa;		/* DANE_TLSA: its records (a reference of the
					 * result's; mxset_from_dns takes its own) */
};

struct dns_result {
	enum dns_status status;
	char error[256];		/* human text for logs/events when status != OK */
	struct dns_target *targets;	/* ordered; owned by the result */
	size_t ntargets;
	int implicit;			/* 1 if no MX record: A of the domain itself */
};

struct dns;

/* servers: "ip[:port]" strings (NULL/0: /etc/resolv.conf). */
struct dns *dns_new(struct loop *l, const struct config *cfg);
void dns_free(struct dns *d);

/*
 * dns_query_mx - resolve domain; cb is called exactly once, possibly before
 * dns_query_mx returns (cache hit, invalid name). The result is only valid
 * during cb. cb may start new queries but must not call dns_free. Lookups
 * still in flight at dns_free get DNS_TEMPFAIL from inside dns_free.
 */
void dns_query_mx(struct dns *d, const char *domain,
    void (*cb)(void *arg, const struct dns_result *r), void *arg);

/*
 * dns_query_host - the addresses of one host name (a smarthost): its A
 * and AAAA records as targets of that name (pref 0), cached and merged
 * like MX answers (its own cache entry), private addresses refused
 * unless allowed. No MX is looked up. An IPv4 or IPv6 literal is its own
 * single target at once (no lookup, no private-address check: the
 * configuration named it). No address -> DNS_NOADDR; NXDOMAIN ->
 * DNS_NXDOMAIN. Same callback contract as dns_query_mx.
 */
void dns_query_host(struct dns *d, const char *host,
    void (*cb)(void *arg, const struct dns_result *r), void *arg);

/* Number of lookups in flight (for status and drain). */
size_t dns_pending(const struct dns *d);

/*
 * Pure helpers, exposed for unit tests:
 * dns_order_mx - sort (host, pref) pairs by preference, shuffling ties with
 *   the given random source (rnd(n) returns 0..n-1).
 * dns_answer_min_ttl - minimum TTL (seconds) of the answer RRs in a raw
 *   DNS reply, or -1 if it cannot be parsed or has no answer RR.
 */
struct dns_mx { char host[256]; int pref; };
void dns_order_mx(struct dns_mx *mx, size_t n, unsigned (*rnd)(unsigned n));
long dns_answer_min_ttl(const unsigned char *abuf, int alen);
/*
 * dns_negative_ttl - negative-caching TTL of a reply (RFC 2308): the
 *   minimum over authority-section SOA records of min(SOA TTL, MINIMUM),
 *   or -1 if there is none or the reply cannot be parsed.
 */
long dns_negative_ttl(const unsigned char *abuf, int alen);
/*
 * dns_addr_private - what kind of non-public address sa is: "loopback",
 *   "private", "link-local" or "unspecified" (an unknown family counts as
 *   unspecified); NULL for an address mail may be sent to.
 */
const char *dns_addr_private(const struct sockaddr *sa);
/*
 * dns_reply_authentic - 1 if the reply's header has the AD bit (the
 *   resolver validated it with DNSSEC), 0 if not or too short.
 * dns_parse_tlsa - the TLSA (type 52, class IN) records of the answer
 *   section of a raw reply, as a new set (dane.h; the caller unrefs it);
 *   NULL when there is none or the reply cannot be parsed.
 * dns_tlsa_name - "_PORT._tcp.HOST" into buf; -1 if it does not fit a
 *   DNS name (255 octets).
 */
int dns_reply_authentic(const unsigned char *abuf, int alen);
struct dane_set;
struct dane_set *dns_parse_tlsa(const unsigned char *abuf, int alen);
int dns_tlsa_name(char *buf, size_t n, int port, const char *host);

/*
 * dns_query_txt - the TXT records of name (MTA-STS: _mta-sts.DOMAIN).
 * Each record's character-strings are joined; at most DNS_TXT_MAX
 * records are kept (more: r->more is set), each cut at DNS_TXT_LEN - 1
 * bytes (r->len[i] is then DNS_TXT_LEN: a record that long is never one
 * the caller can use). Answers are cached by TTL (negative ones by the
 * SOA, RFC 2308), clamped like MX answers; temporary failures are not
 * cached. No DNSSEC, no private-address check (it carries no address).
 * The callback contract is dns_query_mx's: exactly once, maybe at once.
 */
#define DNS_TXT_MAX	8
#define DNS_TXT_LEN	1024
struct dns_txt_result {
	enum dns_status status;		/* OK (n may be 0: no TXT), NXDOMAIN, TEMPFAIL */
	char error[256];
	size_t n;
	int more;
	size_t len[DNS_TXT_MAX];
	char txt[DNS_TXT_MAX][DNS_TXT_LEN];	/* NUL-terminated (may hold NULs) */
};
void dns_query_txt(struct dns *d, const char *name,
    void (*cb)(void *arg, const struct dns_txt_result *r), void *arg);
/* dns_parse_txt - the TXT records of a raw reply's answer section into r
 * (status OK); -1 if the reply cannot be parsed. */
int dns_parse_txt(const unsigned char *abuf, int alen, struct dns_txt_result *r);

#endif
