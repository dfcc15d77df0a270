/*
 * mtasts_cache.h - MTA-STS policies (RFC 8461) by recipient domain: found
 * and kept on the loop. mtasts_cache_get(domain) looks up the TXT record
 * _mta-sts.DOMAIN (dns_query_txt, cached by its TTL); when it names an
 * id whose policy is not in memory, it resolves mta-sts.DOMAIN
 * (dns_query_host) and fetches https://mta-sts.DOMAIN/.well-known/mta-sts.txt
 * (https_get: verified TLS with the CAs of ca_file or the system store,
 * status 200, text/plain, at most 64 KiB, 10 s, no redirect followed).
 * A good policy is kept max_age seconds (at most a year) and fetched
 * again when the TXT id changes.
 *
 * The answer (cb) is the policy in force, or NULL for none: no STS TXT
 * record (or not exactly one), or a fetch that failed with no unexpired
 * policy kept. A fetch that fails while a kept policy has not expired
 * keeps that policy; so does a TXT lookup that fails or finds nothing.
 * Lookups of one domain are merged. cb runs exactly once, maybe inside
 * mtasts_cache_get; the policy is valid during the call only.
 *
 * mtasts_cache_halt (before dns_free): fetches are cancelled and every
 * waiter gets NULL; DNS answers still due are ignored. mtasts_cache_free
 * after dns_free and after the loop has run the cancelled connections'
 * completions.
 */
#ifndef VOLLEY_MTASTS_CACHE_H
#define VOLLEY_MTASTS_CACHE_H

#include "mtasts.h"

struct loop;
struct dns;
struct mtasts_cache;

struct mtasts_cache *mtasts_cache_new(struct loop *l, struct dns *dns);
void mtasts_cache_get(struct mtasts_cache *c, const char *domain, int port, const char *ca_file,
    void (*cb)(void *arg, const struct mtasts_policy *p), void *arg);
void mtasts_cache_halt(struct mtasts_cache *c);
void mtasts_cache_free(struct mtasts_cache *c);

#endif
