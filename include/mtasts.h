/*
 * mtasts.h - MTA-STS (RFC 8461): the TXT record, the policy file, MX
 * matching. Pure: no DNS, no HTTPS, no clock (mtasts_cache.h does those).
 *
 * mtasts_txt_parse: one TXT record of _mta-sts.DOMAIN (its strings joined).
 *   "v=STSv1; id=20160831085700Z;" -> 1 and the id (1 to 32 letters or
 *   digits). A record not starting with "v=STSv1" is not an STS record
 *   (0); one that does but is malformed (no id, a bad id) -> -1. RFC 8461
 *   3.1: more or fewer than one STS record means no policy.
 *
 * mtasts_parse: the body of https://mta-sts.DOMAIN/.well-known/mta-sts.txt.
 *   Lines end in CRLF or LF; each is "key: value" (spaces around the
 *   value ignored). "version" must be "STSv1", "mode" one of enforce,
 *   testing, none, "max_age" 1 to 10 digits (capped at one year), "mx"
 *   repeated (at most MTASTS_MAX_MX kept; a pattern is a host name or
 *   "*." and a host name). Unknown keys are ignored. enforce and testing
 *   need at least one mx. Anything else: -1 and err says why. Input is
 *   hostile: bounded by n (NUL bytes refuse it), at most MTASTS_MAX_BODY.
 *
 * mtasts_mx_match: does MX host name h match one of the policy's patterns
 *   (RFC 8461 4.1)? Case does not matter, a trailing dot is ignored, "*."
 *   stands for exactly one leftmost label.
 */
#ifndef VOLLEY_MTASTS_H
#define VOLLEY_MTASTS_H

#include <stddef.h>
#include <stdint.h>

#define MTASTS_MAX_MX		32
#define MTASTS_MAX_BODY		65536		/* RFC 8461 3.3: the fetch's cap */
#define MTASTS_MAX_AGE_CAP	31557600u	/* one year, RFC 8461 3.2 */
#define MTASTS_ID_MAX		32

enum mtasts_mode {
	MTASTS_NONE = 0,
	MTASTS_TESTING,
	MTASTS_ENFORCE,
};
const char *mtasts_mode_name(enum mtasts_mode m);

struct mtasts_policy {
	enum mtasts_mode mode;
	uint32_t max_age;			/* seconds, capped */
	char id[MTASTS_ID_MAX + 1];		/* of the TXT record it was fetched for */
	size_t nmx;
	char mx[MTASTS_MAX_MX][256];		/* lower case, no trailing dot */
};

int mtasts_txt_parse(const char *txt, size_t n, char *id, size_t idsz);
int mtasts_parse(const char *buf, size_t n, struct mtasts_policy *p, char *err, size_t errsz);
int mtasts_mx_match(const struct mtasts_policy *p, const char *host);
/* mtasts_mx_text - "mx.example.com, *.example.net" for logs and replies. */
const char *mtasts_mx_text(const struct mtasts_policy *p, char *buf, size_t n);

/*
 * A kept policy and its clock (ms of whatever clock the caller uses):
 * in force while now < expires; refresh_at is half its max_age after
 * the fetch (RFC 8461 5.1: refresh well before expiry); retry_after
 * holds back the next background refresh after one failed.
 */
struct mtasts_kept {
	int have;
	struct mtasts_policy pol;
	uint64_t refresh_at, expires, retry_after;
};

/* mtasts_keep - k holds p, fetched at now. */
void mtasts_keep(struct mtasts_kept *k, const struct mtasts_policy *p, uint64_t now);
int mtasts_in_force(const struct mtasts_kept *k, uint64_t now);

/*
 * mtasts_after_txt - what to do once the TXT lookup of the domain has
 * answered: txt 1 (one valid record, its id), 0 (no STS record: NXDOMAIN,
 * no TXT, not exactly one valid record) or -1 (the lookup failed).
 *   A kept policy in force is always used at once (KEEP); it is also
 *   fetched again in the background (KEEP_REFRESH) when the id changed
 *   or it is past refresh_at, unless a failed refresh holds it back.
 *   A missing or failed TXT never drops a kept policy (RFC 8461 5.1).
 *   No policy in force: a valid id means FETCH (the caller waits),
 *   anything else NONE.
 */
enum mtasts_step {
	MTASTS_STEP_NONE = 0,
	MTASTS_STEP_KEEP,
	MTASTS_STEP_KEEP_REFRESH,
	MTASTS_STEP_FETCH,
};
enum mtasts_step mtasts_after_txt(const struct mtasts_kept *k, int txt, const char *id,
    uint64_t now);

/*
 * The stored form of a policy (kept over a restart): "ID EXPIRES_MS
 * POLICY", EXPIRES_MS the wall-clock expiry (unix ms), POLICY the policy
 * written back as a policy file (version, mode, max_age, mx lines; LF).
 * mtasts_store_format returns its length (< n), or -1 if n is too small
 * (MTASTS_STORE_MAX always suffices). mtasts_store_parse reads one back
 * (hostile input: Redis): 0, or -1 and err says why.
 */
#define MTASTS_STORE_MAX	(64 + MTASTS_MAX_MX * 262)
int mtasts_store_format(const struct mtasts_policy *p, uint64_t expires_ms, char *buf, size_t n);
int mtasts_store_parse(const char *s, size_t n, struct mtasts_policy *p, uint64_t *expires_ms,
    char *err, size_t errsz);

#endif
