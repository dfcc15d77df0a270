/*
 * config.c - the validated, immutable configuration (see config.h).
 *
 * Owns: turning a UCL tree (ucl.c) into a struct config, with every
 * default, range and cross-reference checked at load time; the built-in
 * defaults; the small lookups the engine does on a loaded config (pool by
 * name, site by MX host, limits for a destination, retry delays); the
 * duration and rate parsers shared with the CLI.
 *
 * API: config_load(), config_load_string(), config_default(), config_free(),
 * config_pool(), config_limits_for(), config_domain_find(),
 * config_site_for_mx(), config_retry_delay(), config_parse_duration(),
 * config_parse_rate().
 *
 * Invariants:
 *  - Scalar settings live in one table (settings[] below): name, kind,
 *    default, range. config_default() and config_load() both start from
 *    that table, so a default is written down exactly once.
 *  - Unknown keys are errors (a typo must never silently mean "default").
 *  - Every error carries the file:line of the node it is about, and all
 *    errors are collected, not just the first.
 *  - A loaded config always has a pool "default" and a non-empty retry list.
 *  - Pure apart from reading the files it is pointed at (the config and the
 *    classify rule file it names) and gethostname()/getpid() for defaults.
 */
#include "config.h"
#include "tls.h"
#include "smtp_client.h"
#include "classify.h"
#include "pace.h"
#include "rates.h"
#include "ucl.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MAX_DURATION_MS	(10ull * 365 * 86400 * 1000)	/* ten years */
#define MAX_LIST	4096	/* entries in any one list */

/* ------------------------------------------------------------------ */
/* durations and rates                                                  */

/*
 * config_parse_duration - "90" (seconds), "500ms", "30s", "5min" or "5m",
 * "1h", "2d", "1w"; a decimal fraction is allowed ("1.5h"). At most ten
 * years. 0 is a valid duration here; callers that need > 0 check it.
 */
int
config_parse_duration(const char *s, uint64_t *ms)
{
	static const struct { const char *suffix; uint64_t mult; } units[] = {
		{ "", 1000 }, { "ms", 1 }, { "s", 1000 }, { "sec", 1000 },
		{ "m", 60000 }, { "min", 60000 }, { "h", 3600000 },
		{ "d", 86400000 }, { "w", 604800000 },
	};
	uint64_t ip = 0, frac = 0, fscale = 1;
	const char *p = s;

	if (s == NULL || *p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (ip > MAX_DURATION_MS)
			return -1;
		ip = ip * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (fscale < 1000000000ull) {	/* digits past 9 change nothing */
				frac = frac * 10 + (uint64_t)(*p - '0');
				fscale *= 10;
			}
		}
	}
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(p, units[i].suffix) != 0)
			continue;
		if (ip > MAX_DURATION_MS / units[i].mult)
			return -1;
		uint64_t v = ip * units[i].mult + frac * units[i].mult / fscale;

		if (v > MAX_DURATION_MS)
			return -1;
		*ms = v;
		return 0;
	}
	return -1;
}

/*
 * config_parse_rate - "N/s", "N/min", "N/h", "N/day" (N >= 1; also /sec,
 * /m, /minute, /hour, /d). "unlimited" and "0" mean no limit (count 0).
 */
int
config_parse_rate(const char *s, struct rate *r)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "s", 1000 }, { "sec", 1000 }, { "second", 1000 },
		{ "m", 60000 }, { "min", 60000 }, { "minute", 60000 },
		{ "h", 3600000 }, { "hr", 3600000 }, { "hour", 3600000 },
		{ "d", 86400000 }, { "day", 86400000 },
	};
	uint64_t n = 0;
	const char *p = s;

	if (s == NULL)
		return -1;
	if (strcmp(s, "unlimited") == 0 || strcmp(s, "0") == 0) {
		r->count = 0;
		r->per_ms = 0;
		return 0;
	}
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		n = n * 10 + (uint64_t)(*p - '0');
		if (n > 1000000000ull)
			return -1;
	}
	if (n == 0 || *p != '/')
		return -1;
	p++;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(p, units[i].unit) == 0) {
			r->count = (uint32_t)n;
			r->per_ms = units[i].ms;
			return 0;
		}
	}
	return -1;
}

/*
 * config_parse_size - bytes: "1000", "512k"/"512K"/"512kb", "50M"/"50MB",
 * "1G"/"1GB" (binary multiples). At most 2^50.
 */
int
config_parse_size(const char *s, uint64_t *bytes)
{
	static const struct { const char *suffix; uint64_t mult; } units[] = {
		{ "", 1 }, { "b", 1 }, { "k", 1024 }, { "kb", 1024 }, { "m", 1048576 },
		{ "mb", 1048576 }, { "g", 1073741824 }, { "gb", 1073741824 },
	};
	uint64_t v = 0;
	const char *p = s;

	if (s == NULL || *p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (1ull << 50))
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcasecmp(p, units[i].suffix) != 0)
			continue;
		if (v > (1ull << 50) / units[i].mult)
			return -1;
		*bytes = v * units[i].mult;
		return 0;
	}
	return -1;
}

/* ------------------------------------------------------------------ */
/* value checks: each returns NULL when fine, else why not               */

static int
is_ip_literal(const char *s)
{
	unsigned char a[16];

	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* split "host:port", "[v6]:port", "v6" or "host"; host copied into h. */
static const char *
split_host_port(const char *s, char *h, size_t hlen, int *port, int need_port)
{
	const char *colon, *hs = s;
	size_t n;

	*port = 0;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL)
			return "missing ']'";
		hs = s + 1;
		n = (size_t)(rb - hs);
		colon = rb[1] == ':' ? rb + 1 : NULL;
		if (rb[1] != '\0' && colon == NULL)
			return "junk after ']'";
	} else {
		colon = strrchr(s, ':');
		if (colon != NULL && strchr(s, ':') != colon)
			colon = NULL;	/* a bare IPv6 literal: no port */
		n = colon ? (size_t)(colon - s) : strlen(s);
	}
	if (n == 0 || n >= hlen)
		return "bad host";
	memcpy(h, hs, n);
	h[n] = '\0';
	if (colon != NULL) {
		char *end;
		long v = strtol(colon + 1, &end, 10);

		if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || v < 1 || v > 65535)
			return "bad port (1..65535)";
		*port = (int)v;
	} else if (need_port) {
		return "needs a port (ADDR:PORT)";
	}
	return NULL;
}

static const char *
check_dns_server(const char *s)
{
	char h[128];
	int port;
	const char *why = split_host_port(s, h, sizeof h, &port, 0);

	if (why != NULL)
		return why;
	return is_ip_literal(h) ? NULL : "not an IP address (ADDR or ADDR:PORT)";
}

static const char *
check_listen(const char *s)
{
	char h[128];
	int port;
	const char *why = split_host_port(s, h, sizeof h, &port, 1);

	if (why != NULL)
		return why;
	return is_ip_literal(h) ? NULL : "not an IP address (ADDR:PORT)";
}

static const char *
check_hostname(const char *s)
{
	size_t n = strlen(s);

	if (n == 0)
		return "must not be empty";
	if (n > 255)
		return "longer than 255 characters";
	if (s[0] == '[')	/* address literal, RFC 5321 4.1.3 */
		return s[n - 1] == ']' ? NULL : "bad address literal";
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'))
			return "not a host name";
	return NULL;
}

static const char *
check_domain(const char *s)
{
	if (s[0] == '\0' || s[0] == '.' || strstr(s, "..") != NULL)
		return "not a domain name";
	return check_hostname(s);
}

static const char *
check_header_name(const char *s)
{
	if (*s == '\0')
		return "must not be empty";
	for (const char *p = s; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f || *p == ':')
			return "not a header field name";
	return NULL;
}

static const char *
check_token(const char *s)
{
	if (*s == '\0')
		return "must not be empty";
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return "must not contain spaces or control characters";
	return NULL;
}

static const char *
check_prefix(const char *s)
{
	return *s == '\0' ? NULL : check_token(s);
}

static const char *
check_return_path(const char *s)
{
	const char *why = check_token(s);

	if (why != NULL)
		return why;
	if (strchr(s, '@') == NULL || strchr(s, '<') || strchr(s, '>'))
		return "not an address (local@domain, {id} is replaced by the job id)";
	return NULL;
}

/* Unsubscribe templates and the Feedback-ID sender id: they go into a
 * header, so printable ASCII without spaces or angle brackets. */
static const char *
check_header_value(const char *s)
{
	const char *why = check_token(s);

	if (why != NULL)
		return why;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p >= 0x7f || *p == '<' || *p == '>' || *p == '"')
			return "must be printable ASCII without '<', '>' or '\"' (percent-encode them)";
	return NULL;
}

static const char *
check_unsub_url(const char *s)
{
	const char *why = check_header_value(s);

	if (why != NULL)
		return why;
	if (strncasecmp(s, "https://", 8) != 0 || s[8] == '\0')
		return "not an https: URL (RFC 8058 One-Click needs https; {id} {to} {campaign} "
		    "{tenant} {pool} are replaced)";
	return NULL;
}

static const char *
check_unsub_mailto(const char *s)
{
	const char *why = check_header_value(s);

	if (why != NULL)
		return why;
	if (strncasecmp(s, "mailto:", 7) != 0 || strchr(s, '@') == NULL)
		return "not a mailto: URI (mailto:local@domain?subject=...)";
	return NULL;
}

static const char *
check_date(const char *s)
{
	int y, m, d;
	char tail;

	if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 ||
	    s[4] != '-' || s[7] != '-' || y < 2000 || m < 1 || m > 12 || d < 1 || d > 31)
		return "not a date (YYYY-MM-DD)";
	return NULL;
}

/* A DKIM selector: dot-separated labels of letters, digits, '-' and '_'. */
static const char *
check_selector(const char *s)
{
	size_t label = 0, n = strlen(s);

	if (n == 0 || n > 200)
		return "not a selector (labels of letters, digits, - and _)";
	for (const char *p = s; *p; p++) {
		if (*p == '.') {
			if (label == 0)
				return "not a selector (labels of letters, digits, - and _)";
			label = 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_') || ++label > 63)
			return "not a selector (labels of letters, digits, - and _)";
	}
	return label == 0 ? "not a selector (labels of letters, digits, - and _)" : NULL;
}

static const char *
check_dkim_alg(const char *s)
{
	enum dkim_alg a;

	return dkim_alg_parse(s, &a) < 0 ? "is not rsa-sha256 or ed25519-sha256" : NULL;
}

/* "header/body", each relaxed or simple */
static int
parse_canon(const char *s, enum dkim_canon *h, enum dkim_canon *b)
{
	const char *slash = strchr(s, '/');
	enum dkim_canon v[2];
	const char *part[2];
	size_t len[2];

	if (slash == NULL)
		return -1;
	part[0] = s;
	len[0] = (size_t)(slash - s);
	part[1] = slash + 1;
	len[1] = strlen(slash + 1);
	for (int i = 0; i < 2; i++) {
		if (len[i] == 7 && strncmp(part[i], "relaxed", 7) == 0)
			v[i] = DKIM_CANON_RELAXED;
		else if (len[i] == 6 && strncmp(part[i], "simple", 6) == 0)
			v[i] = DKIM_CANON_SIMPLE;
		else
			return -1;
	}
	*h = v[0];
	*b = v[1];
	return 0;
}

static const char *
check_canon(const char *s)
{
	enum dkim_canon h, b;

	return parse_canon(s, &h, &b) < 0 ?
	    "is not HEADER/BODY with relaxed or simple (e.g. relaxed/relaxed)" : NULL;
}

static char *redact_url(const char *url);

/*
 * parse_redis_url - redis://[[user]:password@]host[:port][/db] or
 * unix:/path (also unix:///path). Fills c when c != NULL.
 */
static const char *
parse_redis_url(const char *url, struct config *c)
{
	if (strncmp(url, "unix:", 5) == 0) {
		const char *path = url + 5;

		if (strncmp(path, "//", 2) == 0)
			path += 2;
		if (path[0] != '/')
			return "unix socket path must be absolute (unix:/path/to/sock)";
		if (c != NULL) {
			free(c->redis_unix);
			c->redis_unix = xstrdup(path);
			free(c->redis_host);
			c->redis_host = NULL;
			c->redis_port = 0;
			c->redis_db = 0;
			free(c->redis_password);
			c->redis_password = NULL;
			free(c->redis_user);
			c->redis_user = NULL;
			free(c->redis_url_safe);
			c->redis_url_safe = xstrdup(url);
		}
		return NULL;
	}
	if (strncmp(url, "redis://", 8) != 0)
		return "must start with redis:// or unix:";

	const char *p = url + 8, *at = strrchr(p, '@'), *slash;
	char host[256];
	int port = 6379, db = 0;
	char *pass = NULL, *user = NULL;

	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t)(at - p));

		if (colon == NULL)
			return "credentials must be :password@ or user:password@";
		if (at - colon - 1 > 0)
			pass = xstrndup(colon + 1, (size_t)(at - colon - 1));
		if (colon > p)
			user = xstrndup(p, (size_t)(colon - p));
		if (user != NULL && pass == NULL) {
			free(user);
			return "a user needs a password (user:password@)";
		}
		p = at + 1;
	}
	slash = strchr(p, '/');
	size_t hl = slash ? (size_t)(slash - p) : strlen(p);

	if (hl == 0 || hl >= sizeof host) {
		free(pass);
		free(user);
		return "missing host";
	}
	memcpy(host, p, hl);
	host[hl] = '\0';

	char h[256];
	const char *why = split_host_port(host, h, sizeof h, &port, 0);

	if (why != NULL) {
		free(pass);
		free(user);
		return why;
	}
	if (port == 0)
		port = 6379;
	if (slash != NULL && slash[1] != '\0') {
		char *end;
		long v = strtol(slash + 1, &end, 10);

		if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || v < 0 || v > 1000000) {
			free(pass);
			free(user);
			return "bad database number";
		}
		db = (int)v;
	}
	if (c == NULL) {
		free(pass);
		free(user);
		return NULL;
	}
	free(c->redis_host);
	c->redis_host = xstrdup(h);
	c->redis_port = port;
	c->redis_db = db;
	free(c->redis_unix);
	c->redis_unix = NULL;
	free(c->redis_password);
	c->redis_password = pass;
	free(c->redis_user);
	c->redis_user = user;
	free(c->redis_url_safe);
	c->redis_url_safe = redact_url(url);
	return NULL;
}

/*
 * redact_url - the url with any password replaced by "***", for logs and
 * command output: "redis://app:***@10.0.0.5:6379/0".
 */
static char *
redact_url(const char *url)
{
	const char *p = strncmp(url, "redis://", 8) == 0 ? url + 8 : NULL;
	const char *at = p ? strrchr(p, '@') : NULL;
	const char *colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;

	if (colon == NULL)
		return xstrdup(url);
	return xasprintf("redis://%.*s:***%s", (int)(colon - p), p, at);
}

static const char *
check_redis_url(const char *s)
{
	return parse_redis_url(s, NULL);
}

/* ------------------------------------------------------------------ */
/* the settings table                                                   */

enum set_kind {
	S_STR = 0,	/* char *; check() may refuse */
	S_PATH,		/* char *, resolved relative to the file that sets it */
	S_U32,		/* uint32_t in [min, max] */
	S_INT,		/* int in [min, max] */
	S_DUR,		/* uint64_t ms in [min, max] */
	S_RATE,		/* struct rate */
	S_STRLIST,	/* char ** + size_t count at off_n; check() each */
	S_DURLIST,	/* uint64_t * + size_t count at off_n; each >= min */
	S_BOOL,		/* int 0/1: true/false/yes/no/on/off */
	S_SIZE,		/* uint64_t bytes in [min, max]: "50M", "512k", "1G", "1000" */
	S_TLS,		/* int: enum tls_policy, by name */
	S_OPTBOOL,	/* int: 0 unset (inherit), 1 true, 2 false */
};

struct setting {
	const char *block;	/* "" (top level), "redis", "smtp.timeouts", ... */
	const char *name;
	enum set_kind kind;
	size_t off, off_n;
	uint64_t min, max;
	const char *def;	/* default in config syntax; NULL: none / set in code */
	const char *(*check)(const char *s);
	int lower;		/* lower-case string values */
};

#define OFF(f) offsetof(struct config, f)
#define U32MAX 4294967295ull

static const struct setting settings[] = {
	{ "", "instance", S_STR, OFF(instance), 0, 0, 0, NULL, check_token, 0 },
	{ "", "dkim_threads", S_U32, OFF(dkim_threads), 0, 0, 64, "2", NULL, 0 },

	{ "redis", "url", S_STR, OFF(redis_url), 0, 0, 0, "redis://127.0.0.1:6379/0", check_redis_url, 0 },
	{ "redis", "prefix", S_STR, OFF(prefix), 0, 0, 0, "volley:", check_prefix, 0 },
	{ "redis", "read_batch", S_U32, OFF(read_batch), 0, 1, 100000, "256", NULL, 0 },
	{ "redis", "lease", S_DUR, OFF(lease_ms), 0, 1000, MAX_DURATION_MS, "5min", NULL, 0 },
	{ "redis", "events_maxlen", S_U32, OFF(events_maxlen), 0, 0, U32MAX, "1000000", NULL, 0 },
	{ "redis", "max_deliveries", S_U32, OFF(max_deliveries), 0, 1, 1000000, "10", NULL, 0 },
	{ "redis", "reply_timeout", S_DUR, OFF(redis_reply_timeout_ms), 0, 1000, 3600000, "15s", NULL, 0 },
	{ "redis", "msg_ttl", S_DUR, OFF(msg_ttl_ms), 0, 0, MAX_DURATION_MS, "7d", NULL, 0 },

	{ "dns", "servers", S_STRLIST, OFF(dns_servers), OFF(ndns_servers), 0, 0, NULL, check_dns_server, 0 },
	{ "dns", "timeout", S_DUR, OFF(dns_timeout_ms), 0, 1, 600000, "5s", NULL, 0 },
	{ "dns", "min_ttl", S_DUR, OFF(dns_min_ttl_ms), 0, 0, MAX_DURATION_MS, "5s", NULL, 0 },
	{ "dns", "max_ttl", S_DUR, OFF(dns_max_ttl_ms), 0, 1000, MAX_DURATION_MS, "1h", NULL, 0 },
	{ "dns", "allow_private", S_BOOL, OFF(dns_allow_private), 0, 0, 1, "false", NULL, 0 },
	{ "dns", "dnssec", S_BOOL, OFF(dns_dnssec), 0, 0, 1, "false", NULL, 0 },

	{ "smtp", "port", S_INT, OFF(port), 0, 1, 65535, "25", NULL, 0 },
	{ "smtp", "ehlo", S_STR, OFF(ehlo), 0, 0, 0, NULL, check_hostname, 0 },
	{ "smtp", "max_sessions", S_U32, OFF(max_sessions), 0, 1, 10000000, "20000", NULL, 0 },
	{ "smtp", "max_ready", S_U32, OFF(max_ready), 0, 1, 100000000, "10000", NULL, 0 },
	{ "smtp", "max_ready_bytes", S_SIZE, OFF(max_ready_bytes), 0, 1048576, 1ull << 40, "512M", NULL, 0 },
	{ "smtp", "max_queued_per_destination", S_U32, OFF(max_queued_per_dest), 0, 1, 100000000, "2000", NULL, 0 },
	{ "smtp", "detect_ips", S_BOOL, OFF(detect_ips), 0, 0, 1, "false", NULL, 0 },
	{ "smtp", "max_message_size", S_SIZE, OFF(max_message_size), 0, 1024, 1ull << 32, "50M", NULL, 0 },
	{ "smtp", "bdat_threshold", S_SIZE, OFF(bdat_threshold), 0, 0, 1ull << 40, "1M", NULL, 0 },
	{ "smtp", "bdat_pipeline", S_SIZE, OFF(bdat_pipeline), 0, 0, 1ull << 20, "128K", NULL, 0 },
	{ "smtp", "retry", S_DURLIST, OFF(retry_ms), OFF(nretry), 1000, MAX_DURATION_MS, NULL, NULL, 0 },
	{ "smtp", "max_age", S_DUR, OFF(max_age_ms), 0, 1000, MAX_DURATION_MS, "2d", NULL, 0 },
	{ "smtp", "id_header", S_STR, OFF(id_header), 0, 0, 0, "X-Volley-Id", check_header_name, 0 },
	{ "smtp", "return_path", S_STR, OFF(return_path), 0, 0, 0, NULL, check_return_path, 0 },
	{ "smtp", "feedback_id_sender", S_STR, OFF(feedback_id_sender), 0, 0, 0, NULL, check_header_value, 0 },
	{ "smtp", "unsubscribe_url", S_STR, OFF(unsub_url), 0, 0, 0, NULL, check_unsub_url, 0 },
	{ "smtp", "unsubscribe_mailto", S_STR, OFF(unsub_mailto), 0, 0, 0, NULL, check_unsub_mailto, 0 },
	{ "smtp", "idle", S_DUR, OFF(idle_ms), 0, 0, 3600000, "5s", NULL, 0 },
	{ "smtp", "stop_timeout", S_DUR, OFF(stop_ms), 0, 0, 3600000, "30s", NULL, 0 },
	{ "smtp", "max_connections", S_U32, OFF(defaults.max_connections), 0, 1, 1000000, "20", NULL, 0 },
	{ "smtp", "max_msgs_per_connection", S_U32, OFF(defaults.max_msgs_per_connection), 0, 1, U32MAX, "100", NULL, 0 },
	{ "smtp", "max_rate", S_RATE, OFF(defaults.max_rate), 0, 0, 0, "unlimited", NULL, 0 },
	{ "smtp", "max_conn_rate", S_RATE, OFF(defaults.max_conn_rate), 0, 0, 0, "unlimited", NULL, 0 },
	{ "smtp", "max_rate_per_ip", S_RATE, OFF(max_rate_per_ip), 0, 0, 0, "unlimited", NULL, 0 },
	{ "smtp", "classify_rules", S_PATH, OFF(classify_rules), 0, 0, 0, NULL, check_token, 0 },
	{ "smtp", "tls", S_TLS, OFF(defaults.tls), 0, 0, 0, "opportunistic", NULL, 0 },
	{ "smtp", "tls_ca_file", S_PATH, OFF(tls_ca_file), 0, 0, 0, NULL, check_token, 0 },
	{ "smtp", "mta_sts", S_BOOL, OFF(mta_sts), 0, 0, 1, "true", NULL, 0 },
	{ "smtp", "mta_sts_port", S_INT, OFF(mta_sts_port), 0, 1, 65535, "443", NULL, 0 },

	{ "smtp.timeouts", "connect", S_DUR, OFF(t_connect_ms), 0, 1, 3600000, "30s", NULL, 0 },
	{ "smtp.timeouts", "greeting", S_DUR, OFF(t_greeting_ms), 0, 1, 3600000, "5min", NULL, 0 },
	{ "smtp.timeouts", "ehlo", S_DUR, OFF(t_ehlo_ms), 0, 1, 3600000, "5min", NULL, 0 },
	{ "smtp.timeouts", "mail", S_DUR, OFF(t_mail_ms), 0, 1, 3600000, "5min", NULL, 0 },
	{ "smtp.timeouts", "rcpt", S_DUR, OFF(t_rcpt_ms), 0, 1, 3600000, "5min", NULL, 0 },
	{ "smtp.timeouts", "data", S_DUR, OFF(t_data_ms), 0, 1, 3600000, "2min", NULL, 0 },
	{ "smtp.timeouts", "block", S_DUR, OFF(t_block_ms), 0, 1, 3600000, "3min", NULL, 0 },
	{ "smtp.timeouts", "dot", S_DUR, OFF(t_dot_ms), 0, 1, 3600000, "10min", NULL, 0 },
	{ "smtp.timeouts", "transaction", S_DUR, OFF(t_transaction_ms), 0, 1000, 86400000, "30min", NULL, 0 },

	{ "shaping", "initial_connections", S_U32, OFF(shaping.initial_connections), 0, 1, 1000000, "5", NULL, 0 },
	{ "shaping", "decrease", S_U32, OFF(shaping.decrease), 0, 1, 99, "50", NULL, 0 },
	{ "shaping", "rate_step", S_U32, OFF(shaping.rate_step), 0, 1, 100, "10", NULL, 0 },
	{ "shaping", "rate_step_every", S_DUR, OFF(shaping.rate_step_every_ms), 0, 0, 86400000, "1min", NULL, 0 },
	{ "shaping", "decrease_every", S_DUR, OFF(shaping.decrease_every_ms), 0, 0, 3600000, "30s", NULL, 0 },
	{ "shaping", "min_rate", S_RATE, OFF(shaping.min_rate), 0, 0, 0, "1/min", NULL, 0 },
	{ "shaping", "burst", S_U32, OFF(shaping.burst), 0, 1, 100000, "3", NULL, 0 },
	{ "shaping", "close_time", S_DUR, OFF(shaping.close_ms), 0, 1000, 86400000, "30s", NULL, 0 },
	{ "shaping", "max_close_time", S_DUR, OFF(shaping.max_close_ms), 0, 1000, 86400000, "1h", NULL, 0 },
	{ "shaping", "suspend_after", S_U32, OFF(shaping.suspend_after), 0, 1, 1000000, "3", NULL, 0 },
	{ "shaping", "suspend_window", S_DUR, OFF(shaping.suspend_window_ms), 0, 1000, MAX_DURATION_MS, "10min", NULL, 0 },
	{ "shaping", "suspend", S_DUR, OFF(shaping.suspend_ms), 0, 1000, 30ull * 86400000, "30min", NULL, 0 },
	{ "shaping", "resume_spread", S_DUR, OFF(shaping.resume_spread_ms), 0, 0, 86400000, "1min", NULL, 0 },
	{ "shaping", "warmup_burst", S_U32, OFF(shaping.warmup_burst), 0, 0, 100, "2", NULL, 0 },

	{ "inbound", "listen", S_STR, OFF(inbound_listen), 0, 0, 0, NULL, check_listen, 0 },
	{ "inbound", "domains", S_STRLIST, OFF(inbound_domains), OFF(ninbound_domains), 0, 0, NULL, check_domain, 1 },
	{ "inbound", "process", S_BOOL, OFF(inbound_process), 0, 0, 1, "true", NULL, 0 },
	{ "inbound", "keep_sent", S_DUR, OFF(inbound_keep_sent_ms), 0, 0, MAX_DURATION_MS, "7d", NULL, 0 },
	{ "inbound", "max_size", S_SIZE, OFF(inbound_max_size), 0, 1024, 1ull << 30, "10M", NULL, 0 },
	{ "inbound", "max_sessions", S_U32, OFF(inbound_max_sessions), 0, 1, 100000, "100", NULL, 0 },
	{ "inbound", "timeout", S_DUR, OFF(inbound_timeout_ms), 0, 1000, 3600000, "5min", NULL, 0 },
	{ "inbound", "data_timeout", S_DUR, OFF(inbound_data_timeout_ms), 0, 1000, 3600000, "10min", NULL, 0 },
	{ "inbound", "tls_cert", S_PATH, OFF(inbound_tls_cert), 0, 0, 0, NULL, check_token, 0 },
	{ "inbound", "tls_key", S_PATH, OFF(inbound_tls_key), 0, 0, 0, NULL, check_token, 0 },
};
#define NSETTINGS (sizeof settings / sizeof settings[0])

/* Per-destination limits, the same keys in site, domain (and smtp above). */
static const struct setting limit_settings[] = {
	{ "", "max_connections", S_U32, offsetof(struct config_limits, max_connections), 0, 1, 1000000, NULL, NULL, 0 },
	{ "", "max_msgs_per_connection", S_U32, offsetof(struct config_limits, max_msgs_per_connection), 0, 1, U32MAX, NULL, NULL, 0 },
	{ "", "max_rate", S_RATE, offsetof(struct config_limits, max_rate), 0, 0, 0, NULL, NULL, 0 },
	{ "", "max_conn_rate", S_RATE, offsetof(struct config_limits, max_conn_rate), 0, 0, 0, NULL, NULL, 0 },
	{ "", "tls", S_TLS, offsetof(struct config_limits, tls), 0, 0, 0, NULL, NULL, 0 },
	{ "", "fleet_max_rate", S_RATE, offsetof(struct config_limits, fleet_max_rate), 0, 0, 0, NULL, NULL, 0 },
	{ "", "mta_sts", S_OPTBOOL, offsetof(struct config_limits, mta_sts), 0, 0, 0, NULL, NULL, 0 },
};
#define NLIMIT_SETTINGS (sizeof limit_settings / sizeof limit_settings[0])

/* Blocks that hold only settings[] entries (and smtp.timeouts). */
static const char *const plain_blocks[] = { "redis", "dns", "smtp", "inbound", "shaping" };

/* ------------------------------------------------------------------ */
/* load context                                                         */

struct warmup_ref {
	size_t pool, ip;
	const struct ucl_node *node;
};

/* A warm-up's per-site ramp, for the check that the site exists. */
struct wsite_ref {
	size_t w, s;
	const struct ucl_node *node;
};

struct ctx {
	struct config *c;
	struct buf errs;
	int nerr;
	const struct ucl_node *seen[NSETTINGS];	/* where each setting was set */
	const struct ucl_node *url_node;
	const struct ucl_node **pool_nodes, **site_nodes, **domain_nodes, **warmup_nodes;
	const struct ucl_node **dkim_nodes;	/* one per c->dkim entry */
	const struct ucl_node **dkim_headers;	/* its headers node, or NULL */
	struct warmup_ref *refs;
	struct wsite_ref *wsites;
	size_t nwsites;
	size_t nrefs;
	const struct ucl_node *rules_node;
	const struct ucl_node **thr_nodes;	/* one per c->thresholds entry */
	const struct ucl_node **rule_nodes;	/* one per c->reactions entry */
	const struct ucl_node **smarthost_nodes;	/* one per c->smarthosts entry */
	const struct ucl_node **smarthost_refs;	/* smarthost = "NAME" in pools/domains */
	size_t nsmarthost_refs;
	const struct ucl_node **route_pool_nodes;	/* one per c->routes entry: its pool */
};

static void __attribute__((format(printf, 3, 4)))
cerr(struct ctx *x, const struct ucl_node *n, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	/* never echo control bytes from the file into a terminal */
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	buf_appendf(&x->errs, "%s:%d: %s\n", n && n->file ? n->file : "(config)",
	    n ? n->line : 0, msg);
	x->nerr++;
}

static const char *
type_name(const struct ucl_node *n)
{
	switch (n->type) {
	case UCL_OBJECT: return n->arg ? "a named block" : "a block";
	case UCL_ARRAY: return "a list";
	case UCL_STRING: return "a value";
	default: return "nothing";
	}
}

static void
full_name(char *out, size_t n, const char *block, const char *key)
{
	if (block[0] == '\0')
		snprintf(out, n, "%s", key);
	else
		snprintf(out, n, "%s.%s", block, key);
}

/*
 * edit_distance - optimal string alignment distance for "did you mean"
 * (keys are short). close_enough() keeps suggestions to likely typos.
 */
static int
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int d[40][40];

	if (la >= 40 || lb >= 40)
		return 99;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			int v = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);

			if (d[i - 1][j] + 1 < v)
				v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;	/* a swap of two letters counts once */
			d[i][j] = v;
		}
	return d[la][lb];
}

static int
close_enough(const char *typed, int d)
{
	return strlen(typed) <= 4 ? d <= 1 : d <= 2;
}

static void
unknown_key(struct ctx *x, const struct ucl_node *n, const char *block,
    const char *const *extra, size_t nextra)
{
	const char *best = NULL;
	int bestd = 3;
	char fn[160];

	for (size_t i = 0; i < NSETTINGS; i++) {
		if (strcmp(settings[i].block, block) != 0)
			continue;
		int d = edit_distance(n->key, settings[i].name);

		if (d < bestd && close_enough(n->key, d)) {
			bestd = d;
			best = settings[i].name;
		}
	}
	for (size_t i = 0; i < nextra; i++) {
		int d = edit_distance(n->key, extra[i]);

		if (d < bestd && close_enough(n->key, d)) {
			bestd = d;
			best = extra[i];
		}
	}
	full_name(fn, sizeof fn, block, n->key);
	if (best != NULL)
		cerr(x, n, "unknown setting '%s' (did you mean '%s'?)", fn, best);
	else
		cerr(x, n, "unknown setting '%s'", fn);
}

static int
parse_u64_range(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -1;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int
want_scalar(struct ctx *x, const struct ucl_node *n, const char *fn)
{
	if (n->type == UCL_STRING && n->arg == NULL)
		return 0;
	cerr(x, n, "%s: expected a single value, got %s", fn, type_name(n));
	return -1;
}

static char *
resolve_path(const struct ucl_node *n, const char *path)
{
	const char *slash = n->file ? strrchr(n->file, '/') : NULL;

	if (path[0] == '/' || slash == NULL)
		return xstrdup(path);
	return xasprintf("%.*s/%s", (int)(slash - n->file), n->file, path);
}

static void
free_strlist(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/*
 * apply - parse node n as setting s into the struct at base.
 * fn is the dotted name for messages. Returns 0 or -1 (error reported).
 */
static int
apply(struct ctx *x, const struct setting *s, char *base, const struct ucl_node *n,
    const char *fn)
{
	const char *why;
	uint64_t v;

	switch (s->kind) {
	case S_STR:
	case S_PATH: {
		if (want_scalar(x, n, fn) < 0)
			return -1;
		if (s->check != NULL && (why = s->check(n->str)) != NULL) {
			cerr(x, n, "%s: '%s' %s", fn, n->str, why);
			return -1;
		}
		char **dst = (char **)(base + s->off);

		free(*dst);
		*dst = s->kind == S_PATH ? resolve_path(n, n->str) : xstrdup(n->str);
		if (s->lower)
			str_lower(*dst);
		return 0;
	}
	case S_U32:
	case S_INT:
		if (want_scalar(x, n, fn) < 0)
			return -1;
		if (parse_u64_range(n->str, s->min, s->max, &v) < 0) {
			cerr(x, n, "%s: '%s' is not a whole number in %llu..%llu", fn, n->str,
			    (unsigned long long)s->min, (unsigned long long)s->max);
			return -1;
		}
		if (s->kind == S_U32)
			*(uint32_t *)(base + s->off) = (uint32_t)v;
		else
			*(int *)(base + s->off) = (int)v;
		return 0;
	case S_DUR:
		if (want_scalar(x, n, fn) < 0)
			return -1;
		if (config_parse_duration(n->str, &v) < 0) {
			cerr(x, n, "%s: '%s' is not a duration (e.g. 30s, 5min, 1h, 2d)", fn, n->str);
			return -1;
		}
		if (v < s->min || v > s->max) {
			cerr(x, n, "%s: %s is out of range (%llums..%llums)", fn, n->str,
			    (unsigned long long)s->min, (unsigned long long)s->max);
			return -1;
		}
		*(uint64_t *)(base + s->off) = v;
		return 0;
	case S_BOOL:
	case S_OPTBOOL: {
		static const char *const yes[] = { "true", "yes", "on", "1" };
		static const char *const no[] = { "false", "no", "off", "0" };
		int val = -1;

		if (want_scalar(x, n, fn) < 0)
			return -1;
		for (size_t i = 0; i < 4; i++) {
			if (strcasecmp(n->str, yes[i]) == 0)
				val = 1;
			else if (strcasecmp(n->str, no[i]) == 0)
				val = 0;
		}
		if (val < 0) {
			cerr(x, n, "%s: '%s' is not true or false", fn, n->str);
			return -1;
		}
		*(int *)(base + s->off) = s->kind == S_OPTBOOL ? (val ? 1 : 2) : val;
		return 0;
	}
	case S_SIZE:
		if (want_scalar(x, n, fn) < 0)
			return -1;
		if (config_parse_size(n->str, &v) < 0) {
			cerr(x, n, "%s: '%s' is not a size (e.g. 50M, 512k, 1G, or bytes)", fn, n->str);
			return -1;
		}
		if (v < s->min || v > s->max) {
			cerr(x, n, "%s: %s is out of range (%llu..%llu bytes)", fn, n->str,
			    (unsigned long long)s->min, (unsigned long long)s->max);
			return -1;
		}
		*(uint64_t *)(base + s->off) = v;
		return 0;
	case S_TLS: {
		enum tls_policy p;

		if (want_scalar(x, n, fn) < 0)
			return -1;
		if (tls_policy_parse(n->str, &p) < 0) {
			cerr(x, n, "%s: '%s' is not a TLS policy (opportunistic, required, verify "
			    "or disabled)", fn, n->str);
			return -1;
		}
		*(int *)(base + s->off) = (int)p;
		return 0;
	}
	case S_RATE: {
		struct rate r;

		if (want_scalar(x, n, fn) < 0)
			return -1;
		if (config_parse_rate(n->str, &r) < 0) {
			cerr(x, n, "%s: '%s' is not a rate (N/s, N/min, N/h or N/day, N >= 1)", fn, n->str);
			return -1;
		}
		*(struct rate *)(base + s->off) = r;
		return 0;
	}
	case S_STRLIST:
	case S_DURLIST: {
		const struct ucl_node *e, *first;
		size_t cnt = 0, i = 0;
		int bad = 0;

		if (n->type == UCL_STRING && n->arg == NULL) {
			first = n;	/* a single value is a list of one */
			cnt = 1;
		} else if (n->type == UCL_ARRAY) {
			first = n->child;
			for (e = first; e != NULL; e = e->next)
				cnt++;
		} else {
			cerr(x, n, "%s: expected a list, got %s", fn, type_name(n));
			return -1;
		}
		if (cnt > MAX_LIST) {
			cerr(x, n, "%s: more than %d entries", fn, MAX_LIST);
			return -1;
		}
		if (s->kind == S_DURLIST && cnt == 0) {
			cerr(x, n, "%s: the list is empty", fn);
			return -1;
		}
		char **sv = s->kind == S_STRLIST ? xcalloc(cnt + 1, sizeof *sv) : NULL;
		uint64_t *dv = s->kind == S_DURLIST ? xcalloc(cnt + 1, sizeof *dv) : NULL;

		for (e = first; e != NULL && i < cnt; e = e->next, i++) {
			if (e->type != UCL_STRING || e->arg != NULL) {
				cerr(x, e, "%s: list entries must be single values, got %s", fn, type_name(e));
				bad = 1;
				continue;
			}
			if (s->kind == S_STRLIST) {
				sv[i] = xstrdup(e->str);
				if (s->lower)
					str_lower(sv[i]);
				if (s->check != NULL && (why = s->check(sv[i])) != NULL) {
					cerr(x, e, "%s: '%s' %s", fn, e->str, why);
					bad = 1;
				}
			} else if (config_parse_duration(e->str, &dv[i]) < 0) {
				cerr(x, e, "%s: '%s' is not a duration (e.g. 30s, 5min, 1h, 2d)", fn, e->str);
				bad = 1;
			} else if (dv[i] < s->min) {
				cerr(x, e, "%s: %s is too short (at least %llums)", fn, e->str,
				    (unsigned long long)s->min);
				bad = 1;
			}
			if (n->type == UCL_STRING)
				break;
		}
		if (bad) {
			if (sv != NULL)
				free_strlist(sv, cnt);
			free(dv);
			return -1;
		}
		size_t *np = (size_t *)(base + s->off_n);

		if (s->kind == S_STRLIST) {
			free_strlist(*(char ***)(base + s->off), *np);
			*(char ***)(base + s->off) = sv;
		} else {
			free(*(uint64_t **)(base + s->off));
			*(uint64_t **)(base + s->off) = dv;
		}
		*np = cnt;
		return 0;
	}
	}
	return -1;
}

/* ------------------------------------------------------------------ */
/* defaults                                                             */

static void
apply_defaults(struct config *c)
{
	static const uint64_t retry[] = {
		60000, 300000, 900000, 1800000, 3600000, 7200000, 14400000,
	};
	struct ctx x = { .c = c };
	struct ucl_node n = { .type = UCL_STRING, .file = "(defaults)" };
	char host[256];

	for (size_t i = 0; i < NSETTINGS; i++) {
		if (settings[i].def == NULL)
			continue;
		n.str = (char *)settings[i].def;
		if (apply(&x, &settings[i], (char *)c, &n, settings[i].name) < 0)
			panic("bad built-in default for %s: %s", settings[i].name, x.errs.data);
	}
	if (parse_redis_url(c->redis_url, c) != NULL)
		panic("bad built-in redis url");
	c->retry_ms = xmalloc(sizeof retry);
	memcpy(c->retry_ms, retry, sizeof retry);
	c->nretry = sizeof retry / sizeof retry[0];

	if (gethostname(host, sizeof host) != 0 || host[0] == '\0' || check_hostname(host) != NULL)
		snprintf(host, sizeof host, "localhost");
	host[sizeof host - 1] = '\0';
	c->ehlo = xstrdup(host);
	c->instance = xasprintf("%s:%d", host, (int)getpid());
	buf_free(&x.errs);
}

static void
ensure_default_pool(struct config *c)
{
	if (config_pool(c, "default") != NULL)
		return;
	c->pools = xrealloc(c->pools, (c->npools + 1) * sizeof *c->pools);
	memset(&c->pools[c->npools], 0, sizeof c->pools[0]);
	c->pools[c->npools].name = xstrdup("default");
	c->pools[c->npools].overflow = 1;
	c->npools++;
}

uint64_t
config_keep_sent_ms(const struct config *c)
{
	return c->inbound_block ? c->inbound_keep_sent_ms : 0;
}

struct config *
config_default(void)
{
	struct config *c = xcalloc(1, sizeof *c);

	apply_defaults(c);
	ensure_default_pool(c);
	return c;
}

/* ------------------------------------------------------------------ */
/* named blocks: pool, site, domain, warmup                              */

/* named_ok - n must be `kind "name" { ... }`. */
static int
named_ok(struct ctx *x, const struct ucl_node *n)
{
	if (n->type != UCL_OBJECT || n->arg == NULL) {
		cerr(x, n, "%s: expected %s \"NAME\" { ... }, got %s", n->key, n->key, type_name(n));
		return -1;
	}
	if (n->arg[0] == '\0') {
		cerr(x, n, "%s: the name must not be empty", n->key);
		return -1;
	}
	return 0;
}

/* dup_check - first node with the same name among nodes[0..cnt), or NULL. */
static const struct ucl_node *
dup_find(const struct ucl_node **nodes, size_t cnt, const char *name, int icase)
{
	for (size_t i = 0; i < cnt; i++)
		if (icase ? strcasecmp(nodes[i]->arg, name) == 0 : strcmp(nodes[i]->arg, name) == 0)
			return nodes[i];
	return NULL;
}

static int
dup_report(struct ctx *x, const struct ucl_node *n, const struct ucl_node **nodes,
    size_t cnt, int icase)
{
	const struct ucl_node *d = dup_find(nodes, cnt, n->arg, icase);

	if (d == NULL)
		return 0;
	cerr(x, n, "duplicate %s \"%s\" (first defined at %s:%d)", n->key, n->arg, d->file, d->line);
	return -1;
}

static void
parse_limits(struct ctx *x, const struct ucl_node *blk, struct config_limits *lim,
    const struct ucl_node *e)
{
	char fn[300];

	for (size_t i = 0; i < NLIMIT_SETTINGS; i++) {
		if (strcmp(e->key, limit_settings[i].name) != 0)
			continue;
		snprintf(fn, sizeof fn, "%s \"%s\": %s", blk->key, blk->arg, e->key);
		apply(x, &limit_settings[i], (char *)lim, e, fn);
		return;
	}
}

static int
is_limit_key(const char *k)
{
	for (size_t i = 0; i < NLIMIT_SETTINGS; i++)
		if (strcmp(k, limit_settings[i].name) == 0)
			return 1;
	return 0;
}

static void
block_unknown(struct ctx *x, const struct ucl_node *blk, const struct ucl_node *e,
    const char *const *keys, size_t nkeys)
{
	const char *best = NULL;
	int bestd = 3;

	for (size_t i = 0; i < nkeys; i++) {
		int d = edit_distance(e->key, keys[i]);

		if (d < bestd && close_enough(e->key, d)) {
			bestd = d;
			best = keys[i];
		}
	}
	if (best != NULL)
		cerr(x, e, "%s \"%s\": unknown setting '%s' (did you mean '%s'?)", blk->key,
		    blk->arg, e->key, best);
	else
		cerr(x, e, "%s \"%s\": unknown setting '%s'", blk->key, blk->arg, e->key);
}

static void
parse_ip(struct ctx *x, const struct ucl_node *pn, size_t pi, const struct ucl_node *n)
{
	static const char *const keys[] = { "ehlo", "warmup", "warmup_start", "weight", "max_rate",
		"fleet_max_rate", "instance" };
	static const struct setting ip_settings[] = {
		{ "", "weight", S_U32, offsetof(struct config_ip, weight), 0, 1, 1000, NULL, NULL, 0 },
		{ "", "max_rate", S_RATE, offsetof(struct config_ip, max_rate), 0, 0, 0, NULL, NULL, 0 },
		{ "", "fleet_max_rate", S_RATE, offsetof(struct config_ip, fleet_max_rate), 0, 0, 0, NULL, NULL, 0 },
	};
	struct config_pool *p = &x->c->pools[pi];
	const char *addr;
	const char *why;
	char fn[300];

	if (n->type == UCL_STRING && n->arg == NULL) {
		addr = n->str;	/* ip = "127.0.0.2"; */
	} else if (n->type == UCL_OBJECT && n->arg != NULL) {
		addr = n->arg;	/* ip "127.0.0.2" { ... } */
	} else {
		cerr(x, n, "pool \"%s\": expected ip \"ADDR\" { ... } or ip = \"ADDR\", got %s",
		    pn->arg, type_name(n));
		return;
	}
	if (!is_ip_literal(addr)) {
		cerr(x, n, "pool \"%s\": '%s' is not an IP address", pn->arg, addr);
		return;
	}
	for (size_t i = 0; i < p->nips; i++) {
		if (strcmp(p->ips[i].addr, addr) == 0) {
			cerr(x, n, "pool \"%s\": duplicate ip %s", pn->arg, addr);
			return;
		}
	}
	if (p->nips >= MAX_LIST) {
		cerr(x, n, "pool \"%s\": more than %d ips", pn->arg, MAX_LIST);
		return;
	}
	p->ips = xrealloc(p->ips, (p->nips + 1) * sizeof *p->ips);
	struct config_ip *ip = &p->ips[p->nips++];

	memset(ip, 0, sizeof *ip);
	ip->addr = xstrdup(addr);
	ip->weight = 1;
	if (n->type != UCL_OBJECT)
		return;
	for (const struct ucl_node *e = n->child; e != NULL; e = e->next) {
		char **dst = NULL;
		const char *(*check)(const char *) = NULL;

		if (e->key == NULL)
			continue;
		snprintf(fn, sizeof fn, "pool \"%s\" ip \"%s\": %s", pn->arg, addr, e->key);
		if (strcmp(e->key, "ehlo") == 0) {
			dst = &ip->ehlo;
			check = check_hostname;
		} else if (strcmp(e->key, "warmup") == 0) {
			dst = &ip->warmup;
			check = check_token;
		} else if (strcmp(e->key, "warmup_start") == 0) {
			dst = &ip->warmup_start;
			check = check_date;
		} else if (strcmp(e->key, "instance") == 0) {
			dst = &ip->instance;	/* a glob on instance names */
			check = check_token;
		} else if (strcmp(e->key, "weight") == 0 || strcmp(e->key, "max_rate") == 0 ||
		    strcmp(e->key, "fleet_max_rate") == 0) {
			apply(x, &ip_settings[e->key[0] == 'w' ? 0 : e->key[0] == 'm' ? 1 : 2],
			    (char *)ip, e, fn);
			continue;
		} else {
			struct ucl_node fake = *n;

			fake.key = (char *)"ip";
			fake.arg = (char *)addr;
			block_unknown(x, &fake, e, keys, sizeof keys / sizeof keys[0]);
			continue;
		}
		if (want_scalar(x, e, fn) < 0)
			continue;
		if ((why = check(e->str)) != NULL) {
			cerr(x, e, "%s: '%s' %s", fn, e->str, why);
			continue;
		}
		free(*dst);
		*dst = xstrdup(e->str);
		if (dst == &ip->warmup) {
			x->refs = xrealloc(x->refs, (x->nrefs + 1) * sizeof *x->refs);
			x->refs[x->nrefs++] = (struct warmup_ref){ pi, p->nips - 1, e };
		}
	}
}

/* ---- smarthost "NAME" { } ---- */

/* smarthost_ref - `smarthost = "NAME"` in block blk: checked in validate(). */
static void
smarthost_ref(struct ctx *x, const struct ucl_node *blk, const struct ucl_node *e, char **dst)
{
	if (*dst != NULL) {
		cerr(x, e, "%s \"%s\": smarthost is already set", blk->key, blk->arg);
		return;
	}
	if (e->type != UCL_STRING || e->arg != NULL || e->str == NULL || e->str[0] == '\0') {
		cerr(x, e, "%s \"%s\": smarthost: expected smarthost = \"NAME\"", blk->key, blk->arg);
		return;
	}
	*dst = xstrdup(e->str);
	x->smarthost_refs = xrealloc(x->smarthost_refs,
	    (x->nsmarthost_refs + 1) * sizeof *x->smarthost_refs);
	x->smarthost_refs[x->nsmarthost_refs++] = e;
}

/* read_secret - the first line of path (a password file), or NULL with why. */
static char *
read_secret(const char *path, char *why, size_t whylen)
{
	char buf[1025];
	size_t n;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0' || n == sizeof buf - 1) {
		explicit_bzero(buf, sizeof buf);
		snprintf(why, whylen, "%s: %s", path, buf[0] == '\0' && n < sizeof buf - 1 ?
		    "the first line is empty" : "longer than 1024 bytes");
		return NULL;
	}
	{
		char *p = xstrdup(buf);

		explicit_bzero(buf, sizeof buf);
		return p;
	}
}

/* free_secret - wipe and free a password. */
static void
free_secret(char *p)
{
	if (p != NULL) {
		explicit_bzero(p, strlen(p));
		free(p);
	}
}

static void
parse_smarthost(struct ctx *x, const struct ucl_node *n)
{
	static const char *const keys[] = {
		"host", "port", "tls", "verify", "user", "password", "password_file", "auth",
		"max_connections", "max_msgs_per_connection", "max_rate", "max_conn_rate",
		"fleet_max_rate",
	};
	static const struct setting port_s = {
		"", "port", S_INT, offsetof(struct config_smarthost, port), 0, 1, 65535, NULL, NULL, 0,
	};
	static const struct setting verify_s = {
		"", "verify", S_BOOL, offsetof(struct config_smarthost, verify), 0, 0, 1, NULL, NULL, 0,
	};
	struct config *c = x->c;
	const struct ucl_node *seen[8] = { 0 }, *pw = NULL, *pwf = NULL;
	struct config_smarthost *h;
	char fn[300];

	if (named_ok(x, n) < 0 || dup_report(x, n, x->smarthost_nodes, c->nsmarthosts, 0) < 0)
		return;
	if (check_token(n->arg) != NULL) {
		cerr(x, n, "smarthost \"%s\": the name %s", n->arg, check_token(n->arg));
		return;
	}
	c->smarthosts = xrealloc(c->smarthosts, (c->nsmarthosts + 1) * sizeof *c->smarthosts);
	x->smarthost_nodes = xrealloc(x->smarthost_nodes,
	    (c->nsmarthosts + 1) * sizeof *x->smarthost_nodes);
	h = &c->smarthosts[c->nsmarthosts];
	memset(h, 0, sizeof *h);
	h->name = xstrdup(n->arg);
	h->verify = 1;
	x->smarthost_nodes[c->nsmarthosts++] = n;
	for (const struct ucl_node *e = n->child; e != NULL; e = e->next) {
		size_t ki;

		if (e->key == NULL)
			continue;
		for (ki = 0; ki < 8 && strcmp(e->key, keys[ki]) != 0; ki++)
			;
		if (ki == 8) {
			if (is_limit_key(e->key) && strcmp(e->key, "tls") != 0 &&
			    strcmp(e->key, "mta_sts") != 0)
				parse_limits(x, n, &h->lim, e);
			else
				block_unknown(x, n, e, keys, sizeof keys / sizeof keys[0]);
			continue;
		}
		snprintf(fn, sizeof fn, "smarthost \"%s\": %s", n->arg, e->key);
		if (seen[ki] != NULL) {
			cerr(x, e, "%s is already set at line %d", fn, seen[ki]->line);
			continue;
		}
		seen[ki] = e;
		if (ki == 1) {
			apply(x, &port_s, (char *)h, e, fn);
			continue;
		}
		if (ki == 3) {
			apply(x, &verify_s, (char *)h, e, fn);
			continue;
		}
		if (want_scalar(x, e, fn) < 0)
			continue;
		switch (ki) {
		case 0: {
			const char *why = check_hostname(e->str);

			if (why == NULL && e->str[0] == '[')
				why = "is an address literal: write the address without brackets";
			if (why != NULL && !is_ip_literal(e->str)) {
				cerr(x, e, "%s: '%s' %s", fn, e->str, why);
				continue;
			}
			h->host = xstrdup(e->str);
			break;
		}
		case 2:
			if (strcasecmp(e->str, "starttls") == 0)
				h->tls = SMARTHOST_TLS_STARTTLS;
			else if (strcasecmp(e->str, "implicit") == 0)
				h->tls = SMARTHOST_TLS_IMPLICIT;
			else if (strcasecmp(e->str, "none") == 0)
				h->tls = SMARTHOST_TLS_NONE;
			else
				cerr(x, e, "%s: '%s' is not starttls, implicit or none", fn, e->str);
			break;
		case 4:
			if (e->str[0] == '\0' || strpbrk(e->str, "\r\n") != NULL) {
				cerr(x, e, "%s: must be one non-empty line", fn);
				continue;
			}
			h->user = xstrdup(e->str);
			break;
		case 5:
			pw = e;
			if (e->str[0] == '\0' || strpbrk(e->str, "\r\n") != NULL) {
				cerr(x, e, "%s: must be one non-empty line", fn);	/* never echoed */
				continue;
			}
			free_secret(h->password);
			h->password = xstrdup(e->str);
			break;
		case 6: {
			char why[600], *path = resolve_path(e, e->str), *p;

			pwf = e;
			if ((p = read_secret(path, why, sizeof why)) == NULL)
				cerr(x, e, "%s: %s", fn, why);
			else if (h->password == NULL)
				h->password = p;
			else
				free_secret(p);
			free(path);
			break;
		}
		case 7:
			if (strcasecmp(e->str, "plain") == 0)
				h->auth = SMTP_AUTH_PLAIN;
			else if (strcasecmp(e->str, "login") == 0)
				h->auth = SMTP_AUTH_LOGIN;
			else
				cerr(x, e, "%s: '%s' is not plain or login", fn, e->str);
			break;
		}
	}
	if (h->host == NULL && seen[0] == NULL)
		cerr(x, n, "smarthost \"%s\": needs host = \"HOST\"", n->arg);
	if (pw != NULL && pwf != NULL)
		cerr(x, pwf, "smarthost \"%s\": password and password_file are exclusive (password "
		    "at line %d)", n->arg, pw->line);
	if (h->user != NULL && pw == NULL && pwf == NULL)
		cerr(x, seen[4], "smarthost \"%s\": user needs password or password_file", n->arg);
	if (h->user == NULL && (pw != NULL || pwf != NULL))
		cerr(x, pw ? pw : pwf, "smarthost \"%s\": a password needs user", n->arg);
	if (h->user == NULL && seen[7] != NULL)
		cerr(x, seen[7], "smarthost \"%s\": auth needs user and password", n->arg);
	if (h->tls == 0)
		h->tls = h->port == 465 ? SMARTHOST_TLS_IMPLICIT : SMARTHOST_TLS_STARTTLS;
	if (h->port == 0)
		h->port = h->tls == SMARTHOST_TLS_IMPLICIT ? 465 : 587;
	if (h->tls == SMARTHOST_TLS_NONE && seen[3] != NULL && h->verify)
		cerr(x, seen[3], "smarthost \"%s\": verify = true needs TLS (tls = \"none\")", n->arg);
}

const struct config_smarthost *
config_smarthost_for(const struct config *c, const char *pool, const char *domain)
{
	const struct config_domain *d = domain ? config_domain_find(c, domain) : NULL;
	const struct config_pool *p = pool ? config_pool(c, pool) : NULL;
	const char *name = d && d->smarthost ? d->smarthost : p ? p->smarthost : NULL;

	if (name == NULL)
		return NULL;
	for (size_t i = 0; i < c->nsmarthosts; i++)
		if (strcmp(c->smarthosts[i].name, name) == 0)
			return &c->smarthosts[i];
	return NULL;
}

static void
parse_pool(struct ctx *x, const struct ucl_node *n)
{
	static const char *const keys[] = { "ip", "overflow", "smarthost" };
	static const struct setting overflow = {
		"", "overflow", S_BOOL, offsetof(struct config_pool, overflow), 0, 0, 1, NULL, NULL, 0,
	};
	const struct ucl_node *overflow_node = NULL;
	struct config *c = x->c;

	if (named_ok(x, n) < 0 || dup_report(x, n, x->pool_nodes, c->npools, 0) < 0)
		return;
	c->pools = xrealloc(c->pools, (c->npools + 1) * sizeof *c->pools);
	x->pool_nodes = xrealloc(x->pool_nodes, (c->npools + 1) * sizeof *x->pool_nodes);
	memset(&c->pools[c->npools], 0, sizeof c->pools[0]);
	c->pools[c->npools].name = xstrdup(n->arg);
	c->pools[c->npools].overflow = 1;
	x->pool_nodes[c->npools] = n;
	size_t pi = c->npools++;

	for (const struct ucl_node *e = n->child; e != NULL; e = e->next) {
		if (e->key != NULL && strcmp(e->key, "ip") == 0) {
			parse_ip(x, n, pi, e);
		} else if (e->key != NULL && strcmp(e->key, "overflow") == 0) {
			char fn[300];

			if (overflow_node != NULL) {
				cerr(x, e, "pool \"%s\": overflow already set at line %d", n->arg,
				    overflow_node->line);
				continue;
			}
			overflow_node = e;
			snprintf(fn, sizeof fn, "pool \"%s\": overflow", n->arg);
			apply(x, &overflow, (char *)&c->pools[pi], e, fn);
		} else if (e->key != NULL && strcmp(e->key, "smarthost") == 0) {
			smarthost_ref(x, n, e, &c->pools[pi].smarthost);
		} else if (e->key != NULL) {
			block_unknown(x, n, e, keys, sizeof keys / sizeof keys[0]);
		}
	}
}

static char *
mx_pattern(const char *s)
{
	char *p = str_lower(xstrdup(s));
	size_t l = strlen(p);

	if (l > 1 && p[l - 1] == '.')
		p[l - 1] = '\0';
	return p;
}

static void
parse_site(struct ctx *x, const struct ucl_node *n)
{
	static const char *const keys[] = {
		"mx", "max_connections", "max_msgs_per_connection", "max_rate", "max_conn_rate",
		"tls", "fleet_max_rate", "mta_sts",
	};
	struct config *c = x->c;
	const struct ucl_node *mx = NULL;

	if (named_ok(x, n) < 0 || dup_report(x, n, x->site_nodes, c->nsites, 0) < 0)
		return;
	c->sites = xrealloc(c->sites, (c->nsites + 1) * sizeof *c->sites);
	x->site_nodes = xrealloc(x->site_nodes, (c->nsites + 1) * sizeof *x->site_nodes);
	struct config_site *s = &c->sites[c->nsites];

	memset(s, 0, sizeof *s);
	s->name = xstrdup(n->arg);
	x->site_nodes[c->nsites++] = n;
	for (const struct ucl_node *e = n->child; e != NULL; e = e->next) {
		if (e->key == NULL)
			continue;
		if (strcmp(e->key, "mx") == 0) {
			static const struct setting mxs = {
				"", "mx", S_STRLIST, offsetof(struct config_site, mx),
				offsetof(struct config_site, nmx), 0, 0, NULL, check_token, 1,
			};
			char fn[300];

			if (mx != NULL) {
				cerr(x, e, "site \"%s\": mx already set at line %d", n->arg, mx->line);
				continue;
			}
			mx = e;
			snprintf(fn, sizeof fn, "site \"%s\": mx", n->arg);
			if (apply(x, &mxs, (char *)s, e, fn) < 0)
				continue;
			if (s->nmx == 0)
				cerr(x, e, "site \"%s\": the mx list is empty", n->arg);
			for (size_t i = 0; i < s->nmx; i++) {
				char *p = mx_pattern(s->mx[i]);

				free(s->mx[i]);
				s->mx[i] = p;
			}
		} else if (is_limit_key(e->key)) {
			parse_limits(x, n, &s->lim, e);
		} else {
			block_unknown(x, n, e, keys, sizeof keys / sizeof keys[0]);
		}
	}
	if (mx == NULL)
		cerr(x, n, "site \"%s\": needs mx = [\"pattern\", ...]", n->arg);
}

static void
parse_domain(struct ctx *x, const struct ucl_node *n)
{
	static const char *const keys[] = {
		"max_connections", "max_msgs_per_connection", "max_rate", "max_conn_rate", "tls",
		"fleet_max_rate", "smarthost", "mta_sts",
	};
	struct config *c = x->c;
	const char *why;

	if (named_ok(x, n) < 0)
		return;
	char *name = mx_pattern(n->arg);	/* lower-case, no trailing dot */

	if ((why = check_domain(name)) != NULL) {
		cerr(x, n, "domain \"%s\": %s", n->arg, why);
		free(name);
		return;
	}
	for (size_t i = 0; i < c->ndomains; i++) {
		if (strcmp(c->domains[i].name, name) == 0) {
			cerr(x, n, "duplicate domain \"%s\" (first defined at %s:%d)", n->arg,
			    x->domain_nodes[i]->file, x->domain_nodes[i]->line);
			free(name);
			return;
		}
	}
	c->domains = xrealloc(c->domains, (c->ndomains + 1) * sizeof *c->domains);
	x->domain_nodes = xrealloc(x->domain_nodes, (c->ndomains + 1) * sizeof *x->domain_nodes);
	struct config_domain *d = &c->domains[c->ndomains];

	memset(d, 0, sizeof *d);
	d->name = name;
	x->domain_nodes[c->ndomains++] = n;
	for (const struct ucl_node *e = n->child; e != NULL; e = e->next) {
		if (e->key == NULL)
			continue;
		if (is_limit_key(e->key))
			parse_limits(x, n, &d->lim, e);
		else if (strcmp(e->key, "smarthost") == 0)
			smarthost_ref(x, n, e, &d->smarthost);
		else
			block_unknown(x, n, e, keys, sizeof keys / sizeof keys[0]);
	}
}

/*
 * parse_count_list - `key = [N, ...]` (each 1..2^32-1) into *out and *n.
 * what names the list in messages ("warmup \"w\": daily"), unit says
 * what an entry counts ("messages per day").
 */
static void
parse_count_list(struct ctx *x, const struct ucl_node *e, const char *what, const char *unit,
    uint32_t **out, size_t *n)
{
	size_t cnt = 0;

	if (e->type != UCL_ARRAY) {
		cerr(x, e, "%s: expected a list of %s, got %s", what, unit, type_name(e));
		return;
	}
	for (const struct ucl_node *v = e->child; v != NULL; v = v->next)
		cnt++;
	if (cnt == 0 || cnt > MAX_LIST) {
		cerr(x, e, "%s: needs 1..%d entries", what, MAX_LIST);
		return;
	}
	*out = xcalloc(cnt, sizeof **out);
	*n = 0;
	for (const struct ucl_node *v = e->child; v != NULL; v = v->next) {
		uint64_t u;

		if (v->type != UCL_STRING || parse_u64_range(v->str, 1, U32MAX, &u) < 0) {
			cerr(x, v, "%s: '%s' is not a whole number >= 1", what,
			    v->type == UCL_STRING ? v->str : type_name(v));
			continue;
		}
		(*out)[(*n)++] = (uint32_t)u;
	}
}

/* One ramp's keys (daily, hourly) in blk; returns the daily node or NULL. */
static const struct ucl_node *
parse_ramp_key(struct ctx *x, const struct ucl_node *e, const char *who,
    const struct ucl_node **daily, const struct ucl_node **hourly,
    uint32_t **dv, size_t *dn, uint32_t **hv, size_t *hn)
{
	int is_daily = strcmp(e->key, "daily") == 0;
	const struct ucl_node **seen = is_daily ? daily : hourly;
	char what[300];

	snprintf(what, sizeof what, "%s: %s", who, e->key);
	if (*seen != NULL) {
		cerr(x, e, "%s already set at line %d", what, (*seen)->line);
		return *daily;
	}
	*seen = e;
	if (is_daily)
		parse_count_list(x, e, what, "messages per day", dv, dn);
	else
		parse_count_list(x, e, what, "messages per hour (one entry per day)", hv, hn);
	return *daily;
}

static void
parse_warmup_site(struct ctx *x, const struct ucl_node *wn, size_t wi, const struct ucl_node *n)
{
	static const char *const keys[] = { "daily", "hourly" };
	struct config_warmup *w = &x->c->warmups[wi];
	const struct ucl_node *daily = NULL, *hourly = NULL;
	char who[300];

	if (n->type != UCL_OBJECT || n->arg == NULL || n->arg[0] == '\0') {
		cerr(x, n, "warmup \"%s\": expected site \"NAME\" { daily = [...]; }, got %s",
		    wn->arg, type_name(n));
		return;
	}
	for (size_t i = 0; i < w->nsites; i++) {
		if (strcmp(w->sites[i].site, n->arg) == 0) {
			cerr(x, n, "warmup \"%s\": duplicate site \"%s\"", wn->arg, n->arg);
			return;
		}
	}
	if (w->nsites >= MAX_LIST) {
		cerr(x, n, "warmup \"%s\": more than %d sites", wn->arg, MAX_LIST);
		return;
	}
	w->sites = xrealloc(w->sites, (w->nsites + 1) * sizeof *w->sites);
	struct config_warmup_site *ws = &w->sites[w->nsites++];

	memset(ws, 0, sizeof *ws);
	ws->site = xstrdup(n->arg);
	x->wsites = xrealloc(x->wsites, (x->nwsites + 1) * sizeof *x->wsites);
	x->wsites[x->nwsites++] = (struct wsite_ref){ wi, w->nsites - 1, n };
	snprintf(who, sizeof who, "warmup \"%s\" site \"%s\"", wn->arg, n->arg);
	for (const struct ucl_node *e = n->child; e != NULL; e = e->next) {
		if (e->key == NULL)
			continue;
		if (strcmp(e->key, "daily") == 0 || strcmp(e->key, "hourly") == 0) {
			parse_ramp_key(x, e, who, &daily, &hourly, &ws->daily, &ws->ndaily,
			    &ws->hourly, &ws->nhourly);
		} else {
			struct ucl_node fake = *n;

			fake.key = (char *)"site";
			block_unknown(x, &fake, e, keys, 2);
		}
	}
	if (daily == NULL)
		cerr(x, n, "%s: needs daily = [N, N, ...]", who);
}

static void
parse_warmup(struct ctx *x, const struct ucl_node *n)
{
	static const char *const keys[] = { "daily", "hourly", "site" };
	struct config *c = x->c;
	const struct ucl_node *daily = NULL, *hourly = NULL;
	char who[300];

	if (named_ok(x, n) < 0 || dup_report(x, n, x->warmup_nodes, c->nwarmups, 0) < 0)
		return;
	c->warmups = xrealloc(c->warmups, (c->nwarmups + 1) * sizeof *c->warmups);
	x->warmup_nodes = xrealloc(x->warmup_nodes, (c->nwarmups + 1) * sizeof *x->warmup_nodes);
	struct config_warmup *w = &c->warmups[c->nwarmups];

	memset(w, 0, sizeof *w);
	w->name = xstrdup(n->arg);
	x->warmup_nodes[c->nwarmups] = n;
	size_t wi = c->nwarmups++;

	snprintf(who, sizeof who, "warmup \"%s\"", n->arg);
	for (const struct ucl_node *e = n->child; e != NULL; e = e->next) {
		if (e->key == NULL)
			continue;
		w = &c->warmups[wi];
		if (strcmp(e->key, "daily") == 0 || strcmp(e->key, "hourly") == 0)
			parse_ramp_key(x, e, who, &daily, &hourly, &w->daily, &w->ndaily,
			    &w->hourly, &w->nhourly);
		else if (strcmp(e->key, "site") == 0)
			parse_warmup_site(x, n, wi, e);
		else
			block_unknown(x, n, e, keys, sizeof keys / sizeof keys[0]);
	}
	if (daily == NULL)
		cerr(x, n, "warmup \"%s\": needs daily = [N, N, ...]", n->arg);
}

/*
 * parse_dkim - dkim "DOMAIN" { selector; key; algorithm; headers;
 * subdomains; default; canonicalization; }. selector, key and algorithm
 * are each one value or a list, paired in order (one selector per key:
 * "both algorithms" is two keys); algorithm defaults to the key's own.
 * Every key file is read and parsed here, so a missing, unreadable or
 * mismatched key is a load error with the file:line of its `key`.
 */
struct dkim_tmp {
	char **sel, **key, **alg;
	size_t nsel, nkey, nalg;
	char *canon;
};

static void
parse_dkim(struct ctx *x, const struct ucl_node *n)
{
	static const char *const keys[] = {
		"selector", "key", "algorithm", "headers", "subdomains", "default",
		"canonicalization",
	};
#define DT(f) offsetof(struct dkim_tmp, f)
#define DS(f) offsetof(struct dkim_signer, f)
	static const struct { struct setting s; int in_signer; } ds[] = {
		{ { "", "selector", S_STRLIST, DT(sel), DT(nsel), 0, 0, NULL, check_selector, 0 }, 0 },
		{ { "", "key", S_STRLIST, DT(key), DT(nkey), 0, 0, NULL, check_token, 0 }, 0 },
		{ { "", "algorithm", S_STRLIST, DT(alg), DT(nalg), 0, 0, NULL, check_dkim_alg, 1 }, 0 },
		{ { "", "canonicalization", S_STR, DT(canon), 0, 0, 0, NULL, check_canon, 1 }, 0 },
		{ { "", "headers", S_STRLIST, DS(headers), DS(nheaders), 0, 0, NULL, check_header_name, 1 }, 1 },
		{ { "", "subdomains", S_BOOL, DS(subdomains), 0, 0, 1, NULL, NULL, 0 }, 1 },
		{ { "", "default", S_BOOL, DS(is_default), 0, 0, 1, NULL, NULL, 0 }, 1 },
	};
#undef DT
#undef DS
	const struct ucl_node *seen[sizeof ds / sizeof ds[0]] = { 0 };
	struct config *c = x->c;
	struct dkim_tmp t = { 0 };
	const char *why;
	char fn[300];
	int bad = 0;

	if (named_ok(x, n) < 0)
		return;
	char *name = mx_pattern(n->arg);	/* lower-case, no trailing dot */

	if ((why = check_domain(name)) != NULL || name[0] == '[') {
		cerr(x, n, "dkim \"%s\": %s", n->arg, why ? why : "not a domain name");
		free(name);
		return;
	}
	for (size_t i = 0; i < c->ndkim; i++) {
		if (strcmp(c->dkim[i].domain, name) == 0) {
			cerr(x, n, "duplicate dkim \"%s\" (first defined at %s:%d)", n->arg,
			    x->dkim_nodes[i]->file, x->dkim_nodes[i]->line);
			free(name);
			return;
		}
	}
	c->dkim = xrealloc(c->dkim, (c->ndkim + 1) * sizeof *c->dkim);
	x->dkim_nodes = xrealloc(x->dkim_nodes, (c->ndkim + 1) * sizeof *x->dkim_nodes);
	x->dkim_headers = xrealloc(x->dkim_headers, (c->ndkim + 1) * sizeof *x->dkim_headers);
	struct dkim_signer *s = &c->dkim[c->ndkim];

	memset(s, 0, sizeof *s);
	s->domain = name;
	x->dkim_nodes[c->ndkim] = n;
	x->dkim_headers[c->ndkim] = NULL;
	c->ndkim++;
	for (const struct ucl_node *e = n->child; e != NULL; e = e->next) {
		size_t i;

		if (e->key == NULL)
			continue;
		for (i = 0; i < sizeof ds / sizeof ds[0]; i++)
			if (strcmp(e->key, ds[i].s.name) == 0)
				break;
		if (i == sizeof ds / sizeof ds[0]) {
			block_unknown(x, n, e, keys, sizeof keys / sizeof keys[0]);
			continue;
		}
		if (seen[i] != NULL) {
			cerr(x, e, "dkim \"%s\": %s already set at line %d", n->arg, e->key,
			    seen[i]->line);
			continue;
		}
		seen[i] = e;
		snprintf(fn, sizeof fn, "dkim \"%s\": %s", n->arg, e->key);
		if (apply(x, &ds[i].s, ds[i].in_signer ? (char *)s : (char *)&t, e, fn) < 0 &&
		    !ds[i].in_signer)
			bad = 1;	/* reported; the pairing checks below would only echo it */
	}
	const struct ucl_node *sel_n = seen[0], *key_n = seen[1], *alg_n = seen[2];
	const struct ucl_node *hdr_n = seen[4];

	x->dkim_headers[c->ndkim - 1] = hdr_n;
	if (t.canon != NULL)
		parse_canon(t.canon, &s->hcanon, &s->bcanon);
	if (hdr_n != NULL && s->headers != NULL) {
		int from = 0;

		for (size_t i = 0; i < s->nheaders; i++) {
			if (strcmp(s->headers[i], "from") == 0)
				from = 1;
			if (strcmp(s->headers[i], "dkim-signature") == 0)
				cerr(x, hdr_n, "dkim \"%s\": headers: DKIM-Signature cannot be signed",
				    n->arg);
		}
		if (!from)
			cerr(x, hdr_n, "dkim \"%s\": headers must include From (RFC 6376 5.4)", n->arg);
	}
	if (sel_n == NULL)
		cerr(x, n, "dkim \"%s\": needs selector = \"NAME\"", n->arg);
	if (key_n == NULL)
		cerr(x, n, "dkim \"%s\": needs key = \"/path/to/key.pem\"", n->arg);
	if (sel_n == NULL || key_n == NULL || t.nkey == 0 || bad)
		goto done;
	if (t.nkey > DKIM_MAX_KEYS) {
		cerr(x, key_n, "dkim \"%s\": at most %d keys (one per algorithm)", n->arg,
		    DKIM_MAX_KEYS);
		goto done;
	}
	if (t.nsel != t.nkey) {
		cerr(x, sel_n, "dkim \"%s\": %zu key%s but %zu selector%s (one selector per key)",
		    n->arg, t.nkey, t.nkey == 1 ? "" : "s", t.nsel, t.nsel == 1 ? "" : "s");
		goto done;
	}
	if (alg_n != NULL && t.nalg != t.nkey) {
		cerr(x, alg_n, "dkim \"%s\": %zu key%s but %zu algorithm%s (one algorithm per key)",
		    n->arg, t.nkey, t.nkey == 1 ? "" : "s", t.nalg, t.nalg == 1 ? "" : "s");
		goto done;
	}
	for (size_t i = 0; i < t.nkey; i++) {
		enum dkim_alg a = DKIM_ALG_NONE;
		char err[300];
		char *path = resolve_path(key_n, t.key[i]);
		struct dkim_key *k;

		if (alg_n != NULL && dkim_alg_parse(t.alg[i], &a) < 0) {
			free(path);
			continue;	/* reported by check_dkim_alg */
		}
		k = dkim_key_load(path, a, err, sizeof err);
		if (k == NULL) {
			cerr(x, key_n, "dkim \"%s\": key \"%s\": %s", n->arg, path, err);
			free(path);
			continue;
		}
		free(path);
		for (size_t j = 0; j < s->nkeys; j++)
			if (dkim_key_alg(s->keys[j].key) == dkim_key_alg(k))
				cerr(x, key_n, "dkim \"%s\": two keys for %s (one key per algorithm)",
				    n->arg, dkim_alg_name(dkim_key_alg(k)));
		s->keys[s->nkeys].selector = xstrdup(t.sel[i]);
		s->keys[s->nkeys].key = k;
		s->nkeys++;
	}
done:
	free_strlist(t.sel, t.nsel);
	free_strlist(t.key, t.nkey);
	free_strlist(t.alg, t.nalg);
	free(t.canon);
}

/* ------------------------------------------------------------------ */
/* shaping_rule "NAME" { }: reaction rules (reaction.h)                  */

/* "421", "42", "4": 1-3 digits, the first 2-5 */
static const char *
check_reply_code(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 3 || s[0] < '2' || s[0] > '5')
		return "is not a reply code or its prefix (e.g. 421, 45, 5)";
	for (size_t i = 1; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return "is not a reply code or its prefix (e.g. 421, 45, 5)";
	return NULL;
}

/* "4.7.28", "5.7", "5.7.", "4": an enhanced status code or its prefix */
static const char *
check_enh_prefix(const char *s)
{
	const char *p = s;
	int parts = 0;

	if (*p != '2' && *p != '4' && *p != '5')
		return "is not an enhanced status code or its prefix (e.g. 4.7.28, 5.7)";
	p++;
	while (*p == '.') {
		int nd = 0;

		p++;
		while (*p >= '0' && *p <= '9' && nd < 4) {
			p++;
			nd++;
		}
		if ((nd == 0 && *p != '\0') || nd > 3 || ++parts > 2)
			return "is not an enhanced status code or its prefix (e.g. 4.7.28, 5.7)";
		if (nd == 0)
			break;
	}
	if (*p != '\0')
		return "is not an enhanced status code or its prefix (e.g. 4.7.28, 5.7)";
	return NULL;
}

static const char *
check_stage_list(const char *s)
{
	static const char *const stages[] = {
		"connect", "greeting", "ehlo", "helo", "mail", "rcpt", "data", "dot", "rset",
		"quit", "starttls",
	};

	for (;;) {
		size_t k = strcspn(s, ","), i;

		for (i = 0; i < sizeof stages / sizeof stages[0]; i++)
			if (strlen(stages[i]) == k && strncasecmp(stages[i], s, k) == 0)
				break;
		if (i == sizeof stages / sizeof stages[0])
			return "is not a list of stages (connect, greeting, ehlo, helo, mail, rcpt, "
			    "data, dot)";
		if (s[k] == '\0')
			return NULL;
		s += k + 1;
	}
}

/* "3 in 10min" (or "1": every match) */
static int
parse_threshold(const char *s, uint32_t *n, uint64_t *window_ms)
{
	char num[16], *end;
	const char *p = s;
	size_t k = strspn(p, "0123456789");
	unsigned long v;

	if (k == 0 || k >= sizeof num)
		return -1;
	memcpy(num, p, k);
	num[k] = '\0';
	v = strtoul(num, &end, 10);
	if (v < 1 || v > REACTION_THRESHOLD_MAX)
		return -1;
	p += k;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0') {
		if (v != 1)
			return -1;	/* "3" alone: 3 in what time? */
		*n = 1;
		*window_ms = 0;
		return 0;
	}
	if (strncasecmp(p, "in", 2) != 0 || (p[2] != ' ' && p[2] != '\t'))
		return -1;
	p += 2;
	while (*p == ' ' || *p == '\t')
		p++;
	if (config_parse_duration(p, window_ms) < 0 || *window_ms < 1000 ||
	    *window_ms > 7ull * 86400000)
		return -1;
	*n = (uint32_t)v;
	return 0;
}

/*
 * parse_route - route { tenant = "acme"; campaign = "spring*";
 * sender_domain = "news.example.com"; pool = "P"; }: unnamed, repeatable,
 * kept in file order. The pool is checked once every pool is known
 * (validate).
 */
static void
parse_route(struct ctx *x, const struct ucl_node *n)
{
	static const char *const keys[] = { "tenant", "campaign", "sender_domain", "pool" };
	struct config *c = x->c;
	const struct ucl_node *seen[sizeof keys / sizeof keys[0]] = { 0 };
	struct config_route *r;
	char fn[300];

	if (n->type != UCL_OBJECT || n->arg != NULL) {
		cerr(x, n, "route: expected route { ... }, got %s", type_name(n));
		return;
	}
	if (c->nroutes >= MAX_LIST) {
		cerr(x, n, "more than %d routes", MAX_LIST);
		return;
	}
	c->routes = xrealloc(c->routes, (c->nroutes + 1) * sizeof *c->routes);
	x->route_pool_nodes = xrealloc(x->route_pool_nodes,
	    (c->nroutes + 1) * sizeof *x->route_pool_nodes);
	r = &c->routes[c->nroutes];
	memset(r, 0, sizeof *r);
	r->line = n->line;
	x->route_pool_nodes[c->nroutes++] = n;
	for (const struct ucl_node *e = n->child; e != NULL; e = e->next) {
		char **dst;
		const char *why;
		size_t ki;

		if (e->key == NULL)
			continue;
		for (ki = 0; ki < sizeof keys / sizeof keys[0]; ki++)
			if (strcmp(e->key, keys[ki]) == 0)
				break;
		if (ki == sizeof keys / sizeof keys[0]) {
			cerr(x, e, "route: unknown setting '%s' (a route has tenant, campaign, "
			    "sender_domain and pool)", e->key);
			continue;
		}
		snprintf(fn, sizeof fn, "route: %s", e->key);
		if (seen[ki] != NULL) {
			cerr(x, e, "%s is already set at line %d", fn, seen[ki]->line);
			continue;
		}
		seen[ki] = e;
		if (want_scalar(x, e, fn) < 0)
			continue;
		if ((why = check_token(e->str)) != NULL) {
			cerr(x, e, "%s: '%s' %s", fn, e->str, why);
			continue;
		}
		dst = ki == 0 ? &r->tenant : ki == 1 ? &r->campaign : ki == 2 ? &r->sender_domain :
		    &r->pool;
		*dst = xstrdup(e->str);
		if (ki == 3)
			x->route_pool_nodes[c->nroutes - 1] = e;
	}
	if (r->pool == NULL && seen[3] == NULL)
		cerr(x, n, "route: pool is missing");
	if (seen[0] == NULL && seen[1] == NULL && seen[2] == NULL)
		cerr(x, n, "route: needs tenant, campaign or sender_domain (a job no route "
		    "matches goes to pool \"default\")");
}

/*
 * parse_cap - campaign "GLOB" { max_rate = "N/unit"; } or tenant "GLOB"
 * { ... }: every campaign (tenant) whose name matches is capped at that
 * rate on every engine together (a fleet-wide token bucket per name).
 */
static void
parse_cap(struct ctx *x, const struct ucl_node *n, int tenant)
{
	struct config *c = x->c;
	struct config_cap *cap;
	int have = 0;

	if (named_ok(x, n) < 0)
		return;
	for (size_t i = 0; i < c->ncaps; i++)
		if (c->caps[i].tenant == tenant && strcasecmp(c->caps[i].glob, n->arg) == 0) {
			cerr(x, n, "duplicate %s \"%s\" (first defined at line %d)", n->key, n->arg,
			    c->caps[i].line);
			return;
		}
	if (c->ncaps >= MAX_LIST) {
		cerr(x, n, "more than %d campaign/tenant blocks", MAX_LIST);
		return;
	}
	c->caps = xrealloc(c->caps, (c->ncaps + 1) * sizeof *c->caps);
	cap = &c->caps[c->ncaps++];
	memset(cap, 0, sizeof *cap);
	cap->tenant = tenant;
	cap->glob = xstrdup(n->arg);
	cap->line = n->line;
	for (const struct ucl_node *e = n->child; e != NULL; e = e->next) {
		if (e->key == NULL)
			continue;
		if (strcmp(e->key, "max_rate") != 0) {
			cerr(x, e, "%s \"%s\": unknown setting '%s' (only max_rate)", n->key, n->arg,
			    e->key);
			continue;
		}
		if (e->type != UCL_STRING || config_parse_rate(e->str, &cap->max_rate) < 0 ||
		    cap->max_rate.count == 0)
			cerr(x, e, "%s \"%s\": max_rate: not a rate (N/s, N/min, N/h, N/day)",
			    n->key, n->arg);
		else
			have = 1;
	}
	if (!have)
		cerr(x, n, "%s \"%s\": max_rate is required", n->key, n->arg);
}

const struct config_cap *
config_cap_for(const struct config *c, int tenant, const char *name)
{
	if (name == NULL || name[0] == '\0')
		return NULL;
	for (size_t i = 0; i < c->ncaps; i++)
		if (c->caps[i].tenant == tenant && c->caps[i].max_rate.count > 0 &&
		    fnmatch(c->caps[i].glob, name, FNM_CASEFOLD) == 0)
			return &c->caps[i];
	return NULL;
}

/*
 * parse_threshold_block - `threshold "NAME" { metric; over | first; above;
 * min_volume; per; classes; action; site; duration; rate; }`: one rule of
 * the feedback loop (rates.h, docs/operations.md).
 */
static void
parse_threshold_block(struct ctx *x, const struct ucl_node *n)
{
	static const char *const keys[] = {
		"metric", "over", "first", "above", "min_volume", "per", "classes", "action",
		"site", "duration", "rate",
	};
	enum { K_METRIC, K_OVER, K_FIRST, K_ABOVE, K_MIN, K_PER, K_CLASSES, K_ACTION, K_SITE,
		K_DURATION, K_RATE, K__N };
	struct config *c = x->c;
	const struct ucl_node *seen[K__N] = { 0 };
	char fn[300];
	struct rate_threshold *t;

	if (named_ok(x, n) < 0 || dup_report(x, n, x->thr_nodes, c->nthresholds, 0) < 0)
		return;
	if (c->nthresholds >= 256) {
		cerr(x, n, "more than 256 thresholds");
		return;
	}
	c->thresholds = xrealloc(c->thresholds, (c->nthresholds + 1) * sizeof *c->thresholds);
	x->thr_nodes = xrealloc(x->thr_nodes, (c->nthresholds + 1) * sizeof *x->thr_nodes);
	t = &c->thresholds[c->nthresholds];
	memset(t, 0, sizeof *t);
	t->name = xstrdup(n->arg);
	t->file = xstrdup(n->file ? n->file : "(config)");
	t->line = n->line;
	x->thr_nodes[c->nthresholds++] = n;
	for (const struct ucl_node *e = n->child; e != NULL; e = e->next) {
		size_t ki;

		if (e->key == NULL)
			continue;
		for (ki = 0; ki < K__N; ki++)
			if (strcmp(e->key, keys[ki]) == 0)
				break;
		if (ki == K__N) {
			block_unknown(x, n, e, keys, K__N);
			continue;
		}
		snprintf(fn, sizeof fn, "threshold \"%s\": %s", n->arg, e->key);
		if (seen[ki] != NULL) {
			cerr(x, e, "%s is already set at line %d", fn, seen[ki]->line);
			continue;
		}
		seen[ki] = e;
		if (ki == K_CLASSES) {
			if (e->type != UCL_ARRAY || e->child == NULL) {
				cerr(x, e, "%s: expected a list of bounce classes, got %s", fn,
				    type_name(e));
				continue;
			}
			for (const struct ucl_node *v = e->child; v != NULL; v = v->next) {
				enum bounce_class bc;

				if (v->type != UCL_STRING || bounce_class_from_name(v->str, &bc) < 0) {
					cerr(x, v, "%s: '%s' is not a bounce class", fn,
					    v->type == UCL_STRING ? v->str : type_name(v));
					continue;
				}
				t->classes |= 1u << bc;
			}
			continue;
		}
		if (want_scalar(x, e, fn) < 0)
			continue;
		switch (ki) {
		case K_METRIC:
			if (strcasecmp(e->str, "complaint_rate") == 0)
				t->metric = RATE_METRIC_COMPLAINT;
			else if (strcasecmp(e->str, "bounce_rate") == 0)
				t->metric = RATE_METRIC_BOUNCE;
			else
				cerr(x, e, "%s: '%s' is not a metric (complaint_rate or bounce_rate)", fn,
				    e->str);
			break;
		case K_OVER: {
			uint64_t ms;

			if (config_parse_duration(e->str, &ms) == 0 && ms == RATES_HOUR_MS)
				t->over = RATE_WIN_HOUR;
			else if (config_parse_duration(e->str, &ms) == 0 && ms == 24 * RATES_HOUR_MS)
				t->over = RATE_WIN_DAY;
			else
				cerr(x, e, "%s: '%s' is not a window (1h or 1d)", fn, e->str);
			break;
		}
		case K_FIRST: {
			uint64_t v;

			if (parse_u64_range(e->str, 1, 1000000, &v) < 0 || !rates_checkpoint_ok((uint32_t)v))
				cerr(x, e, "%s: '%s' is not one of the kept volumes (100, 200, 500, 1000, "
				    "2000, 5000, 10000)", fn, e->str);
			else {
				t->over = RATE_WIN_FIRST;
				t->first = (uint32_t)v;
			}
			break;
		}
		case K_ABOVE:
			if (rates_parse_ppm(e->str, &t->above_ppm) < 0)
				cerr(x, e, "%s: '%s' is not a rate (e.g. \"0.3%%\", \"5%%\", 0..100%%)", fn,
				    e->str);
			break;
		case K_MIN: {
			uint64_t v;

			if (parse_u64_range(e->str, 0, 1000000000, &v) < 0)
				cerr(x, e, "%s: '%s' is not a whole number in 0..1000000000", fn, e->str);
			else
				t->min_volume = v;
			break;
		}
		case K_PER:
			if (rates_dim_from_name(e->str, &t->per) < 0)
				cerr(x, e, "%s: '%s' is not one of campaign, tenant, pool, ip, site", fn,
				    e->str);
			break;
		case K_ACTION:
			if (strcasecmp(e->str, "pause") == 0)
				t->action = RATE_ACT_PAUSE;
			else if (strcasecmp(e->str, "warmup_hold") == 0)
				t->action = RATE_ACT_WARMUP_HOLD;
			else if (strcasecmp(e->str, "suspend") == 0)
				t->action = RATE_ACT_SUSPEND;
			else if (strcasecmp(e->str, "throttle") == 0)
				t->action = RATE_ACT_THROTTLE;
			else
				cerr(x, e, "%s: '%s' is not an action (pause, warmup_hold, suspend or "
				    "throttle)", fn, e->str);
			break;
		case K_SITE:
			if (e->str[0] == '\0')
				cerr(x, e, "%s: must not be empty", fn);
			else
				t->site = xstrdup(e->str);
			break;
		case K_DURATION: {
			uint64_t v;

			if (config_parse_duration(e->str, &v) < 0)
				cerr(x, e, "%s: '%s' is not a duration (e.g. 30min, 1h, 2d)", fn, e->str);
			else if (v < 1000 || v > 30ull * 86400000)
				cerr(x, e, "%s: %s is out of range (1s..30d)", fn, e->str);
			else
				t->duration_ms = v;
			break;
		}
		case K_RATE: {
			struct rate rt;

			if (config_parse_rate(e->str, &rt) < 0 || rt.count == 0) {
				cerr(x, e, "%s: '%s' is not a rate (N/s, N/min, N/h or N/day, N >= 1)", fn,
				    e->str);
				break;
			}
			t->mph = pace_mph(&rt);
			t->rate_text = xstrdup(e->str);
			break;
		}
		default:
			break;
		}
	}
	snprintf(fn, sizeof fn, "threshold \"%s\"", n->arg);
	if (!seen[K_METRIC])
		cerr(x, n, "%s: needs metric = complaint_rate | bounce_rate", fn);
	if (!seen[K_ABOVE])
		cerr(x, n, "%s: needs above (e.g. \"0.3%%\")", fn);
	if (!seen[K_PER])
		cerr(x, n, "%s: needs per = campaign | tenant | pool | ip | site", fn);
	if (!seen[K_ACTION])
		cerr(x, n, "%s: needs action = pause | warmup_hold | suspend | throttle", fn);
	if (!seen[K_OVER] == !seen[K_FIRST])
		cerr(x, n, "%s: needs exactly one of over = 1h | 1d and first = N", fn);
	if (seen[K_FIRST] && (t->per != RATE_DIM_CAMPAIGN || t->metric != RATE_METRIC_BOUNCE))
		cerr(x, seen[K_FIRST], "%s: first applies to per = campaign with metric = bounce_rate", fn);
	if (seen[K_CLASSES] && t->metric != RATE_METRIC_BOUNCE)
		cerr(x, seen[K_CLASSES], "%s: classes applies to metric = bounce_rate", fn);
	if (!seen[K_ACTION] || !seen[K_PER])
		return;
	switch (t->action) {
	case RATE_ACT_PAUSE:
		if (t->per != RATE_DIM_CAMPAIGN && t->per != RATE_DIM_TENANT)
			cerr(x, seen[K_ACTION], "%s: action pause needs per = campaign or tenant", fn);
		if (seen[K_DURATION])
			cerr(x, seen[K_DURATION], "%s: a pause lasts until `volley resume`; "
			    "no duration", fn);
		break;
	case RATE_ACT_WARMUP_HOLD:
		if (t->per != RATE_DIM_IP)
			cerr(x, seen[K_ACTION], "%s: action warmup_hold needs per = ip", fn);
		if (t->duration_ms == 0)
			t->duration_ms = 24 * RATES_HOUR_MS;
		break;
	case RATE_ACT_SUSPEND:
	case RATE_ACT_THROTTLE:
		if (t->per == RATE_DIM_IP && t->site == NULL)
			cerr(x, seen[K_ACTION], "%s: action %s per = ip needs the site", fn,
			    seen[K_ACTION]->str);
		else if (t->per != RATE_DIM_IP && t->per != RATE_DIM_SITE)
			cerr(x, seen[K_ACTION], "%s: action %s needs per = ip (with site) or site", fn,
			    seen[K_ACTION]->str);
		if (t->per == RATE_DIM_SITE && t->site != NULL)
			cerr(x, seen[K_SITE], "%s: per = site names the site itself; no site", fn);
		if (t->action == RATE_ACT_THROTTLE && t->mph == 0)
			cerr(x, seen[K_ACTION], "%s: action throttle needs rate (e.g. \"100/h\")", fn);
		if (t->duration_ms == 0)
			t->duration_ms = RATES_HOUR_MS;
		break;
	}
	if (seen[K_SITE] && t->action != RATE_ACT_SUSPEND && t->action != RATE_ACT_THROTTLE)
		cerr(x, seen[K_SITE], "%s: site applies to action suspend or throttle", fn);
	if (seen[K_RATE] && t->action != RATE_ACT_THROTTLE)
		cerr(x, seen[K_RATE], "%s: rate applies to action throttle", fn);
}

static void
parse_shaping_rule(struct ctx *x, const struct ucl_node *n)
{
	static const char *const keys[] = {
		"site", "stage", "code", "enh", "text", "regex", "threshold", "action", "rate",
		"connections", "scope", "duration",
	};
	static const struct { const char *key; size_t off; const char *(*check)(const char *); } strs[] = {
		{ "site", offsetof(struct reaction_rule, site), check_token },
		{ "stage", offsetof(struct reaction_rule, stage), check_stage_list },
		{ "code", offsetof(struct reaction_rule, code), check_reply_code },
		{ "enh", offsetof(struct reaction_rule, enh), check_enh_prefix },
		{ "text", offsetof(struct reaction_rule, text), NULL },
		{ "regex", offsetof(struct reaction_rule, regex), NULL },
	};
	struct config *c = x->c;
	const struct ucl_node *seen[sizeof keys / sizeof keys[0]] = { 0 };
	const struct ucl_node *action = NULL;
	char fn[300], why[200];
	struct reaction_rule *r;

	if (named_ok(x, n) < 0 || dup_report(x, n, x->rule_nodes, c->nreactions, 0) < 0)
		return;
	if (c->nreactions >= MAX_LIST) {
		cerr(x, n, "more than %d shaping rules", MAX_LIST);
		return;
	}
	c->reactions = xrealloc(c->reactions, (c->nreactions + 1) * sizeof *c->reactions);
	x->rule_nodes = xrealloc(x->rule_nodes, (c->nreactions + 1) * sizeof *x->rule_nodes);
	r = &c->reactions[c->nreactions];
	memset(r, 0, sizeof *r);
	r->name = xstrdup(n->arg);
	r->file = xstrdup(n->file ? n->file : "(config)");
	r->line = n->line;
	r->threshold = 1;
	x->rule_nodes[c->nreactions++] = n;
	for (const struct ucl_node *e = n->child; e != NULL; e = e->next) {
		size_t ki;

		if (e->key == NULL)
			continue;
		for (ki = 0; ki < sizeof keys / sizeof keys[0]; ki++)
			if (strcmp(e->key, keys[ki]) == 0)
				break;
		if (ki == sizeof keys / sizeof keys[0]) {
			block_unknown(x, n, e, keys, sizeof keys / sizeof keys[0]);
			continue;
		}
		snprintf(fn, sizeof fn, "shaping_rule \"%s\": %s", n->arg, e->key);
		if (seen[ki] != NULL) {
			cerr(x, e, "%s is already set at line %d", fn, seen[ki]->line);
			continue;
		}
		seen[ki] = e;
		if (want_scalar(x, e, fn) < 0)
			continue;
		if (ki < sizeof strs / sizeof strs[0]) {
			const char *bad = strs[ki].check ? strs[ki].check(e->str) : NULL;

			if (e->str[0] == '\0')
				bad = "must not be empty";
			if (bad != NULL) {
				cerr(x, e, "%s: '%s' %s", fn, e->str, bad);
				continue;
			}
			*(char **)((char *)r + strs[ki].off) = xstrdup(e->str);
			continue;
		}
		if (strcmp(e->key, "threshold") == 0) {
			if (parse_threshold(e->str, &r->threshold, &r->window_ms) < 0)
				cerr(x, e, "%s: '%s' is not a threshold (\"N in DURATION\", e.g. \"3 in "
				    "10min\", N 1..%d, 1s..7d; or \"1\": every match)", fn, e->str,
				    REACTION_THRESHOLD_MAX);
		} else if (strcmp(e->key, "action") == 0) {
			action = e;
			if (strcasecmp(e->str, "throttle") == 0)
				r->action = REACTION_THROTTLE;
			else if (strcasecmp(e->str, "cap") == 0)
				r->action = REACTION_CAP;
			else if (strcasecmp(e->str, "suspend") == 0)
				r->action = REACTION_SUSPEND;
			else {
				cerr(x, e, "%s: '%s' is not an action (throttle, cap or suspend)", fn,
				    e->str);
				action = NULL;
			}
		} else if (strcmp(e->key, "rate") == 0) {
			struct rate rt;

			if (config_parse_rate(e->str, &rt) < 0 || rt.count == 0) {
				cerr(x, e, "%s: '%s' is not a rate (N/s, N/min, N/h or N/day, N >= 1)", fn,
				    e->str);
				continue;
			}
			r->mph = pace_mph(&rt);
			r->rate_text = xstrdup(e->str);
		} else if (strcmp(e->key, "connections") == 0) {
			uint64_t v;

			if (parse_u64_range(e->str, 1, 1000000, &v) < 0)
				cerr(x, e, "%s: '%s' is not a whole number in 1..1000000", fn, e->str);
			else
				r->connections = (uint32_t)v;
		} else if (strcmp(e->key, "scope") == 0) {
			if (strcasecmp(e->str, "ip") == 0)
				r->scope = REACTION_SCOPE_IP;
			else if (strcasecmp(e->str, "site") == 0)
				r->scope = REACTION_SCOPE_SITE;
			else if (strcasecmp(e->str, "campaign") == 0)
				r->scope = REACTION_SCOPE_CAMPAIGN;
			else
				cerr(x, e, "%s: '%s' is not a scope (ip, site or campaign)", fn, e->str);
		} else if (strcmp(e->key, "duration") == 0) {
			uint64_t v;

			if (config_parse_duration(e->str, &v) < 0)
				cerr(x, e, "%s: '%s' is not a duration (e.g. 30s, 5min, 1h, 2d)", fn, e->str);
			else if (v < 1000 || v > 30ull * 86400000)
				cerr(x, e, "%s: %s is out of range (1s..30d)", fn, e->str);
			else
				r->duration_ms = v;
		}
	}
	if (r->regex != NULL && reaction_rule_compile(r, why, sizeof why) < 0)
		cerr(x, seen[5], "shaping_rule \"%s\": regex: '%s' is not a POSIX extended regular "
		    "expression: %s", n->arg, r->regex, why);
	if (!seen[2] && !seen[3] && !seen[4] && !seen[5])
		cerr(x, n, "shaping_rule \"%s\": needs at least one of code, enh, text or regex "
		    "(a rule matching every reply is a mistake)", n->arg);
	if (!seen[7]) {
		cerr(x, n, "shaping_rule \"%s\": needs action = throttle | cap | suspend", n->arg);
		return;
	}
	if (action == NULL)
		return;
	if (!seen[11])
		cerr(x, n, "shaping_rule \"%s\": needs duration (how long the %s lasts)", n->arg,
		    reaction_action_name(r->action));
	if (r->action == REACTION_THROTTLE && !seen[8])
		cerr(x, n, "shaping_rule \"%s\": action throttle needs rate = \"N/h\"", n->arg);
	if (r->action != REACTION_THROTTLE && seen[8])
		cerr(x, seen[8], "shaping_rule \"%s\": rate is only for action throttle", n->arg);
	if (r->action == REACTION_CAP && !seen[9])
		cerr(x, n, "shaping_rule \"%s\": action cap needs connections = N", n->arg);
	if (r->action != REACTION_CAP && seen[9])
		cerr(x, seen[9], "shaping_rule \"%s\": connections is only for action cap", n->arg);
	if (r->action != REACTION_SUSPEND && seen[10])
		cerr(x, seen[10], "shaping_rule \"%s\": scope is only for action suspend", n->arg);
}

/* ------------------------------------------------------------------ */
/* the walk                                                             */

static const struct setting *
find_setting(const char *block, const char *key, size_t *idx)
{
	for (size_t i = 0; i < NSETTINGS; i++)
		if (strcmp(settings[i].block, block) == 0 && strcmp(settings[i].name, key) == 0) {
			*idx = i;
			return &settings[i];
		}
	return NULL;
}

static void
walk(struct ctx *x, const struct ucl_node *obj, const char *block)
{
	static const char *const top_extra[] = {
		"redis", "dns", "smtp", "inbound", "pool", "site", "domain", "warmup", "shaping",
		"dkim", "shaping_rule", "smarthost", "route", "threshold", "campaign", "tenant",
	};
	static const char *const smtp_extra[] = { "timeouts" };
	char fn[160];

	for (const struct ucl_node *n = obj->child; n != NULL; n = n->next) {
		if (n->key == NULL)
			continue;
		full_name(fn, sizeof fn, block, n->key);
		if (block[0] == '\0') {
			if (strcmp(n->key, "pool") == 0) {
				parse_pool(x, n);
				continue;
			}
			if (strcmp(n->key, "site") == 0) {
				parse_site(x, n);
				continue;
			}
			if (strcmp(n->key, "domain") == 0) {
				parse_domain(x, n);
				continue;
			}
			if (strcmp(n->key, "warmup") == 0) {
				parse_warmup(x, n);
				continue;
			}
			if (strcmp(n->key, "dkim") == 0) {
				parse_dkim(x, n);
				continue;
			}
			if (strcmp(n->key, "shaping_rule") == 0) {
				parse_shaping_rule(x, n);
				continue;
			}
			if (strcmp(n->key, "smarthost") == 0) {
				parse_smarthost(x, n);
				continue;
			}
			if (strcmp(n->key, "route") == 0) {
				parse_route(x, n);
				continue;
			}
			if (strcmp(n->key, "campaign") == 0 || strcmp(n->key, "tenant") == 0) {
				parse_cap(x, n, n->key[0] == 't');
				continue;
			}
			if (strcmp(n->key, "threshold") == 0) {
				parse_threshold_block(x, n);
				continue;
			}
		}
		int is_block = 0;

		if (block[0] == '\0') {
			for (size_t i = 0; i < sizeof plain_blocks / sizeof plain_blocks[0]; i++)
				if (strcmp(n->key, plain_blocks[i]) == 0)
					is_block = 1;
		} else if (strcmp(block, "smtp") == 0 && strcmp(n->key, "timeouts") == 0) {
			is_block = 1;
		}
		if (is_block) {
			if (n->type != UCL_OBJECT || n->arg != NULL) {
				cerr(x, n, "%s: expected %s { ... }, got %s", fn, fn, type_name(n));
				continue;
			}
			if (block[0] == '\0' && strcmp(n->key, "inbound") == 0)
				x->c->inbound_block = 1;
			walk(x, n, fn);
			continue;
		}

		size_t idx;
		const struct setting *s = find_setting(block, n->key, &idx);

		if (s == NULL) {
			if (block[0] == '\0')
				unknown_key(x, n, block, top_extra,
				    sizeof top_extra / sizeof top_extra[0]);
			else if (strcmp(block, "smtp") == 0)
				unknown_key(x, n, block, smtp_extra, 1);
			else
				unknown_key(x, n, block, NULL, 0);
			continue;
		}
		if (x->seen[idx] != NULL) {
			cerr(x, n, "%s is already set at %s:%d", fn, x->seen[idx]->file,
			    x->seen[idx]->line);
			continue;
		}
		x->seen[idx] = n;
		if (apply(x, s, (char *)x->c, n, fn) < 0)
			continue;
		if (s->off == OFF(redis_url))
			x->url_node = n;
		if (s->off == OFF(classify_rules))
			x->rules_node = n;
	}
}

static const struct config_warmup *
warmup_find(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->nwarmups; i++)
		if (strcmp(c->warmups[i].name, name) == 0)
			return &c->warmups[i];
	return NULL;
}

/* cross-checks that need the whole tree */
static void
validate(struct ctx *x, const struct ucl_node *root)
{
	struct config *c = x->c;

	for (size_t i = 0; i < x->nrefs; i++) {
		const char *name = c->pools[x->refs[i].pool].ips[x->refs[i].ip].warmup;

		if (warmup_find(c, name) == NULL)
			cerr(x, x->refs[i].node, "pool \"%s\" ip \"%s\": warmup \"%s\" is not defined",
			    c->pools[x->refs[i].pool].name, c->pools[x->refs[i].pool].ips[x->refs[i].ip].addr,
			    name);
	}
	for (size_t i = 0; i < c->nroutes; i++) {
		const char *pool = c->routes[i].pool;

		if (pool != NULL && strcmp(pool, "default") != 0 && config_pool(c, pool) == NULL)
			cerr(x, x->route_pool_nodes[i], "route: pool \"%s\" is not defined", pool);
	}
	for (size_t i = 0; i < x->nwsites; i++) {
		const struct config_warmup *w = &c->warmups[x->wsites[i].w];
		const char *site = w->sites[x->wsites[i].s].site;
		size_t k;

		for (k = 0; k < c->nsites && strcmp(c->sites[k].name, site) != 0; k++)
			;
		if (k == c->nsites)
			cerr(x, x->wsites[i].node, "warmup \"%s\": site \"%s\" is not defined",
			    w->name, site);
	}
	for (size_t i = 0; i < c->nreactions; i++) {
		const char *site = c->reactions[i].site;
		size_t k;

		if (site == NULL)
			continue;
		for (k = 0; k < c->nsites && strcasecmp(c->sites[k].name, site) != 0; k++)
			;
		if (k < c->nsites || config_domain_find(c, site) != NULL)
			continue;
		cerr(x, x->rule_nodes[i], "shaping_rule \"%s\": site \"%s\" is neither a site nor "
		    "a domain block", c->reactions[i].name, site);
	}
	for (size_t i = 0; i < x->nsmarthost_refs; i++) {
		const struct ucl_node *e = x->smarthost_refs[i];
		size_t k;

		for (k = 0; k < c->nsmarthosts && strcmp(c->smarthosts[k].name, e->str) != 0; k++)
			;
		if (k == c->nsmarthosts)
			cerr(x, e, "smarthost \"%s\" is not defined", e->str);
	}
	for (size_t i = 0; i < c->nthresholds; i++) {
		const char *site = c->thresholds[i].site;
		size_t k;

		if (site == NULL)
			continue;
		for (k = 0; k < c->nsites && strcasecmp(c->sites[k].name, site) != 0; k++)
			;
		if (k == c->nsites)
			cerr(x, x->thr_nodes[i], "threshold \"%s\": site \"%s\" is not defined",
			    c->thresholds[i].name, site);
	}
	if (c->shaping.min_rate.count == 0) {
		size_t idx;

		find_setting("shaping", "min_rate", &idx);
		cerr(x, x->seen[idx] ? x->seen[idx] : root,
		    "shaping.min_rate: a throttled lane needs a floor (N/s, N/min, N/h or N/day)");
	}
	if (c->shaping.close_ms > c->shaping.max_close_ms) {
		size_t idx;
		const struct ucl_node *n;

		find_setting("shaping", "close_time", &idx);
		n = x->seen[idx];
		if (n == NULL) {
			find_setting("shaping", "max_close_time", &idx);
			n = x->seen[idx];
		}
		cerr(x, n ? n : root, "shaping.close_time must not be larger than shaping.max_close_time");
	}
	if (x->url_node != NULL)
		parse_redis_url(c->redis_url, c);	/* checked already; fills host/port/db */
	if (c->dns_min_ttl_ms > c->dns_max_ttl_ms) {
		size_t idx;
		const struct ucl_node *n;

		find_setting("dns", "min_ttl", &idx);
		n = x->seen[idx];
		if (n == NULL) {
			find_setting("dns", "max_ttl", &idx);
			n = x->seen[idx];
		}
		cerr(x, n ? n : root, "dns.min_ttl must not be larger than dns.max_ttl");
	}
	if (c->inbound_listen != NULL && c->ninbound_domains == 0) {
		size_t idx;

		find_setting("inbound", "listen", &idx);
		cerr(x, x->seen[idx], "inbound: listen is set but domains is empty");
	}
	if ((c->inbound_tls_cert == NULL) != (c->inbound_tls_key == NULL)) {
		size_t idx;

		find_setting("inbound", c->inbound_tls_cert ? "tls_cert" : "tls_key", &idx);
		cerr(x, x->seen[idx], "inbound: tls_cert and tls_key go together");
	}
	const struct ucl_node *first_default = NULL;

	for (size_t i = 0; i < c->ndkim; i++) {
		const struct dkim_signer *s = &c->dkim[i];

		if (s->is_default) {
			if (first_default != NULL)
				cerr(x, x->dkim_nodes[i], "dkim \"%s\": a second default signer (the first is at %s:%d)",
				    s->domain, first_default->file, first_default->line);
			else
				first_default = x->dkim_nodes[i];
		}
		/* the per-job id header differs per recipient: signing it would
		 * make a shared body need one signature per job */
		for (size_t j = 0; j < s->nheaders; j++)
			if (strcasecmp(s->headers[j], c->id_header) == 0)
				cerr(x, x->dkim_headers[i], "dkim \"%s\": headers: %s is the per-job id header "
				    "(smtp.id_header) and is never signed", s->domain, c->id_header);
	}
	if (c->tls_ca_file != NULL) {
		size_t idx;

		find_setting("smtp", "tls_ca_file", &idx);
		if (access(c->tls_ca_file, R_OK) != 0)
			cerr(x, x->seen[idx], "smtp.tls_ca_file: cannot read %s: %s",
			    c->tls_ca_file, strerror(errno));
	}
	if (x->rules_node != NULL && x->nerr == 0) {
		char *err = NULL;
		struct classify_rules *r = classify_rules_load(c->classify_rules, &err);

		if (r == NULL) {
			cerr(x, x->rules_node, "smtp.classify_rules: %s", err ? err : "cannot load");
			free(err);
		}
		classify_rules_free(r);
	}
}

static struct config *
config_build(struct ucl_node *root, const char *file, char **errors)
{
	struct ctx x = { 0 };
	struct config *c = xcalloc(1, sizeof *c);

	x.c = c;
	apply_defaults(c);
	c->file = file ? xstrdup(file) : NULL;
	walk(&x, root, "");
	validate(&x, root);
	ensure_default_pool(c);

	free(x.pool_nodes);
	free(x.route_pool_nodes);
	free(x.site_nodes);
	free(x.domain_nodes);
	free(x.warmup_nodes);
	free(x.dkim_nodes);
	free(x.dkim_headers);
	free(x.refs);
	free(x.wsites);
	free(x.thr_nodes);
	free(x.rule_nodes);
	free(x.smarthost_nodes);
	free(x.smarthost_refs);
	if (x.nerr > 0) {
		if (errors != NULL) {
			if (*errors != NULL) {
				char *j = xasprintf("%s%s", *errors, x.errs.data);

				free(*errors);
				*errors = j;
			} else {
				*errors = x.errs.data;
				x.errs.data = NULL;
			}
		}
		buf_free(&x.errs);
		config_free(c);
		return NULL;
	}
	buf_free(&x.errs);
	return c;
}

static void
append_error(char **errors, const char *e)
{
	char *j;

	if (errors == NULL)
		return;
	j = xasprintf("%s%s\n", *errors ? *errors : "", e);
	free(*errors);
	*errors = j;
}

struct config *
config_load(const char *path, char **errors)
{
	char *err = NULL;
	struct ucl_node *root = ucl_parse_file(path, &err);
	struct config *c;

	if (root == NULL) {
		append_error(errors, err ? err : "cannot parse");
		free(err);
		return NULL;
	}
	c = config_build(root, path, errors);
	ucl_free(root);
	return c;
}

struct config *
config_load_string(const char *text, size_t len, const char *name, char **errors)
{
	char *err = NULL;
	struct ucl_node *root = ucl_parse_string(text, len, name, &err);
	struct config *c;

	if (root == NULL) {
		append_error(errors, err ? err : "cannot parse");
		free(err);
		return NULL;
	}
	c = config_build(root, NULL, errors);
	ucl_free(root);
	return c;
}

void
config_free(struct config *c)
{
	if (c == NULL)
		return;
	free(c->file);
	free(c->instance);
	free(c->redis_url);
	free(c->redis_host);
	free(c->redis_unix);
	free(c->redis_password);
	free(c->redis_user);
	free(c->redis_url_safe);
	free(c->prefix);
	free_strlist(c->dns_servers, c->ndns_servers);
	free(c->ehlo);
	free(c->retry_ms);
	free(c->id_header);
	free(c->return_path);
	free(c->feedback_id_sender);
	free(c->unsub_url);
	free(c->unsub_mailto);
	free(c->classify_rules);
	free(c->tls_ca_file);
	for (size_t i = 0; i < c->npools; i++) {
		for (size_t j = 0; j < c->pools[i].nips; j++) {
			free(c->pools[i].ips[j].addr);
			free(c->pools[i].ips[j].ehlo);
			free(c->pools[i].ips[j].warmup);
			free(c->pools[i].ips[j].warmup_start);
			free(c->pools[i].ips[j].instance);
		}
		free(c->pools[i].ips);
		free(c->pools[i].name);
		free(c->pools[i].smarthost);
	}
	free(c->pools);
	for (size_t i = 0; i < c->nroutes; i++) {
		free(c->routes[i].tenant);
		free(c->routes[i].campaign);
		free(c->routes[i].sender_domain);
		free(c->routes[i].pool);
	}
	free(c->routes);
	for (size_t i = 0; i < c->nsites; i++) {
		free(c->sites[i].name);
		free_strlist(c->sites[i].mx, c->sites[i].nmx);
	}
	free(c->sites);
	for (size_t i = 0; i < c->ndomains; i++) {
		free(c->domains[i].name);
		free(c->domains[i].smarthost);
	}
	free(c->domains);
	for (size_t i = 0; i < c->nsmarthosts; i++) {
		free(c->smarthosts[i].name);
		free(c->smarthosts[i].host);
		free(c->smarthosts[i].user);
		free_secret(c->smarthosts[i].password);
	}
	free(c->smarthosts);
	for (size_t i = 0; i < c->nwarmups; i++) {
		free(c->warmups[i].name);
		free(c->warmups[i].daily);
		free(c->warmups[i].hourly);
		for (size_t j = 0; j < c->warmups[i].nsites; j++) {
			free(c->warmups[i].sites[j].site);
			free(c->warmups[i].sites[j].daily);
			free(c->warmups[i].sites[j].hourly);
		}
		free(c->warmups[i].sites);
	}
	free(c->warmups);
	for (size_t i = 0; i < c->ndkim; i++) {
		free(c->dkim[i].domain);
		for (size_t j = 0; j < c->dkim[i].nkeys; j++) {
			free(c->dkim[i].keys[j].selector);
			dkim_key_free(c->dkim[i].keys[j].key);
		}
		free_strlist(c->dkim[i].headers, c->dkim[i].nheaders);
	}
	free(c->dkim);
	for (size_t i = 0; i < c->nreactions; i++)
		reaction_rule_clear(&c->reactions[i]);
	free(c->reactions);
	for (size_t i = 0; i < c->nthresholds; i++) {
		free(c->thresholds[i].name);
		free(c->thresholds[i].file);
		free(c->thresholds[i].site);
		free(c->thresholds[i].rate_text);
	}
	free(c->thresholds);
	for (size_t i = 0; i < c->ncaps; i++)
		free(c->caps[i].glob);
	free(c->caps);
	free(c->inbound_listen);
	free_strlist(c->inbound_domains, c->ninbound_domains);
	free(c->inbound_tls_cert);
	free(c->inbound_tls_key);
	free(c);
}

/* ------------------------------------------------------------------ */
/* lookups                                                              */

const struct config_pool *
config_pool(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->npools; i++)
		if (strcmp(c->pools[i].name, name) == 0)
			return &c->pools[i];
	return NULL;
}

/*
 * config_limits_for - the most specific setting wins, field by field:
 * domain, then site, then the smtp defaults.
 */
struct config_limits
config_limits_for(const struct config *c, const struct config_site *site,
    const struct config_domain *dom)
{
	struct config_limits l = c->defaults;
	const struct config_limits *layers[2] = {
		site ? &site->lim : NULL, dom ? &dom->lim : NULL,
	};

	for (int i = 0; i < 2; i++) {
		if (layers[i] == NULL)
			continue;
		if (layers[i]->max_connections)
			l.max_connections = layers[i]->max_connections;
		if (layers[i]->max_msgs_per_connection)
			l.max_msgs_per_connection = layers[i]->max_msgs_per_connection;
		if (layers[i]->max_rate.count)
			l.max_rate = layers[i]->max_rate;
		if (layers[i]->max_conn_rate.count)
			l.max_conn_rate = layers[i]->max_conn_rate;
		if (layers[i]->tls)
			l.tls = layers[i]->tls;
		if (layers[i]->mta_sts)
			l.mta_sts = layers[i]->mta_sts;
	}
	return l;
}

struct rate
config_fleet_for(const struct config_site *site, const struct config_domain *dom, char *key,
    size_t len)
{
	struct rate none = { 0, 0 };

	if (dom != NULL && dom->lim.fleet_max_rate.count) {
		snprintf(key, len, "domain:%s", dom->name);
		return dom->lim.fleet_max_rate;
	}
	if (site != NULL && site->lim.fleet_max_rate.count) {
		snprintf(key, len, "site:%s", site->name);
		return site->lim.fleet_max_rate;
	}
	if (len)
		key[0] = '\0';
	return none;
}

/* strip one trailing dot into buf (bounded); NULL if too long */
static const char *
host_norm(const char *h, char *buf, size_t n)
{
	size_t l = strlen(h);

	if (l > 0 && h[l - 1] == '.')
		l--;
	if (l >= n)
		return NULL;
	memcpy(buf, h, l);
	buf[l] = '\0';
	return buf;
}

const struct config_domain *
config_domain_find(const struct config *c, const char *domain)
{
	char buf[256];
	const char *d;

	if (domain == NULL || (d = host_norm(domain, buf, sizeof buf)) == NULL)
		return NULL;
	for (size_t i = 0; i < c->ndomains; i++)
		if (strcasecmp(c->domains[i].name, d) == 0)
			return &c->domains[i];
	return NULL;
}

const struct config_site *
config_site_for_mx(const struct config *c, const char *mx_host)
{
	char buf[256];
	const char *h;

	if (mx_host == NULL || (h = host_norm(mx_host, buf, sizeof buf)) == NULL)
		return NULL;
	for (size_t i = 0; i < c->nsites; i++)
		for (size_t j = 0; j < c->sites[i].nmx; j++)
			if (fnmatch(c->sites[i].mx[j], h, FNM_CASEFOLD) == 0)
				return &c->sites[i];
	return NULL;
}

uint64_t
config_retry_delay(const struct config *c, unsigned attempts)
{
	size_t i;

	if (c->nretry == 0)
		return 60000;	/* cannot happen for a loaded config; be safe */
	i = attempts == 0 ? 0 : attempts - 1;
	if (i >= c->nretry)
		i = c->nretry - 1;
	return c->retry_ms[i];
}
