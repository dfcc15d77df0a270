/*
 * redis.c - hiredis 0.14 on the io_uring loop, and the durable job queue.
 *
 * See redis.h for the model and docs/redis.md for the schema. The adapter
 * uses one-shot POLL_ADD per direction (multishot poll is edge-triggered
 * and stalls hiredis' 16 KiB reads), redisAsyncHandleWrite only after a
 * real POLLOUT completion, cleanup removes armed polls by user_data and
 * the watcher is freed only when none is in flight. hiredis frees its
 * context itself after an error; we never touch it again and reconnect
 * from a timer with a fresh one.
 *
 * Every command goes through send_*(): it counts the commands in flight
 * for the reply watchdog and notices NOSCRIPT on any path (the scripts
 * are loaded again at once, before whatever is sent next).
 *
 * Settling writes live in an outbox until Redis answers them. A NULL
 * reply (connection lost) puts them back to be sent after reconnect; the
 * scripts are idempotent (PREFIXdone:KEY for stream jobs, the retry ZSET
 * member for retries), so a write that did reach Redis before the drop
 * is a no-op the second time.
 */
#include "redis.h"
#include "shaper.h"
#include "redis_schema.h"
#include "redis_sync.h"
#include "config.h"
#include "inbound.h"
#include "loop.h"
#include "map.h"
#include "msg.h"
#include "util.h"

#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * The feedback loop's counters (rates.h; docs/redis.md), counted by the
 * scripts that write the events, so exactly once per event. rp: the key
 * prefix (PREFIXrate:, '' = off); f: the event's fields by name; life: a
 * synchronous outcome, also counted in the campaign's lifetime hash. Per
 * (dimension, name) that is set: HINCRBY of PREFIXrate:DIM:NAME:HOUR
 * (fields d, b, b:CLASS, c); the first write of a field in an hour sets
 * the TTL and marks the name active (PREFIXrate:active, score ts ms).
 * The lifetime hash (n outcomes, b, b:CLASS) copies its bounce fields to
 * @N:b... when n reaches a checkpoint N (RATES_CHECKPOINTS).
 */
#define RATES_LUA \
"local function rate_count(rp, f, life)\n" \
"  if rp == nil or rp == '' then return end\n" \
"  local st, fld = f['status'], nil\n" \
"  if st == 'delivered' then fld = 'd' elseif st == 'bounced' then fld = 'b'\n" \
"  elseif st == 'complained' then fld = 'c' else return end\n" \
"  local ts = tonumber(f['ts'])\n" \
"  if not ts then return end\n" \
"  local h = string.format('%d', math.floor(ts / 3600000))\n" \
"  local cls = f['class']\n" \
"  if fld ~= 'b' or not cls or cls == '' or #cls > 40 then cls = nil end\n" \
"  for _, dim in ipairs({'campaign', 'tenant', 'pool', 'ip', 'site'}) do\n" \
"    local name = f[dim]\n" \
"    if name and name ~= '' and #name <= 200 then\n" \
"      local k = rp .. dim .. ':' .. name .. ':' .. h\n" \
"      local n = redis.call('HINCRBY', k, fld, 1)\n" \
"      if n == 1 then redis.call('EXPIRE', k, 93600) end\n" \
"      if n == 1 or n % 50 == 0 then\n" \
"        redis.call('ZADD', rp .. 'active', ts, dim .. ':' .. name)\n" \
"      end\n" \
"      if cls then redis.call('HINCRBY', k, 'b:' .. cls, 1) end\n" \
"    end\n" \
"  end\n" \
"  local c = f['campaign']\n" \
"  if not life or fld == 'c' or not c or c == '' or #c > 200 then return end\n" \
"  local k = rp .. 'campaign:' .. c .. ':life'\n" \
"  if fld == 'b' then\n" \
"    redis.call('HINCRBY', k, 'b', 1)\n" \
"    if cls then redis.call('HINCRBY', k, 'b:' .. cls, 1) end\n" \
"  end\n" \
"  local n = redis.call('HINCRBY', k, 'n', 1)\n" \
"  if n == 1 then redis.call('EXPIRE', k, 2592000) end\n" \
"  if n == 100 or n == 200 or n == 500 or n == 1000 or n == 2000 or n == 5000 or n == 10000 then\n" \
"    local all, cp = redis.call('HGETALL', k), {'@' .. n, '1'}\n" \
"    for i = 1, #all - 1, 2 do\n" \
"      if all[i] == 'b' or string.sub(all[i], 1, 2) == 'b:' then\n" \
"        cp[#cp+1] = '@' .. n .. ':' .. all[i]; cp[#cp+1] = all[i+1]\n" \
"      end\n" \
"    end\n" \
"    redis.call('HSET', k, unpack(cp))\n" \
"    redis.call('EXPIRE', k, 2592000)\n" \
"  end\n" \
"end\n" \
"local function fields_of(e)\n" \
"  local f = {}\n" \
"  for i = 1, #e - 1, 2 do f[e[i]] = e[i+1] end\n" \
"  return f\n" \
"end\n"

/*
 * The scripts. Each one writes its event BEFORE it acks or deletes
 * anything: a script that fails half way (OOM, a wrong key type) leaves the
 * job pending rather than acked without an event.
 *
 * final: KEYS jobs (the job's own stream), events, retry, job hash,
 * suppressed, done marker, sent record, rate counter prefix ('' = none:
 * see RATES_LUA), suppression info hash (address -> "status:class ts",
 * written with the SADD). ARGV group, key, stream entry ID
 * ('' for a leased retry), events maxlen, address to suppress or '',
 * marker ttl ms, sent record ttl ms, n sent record items (0: none), the
 * items, then the event's field/value pairs. The sent record (a delivered
 * job's to, campaign, tenant, pool, ip, mx: inbound reports are tied back
 * to it) is written with the event, never by a duplicate settlement. The
 * key and the entry ID differ for
 * a job of the high stream (see JOB_HIGH_KEY_PREFIX). A stream job is
 * settled once: the marker says it was (XACK's answer cannot: an entry
 * trimmed while held is gone from the pending list). A retry is settled
 * while its ZSET member is there.
 */
static const char final_lua[] = RATES_LUA
"local ns = tonumber(ARGV[8])\n"
"local function ev(from)\n"
"  local e = {}\n"
"  for i = from, #ARGV do e[#e+1] = ARGV[i] end\n"
"  if tonumber(ARGV[4]) > 0 then\n"
"    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(e))\n"
"  else\n"
"    redis.call('XADD', KEYS[2], '*', unpack(e))\n"
"  end\n"
"  if ns > 0 then\n"
"    local h = {}\n"
"    for i = 9, 8 + ns do h[#h+1] = ARGV[i] end\n"
"    redis.call('HSET', KEYS[7], unpack(h))\n"
"    redis.call('PEXPIRE', KEYS[7], ARGV[7])\n"
"  end\n"
"  rate_count(KEYS[8], fields_of(e), true)\n"
"end\n"
"if ARGV[3] ~= '' then\n"
"  if redis.call('EXISTS', KEYS[6]) == 1 then\n"
"    redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])\n"
"    redis.call('XDEL', KEYS[1], ARGV[3])\n"
"    return 0\n"
"  end\n"
"  ev(9 + ns)\n"
"  redis.call('SET', KEYS[6], '1', 'PX', ARGV[6])\n"
"  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])\n"
"  redis.call('XDEL', KEYS[1], ARGV[3])\n"
"else\n"
"  if not redis.call('ZSCORE', KEYS[3], ARGV[2]) then return 0 end\n"
"  ev(9 + ns)\n"
"  redis.call('ZREM', KEYS[3], ARGV[2])\n"
"  redis.call('DEL', KEYS[4])\n"
"end\n"
"if ARGV[5] ~= '' then\n"
"  redis.call('SADD', KEYS[5], ARGV[5])\n"
"  local f = {}\n"
"  for i = 9 + ns, #ARGV - 1, 2 do f[ARGV[i]] = ARGV[i+1] end\n"
"  redis.call('HSET', KEYS[9], ARGV[5], (f['status'] or 'bounced') .. ':' .. (f['class'] or 'unknown') .. ' ' .. (f['ts'] or ''))\n"
"end\n"
"return 1\n";

/*
 * defer: KEYS jobs (the job's own stream), events, retry (the ZSET a
 * leased retry is in), job hash, done marker, target retry ZSET (where
 * the job waits now: PREFIXretry or PREFIXretry:pool:NAME). ARGV group,
 * key (the retry member), stream entry ID ('' for a leased retry), events
 * maxlen, due ms, marker ttl, n hash items, the hash items, then the
 * event. A retry whose hash is gone (evicted, deleted) cannot be
 * deferred: it ends `failed` instead, with the reason in the event.
 * Without event fields it parks a job: the same move, quietly (a retry
 * whose hash is gone then moves as it is, and whoever leases it next
 * fails it).
 */
static const char defer_lua[] =
"local n = tonumber(ARGV[7])\n"
"local e = {}\n"
"for i = 8 + n, #ARGV do e[#e+1] = ARGV[i] end\n"
"local quiet = #e == 0\n"
"local function ev()\n"
"  if quiet then return end\n"
"  if tonumber(ARGV[4]) > 0 then\n"
"    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(e))\n"
"  else\n"
"    redis.call('XADD', KEYS[2], '*', unpack(e))\n"
"  end\n"
"end\n"
"if ARGV[3] ~= '' then\n"
"  if redis.call('EXISTS', KEYS[5]) == 1 then\n"
"    redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])\n"
"    redis.call('XDEL', KEYS[1], ARGV[3])\n"
"    return 0\n"
"  end\n"
"else\n"
"  if not redis.call('ZSCORE', KEYS[3], ARGV[2]) then return 0 end\n"
"  if quiet and redis.call('EXISTS', KEYS[4]) == 0 then\n"
"    redis.call('ZREM', KEYS[3], ARGV[2])\n"
"    redis.call('ZADD', KEYS[6], ARGV[5], ARGV[2])\n"
"    return 1\n"
"  end\n"
"  if not quiet and redis.call('EXISTS', KEYS[4]) == 0 then\n"
"    for i = 1, #e - 1, 2 do\n"
"      if e[i] == 'status' then e[i+1] = 'failed' end\n"
"      if e[i] == 'reply' then e[i+1] = 'the retry data of this job was lost (' .. KEYS[4] .. ' is missing: evicted or deleted); last attempt: ' .. e[i+1] end\n"
"    end\n"
"    ev()\n"
"    redis.call('ZREM', KEYS[3], ARGV[2])\n"
"    return 2\n"
"  end\n"
"end\n"
"ev()\n"
"if ARGV[3] ~= '' then redis.call('DEL', KEYS[4]) end\n"
"local h = {}\n"
"for i = 8, 7 + n do h[#h+1] = ARGV[i] end\n"
"redis.call('HSET', KEYS[4], unpack(h))\n"
"if ARGV[3] == '' and KEYS[3] ~= KEYS[6] then redis.call('ZREM', KEYS[3], ARGV[2]) end\n"
"redis.call('ZADD', KEYS[6], ARGV[5], ARGV[2])\n"
"if ARGV[3] ~= '' then\n"
"  redis.call('SET', KEYS[5], '1', 'PX', ARGV[6])\n"
"  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])\n"
"  redis.call('XDEL', KEYS[1], ARGV[3])\n"
"end\n"
"return 1\n";

/*
 * retry: lease due retries. KEYS the retry ZSETs to lease from
 * (PREFIXretry and the PREFIXretry:pool:NAME of the pools this engine
 * owns), in the order to try them, then events (last). ARGV now, lease
 * until, count (for all ZSETs together), job hash prefix, events maxlen,
 * max deliveries, instance, ts. Returns [[key, [field, value...], leases,
 * index of its ZSET in KEYS]...]. A member whose hash is gone ends
 * `failed` (id = key) instead of vanishing; one leased more than max
 * deliveries times without settling ends `failed` too.
 */
static const char retry_lua[] =
"local function ev(f)\n"
"  if tonumber(ARGV[5]) > 0 then\n"
"    redis.call('XADD', KEYS[#KEYS], 'MAXLEN', '~', ARGV[5], '*', unpack(f))\n"
"  else\n"
"    redis.call('XADD', KEYS[#KEYS], '*', unpack(f))\n"
"  end\n"
"end\n"
"local out = {}\n"
"for z = 1, #KEYS - 1 do\n"
"local zk = KEYS[z]\n"
"local left = tonumber(ARGV[3]) - #out\n"
"if left <= 0 then break end\n"
"local ids = redis.call('ZRANGEBYSCORE', zk, '-inf', ARGV[1], 'LIMIT', 0, left)\n"
"for _, id in ipairs(ids) do\n"
"  local hk = ARGV[4] .. id\n"
"  local h = redis.call('HGETALL', hk)\n"
"  if #h == 0 then\n"
"    ev({'id', id, 'to', '', 'status', 'failed', 'code', '', 'enh', '',\n"
"        'reply', 'the retry data of this job was lost (' .. hk .. ' is missing: evicted or deleted)',\n"
"        'mx', '', 'ip', '', 'pool', '', 'attempt', '0', 'campaign', '', 'ts', ARGV[8],\n"
"        'key', id, 'instance', ARGV[7]})\n"
"    redis.call('ZREM', zk, id)\n"
"  else\n"
"    local n = redis.call('HINCRBY', hk, 'leases', 1)\n"
"    if n > tonumber(ARGV[6]) then\n"
"      local m = {}\n"
"      for i = 1, #h - 1, 2 do m[h[i]] = h[i+1] end\n"
"      local f = {'id', m['id'] or id, 'to', m['to'] or '', 'status', 'failed', 'code', '', 'enh', '',\n"
"        'reply', 'delivered to the engine ' .. (n - 1) .. ' times without settling',\n"
"        'mx', '', 'ip', '', 'pool', m['pool'] or 'default', 'attempt', m['attempts'] or '0',\n"
"        'campaign', m['campaign'] or '', 'ts', ARGV[8]}\n"
"      if m['tenant'] then f[#f+1] = 'tenant'; f[#f+1] = m['tenant'] end\n"
"      f[#f+1] = 'key'; f[#f+1] = id; f[#f+1] = 'instance'; f[#f+1] = ARGV[7]\n"
"      ev(f)\n"
"      redis.call('ZREM', zk, id)\n"
"      redis.call('DEL', hk)\n"
"    else\n"
"      redis.call('ZADD', zk, ARGV[2], id)\n"
"      out[#out+1] = {id, h, n, z}\n"
"    end\n"
"  end\n"
"end\n"
"end\n"
"return out\n";

/* Keep our stream leases fresh: reset the idle time of entries that are
 * still ours, and only those (after a takeover they belong to another
 * instance, which must keep them). KEYS one jobs stream. ARGV entry
 * IDs..., group, us. */
static const char refresh_lua[] =
"local g, me = ARGV[#ARGV - 1], ARGV[#ARGV]\n"
"local n = 0\n"
"for i = 1, #ARGV - 2 do\n"
"  local p = redis.call('XPENDING', KEYS[1], g, ARGV[i], ARGV[i], 1)\n"
"  if p[1] and p[1][2] == me then\n"
"    redis.call('XCLAIM', KEYS[1], g, me, 0, ARGV[i], 'JUSTID')\n"
"    n = n + 1\n"
"  end\n"
"end\n"
"return n\n";

/* Our own pending list with each entry's delivery count. KEYS one jobs
 * stream.
 * ARGV group, consumer, count, from id. Returns [[id, fields|nil, n]...]:
 * nil fields = the entry was trimmed or deleted. */
static const char history_lua[] =
"local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], ARGV[4])\n"
"local out = {}\n"
"if r and r[1] then\n"
"  for _, e in ipairs(r[1][2]) do\n"
"    local c = 0\n"
"    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)\n"
"    if p[1] then c = p[1][4] end\n"
"    out[#out+1] = {e[1], e[2], c}\n"
"  end\n"
"end\n"
"return out\n";

/* XAUTOCLAIM with delivery counts. KEYS one jobs stream. ARGV group, consumer, min
 * idle, cursor, count. Returns [cursor, [[id, fields, n]...], [deleted
 * ids]] (Redis 7 drops deleted entries from the pending list and names
 * them in its third element). */
static const char claim_lua[] =
"local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])\n"
"local out = {}\n"
"for _, e in ipairs(r[2]) do\n"
"  local c = 0\n"
"  local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)\n"
"  if p[1] then c = p[1][4] end\n"
"  out[#out+1] = {e[1], e[2], c}\n"
"end\n"
"return {r[1], out, r[3] or {}}\n";

/* Hand a job back untried. KEYS jobs (the job's own stream), retry (the
 * ZSET a leased retry is in), job hash. ARGV group, us, stream entry ID (s) or retry member (r), origin,
 * now. A stream entry of ours gets its delivery count back
 * (XCLAIM RETRYCOUNT); a retry becomes due now with its lease count back. */
static const char release_lua[] =
"if ARGV[4] == 's' then\n"
"  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)\n"
"  if p[1] and p[1][2] == ARGV[2] and p[1][4] > 1 then\n"
"    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'RETRYCOUNT', p[1][4] - 1, 'JUSTID')\n"
"  end\n"
"  return 1\n"
"end\n"
"if redis.call('ZSCORE', KEYS[2], ARGV[3]) then\n"
"  redis.call('ZADD', KEYS[2], 'XX', ARGV[5], ARGV[3])\n"
"  local n = tonumber(redis.call('HGET', KEYS[3], 'leases') or '0')\n"
"  if n > 0 then redis.call('HINCRBY', KEYS[3], 'leases', -1) end\n"
"end\n"
"return 1\n";

/* New entries, the high stream first. KEYS jobs:high, jobs. ARGV group,
 * consumer, high count, total count. Up to `high count` entries of the
 * high stream, then the normal stream's up to what is left of `total
 * count`. Returns [high entries, normal entries], each [[id, fields]...]. */
static const char read_lua[] =
"local out = {{}, {}}\n"
"if tonumber(ARGV[3]) > 0 then\n"
"  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')\n"
"  if r and r[1] then out[1] = r[1][2] end\n"
"end\n"
"local left = tonumber(ARGV[4]) - #out[1]\n"
"if left > 0 then\n"
"  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left, 'STREAMS', KEYS[2], '>')\n"
"  if r and r[1] then out[2] = r[1][2] end\n"
"end\n"
"return out\n";

/* The instance lock. KEYS lock. ARGV token, ttl ms. 1 if ours (taken or
 * refreshed), else [holder's token, its PTTL]. Sent with EVAL: it must
 * work before the other scripts are loaded. */
static const char lock_lua[] =
"local v = redis.call('GET', KEYS[1])\n"
"if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]); return 1 end\n"
"if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]); return 1 end\n"
"return {v, redis.call('PTTL', KEYS[1])}\n";

/*
 * Warm-up: the start day of an IP's ramp, its holds, and one (site's)
 * counters of one day and hour, shared by every host. KEYS warmup:IP,
 * warmup:IP:DAY. ARGV day of the counts (DAY), hour of that day (0..23),
 * config start day ('' none: set once to today, HSETNX), site ('' the
 * IP's own counters), delta, applied-field, call id, day-hash TTL (s),
 * now ms, today. The ramp's start is start + shift; while a hold lasts
 * (hold_until > now) shift grows so the ramp day never passes hold_day
 * (warmup_hold_shift). The delta is added only if applied-field (one per
 * instance and site) does not hold this call id already: a call resent
 * after a lost answer counts once. Returns {start, shift, sent that day,
 * sent that hour, held, hold_until, hold_day}.
 */
static const char warmup_lua[] =
"local today = tonumber(ARGV[10]) or 0\n"
"local start\n"
"if ARGV[3] ~= '' then\n"
"  start = tonumber(ARGV[3]) or today\n"
"  if redis.call('HGET', KEYS[1], 'start') ~= ARGV[3] then redis.call('HSET', KEYS[1], 'start', ARGV[3]) end\n"
"else\n"
"  redis.call('HSETNX', KEYS[1], 'start', ARGV[10])\n"
"  start = tonumber(redis.call('HGET', KEYS[1], 'start')) or today\n"
"end\n"
"local h = redis.call('HMGET', KEYS[1], 'shift', 'hold_day', 'hold_until')\n"
"local shift = tonumber(h[1]) or 0\n"
"local hd, hu = tonumber(h[2]), tonumber(h[3]) or 0\n"
"local held = 0\n"
"if hd and hu > (tonumber(ARGV[9]) or 0) then\n"
"  held = 1\n"
"  local day = today - (start + shift) + 1\n"
"  if day > hd then\n"
"    shift = shift + day - hd\n"
"    redis.call('HSET', KEYS[1], 'shift', shift)\n"
"  end\n"
"end\n"
"local fd, fh = 'd', 'h:' .. ARGV[2]\n"
"if ARGV[4] ~= '' then fd = fd .. ':' .. ARGV[4]; fh = fh .. ':' .. ARGV[4] end\n"
"local delta = tonumber(ARGV[5]) or 0\n"
"if delta > 0 and redis.call('HGET', KEYS[2], ARGV[6]) ~= ARGV[7] then\n"
"  redis.call('HINCRBY', KEYS[2], fd, delta)\n"
"  redis.call('HINCRBY', KEYS[2], fh, delta)\n"
"  redis.call('HSET', KEYS[2], ARGV[6], ARGV[7])\n"
"  redis.call('EXPIRE', KEYS[2], ARGV[8])\n"
"end\n"
"local v = redis.call('HMGET', KEYS[2], fd, fh)\n"
"return {start, shift, tonumber(v[1]) or 0, tonumber(v[2]) or 0, held, hu, hd or 0}\n";

/*
 * Hold an IP's warm-up ramp at its current day until a time (the hook for
 * the feedback loop: complaints, bounces). KEYS warmup:IP. ARGV today,
 * config start day ('' none), until ms (0: release), reason, now ms. A
 * hold already running keeps its day. Returns the day held at (0: released).
 */
static const char warmhold_lua[] =
"local today = tonumber(ARGV[1]) or 0\n"
"local start\n"
"if ARGV[2] ~= '' then start = tonumber(ARGV[2]) or today\n"
"else redis.call('HSETNX', KEYS[1], 'start', ARGV[1]); start = tonumber(redis.call('HGET', KEYS[1], 'start')) or today end\n"
"if ARGV[3] == '0' then redis.call('HDEL', KEYS[1], 'hold_day', 'hold_until', 'hold_reason'); return 0 end\n"
"local h = redis.call('HMGET', KEYS[1], 'shift', 'hold_day', 'hold_until')\n"
"local shift = tonumber(h[1]) or 0\n"
"local hd = tonumber(h[2])\n"
"if not (hd and (tonumber(h[3]) or 0) > (tonumber(ARGV[5]) or 0)) then\n"
"  hd = today - (start + shift) + 1\n"
"  if hd < 1 then hd = 1 end\n"
"end\n"
"redis.call('HSET', KEYS[1], 'hold_day', hd, 'hold_until', ARGV[3], 'hold_reason', ARGV[4])\n"
"return hd\n";

/*
 * A fleet-wide limit (GCRA). KEYS PREFIXfleet:NAME, holding the
 * theoretical arrival time (us of Redis's clock: TIME, so that every host
 * agrees). ARGV n, interval us, burst. Grants k <= n tokens while TAT -
 * now stays within burst * interval; returns {k, ms until a whole burst
 * fits again}. The key expires once the bucket is full again.
 */
static const char fleet_lua[] =
"local n, T, b = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
"if not n or not T or not b or n < 1 or T < 1 or b < 1 then\n"
"  return redis.error_reply('ERR fleet: bad arguments')\n"
"end\n"
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
"local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
"if tat < now then tat = now end\n"
"local k = math.floor((now + b * T - tat) / T)\n"
"if k > n then k = n end\n"
"if k < 0 then k = 0 end\n"
"if k > 0 then\n"
"  tat = tat + k * T\n"
"  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX',\n"
"    math.ceil((tat - now) / 1000) + 1000)\n"
"end\n"
"return {k, math.ceil((tat - now) / 1000)}\n";

/*
 * inbound_read: KEYS inbound. ARGV group, consumer, count, from ('>' new
 * entries, else re-read our own pending list after that ID), claim min
 * idle ms ('0': no takeover). With '>', entries idle past the claim time
 * in any consumer's pending list are taken over first (XAUTOCLAIM from
 * the start; the list is short: entries are settled within a turn).
 * Returns [[id, fields|nil]...] (nil: the entry was deleted).
 */
static const char inbound_read_lua[] =
"local out = {}\n"
"local n = tonumber(ARGV[3])\n"
"if ARGV[4] ~= '>' then\n"
"  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', n, 'STREAMS', KEYS[1], ARGV[4])\n"
"  if r and r[1] then for _, e in ipairs(r[1][2]) do out[#out+1] = e end end\n"
"  return out\n"
"end\n"
"if tonumber(ARGV[5]) > 0 then\n"
"  local c = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[5], '0-0', 'COUNT', n)\n"
"  for _, e in ipairs(c[2]) do if e[2] then out[#out+1] = e end end\n"
"end\n"
"if #out < n then\n"
"  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', n - #out, 'STREAMS', KEYS[1], '>')\n"
"  if r and r[1] then for _, e in ipairs(r[1][2]) do out[#out+1] = e end end\n"
"end\n"
"return out\n";

/*
 * inbound: settle one inbound message. KEYS inbound, events, unmatched,
 * entry marker, sent record, rate counter prefix. ARGV group, entry ID, events maxlen,
 * unmatched maxlen, marker ttl ms, mode ('e' events, 'u' unmatched, 'a'
 * ack only), require a sent record ('1'/'0'), global suppression set,
 * tenant suppression prefix, global info hash, tenant info prefix, seen
 * marker prefix (PREFIXinbound:seen:IDKEY:), seen ttl ms, ts ms, job id, reason, msg, source, rcpt,
 * from, n events, then per event: status, report rcpt, suppress ('1'/'0'),
 * why, n pairs, the pairs. Unless the entry marker exists: write, set the
 * marker, XACK, XDEL. Each event is written before its seen marker (a
 * script that fails half way leaves the entry pending, and a later run
 * writes what is missing). An event is written once per job, status and
 * recipient (the seen marker): a report sent twice yields one event. The
 * address suppressed is the job's (sent record to_lc), else the report's.
 */
static const char inbound_lua[] = RATES_LUA
"local function xadd(k, maxlen, f)\n"
"  if tonumber(maxlen) > 0 then\n"
"    redis.call('XADD', k, 'MAXLEN', '~', maxlen, '*', unpack(f))\n"
"  else\n"
"    redis.call('XADD', k, '*', unpack(f))\n"
"  end\n"
"end\n"
"local function ack()\n"
"  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
"  redis.call('XDEL', KEYS[1], ARGV[2])\n"
"end\n"
"if redis.call('EXISTS', KEYS[4]) == 1 then ack(); return 0 end\n"
"local function unmatched(reason)\n"
"  local f = {'reason', reason, 'msg', ARGV[17], 'source', ARGV[18], 'rcpt', ARGV[19],\n"
"    'from', ARGV[20], 'ts', ARGV[14], 'entry', ARGV[2]}\n"
"  if ARGV[15] ~= '' then f[#f+1] = 'id'; f[#f+1] = ARGV[15] end\n"
"  xadd(KEYS[3], ARGV[4], f)\n"
"end\n"
"local function done(r)\n"
"  redis.call('SET', KEYS[4], '1', 'PX', ARGV[5])\n"
"  ack()\n"
"  return r\n"
"end\n"
"if ARGV[6] == 'u' then unmatched(ARGV[16]); return done(1) end\n"
"if ARGV[6] ~= 'e' then return done(2) end\n"
"local h = redis.call('HGETALL', KEYS[5])\n"
"local s = {}\n"
"for i = 1, #h - 1, 2 do s[h[i]] = h[i+1] end\n"
"if #h == 0 and ARGV[7] == '1' then\n"
"  unmatched('unknown job ' .. ARGV[15] .. ' (no sent record: not delivered from here, or older than inbound.keep_sent)')\n"
"  return done(3)\n"
"end\n"
"local id = s['id'] or ARGV[15]\n"
"local i, wrote = 22, 0\n"
"for k = 1, tonumber(ARGV[21]) do\n"
"  local st, rcpt, supp, why, np = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], tonumber(ARGV[i+4])\n"
"  i = i + 5\n"
"  local mk = ARGV[12] .. st .. ':' .. rcpt\n"
"  if redis.call('EXISTS', mk) == 0 then\n"
"    local to = s['to'] or rcpt\n"
"    local f = {'id', id, 'to', to, 'status', st}\n"
"    for j = i, i + 2 * np - 1 do f[#f+1] = ARGV[j] end\n"
"    for _, n in ipairs({'mx', 'ip', 'pool', 'attempt', 'campaign'}) do\n"
"      f[#f+1] = n; f[#f+1] = s[n] or ''\n"
"    end\n"
"    f[#f+1] = 'ts'; f[#f+1] = ARGV[14]\n"
"    if s['tenant'] and s['tenant'] ~= '' then f[#f+1] = 'tenant'; f[#f+1] = s['tenant'] end\n"
"    if s['ts'] then f[#f+1] = 'sent_ts'; f[#f+1] = s['ts'] end\n"
"    xadd(KEYS[2], ARGV[3], f)\n"
"    local rf = fields_of(f)\n"
"    rf['site'] = s['site']\n"
"    rate_count(KEYS[6], rf, false)\n"
"    local a = s['to_lc'] or string.lower(rcpt)\n"
"    if supp == '1' and a ~= '' then\n"
"      local sk, ik = ARGV[8], ARGV[10]\n"
"      if s['tenant'] and s['tenant'] ~= '' then sk = ARGV[9] .. s['tenant']; ik = ARGV[11] .. s['tenant'] end\n"
"      redis.call('SADD', sk, a)\n"
"      redis.call('HSET', ik, a, why .. ' ' .. ARGV[14])\n"
"    end\n"
"    redis.call('SET', mk, '1', 'PX', ARGV[13])\n"
"    wrote = wrote + 1\n"
"  end\n"
"  i = i + 2 * np\n"
"end\n"
"return done(10 + wrote)\n";

enum { SCRIPT_FINAL = 0, SCRIPT_DEFER, SCRIPT_RETRY, SCRIPT_REFRESH, SCRIPT_HISTORY,
	SCRIPT_CLAIM, SCRIPT_RELEASE, SCRIPT_WARMUP, SCRIPT_WARMHOLD, SCRIPT_FLEET, SCRIPT_READ,
	SCRIPT_INBOUND_READ, SCRIPT_INBOUND, SCRIPT__N };
static const char *const scripts[SCRIPT__N] = { final_lua, defer_lua, retry_lua, refresh_lua,
	history_lua, claim_lua, release_lua, warmup_lua, warmhold_lua, fleet_lua, read_lua,
	inbound_read_lua, inbound_lua };

/* The kinds of read, each with its own back-off after an error. */
enum { RD_STREAM = 0, RD_RETRY, RD_CLAIM, RD__N };

#define BACKOFF_MIN_MS	500
#define BACKOFF_MAX_MS	30000

/* One settling write, kept until Redis answered it. */
struct rq_cmd {
	struct rq_cmd *prev, *next;
	struct rq *q;
	char *cmd;
	size_t len;
	uint64_t seq;		/* order of arrival */
	int in_flight;		/* sent on the current connection */
	unsigned noscript;	/* NOSCRIPT answers in a row */
};

/* One command in flight (every command has one). */
struct rq_req {
	struct rq *q;
	void (*fn)(struct rq *q, redisReply *r, void *priv);
	void *priv;
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
	int ready;			/* PONG seen on this connection */
	int locked;			/* instance lock confirmed on this connection */
	int synced;			/* every write from before (re)connect answered */
	int ever_locked, shut, freeing, policy_checked;
	uint64_t lock_wait_since;	/* mono ms: someone else holds our lock */
	uint64_t lock_seen_at;		/* mono ms of the last look at it */
	long long lock_seen_pttl;	/* its PTTL then */
	char lock_seen_holder[96];
	char token[96];			/* our lock value: host:pid:random */
	struct timer reconnect, resend, ready_retry, lock_timer, watchdog;
	uint64_t backoff_ms;		/* reconnect */
	uint64_t settle_backoff_ms;	/* outbox after a refused write */
	uint64_t lock_backoff_ms;
	char sha[SCRIPT__N][41];
	unsigned scripts_loading;	/* SCRIPT LOADs sent, not yet answered */
	struct rq_cmd outbox;		/* circular list head, oldest first */
	size_t outstanding;
	uint64_t seq_next, barrier;
	/* watchdog */
	size_t inflight;
	uint64_t last_progress;		/* mono ms: last reply, or first send */
	/* reads */
	int reading, reading_retry;
	int claiming;			/* XAUTOCLAIMs in flight (one per stream) */
	int history;			/* re-reading our own pending lists: 2 the
					 * high stream's, 1 the normal one's, 0 done */
	char history_from[64];
	char claim_cursor[2][64];	/* [0] jobs, [1] jobs:high */
	/* the inbound stream */
	int inbound_reading;
	int inbound_history;		/* re-reading our own pending list */
	char inbound_from[64];
	void (*inbound_cb)(void *, const struct rq_inbound_msg *, size_t, size_t);
	void *inbound_arg;
	uint64_t read_hold_until[RD__N], read_backoff_ms[RD__N];
	unsigned gen;			/* connection generation */
	struct map held;		/* key -> mono ms + 1 of last sign of life */
	uint64_t last_held_sweep;
	char *k_jobs, *k_jobs_high, *k_events, *k_retry, *k_supp, *k_jobp, *k_done, *k_lock, *k_stats, *k_insts;
	/* the pools whose PREFIXretry:pool:NAME this engine leases from */
	char **own_pools;
	size_t nown_pools;
	unsigned retry_turn;		/* rotates the order the ZSETs are read in */
};

static void rq_connect(struct rq *q);
static void on_reconnect_timer(struct timer *t);
static void outbox_send(struct rq *q, struct rq_cmd *c);
static void load_scripts(struct rq *q);
static void take_lock(struct rq *q);


/* Does an error reply carry this code? The code is the first word: "BUSY"
 * must not match BUSYGROUP. */
static int
err_is(const char *err, const char *code)
{
	size_t n = strlen(code);

	return strncmp(err, code, n) == 0 && (err[n] == ' ' || err[n] == '\0');
}

/* Errors after which a write is kept and tried again later: Redis is
 * loading, busy, a replica, out of memory, or refusing us for now
 * (permissions and passwords can be fixed while we wait). */
int
rq_error_kept(const char *err)
{
	static const char *const kept[] = { "LOADING", "BUSY", "NOSCRIPT", "READONLY",
	    "OOM", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "NOPERM",
	    "NOAUTH", "WRONGPASS", "MISCONF" };

	for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
		if (err_is(err, kept[i]))
			return 1;
	return 0;
}

uint64_t
rq_backoff_next(uint64_t cur)
{
	if (cur < BACKOFF_MIN_MS)
		return BACKOFF_MIN_MS;
	return cur * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : cur * 2;
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
		/* Bytes arriving are progress, even inside one large reply:
		 * the watchdog is for a Redis that says nothing at all. */
		a->q->last_progress = loop_now(a->q->loop);
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

/* --- sending: every command goes through here --- */

static void
on_req(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rq_req *rr = priv;
	struct rq *q = rr->q;
	redisReply *r = reply;

	if (q->inflight > 0)
		q->inflight--;
	if (r != NULL) {
		q->last_progress = loop_now(q->loop);
		if (r->type == REDIS_REPLY_ERROR && err_is(r->str, "NOSCRIPT") &&
		    q->scripts_loading == 0 && q->ac != NULL) {
			log_warn("redis", "Redis lost our scripts (SCRIPT FLUSH or a restart); loading them again");
			load_scripts(q);
		}
	}
	if (rr->fn)
		rr->fn(q, r, rr->priv);
	free(rr);
}

static struct rq_req *
req_new(struct rq *q, void (*fn)(struct rq *, redisReply *, void *), void *priv)
{
	struct rq_req *rr = xmalloc(sizeof *rr);

	rr->q = q;
	rr->fn = fn;
	rr->priv = priv;
	return rr;
}

static int
req_sent(struct rq *q, struct rq_req *rr, int status)
{
	if (status != REDIS_OK) {
		free(rr);
		return -1;
	}
	if (q->inflight++ == 0)
		q->last_progress = loop_now(q->loop);
	return 0;
}

static int
send_argv(struct rq *q, void (*fn)(struct rq *, redisReply *, void *), void *priv,
    int argc, const char **argv, const size_t *lens)
{
	struct rq_req *rr;

	if (q->ac == NULL)
		return -1;
	rr = req_new(q, fn, priv);
	return req_sent(q, rr, redisAsyncCommandArgv(q->ac, on_req, rr, argc, argv, lens));
}

static int
send_fmt(struct rq *q, void (*fn)(struct rq *, redisReply *, void *), void *priv,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int
send_fmt(struct rq *q, void (*fn)(struct rq *, redisReply *, void *), void *priv,
    const char *fmt, ...)
{
	struct rq_req *rr;
	va_list ap;
	int st;

	if (q->ac == NULL)
		return -1;
	rr = req_new(q, fn, priv);
	va_start(ap, fmt);
	st = redisvAsyncCommand(q->ac, on_req, rr, fmt, ap);
	va_end(ap);
	return req_sent(q, rr, st);
}

/* Like send_argv with lengths from C strings. */
static int
send_strv(struct rq *q, void (*fn)(struct rq *, redisReply *, void *), void *priv,
    int argc, const char **argv)
{
	size_t *lens = xcalloc((size_t)argc + 1, sizeof *lens);
	int r;

	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	r = send_argv(q, fn, priv, argc, argv, lens);
	free(lens);
	return r;
}

/* --- scripts --- */

static void
on_script_load(struct rq *q, redisReply *r, void *priv)
{
	if (q->scripts_loading > 0)
		q->scripts_loading--;
	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		log_error("redis", "SCRIPT LOAD: %s", r->str);
}

static void
load_scripts(struct rq *q)
{
	for (int i = 0; i < SCRIPT__N; i++)
		if (send_fmt(q, on_script_load, NULL, "SCRIPT LOAD %s", scripts[i]) == 0)
			q->scripts_loading++;
}

/* --- outbox --- */

/* Every write from before the (re)connect answered, and the lock is
 * ours: reads may start. */
static void
check_synced(struct rq *q)
{
	if (q->synced || !q->locked || q->ac == NULL)
		return;
	if (q->outbox.next != &q->outbox && q->outbox.next->seq <= q->barrier)
		return;
	q->synced = 1;
	log_info("redis", "ready: every earlier settling write answered; reading");
	if (q->cb.on_connected)
		q->cb.on_connected(q->arg);
}

static void
outbox_remove(struct rq *q, struct rq_cmd *c)
{
	c->prev->next = c->next;
	c->next->prev = c->prev;
	q->outstanding--;
	free(c->cmd);
	free(c);
}

static void
on_resend_timer(struct timer *t)
{
	struct rq *q = (struct rq *)((char *)t - offsetof(struct rq, resend));

	if (!q->locked)
		return;		/* the reconnect resends everything */
	for (struct rq_cmd *c = q->outbox.next; c != &q->outbox; c = c->next)
		outbox_send(q, c);
}

static void
on_settle_reply(struct rq *q, redisReply *r, void *priv)
{
	struct rq_cmd *c = priv;

	c->in_flight = 0;
	if (r == NULL || q->freeing)
		return;		/* connection lost: resent after reconnect */
	if (r->type == REDIS_REPLY_ERROR) {
		if (err_is(r->str, "NOSCRIPT") && c->noscript++ < 2) {
			/* on_req has queued SCRIPT LOAD: resend behind it. */
			outbox_send(q, c);
			return;
		}
		if (rq_error_kept(r->str)) {
			if (!timer_armed(&q->resend)) {
				q->settle_backoff_ms = rq_backoff_next(q->settle_backoff_ms);
				log_warn("redis", "settling write refused (%s); %zu write(s) kept, next "
				    "try in %llu ms", r->str, q->outstanding,
				    (unsigned long long)q->settle_backoff_ms);
				timer_set(q->loop, &q->resend, q->settle_backoff_ms, on_resend_timer);
			}
			return;
		}
		/* Anything else is a bug or a broken key (a wrong type): the
		 * job stays pending in Redis, is taken over after the lease
		 * and ends `failed` after redis.max_deliveries. */
		log_error("redis", "settling write failed: %s; the job stays pending", r->str);
	}
	outbox_remove(q, c);
	if (q->outstanding == 0)
		q->settle_backoff_ms = 0;	/* a refusal later starts afresh */
	check_synced(q);
}

static void
outbox_send(struct rq *q, struct rq_cmd *c)
{
	struct rq_req *rr;

	if (!q->locked || q->ac == NULL || c->in_flight)
		return;
	rr = req_new(q, on_settle_reply, c);
	if (req_sent(q, rr, redisAsyncFormattedCommand(q->ac, on_req, rr, c->cmd, c->len)) == 0)
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
	c->seq = ++q->seq_next;
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

/* --- what the engine holds --- */

static void
held_mark(struct rq *q, const char *key)
{
	map_put(&q->held, key, (void *)(uintptr_t)(loop_now(q->loop) + 1));
}

static void
held_drop(struct rq *q, const char *key)
{
	map_del(&q->held, key);
}

/* A job the engine holds is settled by the engine; without a holds()
 * callback, a job counts as held if it was handed over or refreshed
 * within the last lease (the engine refreshes what it holds every third
 * of a lease). */
static int
held(struct rq *q, const char *key)
{
	void *v;

	if (q->cb.holds)
		return q->cb.holds(q->arg, key);
	v = map_get(&q->held, key);
	return v != NULL && loop_now(q->loop) + 1 - (uint64_t)(uintptr_t)v <= q->cfg->lease_ms;
}

static void
held_sweep(struct rq *q)
{
	uint64_t now = loop_now(q->loop);
	const char *k;
	void *v;
	size_t it = 0;

	if (now - q->last_held_sweep < 10000)
		return;
	q->last_held_sweep = now;
	while (map_iter(&q->held, &it, &k, &v))
		if (now + 1 - (uint64_t)(uintptr_t)v > 2 * q->cfg->lease_ms)
			map_del(&q->held, k);
}

/* --- connection --- */

static void
lost(struct rq *q)
{
	q->ac = NULL;
	q->ready = q->locked = q->synced = 0;
	q->reading = q->reading_retry = q->claiming = 0;
	q->inbound_reading = 0;
	q->inbound_history = 1;
	snprintf(q->inbound_from, sizeof q->inbound_from, "0");
	q->inflight = 0;
	q->scripts_loading = 0;
	timer_cancel(q->loop, &q->ready_retry);
	for (struct rq_cmd *c = q->outbox.next; c != &q->outbox; c = c->next)
		c->in_flight = 0;
	if (q->backoff_ms < 100)
		q->backoff_ms = 100;
	if (!timer_armed(&q->reconnect))
		timer_set(q->loop, &q->reconnect, q->backoff_ms, on_reconnect_timer);
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
	struct rq *q = ac->data;

	if (q == NULL)
		return;
	if (status != REDIS_OK) {
		log_error("redis", "connect to %s failed: %s; retrying in %llu ms",
		    q->cfg->redis_url_safe, ac->errstr, (unsigned long long)q->backoff_ms);
		lost(q);
		return;
	}
	log_info("redis", "connected to %s", q->cfg->redis_url_safe);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rq *q = ac->data;

	if (q == NULL)
		return;
	if (status != REDIS_OK)
		log_error("redis", "connection to %s lost: %s; reconnecting",
		    q->cfg->redis_url_safe, ac->errstr);
	lost(q);
}

/* Drop the connection ourselves (reply watchdog). Unanswered commands
 * get NULL replies; settling writes stay in the outbox. */
static void
drop_connection(struct rq *q, const char *why)
{
	redisAsyncContext *ac = q->ac;

	log_error("redis", "%s; dropping the connection to %s and reconnecting", why,
	    q->cfg->redis_url_safe);
	ac->data = NULL;	/* no on_disconnect: lost() below does it */
	q->ac = NULL;
	redisAsyncFree(ac);
	lost(q);
}

static void
on_watchdog(struct timer *t)
{
	struct rq *q = (struct rq *)((char *)t - offsetof(struct rq, watchdog));
	uint64_t now = loop_now(q->loop);

	timer_set(q->loop, &q->watchdog, 1000, on_watchdog);
	held_sweep(q);
	if (q->ac != NULL && q->inflight > 0 &&
	    now - q->last_progress >= q->cfg->redis_reply_timeout_ms) {
		char why[160];
		snprintf(why, sizeof why, "no reply from Redis for %llu ms (%zu command(s) "
		    "waiting; redis.reply_timeout)", (unsigned long long)(now - q->last_progress),
		    q->inflight);
		drop_connection(q, why);
	}
}

static void
on_reconnect_timer(struct timer *t)
{
	struct rq *q = (struct rq *)((char *)t - offsetof(struct rq, reconnect));

	q->backoff_ms = q->backoff_ms * 2 > 5000 ? 5000 : q->backoff_ms * 2;
	rq_connect(q);
}

static void
on_init_reply(struct rq *q, redisReply *r, void *priv)
{
	const char *what = priv;

	if (r == NULL)
		return;
	if (r->type == REDIS_REPLY_ERROR && !err_is(r->str, "BUSYGROUP"))
		log_error("redis", "%s: %s", what, r->str);
}

static void
on_policy(struct rq *q, redisReply *r, void *priv)
{
	if (r == NULL)
		return;
	q->policy_checked = 1;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[1]->type == REDIS_REPLY_STRING) {
		if (strcmp(r->element[1]->str, "noeviction") != 0)
			log_warn("redis", "Redis maxmemory-policy is %s: when it reaches maxmemory "
			    "it may evict deferred jobs (PREFIXjob:*), message bodies and settle "
			    "markers, and those jobs end `failed` or are sent twice; set "
			    "maxmemory-policy noeviction (see docs/redis.md)", r->element[1]->str);
	} else {
		log_info("redis", "could not read maxmemory-policy (%s); it must be noeviction",
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	}
}

/* The consumer group on both jobs streams (BUSYGROUP: it exists). */
static void
create_groups(struct rq *q)
{
	send_fmt(q, on_init_reply, "XGROUP CREATE", "XGROUP CREATE %s %s 0 MKSTREAM",
	    q->k_jobs_high, RQ_GROUP);
	send_fmt(q, on_init_reply, "XGROUP CREATE", "XGROUP CREATE %s %s 0 MKSTREAM", q->k_jobs,
	    RQ_GROUP);
	send_fmt(q, on_init_reply, "XGROUP CREATE", "XGROUP CREATE %s%s %s 0 MKSTREAM",
	    q->cfg->prefix, RQ_K_INBOUND, RQ_INBOUND_GROUP);
}

/* The lock is ours on this connection: load the scripts, make sure the
 * group exists, resend the outbox, and wait for it before reading. */
static void
after_lock(struct rq *q)
{
	load_scripts(q);
	create_groups(q);
	if (!q->policy_checked)
		send_fmt(q, on_policy, NULL, "CONFIG GET maxmemory-policy");
	q->barrier = q->seq_next;
	if (q->outstanding > 0)
		log_info("redis", "resending %zu unanswered settling write(s) before reading",
		    q->outstanding);
	for (struct rq_cmd *c = q->outbox.next; c != &q->outbox; c = c->next)
		outbox_send(q, c);
	check_synced(q);
}

static void
on_lock_timer(struct timer *t)
{
	struct rq *q = (struct rq *)((char *)t - offsetof(struct rq, lock_timer));

	timer_set(q->loop, &q->lock_timer, RQ_LOCK_REFRESH_MS, on_lock_timer);
	if (q->ac != NULL && q->ready)
		take_lock(q);
}

/* Another live process owns our instance name: leave at once with status 1.
 * _exit: nothing of ours may run any more (no stats, no cleanup that
 * would delete the other process's consumer or stats), and whatever this
 * process holds stays pending in Redis. */
static void
lock_exit(void)
{
	log_flush();
	_exit(1);
}

static void
on_lock(struct rq *q, redisReply *r, void *priv)
{
	uint64_t now;
	unsigned gen = (unsigned)(uintptr_t)priv;

	if (r == NULL || q->freeing || gen != q->gen)
		return;
	now = loop_now(q->loop);
	if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
		q->lock_backoff_ms = 0;
		q->lock_wait_since = 0;
		if (!q->ever_locked)
			log_info("redis", "instance lock %s taken", q->k_lock);
		q->ever_locked = 1;
		if (!q->locked) {
			q->locked = 1;
			after_lock(q);
		}
		return;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_STRING &&
	    r->element[1]->type == REDIS_REPLY_INTEGER) {
		const char *holder = r->element[0]->str;
		long long pttl = r->element[1]->integer;
		int alive = 0;
		if (q->ever_locked) {
			log_error("redis", "instance '%s': lock %s is now held by another process "
			    "(%s): this process lost Redis or stalled for longer than %d s and may no "
			    "longer run; exiting (its jobs stay pending and are taken over)",
			    q->cfg->instance, q->k_lock, holder, RQ_LOCK_TTL_MS / 1000);
			lock_exit();
		}
		if (q->lock_wait_since == 0) {
			q->lock_wait_since = now;
			log_warn("redis", "instance '%s': lock %s is held by %s; waiting up to %d s "
			    "in case that process is gone", q->cfg->instance, q->k_lock, holder,
			    RQ_LOCK_TTL_MS / 1000 + 1);
		} else {
			/* Its holder is alive if it refreshed the lock since we last
			 * looked (the TTL went up), or another one took it. */
			long long expect = q->lock_seen_pttl - (long long)(now - q->lock_seen_at);
			alive = strcmp(holder, q->lock_seen_holder) != 0 || pttl > expect + 300 ||
			    now - q->lock_wait_since > RQ_LOCK_TTL_MS + 1000;
		}
		if (alive) {
			log_error("redis", "instance '%s' is already running: lock %s is held by %s "
			    "and kept fresh; refusing to start (give each process its own instance "
			    "name)", q->cfg->instance, q->k_lock, holder);
			lock_exit();
		}
		q->lock_seen_at = now;
		q->lock_seen_pttl = pttl;
		snprintf(q->lock_seen_holder, sizeof q->lock_seen_holder, "%s", holder);
		return;		/* the lock timer asks again */
	}
	q->lock_backoff_ms = rq_backoff_next(q->lock_backoff_ms);
	log_error("redis", "instance lock %s: %s; asking again in %llu ms", q->k_lock,
	    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply",
	    (unsigned long long)q->lock_backoff_ms);
	timer_set(q->loop, &q->lock_timer, q->lock_backoff_ms, on_lock_timer);
}

static void
take_lock(struct rq *q)
{
	char ttl[16];

	snprintf(ttl, sizeof ttl, "%d", RQ_LOCK_TTL_MS);
	send_strv(q, on_lock, (void *)(uintptr_t)q->gen, 6,
	    (const char *[]){ "EVAL", lock_lua, "1", q->k_lock, q->token, ttl });
}

static void on_ready(struct rq *q, redisReply *r, void *priv);

static void
on_ready_timer(struct timer *t)
{
	struct rq *q = (struct rq *)((char *)t - offsetof(struct rq, ready_retry));

	send_fmt(q, on_ready, NULL, "PING");
}

/* The handshake's last reply. A Redis still loading its data answers
 * -LOADING: ask again until it says PONG, then take the lock. */
static void
on_ready(struct rq *q, redisReply *r, void *priv)
{
	if (r == NULL || q->freeing)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		if (!timer_armed(&q->ready_retry))
			log_warn("redis", "not ready yet: %s", r->str);
		timer_set(q->loop, &q->ready_retry, 500, on_ready_timer);
		return;
	}
	q->ready = 1;
	q->backoff_ms = 100;
	take_lock(q);
	if (!timer_armed(&q->lock_timer))
		timer_set(q->loop, &q->lock_timer, RQ_LOCK_REFRESH_MS, on_lock_timer);
}

static void
set_keepalive(int fd)
{
	int one = 1, idle = 15, intvl = 5, cnt = 3;

	/* A dead peer or path is noticed in about 30 s even when nothing is
	 * waiting for a reply (the watchdog covers the other case). */
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) < 0)
		log_warn("redis", "TCP keepalive on the Redis socket: %s", strerror(errno));
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
	if (!cfg->redis_unix)
		set_keepalive(ac->c.fd);
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
	q->ready = q->locked = q->synced = 0;
	q->inflight = 0;
	q->history = 2;
	snprintf(q->history_from, sizeof q->history_from, "0");
	q->inbound_history = 1;
	snprintf(q->inbound_from, sizeof q->inbound_from, "0");
	snprintf(q->claim_cursor[0], sizeof q->claim_cursor[0], "0-0");
	snprintf(q->claim_cursor[1], sizeof q->claim_cursor[1], "0-0");

	/* The handshake is queued at once; hiredis sends it when the
	 * connect completes, in order, before anything else. The rest
	 * (lock, scripts, group, outbox) waits for PONG: while Redis loads
	 * its data it answers -LOADING to all of them. */
	if (cfg->redis_password && cfg->redis_user)
		send_strv(q, on_init_reply, "AUTH", 3,
		    (const char *[]){ "AUTH", cfg->redis_user, cfg->redis_password });
	else if (cfg->redis_password)
		send_strv(q, on_init_reply, "AUTH", 2, (const char *[]){ "AUTH", cfg->redis_password });
	if (cfg->redis_db)
		send_fmt(q, on_init_reply, "SELECT", "SELECT %d", cfg->redis_db);
	send_fmt(q, on_ready, NULL, "PING");
}


int
rq_connected(const struct rq *q)
{
	return q->ac != NULL && q->ready && q->locked && q->synced;
}

struct rq *
rq_new(struct loop *l, const struct config *cfg, const struct rq_callbacks *cb, void *arg)
{
	struct rq *q = xcalloc(1, sizeof *q);
	unsigned char rnd[8];
	char host[64] = "?";

	q->loop = l;
	q->cfg = cfg;
	q->cb = *cb;
	q->arg = arg;
	q->outbox.next = q->outbox.prev = &q->outbox;
	q->backoff_ms = 100;
	q->k_jobs = xasprintf("%s%s", cfg->prefix, RQ_K_JOBS);
	q->k_jobs_high = xasprintf("%s%s", cfg->prefix, RQ_K_JOBS_HIGH);
	q->k_events = xasprintf("%s%s", cfg->prefix, RQ_K_EVENTS);
	q->k_retry = xasprintf("%s%s", cfg->prefix, RQ_K_RETRY);
	q->k_supp = xasprintf("%s%s", cfg->prefix, RQ_K_SUPPRESSED);
	q->k_jobp = xasprintf("%s%s", cfg->prefix, RQ_K_JOB);
	q->k_done = xasprintf("%s%s", cfg->prefix, RQ_K_DONE);
	q->k_lock = xasprintf("%s%s%s", cfg->prefix, RQ_K_LOCK, cfg->instance);
	q->k_stats = xasprintf("%s%s%s", cfg->prefix, RQ_K_INSTANCE, cfg->instance);
	q->k_insts = xasprintf("%s%s", cfg->prefix, RQ_K_INSTANCES);
	gethostname(host, sizeof host - 1);
	host[sizeof host - 1] = '\0';
	if (RAND_bytes(rnd, sizeof rnd) != 1)
		fatal("no random bytes for the instance lock token");
	snprintf(q->token, sizeof q->token, "%s:%ld:%02x%02x%02x%02x%02x%02x%02x%02x", host,
	    (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	for (int i = 0; i < SCRIPT__N; i++) {
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;
		if (!EVP_Digest(scripts[i], strlen(scripts[i]), md, &mdlen, EVP_sha1(), NULL))
			fatal("SHA1 unavailable in OpenSSL");
		for (unsigned k = 0; k < mdlen && k < 20; k++)
			snprintf(q->sha[i] + 2 * k, 3, "%02x", md[k]);
	}
	timer_set(l, &q->watchdog, 1000, on_watchdog);
	rq_connect(q);
	return q;
}

void
rq_shutdown(struct rq *q)
{
	struct rqs *s;
	char err[300];
	int r;

	if (q->shut)
		return;
	q->shut = 1;
	if (!q->ever_locked)
		return;		/* never ran: the name may be another process's */
	s = rqs_connect(q->cfg, 2000, err, sizeof err);
	if (s == NULL) {
		log_warn("redis", "clean-exit cleanup skipped: %s", err);
		return;
	}
	r = rqs_instance_cleanup(s, q->cfg->instance, q->token, err, sizeof err);
	if (r < 0)
		log_warn("redis", "clean-exit cleanup failed: %s", err);
	else
		log_info("redis", "instance %s: stats removed, lock released%s", q->cfg->instance,
		    r == 1 ? ", consumer deleted (nothing pending)" :
		    ", consumer kept (it still has pending entries)");
	rqs_free(s);
}

void
rq_free(struct rq *q)
{
	if (q == NULL)
		return;
	q->freeing = 1;
	timer_cancel(q->loop, &q->reconnect);
	timer_cancel(q->loop, &q->resend);
	timer_cancel(q->loop, &q->ready_retry);
	timer_cancel(q->loop, &q->lock_timer);
	timer_cancel(q->loop, &q->watchdog);
	if (q->ac) {
		redisAsyncContext *ac = q->ac;
		ac->data = NULL;
		q->ac = NULL;
		redisAsyncFree(ac);
	}
	rq_shutdown(q);
	while (q->outbox.next != &q->outbox) {
		struct rq_cmd *c = q->outbox.next;
		c->prev->next = c->next;
		c->next->prev = c->prev;
		free(c->cmd);
		free(c);
	}
	map_free(&q->held);
	free(q->k_jobs);
	free(q->k_jobs_high);
	free(q->k_events);
	free(q->k_retry);
	free(q->k_supp);
	free(q->k_jobp);
	free(q->k_done);
	free(q->k_lock);
	free(q->k_stats);
	free(q->k_insts);
	for (size_t i = 0; i < q->nown_pools; i++)
		free(q->own_pools[i]);
	free(q->own_pools);
	free(q);
}

void
rq_set_retry_pools(struct rq *q, const char *const *pools, size_t n)
{
	for (size_t i = 0; i < q->nown_pools; i++)
		free(q->own_pools[i]);
	free(q->own_pools);
	q->own_pools = xcalloc(n + 1, sizeof *q->own_pools);
	for (size_t i = 0; i < n; i++)
		q->own_pools[i] = xstrdup(pools[i]);
	q->nown_pools = n;
}

/* The retry ZSET of pool (NULL: PREFIXretry) into buf. */
static const char *
retry_key(const struct rq *q, const char *pool, char *buf, size_t len)
{
	if (pool == NULL)
		return q->k_retry;
	snprintf(buf, len, "%s%s%s", q->cfg->prefix, RQ_K_RETRY_POOL, pool);
	return buf;
}

/* --- reads --- */

/* One entry as read: its ID, its fields (NULL: trimmed or deleted) and
 * how often it was delivered. Points into the reply. */
struct raw_entry {
	const redisReply *id;
	const redisReply *fields;
	unsigned deliveries;
	const char *retry_pool;		/* a leased retry's ZSET's pool, NULL: PREFIXretry */
	char key[80];			/* the job's key (take_entries) */
};

/* The stream a stream job (JOB_FROM_STREAM or JOB_FROM_HIGH) is pending on. */
static const char *
stream_of(const struct rq *q, enum job_origin origin)
{
	return origin == JOB_FROM_HIGH ? q->k_jobs_high : q->k_jobs;
}

/* The key of a job read as entry ID id from the stream of origin (see
 * JOB_HIGH_KEY_PREFIX); -1 if it does not fit (not a stream entry ID). */
static int
key_of(enum job_origin origin, const char *id, char *key, size_t len)
{
	int n = snprintf(key, len, "%s%s", origin == JOB_FROM_HIGH ? JOB_HIGH_KEY_PREFIX : "", id);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* A read failed: pause that kind of read, doubling up to 30 s, one log
 * line per step. */
static void
read_error(struct rq *q, int kind, const char *what, const redisReply *r)
{
	if (err_is(r->str, "NOSCRIPT"))
		return;		/* reloaded by on_req; the next tick reads again */
	if (err_is(r->str, "NOGROUP")) {
		log_warn("redis", "%s: %s; creating the group", what, r->str);
		create_groups(q);
		return;
	}
	q->read_backoff_ms[kind] = rq_backoff_next(q->read_backoff_ms[kind]);
	q->read_hold_until[kind] = loop_now(q->loop) + q->read_backoff_ms[kind];
	log_error("redis", "%s: %s; paused for %llu ms", what, r->str,
	    (unsigned long long)q->read_backoff_ms[kind]);
}

/* A read succeeded: a later error starts the back-off afresh, but not
 * before the current step has run out (a read that works now and then
 * must not bring back a line every 500 ms). */
static void
read_ok(struct rq *q, int kind)
{
	if (loop_now(q->loop) >= q->read_hold_until[kind] + BACKOFF_MAX_MS)
		q->read_backoff_ms[kind] = 0;
}

static int
reads_allowed(const struct rq *q, int kind)
{
	return rq_connected(q) && loop_now(q->loop) >= q->read_hold_until[kind];
}

static const char *
field_str(const redisReply *f, const char *name)
{
	if (f == NULL || f->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (size_t i = 0; i + 1 < f->elements; i += 2)
		if (f->element[i]->type == REDIS_REPLY_STRING &&
		    f->element[i + 1]->type == REDIS_REPLY_STRING &&
		    strcmp(f->element[i]->str, name) == 0)
			return f->element[i + 1]->str;
	return NULL;
}

/* A stream entry this instance will not hand over: one `failed` event and
 * the ack, through the final script (idempotent, retried like any
 * settlement). fields may be NULL (the entry's data is gone). */
static void
fail_entry(struct rq *q, enum job_origin origin, const char *key, const redisReply *fields,
    const char *reason)
{
	struct job fj;
	struct job_outcome o;

	memset(&fj, 0, sizeof fj);
	memset(&o, 0, sizeof o);
	fj.origin = origin;
	fj.key = (char *)key;
	fj.id = (char *)field_str(fields, "id");
	if (fj.id == NULL)
		fj.id = (char *)job_entry_id(&fj);
	fj.to = (char *)field_str(fields, "to");
	if (fj.to == NULL)
		fj.to = "";
	fj.pool = (char *)field_str(fields, "pool");
	fj.campaign = (char *)field_str(fields, "campaign");
	fj.tenant = (char *)field_str(fields, "tenant");
	o.status = JOB_FAILED;
	o.cls = CLASS_UNKNOWN;
	snprintf(o.reply, sizeof o.reply, "%s", reason);
	log_warn("job", "job=%s key=%s to=%s status=failed reply=\"%s\"", fj.id, key, fj.to, reason);
	rq_final(q, &fj, &o, 0);
}

static void
deliver_typed(struct rq *q, enum job_origin origin, const struct raw_entry *e, size_t n)
{
	struct rq_entry *out = xcalloc(n, sizeof *out);
	size_t pairs = 0, off = 0;
	const char **fv;
	size_t *fl;

	for (size_t i = 0; i < n; i++)
		pairs += e[i].fields->elements / 2;
	fv = xcalloc(2 * pairs + 1, sizeof *fv);
	fl = xcalloc(2 * pairs + 1, sizeof *fl);
	for (size_t i = 0; i < n; i++) {
		const redisReply *f = e[i].fields;
		out[i].key = e[i].key;
		out[i].fields = &fv[off];
		out[i].values = &fv[pairs + off];
		out[i].flens = &fl[off];
		out[i].vlens = &fl[pairs + off];
		out[i].deliveries = e[i].deliveries;
		out[i].retry_pool = e[i].retry_pool;
		for (size_t k = 0; k + 1 < f->elements; k += 2) {
			const redisReply *a = f->element[k], *b = f->element[k + 1];
			if (a->type != REDIS_REPLY_STRING || b->type != REDIS_REPLY_STRING)
				continue;
			fv[off] = a->str;
			fl[off] = a->len;
			fv[pairs + off] = b->str;
			fl[pairs + off] = b->len;
			off++;
			out[i].n++;
		}
	}
	q->cb.on_jobs(q->arg, origin, out, n);
	free(out);
	free(fv);
	free(fl);
}

/*
 * take_entries - decide what to do with each entry read, then hand the
 * rest to the engine. A trimmed/deleted entry the engine does not hold,
 * and one delivered more than redis.max_deliveries times that it does not
 * hold, end `failed` here.
 */
static void
take_entries(struct rq *q, enum job_origin origin, struct raw_entry *e, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		const char *key = e[i].key;
		int stream = origin != JOB_FROM_RETRY;
		char why[200];
		if (key_of(origin, e[i].id->str, e[i].key, sizeof e[i].key) != 0) {
			log_error("redis", "skipping an entry with an ID of %zu bytes",
			    (size_t)e[i].id->len);
			continue;
		}
		if (e[i].fields == NULL || e[i].fields->type != REDIS_REPLY_ARRAY) {
			if (stream && !held(q, key)) {
				snprintf(why, sizeof why, "stream entry %s was trimmed or deleted from "
				    "%s before it could be read", e[i].id->str, stream_of(q, origin));
				fail_entry(q, origin, key, NULL, why);
			}
			continue;
		}
		if (stream && e[i].deliveries > q->cfg->max_deliveries && !held(q, key)) {
			snprintf(why, sizeof why, "delivered to the engine %u times without settling "
			    "(redis.max_deliveries %u)", e[i].deliveries - 1, q->cfg->max_deliveries);
			fail_entry(q, origin, key, e[i].fields, why);
			continue;
		}
		held_mark(q, key);
		e[k++] = e[i];
	}
	if (k == 0)
		return;
	deliver_typed(q, origin, e, k);
}

/* Entries as [[id, fields|nil, deliveries]...] (the scripts) or, with
 * plain = 1, [[id, fields]...] (XREADGROUP >: delivered once). */
static size_t
parse_entries(const redisReply *arr, int plain, struct raw_entry **out)
{
	size_t n = 0;

	*out = NULL;
	if (arr == NULL || arr->type != REDIS_REPLY_ARRAY || arr->elements == 0)
		return 0;
	*out = xcalloc(arr->elements, sizeof **out);
	for (size_t i = 0; i < arr->elements; i++) {
		const redisReply *en = arr->element[i];
		if (en->type != REDIS_REPLY_ARRAY || en->elements < 2 ||
		    en->element[0]->type != REDIS_REPLY_STRING)
			continue;
		(*out)[n].id = en->element[0];
		(*out)[n].fields = en->element[1]->type == REDIS_REPLY_ARRAY ? en->element[1] : NULL;
		(*out)[n].deliveries = 1;
		if (!plain && en->elements >= 3 && en->element[2]->type == REDIS_REPLY_INTEGER &&
		    en->element[2]->integer > 0)
			(*out)[n].deliveries = (unsigned)en->element[2]->integer;
		n++;
	}
	return n;
}

/* One stream's new entries out of the read script's reply. */
static size_t
take_new(struct rq *q, enum job_origin origin, const redisReply *entries)
{
	struct raw_entry *e = NULL;
	size_t n = parse_entries(entries, 1, &e);

	take_entries(q, origin, e, n);
	free(e);
	return entries && entries->type == REDIS_REPLY_ARRAY ? entries->elements : 0;
}

/* priv: NULL new entries (the read script), else the pending list being
 * re-read (HIST_NORMAL, HIST_HIGH). */
#define HIST_NORMAL	((void *)1)
#define HIST_HIGH	((void *)2)

static void
on_xread(struct rq *q, redisReply *r, void *priv)
{
	struct raw_entry *e = NULL;
	size_t n = 0, seen = 0;

	q->reading = 0;
	if (r == NULL || q->freeing)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		read_error(q, RD_STREAM, priv ? "reading our pending list" : "XREADGROUP", r);
		if (q->cb.on_read_done)
			q->cb.on_read_done(q->arg, JOB_FROM_STREAM, 0);
		return;
	}
	read_ok(q, RD_STREAM);
	if (priv == NULL) {
		/* [high entries, normal entries]: the high ones go first. */
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
			seen = take_new(q, JOB_FROM_HIGH, r->element[0]);
			seen += take_new(q, JOB_FROM_STREAM, r->element[1]);
		}
	} else {
		enum job_origin origin = priv == HIST_HIGH ? JOB_FROM_HIGH : JOB_FROM_STREAM;

		seen = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
		n = parse_entries(r, 0, &e);
		if (n == 0) {
			/* this list is done: the next one, from its start */
			q->history = priv == HIST_HIGH ? 1 : 0;
			snprintf(q->history_from, sizeof q->history_from, "0");
			seen = 1;	/* not the end of the stream: read on */
		} else {
			snprintf(q->history_from, sizeof q->history_from, "%s", e[n - 1].id->str);
		}
		take_entries(q, origin, e, n);
		free(e);
	}
	if (q->cb.on_read_done)
		q->cb.on_read_done(q->arg, JOB_FROM_STREAM, seen);
}

void
rq_fetch(struct rq *q, unsigned max, unsigned max_high)
{
	char cnt[16], cnth[16];

	if (!reads_allowed(q, RD_STREAM) || q->reading || (max == 0 && max_high == 0))
		return;
	snprintf(cnt, sizeof cnt, "%u", max);
	snprintf(cnth, sizeof cnth, "%u", max_high);
	if (q->history) {
		int high = q->history == 2;
		if ((high ? max_high : max) == 0) {
			/* COUNT 0 would read them all. No room for bulk while
			 * our own bulk entries are still to be re-read: new
			 * high entries may still come in (their reserve). */
			if (!high && max_high > 0) {
				if (send_strv(q, on_xread, NULL, 9, (const char *[]){ "EVALSHA",
				    q->sha[SCRIPT_READ], "2", q->k_jobs_high, q->k_jobs, RQ_GROUP,
				    q->cfg->instance, cnth, "0" }) == 0)
					q->reading = 1;
			}
			return;
		}
		if (send_strv(q, on_xread, high ? HIST_HIGH : HIST_NORMAL, 8, (const char *[]){
		    "EVALSHA", q->sha[SCRIPT_HISTORY], "1", high ? q->k_jobs_high : q->k_jobs,
		    RQ_GROUP, q->cfg->instance, high ? cnth : cnt, q->history_from }) == 0)
			q->reading = 1;
		return;
	}
	if (send_strv(q, on_xread, NULL, 9, (const char *[]){ "EVALSHA", q->sha[SCRIPT_READ],
	    "2", q->k_jobs_high, q->k_jobs, RQ_GROUP, q->cfg->instance, cnth, cnt }) == 0)
		q->reading = 1;
}

/* The ZSETs one lease read asked, by pool (NULL: PREFIXretry), in KEYS
 * order: the reply names each job's ZSET by its index. */
struct retry_read {
	size_t n;
	char *pools[];
};

static void
retry_read_free(struct retry_read *rr)
{
	for (size_t i = 0; i < rr->n; i++)
		free(rr->pools[i]);
	free(rr);
}

static void
on_retry(struct rq *q, redisReply *r, void *priv)
{
	struct retry_read *rr = priv;
	struct raw_entry *e = NULL;
	size_t n = 0;

	q->reading_retry = 0;
	if (r == NULL || q->freeing) {
		retry_read_free(rr);
		return;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		read_error(q, RD_RETRY, "retry lease", r);
	} else {
		read_ok(q, RD_RETRY);
		n = parse_entries(r, 0, &e);
		/* parse_entries keeps the reply's order and skips malformed
		 * elements: walk both to find each one's ZSET index. */
		for (size_t i = 0, k = 0; i < r->elements && k < n; i++) {
			const redisReply *en = r->element[i];
			long long z;

			if (en->type != REDIS_REPLY_ARRAY || en->elements < 2 ||
			    en->element[0] != e[k].id)
				continue;
			z = en->elements >= 4 && en->element[3]->type == REDIS_REPLY_INTEGER ?
			    en->element[3]->integer : 1;
			e[k].retry_pool = z >= 1 && (size_t)z <= rr->n ? rr->pools[z - 1] : NULL;
			k++;
		}
		take_entries(q, JOB_FROM_RETRY, e, n);
		free(e);
	}
	retry_read_free(rr);
	if (q->cb.on_read_done)
		q->cb.on_read_done(q->arg, JOB_FROM_RETRY, n);
}

void
rq_fetch_retries(struct rq *q, unsigned max, uint64_t now_wall_ms)
{
	char now[32], until[32], cnt[16], maxlen[16], maxd[16], ts[32];

	if (!reads_allowed(q, RD_RETRY) || q->reading_retry || max == 0)
		return;
	snprintf(now, sizeof now, "%llu", (unsigned long long)now_wall_ms);
	snprintf(until, sizeof until, "%llu", (unsigned long long)(now_wall_ms + q->cfg->lease_ms));
	snprintf(cnt, sizeof cnt, "%u", max);
	snprintf(maxlen, sizeof maxlen, "%u", q->cfg->events_maxlen);
	snprintf(maxd, sizeof maxd, "%u", q->cfg->max_deliveries);
	snprintf(ts, sizeof ts, "%llu", (unsigned long long)clock_wall_ms());
	{
		/* PREFIXretry and each owned pool's ZSET, starting at a
		 * different one each time so that none waits behind the
		 * others' backlog. */
		size_t nz = q->nown_pools + 1, k = 0;
		struct retry_read *rr = xcalloc(1, sizeof *rr + nz * sizeof rr->pools[0]);
		char **keys = xcalloc(nz, sizeof *keys);
		const char **argv = xcalloc(nz + 12, sizeof *argv);
		char nkeys[16];
		unsigned turn = q->retry_turn++;

		rr->n = nz;
		for (size_t i = 0; i < nz; i++) {
			size_t z = (turn + i) % nz;
			char buf[600];

			rr->pools[i] = z == 0 ? NULL : xstrdup(q->own_pools[z - 1]);
			keys[i] = xstrdup(retry_key(q, rr->pools[i], buf, sizeof buf));
		}
		snprintf(nkeys, sizeof nkeys, "%zu", nz + 1);
		argv[k++] = "EVALSHA"; argv[k++] = q->sha[SCRIPT_RETRY]; argv[k++] = nkeys;
		for (size_t i = 0; i < nz; i++)
			argv[k++] = keys[i];
		argv[k++] = q->k_events; argv[k++] = now; argv[k++] = until; argv[k++] = cnt;
		argv[k++] = q->k_jobp; argv[k++] = maxlen; argv[k++] = maxd;
		argv[k++] = q->cfg->instance; argv[k++] = ts;
		if (send_strv(q, on_retry, rr, (int)k, argv) == 0)
			q->reading_retry = 1;
		else
			retry_read_free(rr);
		for (size_t i = 0; i < nz; i++)
			free(keys[i]);
		free(keys);
		free(argv);
	}
}

static void
on_claim(struct rq *q, redisReply *r, void *priv)
{
	enum job_origin origin = priv ? JOB_FROM_HIGH : JOB_FROM_STREAM;
	struct raw_entry *e = NULL;
	size_t n;

	if (q->claiming > 0)
		q->claiming--;
	if (r == NULL || q->freeing)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		read_error(q, RD_CLAIM, "XAUTOCLAIM", r);
		return;
	}
	read_ok(q, RD_CLAIM);
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3)
		return;
	if (r->element[0]->type == REDIS_REPLY_STRING)
		snprintf(q->claim_cursor[priv != NULL], sizeof q->claim_cursor[0], "%s",
		    r->element[0]->str);
	n = parse_entries(r->element[1], 0, &e);
	if (n > 0)
		log_info("redis", "took over %zu job(s) of %s idle past the lease", n,
		    stream_of(q, origin));
	take_entries(q, origin, e, n);
	free(e);
	/* Entries whose data was trimmed: Redis dropped them from the
	 * pending list. Unless we hold the job, they end `failed` here. */
	if (r->element[2]->type == REDIS_REPLY_ARRAY) {
		const redisReply *d = r->element[2];
		for (size_t i = 0; i < d->elements; i++) {
			char why[200], key[80];
			if (d->element[i]->type != REDIS_REPLY_STRING ||
			    key_of(origin, d->element[i]->str, key, sizeof key) != 0 || held(q, key))
				continue;
			snprintf(why, sizeof why, "stream entry %s was trimmed or deleted from %s "
			    "before it could be read", d->element[i]->str, stream_of(q, origin));
			fail_entry(q, origin, key, NULL, why);
		}
	}
}

/* Both streams, each with its own cursor: two scripts in flight. */
void
rq_autoclaim(struct rq *q, unsigned max)
{
	char idle[32], cnt[16];

	if (!reads_allowed(q, RD_CLAIM) || q->claiming)
		return;
	snprintf(idle, sizeof idle, "%llu", (unsigned long long)q->cfg->lease_ms);
	snprintf(cnt, sizeof cnt, "%u", max ? max : 1);
	for (int high = 1; high >= 0; high--)
		if (send_strv(q, on_claim, high ? (void *)1 : NULL, 9, (const char *[]){ "EVALSHA",
		    q->sha[SCRIPT_CLAIM], "1", high ? q->k_jobs_high : q->k_jobs, RQ_GROUP,
		    q->cfg->instance, idle, q->claim_cursor[high], cnt }) == 0)
			q->claiming++;
}

int
rq_read_busy(const struct rq *q)
{
	return q->reading || q->reading_retry || q->claiming;
}

/* --- settling writes --- */

/* A settling script's argv: keys, control args, job hash fields and event
 * fields, about 80 in all today. Overflow is a bug (panic), not input. */
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

/* How long a stream job's "settled" marker lives: well past a lease, so
 * that a resent or a late duplicate settlement (another instance took the
 * job over) finds it. */
/*
 * done_ttl_ms - how long a settle marker lives: past any late settle of
 * the same job by an instance that lost its lease (it may still be in a
 * transaction, up to smtp.timeouts.transaction, when another instance
 * takes the job over and settles it), and past a resend after a long
 * outage.
 */
static uint64_t
done_ttl_ms(const struct config *cfg)
{
	uint64_t t = 4 * cfg->lease_ms;

	if (t < 600000)
		t = 600000;
	return t + cfg->t_transaction_ms + cfg->stop_ms;
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
	if (o->tls) {
		av_add(a, "tls"); av_add(a, o->tls);
	}
}

/* The suppression set a tenant's jobs are checked against and added to
 * (PREFIXsuppressed:TENANT), or the global one (tenant NULL or ""). */
static char *
suppression_key(const struct rq *q, const char *tenant)
{
	if (tenant == NULL || tenant[0] == '\0')
		return xstrdup(q->k_supp);
	return xasprintf("%s%s%s", q->cfg->prefix, RQ_K_SUPPRESSED_TENANT, tenant);
}

void
rq_final(struct rq *q, const struct job *j, const struct job_outcome *o, int suppress)
{
	struct argv a = { .n = 0 };
	char hashkey[600], donekey[600], code[16], idkey[INBOUND_IDKEY_MAX], sentkey[900], nsent[8],
	    zbuf[600], ratep[300];
	const struct config_site *site;
	uint64_t keep;
	int nsent_at;
	/* A tenant's job adds to that tenant's list, any other to the global one. */
	char *supp = suppression_key(q, j->tenant);
	/* ... with the reason and the time, as inbound suppression keeps them */
	char *info = j->tenant && j->tenant[0] ?
	    xasprintf("%s%s%s", q->cfg->prefix, RQ_K_SUPP_INFO_TENANT, j->tenant) :
	    xasprintf("%s%s", q->cfg->prefix, RQ_K_SUPP_INFO);

	held_drop(q, j->key);
	snprintf(hashkey, sizeof hashkey, "%s%s", q->k_jobp, j->key);
	snprintf(donekey, sizeof donekey, "%s%s", q->k_done, j->key);
	keep = o->status == JOB_DELIVERED ? config_keep_sent_ms(q->cfg) : 0;
	inbound_id_key(j->id, idkey, sizeof idkey);
	snprintf(sentkey, sizeof sentkey, "%s%s%s", q->cfg->prefix, RQ_K_SENT, idkey);
	site = o->mx ? config_site_for_mx(q->cfg, o->mx) : NULL;
	snprintf(ratep, sizeof ratep, "%s%s", q->cfg->prefix, RQ_K_RATE);
	av_add(&a, "EVALSHA"); av_add(&a, q->sha[SCRIPT_FINAL]); av_add(&a, "9");
	av_add(&a, stream_of(q, j->origin)); av_add(&a, q->k_events);
	av_add(&a, retry_key(q, j->retry_pool, zbuf, sizeof zbuf));
	av_add(&a, hashkey); av_add(&a, supp); av_add(&a, donekey); av_add(&a, sentkey);
	av_add(&a, ratep); av_add(&a, info);
	av_add(&a, RQ_GROUP); av_add(&a, j->key);
	av_add(&a, j->origin == JOB_FROM_RETRY ? "" : job_entry_id(j));
	av_addu(&a, q->cfg->events_maxlen);
	av_add(&a, suppress && j->to_lc ? j->to_lc : "");
	av_addu(&a, done_ttl_ms(q->cfg));
	av_addu(&a, keep);
	nsent_at = a.n;
	av_add(&a, "0");
	if (keep > 0) {
		/* What an inbound report about this job needs to name it. */
		int start = a.n;
		av_add(&a, "id"); av_add(&a, j->id);
		av_add(&a, "to"); av_add(&a, j->to);
		av_add(&a, "to_lc"); av_add(&a, j->to_lc ? j->to_lc : "");
		av_add(&a, "campaign"); av_add(&a, j->campaign);
		av_add(&a, "tenant"); av_add(&a, j->tenant);
		av_add(&a, "pool"); av_add(&a, j->pool ? j->pool : "default");
		av_add(&a, "ip"); av_add(&a, o->ip);
		av_add(&a, "mx"); av_add(&a, o->mx);
		av_add(&a, "attempt"); av_addu(&a, j->attempts + 1);
		av_add(&a, "ts"); av_addu(&a, clock_wall_ms());
		if (site != NULL) {
			av_add(&a, "site"); av_add(&a, site->name);
		}
		snprintf(nsent, sizeof nsent, "%d", a.n - start);
		a.v[nsent_at] = nsent;
		a.l[nsent_at] = strlen(nsent);
	}
	event_fields(&a, j, o, q->cfg, code, sizeof code);
	if (site != NULL) {
		av_add(&a, "site"); av_add(&a, site->name);
	}
	outbox_add(q, a.n, a.v, a.l);
	free(supp);
	free(info);
}

/*
 * defer_write - the deferral script for j, due at due_wall_ms. With o, an
 * attempt failed: attempts + 1, the outcome kept for an `expired` event,
 * and a `deferred` event. Without o (parking), attempts and the last
 * outcome stay as they were, and no event is written.
 */
static void
defer_write(struct rq *q, const struct job *j, const struct job_outcome *o, uint64_t due_wall_ms,
    const char *to_pool)
{
	struct argv a = { .n = 0 };
	char hashkey[600], donekey[600], code[16], nh[8], zfrom[600], zto[600];
	char *unstuffed = NULL;
	size_t ulen = 0;
	int nhash_at;

	held_drop(q, j->key);
	snprintf(hashkey, sizeof hashkey, "%s%s", q->k_jobp, j->key);
	snprintf(donekey, sizeof donekey, "%s%s", q->k_done, j->key);
	if (o && o->code >= 100 && o->code <= 999)
		snprintf(code, sizeof code, "%03d", o->code);
	else if (!o && j->last_code >= 100 && j->last_code <= 999)
		snprintf(code, sizeof code, "%03d", j->last_code);
	else
		code[0] = '\0';
	av_add(&a, "EVALSHA"); av_add(&a, q->sha[SCRIPT_DEFER]); av_add(&a, "6");
	av_add(&a, stream_of(q, j->origin)); av_add(&a, q->k_events);
	av_add(&a, retry_key(q, j->retry_pool, zfrom, sizeof zfrom));
	av_add(&a, hashkey); av_add(&a, donekey);
	av_add(&a, retry_key(q, to_pool, zto, sizeof zto));
	av_add(&a, RQ_GROUP); av_add(&a, j->key);
	av_add(&a, j->origin == JOB_FROM_RETRY ? "" : job_entry_id(j));
	av_addu(&a, q->cfg->events_maxlen);
	av_addu(&a, due_wall_ms);
	av_addu(&a, done_ttl_ms(q->cfg));
	nhash_at = a.n;
	av_add(&a, "");		/* number of hash items, set below */
	{
		int start = a.n;
		av_add(&a, "attempts"); av_addu(&a, j->attempts + (o ? 1 : 0));
		av_add(&a, "leases"); av_add(&a, "0");
		/* What went wrong last: an `expired` event can say it. */
		if (o) {
			av_add(&a, "last_reply"); av_add(&a, o->reply);
			av_add(&a, "last_enh"); av_add(&a, o->enh);
			av_add(&a, "last_class");
			av_add(&a, o->has_class ? bounce_class_name(o->cls) : "");
		} else {
			av_add(&a, "last_reply"); av_add(&a, j->last_reply);
			av_add(&a, "last_enh"); av_add(&a, j->last_enh);
			av_add(&a, "last_class"); av_add(&a, j->last_class);
		}
		av_add(&a, "last_code"); av_add(&a, code);
		if (j->origin != JOB_FROM_RETRY) {
			/* The whole job moves into the hash: the stream entry
			 * is deleted, so upstream trimming can never lose it. */
			av_add(&a, "id"); av_add(&a, j->id);
			if (j->priority != JOB_PRIO_NORMAL) {
				av_add(&a, "priority"); av_add(&a, job_priority_name(j->priority));
			}
			av_add(&a, "to"); av_add(&a, j->to);
			av_add(&a, "from"); av_add(&a, j->from);
			av_add(&a, "expires_at"); av_addu(&a, j->expires_at_ms / 1000);
			if (j->pool) { av_add(&a, "pool"); av_add(&a, j->pool); }
			if (j->campaign) { av_add(&a, "campaign"); av_add(&a, j->campaign); }
			if (j->tenant) { av_add(&a, "tenant"); av_add(&a, j->tenant); }
			if (j->unsub_url) { av_add(&a, "unsubscribe_url"); av_add(&a, j->unsub_url); }
			if (j->unsub_mailto) {
				av_add(&a, "unsubscribe_mailto"); av_add(&a, j->unsub_mailto);
			}
			if (j->feedback_id) { av_add(&a, "feedback_id"); av_add(&a, j->feedback_id); }
			if (j->msg_ref) {
				av_add(&a, "msg_ref"); av_add(&a, j->msg_ref);
			} else if (j->body) {
				unstuffed = xmalloc(j->body->len + 1);
				ulen = msg_unstuff(j->body->data, j->body->len, unstuffed);
				av_add(&a, "msg"); av_addn(&a, unstuffed, ulen);
			} else if (j->raw) {
				/* Parked or handed over before its body was
				 * built: the inline message as it came. */
				av_add(&a, "msg"); av_addn(&a, j->raw, j->raw_len);
			}
		}
		snprintf(nh, sizeof nh, "%d", a.n - start);
		a.v[nhash_at] = nh;
		a.l[nhash_at] = strlen(nh);
	}
	if (o)
		event_fields(&a, j, o, q->cfg, code, sizeof code);
	outbox_add(q, a.n, a.v, a.l);
	free(unstuffed);
}

void
rq_defer(struct rq *q, const struct job *j, const struct job_outcome *o, uint64_t due_wall_ms,
    const char *to_pool)
{
	defer_write(q, j, o, due_wall_ms, to_pool);
}

void
rq_park(struct rq *q, const struct job *j, uint64_t due_wall_ms, const char *to_pool)
{
	int same = (j->retry_pool == NULL) == (to_pool == NULL) &&
	    (to_pool == NULL || strcmp(j->retry_pool, to_pool) == 0);

	/* A leased retry already lives in its hash: it only becomes due
	 * again later, its lease given back (as on release), unless it
	 * moves to another retry ZSET. A stream job moves, whole, into the
	 * retry schedule. */
	if (j->origin == JOB_FROM_RETRY && same)
		rq_release_retry(q, j, due_wall_ms);
	else
		defer_write(q, j, NULL, due_wall_ms, to_pool);
}

void
rq_release_retry(struct rq *q, const struct job *j, uint64_t now_wall_ms)
{
	char score[32], hashkey[600], zbuf[600];

	held_drop(q, j->key);
	snprintf(score, sizeof score, "%llu", (unsigned long long)now_wall_ms);
	snprintf(hashkey, sizeof hashkey, "%s%s", q->k_jobp, j->key);
	{
		const char *argv[] = { "EVALSHA", q->sha[SCRIPT_RELEASE], "3",
		    stream_of(q, j->origin), retry_key(q, j->retry_pool, zbuf, sizeof zbuf),
		    hashkey, RQ_GROUP, q->cfg->instance,
		    j->origin == JOB_FROM_RETRY ? j->key : job_entry_id(j),
		    j->origin == JOB_FROM_RETRY ? "r" : "s", score };
		size_t lens[sizeof argv / sizeof argv[0]];
		for (size_t i = 0; i < sizeof argv / sizeof argv[0]; i++)
			lens[i] = strlen(argv[i]);
		outbox_add(q, (int)(sizeof argv / sizeof argv[0]), argv, lens);
	}
}

/* One refresh script for the stream jobs of one stream (entry IDs). */
static void
refresh_stream(struct rq *q, const char *stream, const char *const *ids, size_t n)
{
	const char **argv;
	size_t k = 0;

	if (n == 0)
		return;
	argv = xcalloc(n + 7, sizeof *argv);
	argv[k++] = "EVALSHA"; argv[k++] = q->sha[SCRIPT_REFRESH]; argv[k++] = "1";
	argv[k++] = stream;
	for (size_t i = 0; i < n; i++)
		argv[k++] = ids[i];
	argv[k++] = RQ_GROUP;
	argv[k++] = q->cfg->instance;
	send_strv(q, NULL, NULL, (int)k, argv);
	free(argv);
}

void
rq_refresh(struct rq *q, const struct job *const *jobs, size_t n, uint64_t until_wall_ms)
{
	const char **ids[2];
	size_t nids[2] = { 0, 0 };
	char score[32];

	for (size_t i = 0; i < n; i++)
		if (map_get(&q->held, jobs[i]->key))
			held_mark(q, jobs[i]->key);
	if (!q->locked)
		return;
	ids[0] = xcalloc(n + 1, sizeof *ids[0]);
	ids[1] = xcalloc(n + 1, sizeof *ids[1]);
	snprintf(score, sizeof score, "%llu", (unsigned long long)until_wall_ms);
	for (size_t i = 0; i < n; i++) {
		const struct job *j = jobs[i];
		if (j->origin == JOB_FROM_RETRY) {
			char zbuf[600];

			send_strv(q, NULL, NULL, 5, (const char *[]){ "ZADD",
			    retry_key(q, j->retry_pool, zbuf, sizeof zbuf), "XX", score, j->key });
			continue;
		}
		int high = j->origin == JOB_FROM_HIGH;
		ids[high][nids[high]++] = job_entry_id(j);
	}
	refresh_stream(q, q->k_jobs, ids[0], nids[0]);
	refresh_stream(q, q->k_jobs_high, ids[1], nids[1]);
	free(ids[0]);
	free(ids[1]);
}

/* --- typed reads and writes --- */

struct rq_typed {
	void *cb;
	void *arg;
	size_t n;
	int step;
	int empty;
};

/*
 * The suppression check of one read batch: one SMISMEMBER on the global
 * set with every address, and one per tenant in the batch on that
 * tenant's set with its addresses, all pipelined (one round trip). An
 * address is suppressed if any set has it. Any failed part fails the
 * whole check (member NULL).
 */
struct rq_supp_check {
	void (*cb)(void *, const int *, size_t);
	void *arg;
	size_t n;
	int *member;
	size_t *order;			/* job indexes grouped by tenant */
	unsigned waiting;		/* replies still to come (+1 while sending) */
	int failed;
};

struct rq_supp_part {
	struct rq_supp_check *c;
	const size_t *idx;		/* NULL: the global set, every address */
	size_t count;
};

static void
supp_check_done(struct rq_supp_check *c)
{
	if (--c->waiting > 0)
		return;
	c->cb(c->arg, c->failed ? NULL : c->member, c->n);
	free(c->member);
	free(c->order);
	free(c);
}

static void
on_suppressed(struct rq *q, redisReply *r, void *priv)
{
	struct rq_supp_part *p = priv;
	struct rq_supp_check *c = p->c;

	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == p->count) {
		for (size_t i = 0; i < p->count; i++)
			if (r->element[i]->type == REDIS_REPLY_INTEGER && r->element[i]->integer == 1)
				c->member[p->idx ? p->idx[i] : i] = 1;
	} else {
		if (r != NULL)
			log_error("redis", "suppression check failed: %s",
			    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		c->failed = 1;
	}
	free(p);
	supp_check_done(c);
}

/* Send SMISMEMBER key addrs[idx...] (idx NULL: addrs[0..count)). */
static void
supp_send(struct rq *q, struct rq_supp_check *c, const char *key, const char *const *addrs,
    const size_t *idx, size_t count)
{
	const char **argv = xcalloc(count + 2, sizeof *argv);
	struct rq_supp_part *p = xcalloc(1, sizeof *p);

	argv[0] = "SMISMEMBER";
	argv[1] = key;
	for (size_t i = 0; i < count; i++)
		argv[i + 2] = addrs[idx ? idx[i] : i];
	p->c = c;
	p->idx = idx;
	p->count = count;
	c->waiting++;
	if (send_strv(q, on_suppressed, p, (int)count + 2, argv) != 0) {
		free(p);
		c->failed = 1;
		c->waiting--;
	}
	free(argv);
}

static const char *const *supp_sort_tenants;

static int
supp_cmp(const void *a, const void *b)
{
	return strcmp(supp_sort_tenants[*(const size_t *)a], supp_sort_tenants[*(const size_t *)b]);
}

int
rq_suppressed(struct rq *q, const char *const *addrs, const char *const *tenants, size_t n,
    void (*cb)(void *arg, const int *member, size_t n), void *arg)
{
	struct rq_supp_check *c;
	size_t nt = 0;

	if (!rq_connected(q) || n == 0)
		return -1;
	c = xcalloc(1, sizeof *c);
	c->cb = cb;
	c->arg = arg;
	c->n = n;
	c->member = xcalloc(n + 1, sizeof *c->member);
	c->order = xcalloc(n + 1, sizeof *c->order);
	c->waiting = 1;
	supp_send(q, c, q->k_supp, addrs, NULL, n);
	if (c->waiting == 1) {		/* not sent: nothing will call back */
		free(c->member);
		free(c->order);
		free(c);
		return -1;
	}
	for (size_t i = 0; tenants && i < n; i++)
		if (tenants[i] && tenants[i][0])
			c->order[nt++] = i;
	if (nt > 0) {
		supp_sort_tenants = tenants;
		qsort(c->order, nt, sizeof *c->order, supp_cmp);
		supp_sort_tenants = NULL;
	}
	for (size_t g = 0; g < nt;) {
		size_t e = g + 1;
		char *key;
		while (e < nt && strcmp(tenants[c->order[e]], tenants[c->order[g]]) == 0)
			e++;
		key = suppression_key(q, tenants[c->order[g]]);
		supp_send(q, c, key, addrs, c->order + g, e - g);
		free(key);
		g = e;
	}
	supp_check_done(c);		/* the sending guard */
	return 0;
}

/*
 * The pause state: HKEYS of PREFIXpaused:campaign and PREFIXpaused:tenant,
 * pipelined. The callback gets both lists, or ok 0 if either failed.
 */
struct rq_pause_read {
	void (*cb)(void *, int, const char *const *, size_t, const char *const *, size_t);
	void *arg;
	char **names[2];		/* copies: hiredis frees each reply */
	size_t counts[2];
	int step, failed;
	char *kc, *kt;			/* the two hashes' names */
};

static void
on_paused(struct rq *q, redisReply *r, void *priv)
{
	struct rq_pause_read *p = priv;
	int k = p->step++;

	if (r != NULL && r->type == REDIS_REPLY_ARRAY) {
		uint64_t now = clock_wall_ms();

		p->names[k] = xcalloc(r->elements / 2 + 1, sizeof *p->names[k]);
		for (size_t i = 0; i + 1 < r->elements; i += 2) {
			const redisReply *nm = r->element[i], *v = r->element[i + 1];
			const char *u;

			if (nm->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
				continue;
			/* "SINCE BY until=MS": a pause with an end (a shaping
			 * rule's). Once past, it is over: not paused, and the
			 * entry goes (only if nobody rewrote it meanwhile). */
			u = strstr(v->str, " until=");
			if (u != NULL && strtoull(u + 7, NULL, 10) <= now) {
				send_strv(q, NULL, NULL, 6, (const char *[]){ "EVAL",
				    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
				    "return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0",
				    "1", k == 0 ? p->kc : p->kt, nm->str, v->str });
				continue;
			}
			p->names[k][p->counts[k]++] = xstrdup(nm->str);
		}
	} else {
		if (r != NULL)
			log_error("redis", "reading the pause state failed: %s",
			    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		p->failed = 1;
	}
	if (p->step < 2)
		return;
	p->cb(p->arg, !p->failed, (const char *const *)p->names[0], p->counts[0],
	    (const char *const *)p->names[1], p->counts[1]);
	for (k = 0; k < 2; k++) {
		for (size_t i = 0; i < p->counts[k]; i++)
			free(p->names[k][i]);
		free(p->names[k]);
	}
	free(p->kc);
	free(p->kt);
	free(p);
}

int
rq_paused(struct rq *q, void (*cb)(void *arg, int ok, const char *const *campaigns, size_t nc,
    const char *const *tenants, size_t nt), void *arg)
{
	struct rq_pause_read *p;
	char *kc, *kt;
	int r;

	if (!rq_connected(q))
		return -1;
	p = xcalloc(1, sizeof *p);
	p->cb = cb;
	p->arg = arg;
	kc = xasprintf("%s%s", q->cfg->prefix, RQ_K_PAUSED_CAMPAIGN);
	kt = xasprintf("%s%s", q->cfg->prefix, RQ_K_PAUSED_TENANT);
	p->kc = kc;
	p->kt = kt;
	r = send_strv(q, on_paused, p, 2, (const char *[]){ "HGETALL", kc });
	if (r != 0) {
		free(kc);
		free(kt);
		free(p);
	} else if (send_strv(q, on_paused, p, 2, (const char *[]){ "HGETALL", kt }) != 0) {
		on_paused(q, NULL, p);	/* cannot happen: same context */
	}
	return r;
}

int
rq_pause_until(struct rq *q, int tenant, const char *name, uint64_t now_wall,
    uint64_t until_wall, const char *by)
{
	char *k, *v, *b = xstrdup(by && by[0] ? by : "volley"), untils[24];
	int r;

	snprintf(untils, sizeof untils, "%llu", (unsigned long long)until_wall);

	if (!rq_connected(q)) {
		free(b);
		return -1;
	}
	for (char *c = b; *c; c++)
		if (*c == ' ' || (unsigned char)*c < 0x21)
			*c = '_';
	k = xasprintf("%s%s", q->cfg->prefix, tenant ? RQ_K_PAUSED_TENANT : RQ_K_PAUSED_CAMPAIGN);
	v = xasprintf("%llu %s until=%llu", (unsigned long long)now_wall, b,
	    (unsigned long long)until_wall);
	/* Never over an operator's pause (it has no end and must not get
	 * one); over a rule's that ends sooner (or has ended), yes. */
	r = send_strv(q, NULL, NULL, 7, (const char *[]){ "EVAL",
	    "local v = redis.call('HGET', KEYS[1], ARGV[1]) "
	    "if v then local u = string.match(v, ' until=(%d+)') "
	    "if not u or tonumber(u) >= tonumber(ARGV[3]) then return 0 end end "
	    "return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])", "1", k, name, v, untils });
	free(k);
	free(v);
	free(b);
	return r;
}

/*
 * unpark: after a resume, the waiting jobs of the resumed names due within
 * the next window become due now. KEYS retry. ARGV now, until, job hash
 * prefix, field (campaign|tenant), names... Only jobs nobody holds
 * (leases 0: parked or deferred, not leased) are moved. Sent with EVAL:
 * it is rare.
 */
static const char unpark_lua[] =
"local want = {}\n"
"for i = 5, #ARGV do want[ARGV[i]] = true end\n"
"local n = 0\n"
"for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2])) do\n"
"  local h = redis.call('HMGET', ARGV[3] .. id, ARGV[4], 'leases')\n"
"  if h[1] and want[h[1]] and (h[2] == false or h[2] == '0') then\n"
"    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], id)\n"
"    n = n + 1\n"
"  end\n"
"end\n"
"return n\n";

static void
on_unpark(struct rq *q, redisReply *r, void *priv)
{
	const char *field = priv;

	if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
		log_info("redis", "resumed %s(s): %lld waiting job(s) due now", field, r->integer);
	else if (r != NULL && r->type == REDIS_REPLY_ERROR)
		log_warn("redis", "bringing resumed jobs forward failed (they come back on their "
		    "own): %s", r->str);
}

int
rq_unpark(struct rq *q, int tenant, const char *const *names, size_t n, uint64_t now_wall_ms,
    uint64_t window_ms)
{
	const char **argv;
	char now[32], until[32];
	const char *field = tenant ? "tenant" : "campaign";
	int r;

	if (!rq_connected(q) || n == 0)
		return -1;
	snprintf(now, sizeof now, "%llu", (unsigned long long)now_wall_ms);
	snprintf(until, sizeof until, "%llu", (unsigned long long)(now_wall_ms + window_ms));
	argv = xcalloc(n + 9, sizeof *argv);
	argv[0] = "EVAL"; argv[1] = unpark_lua; argv[2] = "1"; argv[3] = q->k_retry;
	argv[4] = now; argv[5] = until; argv[6] = q->k_jobp; argv[7] = field;
	for (size_t i = 0; i < n; i++)
		argv[8 + i] = names[i];
	r = send_strv(q, on_unpark, (void *)field, (int)n + 8, argv);
	/* and the ZSET of each pool this engine owns (its paused jobs wait there) */
	for (size_t z = 0; r == 0 && z < q->nown_pools; z++) {
		char zbuf[600];

		argv[3] = retry_key(q, q->own_pools[z], zbuf, sizeof zbuf);
		send_strv(q, on_unpark, (void *)field, (int)n + 8, argv);
	}
	free(argv);
	return r;
}

/* A msg_ref body in two steps: STRLEN (a missing key is 0, a non-string
 * WRONGTYPE), then GET only if it is not too large. */
struct rq_body {
	void (*cb)(void *, enum rq_body_status, const char *, size_t);
	void *arg;
	uint64_t max;
	char *key;
};

static void
body_done(struct rq_body *b, enum rq_body_status st, const char *data, size_t len)
{
	b->cb(b->arg, st, data, len);
	free(b->key);
	free(b);
}

static void
on_body(struct rq *q, redisReply *r, void *priv)
{
	struct rq_body *b = priv;

	if (r != NULL && r->type == REDIS_REPLY_STRING) {
		if (b->max > 0 && r->len > b->max)
			body_done(b, RQ_BODY_TOO_LARGE, NULL, r->len);
		else
			body_done(b, RQ_BODY_OK, r->str, r->len);
	} else if (r != NULL && r->type == REDIS_REPLY_NIL) {
		body_done(b, RQ_BODY_MISSING, NULL, 0);
	} else if (r != NULL && r->type == REDIS_REPLY_ERROR && err_is(r->str, "WRONGTYPE")) {
		body_done(b, RQ_BODY_MISSING, NULL, 0);
	} else {
		body_done(b, RQ_BODY_ERROR, NULL, 0);
	}
}

static void
on_body_len(struct rq *q, redisReply *r, void *priv)
{
	struct rq_body *b = priv;

	if (r != NULL && r->type == REDIS_REPLY_INTEGER) {
		if (r->integer == 0)
			body_done(b, RQ_BODY_MISSING, NULL, 0);
		else if (b->max > 0 && (uint64_t)r->integer > b->max)
			body_done(b, RQ_BODY_TOO_LARGE, NULL, (size_t)r->integer);
		else if (send_strv(q, on_body, b, 2, (const char *[]){ "GET", b->key }) != 0)
			body_done(b, RQ_BODY_ERROR, NULL, 0);
		return;
	}
	on_body(q, r, b);
}


int
rq_fetch_body(struct rq *q, const char *key, uint64_t max_size,
    void (*cb)(void *arg, enum rq_body_status st, const char *data, size_t len), void *arg)
{
	struct rq_body *b;

	if (!rq_connected(q))
		return -1;
	b = xcalloc(1, sizeof *b);
	b->cb = cb;
	b->arg = arg;
	b->max = max_size;
	b->key = xstrdup(key);
	if (send_strv(q, on_body_len, b, 2, (const char *[]){ "STRLEN", key }) != 0) {
		free(b->key);
		free(b);
		return -1;
	}
	return 0;
}

void
rq_publish_stats(struct rq *q, const struct rq_stats *s)
{
	char num[11][32], ttl[16];
	const char *argv[36];
	int n = 0;

	if (!q->locked || q->ac == NULL)
		return;
	snprintf(num[0], 32, "%ld", s->pid);
	snprintf(num[1], 32, "%llu", (unsigned long long)s->started_ms);
	snprintf(num[2], 32, "%llu", (unsigned long long)s->heartbeat_ms);
	snprintf(num[3], 32, "%u", s->sessions);
	snprintf(num[4], 32, "%zu", s->in_memory);
	snprintf(num[5], 32, "%llu", (unsigned long long)s->delivered);
	snprintf(num[6], 32, "%llu", (unsigned long long)s->deferred);
	snprintf(num[7], 32, "%llu", (unsigned long long)s->bounced);
	snprintf(num[8], 32, "%llu", (unsigned long long)s->expired);
	snprintf(num[9], 32, "%llu", (unsigned long long)s->failed);
	snprintf(num[10], 32, "%llu", (unsigned long long)s->suppressed);
	argv[n++] = "HSET"; argv[n++] = q->k_stats;
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
	argv[n++] = "dests"; argv[n++] = s->dests ? s->dests : "";
	argv[n++] = "sites"; argv[n++] = s->sites ? s->sites : "";
	argv[n++] = "ips"; argv[n++] = s->ips ? s->ips : "";
	argv[n++] = "lanes"; argv[n++] = s->lanes ? s->lanes : "";
	argv[n++] = "fleet"; argv[n++] = s->fleet ? s->fleet : "";
	send_strv(q, NULL, NULL, n, argv);
	snprintf(ttl, sizeof ttl, "%d", RQ_STATS_TTL_MS);
	send_strv(q, NULL, NULL, 3, (const char *[]){ "PEXPIRE", q->k_stats, ttl });
	send_strv(q, NULL, NULL, 3, (const char *[]){ "SADD", q->k_insts, q->cfg->instance });
}

static void
on_drain_reply(struct rq *q, redisReply *r, void *priv)
{
	struct rq_typed *t = priv;
	void (*cb)(void *, int) = (void (*)(void *, int))t->cb;

	if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer != 0)
		t->empty = 0;
	if (++t->step < (int)t->n)
		return;
	cb(t->arg, t->empty);
	free(t);
}

int
rq_drain_check(struct rq *q, void (*cb)(void *arg, int empty), void *arg)
{
	struct rq_typed *t;

	if (!rq_connected(q))
		return -1;
	t = xcalloc(1, sizeof *t);
	t->cb = (void *)cb;
	t->arg = arg;
	t->empty = 1;
	t->n = 3 + q->nown_pools;
	/* Settled entries are deleted from the stream (XDEL with the ack), so
	 * an empty stream means nothing unread and nothing pending. */
	if (send_strv(q, on_drain_reply, t, 2, (const char *[]){ "XLEN", q->k_jobs }) != 0) {
		free(t);
		return -1;
	}
	if (send_strv(q, on_drain_reply, t, 2, (const char *[]){ "XLEN", q->k_jobs_high }) != 0)
		on_drain_reply(q, NULL, t);	/* cannot happen: same context */
	if (send_strv(q, on_drain_reply, t, 2, (const char *[]){ "ZCARD", q->k_retry }) != 0)
		on_drain_reply(q, NULL, t);	/* cannot happen: same context */
	/* The retry ZSETs of pools this engine owns count; those of pools
	 * it does not own are their owners' to drain. Jobs only move from
	 * the streams to PREFIXretry to a pool's ZSET, so asking in that
	 * order never misses one on its way. The step count is set above:
	 * the callback runs once, after the last reply. */
	for (size_t z = 0; z < q->nown_pools; z++) {
		char zbuf[600];

		if (send_strv(q, on_drain_reply, t, 2, (const char *[]){ "ZCARD",
		    retry_key(q, q->own_pools[z], zbuf, sizeof zbuf) }) != 0)
			on_drain_reply(q, NULL, t);	/* cannot happen: same context */
	}
	return 0;
}



/* --- fleet-wide limits --- */

struct rq_fleet_req {
	void (*cb)(void *arg, int ok, uint32_t granted, uint64_t wait_ms);
	void *arg;
	uint32_t n;
};

static void
on_fleet(struct rq *q, redisReply *r, void *priv)
{
	struct rq_fleet_req *f = priv;
	long long k, w;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER ||
	    r->element[1]->type != REDIS_REPLY_INTEGER) {
		if (r != NULL)
			log_warn("redis", "fleet limit: %s", r->type == REDIS_REPLY_ERROR ? r->str :
			    "unexpected reply");
		f->cb(f->arg, 0, 0, 0);
		free(f);
		return;
	}
	k = r->element[0]->integer;
	w = r->element[1]->integer;
	if (k < 0 || k > (long long)f->n)
		k = 0;			/* never trust more than we asked for */
	f->cb(f->arg, 1, (uint32_t)k, w > 0 ? (uint64_t)w : 0);
	free(f);
}

int
rq_fleet_take(struct rq *q, const char *name, uint32_t n, uint64_t mph, uint32_t burst,
    void (*cb)(void *arg, int ok, uint32_t granted, uint64_t wait_ms), void *arg)
{
	struct rq_fleet_req *f;
	char key[400], ns[16], ts[24], bs[16];

	if (q->ac == NULL || !q->ready || n == 0 || mph == 0)
		return -1;
	snprintf(key, sizeof key, "%s%s%s", q->cfg->prefix, RQ_K_FLEET, name);
	snprintf(ns, sizeof ns, "%u", n);
	snprintf(ts, sizeof ts, "%llu", (unsigned long long)pace_interval_us(mph));
	snprintf(bs, sizeof bs, "%u", burst ? burst : 1);
	f = xmalloc(sizeof *f);
	f->cb = cb;
	f->arg = arg;
	f->n = n;
	if (send_strv(q, on_fleet, f, 7, (const char *[]){ "EVALSHA", q->sha[SCRIPT_FLEET], "1",
	    key, ns, ts, bs }) != 0) {
		free(f);
		return -1;
	}
	return 0;
}

/* --- the shaping stream --- */

int
rq_shaping_event(struct rq *q, const struct shaper_event *ev)
{
	char key[300], win[16], until[24], ts[24], maxlen[24], rate[32];

	if (!q->locked || q->ac == NULL)
		return -1;
	snprintf(key, sizeof key, "%sshaping", q->cfg->prefix);
	snprintf(win, sizeof win, "%u", (unsigned)ev->window);
	snprintf(until, sizeof until, "%llu", (unsigned long long)ev->until);
	snprintf(ts, sizeof ts, "%llu", (unsigned long long)ev->ts);
	snprintf(maxlen, sizeof maxlen, "%d", RQ_SHAPING_MAXLEN);
	pace_rate_text(ev->mph, rate, sizeof rate);
	send_strv(q, NULL, NULL, 20, (const char *[]){ "XADD", key, "MAXLEN", "~", maxlen, "*",
	    "lane", ev->lane, "action", shaper_action_name(ev->action), "reason", ev->reason,
	    "window", win, "rate", rate, "until", until, "ts", ts });
	return 0;
}


/* --- warm-up counters --- */

struct rq_warm_call {
	void (*cb)(void *arg, const struct rq_warmup_ans *a);
	void *arg;
};

/* An integer element of a script's answer, range-checked (Redis data is hostile). */
static int
warm_int(const redisReply *r, size_t i, long long lo, long long hi, long long *v)
{
	if (i >= r->elements || r->element[i]->type != REDIS_REPLY_INTEGER)
		return -1;
	*v = r->element[i]->integer;
	return *v < lo || *v > hi ? -1 : 0;
}

static void
on_warmup(struct rq *q, redisReply *r, void *priv)
{
	struct rq_warm_call *c = priv;
	struct rq_warmup_ans a;
	long long v[7];
	static const long long lo[7] = { 0, 0, 0, 0, 0, 0, 0 };
	static const long long hi[7] = { 10000000, 10000000, UINT32_MAX, UINT32_MAX, 1,
	    (long long)1 << 52, UINT32_MAX };
	int ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 7;

	(void)q;
	for (size_t i = 0; ok && i < 7; i++)
		if (warm_int(r, i, lo[i], hi[i], &v[i]) != 0)
			ok = 0;
	if (!ok) {
		if (r != NULL)
			log_warn("redis", "warm-up counters: %s", r->type == REDIS_REPLY_ERROR ?
			    r->str : "unexpected reply");
		c->cb(c->arg, NULL);
		free(c);
		return;
	}
	memset(&a, 0, sizeof a);
	a.shift = v[1];
	a.start = v[0] + v[1];
	a.sent_day = (uint32_t)v[2];
	a.sent_hour = (uint32_t)v[3];
	a.held = (int)v[4];
	a.hold_until = (uint64_t)v[5];
	a.hold_day = (uint32_t)v[6];
	c->cb(c->arg, &a);
	free(c);
}

int
rq_warmup_sync(struct rq *q, const struct rq_warmup_req *w,
    void (*cb)(void *arg, const struct rq_warmup_ans *a), void *arg)
{
	char k_ip[300], k_day[340], day[24], hour[8], start[24], delta[16], applied[400];
	char id[160], ttl[16], now[24], today[24];
	const char *site = w->site ? w->site : "";
	struct rq_warm_call *c;

	if (!rq_connected(q))
		return -1;
	snprintf(k_ip, sizeof k_ip, "%s%s%s", q->cfg->prefix, RQ_K_WARMUP, w->ip);
	snprintf(k_day, sizeof k_day, "%s:%llu", k_ip, (unsigned long long)(w->hour / 24));
	snprintf(day, sizeof day, "%llu", (unsigned long long)(w->hour / 24));
	snprintf(hour, sizeof hour, "%02u", (unsigned)(w->hour % 24));
	if (w->cfg_start >= 0)
		snprintf(start, sizeof start, "%lld", (long long)w->cfg_start);
	else
		start[0] = '\0';
	snprintf(delta, sizeof delta, "%u", (unsigned)w->delta);
	snprintf(applied, sizeof applied, "a:%s%s%s", q->cfg->instance, site[0] ? ":" : "", site);
	snprintf(id, sizeof id, "%s:%llu", q->token, (unsigned long long)w->id);
	snprintf(ttl, sizeof ttl, "%d", RQ_WARMUP_DAY_TTL_S);
	snprintf(now, sizeof now, "%llu", (unsigned long long)w->now_wall_ms);
	snprintf(today, sizeof today, "%llu", (unsigned long long)(w->now_wall_ms / 86400000ull));
	c = xmalloc(sizeof *c);
	c->cb = cb;
	c->arg = arg;
	if (send_strv(q, on_warmup, c, 15, (const char *[]){ "EVALSHA", q->sha[SCRIPT_WARMUP], "2",
	    k_ip, k_day, day, hour, start, site, delta, applied, id, ttl, now, today }) != 0) {
		free(c);
		return -1;
	}
	return 0;
}

static void
on_warmhold(struct rq *q, redisReply *r, void *priv)
{
	char *ip = priv;

	(void)q;
	if (r != NULL && r->type == REDIS_REPLY_INTEGER)
		log_info("redis", "warm-up of %s: %s", ip, r->integer > 0 ? "held" : "released");
	else
		log_warn("redis", "warm-up hold of %s not written: %s", ip,
		    r == NULL ? "connection lost" : r->type == REDIS_REPLY_ERROR ? r->str :
		    "unexpected reply");
	free(ip);
}

int
rq_warmup_hold(struct rq *q, const char *ip, int64_t cfg_start, uint64_t until_wall_ms,
    const char *reason, uint64_t now_wall_ms)
{
	char k_ip[300], today[24], start[24], until[24], now[24];
	char *copy;

	if (!rq_connected(q))
		return -1;
	snprintf(k_ip, sizeof k_ip, "%s%s%s", q->cfg->prefix, RQ_K_WARMUP, ip);
	snprintf(today, sizeof today, "%llu", (unsigned long long)(now_wall_ms / 86400000ull));
	if (cfg_start >= 0)
		snprintf(start, sizeof start, "%lld", (long long)cfg_start);
	else
		start[0] = '\0';
	snprintf(until, sizeof until, "%llu", (unsigned long long)until_wall_ms);
	snprintf(now, sizeof now, "%llu", (unsigned long long)now_wall_ms);
	copy = xstrdup(ip);
	if (send_strv(q, on_warmhold, copy, 9, (const char *[]){ "EVALSHA", q->sha[SCRIPT_WARMHOLD],
	    "1", k_ip, today, start, until, reason ? reason : "", now }) != 0) {
		free(copy);
		return -1;
	}
	return 0;
}

/* --- the inbound stream (DSNs and feedback reports) --- */

static void
inbound_done(struct rq *q, size_t seen)
{
	q->inbound_reading = 0;
	if (q->inbound_cb)
		q->inbound_cb(q->inbound_arg, NULL, 0, seen);
}

static void
on_inbound_read(struct rq *q, redisReply *r, void *priv)
{
	struct rq_inbound_msg *m;
	size_t n = 0;

	if (r == NULL || q->freeing) {
		inbound_done(q, 0);
		return;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		if (err_is(r->str, "NOGROUP"))
			create_groups(q);
		else if (!err_is(r->str, "NOSCRIPT"))
			log_error("redis", "reading %s%s: %s", q->cfg->prefix, RQ_K_INBOUND, r->str);
		inbound_done(q, 0);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY) {
		inbound_done(q, 0);
		return;
	}
	if (priv != NULL && r->elements == 0) {
		/* our own pending list is done: new entries from now on */
		q->inbound_history = 0;
		inbound_done(q, 1);	/* read on at once */
		return;
	}
	m = xcalloc(r->elements + 1, sizeof *m);
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i], *f;
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING)
			continue;
		if (priv != NULL)
			snprintf(q->inbound_from, sizeof q->inbound_from, "%s", e->element[0]->str);
		f = e->element[1];
		if (f->type != REDIS_REPLY_ARRAY) {
			/* deleted while pending: nothing left to read */
			log_warn("redis", "inbound entry %s was deleted before it was read; acking it",
			    e->element[0]->str);
			send_fmt(q, NULL, NULL, "XACK %s%s %s %s", q->cfg->prefix, RQ_K_INBOUND,
			    RQ_INBOUND_GROUP, e->element[0]->str);
			continue;
		}
		m[n].entry = e->element[0]->str;
		m[n].rcpt = m[n].from = m[n].source = m[n].ts = "";
		for (size_t k = 0; k + 1 < f->elements; k += 2) {
			const redisReply *a = f->element[k], *b = f->element[k + 1];
			if (a->type != REDIS_REPLY_STRING || b->type != REDIS_REPLY_STRING)
				continue;
			if (strcmp(a->str, "msg") == 0) {
				m[n].msg = b->str;
				m[n].msg_len = b->len;
			} else if (strcmp(a->str, "rcpt") == 0) {
				m[n].rcpt = b->str;
			} else if (strcmp(a->str, "from") == 0) {
				m[n].from = b->str;
			} else if (strcmp(a->str, "source") == 0) {
				m[n].source = b->str;
			} else if (strcmp(a->str, "ts") == 0) {
				m[n].ts = b->str;
			}
		}
		n++;
	}
	if (n > 0 && q->inbound_cb)
		q->inbound_cb(q->inbound_arg, m, n, 0);
	free(m);
	inbound_done(q, r->elements);
}

int
rq_inbound_fetch(struct rq *q, unsigned max, uint64_t claim_idle_ms,
    void (*cb)(void *arg, const struct rq_inbound_msg *m, size_t n, size_t seen), void *arg)
{
	char key[300], cnt[16], idle[32];
	int hist = q->inbound_history;

	if (!rq_connected(q) || q->inbound_reading || max == 0)
		return -1;
	q->inbound_cb = cb;
	q->inbound_arg = arg;
	snprintf(key, sizeof key, "%s%s", q->cfg->prefix, RQ_K_INBOUND);
	snprintf(cnt, sizeof cnt, "%u", max);
	snprintf(idle, sizeof idle, "%llu", (unsigned long long)(hist ? 0 : claim_idle_ms));
	if (send_strv(q, on_inbound_read, hist ? (void *)1 : NULL, 9, (const char *[]){
	    "EVALSHA", q->sha[SCRIPT_INBOUND_READ], "1", key, RQ_INBOUND_GROUP, q->cfg->instance,
	    cnt, hist ? q->inbound_from : ">", idle }) != 0)
		return -1;
	q->inbound_reading = 1;
	return 0;
}

static void
inbound_arg(const char **v, size_t *l, size_t *n, size_t cap, const char *s)
{
	if (*n >= cap)
		panic("inbound argv overflow");
	v[*n] = s ? s : "";
	l[*n] = strlen(v[*n]);
	(*n)++;
}

void
rq_inbound_settle(struct rq *q, const struct rq_inbound_msg *m, enum rq_inbound_mode mode,
    const char *job_id, const char *id_key, const char *reason,
    const struct rq_inbound_event *ev, size_t nev)
{
	size_t cap = 32, n = 0;
	const char **v;
	size_t *l;
	char *k_in, *k_un, *k_mark, *k_sent, *k_stp, *k_info, *k_itp, *k_seen, *k_rate;
	char maxlen[24], umaxlen[24], ttl[24], seen_ttl[24], ts[24], nev_s[24];
	char (*nums)[24];
	uint64_t keep = config_keep_sent_ms(q->cfg);

	for (size_t i = 0; i < nev; i++)
		cap += 5 + 2 * ev[i].npairs;
	v = xcalloc(cap, sizeof *v);
	l = xcalloc(cap, sizeof *l);
	nums = xcalloc(nev + 1, sizeof *nums);
	k_in = xasprintf("%s%s", q->cfg->prefix, RQ_K_INBOUND);
	k_un = xasprintf("%s%s", q->cfg->prefix, RQ_K_INBOUND_UNMATCHED);
	k_mark = xasprintf("%s%s%s", q->cfg->prefix, RQ_K_INBOUND_DONE, m->entry);
	k_sent = xasprintf("%s%s%s", q->cfg->prefix, RQ_K_SENT, id_key ? id_key : "");
	k_stp = xasprintf("%s%s", q->cfg->prefix, RQ_K_SUPPRESSED_TENANT);
	k_info = xasprintf("%s%s", q->cfg->prefix, RQ_K_SUPP_INFO);
	k_itp = xasprintf("%s%s", q->cfg->prefix, RQ_K_SUPP_INFO_TENANT);
	k_seen = xasprintf("%s%s%s:", q->cfg->prefix, RQ_K_INBOUND_SEEN, id_key ? id_key : "");
	k_rate = xasprintf("%s%s", q->cfg->prefix, RQ_K_RATE);
	snprintf(maxlen, sizeof maxlen, "%u", q->cfg->events_maxlen);
	snprintf(umaxlen, sizeof umaxlen, "%u", RQ_INBOUND_UNMATCHED_MAXLEN);
	snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)done_ttl_ms(q->cfg));
	/* One event per job, status and recipient for as long as reports
	 * about the job can be tied to it. */
	snprintf(seen_ttl, sizeof seen_ttl, "%llu",
	    (unsigned long long)(keep > 0 ? keep : 7ull * 86400000));
	snprintf(ts, sizeof ts, "%llu", (unsigned long long)clock_wall_ms());
	snprintf(nev_s, sizeof nev_s, "%zu", mode == RQ_INBOUND_EVENTS ? nev : 0);
#define A(s_) inbound_arg(v, l, &n, cap, (s_))
	A("EVALSHA"); A(q->sha[SCRIPT_INBOUND]); A("6");
	A(k_in); A(q->k_events); A(k_un); A(k_mark); A(k_sent); A(k_rate);
	A(RQ_INBOUND_GROUP); A(m->entry); A(maxlen); A(umaxlen); A(ttl);
	A(mode == RQ_INBOUND_EVENTS ? "e" : mode == RQ_INBOUND_UNMATCHED ? "u" : "a");
	A(keep > 0 ? "1" : "0");	/* records are written: a job without one is unknown */
	A(q->k_supp); A(k_stp); A(k_info); A(k_itp); A(k_seen); A(seen_ttl); A(ts);
	A(job_id); A(reason);
	A(m->msg);
	l[n - 1] = m->msg ? m->msg_len : 0;	/* binary-safe */
	A(m->source); A(m->rcpt); A(m->from); A(nev_s);
	for (size_t i = 0; mode == RQ_INBOUND_EVENTS && i < nev; i++) {
		A(ev[i].status); A(ev[i].rcpt); A(ev[i].suppress ? "1" : "0"); A(ev[i].why);
		snprintf(nums[i], sizeof nums[i], "%zu", ev[i].npairs);
		A(nums[i]);
		for (size_t k = 0; k < 2 * ev[i].npairs; k++)
			A(ev[i].pairs[k]);
	}
#undef A
	outbox_add(q, (int)n, v, l);
	free(v);
	free(l);
	free(nums);
	free(k_in); free(k_un); free(k_mark); free(k_sent); free(k_stp); free(k_info);
	free(k_itp); free(k_seen); free(k_rate);
}
/* --- the inbound stream (engine/listener.c) --- */

struct rq_inbound_call {
	void (*cb)(void *arg, int ok);
	void *arg;
};

static void
on_inbound_add(struct rq *q, redisReply *r, void *priv)
{
	struct rq_inbound_call *c = priv;
	int ok = r != NULL && r->type == REDIS_REPLY_STRING;

	(void)q;
	if (!ok)
		log_warn("redis", "inbound XADD: %s", r == NULL ? "connection lost" :
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	c->cb(c->arg, ok);
	free(c);
}

/*
 * rq_inbound_add - XADD PREFIXinbound MAXLEN ~ RQ_INBOUND_MAXLEN * msg rcpt
 * from source ts. cb(arg, 1) once Redis has the entry, cb(arg, 0) on an
 * error or a lost connection (exactly once either way). Returns -1 without
 * calling cb when there is no usable connection.
 */
int
rq_inbound_add(struct rq *q, const char *msg, size_t len, const char *rcpts,
    const char *from, const char *source, void (*cb)(void *arg, int ok), void *arg)
{
	struct rq_inbound_call *c;
	struct argv a;
	char key[300];

	if (q->ac == NULL || !q->ready || q->freeing || q->shut)
		return -1;
	memset(&a, 0, sizeof a);
	snprintf(key, sizeof key, "%s%s", q->cfg->prefix, RQ_K_INBOUND);
	av_add(&a, "XADD");
	av_add(&a, key);
	av_add(&a, "MAXLEN");
	av_add(&a, "~");
	av_addu(&a, RQ_INBOUND_MAXLEN);
	av_add(&a, "*");
	av_add(&a, "msg");
	av_addn(&a, msg ? msg : "", msg ? len : 0);
	av_add(&a, "rcpt");
	av_add(&a, rcpts);
	av_add(&a, "from");
	av_add(&a, from);
	av_add(&a, "source");
	av_add(&a, source);
	av_add(&a, "ts");
	av_addu(&a, clock_wall_ms());
	c = xmalloc(sizeof *c);
	c->cb = cb;
	c->arg = arg;
	if (send_argv(q, on_inbound_add, c, a.n, a.v, a.l) != 0) {
		free(c);
		return -1;
	}
	return 0;
}

/* --- the feedback loop's counters (rates.h) --- */

/*
 * rates_read: ARGV rate prefix, now ms, max names, dims ('campaign:,ip:,'
 * ...: the dimensions wanted), past budget. Drops names idle for 25 hours
 * from PREFIXrate:active, then per name (most recent first): {member,
 * cur, past, life}, flat field/value lists: this hour's bucket H; the
 * past hours, from PREFIXrate:DIM:NAME:past:H (fields p:F for H-1, m:F
 * for H-23..H-2 summed, o:F for H-24), built from the buckets by the
 * first read of the hour (those hours no longer change: counts go to the
 * bucket of the current time) and kept 2 hours; a campaign's lifetime
 * hash (empty for the others). At most `budget` past hashes are built
 * per call (each costs 24 HGETALL); a name whose past is not built yet is
 * left out of this answer.
 */
static const char rates_read_lua[] =
"local rp, now, max, budget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])\n"
"local act = rp .. 'active'\n"
"local since = string.format('%d', now - 90000000)\n"
"redis.call('ZREMRANGEBYSCORE', act, '-inf', '(' .. since)\n"
"local names = redis.call('ZREVRANGEBYSCORE', act, '+inf', since, 'LIMIT', 0, max * 5)\n"
"local H = math.floor(now / 3600000)\n"
"local function add(k, pre, into)\n"
"  local h = redis.call('HGETALL', k)\n"
"  for i = 1, #h - 1, 2 do\n"
"    local f = pre .. h[i]\n"
"    into[f] = (into[f] or 0) + (tonumber(h[i+1]) or 0)\n"
"  end\n"
"end\n"
"local out = {}\n"
"for _, m in ipairs(names) do\n"
"  if #out >= max then break end\n"
"  local c = string.find(m, ':', 1, true)\n"
"  if c and string.find(ARGV[4], string.sub(m, 1, c), 1, true) then\n"
"    local base = rp .. m .. ':'\n"
"    local pk = base .. 'past:' .. string.format('%d', H)\n"
"    local past = redis.call('HGETALL', pk)\n"
"    if #past == 0 and budget > 0 then\n"
"      budget = budget - 1\n"
"      local t = {x = 1}\n"
"      add(base .. string.format('%d', H - 1), 'p:', t)\n"
"      for h = H - 23, H - 2 do add(base .. string.format('%d', h), 'm:', t) end\n"
"      add(base .. string.format('%d', H - 24), 'o:', t)\n"
"      past = {}\n"
"      for k, v in pairs(t) do past[#past+1] = k; past[#past+1] = string.format('%d', v) end\n"
"      redis.call('HSET', pk, unpack(past))\n"
"      redis.call('EXPIRE', pk, 7200)\n"
"    end\n"
"    if #past > 0 then\n"
"      local life = {}\n"
"      if string.sub(m, 1, 9) == 'campaign:' then life = redis.call('HGETALL', base .. 'life') end\n"
"      out[#out+1] = {m, redis.call('HGETALL', base .. string.format('%d', H)), past, life}\n"
"    end\n"
"  end\n"
"end\n"
"return out\n";

/*
 * rates_act: KEYS marker, shaping stream, pause hash ('' = none), held
 * hash ('' = none). ARGV marker ttl ms, pause name, pause value, shaping
 * maxlen, held field, held value, held until (ms), then the shaping
 * entry's field/value pairs. Once per marker: SET NX, the pause (HSETNX:
 * an operator's pause stays as it is), the suspend/throttle for every
 * engine (one field per IP and site: a running suspension is never
 * replaced by a throttle, a suspension replaces a running throttle, and
 * otherwise the later end wins), the entry.
 * 1: done now, 0: done before (the marker is there).
 */
static const char rates_act_lua[] =
"if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end\n"
"if KEYS[3] ~= '' then redis.call('HSETNX', KEYS[3], ARGV[2], ARGV[3]) end\n"
"if KEYS[4] ~= '' then\n"
"  local old = redis.call('HGET', KEYS[4], ARGV[5])\n"
"  local ou = old and tonumber(string.match(old, ' until=(%d+)')) or 0\n"
"  local tm = redis.call('TIME')\n"
"  local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)\n"
"  local osus = old and string.sub(old, 1, 10) == 'suspended '\n"
"  local nsus = string.sub(ARGV[6], 1, 10) == 'suspended '\n"
"  if ou <= now or (nsus and not osus) or (nsus == osus and ou < tonumber(ARGV[7])) then\n"
"    redis.call('HSET', KEYS[4], ARGV[5], ARGV[6])\n"
"  end\n"
"end\n"
"local f = {}\n"
"for i = 8, #ARGV do f[#f+1] = ARGV[i] end\n"
"redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(f))\n"
"return 1\n";

/* Past hashes one read of the engine may build (see rates_read). */
#define RATES_PAST_BUDGET	"20"

const char *
rq_rates_read_script(void)
{
	return rates_read_lua;
}

/* A counter's value: a whole number, however hostile the hash. */
static double
rate_num(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	return end != s && v >= 0 && v < 1e15 ? v : 0;
}

/* One field of a window (d, b, c, b:CLASS) into c; other fields are ignored. */
static void
rate_field(struct rate_counts *c, const char *f, double v)
{
	enum bounce_class bc;

	if (strcmp(f, "d") == 0)
		c->d += v;
	else if (strcmp(f, "b") == 0)
		c->b += v;
	else if (strcmp(f, "c") == 0)
		c->c += v;
	else if (strncmp(f, "b:", 2) == 0 && bounce_class_from_name(f + 2, &bc) == 0)
		c->bc[bc] += v;
}

static int
rate_list(const redisReply *r, struct rate_counts *c)
{
	memset(c, 0, sizeof *c);
	if (r->type != REDIS_REPLY_ARRAY)
		return -1;
	for (size_t i = 0; i + 1 < r->elements; i += 2)
		if (r->element[i]->type == REDIS_REPLY_STRING &&
		    r->element[i + 1]->type == REDIS_REPLY_STRING)
			rate_field(c, r->element[i]->str, rate_num(r->element[i + 1]->str));
	return 0;
}

/* The past hours: p:F (the hour before), m:F (the 22 before it), o:F
 * (the 25th hour back) into b[0], b[1], b[2]. */
static int
rate_past(const redisReply *r, struct rate_counts b[3])
{
	memset(b, 0, 3 * sizeof *b);
	if (r->type != REDIS_REPLY_ARRAY)
		return -1;
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const char *f = r->element[i]->str;
		int k;

		if (r->element[i]->type != REDIS_REPLY_STRING ||
		    r->element[i + 1]->type != REDIS_REPLY_STRING || strlen(f) < 3 || f[1] != ':')
			continue;
		k = f[0] == 'p' ? 0 : f[0] == 'm' ? 1 : f[0] == 'o' ? 2 : -1;
		if (k >= 0)
			rate_field(&b[k], f + 2, rate_num(r->element[i + 1]->str));
	}
	return 0;
}

/* A campaign's lifetime hash: n, b, b:CLASS, @N, @N:b, @N:b:CLASS. */
static void
rate_life(const redisReply *r, struct rate_entry *e)
{
	size_t ns = 0;

	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const char *f;
		char *end;
		unsigned long n;
		size_t k;

		if (r->element[i]->type != REDIS_REPLY_STRING ||
		    r->element[i + 1]->type != REDIS_REPLY_STRING)
			continue;
		f = r->element[i]->str;
		e->has_life = 1;
		if (strcmp(f, "n") == 0) {
			e->life_n = rate_num(r->element[i + 1]->str);
			continue;
		}
		if (f[0] != '@') {
			rate_field(&e->life, f, rate_num(r->element[i + 1]->str));
			continue;
		}
		n = strtoul(f + 1, &end, 10);
		if (end == f + 1 || !rates_checkpoint_ok((uint32_t)n) || n > UINT32_MAX)
			continue;
		for (k = 0; k < ns && e->snap_at[k] != n; k++)
			;
		if (k == ns) {
			if (ns == sizeof e->snap_at / sizeof e->snap_at[0])
				continue;
			e->snap_at[ns++] = (uint32_t)n;
		}
		if (*end == ':')
			rate_field(&e->snap[k], end + 1, rate_num(r->element[i + 1]->str));
	}
}

size_t
rq_rates_parse(const void *reply, uint64_t now_wall_ms, struct rate_entry **out)
{
	const redisReply *r = reply;
	struct rate_entry *e;
	size_t n = 0;

	*out = NULL;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements == 0)
		return 0;
	e = xcalloc(r->elements, sizeof *e);
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *x = r->element[i];
		struct rate_counts b[4];
		const char *colon;
		char dim[16];

		if (x->type != REDIS_REPLY_ARRAY || x->elements != 4 ||
		    x->element[0]->type != REDIS_REPLY_STRING)
			continue;
		colon = strchr(x->element[0]->str, ':');
		if (colon == NULL || (size_t)(colon - x->element[0]->str) >= sizeof dim ||
		    strlen(colon + 1) == 0 || strlen(colon + 1) > RATES_NAME_MAX)
			continue;
		memcpy(dim, x->element[0]->str, (size_t)(colon - x->element[0]->str));
		dim[colon - x->element[0]->str] = '\0';
		if (rates_dim_from_name(dim, &e[n].dim) < 0)
			continue;
		if (rate_list(x->element[1], &b[0]) < 0 || rate_past(x->element[2], &b[1]) < 0 ||
		    x->element[3]->type != REDIS_REPLY_ARRAY)
			continue;
		rates_fold(&b[0], &b[1], &b[2], &b[3], now_wall_ms, &e[n].hour, &e[n].day);
		rate_life(x->element[3], &e[n]);
		e[n].name = xstrdup(colon + 1);
		n++;
	}
	if (n == 0) {
		free(e);
		return 0;
	}
	*out = e;
	return n;
}

void
rq_rates_free(struct rate_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free((char *)e[i].name);
	free(e);
}

struct rq_rates_call {
	void (*cb)(void *arg, struct rate_entry *e, size_t n, uint64_t now_wall_ms);
	void *arg;
	uint64_t now;
};

static void
on_rates_read(struct rq *q, redisReply *r, void *priv)
{
	struct rq_rates_call *c = priv;
	struct rate_entry *e = NULL;
	size_t n = 0;

	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		log_warn("redis", "reading the rate counters failed: %s", r->str);
	else
		n = rq_rates_parse(r, c->now, &e);
	c->cb(c->arg, e, n, c->now);
	rq_rates_free(e, n);
	free(c);
}

int
rq_rates_read(struct rq *q, uint64_t now_wall_ms, const char *dims, size_t max,
    void (*cb)(void *arg, struct rate_entry *e, size_t n, uint64_t now_wall_ms), void *arg)
{
	struct rq_rates_call *c;
	char rp[300], now[32], mx[24];

	if (!rq_connected(q))
		return -1;
	snprintf(rp, sizeof rp, "%s%s", q->cfg->prefix, RQ_K_RATE);
	snprintf(now, sizeof now, "%llu", (unsigned long long)now_wall_ms);
	snprintf(mx, sizeof mx, "%zu", max);
	c = xmalloc(sizeof *c);
	c->cb = cb;
	c->arg = arg;
	c->now = now_wall_ms;
	if (send_strv(q, on_rates_read, c, 8, (const char *[]){ "EVAL", rates_read_lua, "0",
	    rp, now, mx, dims, RATES_PAST_BUDGET }) != 0) {
		free(c);
		return -1;
	}
	return 0;
}

struct rq_act_call {
	void (*cb)(void *arg, int acted, void *tag);
	void *arg, *tag;
};

static void
on_rates_act(struct rq *q, redisReply *r, void *priv)
{
	struct rq_act_call *c = priv;
	int acted = -1;

	if (r != NULL && r->type == REDIS_REPLY_INTEGER)
		acted = r->integer == 1;
	else if (r != NULL && r->type == REDIS_REPLY_ERROR)
		log_warn("redis", "a threshold's action could not be recorded: %s", r->str);
	c->cb(c->arg, acted, c->tag);
	free(c);
}

int
rq_rates_act(struct rq *q, const struct rq_rate_act *a,
    void (*cb)(void *arg, int acted, void *tag), void *arg, void *tag)
{
	struct rq_act_call *c;
	char mark[800], shp[300], pause[300], ttl[24], maxlen[24], ts[24], val[400], until[24];
	char held[300], hfield[320] = "", hval[400] = "";
	const char *name = a->name;

	if (!rq_connected(q))
		return -1;
	snprintf(mark, sizeof mark, "%s%smark:%s:%s:%s", q->cfg->prefix, RQ_K_RATE, a->threshold,
	    rates_dim_name(a->dim), a->name);
	snprintf(shp, sizeof shp, "%sshaping", q->cfg->prefix);
	pause[0] = '\0';
	if (a->pause)
		snprintf(pause, sizeof pause, "%s%s", q->cfg->prefix,
		    a->dim == RATE_DIM_TENANT ? RQ_K_PAUSED_TENANT : RQ_K_PAUSED_CAMPAIGN);
	snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)(a->marker_ms ? a->marker_ms : 1));
	snprintf(maxlen, sizeof maxlen, "%d", RQ_SHAPING_MAXLEN);
	snprintf(ts, sizeof ts, "%llu", (unsigned long long)a->now_wall_ms);
	snprintf(until, sizeof until, "%llu", (unsigned long long)a->until_wall_ms);
	snprintf(val, sizeof val, "%llu volley:threshold %s", (unsigned long long)a->now_wall_ms,
	    a->threshold);
	held[0] = '\0';
	if (a->held != NULL && rates_held_field(a->held, hfield, sizeof hfield) == 0 &&
	    rates_held_value(a->held, hval, sizeof hval) == 0)
		snprintf(held, sizeof held, "%s%s", q->cfg->prefix, RQ_K_SHAPING_HELD);
	c = xmalloc(sizeof *c);
	c->cb = cb;
	c->arg = arg;
	c->tag = tag;
	if (send_strv(q, on_rates_act, c, 28, (const char *[]){ "EVAL", rates_act_lua, "4",
	    mark, shp, pause, held, ttl, name, val, maxlen, hfield, hval, until,
	    "lane", a->lane, "action", a->action, "reason", a->reason, "threshold", a->threshold,
	    rates_dim_name(a->dim), name, "until", until, "ts", ts }) != 0) {
		free(c);
		return -1;
	}
	return 0;
}

/*
 * rates_export: KEYS the instance hash. ARGV its TTL (ms), then field/value
 * pairs. Every field starting "rate:" that is not among them goes; the
 * pairs are written; a hash that had no TTL gets the instance's.
 */
static const char rates_export_lua[] =
"local keep = {}\n"
"for i = 2, #ARGV - 1, 2 do keep[ARGV[i]] = true end\n"
"for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do\n"
"  if string.sub(f, 1, 5) == 'rate:' and not keep[f] then redis.call('HDEL', KEYS[1], f) end\n"
"end\n"
"if #ARGV >= 3 then\n"
"  local f = {}\n"
"  for i = 2, #ARGV do f[#f+1] = ARGV[i] end\n"
"  redis.call('HSET', KEYS[1], unpack(f))\n"
"end\n"
"if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end\n"
"return 0\n";

int
rq_rates_export(struct rq *q, const char *const *fields, const char *const *values, size_t n,
    uint64_t at_wall_ms)
{
	const char **argv;
	char ttl[24], at[24];
	int argc = 0, r;

	if (!q->locked || q->ac == NULL)
		return -1;
	snprintf(ttl, sizeof ttl, "%d", RQ_STATS_TTL_MS);
	snprintf(at, sizeof at, "%llu", (unsigned long long)at_wall_ms);
	argv = xcalloc(2 * n + 8, sizeof *argv);
	argv[argc++] = "EVAL";
	argv[argc++] = rates_export_lua;
	argv[argc++] = "1";
	argv[argc++] = q->k_stats;
	argv[argc++] = ttl;
	argv[argc++] = "rates_at";
	argv[argc++] = at;
	for (size_t i = 0; i < n; i++) {
		argv[argc++] = fields[i];
		argv[argc++] = values[i];
	}
	r = send_strv(q, NULL, NULL, argc, argv);
	free(argv);
	return r;
}

/* --- suspend and throttle for every engine (PREFIXshaping:held) --- */

struct rq_held_call {
	void (*cb)(void *arg, int ok, const struct rate_held *h, size_t n);
	void *arg;
	uint64_t now;
	char *key;
};

static void
on_held(struct rq *q, redisReply *r, void *priv)
{
	struct rq_held_call *c = priv;
	struct rate_held *h = NULL;
	size_t n = 0;
	int ok = r != NULL && r->type == REDIS_REPLY_ARRAY;

	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		log_warn("redis", "reading %s failed: %s", c->key, r->str);
	if (ok && r->elements >= 2) {
		h = xcalloc(r->elements / 2, sizeof *h);
		for (size_t i = 0; i + 1 < r->elements; i += 2) {
			const redisReply *f = r->element[i], *v = r->element[i + 1];

			if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
			    strlen(f->str) != f->len || strlen(v->str) != v->len ||
			    rates_held_parse(f->str, v->str, &h[n]) < 0)
				continue;	/* not ours to judge: left as it is */
			if (h[n].until_wall_ms <= c->now) {
				/* Over: the first reader deletes it, unless it
				 * was rewritten meanwhile. */
				send_strv(q, NULL, NULL, 6, (const char *[]){ "EVAL",
				    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
				    "return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0",
				    "1", c->key, f->str, v->str });
				continue;
			}
			n++;
		}
	}
	c->cb(c->arg, ok, h, n);
	free(h);
	free(c->key);
	free(c);
}

int
rq_shaping_held(struct rq *q, uint64_t now_wall_ms,
    void (*cb)(void *arg, int ok, const struct rate_held *h, size_t n), void *arg)
{
	struct rq_held_call *c;

	if (!rq_connected(q))
		return -1;
	c = xmalloc(sizeof *c);
	c->cb = cb;
	c->arg = arg;
	c->now = now_wall_ms;
	c->key = xasprintf("%s%s", q->cfg->prefix, RQ_K_SHAPING_HELD);
	if (send_strv(q, on_held, c, 2, (const char *[]){ "HGETALL", c->key }) != 0) {
		free(c->key);
		free(c);
		return -1;
	}
	return 0;
}

/* --- MTA-STS policies kept over a restart --- */

int
rq_sts_store(struct rq *q, const char *domain, const char *value)
{
	char *k, max[16];
	int r;

	if (!rq_connected(q))
		return -1;
	snprintf(max, sizeof max, "%d", RQ_MTA_STS_MAX);
	k = xasprintf("%s%s", q->cfg->prefix, RQ_K_MTA_STS);
	r = send_strv(q, NULL, NULL, 7, (const char *[]){ "EVAL",
	    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) "
	    "if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[3]) then "
	    "local f = redis.call('HRANDFIELD', KEYS[1]) "
	    "if f and f ~= ARGV[1] then redis.call('HDEL', KEYS[1], f) end end return 1",
	    "1", k, domain, value, max });
	free(k);
	return r;
}

struct rq_sts_read {
	void (*cb)(void *arg, int ok, const char *const *domains, const char *const *values,
	    const size_t *lens, size_t n);
	void *arg;
};

static void
on_sts_load(struct rq *q, redisReply *r, void *priv)
{
	struct rq_sts_read *p = priv;
	const char **d = NULL, **v = NULL;
	size_t *lens = NULL, n = 0;

	(void)q;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		if (r != NULL)
			log_error("redis", "reading the MTA-STS policies failed: %s",
			    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		p->cb(p->arg, 0, NULL, NULL, NULL, 0);
		free(p);
		return;
	}
	d = xcalloc(r->elements / 2 + 1, sizeof *d);
	v = xcalloc(r->elements / 2 + 1, sizeof *v);
	lens = xcalloc(r->elements / 2 + 1, sizeof *lens);
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *f = r->element[i], *x = r->element[i + 1];

		if (f->type != REDIS_REPLY_STRING || x->type != REDIS_REPLY_STRING)
			continue;
		d[n] = f->str;
		v[n] = x->str;
		lens[n] = x->len;
		n++;
	}
	p->cb(p->arg, 1, d, v, lens, n);
	free(d);
	free(v);
	free(lens);
	free(p);
}

int
rq_sts_load(struct rq *q, void (*cb)(void *arg, int ok, const char *const *domains,
    const char *const *values, const size_t *lens, size_t n), void *arg)
{
	struct rq_sts_read *p;
	char *k;
	int r;

	if (!rq_connected(q))
		return -1;
	p = xcalloc(1, sizeof *p);
	p->cb = cb;
	p->arg = arg;
	k = xasprintf("%s%s", q->cfg->prefix, RQ_K_MTA_STS);
	r = send_strv(q, on_sts_load, p, 2, (const char *[]){ "HGETALL", k });
	free(k);
	if (r != 0)
		free(p);
	return r;
}

int
rq_sts_forget(struct rq *q, const char *domain, const char *value)
{
	char *k;
	int r;

	if (!rq_connected(q))
		return -1;
	k = xasprintf("%s%s", q->cfg->prefix, RQ_K_MTA_STS);
	r = send_strv(q, NULL, NULL, 6, (const char *[]){ "EVAL",
	    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
	    "return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0",
	    "1", k, domain, value });
	free(k);
	return r;
}
