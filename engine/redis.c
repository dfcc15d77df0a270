/*
 * redis.c - hiredis 0.14 on the io_uring loop, and the durable job queue.
 *
 * See redis.h for the model. The adapter follows integration.md §2:
 * one-shot POLL_ADD per direction (multishot poll is edge-triggered and
 * stalls hiredis' 16 KiB reads), redisAsyncHandleWrite only after a real
 * POLLOUT completion, cleanup removes armed polls by user_data and the
 * watcher is freed only when none is in flight. hiredis frees its context
 * itself after an error; we never touch it again and reconnect from a
 * timer with a fresh one.
 *
 * Settling writes live in an outbox until Redis answers them. A NULL
 * reply (connection lost) puts them back to be sent after reconnect; the
 * scripts are idempotent, so a write that did reach Redis before the drop
 * is a no-op the second time.
 */
#include "redis.h"
#include "config.h"
#include "loop.h"
#include "msg.h"
#include "util.h"

#include <errno.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char final_lua[] =
"local ok = 0\n"
"if ARGV[3] == 's' then\n"
"  ok = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
"  if ok == 1 then redis.call('XDEL', KEYS[1], ARGV[2]) end\n"
"else\n"
"  ok = redis.call('ZREM', KEYS[3], ARGV[2])\n"
"  redis.call('DEL', KEYS[4])\n"
"end\n"
"if ok == 1 then\n"
"  local ev = {}\n"
"  for i = 6, #ARGV do ev[#ev+1] = ARGV[i] end\n"
"  if tonumber(ARGV[4]) > 0 then\n"
"    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ev))\n"
"  else\n"
"    redis.call('XADD', KEYS[2], '*', unpack(ev))\n"
"  end\n"
"  if ARGV[5] ~= '' then redis.call('SADD', KEYS[5], ARGV[5]) end\n"
"end\n"
"return ok\n";

static const char defer_lua[] =
"local ok = 0\n"
"if ARGV[3] == 's' then\n"
"  ok = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
"  if ok == 1 then redis.call('XDEL', KEYS[1], ARGV[2]); redis.call('DEL', KEYS[4]) end\n"
"elseif redis.call('ZSCORE', KEYS[3], ARGV[2]) then\n"
"  ok = 1\n"
"end\n"
"if ok == 1 then\n"
"  local n = tonumber(ARGV[6])\n"
"  local h = {}\n"
"  for i = 7, 6 + n do h[#h+1] = ARGV[i] end\n"
"  redis.call('HSET', KEYS[4], unpack(h))\n"
"  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])\n"
"  local ev = {}\n"
"  for i = 7 + n, #ARGV do ev[#ev+1] = ARGV[i] end\n"
"  if tonumber(ARGV[4]) > 0 then\n"
"    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ev))\n"
"  else\n"
"    redis.call('XADD', KEYS[2], '*', unpack(ev))\n"
"  end\n"
"end\n"
"return ok\n";

static const char retry_lua[] =
"local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))\n"
"local out = {}\n"
"for _, id in ipairs(ids) do\n"
"  local h = redis.call('HGETALL', ARGV[4] .. id)\n"
"  if #h == 0 then redis.call('ZREM', KEYS[1], id)\n"
"  else redis.call('ZADD', KEYS[1], ARGV[2], id); out[#out+1] = {id, h} end\n"
"end\n"
"return out\n";

/* Keep our stream leases fresh: reset the idle time of entries that are
 * still ours, and only those (after a takeover they belong to another
 * instance, which must keep them). */
static const char refresh_lua[] =
"local n = 0\n"
"for i = 1, #ARGV - 1 do\n"
"  local p = redis.call('XPENDING', KEYS[1], 'volley', ARGV[i], ARGV[i], 1)\n"
"  if p[1] and p[1][2] == ARGV[#ARGV] then\n"
"    redis.call('XCLAIM', KEYS[1], 'volley', ARGV[#ARGV], 0, ARGV[i], 'JUSTID')\n"
"    n = n + 1\n"
"  end\n"
"end\n"
"return n\n";

enum { SCRIPT_FINAL = 0, SCRIPT_DEFER, SCRIPT_RETRY, SCRIPT_REFRESH, SCRIPT__N };
static const char *const scripts[SCRIPT__N] = { final_lua, defer_lua, retry_lua, refresh_lua };

/* One settling write, kept until Redis answered it. */
struct rq_cmd {
	struct rq_cmd *prev, *next;
	struct rq *q;
	char *cmd;
	size_t len;
	int in_flight;		/* sent on the current connection */
};

/* The hiredis event adapter for one connection. */
struct rq_io {
	struct io_op op_rd, op_wr;
	struct rq *q;
	redisAsyncContext *ac;
	int fd;
	int rd_armed, wr_armed, want_rd, want_wr, dead, in_cb;
};

struct rq {
	struct loop *loop;
	const struct config *cfg;
	struct rq_callbacks cb;
	void *arg;
	redisAsyncContext *ac;		/* NULL while disconnected */
	struct rq_io *io;
	int up;				/* handshake sent; commands may flow */
	struct timer reconnect;
	uint64_t backoff_ms;
	char sha[SCRIPT__N][41];
	struct rq_cmd outbox;		/* circular list head */
	size_t outstanding;
	struct timer resend;		/* after a transient error reply */
	struct timer ready_retry;	/* PING again while Redis is loading */
	int ready;			/* PONG seen on this connection */
	int reload_scripts;		/* NOSCRIPT seen: SCRIPT LOAD before resending */
	/* reads */
	int reading, reading_retry, claiming;
	int history;			/* re-reading our own pending list */
	char history_from[64];
	char claim_cursor[64];
	unsigned gen;			/* connection generation */
	char keybuf[512];
	char *k_jobs, *k_events, *k_retry, *k_supp, *k_jobp;
};

static void rq_connect(struct rq *q);
static void on_reconnect_timer(struct timer *t);

const char *
rq_key(const struct rq *q, const char *suffix)
{
	struct rq *m = (struct rq *)q;

	snprintf(m->keybuf, sizeof m->keybuf, "%s%s", q->cfg->prefix, suffix);
	return m->keybuf;
}

/* --- the loop adapter --- */

static void
io_maybe_free(struct rq_io *a)
{
	if (a->dead && !a->rd_armed && !a->wr_armed && !a->in_cb)
		free(a);
}

static void
io_on_rd(struct io_op *op, int res, uint32_t flags)
{
	struct rq_io *a = (struct rq_io *)((char *)op - offsetof(struct rq_io, op_rd));

	a->rd_armed = 0;
	if (!a->dead && a->want_rd) {
		a->in_cb = 1;
		redisAsyncHandleRead(a->ac);
		a->in_cb = 0;
	}
	io_maybe_free(a);
}

static void
io_on_wr(struct io_op *op, int res, uint32_t flags)
{
	struct rq_io *a = (struct rq_io *)((char *)op - offsetof(struct rq_io, op_wr));

	a->wr_armed = 0;
	if (!a->dead && a->want_wr) {
		a->in_cb = 1;
		redisAsyncHandleWrite(a->ac);
		a->in_cb = 0;
	}
	io_maybe_free(a);
}

static void
ev_add_read(void *p)
{
	struct rq_io *a = p;

	a->want_rd = 1;
	if (!a->rd_armed && !a->dead) {
		a->rd_armed = 1;
		loop_poll(a->q->loop, a->fd, POLLIN, &a->op_rd);
	}
}

static void
ev_del_read(void *p)
{
	((struct rq_io *)p)->want_rd = 0;
}

static void
ev_add_write(void *p)
{
	struct rq_io *a = p;

	a->want_wr = 1;
	if (!a->wr_armed && !a->dead) {
		a->wr_armed = 1;
		loop_poll(a->q->loop, a->fd, POLLOUT, &a->op_wr);
	}
}

static void
ev_del_write(void *p)
{
	((struct rq_io *)p)->want_wr = 0;
}

static void
ev_cleanup(void *p)
{
	struct rq_io *a = p;

	a->dead = 1;
	a->want_rd = a->want_wr = 0;
	if (a->rd_armed)
		loop_cancel_op(a->q->loop, &a->op_rd);
	if (a->wr_armed)
		loop_cancel_op(a->q->loop, &a->op_wr);
	if (a->q->io == a)
		a->q->io = NULL;
	io_maybe_free(a);
}

/* --- outbox --- */

static void
outbox_send(struct rq *q, struct rq_cmd *c);
static void load_scripts(struct rq *q);

static int
error_is_transient(const char *err)
{
	static const char *const transient[] = { "LOADING", "BUSY", "NOSCRIPT", "READONLY",
	    "OOM", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS" };

	/* The error code is the first word: "BUSY" must not match BUSYGROUP. */
	for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++) {
		size_t n = strlen(transient[i]);
		if (strncmp(err, transient[i], n) == 0 && (err[n] == ' ' || err[n] == '\0'))
			return 1;
	}
	return 0;
}

static void
on_resend_timer(struct timer *t)
{
	struct rq *q = (struct rq *)((char *)t - offsetof(struct rq, resend));

	if (!q->up)
		return;		/* the reconnect resends everything */
	if (q->reload_scripts) {
		q->reload_scripts = 0;
		load_scripts(q);
	}
	for (struct rq_cmd *c = q->outbox.next; c != &q->outbox; c = c->next)
		outbox_send(q, c);
}

static void
on_settle_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rq_cmd *c = priv;
	redisReply *r = reply;

	c->in_flight = 0;
	if (r == NULL)
		return;		/* connection lost: resent after reconnect */
	if (r->type == REDIS_REPLY_ERROR) {
		if (error_is_transient(r->str)) {
			/* Redis is loading, busy, read-only for a moment, or
			 * lost our scripts: keep the write and try again. */
			struct rq *q = c->q;
			if (strncmp(r->str, "NOSCRIPT", 8) == 0)
				q->reload_scripts = 1;
			if (!timer_armed(&q->resend)) {
				log_warn("redis", "settling write refused (%s); retrying", r->str);
				timer_set(q->loop, &q->resend, 500, on_resend_timer);
			}
			return;
		}
		/* Anything else is a bug or a broken Redis: the job stays
		 * pending and is taken over after the lease. */
		log_error("redis", "settling write failed: %s", r->str);
	}
	c->prev->next = c->next;
	c->next->prev = c->prev;
	c->q->outstanding--;
	free(c->cmd);
	free(c);
}

static void
outbox_send(struct rq *q, struct rq_cmd *c)
{
	if (!q->up || c->in_flight)
		return;
	if (redisAsyncFormattedCommand(q->ac, on_settle_reply, c, c->cmd, c->len) == REDIS_OK)
		c->in_flight = 1;
}

static void
outbox_add(struct rq *q, int argc, const char **argv, const size_t *lens)
{
	struct rq_cmd *c = xcalloc(1, sizeof *c);
	char *cmd;
	int n = redisFormatCommandArgv(&cmd, argc, argv, lens);

	if (n < 0)
		fatal("out of memory (redis command)");
	c->q = q;
	c->cmd = cmd;
	c->len = (size_t)n;
	c->prev = q->outbox.prev;
	c->next = &q->outbox;
	q->outbox.prev->next = c;
	q->outbox.prev = c;
	q->outstanding++;
	outbox_send(q, c);
}

size_t
rq_outstanding(const struct rq *q)
{
	return q->outstanding;
}

/* --- connection --- */

static void
on_connect(const redisAsyncContext *ac, int status)
{
	struct rq *q = ac->data;

	if (status != REDIS_OK) {
		log_error("redis", "connect to %s failed: %s; retrying in %llu ms",
		    q->cfg->redis_url_safe, ac->errstr, (unsigned long long)q->backoff_ms);
		q->ac = NULL;
		q->up = 0;
		q->reading = q->reading_retry = q->claiming = 0;
		if (!timer_armed(&q->reconnect))
			timer_set(q->loop, &q->reconnect, q->backoff_ms, on_reconnect_timer);
		return;
	}
	log_info("redis", "connected to %s", q->cfg->redis_url_safe);
	q->backoff_ms = 100;
}

static void on_reconnect_timer(struct timer *t);

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rq *q = ac->data;

	if (q == NULL)
		return;
	if (status != REDIS_OK)
		log_error("redis", "connection to %s lost: %s; reconnecting",
		    q->cfg->redis_url_safe, ac->errstr);
	q->ac = NULL;
	q->up = 0;
	q->reading = q->reading_retry = q->claiming = 0;
	if (q->backoff_ms < 100)
		q->backoff_ms = 100;
	if (!timer_armed(&q->reconnect))
		timer_set(q->loop, &q->reconnect, q->backoff_ms, on_reconnect_timer);
}

static void
on_reconnect_timer(struct timer *t)
{
	struct rq *q = (struct rq *)((char *)t - offsetof(struct rq, reconnect));

	q->backoff_ms = q->backoff_ms * 2 > 5000 ? 5000 : q->backoff_ms * 2;
	rq_connect(q);
}

static void
on_init_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rq *q = ac->data;
	redisReply *r = reply;
	const char *what = priv;

	if (r == NULL || q == NULL)
		return;
	if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0)
		log_error("redis", "%s: %s", what, r->str);
}

static void on_ready(redisAsyncContext *ac, void *reply, void *priv);

static void
on_ready_timer(struct timer *t)
{
	struct rq *q = (struct rq *)((char *)t - offsetof(struct rq, ready_retry));

	if (q->up && q->ac)
		redisAsyncCommand(q->ac, on_ready, NULL, "PING");
}

/* The handshake's last reply. A Redis still loading its data answers
 * -LOADING: ask again until it says PONG, then start. */
static void
on_ready(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rq *q = ac->data;
	redisReply *r = reply;

	if (r == NULL || q == NULL)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		log_warn("redis", "not ready yet: %s", r->str);
		timer_set(q->loop, &q->ready_retry, 500, on_ready_timer);
		return;
	}
	q->ready = 1;
	if (q->reload_scripts) {
		q->reload_scripts = 0;
		load_scripts(q);
	}
	if (q->cb.on_connected)
		q->cb.on_connected(q->arg);
}

static void
rq_connect(struct rq *q)
{
	const struct config *cfg = q->cfg;
	redisAsyncContext *ac;
	struct rq_io *a;

	if (cfg->redis_unix)
		ac = redisAsyncConnectUnix(cfg->redis_unix);
	else
		ac = redisAsyncConnect(cfg->redis_host, cfg->redis_port);
	if (ac == NULL)
		fatal("out of memory (redis context)");
	if (ac->err) {
		log_error("redis", "connect to %s: %s; retrying", cfg->redis_url_safe, ac->errstr);
		redisAsyncFree(ac);
		timer_set(q->loop, &q->reconnect, q->backoff_ms, on_reconnect_timer);
		return;
	}
	a = xcalloc(1, sizeof *a);
	a->q = q;
	a->ac = ac;
	a->fd = ac->c.fd;
	a->op_rd.cb = io_on_rd;
	a->op_wr.cb = io_on_wr;
	ac->ev.data = a;
	ac->ev.addRead = ev_add_read;
	ac->ev.delRead = ev_del_read;
	ac->ev.addWrite = ev_add_write;
	ac->ev.delWrite = ev_del_write;
	ac->ev.cleanup = ev_cleanup;
	ac->data = q;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	q->ac = ac;
	q->io = a;
	q->gen++;
	q->up = 1;
	q->ready = 0;
	q->history = 1;
	snprintf(q->history_from, sizeof q->history_from, "0");
	snprintf(q->claim_cursor, sizeof q->claim_cursor, "0-0");

	/* The handshake is queued at once; hiredis sends it when the
	 * connect completes, in order, before anything else. */
	if (cfg->redis_password && cfg->redis_user)
		redisAsyncCommand(ac, on_init_reply, "AUTH", "AUTH %s %s", cfg->redis_user,
		    cfg->redis_password);
	else if (cfg->redis_password)
		redisAsyncCommand(ac, on_init_reply, "AUTH", "AUTH %s", cfg->redis_password);
	if (cfg->redis_db)
		redisAsyncCommand(ac, on_init_reply, "SELECT", "SELECT %d", cfg->redis_db);
	load_scripts(q);
	redisAsyncCommand(ac, on_init_reply, "XGROUP CREATE", "XGROUP CREATE %s volley 0 MKSTREAM",
	    q->k_jobs);
	redisAsyncCommand(ac, on_ready, NULL, "PING");
	for (struct rq_cmd *c = q->outbox.next; c != &q->outbox; c = c->next)
		outbox_send(q, c);
}

static void
load_scripts(struct rq *q)
{
	for (int i = 0; i < SCRIPT__N; i++)
		redisAsyncCommand(q->ac, on_init_reply, "SCRIPT LOAD", "SCRIPT LOAD %s", scripts[i]);
}

int
rq_connected(const struct rq *q)
{
	return q->up && q->ready;
}

struct rq *
rq_new(struct loop *l, const struct config *cfg, const struct rq_callbacks *cb, void *arg)
{
	struct rq *q = xcalloc(1, sizeof *q);

	q->loop = l;
	q->cfg = cfg;
	q->cb = *cb;
	q->arg = arg;
	q->outbox.next = q->outbox.prev = &q->outbox;
	q->backoff_ms = 100;
	q->reconnect.cb = on_reconnect_timer;
	q->k_jobs = xasprintf("%sjobs", cfg->prefix);
	q->k_events = xasprintf("%sevents", cfg->prefix);
	q->k_retry = xasprintf("%sretry", cfg->prefix);
	q->k_supp = xasprintf("%ssuppressed", cfg->prefix);
	q->k_jobp = xasprintf("%sjob:", cfg->prefix);
	for (int i = 0; i < SCRIPT__N; i++) {
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;
		if (!EVP_Digest(scripts[i], strlen(scripts[i]), md, &mdlen, EVP_sha1(), NULL))
			fatal("SHA1 unavailable in OpenSSL");
		for (unsigned k = 0; k < mdlen && k < 20; k++)
			snprintf(q->sha[i] + 2 * k, 3, "%02x", md[k]);
	}
	rq_connect(q);
	return q;
}

void
rq_free(struct rq *q)
{
	if (q == NULL)
		return;
	timer_cancel(q->loop, &q->reconnect);
	timer_cancel(q->loop, &q->resend);
	timer_cancel(q->loop, &q->ready_retry);
	if (q->ac) {
		q->ac->data = NULL;
		redisAsyncFree(q->ac);
	}
	while (q->outbox.next != &q->outbox) {
		struct rq_cmd *c = q->outbox.next;
		c->prev->next = c->next;
		c->next->prev = c->prev;
		free(c->cmd);
		free(c);
	}
	free(q->k_jobs);
	free(q->k_events);
	free(q->k_retry);
	free(q->k_supp);
	free(q->k_jobp);
	free(q);
}

/* --- reads --- */

#define ENTRY_FIELDS_MAX 32	/* field/value pairs of one job read */

/* deliver_entries - hand an array of [key, [field, value, ...] or nil]
 * to the engine as typed entries; *n = how many the reply held. */
static void
deliver_entries(struct rq *q, enum job_origin origin, const redisReply *entries, size_t *n)
{
	struct rq_entry *ev;
	const char **f, **v;
	size_t *fl, *vl, k = 0, m = 0;

	*n = 0;
	if (entries == NULL || entries->type != REDIS_REPLY_ARRAY)
		return;
	*n = entries->elements;
	if (*n == 0)
		return;
	ev = xcalloc(*n, sizeof *ev);
	f = xcalloc(*n * ENTRY_FIELDS_MAX, sizeof *f);
	v = xcalloc(*n * ENTRY_FIELDS_MAX, sizeof *v);
	fl = xcalloc(*n * ENTRY_FIELDS_MAX, sizeof *fl);
	vl = xcalloc(*n * ENTRY_FIELDS_MAX, sizeof *vl);
	for (size_t i = 0; i < entries->elements; i++) {
		const redisReply *en = entries->element[i], *kv;
		size_t base = k * ENTRY_FIELDS_MAX;

		if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
		    en->element[0]->type != REDIS_REPLY_STRING ||
		    en->element[1]->type != REDIS_REPLY_ARRAY)
			continue;	/* deleted entry (nil fields) */
		kv = en->element[1];
		ev[k].key = en->element[0]->str;
		ev[k].fields = f + base;
		ev[k].values = v + base;
		ev[k].flens = fl + base;
		ev[k].vlens = vl + base;
		m = 0;
		for (size_t j = 0; j + 1 < kv->elements && m < ENTRY_FIELDS_MAX; j += 2) {
			const redisReply *a = kv->element[j], *b = kv->element[j + 1];
			if (a->type != REDIS_REPLY_STRING || b->type != REDIS_REPLY_STRING)
				continue;
			f[base + m] = a->str; fl[base + m] = a->len;
			v[base + m] = b->str; vl[base + m] = b->len;
			m++;
		}
		ev[k].n = m;
		k++;
	}
	if (k > 0)
		q->cb.on_entries(q->arg, origin, ev, k);
	free(ev);
	free(f);
	free(v);
	free(fl);
	free(vl);
}

static void
on_xread(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rq *q = ac->data;
	redisReply *r = reply;
	const redisReply *entries = NULL;
	size_t n = 0;

	if (q == NULL)
		return;
	q->reading = 0;
	if (r == NULL)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		log_error("redis", "XREADGROUP: %s", r->str);
		if (strncmp(r->str, "NOGROUP", 7) == 0)
			redisAsyncCommand(q->ac, on_init_reply, "XGROUP CREATE",
			    "XGROUP CREATE %s volley 0 MKSTREAM", q->k_jobs);
		if (q->cb.on_read_done)
			q->cb.on_read_done(q->arg, JOB_FROM_STREAM, 0);
		return;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
		const redisReply *s = r->element[0];
		if (s->type == REDIS_REPLY_ARRAY && s->elements == 2)
			entries = s->element[1];
	}
	if (q->history) {
		/* Our own pending list: entries whose data was deleted come
		 * back with nil fields; acknowledge those, nobody owns them. */
		if (entries == NULL || entries->elements == 0) {
			q->history = 0;
		} else {
			const redisReply *last = entries->element[entries->elements - 1];
			if (last->type == REDIS_REPLY_ARRAY && last->elements >= 1 &&
			    last->element[0]->type == REDIS_REPLY_STRING)
				snprintf(q->history_from, sizeof q->history_from, "%s",
				    last->element[0]->str);
			for (size_t i = 0; i < entries->elements; i++) {
				const redisReply *e = entries->element[i];
				if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
				    e->element[1]->type == REDIS_REPLY_NIL)
					redisAsyncCommand(q->ac, NULL, NULL, "XACK %s volley %s",
					    q->k_jobs, e->element[0]->str);
			}
		}
	}
	deliver_entries(q, JOB_FROM_STREAM, entries, &n);
	if (q->cb.on_read_done)
		q->cb.on_read_done(q->arg, JOB_FROM_STREAM, n);
}

void
rq_fetch(struct rq *q, unsigned max)
{
	if (!q->up || !q->ready || q->reading || max == 0)
		return;
	q->reading = 1;
	redisAsyncCommand(q->ac, on_xread, NULL,
	    "XREADGROUP GROUP volley %s COUNT %u STREAMS %s %s",
	    q->cfg->instance, max, q->k_jobs, q->history ? q->history_from : ">");
}

static void
on_retry(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rq *q = ac->data;
	redisReply *r = reply;
	size_t n = 0;

	if (q == NULL)
		return;
	q->reading_retry = 0;
	if (r == NULL)
		return;
	if (r->type == REDIS_REPLY_ERROR)
		log_error("redis", "retry lease: %s", r->str);
	else
		deliver_entries(q, JOB_FROM_RETRY, r, &n);
	if (q->cb.on_read_done)
		q->cb.on_read_done(q->arg, JOB_FROM_RETRY, n);
}

void
rq_fetch_retries(struct rq *q, unsigned max, uint64_t now_wall_ms)
{
	char now[32], until[32], cnt[16];

	if (!q->up || !q->ready || q->reading_retry || max == 0)
		return;
	q->reading_retry = 1;
	snprintf(now, sizeof now, "%llu", (unsigned long long)now_wall_ms);
	snprintf(until, sizeof until, "%llu", (unsigned long long)(now_wall_ms + q->cfg->lease_ms));
	snprintf(cnt, sizeof cnt, "%u", max);
	redisAsyncCommand(q->ac, on_retry, NULL, "EVALSHA %s 1 %s %s %s %s %s",
	    q->sha[SCRIPT_RETRY], q->k_retry, now, until, cnt, q->k_jobp);
}

static void
on_claim(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rq *q = ac->data;
	redisReply *r = reply;
	size_t n = 0;

	if (q == NULL)
		return;
	q->claiming = 0;
	if (r == NULL)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		log_error("redis", "XAUTOCLAIM: %s", r->str);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 2)
		return;
	if (r->element[0]->type == REDIS_REPLY_STRING)
		snprintf(q->claim_cursor, sizeof q->claim_cursor, "%s", r->element[0]->str);
	if (r->element[1]->elements > 0)
		log_info("redis", "took over %zu job(s) idle past the lease",
		    r->element[1]->elements);
	deliver_entries(q, JOB_FROM_STREAM, r->element[1], &n);
}

void
rq_autoclaim(struct rq *q, unsigned max)
{
	if (!q->up || !q->ready || q->claiming)
		return;
	q->claiming = 1;
	redisAsyncCommand(q->ac, on_claim, NULL,
	    "XAUTOCLAIM %s volley %s %llu %s COUNT %u", q->k_jobs, q->cfg->instance,
	    (unsigned long long)q->cfg->lease_ms, q->claim_cursor, max);
}

int
rq_read_busy(const struct rq *q)
{
	return q->reading || q->reading_retry || q->claiming;
}

/* --- settling writes --- */

/* A settling script's argv: keys, control args, job hash fields and event
 * fields, about 75 in all today. Overflow is a bug (panic), not input. */
#define ARGV_MAX 128
#define ARGV_NUMS 16

struct argv {
	const char *v[ARGV_MAX];
	size_t l[ARGV_MAX];
	int n;
	char num[ARGV_NUMS][32];
	int nnum;
};

static void
av_add(struct argv *a, const char *s)
{
	if (a->n >= ARGV_MAX)
		panic("argv overflow");
	a->v[a->n] = s ? s : "";
	a->l[a->n] = strlen(a->v[a->n]);
	a->n++;
}

static void
av_addn(struct argv *a, const char *s, size_t len)
{
	if (a->n >= ARGV_MAX)
		panic("argv overflow");
	a->v[a->n] = s;
	a->l[a->n] = len;
	a->n++;
}

static void
av_addu(struct argv *a, unsigned long long v)
{
	if (a->nnum >= ARGV_NUMS)
		panic("argv number overflow");
	snprintf(a->num[a->nnum], sizeof a->num[0], "%llu", v);
	av_add(a, a->num[a->nnum++]);
}

static void
event_fields(struct argv *a, const struct job *j, const struct job_outcome *o,
    const struct config *cfg, char *codebuf, size_t codelen)
{
	av_add(a, "id"); av_add(a, j->id);
	av_add(a, "to"); av_add(a, j->to);
	av_add(a, "status"); av_add(a, job_status_name(o->status));
	if (o->code >= 100 && o->code <= 999)
		snprintf(codebuf, codelen, "%03d", o->code);
	else
		codebuf[0] = '\0';
	av_add(a, "code"); av_add(a, codebuf);
	av_add(a, "enh"); av_add(a, o->enh);
	av_add(a, "reply"); av_add(a, o->reply);
	av_add(a, "mx"); av_add(a, o->mx);
	av_add(a, "ip"); av_add(a, o->ip);
	av_add(a, "pool"); av_add(a, j->pool ? j->pool : "default");
	av_add(a, "attempt"); av_addu(a, j->attempts + (o->no_attempt || o->status == JOB_SUPPRESSED ||
	    o->status == JOB_FAILED ? 0 : 1));
	av_add(a, "campaign"); av_add(a, j->campaign);
	av_add(a, "ts"); av_addu(a, clock_wall_ms());
	if (o->has_class) {
		av_add(a, "class"); av_add(a, bounce_class_name(o->cls));
	}
	if (j->tenant) {
		av_add(a, "tenant"); av_add(a, j->tenant);
	}
	if (j->domain) {
		av_add(a, "domain"); av_add(a, j->domain);
	}
	av_add(a, "key"); av_add(a, j->key);
	av_add(a, "instance"); av_add(a, cfg->instance);
}

void
rq_final(struct rq *q, const struct job *j, const struct job_outcome *o, int suppress)
{
	struct argv a = { .n = 0 };
	char hashkey[600], code[16];

	snprintf(hashkey, sizeof hashkey, "%s%s", q->k_jobp, j->key);
	av_add(&a, "EVALSHA"); av_add(&a, q->sha[SCRIPT_FINAL]); av_add(&a, "5");
	av_add(&a, q->k_jobs); av_add(&a, q->k_events); av_add(&a, q->k_retry);
	av_add(&a, hashkey); av_add(&a, q->k_supp);
	av_add(&a, "volley"); av_add(&a, j->key);
	av_add(&a, j->origin == JOB_FROM_STREAM ? "s" : "r");
	av_addu(&a, q->cfg->events_maxlen);
	av_add(&a, suppress && j->to_lc ? j->to_lc : "");
	event_fields(&a, j, o, q->cfg, code, sizeof code);
	outbox_add(q, a.n, a.v, a.l);
}

void
rq_defer(struct rq *q, const struct job *j, const struct job_outcome *o, uint64_t due_wall_ms)
{
	struct argv a = { .n = 0 };
	char hashkey[600], code[16], nh[8];
	char *unstuffed = NULL;
	size_t ulen = 0;
	int nhash_at;

	snprintf(hashkey, sizeof hashkey, "%s%s", q->k_jobp, j->key);
	if (o->code >= 100 && o->code <= 999)
		snprintf(code, sizeof code, "%03d", o->code);
	else
		code[0] = '\0';
	av_add(&a, "EVALSHA"); av_add(&a, q->sha[SCRIPT_DEFER]); av_add(&a, "4");
	av_add(&a, q->k_jobs); av_add(&a, q->k_events); av_add(&a, q->k_retry);
	av_add(&a, hashkey);
	av_add(&a, "volley"); av_add(&a, j->key);
	av_add(&a, j->origin == JOB_FROM_STREAM ? "s" : "r");
	av_addu(&a, q->cfg->events_maxlen);
	av_addu(&a, due_wall_ms);
	nhash_at = a.n;
	av_add(&a, "");		/* number of hash items, set below */
	{
		int start = a.n;
		av_add(&a, "attempts"); av_addu(&a, j->attempts + 1);
		/* What went wrong last: an `expired` event can say it. */
		av_add(&a, "last_reply"); av_add(&a, o->reply);
		av_add(&a, "last_code"); av_add(&a, o->code >= 100 && o->code <= 999 ? code : "");
		av_add(&a, "last_enh"); av_add(&a, o->enh);
		av_add(&a, "last_class"); av_add(&a, o->has_class ? bounce_class_name(o->cls) : "");
		if (j->origin == JOB_FROM_STREAM) {
			/* The whole job moves into the hash: the stream entry
			 * is deleted, so upstream trimming can never lose it. */
			av_add(&a, "id"); av_add(&a, j->id);
			av_add(&a, "to"); av_add(&a, j->to);
			av_add(&a, "from"); av_add(&a, j->from);
			av_add(&a, "expires_at"); av_addu(&a, j->expires_at_ms / 1000);
			if (j->pool) { av_add(&a, "pool"); av_add(&a, j->pool); }
			if (j->campaign) { av_add(&a, "campaign"); av_add(&a, j->campaign); }
			if (j->tenant) { av_add(&a, "tenant"); av_add(&a, j->tenant); }
			if (j->msg_ref) {
				av_add(&a, "msg_ref"); av_add(&a, j->msg_ref);
			} else if (j->body) {
				unstuffed = xmalloc(j->body->len + 1);
				ulen = msg_unstuff(j->body->data, j->body->len, unstuffed);
				av_add(&a, "msg"); av_addn(&a, unstuffed, ulen);
			}
		}
		snprintf(nh, sizeof nh, "%d", a.n - start);
		a.v[nhash_at] = nh;
		a.l[nhash_at] = strlen(nh);
	}
	event_fields(&a, j, o, q->cfg, code, sizeof code);
	outbox_add(q, a.n, a.v, a.l);
	free(unstuffed);
}

void
rq_release_retry(struct rq *q, const struct job *j, uint64_t now_wall_ms)
{
	char score[32];
	const char *argv[5];
	size_t lens[5];

	if (j->origin != JOB_FROM_RETRY)
		return;
	snprintf(score, sizeof score, "%llu", (unsigned long long)now_wall_ms);
	argv[0] = "ZADD"; argv[1] = q->k_retry; argv[2] = "XX"; argv[3] = score; argv[4] = j->key;
	for (int i = 0; i < 5; i++)
		lens[i] = strlen(argv[i]);
	outbox_add(q, 5, argv, lens);
}

void
rq_refresh(struct rq *q, const char *const *stream_keys, size_t ns,
    const char *const *retry_keys, size_t nr, uint64_t until_wall_ms)
{
	char score[32];

	if (!q->up)
		return;
	if (ns > 0) {
		const char **argv = xcalloc(ns + 6, sizeof *argv);
		size_t *lens = xcalloc(ns + 6, sizeof *lens);
		size_t n = 0;
		argv[n++] = "EVALSHA"; argv[n++] = q->sha[SCRIPT_REFRESH]; argv[n++] = "1";
		argv[n++] = q->k_jobs;
		for (size_t i = 0; i < ns; i++)
			argv[n++] = stream_keys[i];
		argv[n++] = q->cfg->instance;
		for (size_t i = 0; i < n; i++)
			lens[i] = strlen(argv[i]);
		redisAsyncCommandArgv(q->ac, NULL, NULL, (int)n, argv, lens);
		free(argv);
		free(lens);
	}
	snprintf(score, sizeof score, "%llu", (unsigned long long)until_wall_ms);
	for (size_t i = 0; i < nr; i++)
		redisAsyncCommand(q->ac, NULL, NULL, "ZADD %s XX %s %s", q->k_retry, score,
		    retry_keys[i]);
}

/* --- generic commands --- */

struct rq_call {
	void (*cb)(void *arg, const redisReply *r);
	void *arg;
};

static void
on_call(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rq_call *c = priv;

	c->cb(c->arg, reply);
	free(c);
}

int
rq_command(struct rq *q, void (*cb)(void *arg, const redisReply *r), void *arg,
    const char *fmt, ...)
{
	va_list ap;
	struct rq_call *c;
	int r;

	if (!q->up)
		return -1;
	c = xmalloc(sizeof *c);
	c->cb = cb;
	c->arg = arg;
	va_start(ap, fmt);
	r = redisvAsyncCommand(q->ac, on_call, c, fmt, ap);
	va_end(ap);
	if (r != REDIS_OK) {
		free(c);
		return -1;
	}
	return 0;
}

int
rq_call_argv(struct rq *q, void (*cb)(void *arg, const redisReply *r), void *arg,
    int argc, const char **argv, const size_t *lens)
{
	struct rq_call *c;

	if (!q->up)
		return -1;
	c = xmalloc(sizeof *c);
	c->cb = cb;
	c->arg = arg;
	if (redisAsyncCommandArgv(q->ac, on_call, c, argc, argv, lens) != REDIS_OK) {
		free(c);
		return -1;
	}
	return 0;
}

void
rq_command_argv(struct rq *q, int argc, const char **argv, const size_t *lens)
{
	if (q->up)
		redisAsyncCommandArgv(q->ac, NULL, NULL, argc, argv, lens);
}

/* --- typed calls for the engine --- */

struct rq_supp {
	void (*cb)(void *arg, const int *member, size_t n);
	void *arg;
	size_t n;
};

static void
on_suppressed(void *arg, const redisReply *r)
{
	struct rq_supp *c = arg;
	int *member = NULL;

	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == c->n) {
		member = xcalloc(c->n + 1, sizeof *member);
		for (size_t i = 0; i < c->n; i++)
			member[i] = r->element[i]->type == REDIS_REPLY_INTEGER &&
			    r->element[i]->integer == 1;
	} else if (r != NULL) {
		log_error("redis", "suppression check failed: %s",
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	}
	c->cb(c->arg, member, member ? c->n : 0);
	free(member);
	free(c);
}

void
rq_suppressed(struct rq *q, const char *const *addrs, size_t n,
    void (*cb)(void *arg, const int *member, size_t n), void *arg)
{
	const char **argv = xcalloc(n + 2, sizeof *argv);
	size_t *lens = xcalloc(n + 2, sizeof *lens);
	struct rq_supp *c = xmalloc(sizeof *c);

	c->cb = cb;
	c->arg = arg;
	c->n = n;
	argv[0] = "SMISMEMBER";
	argv[1] = q->k_supp;
	for (size_t i = 0; i < n; i++)
		argv[i + 2] = addrs[i];
	for (size_t i = 0; i < n + 2; i++)
		lens[i] = strlen(argv[i]);
	if (rq_call_argv(q, on_suppressed, c, (int)(n + 2), argv, lens) != 0)
		on_suppressed(c, NULL);
	free(argv);
	free(lens);
}

struct rq_body {
	void (*cb)(void *arg, enum rq_body_status st, const char *data, size_t len);
	void *arg;
};

static void
on_body_reply(void *arg, const redisReply *r)
{
	struct rq_body *c = arg;

	if (r != NULL && r->type == REDIS_REPLY_STRING)
		c->cb(c->arg, RQ_BODY_OK, r->str, r->len);
	else if (r != NULL && r->type == REDIS_REPLY_NIL)
		c->cb(c->arg, RQ_BODY_MISSING, NULL, 0);
	else {
		if (r != NULL)
			log_warn("redis", "GET of a message body: %s",
			    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		c->cb(c->arg, RQ_BODY_ERROR, NULL, 0);
	}
	free(c);
}

void
rq_fetch_body(struct rq *q, const char *key,
    void (*cb)(void *arg, enum rq_body_status st, const char *data, size_t len), void *arg)
{
	struct rq_body *c = xmalloc(sizeof *c);
	const char *argv[2] = { "GET", key };
	size_t lens[2] = { 3, strlen(key) };

	c->cb = cb;
	c->arg = arg;
	if (rq_call_argv(q, on_body_reply, c, 2, argv, lens) != 0)
		on_body_reply(c, NULL);
}

void
rq_publish_stats(struct rq *q, const struct rq_stats *st)
{
	char key[300], ikey[300], num[11][32];
	const char *argv[40];
	size_t lens[40];
	int n = 0;

	snprintf(key, sizeof key, "%sinstance:%s", q->cfg->prefix, q->cfg->instance);
	snprintf(ikey, sizeof ikey, "%sinstances", q->cfg->prefix);
	snprintf(num[0], 32, "%d", st->pid);
	snprintf(num[1], 32, "%llu", (unsigned long long)st->started_ms);
	snprintf(num[2], 32, "%llu", (unsigned long long)st->heartbeat_ms);
	snprintf(num[3], 32, "%u", st->sessions);
	snprintf(num[4], 32, "%zu", st->in_memory);
	snprintf(num[5], 32, "%llu", (unsigned long long)st->delivered);
	snprintf(num[6], 32, "%llu", (unsigned long long)st->deferred);
	snprintf(num[7], 32, "%llu", (unsigned long long)st->bounced);
	snprintf(num[8], 32, "%llu", (unsigned long long)st->expired);
	snprintf(num[9], 32, "%llu", (unsigned long long)st->failed);
	snprintf(num[10], 32, "%llu", (unsigned long long)st->suppressed);
	argv[n++] = "HSET"; argv[n++] = key;
	argv[n++] = "pid"; argv[n++] = num[0];
	argv[n++] = "started_ms"; argv[n++] = num[1];
	argv[n++] = "heartbeat_ms"; argv[n++] = num[2];
	argv[n++] = "sessions"; argv[n++] = num[3];
	argv[n++] = "in_memory"; argv[n++] = num[4];
	argv[n++] = "delivered"; argv[n++] = num[5];
	argv[n++] = "deferred"; argv[n++] = num[6];
	argv[n++] = "bounced"; argv[n++] = num[7];
	argv[n++] = "expired"; argv[n++] = num[8];
	argv[n++] = "failed"; argv[n++] = num[9];
	argv[n++] = "suppressed"; argv[n++] = num[10];
	argv[n++] = "dests"; argv[n++] = st->dests ? st->dests : "";
	argv[n++] = "sites"; argv[n++] = st->sites ? st->sites : "";
	argv[n++] = "ips"; argv[n++] = st->ips ? st->ips : "";
	for (int i = 0; i < n; i++)
		lens[i] = strlen(argv[i]);
	rq_command_argv(q, n, argv, lens);
	{
		const char *ex[3] = { "EXPIRE", key, "30" };
		size_t el[3] = { 6, strlen(key), 2 };
		const char *sa[3] = { "SADD", ikey, q->cfg->instance };
		size_t sl[3] = { 4, strlen(ikey), strlen(q->cfg->instance) };
		rq_command_argv(q, 3, ex, el);
		rq_command_argv(q, 3, sa, sl);
	}
}

struct rq_drain {
	struct rq *q;
	void (*cb)(void *arg, int empty);
	void *arg;
};

static void
on_drain_zcard(void *arg, const redisReply *r)
{
	struct rq_drain *c = arg;

	c->cb(c->arg, r && r->type == REDIS_REPLY_INTEGER && r->integer == 0);
	free(c);
}

/* Settled entries are deleted from the stream (XDEL with the ack), so an
 * empty stream means nothing unread and nothing pending, including what
 * was added after the last read. */
static void
on_drain_xlen(void *arg, const redisReply *r)
{
	struct rq_drain *c = arg;

	if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 0 &&
	    rq_command(c->q, on_drain_zcard, c, "ZCARD %s", c->q->k_retry) == 0)
		return;
	c->cb(c->arg, 0);
	free(c);
}

void
rq_drain_check(struct rq *q, void (*cb)(void *arg, int empty), void *arg)
{
	struct rq_drain *c = xmalloc(sizeof *c);

	c->q = q;
	c->cb = cb;
	c->arg = arg;
	if (rq_command(q, on_drain_xlen, c, "XLEN %s", q->k_jobs) != 0) {
		free(c);
		cb(arg, 0);
	}
}
