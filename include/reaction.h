/*
 * reaction.h - shaping reactions: rules that turn a provider's reply into a
 * shaping action (throttle, cap, suspend), and their sliding-window
 * counters per (rule, lane).
 *
 * A rule (a `shaping_rule "NAME" { }` block, parsed by config.c) says which
 * replies it matches (code, enhanced code, text glob or POSIX regex,
 * stage, site), how many of them within what time trigger it ("3 in
 * 10min") and what it does (action with its rate, connections, scope and
 * duration). reaction_match() finds the first rule, in file order, that
 * matches a reply; reaction_count() counts the reply against the rule's
 * window on one lane and says when the threshold is reached (the counter
 * then starts again from zero, so a rule fires once per threshold's worth
 * of matches).
 *
 * Pure: no clock (times are passed in, ms of the caller's clock), no I/O.
 * Matching allocates nothing; a counter is allocated when a (rule, lane)
 * first counts. Unit-tested in tests/unit/test_reaction.c.
 *
 * Invariants: 1 <= threshold <= REACTION_THRESHOLD_MAX; a counter holds at
 * most threshold times, all within the rule's window of the newest.
 */
#ifndef VOLLEY_REACTION_H
#define VOLLEY_REACTION_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include "map.h"

#define REACTION_THRESHOLD_MAX	1000

enum reaction_action {
	REACTION_THROTTLE = 0,	/* the lane's rate at most `mph` for `duration_ms` */
	REACTION_CAP,		/* the lane's window at most `connections` for `duration_ms` */
	REACTION_SUSPEND,	/* nothing sent for `duration_ms` (scope: lane or site) */
};

enum reaction_scope {
	REACTION_SCOPE_IP = 0,	/* this lane: this source IP for this destination */
	REACTION_SCOPE_SITE,	/* every lane of the destination on this engine */
	REACTION_SCOPE_CAMPAIGN,	/* the job's campaign is paused (every engine) */
};

struct reaction_rule {
	char *name;
	char *file;		/* where it is written */
	int line;
	char *site;		/* a site or domain block's name; NULL: every destination */
	char *stage;		/* comma list of stages ("rcpt,dot"); NULL: any */
	char *code;		/* reply code or its prefix ("421", "4"); NULL: any */
	char *enh;		/* enhanced code or its prefix ("4.7.28", "5.7"); NULL: any */
	char *text;		/* case-insensitive glob on the reply text; NULL: any */
	char *regex;		/* POSIX ERE (REG_ICASE) on the reply text; NULL: none */
	regex_t re;		/* compiled regex (valid when regex != NULL) */
	int has_re;
	uint32_t threshold;	/* matches within window_ms that fire it (1: every match) */
	uint64_t window_ms;
	enum reaction_action action;
	uint64_t mph;		/* throttle: the rate ceiling (messages per hour, scaled as pace.h) */
	char *rate_text;	/* throttle: the rate as written ("600/h") */
	uint32_t connections;	/* cap: the window ceiling */
	enum reaction_scope scope;	/* suspend */
	uint64_t duration_ms;
};

/* The counters of every (rule, lane) that has counted. */
struct reaction_state {
	struct map counters;	/* "RULE\x1fLANE" -> struct reaction_counter */
};

/* --- rules --- */

/*
 * reaction_rule_compile - compile r->regex (REG_EXTENDED|REG_ICASE|
 * REG_NOSUB). Returns 0, or -1 with regerror()'s text in why.
 */
int reaction_rule_compile(struct reaction_rule *r, char *why, size_t whylen);
/* reaction_rule_clear - free what the rule holds (not the rule itself). */
void reaction_rule_clear(struct reaction_rule *r);

/*
 * reaction_parse_reply - split an SMTP reply line ("421 4.7.28 text") into
 * its code (0 if none), enhanced code ("" if none) and where its text
 * starts. enh must hold 16 bytes.
 */
const char *reaction_parse_reply(const char *line, int *code, char enh[16]);

/*
 * reaction_match - the first of rules[0..n) matching a reply: code (0:
 * none), enh ("" or NULL: none), text (without code and enhanced code),
 * stage (a name such as "RCPT" in any case, or NULL: rules with a stage
 * never match), site and dest (the destination's site, "" or NULL when
 * none, and its shaping name: a rule's site matches either; both NULL:
 * any site, as `volley classify` without --site asks). NULL if none.
 */
const struct reaction_rule *reaction_match(const struct reaction_rule *rules, size_t n,
    int code, const char *enh, const char *text, const char *stage, const char *site,
    const char *dest);

/* --- counters --- */

void reaction_state_init(struct reaction_state *st);
void reaction_state_free(struct reaction_state *st);
/* reaction_state_clear - forget every counter (after a reload: rules changed). */
void reaction_state_clear(struct reaction_state *st);

/*
 * reaction_count - one match of r on lane at now. Returns 1 when this
 * makes r->threshold matches within r->window_ms (the counter is then
 * emptied), else 0. Times that go backwards count as now.
 */
int reaction_count(struct reaction_state *st, const struct reaction_rule *r, const char *lane,
    uint64_t now);

/*
 * reaction_sweep - drop counters whose newest match is older than their
 * rule's window (they could not fire any more) or older than max_age_ms.
 * Returns how many were dropped.
 */
size_t reaction_sweep(struct reaction_state *st, uint64_t now, uint64_t max_age_ms);
size_t reaction_counters(const struct reaction_state *st);

/* --- text --- */

const char *reaction_action_name(enum reaction_action a);	/* "throttle", "cap", "suspend" */
const char *reaction_scope_name(enum reaction_scope s);		/* "ip", "site" */
/*
 * reaction_rule_text - "throttle to 600/h for 30min", "cap 2 connections
 * for 1h", "suspend ip for 1h" and the threshold ("3 in 10min"). Returns buf.
 */
const char *reaction_rule_text(const struct reaction_rule *r, char *buf, size_t len);
const char *reaction_threshold_text(const struct reaction_rule *r, char *buf, size_t len);

#endif
