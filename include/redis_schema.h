/*
 * redis_schema.h - the names of the Redis schema, shared by the two halves
 * of the Redis module: redis.c (asynchronous, the engine) and redis_sync.c
 * (blocking, the command line). Nothing outside those two files may build a
 * key name or a Redis command; docs/redis.md describes every key.
 *
 * Every key is the configured prefix (redis.prefix, "volley:") followed by
 * one of these suffixes.
 */
#ifndef VOLLEY_REDIS_SCHEMA_H
#define VOLLEY_REDIS_SCHEMA_H

#define RQ_GROUP		"volley"	/* consumer group on both jobs streams */

#define RQ_K_JOBS		"jobs"		/* stream: jobs in */
#define RQ_K_JOBS_HIGH		"jobs:high"	/* stream: high-priority jobs in, read first */
#define RQ_K_EVENTS		"events"	/* stream: events out */
#define RQ_K_RETRY		"retry"		/* ZSET: deferred job keys by due time */
#define RQ_K_RETRY_POOL		"retry:pool:"	/* + POOL: ZSET, the same for jobs only that
						 * pool's owners may lease (route.h) */
#define RQ_K_JOB		"job:"		/* + KEY: hash, a deferred job */
#define RQ_K_DONE		"done:"		/* + KEY: string, "settled" marker (TTL) */
#define RQ_K_SUPPRESSED		"suppressed"	/* set: lower-cased addresses */
#define RQ_K_MSG		"msg:"		/* + SHA1: string, a shared message body */
#define RQ_K_INSTANCE		"instance:"	/* + NAME: hash, live stats (TTL 30 s) */
#define RQ_K_INSTANCES		"instances"	/* set: instance names */
#define RQ_K_LOCK		"lock:"		/* + NAME: string, the instance lock */
#define RQ_K_SUPPRESSED_TENANT	"suppressed:"	/* + TENANT: set, that tenant's list */
#define RQ_K_PAUSED_CAMPAIGN	"paused:campaign"	/* hash: NAME -> "SINCE_MS BY" */
#define RQ_K_PAUSED_TENANT	"paused:tenant"	/* hash: NAME -> "SINCE_MS BY" */
#define RQ_K_WARMUP		"warmup:"	/* + IP: hash, start, shift, hold_*; + IP:DAY: that day's counts */

/* A warm-up day hash (PREFIXwarmup:IP:DAY) lives this long after its last write. */
#define RQ_WARMUP_DAY_TTL_S	180000

#define RQ_K_INBOUND		"inbound"	/* stream: raw DSNs and feedback reports in */
#define RQ_K_INBOUND_UNMATCHED	"inbound:unmatched"	/* stream: inbound messages tied to no job */
#define RQ_K_INBOUND_DONE	"inbound:done:"	/* + ENTRYID: string, "settled" marker (TTL) */
#define RQ_K_INBOUND_SEEN	"inbound:seen:"	/* + IDKEY:STATUS:RCPT: string, event written (TTL) */
#define RQ_K_SENT		"sent:"		/* + IDKEY: hash, a delivered job's sent record (TTL) */
#define RQ_K_SUPP_INFO		"suppressed_info"	/* hash: address -> "REASON TS_MS" (inbound) */
#define RQ_K_SUPP_INFO_TENANT	"suppressed_info:"	/* + TENANT: the same for that tenant's list */
#define RQ_INBOUND_GROUP	"volley-inbound"	/* consumer group on PREFIXinbound */
/* Bounds of the unmatched stream (XADD MAXLEN ~). */
#define RQ_INBOUND_UNMATCHED_MAXLEN	100000

#define RQ_K_RATE		"rate:"		/* + DIM:NAME:HOUR: hash d, b, b:CLASS, c (TTL 26 h);
						 * + campaign:NAME:life: hash n, b, b:CLASS, @N:...;
						 * + DIM:NAME:past:HOUR: the hours before, summed (TTL 2 h);
						 * + active: ZSET DIM:NAME by last count (ms);
						 * + mark:THRESHOLD:DIM:NAME: string, acted (TTL: the window) */
#define RQ_K_SHAPING_HELD	"shaping:held"	/* hash: "IP|SITE" -> a threshold's suspend or
						 * throttle for every engine (rates.h) */
#define RQ_K_FLEET		"fleet:"	/* + site:NAME|domain:NAME|ip:ADDR: string, a GCRA TAT (us) */
/* XADD MAXLEN ~ for the inbound stream (the listener's writes). */
#define RQ_K_MTA_STS		"mta_sts"	/* hash: DOMAIN -> "ID EXPIRES_MS POLICY" (mtasts.h) */
#define RQ_MTA_STS_MAX		10000		/* fields; past it a random other one goes */
#define RQ_INBOUND_MAXLEN	1000000

/* The instance lock: refreshed every RQ_LOCK_REFRESH_MS, lives RQ_LOCK_TTL_MS. */
#define RQ_LOCK_REFRESH_MS	1000
#define RQ_LOCK_TTL_MS		5000

/* Seconds an instance's stats hash outlives its last heartbeat. */
#define RQ_STATS_TTL_MS		30000

#endif
