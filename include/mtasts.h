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

#endif
