/*
 * rates.c - the feedback loop's judge (see rates.h): windows folded from
 * hour buckets, thresholds held against them. No clock, no I/O.
 */
#include "rates.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const dim_names[RATE_DIM__N] = {
	[RATE_DIM_CAMPAIGN] = "campaign", [RATE_DIM_TENANT] = "tenant", [RATE_DIM_POOL] = "pool",
	[RATE_DIM_IP] = "ip", [RATE_DIM_SITE] = "site",
};

const char *
rates_dim_name(enum rate_dim d)
{
	return (unsigned)d < RATE_DIM__N ? dim_names[d] : "?";
}

int
rates_dim_from_name(const char *s, enum rate_dim *d)
{
	for (int i = 0; i < RATE_DIM__N; i++)
		if (strcasecmp(s, dim_names[i]) == 0) {
			*d = (enum rate_dim)i;
			return 0;
		}
	return -1;
}

const char *
rates_action_name(enum rate_action a)
{
	switch (a) {
	case RATE_ACT_PAUSE: return "paused";
	case RATE_ACT_WARMUP_HOLD: return "warmup_held";
	case RATE_ACT_SUSPEND: return "suspended";
	case RATE_ACT_THROTTLE: return "throttled";
	}
	return "?";
}

int
rates_checkpoint_ok(uint32_t n)
{
	static const uint32_t cp[] = RATES_CHECKPOINTS;

	for (size_t i = 0; i < sizeof cp / sizeof cp[0]; i++)
		if (cp[i] == n)
			return 1;
	return 0;
}

const char *
rates_window_name(const struct rate_threshold *t, char *buf, size_t len)
{
	if (t->over == RATE_WIN_FIRST)
		snprintf(buf, len, "the first %u", t->first);
	else
		snprintf(buf, len, "%s", t->over == RATE_WIN_HOUR ? "1h" : "1d");
	return buf;
}

const char *
rates_ppm_text(uint32_t ppm, char *buf, size_t len)
{
	/* 3000 -> 0.3%, 50000 -> 5%, 1234 -> 0.1234% */
	char tmp[32];
	size_t n;

	snprintf(tmp, sizeof tmp, "%u.%04u", ppm / 10000, ppm % 10000);
	n = strlen(tmp);
	while (n > 0 && tmp[n - 1] == '0')
		tmp[--n] = '\0';
	if (n > 0 && tmp[n - 1] == '.')
		tmp[--n] = '\0';
	snprintf(buf, len, "%s%%", tmp);
	return buf;
}

int
rates_parse_ppm(const char *s, uint32_t *ppm)
{
	char *end;
	double v;

	if (s == NULL || *s == '\0' || *s == '-' || *s == '+')
		return -1;
	v = strtod(s, &end);
	if (end == s || !isfinite(v) || v < 0)
		return -1;
	if (*end == '%') {
		end++;
		v /= 100.0;
	}
	if (*end != '\0' || v > 1.0)
		return -1;
	*ppm = (uint32_t)llround(v * 1e6);
	return 0;
}

static void
add(struct rate_counts *to, const struct rate_counts *from, double f)
{
	if (from == NULL)
		return;
	to->d += from->d * f;
	to->b += from->b * f;
	to->c += from->c * f;
	for (int i = 0; i < CLASS__COUNT; i++)
		to->bc[i] += from->bc[i] * f;
}

void
rates_fold(const struct rate_counts *cur, const struct rate_counts *prev,
    const struct rate_counts *mid, const struct rate_counts *old, uint64_t now_wall_ms,
    struct rate_counts *hour, struct rate_counts *day)
{
	/* The part of the oldest bucket still inside the window. */
	double left = 1.0 - (double)(now_wall_ms % RATES_HOUR_MS) / (double)RATES_HOUR_MS;

	memset(hour, 0, sizeof *hour);
	memset(day, 0, sizeof *day);
	add(hour, cur, 1.0);
	add(hour, prev, left);
	add(day, cur, 1.0);
	add(day, prev, 1.0);
	add(day, mid, 1.0);
	add(day, old, left);
}

/* The bounces of t's classes in c. */
static double
bounces(const struct rate_threshold *t, const struct rate_counts *c)
{
	double n = 0;

	if (t->classes == 0)
		return c->b;
	for (int i = 0; i < CLASS__COUNT; i++)
		if (t->classes & (1u << i))
			n += c->bc[i];
	return n;
}

static int
judge(const struct rate_threshold *t, const struct rate_entry *e, struct rate_decision *d)
{
	const struct rate_counts *c = NULL;
	char win[40], got[24], lim[24];
	double num, den;
	uint64_t wms;

	switch (t->over) {
	case RATE_WIN_HOUR:
		c = &e->hour;
		wms = RATES_HOUR_MS;
		break;
	case RATE_WIN_DAY:
		c = &e->day;
		wms = 24 * RATES_HOUR_MS;
		break;
	case RATE_WIN_FIRST:
	default:
		wms = 30 * 24 * RATES_HOUR_MS;
		if (!e->has_life)
			return 0;
		if (e->life_n >= t->first) {
			for (size_t i = 0; i < sizeof e->snap_at / sizeof e->snap_at[0]; i++)
				if (e->snap_at[i] == t->first)
					c = &e->snap[i];
			if (c == NULL)
				return 0;	/* passed it before it was kept */
			den = t->first;
		} else {
			c = &e->life;
			den = e->life_n;
		}
		num = t->metric == RATE_METRIC_BOUNCE ? bounces(t, c) : c->c;
		goto judged;
	}
	if (t->metric == RATE_METRIC_COMPLAINT) {
		num = c->c;
		den = c->d;
	} else {
		num = bounces(t, c);
		den = c->d + c->b;
	}
judged:
	if (den <= 0 || den < (double)t->min_volume || num <= 0)
		return 0;
	if (num * 1e6 <= (double)t->above_ppm * den)
		return 0;
	d->num = num;
	d->den = den;
	d->rate_ppm = (uint32_t)llround(num * 1e6 / den);
	d->window_ms = wms;
	rates_window_name(t, win, sizeof win);
	rates_ppm_text(d->rate_ppm, got, sizeof got);
	rates_ppm_text(t->above_ppm, lim, sizeof lim);
	if (t->metric == RATE_METRIC_COMPLAINT)
		snprintf(d->reason, sizeof d->reason, "complaints %.0f of %.0f delivered (%s) over %s > %s",
		    num, den, got, win, lim);
	else
		snprintf(d->reason, sizeof d->reason, "%sbounces %.0f of %.0f sent (%s) over %s > %s",
		    t->classes ? "" : "all ", num, den, got, win, lim);
	return 1;
}

size_t
rates_evaluate(const struct rate_threshold *t, size_t nt, const struct rate_entry *e,
    size_t ne, struct rate_decision *out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < nt; i++)
		for (size_t j = 0; j < ne && n < max; j++) {
			if (e[j].dim != t[i].per)
				continue;
			memset(&out[n], 0, sizeof out[n]);
			if (!judge(&t[i], &e[j], &out[n]))
				continue;
			out[n].threshold = i;
			out[n].entry = j;
			n++;
		}
	return n;
}

/* num / den as a rate text ("0%" when den is 0). */
static const char *
ratio_text(double num, double den, char *buf, size_t len)
{
	return rates_ppm_text(den > 0 && num > 0 ? (uint32_t)llround(num * 1e6 / den) : 0,
	    buf, len);
}

const char *
rates_entry_text(const struct rate_entry *e, char *buf, size_t len)
{
	const struct rate_counts *w[2] = { &e->hour, &e->day };
	static const char *const tag[2] = { "1h", "1d" };
	size_t off = 0;

	buf[0] = '\0';
	for (int i = 0; i < 2 && off < len; i++) {
		char br[24], cr[24];
		int n;

		ratio_text(w[i]->b, w[i]->d + w[i]->b, br, sizeof br);
		ratio_text(w[i]->c, w[i]->d, cr, sizeof cr);
		n = snprintf(buf + off, len - off, "%sd%s=%.0f b%s=%.0f c%s=%.0f br%s=%s cr%s=%s",
		    i ? " " : "", tag[i], w[i]->d, tag[i], w[i]->b, tag[i], w[i]->c, tag[i], br,
		    tag[i], cr);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	return buf;
}

size_t
rates_top(const struct rate_entry *e, size_t n, size_t *idx, size_t max)
{
	size_t k = 0;

	/* Insertion into a list kept sorted: max is small (tens). */
	for (size_t i = 0; i < n; i++) {
		double v = e[i].day.d + e[i].day.b + e[i].day.c;
		size_t at = k;

		while (at > 0 && e[idx[at - 1]].day.d + e[idx[at - 1]].day.b +
		    e[idx[at - 1]].day.c < v)
			at--;
		if (at >= max)
			continue;
		if (k < max)
			k++;
		memmove(idx + at + 1, idx + at, (k - 1 - at) * sizeof *idx);
		idx[at] = i;
	}
	return k;
}

int
rates_held_field(const struct rate_held *h, char *buf, size_t len)
{
	int n;

	if (h->site[0] == '\0')
		return -1;
	n = snprintf(buf, len, "%s|%s", h->ip, h->site);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

int
rates_held_value(const struct rate_held *h, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s until=%llu mph=%llu %s",
	    h->suspend ? "suspended" : "throttled", (unsigned long long)h->until_wall_ms,
	    (unsigned long long)(h->suspend ? 0 : h->mph), h->reason);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* "KEY=digits" at *p, followed by a blank or the end: the number, p moved
 * past it; -1 if not. */
static int
held_num(const char **p, const char *key, uint64_t *v)
{
	size_t kl = strlen(key);
	const char *s = *p;
	uint64_t x = 0;
	size_t nd = 0;

	if (strncmp(s, key, kl) != 0)
		return -1;
	for (s += kl; *s >= '0' && *s <= '9'; s++, nd++) {
		if (x > (UINT64_MAX - 9) / 10)
			return -1;
		x = x * 10 + (uint64_t)(*s - '0');
	}
	if (nd == 0 || (*s != '\0' && *s != ' '))
		return -1;
	*v = x;
	*p = *s == ' ' ? s + 1 : s;
	return 0;
}

int
rates_held_parse(const char *field, const char *value, struct rate_held *h)
{
	const char *bar = strchr(field, '|'), *p = value;
	size_t iplen, sitelen, n = 0;

	memset(h, 0, sizeof *h);
	if (bar == NULL)
		return -1;
	iplen = (size_t)(bar - field);
	sitelen = strlen(bar + 1);
	if (iplen >= sizeof h->ip || sitelen == 0 || sitelen >= sizeof h->site)
		return -1;
	for (size_t i = 0; i < iplen; i++)
		if (strchr("0123456789abcdefABCDEF.:", field[i]) == NULL)
			return -1;
	for (const char *s = bar + 1; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == '|' || *s == '/')
			return -1;
	memcpy(h->ip, field, iplen);
	memcpy(h->site, bar + 1, sitelen);
	if (strncmp(p, "suspended ", 10) == 0) {
		h->suspend = 1;
		p += 10;
	} else if (strncmp(p, "throttled ", 10) == 0) {
		p += 10;
	} else {
		return -1;
	}
	if (held_num(&p, "until=", &h->until_wall_ms) < 0 || held_num(&p, "mph=", &h->mph) < 0)
		return -1;
	if (!h->suspend && h->mph == 0)
		return -1;
	/* The reason goes to logs and the shaping stream: printable only. */
	for (; *p && n < sizeof h->reason - 1; p++)
		h->reason[n++] = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
	h->reason[n] = '\0';
	return 0;
}
