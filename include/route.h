/*
 * route.h - which pool a job uses, and which pools this host can send for.
 *
 * Both decisions are pure: the configuration (and, for ownership, the
 * result of a test bind() the loop-side code made) in, the answer out.
 *
 * Routing. A job that names its pool uses it. Otherwise the first
 * `route { }` block (file order) whose criteria all match picks it:
 * tenant, campaign and sender_domain (the envelope sender's domain) are
 * case-insensitive globs; a job without the field never matches a
 * criterion on it. No route matches: `default`.
 *
 * Ownership. Several hosts may own different IPs of the same pools. Each
 * pool IP is this host's or another's: an `ip "A" { instance = "GLOB"; }`
 * belongs only to the engines whose instance name matches (explicit,
 * wins); any other IP is ours unless a test bind() to it failed with
 * EADDRNOTAVAIL. A pool without IPs (the host's default address) is
 * always ours. A pool with no IP of ours is foreign here: its jobs are
 * handed over untried to PREFIXretry:pool:NAME, which only its owners
 * read. A pool is shared when it has a foreign IP or an explicit owner:
 * its deferred jobs wait in PREFIXretry:pool:NAME too, so that only
 * hosts that can send them lease them again.
 */
#ifndef VOLLEY_ROUTE_H
#define VOLLEY_ROUTE_H

#include <stddef.h>

struct config;

/*
 * route_pool - the pool for a job with these fields (any may be NULL;
 * from "" is the null sender). Returns a string of the configuration
 * (never NULL): a route's pool or "default". *rule gets the index of the
 * route that matched, -1 for none (rule may be NULL).
 */
const char *route_pool(const struct config *c, const char *tenant, const char *campaign,
    const char *from, int *rule);

/* What a test bind() to one pool IP said. */
enum route_bind {
	ROUTE_BIND_OK = 0,	/* bound, or not tested (the IP has an explicit owner) */
	ROUTE_BIND_NOT_HERE,	/* EADDRNOTAVAIL: not an address of this host */
	ROUTE_BIND_ERROR,	/* another error: still ours (the send path reports it) */
};

/*
 * The ownership of every pool IP and pool of one configuration. IPs are
 * numbered flat in configuration order (pool 0's IPs, then pool 1's...),
 * pools as in c->pools.
 */
struct route_owner {
	size_t nips, npools;
	unsigned char *ip_ours;		/* per flat IP */
	unsigned char *ip_explicit;	/* per flat IP: owned by `instance` */
	unsigned char *pool_ours;	/* per pool: an IP of ours, or no IPs */
	unsigned char *pool_shared;	/* per pool: a foreign IP or an explicit owner */
};

/* route_ip_count - the flat number of pool IPs of c. */
size_t route_ip_count(const struct config *c);

/*
 * route_owner_decide - fill o for c, this engine's instance name and the
 * test binds (bind[k] for flat IP k; NULL: every bind worked). o is
 * reset first; free with route_owner_free.
 */
void route_owner_decide(struct route_owner *o, const struct config *c, const char *instance,
    const enum route_bind *bind);
void route_owner_free(struct route_owner *o);

/*
 * route_pool_foreign - 1 if pool is a defined pool of c with no IP of
 * ours (its jobs are handed over), else 0 (an unknown pool is not
 * foreign: it fails where pools are checked). o NULL: nothing is foreign.
 */
int route_pool_foreign(const struct route_owner *o, const struct config *c, const char *pool);
/*
 * route_retry_pool - the pool whose retry ZSET (PREFIXretry:pool:NAME) a
 * job of pool waits in when deferred or parked: pool itself when it is
 * shared, else NULL (PREFIXretry). o NULL: NULL.
 */
const char *route_retry_pool(const struct route_owner *o, const struct config *c,
    const char *pool);
/* route_ip_ours - whether IP k (flat) of c is ours (o NULL: yes). */
int route_ip_ours(const struct route_owner *o, size_t k);

#endif
