/*
 * redis_sync.c - the blocking half of the Redis module (see redis_sync.h):
 * inject, status, pause/resume, the suppression lists, and the clean-exit
 * cleanup. Key names come from
 * redis_schema.h; nothing else in the command line builds a command.
 */
#include "redis_sync.h"
#include "redis_schema.h"
#include "redis.h"
#include "config.h"
#include "util.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

struct rqs {
	redisContext *rc;
	const struct config *cfg;
	char *k_jobs;
};

/* The cleanup at a clean exit. KEYS: jobs stream, stats hash, instances
 * set, lock, high jobs stream (the consumer leaves each group where it has
 * nothing pending; 1 only if it left both). ARGV: group, consumer, lock token. Touches nothing if another
 * process holds the instance lock now. XGROUP DELCONSUMER drops the
 * consumer's pending entries, so it runs only when there are none. */
static const char cleanup_lua[] =
"local holder = redis.call('GET', KEYS[4])\n"
"if holder and holder ~= ARGV[3] then return -1 end\n"
"redis.call('DEL', KEYS[2])\n"
"redis.call('SREM', KEYS[3], ARGV[2])\n"
"local function drop(k)\n"
"  local p = redis.pcall('XPENDING', k, ARGV[1], '-', '+', 1, ARGV[2])\n"
"  if type(p) == 'table' and p.err == nil and #p == 0 then\n"
"    redis.pcall('XGROUP', 'DELCONSUMER', k, ARGV[1], ARGV[2])\n"
"    return 1\n"
"  end\n"
"  return 0\n"
"end\n"
"local gone = drop(KEYS[1])\n"
"if redis.call('EXISTS', KEYS[5]) == 1 then gone = gone * drop(KEYS[5]) end\n"
"if holder then redis.call('DEL', KEYS[4]) end\n"
"return gone\n";


static char *
key(const struct rqs *s, const char *suffix, const char *name)
{
	return xasprintf("%s%s%s", s->cfg->prefix, suffix, name ? name : "");
}

/* A command from an argv with lengths computed from C strings. */
static redisReply *
cmdv(struct rqs *s, int argc, const char **argv)
{
	size_t lens[32];

	if (argc > 32)
		panic("rqs argv overflow");
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	return redisCommandArgv(s->rc, argc, argv, lens);
}

struct rqs *
rqs_connect(const struct config *cfg, unsigned timeout_ms, char *err, size_t errlen)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	struct rqs *s;
	redisContext *rc;
	redisReply *r;

	if (cfg->redis_unix)
		rc = redisConnectUnixWithTimeout(cfg->redis_unix, tv);
	else
		rc = redisConnectWithTimeout(cfg->redis_host, cfg->redis_port, tv);
	if (rc == NULL || rc->err) {
		errbuf_set(err, errlen, "cannot connect to Redis at %s: %s", cfg->redis_url_safe,
		    rc ? rc->errstr : "out of memory");
		if (rc)
			redisFree(rc);
		return NULL;
	}
	redisSetTimeout(rc, tv);
	s = xcalloc(1, sizeof *s);
	s->rc = rc;
	s->cfg = cfg;
	s->k_jobs = key(s, RQ_K_JOBS, NULL);
	if (cfg->redis_password) {
		const char *av[3] = { "AUTH", NULL, NULL };
		int n = 1;
		if (cfg->redis_user)
			av[n++] = cfg->redis_user;
		av[n++] = cfg->redis_password;
		r = cmdv(s, n, av);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			errbuf_set(err, errlen, "Redis AUTH at %s failed (user %s): %s", cfg->redis_url_safe,
			    cfg->redis_user ? cfg->redis_user : "default",
			    r ? r->str : rc->errstr);
			if (r)
				freeReplyObject(r);
			rqs_free(s);
			return NULL;
		}
		freeReplyObject(r);
	}
	if (cfg->redis_db) {
		r = redisCommand(rc, "SELECT %d", cfg->redis_db);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			errbuf_set(err, errlen, "Redis SELECT %d at %s failed: %s", cfg->redis_db,
			    cfg->redis_url_safe, r ? r->str : rc->errstr);
			if (r)
				freeReplyObject(r);
			rqs_free(s);
			return NULL;
		}
		freeReplyObject(r);
	}
	return s;
}

void
rqs_free(struct rqs *s)
{
	if (s == NULL)
		return;
	redisFree(s->rc);
	free(s->k_jobs);
	free(s);
}

const char *
rqs_jobs_key(const struct rqs *s)
{
	return s->k_jobs;
}

int
rqs_store_msg(struct rqs *s, const char *data, size_t len, uint64_t ttl_ms,
    char *keyout, size_t keylen, char *err, size_t errlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char hex[41], ttl[32];
	const char *av[5];
	size_t al[5];
	int n = 0;
	redisReply *r;
	char *k;

	if (!EVP_Digest(data, len, md, &mdlen, EVP_sha1(), NULL) || mdlen < 20) {
		errbuf_set(err, errlen, "SHA1 unavailable in OpenSSL");
		return -1;
	}
	for (unsigned i = 0; i < 20; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	k = key(s, RQ_K_MSG, hex);
	snprintf(keyout, keylen, "%s", k);
	av[n] = "SET"; al[n++] = 3;
	av[n] = k; al[n++] = strlen(k);
	av[n] = data; al[n++] = len;
	if (ttl_ms > 0) {
		snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
		av[n] = "PX"; al[n++] = 2;
		av[n] = ttl; al[n++] = strlen(ttl);
	}
	r = redisCommandArgv(s->rc, n, av, al);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		errbuf_set(err, errlen, "SET %s failed: %s", k, r ? r->str : s->rc->errstr);
		if (r)
			freeReplyObject(r);
		free(k);
		return -1;
	}
	freeReplyObject(r);
	free(k);
	return 0;
}

size_t
rqs_inject(struct rqs *s, const struct rqs_job *job, const char *const *rcpts, size_t n,
    size_t *refused, char *err, size_t errlen)
{
	size_t queued = 0, pending = 0;

	*refused = 0;
	for (size_t i = 0; i < n; i++) {
		const char *av[20];
		size_t al[20];
		int k = 0;
		av[k++] = "XADD"; av[k++] = s->k_jobs; av[k++] = "*";
		av[k++] = "to"; av[k++] = rcpts[i];
		av[k++] = "from"; av[k++] = job->from;
		if (job->msg) {
			av[k++] = "msg"; av[k++] = job->msg;
		} else {
			av[k++] = "msg_ref"; av[k++] = job->msg_ref;
		}
		if (job->pool) { av[k++] = "pool"; av[k++] = job->pool; }
		if (job->campaign) { av[k++] = "campaign"; av[k++] = job->campaign; }
		if (job->tenant) { av[k++] = "tenant"; av[k++] = job->tenant; }
		if (job->expires_at) { av[k++] = "expires_at"; av[k++] = job->expires_at; }
		for (int m = 0; m < k; m++)
			al[m] = av[m] == job->msg ? job->msg_len : strlen(av[m]);
		redisAppendCommandArgv(s->rc, k, av, al);
		pending++;
		if (pending < 1000 && i + 1 < n)
			continue;
		for (; pending > 0; pending--) {
			void *rp;
			redisReply *r;
			if (redisGetReply(s->rc, &rp) != REDIS_OK) {
				errbuf_set(err, errlen, "Redis: %s (queued %zu)", s->rc->errstr, queued);
				return queued;
			}
			r = rp;
			if (r->type == REDIS_REPLY_ERROR) {
				if (*refused == 0)
					errbuf_set(err, errlen, "XADD: %s", r->str);
				(*refused)++;
			} else {
				queued++;
			}
			freeReplyObject(r);
		}
	}
	return queued;
}

const char *
rqs_instance_get(const struct rqs_instance *in, const char *field)
{
	for (size_t i = 0; i < in->n; i++)
		if (strcmp(in->fields[i], field) == 0)
			return in->values[i];
	return NULL;
}

static long long
int_of(redisReply *r)
{
	long long v = -1;

	if (r && r->type == REDIS_REPLY_INTEGER)
		v = r->integer;
	if (r)
		freeReplyObject(r);
	return v;
}

static int
pool_wait_cmp(const void *a, const void *b)
{
	return strcmp(((const struct rqs_pool_wait *)a)->pool, ((const struct rqs_pool_wait *)b)->pool);
}

/*
 * status_pools - the per-pool retry ZSETs (SCAN MATCH PREFIXretry:pool:*,
 * the prefix's glob characters escaped) and how many jobs wait in each,
 * how many of them due now. At most 1000 pools; empty ones are gone
 * (Redis deletes an empty ZSET).
 */
static void
status_pools(struct rqs *s, struct rqs_status *st)
{
	char *base = key(s, RQ_K_RETRY_POOL, NULL), *pat, cursor[32] = "0", now[32];
	size_t blen = strlen(base), cap = 0, k = 0;

	pat = xmalloc(2 * blen + 2);
	for (size_t i = 0; i < blen; i++) {
		if (strchr("*?[]\\", base[i]))
			pat[k++] = '\\';
		pat[k++] = base[i];
	}
	pat[k++] = '*';
	pat[k] = '\0';
	snprintf(now, sizeof now, "%llu", (unsigned long long)clock_wall_ms());
	do {
		redisReply *r = cmdv(s, 6, (const char *[]){ "SCAN", cursor, "MATCH", pat, "COUNT",
		    "1000" });

		if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			if (r)
				freeReplyObject(r);
			break;
		}
		snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
		for (size_t i = 0; i < r->element[1]->elements && st->npools < 1000; i++) {
			const redisReply *e = r->element[1]->element[i];
			struct rqs_pool_wait *w;

			if (e->type != REDIS_REPLY_STRING || e->len <= blen)
				continue;
			if (st->npools == cap) {
				cap = cap ? 2 * cap : 16;
				st->pools = xrealloc(st->pools, cap * sizeof *st->pools);
			}
			w = &st->pools[st->npools++];
			w->pool = xstrdup(e->str + blen);
			w->waiting = int_of(cmdv(s, 2, (const char *[]){ "ZCARD", e->str }));
			w->due = int_of(cmdv(s, 4, (const char *[]){ "ZCOUNT", e->str, "-inf", now }));
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0 && st->npools < 1000);
	if (st->npools > 1)
		qsort(st->pools, st->npools, sizeof *st->pools, pool_wait_cmp);
	free(pat);
	free(base);
}

int
rqs_status_read(struct rqs *s, struct rqs_status *st, char *err, size_t errlen)
{
	char *k_retry = key(s, RQ_K_RETRY, NULL), *k_supp = key(s, RQ_K_SUPPRESSED, NULL);
	char *k_events = key(s, RQ_K_EVENTS, NULL), *k_inst = key(s, RQ_K_INSTANCES, NULL);
	redisReply *r;
	int rc = 0;

	memset(st, 0, sizeof *st);
	st->unread = -1;
	st->stream_len = int_of(cmdv(s, 2, (const char *[]){ "XLEN", s->k_jobs }));
	if (st->stream_len >= 0) {
		char *k_high = key(s, RQ_K_JOBS_HIGH, NULL);
		st->high_len = int_of(cmdv(s, 2, (const char *[]){ "XLEN", k_high }));
		free(k_high);
	}
	if (st->stream_len < 0 && s->rc->err) {
		errbuf_set(err, errlen, "Redis: %s", s->rc->errstr);
		rc = -1;
		goto out;
	}
	r = cmdv(s, 3, (const char *[]){ "XINFO", "GROUPS", s->k_jobs });
	if (r && r->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < r->elements; i++) {
			const redisReply *g = r->element[i];
			int ours = 0;
			long long pend = 0, lag = -1;
			if (g->type != REDIS_REPLY_ARRAY)
				continue;
			for (size_t f = 0; f + 1 < g->elements; f += 2) {
				const redisReply *n = g->element[f], *v = g->element[f + 1];
				if (n->type != REDIS_REPLY_STRING)
					continue;
				if (strcmp(n->str, "name") == 0 && v->type == REDIS_REPLY_STRING)
					ours = strcmp(v->str, RQ_GROUP) == 0;
				else if (strcmp(n->str, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
					pend = v->integer;
				else if (strcmp(n->str, "lag") == 0 && v->type == REDIS_REPLY_INTEGER)
					lag = v->integer;
			}
			if (ours) {
				st->pending = pend;
				st->unread = lag;
			}
		}
	}
	if (r)
		freeReplyObject(r);
	if (st->unread < 0)	/* no group yet, or lag unknown */
		st->unread = st->stream_len > st->pending ? st->stream_len - st->pending : 0;
	st->deferred = int_of(cmdv(s, 2, (const char *[]){ "ZCARD", k_retry }));
	st->suppressed = int_of(cmdv(s, 2, (const char *[]){ "SCARD", k_supp }));
	st->events = int_of(cmdv(s, 2, (const char *[]){ "XLEN", k_events }));
	r = cmdv(s, 5, (const char *[]){ "ZRANGE", k_retry, "0", "0", "WITHSCORES" });
	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[1]->type == REDIS_REPLY_STRING) {
		st->has_next_retry = 1;
		st->next_retry_ms = atof(r->element[1]->str);
	}
	if (r)
		freeReplyObject(r);
	status_pools(s, st);
	r = cmdv(s, 2, (const char *[]){ "SMEMBERS", k_inst });
	if (r && r->type == REDIS_REPLY_ARRAY) {
		st->inst = xcalloc(r->elements + 1, sizeof *st->inst);
		for (size_t i = 0; i < r->elements; i++) {
			char *hk;
			redisReply *h;
			if (r->element[i]->type != REDIS_REPLY_STRING)
				continue;
			hk = key(s, RQ_K_INSTANCE, r->element[i]->str);
			h = cmdv(s, 2, (const char *[]){ "HGETALL", hk });
			free(hk);
			if (h && h->type == REDIS_REPLY_ARRAY && h->elements >= 2) {
				struct rqs_instance *in = &st->inst[st->ninst++];
				in->name = xstrdup(r->element[i]->str);
				in->fields = xcalloc(h->elements / 2 + 1, sizeof *in->fields);
				in->values = xcalloc(h->elements / 2 + 1, sizeof *in->values);
				for (size_t f = 0; f + 1 < h->elements; f += 2) {
					if (h->element[f]->type != REDIS_REPLY_STRING ||
					    h->element[f + 1]->type != REDIS_REPLY_STRING)
						continue;
					in->fields[in->n] = xstrdup(h->element[f]->str);
					in->values[in->n] = xstrdup(h->element[f + 1]->str);
					in->n++;
				}
			}
			if (h)
				freeReplyObject(h);
		}
	}
	if (r)
		freeReplyObject(r);
out:
	free(k_retry);
	free(k_supp);
	free(k_events);
	free(k_inst);
	return rc;
}

void
rqs_status_free(struct rqs_status *st)
{
	for (size_t i = 0; i < st->ninst; i++) {
		struct rqs_instance *in = &st->inst[i];
		for (size_t f = 0; f < in->n; f++) {
			free(in->fields[f]);
			free(in->values[f]);
		}
		free(in->fields);
		free(in->values);
		free(in->name);
	}
	free(st->inst);
	for (size_t i = 0; i < st->npools; i++)
		free(st->pools[i].pool);
	free(st->pools);
	memset(st, 0, sizeof *st);
}

int
rqs_instance_cleanup(struct rqs *s, const char *instance, const char *token,
    char *err, size_t errlen)
{
	char *k_stats = key(s, RQ_K_INSTANCE, instance), *k_inst = key(s, RQ_K_INSTANCES, NULL);
	char *k_lock = key(s, RQ_K_LOCK, instance);
	char *k_high = key(s, RQ_K_JOBS_HIGH, NULL);
	const char *av[] = { "EVAL", cleanup_lua, "5", s->k_jobs, k_stats, k_inst, k_lock,
	    k_high, RQ_GROUP, instance, token };
	redisReply *r = cmdv(s, (int)(sizeof av / sizeof av[0]), av);
	int rc = -1;

	if (r == NULL)
		errbuf_set(err, errlen, "Redis: %s", s->rc->errstr);
	else if (r->type == REDIS_REPLY_ERROR)
		errbuf_set(err, errlen, "%s", r->str);
	else if (r->type == REDIS_REPLY_INTEGER && r->integer < 0)
		errbuf_set(err, errlen, "another process holds the instance lock now; nothing removed");
	else if (r->type == REDIS_REPLY_INTEGER)
		rc = r->integer == 1;
	if (r)
		freeReplyObject(r);
	free(k_stats);
	free(k_inst);
	free(k_lock);
	free(k_high);
	return rc;
}

/* --- pause and resume --- */

static char *
pause_key(const struct rqs *s, int tenant)
{
	return key(s, tenant ? RQ_K_PAUSED_TENANT : RQ_K_PAUSED_CAMPAIGN, NULL);
}

int
rqs_pause(struct rqs *s, int tenant, const char *name, const char *by, char *was, size_t waslen,
    char *err, size_t errlen)
{
	char *k = pause_key(s, tenant), val[300];
	redisReply *r;
	int rc = -1;

	if (was && waslen)
		was[0] = '\0';
	snprintf(val, sizeof val, "%llu %s", (unsigned long long)clock_wall_ms(), by ? by : "-");
	/* Set unless paused already; a pause with an end (a shaping rule's,
	 * "... until=MS") is replaced: the operator's has none, and must not
	 * end when the rule's would. */
	r = cmdv(s, 6, (const char *[]){ "EVAL",
	    "local v = redis.call('HGET', KEYS[1], ARGV[1]) "
	    "if v and not string.find(v, ' until=', 1, true) then return 0 end "
	    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1", "1", k, name, val });
	if (r == NULL)
		errbuf_set(err, errlen, "Redis: %s", s->rc->errstr);
	else if (r->type == REDIS_REPLY_ERROR)
		errbuf_set(err, errlen, "pausing %s in %s: %s", name, k, r->str);
	else if (r->type == REDIS_REPLY_INTEGER)
		rc = r->integer == 1;
	if (r)
		freeReplyObject(r);
	if (rc == 0 && was && waslen) {
		r = cmdv(s, 3, (const char *[]){ "HGET", k, name });
		if (r && r->type == REDIS_REPLY_STRING)
			snprintf(was, waslen, "%s", r->str);
		if (r)
			freeReplyObject(r);
	}
	free(k);
	return rc;
}

int
rqs_resume(struct rqs *s, int tenant, const char *name, char *err, size_t errlen)
{
	char *k = pause_key(s, tenant);
	redisReply *r = cmdv(s, 3, (const char *[]){ "HDEL", k, name });
	int rc = -1;

	if (r == NULL)
		errbuf_set(err, errlen, "Redis: %s", s->rc->errstr);
	else if (r->type == REDIS_REPLY_ERROR)
		errbuf_set(err, errlen, "HDEL %s: %s", k, r->str);
	else if (r->type == REDIS_REPLY_INTEGER)
		rc = r->integer == 1;
	if (r)
		freeReplyObject(r);
	free(k);
	return rc;
}

int
rqs_paused_list(struct rqs *s, int tenant, struct rqs_paused **out, size_t *n,
    char *err, size_t errlen)
{
	char *k = pause_key(s, tenant);
	redisReply *r = cmdv(s, 2, (const char *[]){ "HGETALL", k });
	int rc = -1;

	*out = NULL;
	*n = 0;
	if (r == NULL) {
		errbuf_set(err, errlen, "Redis: %s", s->rc->errstr);
	} else if (r->type == REDIS_REPLY_ERROR) {
		errbuf_set(err, errlen, "HGETALL %s: %s", k, r->str);
	} else if (r->type == REDIS_REPLY_ARRAY) {
		*out = xcalloc(r->elements / 2 + 1, sizeof **out);
		for (size_t i = 0; i + 1 < r->elements; i += 2) {
			struct rqs_paused *p = &(*out)[*n];
			const char *v;
			char *end = NULL;
			if (r->element[i]->type != REDIS_REPLY_STRING ||
			    r->element[i + 1]->type != REDIS_REPLY_STRING)
				continue;
			p->name = xstrdup(r->element[i]->str);
			v = r->element[i + 1]->str;
			p->since_ms = strtoull(v, &end, 10);
			while (end && *end == ' ')
				end++;
			p->by = xstrdup(end && *end ? end : "-");
			(*n)++;
		}
		rc = 0;
	}
	if (r)
		freeReplyObject(r);
	free(k);
	return rc;
}

void
rqs_paused_free(struct rqs_paused *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(p[i].name);
		free(p[i].by);
	}
	free(p);
}

/* --- the suppression lists --- */

char *
rqs_suppress_key(const struct rqs *s, const char *tenant)
{
	if (tenant == NULL || tenant[0] == '\0')
		return key(s, RQ_K_SUPPRESSED, NULL);
	return key(s, RQ_K_SUPPRESSED_TENANT, tenant);
}

/* The hash of why and when each address of that list was added. */
static char *
supp_info_key(const struct rqs *s, const char *tenant)
{
	if (tenant == NULL || tenant[0] == '\0')
		return key(s, RQ_K_SUPP_INFO, NULL);
	return key(s, RQ_K_SUPP_INFO_TENANT, tenant);
}

/* Members per SADD/SREM and commands per pipelined round. */
#define SUPP_CHUNK	1000
#define SUPP_PIPELINE	64

/*
 * supp_remove: KEYS the list, its info hash; ARGV the addresses. SREM them
 * and, in the same script, HDEL their reason and time (also of an address
 * no longer listed: a leftover). Returns SREM's count.
 */
static const char supp_remove_lua[] =
"local n = redis.call('SREM', KEYS[1], unpack(ARGV))\n"
"redis.call('HDEL', KEYS[2], unpack(ARGV))\n"
"return n\n";

/* SADD or SREM (with the info, supp_remove) addrs in chunks, pipelined;
 * *changed = members added or removed. On an error reply the rest is
 * still sent; -1 with the first error. */
static int
supp_write(struct rqs *s, const char *verb, const char *tenant, const char *const *addrs,
    size_t n, size_t *changed, char *err, size_t errlen)
{
	char *k = rqs_suppress_key(s, tenant), *ki = supp_info_key(s, tenant);
	const char **av = xcalloc(SUPP_CHUNK + 5, sizeof *av);
	size_t *al = xcalloc(SUPP_CHUNK + 5, sizeof *al);
	size_t pending = 0, head;
	int rc = 0, rem = strcmp(verb, "SREM") == 0;

	*changed = 0;
	for (size_t i = 0; i < n;) {
		size_t m = 0;
		if (rem) {
			av[m] = "EVAL"; al[m++] = 4;
			av[m] = supp_remove_lua; al[m++] = strlen(supp_remove_lua);
			av[m] = "2"; al[m++] = 1;
			av[m] = k; al[m++] = strlen(k);
			av[m] = ki; al[m++] = strlen(ki);
		} else {
			av[m] = verb; al[m++] = strlen(verb);
			av[m] = k; al[m++] = strlen(k);
		}
		head = m;
		for (; i < n && m < SUPP_CHUNK + head; i++) {
			av[m] = addrs[i];
			al[m++] = strlen(addrs[i]);
		}
		redisAppendCommandArgv(s->rc, (int)m, av, al);
		pending++;
		if (pending < SUPP_PIPELINE && i < n)
			continue;
		for (; pending > 0; pending--) {
			void *rp;
			redisReply *r;
			if (redisGetReply(s->rc, &rp) != REDIS_OK) {
				errbuf_set(err, errlen, "Redis: %s", s->rc->errstr);
				rc = -1;
				goto out;
			}
			r = rp;
			if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
				*changed += (size_t)r->integer;
			else if (r->type == REDIS_REPLY_ERROR && rc == 0) {
				errbuf_set(err, errlen, "%s %s: %s", verb, k, r->str);
				rc = -1;
			}
			freeReplyObject(r);
		}
	}
out:
	free(av);
	free(al);
	free(k);
	free(ki);
	return rc;
}

int
rqs_suppress_add(struct rqs *s, const char *tenant, const char *const *addrs, size_t n,
    size_t *added, char *err, size_t errlen)
{
	return supp_write(s, "SADD", tenant, addrs, n, added, err, errlen);
}

int
rqs_suppress_remove(struct rqs *s, const char *tenant, const char *const *addrs, size_t n,
    size_t *removed, char *err, size_t errlen)
{
	return supp_write(s, "SREM", tenant, addrs, n, removed, err, errlen);
}

/* CMD key addrs... (SMISMEMBER, HMGET): the reply, an array of one element
 * per address, or NULL with err set. */
static redisReply *
supp_per_addr(struct rqs *s, const char *cmd, const char *k, const char *const *addrs,
    size_t n, char *err, size_t errlen)
{
	const char **av = xcalloc(n + 2, sizeof *av);
	size_t *al = xcalloc(n + 2, sizeof *al);
	redisReply *r;

	av[0] = cmd; al[0] = strlen(cmd);
	av[1] = k; al[1] = strlen(k);
	for (size_t i = 0; i < n; i++) {
		av[i + 2] = addrs[i];
		al[i + 2] = strlen(addrs[i]);
	}
	r = redisCommandArgv(s->rc, (int)n + 2, av, al);
	free(av);
	free(al);
	if (r == NULL) {
		errbuf_set(err, errlen, "Redis: %s", s->rc->errstr);
		return NULL;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == n)
		return r;
	if (r->type == REDIS_REPLY_ERROR)
		errbuf_set(err, errlen, "%s %s: %s", cmd, k, r->str);
	else
		errbuf_set(err, errlen, "%s %s: unexpected reply", cmd, k);
	freeReplyObject(r);
	return NULL;
}

/* SMISMEMBER key addrs: member[i] |= bit for each address in the set. */
static int
supp_member(struct rqs *s, const char *k, const char *const *addrs, size_t n, int *member,
    int bit, char *err, size_t errlen)
{
	redisReply *r = supp_per_addr(s, "SMISMEMBER", k, addrs, n, err, errlen);

	if (r == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (r->element[i]->type == REDIS_REPLY_INTEGER && r->element[i]->integer == 1)
			member[i] |= bit;
	freeReplyObject(r);
	return 0;
}

int
rqs_suppress_check(struct rqs *s, const char *tenant, const char *const *addrs, size_t n,
    int *member, char *err, size_t errlen)
{
	char *k;
	int rc;

	memset(member, 0, n * sizeof *member);
	if (n == 0)
		return 0;
	k = rqs_suppress_key(s, NULL);
	rc = supp_member(s, k, addrs, n, member, RQS_SUPP_GLOBAL, err, errlen);
	free(k);
	if (rc == 0 && tenant && tenant[0]) {
		k = rqs_suppress_key(s, tenant);
		rc = supp_member(s, k, addrs, n, member, RQS_SUPP_TENANT, err, errlen);
		free(k);
	}
	return rc;
}

/* HMGET key addrs: out[i] = a copy of the value, or NULL. */
static int
supp_info_get(struct rqs *s, const char *k, const char *const *addrs, size_t n, char **out,
    char *err, size_t errlen)
{
	redisReply *r = supp_per_addr(s, "HMGET", k, addrs, n, err, errlen);

	if (r == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (r->element[i]->type == REDIS_REPLY_STRING)
			out[i] = xstrndup(r->element[i]->str, r->element[i]->len);
	freeReplyObject(r);
	return 0;
}

int
rqs_suppress_info(struct rqs *s, const char *tenant, const char *const *addrs, size_t n,
    char **global, char **tenants, char *err, size_t errlen)
{
	char *k;
	int rc;

	memset(global, 0, n * sizeof *global);
	memset(tenants, 0, n * sizeof *tenants);
	if (n == 0)
		return 0;
	k = supp_info_key(s, NULL);
	rc = supp_info_get(s, k, addrs, n, global, err, errlen);
	free(k);
	if (rc == 0 && tenant && tenant[0]) {
		k = supp_info_key(s, tenant);
		rc = supp_info_get(s, k, addrs, n, tenants, err, errlen);
		free(k);
	}
	return rc;
}

int
rqs_suppress_scan(struct rqs *s, const char *tenant,
    int (*fn)(void *arg, const char *addr, size_t len), void *arg, size_t *count,
    char *err, size_t errlen)
{
	char *k = rqs_suppress_key(s, tenant), cursor[32] = "0";
	int rc = 0;

	*count = 0;
	do {
		redisReply *r = cmdv(s, 5, (const char *[]){ "SSCAN", k, cursor, "COUNT", "1000" });
		if (r == NULL) {
			errbuf_set(err, errlen, "Redis: %s", s->rc->errstr);
			rc = -1;
			break;
		}
		if (r->type == REDIS_REPLY_ERROR || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			errbuf_set(err, errlen, "SSCAN %s: %s", k,
			    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
			freeReplyObject(r);
			rc = -1;
			break;
		}
		snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
		for (size_t i = 0; i < r->element[1]->elements && rc == 0; i++) {
			const redisReply *m = r->element[1]->element[i];
			if (m->type != REDIS_REPLY_STRING)
				continue;
			(*count)++;
			if (fn(arg, m->str, m->len) != 0) {
				errbuf_set(err, errlen, "output error");
				rc = -1;
			}
		}
		freeReplyObject(r);
	} while (rc == 0 && strcmp(cursor, "0") != 0);
	free(k);
	return rc;
}

/* A bulk string element as a number, -1 when missing or not a number. */
static long long
elem_num(const redisReply *r, size_t i)
{
	char *end;
	long long v;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements ||
	    r->element[i]->type != REDIS_REPLY_STRING)
		return -1;
	v = strtoll(r->element[i]->str, &end, 10);
	return end == r->element[i]->str || *end != '\0' || v < 0 ? -1 : v;
}

int
rqs_warmup_read(struct rqs *s, const char *ip, uint64_t now_wall_ms, struct rqs_warmup *w,
    char *err, size_t errlen)
{
	char *k_ip = key(s, RQ_K_WARMUP, ip), *k_day;
	char hour[16];
	redisReply *r;
	int rc = 0;

	memset(w, 0, sizeof *w);
	w->start = -1;
	k_day = xasprintf("%s:%llu", k_ip, (unsigned long long)(now_wall_ms / 86400000ull));
	snprintf(hour, sizeof hour, "h:%02u", (unsigned)(now_wall_ms / 3600000ull % 24));
	r = cmdv(s, 7, (const char *[]){ "HMGET", k_ip, "start", "shift", "hold_day", "hold_until",
	    "hold_reason" });
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
		snprintf(err, errlen, "HMGET %s: %s", k_ip, r == NULL ? s->rc->errstr :
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		rc = -1;
	} else {
		long long shift = elem_num(r, 1), hd = elem_num(r, 2), hu = elem_num(r, 3);
		w->start = elem_num(r, 0);
		w->shift = shift < 0 ? 0 : shift;
		if (hd > 0 && hu > (long long)now_wall_ms) {
			w->hold_day = hd > UINT32_MAX ? UINT32_MAX : (uint32_t)hd;
			w->hold_until = (uint64_t)hu;
			if (r->element[4]->type == REDIS_REPLY_STRING)
				snprintf(w->hold_reason, sizeof w->hold_reason, "%s", r->element[4]->str);
		}
	}
	if (r)
		freeReplyObject(r);
	if (rc == 0) {
		r = cmdv(s, 4, (const char *[]){ "HMGET", k_day, "d", hour });
		if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
			snprintf(err, errlen, "HMGET %s: %s", k_day, r == NULL ? s->rc->errstr :
			    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
			rc = -1;
		} else {
			long long d = elem_num(r, 0), h = elem_num(r, 1);
			w->sent_day = d < 0 ? 0 : d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
			w->sent_hour = h < 0 ? 0 : h > UINT32_MAX ? UINT32_MAX : (uint32_t)h;
		}
		if (r)
			freeReplyObject(r);
	}
	free(k_ip);
	free(k_day);
	return rc;
}

int
rqs_rates_read(struct rqs *s, uint64_t now_wall_ms, const char *dims, size_t max,
    struct rate_entry **out, size_t *n, char *err, size_t errlen)
{
	char *rp = key(s, RQ_K_RATE, NULL), now[32], mx[24];
	redisReply *r;
	int rc = -1;

	*out = NULL;
	*n = 0;
	snprintf(now, sizeof now, "%llu", (unsigned long long)now_wall_ms);
	snprintf(mx, sizeof mx, "%zu", max);
	/* A person waits for the answer: every past hash it needs is built. */
	r = cmdv(s, 8, (const char *[]){ "EVAL", rq_rates_read_script(), "0", rp, now, mx, dims, mx });
	if (r == NULL)
		errbuf_set(err, errlen, "Redis: %s", s->rc->errstr);
	else if (r->type == REDIS_REPLY_ERROR)
		errbuf_set(err, errlen, "reading the rate counters: %s", r->str);
	else {
		*n = rq_rates_parse(r, now_wall_ms, out);
		rc = 0;
	}
	if (r)
		freeReplyObject(r);
	free(rp);
	return rc;
}

void
rqs_rates_free(struct rate_entry *e, size_t n)
{
	rq_rates_free(e, n);
}
