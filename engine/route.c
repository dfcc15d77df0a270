/*
 * route.c - pool routing rules and pool ownership (route.h). Pure: no
 * clock, no syscall; the test bind() is the engine's (engine.c).
 */
#include "route.h"
#include "config.h"
#include "util.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

/* A glob criterion against a job's field: unset matches all, a missing
 * field matches none. */
static int
crit_match(const char *glob, const char *v)
{
	if (glob == NULL)
		return 1;
	if (v == NULL)
		return 0;
	return fnmatch(glob, v, FNM_CASEFOLD) == 0;
}

const char *
route_pool(const struct config *c, const char *tenant, const char *campaign, const char *from,
    int *rule)
{
	const char *dom = NULL, *at;

	if (from != NULL && (at = strrchr(from, '@')) != NULL && at[1] != '\0')
		dom = at + 1;
	for (size_t i = 0; i < c->nroutes; i++) {
		const struct config_route *r = &c->routes[i];

		if (r->pool == NULL)
			continue;
		if (crit_match(r->tenant, tenant) && crit_match(r->campaign, campaign) &&
		    crit_match(r->sender_domain, dom)) {
			if (rule)
				*rule = (int)i;
			return r->pool;
		}
	}
	if (rule)
		*rule = -1;
	return "default";
}

size_t
route_ip_count(const struct config *c)
{
	size_t n = 0;

	for (size_t i = 0; i < c->npools; i++)
		n += c->pools[i].nips;
	return n;
}

void
route_owner_free(struct route_owner *o)
{
	free(o->ip_ours);
	free(o->ip_explicit);
	free(o->pool_ours);
	free(o->pool_shared);
	memset(o, 0, sizeof *o);
}

void
route_owner_decide(struct route_owner *o, const struct config *c, const char *instance,
    const enum route_bind *bind)
{
	size_t k = 0;

	route_owner_free(o);
	o->nips = route_ip_count(c);
	o->npools = c->npools;
	o->ip_ours = xcalloc(o->nips + 1, 1);
	o->ip_explicit = xcalloc(o->nips + 1, 1);
	o->pool_ours = xcalloc(o->npools + 1, 1);
	o->pool_shared = xcalloc(o->npools + 1, 1);
	for (size_t i = 0; i < c->npools; i++) {
		const struct config_pool *p = &c->pools[i];

		o->pool_ours[i] = p->nips == 0;
		for (size_t j = 0; j < p->nips; j++, k++) {
			const struct config_ip *ip = &p->ips[j];

			if (ip->instance != NULL) {
				o->ip_explicit[k] = 1;
				o->ip_ours[k] = instance != NULL &&
				    fnmatch(ip->instance, instance, 0) == 0;
				o->pool_shared[i] = 1;
			} else {
				o->ip_ours[k] = bind == NULL || bind[k] != ROUTE_BIND_NOT_HERE;
			}
			if (o->ip_ours[k])
				o->pool_ours[i] = 1;
			else
				o->pool_shared[i] = 1;
		}
	}
}

/* The index of pool in c, or -1; only when o describes c's pools. */
static long
pool_index(const struct route_owner *o, const struct config *c, const char *pool)
{
	if (o == NULL || pool == NULL || o->npools != c->npools)
		return -1;
	for (size_t i = 0; i < c->npools; i++)
		if (strcmp(c->pools[i].name, pool) == 0)
			return (long)i;
	return -1;
}

int
route_pool_foreign(const struct route_owner *o, const struct config *c, const char *pool)
{
	long i = pool_index(o, c, pool);

	return i >= 0 && !o->pool_ours[i];
}

const char *
route_retry_pool(const struct route_owner *o, const struct config *c, const char *pool)
{
	long i = pool_index(o, c, pool);

	return i >= 0 && o->pool_shared[i] ? c->pools[i].name : NULL;
}

int
route_ip_ours(const struct route_owner *o, size_t k)
{
	if (o == NULL || o->ip_ours == NULL || k >= o->nips)
		return 1;
	return o->ip_ours[k];
}
