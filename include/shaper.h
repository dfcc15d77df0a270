/*
 * shaper.h - traffic shaping: lanes per (source IP, destination), their
 * limits, adaptive back-off, suspensions, and the choice of source IP.
 *
 * A lane is (source IP, destination). The destination is a site (every
 * domain whose MX hosts match its patterns), else the domain itself when a
 * domain block names it, else the MX rollup: domains whose MX host sets
 * are the same share one lane (shaper_destination). Per lane the shaper
 * enforces max_connections through a concurrency window, max_rate through
 * smooth pacing (pace.h), max_conn_rate likewise for new connections; per
 * source IP an optional total rate across all lanes.
 *
 * Adaptive back-off (AIMD, after Postfix's qmgr concurrency window):
 * a slow-down verdict shrinks the lane's window and rate multiplicatively
 * (shaping.decrease percent kept, floors 1 connection and
 * shaping.min_rate), at most once per cohort (outcomes of what was in
 * flight when it shrank do not shrink it again) and per
 * shaping.decrease_every; clean outcomes grow it back additively: +1
 * connection per window's worth, and the rate by shaping.rate_step percent
 * of its reference at most once per shaping.rate_step_every (a quarter of
 * that near the rate it was pushed back at), up to the configured limits. A full cohort of
 * consecutive failures (as many as the window, at least 2) closes the lane
 * for shaping.close_time, doubling on each closure up to max_close_time.
 * Reputation blocks (shaping.suspend_after within suspend_window) suspend
 * the lane (this IP for this destination) for shaping.suspend.
 *
 * Every state change is returned as a struct shaper_event for the caller
 * to log and add to the shaping stream.
 *
 * Pure: no clock (every time is passed in, in ms of one clock the caller
 * chooses), no I/O, no globals. Lanes and IPs are allocated when first
 * seen; every decision after that is O(1) (shaper_pick: O(IPs in the
 * pool)) and allocates nothing. Unit-tested in test_shaper.c.
 *
 * Invariants: 1 <= window <= lim.max_connections; a lane's rate is 0
 * (unlimited) only while it is not throttled; nconn counts sessions
 * opened and not yet closed.
 */
#ifndef VOLLEY_SHAPER_H
#define VOLLEY_SHAPER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "map.h"
#include "pace.h"

struct job_outcome;

#define SHAPER_LANE_MAX		320	/* "ip/destination" with its NUL */
#define SHAPER_DEST_MAX		256	/* a destination name with its NUL */
#define SHAPER_IP_MAX		46	/* an IPv6 literal with its NUL */
#define SHAPER_REASON_MAX	200
#define SHAPER_MAX_MX		64	/* MX hosts looked at for a rollup key */

/* The shaping parameters (shaping { } block), in the shaper's units. */
struct shaper_params {
	uint32_t initial_connections;
	uint32_t decrease_pct;
	uint32_t rate_step_pct;
	uint64_t rate_step_every_ms;
	uint64_t decrease_every_ms;
	uint64_t min_mph;
	uint32_t burst;
	uint64_t close_ms, max_close_ms;
	uint32_t suspend_after;
	uint64_t suspend_window_ms, suspend_ms, resume_spread_ms;
};

/* A lane's configured limits (0: unlimited). */
struct shaper_limits {
	uint32_t max_connections;	/* 0 counts as 20 */
	uint32_t max_msgs_per_connection;
	uint64_t mph;			/* max_rate */
	uint64_t conn_mph;		/* max_conn_rate */
};

/* Per source IP: the total across its lanes. */
struct shaper_ip {
	char addr[SHAPER_IP_MAX];
	uint64_t mph, interval_us;	/* max_rate of the ip (or smtp.max_rate_per_ip) */
	struct pace pace;
	uint64_t sent;
};

struct dest_lw;

struct shaper_lane {
	char name[SHAPER_LANE_MAX];	/* "ip/destination" */
	struct shaper_ip *ip;
	struct shaper_limits lim;

	/* concurrency */
	unsigned nconn;			/* sessions open or connecting */
	uint32_t window;		/* sessions allowed now */
	uint32_t credit;		/* clean outcomes toward the next +1 */
	struct pace conn_pace;
	uint64_t conn_interval_us;

	/* rate */
	uint64_t mph, interval_us;	/* current (0: unlimited) */
	uint64_t ref_mph;		/* what steps are a percent of */
	uint64_t ceiling_mph;		/* the rate the destination last pushed back at */
	struct pace pace;
	uint64_t last_step;		/* ms of the last change to the rate */
	uint64_t last_decrease;		/* ms of the last decrease, 0: none */
	int grown;			/* a step up since the last decrease */
	int throttled;			/* below the configured limits */

	/* outcomes still due from what was in flight at the last decrease:
	 * they do not shrink the lane again */
	uint32_t hold;
	uint32_t fail_streak;		/* consecutive failures */
	uint32_t fail_cohort;		/* how many close the lane: max(2, window) */
	uint32_t pre_window;		/* the window before the first decrease */

	/* recent volume, for a rate to start from when unlimited */
	uint64_t obs_start;
	uint32_t obs_cur, obs_prev;

	/* closed after a failed cohort; suspended after reputation blocks */
	uint32_t closures;
	uint64_t closed_until;
	uint32_t blocks;
	uint64_t blocks_since;
	uint64_t suspended_until;

	/* a reaction rule's ceilings (shaper_react), each until its time */
	uint64_t rule_mph, rule_mph_until;
	uint32_t rule_conn;
	uint64_t rule_conn_until;

	int64_t wrr;			/* smooth weighted round robin (shaper_pick) */
	unsigned refs;			/* holders of a pointer (shaper_lane_ref) */
	/* Kept by the scheduler, not the shaper: the destinations waiting
	 * for a slot of this lane, oldest first, and this lane's idle
	 * sessions (so a freed slot wakes only its own waiters). */
	struct dest_lw *sched_wq_head, *sched_wq_tail;
	unsigned sched_waiting, sched_idle;
	uint64_t last_used;
	uint64_t sent, clean, slowdowns, failures;
};

struct shaper {
	struct shaper_params p;
	struct map lanes;		/* name -> struct shaper_lane */
	struct map ips;			/* addr -> struct shaper_ip */
};

enum shaper_action {
	SHAPER_THROTTLED = 0,	/* window and/or rate shrunk */
	SHAPER_RECOVERED,	/* back at the configured limits */
	SHAPER_CLOSED,		/* a failed cohort: no new connection until `until` */
	SHAPER_REOPENED,	/* the closure ended */
	SHAPER_SUSPENDED,	/* reputation: this ip sends nothing to the destination until `until` */
	SHAPER_RESUMED,		/* the suspension ended */
	SHAPER_WARMUP_EXHAUSTED,	/* an ip's warm-up budget is spent until `until` */
	SHAPER_PAUSED,		/* a campaign paused by a rule until `until` (lane "campaign:NAME") */
};

/* One state change, for a log line and an entry in the shaping stream. */
struct shaper_event {
	char lane[SHAPER_LANE_MAX];	/* "ip/destination" */
	enum shaper_action action;
	char reason[SHAPER_REASON_MAX];	/* the reply or rule that caused it */
	uint32_t window;		/* the new limits */
	uint64_t mph;			/* 0: unlimited */
	uint64_t until;			/* closed/suspended/exhausted until (ms), else 0 */
	uint64_t ts;			/* when (ms, the caller's clock) */
};

/* What a result means to the shaper (shaper_verdict_of builds it). */
struct shaper_verdict {
	int clean;		/* the destination worked: delivered, or a
				 * recipient/message refused (never throttles) */
	int slow_down;		/* the destination asks us to send slower */
	int site_failure;	/* at connect/greeting/EHLO: the connection, not a message */
	int reputation;		/* a block of our IP (5.7.1 reputation/blocklist) */
	const char *reason;	/* reply text for the event, or NULL */
};

/* Answers to "may I now?" */
enum shaper_answer {
	SHAPER_GO = 0,		/* yes */
	SHAPER_FULL,		/* the window is full: when a session of the lane ends */
	SHAPER_PACED,		/* the lane's or the IP's rate: at *at */
	SHAPER_WAIT_CLOSED,	/* a failed cohort closed the lane: at *at */
	SHAPER_WAIT_SUSPENDED,	/* suspended for reputation: at *at */
	SHAPER_WAIT_WARMUP,	/* out of warm-up budget: at *at */
};

/* A candidate source IP for shaper_pick. */
struct shaper_cand {
	struct shaper_lane *lane;
	uint32_t weight;	/* config_ip.weight (0 counts as 1) */
	uint64_t warm_until;	/* 0, or the time warmup_check says it may send again */
};

/* --- set-up --- */

void shaper_params_from_config(const struct config *c, struct shaper_params *p);
void shaper_init(struct shaper *sh, const struct shaper_params *p);
/* shaper_set_params - after a reload; lanes keep their state. */
void shaper_set_params(struct shaper *sh, const struct shaper_params *p);
void shaper_free(struct shaper *sh);
/* shaper_limits_from - config_limits in the shaper's units. */
struct shaper_limits shaper_limits_from(const struct config_limits *l);

/* shaper_ip_rate - a pool IP's total rate: its max_rate, else smtp.max_rate_per_ip. */
uint64_t shaper_ip_rate(const struct config *c, const struct config_ip *ip);

/*
 * shaper_ip - the state of source addr (created on first use); mph its
 * total across all destinations (0: unlimited), updated on every call.
 */
struct shaper_ip *shaper_ip(struct shaper *sh, const char *addr, uint64_t mph);

/*
 * shaper_lane - the lane (ip, dest), created on first use with lim (its
 * window starts at shaping.initial_connections, capped by
 * max_connections). A later call with other limits (a reload) adopts them:
 * the window and rate are clamped to the new limits and a lane that is not
 * throttled takes the new rate. now: for the idle sweep.
 */
struct shaper_lane *shaper_lane(struct shaper *sh, struct shaper_ip *ip, const char *dest,
    const struct shaper_limits *lim, uint64_t now);
/* shaper_lane_find - the lane named "ip/dest", or NULL. */
struct shaper_lane *shaper_lane_find(const struct shaper *sh, const char *name);

/*
 * shaper_lane_ref, shaper_lane_unref - a holder keeps a lane pointer (a
 * destination caching the lanes of its pool's IPs): the sweep keeps it.
 */
void shaper_lane_ref(struct shaper_lane *l);
void shaper_lane_unref(struct shaper_lane *l);

/*
 * shaper_sweep - forget lanes nobody holds (refs 0) with no session that
 * have been unused for idle_ms and carry no state worth keeping (not
 * throttled, closed or suspended). Returns how many were freed.
 */
size_t shaper_sweep(struct shaper *sh, uint64_t now, uint64_t idle_ms);

/* --- decisions (const: they change nothing) --- */

/*
 * shaper_may_connect - may the lane open one more session at now?
 * SHAPER_GO, SHAPER_FULL (no time: wait for a session to end), or a
 * SHAPER_WAIT_* / SHAPER_PACED with *at the time to ask again.
 */
enum shaper_answer shaper_may_connect(const struct shaper *sh, const struct shaper_lane *l,
    uint64_t now, uint64_t *at);
/*
 * shaper_may_send - may a session of the lane send one more message at
 * now (the lane's rate, the IP's total, a suspension)? *at as above.
 */
enum shaper_answer shaper_may_send(const struct shaper *sh, const struct shaper_lane *l,
    uint64_t now, uint64_t *at);
/*
 * shaper_pick - which of the pool's candidate IPs takes the next job for
 * the destination: smooth weighted round robin over the usable ones (not
 * suspended, not closed with no session, within rate and IP total, within
 * warm-up budget), so that load spreads by weight across the usable IPs.
 * Returns the index, or -1 with *at the earliest time one will be usable
 * (0 if only full windows hold it back: when a session ends).
 * overflow: an IP out of warm-up budget is skipped (1) or its turn makes
 * the job wait for it (0: returns -2 with *at its budget time and *idx the
 * IP). Changes only the candidates' round-robin counters.
 */
int shaper_pick(const struct shaper *sh, struct shaper_cand *c, size_t n, int overflow,
    uint64_t now, uint64_t *at, size_t *idx);

/* --- what happened (these change state; ev may be NULL) --- */

/* A session of l is opened (counts against window and conn rate). */
void shaper_connect(struct shaper *sh, struct shaper_lane *l, uint64_t now);
/* A session of l closed (whatever its end). */
void shaper_disconnect(struct shaper *sh, struct shaper_lane *l);
/* A message leaves on l at now (counts against rate and IP total). */
void shaper_take(struct shaper *sh, struct shaper_lane *l, uint64_t now);

/*
 * shaper_result - an outcome on l at now: a message's result, or a new
 * connection that failed before a transaction (v->site_failure). Applies
 * the AIMD, the cohort rule and the suspension rule. Returns 1 and fills
 * *ev if the lane changed state (throttled, recovered, closed, suspended),
 * else 0.
 */
int shaper_result(struct shaper *sh, struct shaper_lane *l, uint64_t now,
    const struct shaper_verdict *v, struct shaper_event *ev);

/*
 * shaper_react - apply a reaction rule that fired on l at now (reaction.h),
 * in addition to what shaper_result did with the same outcome:
 *   throttle  the lane's rate at most r->mph until now + r->duration_ms;
 *             after that the usual AIMD steps bring it back;
 *   cap       the lane's window at most r->connections until then (open
 *             sessions are not cut; new ones wait for the window); it then
 *             grows back +1 per window's worth of clean outcomes;
 *   suspend   the lane sends nothing until then (a lane already suspended
 *             is left as it is). Scope site: the caller applies it to
 *             every lane of the destination (shaper_lanes_to).
 * reason: the event's reason ("rule NAME ...: REPLY"). Returns 1 and
 * fills *ev (throttled with the new window and rate and `until`, or
 * suspended) when the lane's limits changed; 0 when they were already at
 * or under the rule's (the ceiling's time is still extended).
 */
int shaper_react(struct shaper *sh, struct shaper_lane *l, uint64_t now,
    const struct reaction_rule *r, const char *reason, struct shaper_event *ev);

/*
 * shaper_lanes_to - the lanes whose destination is dest (every source IP
 * this engine has used for it), up to max of them in out. Returns how many.
 */
size_t shaper_lanes_to(const struct shaper *sh, const char *dest, struct shaper_lane **out,
    size_t max);

/*
 * shaper_poll - at now, end a closure or suspension whose time has come:
 * returns 1 with SHAPER_REOPENED / SHAPER_RESUMED in *ev. Call it when the
 * timer armed for `until` fires (the decisions above already treat an
 * ended closure or suspension as over).
 */
int shaper_poll(struct shaper *sh, struct shaper_lane *l, uint64_t now, struct shaper_event *ev);

/* shaper_verdict_of - the shaper's view of a trouble.c outcome. */
void shaper_verdict_of(const struct job_outcome *o, struct shaper_verdict *v);

/*
 * shaper_warmup_event - fill *ev for ip's warm-up budget spent at now
 * until `until` (the caller raises it once per exhaustion).
 */
void shaper_warmup_event(const char *ip, const char *dest, const char *why, uint64_t now,
    uint64_t until, struct shaper_event *ev);

/* --- helpers --- */

/*
 * shaper_rollup_key - the MX rollup key of an MX host list: host names
 * lower-cased, without a trailing dot, sorted, duplicates dropped, joined
 * with ','. Returns 0, or -1 if there are none, more than SHAPER_MAX_MX,
 * or the key does not fit in len (then use the domain itself).
 */
int shaper_rollup_key(const char *const *hosts, size_t n, char *out, size_t len);

/*
 * shaper_destination - the destination a domain's mail goes to and its
 * limits: the site of its first MX host that matches one (limits: the
 * site's over the defaults), else the domain when a domain block names it
 * (its limits), else the MX rollup key (the defaults). Writes the name to
 * out (len >= SHAPER_DEST_MAX) and returns the site or NULL.
 */
const struct config_site *shaper_destination(const struct config *c, const char *domain,
    const char *const *mx, size_t nmx, char *out, size_t len, struct config_limits *lim);

/*
 * shaper_resume_at - when a job held back by a closure, suspension or
 * warm-up wait should come back: until + salt spread over spread_ms (so
 * that a suspension ending does not release every job at one instant).
 * salt: anything that differs between jobs (a hash of the job id).
 */
uint64_t shaper_resume_at(uint64_t until, uint64_t spread_ms, uint64_t salt);

const char *shaper_action_name(enum shaper_action a);	/* "throttled", ... */
const char *shaper_answer_name(enum shaper_answer a);	/* "go", "full", ... */
/*
 * shaper_event_text - one line for the log: `lane=IP/DEST action=throttled
 * window=2 rate=25/min until=... reason="..."`. Returns buf.
 */
const char *shaper_event_text(const struct shaper_event *ev, char *buf, size_t len);

#endif
