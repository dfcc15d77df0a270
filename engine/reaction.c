/*
 * reaction.c - shaping reaction rules and their sliding-window counters
 * (see reaction.h; the rules are described in docs/shaping.md, "Reaction
 * rules"). Pure: time comes in, "fire now" goes out.
 *
 * Matching mirrors the bounce rules (classify.c) so that one reply reads
 * the same to both: the code and the enhanced code are prefixes ("4",
 * "421"; "5.7" matches 5.7.1 but not 5.70.1), the text is matched without
 * them, case-insensitively. A glob (fnmatch) must match the whole text:
 * write "*rate*" for "contains rate". A regex matches anywhere.
 *
 * A counter is exact: it keeps the times of the last `threshold` matches in
 * a ring, and the rule fires when the oldest of them is still within the
 * window. Firing empties the ring: the next firing needs a full threshold
 * of new matches.
 */
#include "reaction.h"
#include "classify.h"
#include "util.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct reaction_counter {
	uint32_t threshold;	/* ring size */
	uint32_t n, head;	/* times held; index of the oldest */
	uint64_t window_ms;
	uint64_t newest;
	uint64_t t[];		/* threshold entries */
};

/* ------------------------------------------------------------------ */
/* rules                                                                */

int
reaction_rule_compile(struct reaction_rule *r, char *why, size_t whylen)
{
	int e;

	if (r->regex == NULL)
		return 0;
	if (r->has_re) {
		regfree(&r->re);
		r->has_re = 0;
	}
	e = regcomp(&r->re, r->regex, REG_EXTENDED | REG_ICASE | REG_NOSUB);
	if (e != 0) {
		regerror(e, &r->re, why, whylen);
		return -1;
	}
	r->has_re = 1;
	return 0;
}

void
reaction_rule_clear(struct reaction_rule *r)
{
	free(r->name);
	free(r->file);
	free(r->site);
	free(r->stage);
	free(r->code);
	free(r->enh);
	free(r->text);
	free(r->regex);
	free(r->rate_text);
	if (r->has_re)
		regfree(&r->re);
	memset(r, 0, sizeof *r);
}

const char *
reaction_parse_reply(const char *line, int *code, char enh[16])
{
	const char *p = line ? line : "";

	*code = 0;
	enh[0] = '\0';
	while (*p == ' ')
		p++;
	if (p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
	    p[2] <= '9' && (p[3] == '\0' || p[3] == ' ' || p[3] == '-')) {
		*code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
		p += p[3] ? 4 : 3;
		while (*p == ' ')
			p++;
	}
	p += classify_enh_at(p, enh);
	while (*p == ' ')
		p++;
	return p;
}

/* is stage (any case) in the comma list? */
static int
stage_in(const char *list, const char *stage)
{
	size_t n = strlen(stage);

	for (;;) {
		size_t k = strcspn(list, ",");

		if (k == n && strncasecmp(list, stage, n) == 0)
			return 1;
		if (list[k] == '\0')
			return 0;
		list += k + 1;
	}
}

static int
rule_matches(const struct reaction_rule *r, const char *codebuf, const char *enh,
    const char *text, const char *stage, const char *site, const char *dest)
{
	if (r->site != NULL && (site != NULL || dest != NULL) &&
	    !(site != NULL && strcasecmp(r->site, site) == 0) &&
	    !(dest != NULL && strcasecmp(r->site, dest) == 0))
		return 0;
	if (r->stage != NULL && (stage == NULL || !stage_in(r->stage, stage)))
		return 0;
	if (r->code != NULL && (codebuf[0] == '\0' || strncmp(codebuf, r->code, strlen(r->code)) != 0))
		return 0;
	if (r->enh != NULL && (enh[0] == '\0' || !classify_enh_matches(r->enh, enh)))
		return 0;
	if (r->text != NULL && fnmatch(r->text, text, FNM_CASEFOLD) != 0)
		return 0;
	if (r->has_re && regexec(&r->re, text, 0, NULL, 0) != 0)
		return 0;
	return 1;
}

const struct reaction_rule *
reaction_match(const struct reaction_rule *rules, size_t n, int code, const char *enh,
    const char *text, const char *stage, const char *site, const char *dest)
{
	char codebuf[8] = "";

	if (code >= 200 && code <= 599)
		snprintf(codebuf, sizeof codebuf, "%03d", code);
	if (enh == NULL)
		enh = "";
	if (text == NULL)
		text = "";
	if (site != NULL && site[0] == '\0')
		site = NULL;
	for (size_t i = 0; i < n; i++)
		if (rule_matches(&rules[i], codebuf, enh, text, stage, site, dest))
			return &rules[i];
	return NULL;
}

/* ------------------------------------------------------------------ */
/* counters                                                             */

void
reaction_state_init(struct reaction_state *st)
{
	memset(st, 0, sizeof *st);
}

void
reaction_state_clear(struct reaction_state *st)
{
	const char *k;
	void *v;
	size_t it = 0;

	while (map_iter(&st->counters, &it, &k, &v))
		free(v);
	map_free(&st->counters);
	memset(&st->counters, 0, sizeof st->counters);
}

void
reaction_state_free(struct reaction_state *st)
{
	reaction_state_clear(st);
}

int
reaction_count(struct reaction_state *st, const struct reaction_rule *r, const char *lane,
    uint64_t now)
{
	char key[512];
	struct reaction_counter *c;
	uint32_t thr = r->threshold;

	if (thr <= 1)
		return 1;	/* every match fires: nothing to count */
	if (thr > REACTION_THRESHOLD_MAX)
		thr = REACTION_THRESHOLD_MAX;
	snprintf(key, sizeof key, "%s\x1f%s", r->name, lane);
	c = map_get(&st->counters, key);
	if (c != NULL && c->threshold != thr) {	/* the rule changed under it */
		map_del(&st->counters, key);
		free(c);
		c = NULL;
	}
	if (c == NULL) {
		c = xcalloc(1, sizeof *c + thr * sizeof c->t[0]);
		c->threshold = thr;
		map_put(&st->counters, key, c);
	}
	c->window_ms = r->window_ms;
	if (now < c->newest)
		now = c->newest;	/* never backwards: the ring stays ordered */
	/* drop what fell out of the window */
	while (c->n > 0 && now - c->t[c->head] > c->window_ms) {
		c->head = (c->head + 1) % thr;
		c->n--;
	}
	c->t[(c->head + c->n) % thr] = now;
	c->n++;
	c->newest = now;
	if (c->n < thr)
		return 0;
	c->n = 0;
	c->head = 0;
	return 1;
}

size_t
reaction_sweep(struct reaction_state *st, uint64_t now, uint64_t max_age_ms)
{
	const char *k;
	void *v;
	size_t it = 0, n = 0;

	while (map_iter(&st->counters, &it, &k, &v)) {
		struct reaction_counter *c = v;
		uint64_t age = now > c->newest ? now - c->newest : 0;

		if (c->n > 0 && age <= c->window_ms && age <= max_age_ms)
			continue;
		map_del(&st->counters, k);
		free(c);
		n++;
	}
	return n;
}

size_t
reaction_counters(const struct reaction_state *st)
{
	return st->counters.len;
}

/* ------------------------------------------------------------------ */
/* text                                                                 */

const char *
reaction_action_name(enum reaction_action a)
{
	static const char *const names[] = {
		[REACTION_THROTTLE] = "throttle", [REACTION_CAP] = "cap",
		[REACTION_SUSPEND] = "suspend",
	};

	return (unsigned)a < sizeof names / sizeof names[0] ? names[a] : "?";
}

const char *
reaction_scope_name(enum reaction_scope s)
{
	static const char *const names[] = {
		[REACTION_SCOPE_IP] = "ip", [REACTION_SCOPE_SITE] = "site",
		[REACTION_SCOPE_CAMPAIGN] = "campaign",
	};

	return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

/* a duration the way the config writes it: 90s, 10min, 1h, 2d */
static void
dur_text(uint64_t ms, char *buf, size_t len)
{
	if (ms >= 86400000 && ms % 86400000 == 0)
		snprintf(buf, len, "%" PRIu64 "d", ms / 86400000);
	else if (ms >= 3600000 && ms % 3600000 == 0)
		snprintf(buf, len, "%" PRIu64 "h", ms / 3600000);
	else if (ms >= 60000 && ms % 60000 == 0)
		snprintf(buf, len, "%" PRIu64 "min", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
	else
		snprintf(buf, len, "%" PRIu64 "ms", ms);
}

const char *
reaction_threshold_text(const struct reaction_rule *r, char *buf, size_t len)
{
	char d[32];

	if (r->threshold <= 1) {
		snprintf(buf, len, "every match");
		return buf;
	}
	dur_text(r->window_ms, d, sizeof d);
	snprintf(buf, len, "%" PRIu32 " in %s", r->threshold, d);
	return buf;
}

const char *
reaction_rule_text(const struct reaction_rule *r, char *buf, size_t len)
{
	char d[32];

	dur_text(r->duration_ms, d, sizeof d);
	switch (r->action) {
	case REACTION_THROTTLE:
		snprintf(buf, len, "throttle to %s for %s", r->rate_text ? r->rate_text : "?", d);
		break;
	case REACTION_CAP:
		snprintf(buf, len, "cap %" PRIu32 " connection%s for %s", r->connections,
		    r->connections == 1 ? "" : "s", d);
		break;
	case REACTION_SUSPEND:
		snprintf(buf, len, "suspend %s for %s", reaction_scope_name(r->scope), d);
		break;
	default:
		snprintf(buf, len, "?");
	}
	return buf;
}
