/*
 * mtasts_cache.h - MTA-STS policies (RFC 8461) by recipient domain: found,
 * kept and refreshed on the loop.
 *
 * mtasts_cache_get(domain) answers at once from what is kept: a policy
 * in force (fetched, not expired) is used without waiting for anything,
 * and so is a recent "no policy" (NXDOMAIN, no TXT, a failed TXT lookup
 * or a failed fetch: remembered STS_NONE_MS, STS_TEMPFAIL_MS or
 * STS_FAIL_MS, so a domain without MTA-STS costs one lookup per that
 * time, never one per message). Otherwise it looks up the TXT record
 * _mta-sts.DOMAIN (dns_query_txt, cached by its TTL) and, when it names
 * an id, resolves mta-sts.DOMAIN (dns_query_host: every A and AAAA
 * address) and fetches https://mta-sts.DOMAIN/.well-known/mta-sts.txt
 * (https_get: verified TLS with the CAs of ca_file or the system store,
 * status 200, text/plain, at most 64 KiB, no redirect followed) from each
 * address in turn until one answers, all within one 10 s budget.
 *
 * A kept policy is checked against the TXT record in the background each
 * time it is used (the DNS cache makes that cheap); when the id changed
 * or half its max_age has passed it is fetched again in the background
 * (mtasts_after_txt), the kept one staying in force meanwhile and after a
 * failed refresh (retried after STS_RETRY_MS) until it expires.
 *
 * The answer (cb) is the policy in force, or NULL for none. Lookups of
 * one domain are merged. cb runs exactly once, maybe inside
 * mtasts_cache_get; the policy is valid during the call only.
 *
 * Kept over a restart: each fetched policy is handed to the store hook
 * (mtasts_cache_set_store) in its stored form (mtasts_store_format, wall
 * clock expiry); mtasts_cache_restore puts one back (refused when expired
 * or malformed).
 *
 * mtasts_cache_halt (before dns_free): fetches are cancelled and every
 * waiter gets NULL; DNS answers still due are ignored. mtasts_cache_free
 * after dns_free and after the loop has run the cancelled connections'
 * completions.
 */
#ifndef VOLLEY_MTASTS_CACHE_H
#define VOLLEY_MTASTS_CACHE_H

#include "mtasts.h"

#include <stddef.h>
#include <stdint.h>

struct loop;
struct dns;
struct mtasts_cache;

struct mtasts_cache *mtasts_cache_new(struct loop *l, struct dns *dns);
void mtasts_cache_get(struct mtasts_cache *c, const char *domain, int port, const char *ca_file,
    void (*cb)(void *arg, const struct mtasts_policy *p), void *arg);
void mtasts_cache_set_store(struct mtasts_cache *c,
    void (*store)(void *arg, const char *domain, const char *value), void *arg);
/* mtasts_cache_restore - a stored policy back (now_wall: unix ms); 0 if
 * kept, -1 (err says why) if expired or malformed. */
int mtasts_cache_restore(struct mtasts_cache *c, const char *domain, const char *value,
    size_t len, uint64_t now_wall, char *err, size_t errsz);
void mtasts_cache_halt(struct mtasts_cache *c);
void mtasts_cache_free(struct mtasts_cache *c);

#endif
