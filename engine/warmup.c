/*
 * warmup.c - warm-up budgets (see warmup.h). Pure arithmetic on a ramp,
 * the time and the counters passed in; O(1), no allocation.
 *
 * The budget at ms m into a day with cap C and burst b:
 *     budget(m) = min(C, floor(C * m / DAY) + b)
 * One more may go while sent_today < budget(now) and sent_hour < the
 * hour's cap. When not, the next time is the first m with
 * budget(m) > sent_today (ceil((sent + 1 - b) * DAY / C)), the start of
 * the next hour for an hourly cap, or the next day when the cap is spent.
 */
#include "warmup.h"

#include <string.h>

struct warmup_ramp
warmup_ramp(const struct config_warmup *w, const char *site)
{
	struct warmup_ramp r = { 0 };

	if (w == NULL)
		return r;
	if (site != NULL) {
		for (size_t i = 0; i < w->nsites; i++) {
			if (strcmp(w->sites[i].site, site) == 0) {
				r.daily = w->sites[i].daily;
				r.ndaily = w->sites[i].ndaily;
				r.hourly = w->sites[i].hourly;
				r.nhourly = w->sites[i].nhourly;
				return r;
			}
		}
	}
	r.daily = w->daily;
	r.ndaily = w->ndaily;
	r.hourly = w->hourly;
	r.nhourly = w->nhourly;
	return r;
}

int
warmup_has_site(const struct config_warmup *w, const char *site)
{
	if (w == NULL || site == NULL)
		return 0;
	for (size_t i = 0; i < w->nsites; i++)
		if (strcmp(w->sites[i].site, site) == 0)
			return 1;
	return 0;
}

/* days from civil (Howard Hinnant's algorithm), proleptic Gregorian */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int64_t)doe - 719468;
}

int64_t
warmup_day_number(const char *s)
{
	static const unsigned mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	unsigned v[3] = { 0, 0, 0 };
	const unsigned width[3] = { 4, 2, 2 };
	const char *p = s;

	if (s == NULL || strlen(s) != 10)
		return -1;
	for (int f = 0; f < 3; f++) {
		for (unsigned i = 0; i < width[f]; i++, p++) {
			if (*p < '0' || *p > '9')
				return -1;
			v[f] = v[f] * 10 + (unsigned)(*p - '0');
		}
		if (f < 2 && *p++ != '-')
			return -1;
	}
	if (v[0] < 1970 || v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > mdays[v[1] - 1])
		return -1;
	if (v[1] == 2 && v[2] == 29 && !(v[0] % 4 == 0 && (v[0] % 100 != 0 || v[0] % 400 == 0)))
		return -1;
	return days_from_civil(v[0], v[1], v[2]);
}

int
warmup_check(const struct warmup_ramp *r, int64_t start_day, uint64_t now_wall_ms,
    uint32_t sent_today, uint32_t sent_hour, uint32_t burst_pct, struct warmup_answer *a)
{
	int64_t today = (int64_t)(now_wall_ms / WARMUP_DAY_MS);
	uint64_t day_start = (uint64_t)today * WARMUP_DAY_MS;
	uint64_t into = now_wall_ms - day_start;
	uint64_t hour_end = now_wall_ms - now_wall_ms % WARMUP_HOUR_MS + WARMUP_HOUR_MS;
	int64_t day = today - start_day + 1;
	uint64_t cap, burst, budget;

	memset(a, 0, sizeof *a);
	if (day < 1)
		day = 1;
	a->day = day > UINT32_MAX ? UINT32_MAX : (uint32_t)day;
	if (r == NULL || r->daily == NULL || (uint64_t)day > r->ndaily) {
		a->done = 1;
		a->allowed = 1;
		return 1;
	}
	cap = r->daily[day - 1];
	a->cap_day = (uint32_t)cap;
	if (r->hourly != NULL && (uint64_t)day <= r->nhourly)
		a->cap_hour = r->hourly[day - 1];
	burst = cap * burst_pct / 100;
	if (burst < 1)
		burst = 1;
	budget = cap * into / WARMUP_DAY_MS + burst;	/* cap < 2^32, into < 2^27 */
	if (budget > cap)
		budget = cap;
	a->budget = (uint32_t)budget;
	if (sent_today >= cap) {
		a->why = "day cap";
		a->next_ms = day_start + WARMUP_DAY_MS;
		return 0;
	}
	if (sent_today >= budget) {
		/* first m with floor(cap * m / DAY) >= sent_today + 1 - burst */
		uint64_t need = (uint64_t)sent_today + 1 - burst;
		uint64_t m = (need * WARMUP_DAY_MS + cap - 1) / cap;

		a->why = "daily budget";
		a->next_ms = day_start + m;
		if (a->next_ms <= now_wall_ms)
			a->next_ms = now_wall_ms + 1;
	}
	if (a->cap_hour != 0 && sent_hour >= a->cap_hour) {
		if (a->why == NULL || a->next_ms < hour_end)
			a->next_ms = hour_end;
		a->why = "hourly cap";
	}
	if (a->why != NULL)
		return 0;
	a->allowed = 1;
	return 1;
}

int64_t
warmup_hold_shift(int64_t start, int64_t shift, uint32_t hold_day, int64_t today)
{
	int64_t day = today - (start + shift) + 1;

	if (hold_day == 0 || day <= (int64_t)hold_day)
		return shift;
	return shift + day - (int64_t)hold_day;
}
