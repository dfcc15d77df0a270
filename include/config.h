/*
 * config.h - the validated, immutable configuration.
 *
 * config_load() parses a UCL file (see ucl.h: libucl itself is not packaged
 * in Debian 12, so volley carries a parser for the UCL subset it documents)
 * and builds a struct config; a reload builds a new one. Every error is
 * reported as "file:line: message". Without a file, config_default() gives
 * the built-in defaults (README, "contract").
 *
 * Durations are milliseconds; rates are messages per hour-scaled units
 * kept as (count, per_ms).
 */
#ifndef VOLLEY_CONFIG_H
#define VOLLEY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "dkim.h"
#include "reaction.h"
#include "rates.h"

struct rate {
	uint32_t count;		/* 0 = unlimited */
	uint64_t per_ms;	/* 1000, 60000, 3600000 or 86400000 */
};

/* A warm-up ramp of its own for one site (its counts are per IP and site). */
struct config_warmup_site {
	char *site;		/* a site block's name */
	uint32_t *daily;	/* messages per day per IP to this site, day 1.. */
	size_t ndaily;		/* past the end: no cap for this site */
	uint32_t *hourly;	/* per day: messages per hour cap, or NULL */
	size_t nhourly;		/* past the end: no hourly cap */
};

struct config_warmup {
	char *name;
	uint32_t *daily;	/* messages per day per IP, day 1.. */
	size_t ndaily;		/* past the end: unlimited */
	uint32_t *hourly;	/* per day: messages per hour per IP, or NULL */
	size_t nhourly;		/* past the end: no hourly cap */
	struct config_warmup_site *sites;	/* per-site ramps */
	size_t nsites;
};

struct config_ip {
	char *addr;		/* "127.0.0.2" or an IPv6 literal */
	char *ehlo;		/* NULL: smtp.ehlo */
	char *warmup;		/* NULL: none; else a config_warmup name */
	char *warmup_start;	/* "YYYY-MM-DD" or NULL (first use) */
	uint32_t weight;	/* share of the pool's jobs, 1..1000 (default 1) */
	struct rate max_rate;	/* total across all sites; 0: smtp.max_rate_per_ip */
	struct rate fleet_max_rate;	/* this IP on every host together (fleet.h); 0: none */
	char *instance;		/* glob: only engines whose instance matches own it;
				 * NULL: owned where bind() to it works (route.h) */
};

struct config_pool {
	char *name;
	struct config_ip *ips;
	size_t nips;		/* 0: the host's default source address */
	int overflow;		/* an IP out of warm-up budget: its jobs go to the
				 * pool's other IPs (1, default) or wait (0) */
	char *smarthost;	/* relay all its mail through this smarthost, or NULL */
};

/* Shaping limits; 0 means "not set here" (inherit), then the default. */
struct config_limits {
	uint32_t max_connections;
	uint32_t max_msgs_per_connection;
	struct rate max_rate;
	struct rate max_conn_rate;	/* new connections per unit */
	int tls;			/* enum tls_policy (tls.h); 0: inherit */
	struct rate fleet_max_rate;	/* site/domain: every instance and IP together; 0: none */
	int mta_sts;			/* site/domain: 0 inherit smtp.mta_sts, 1 on, 2 off */
};

/* Adaptive shaping (the shaping { } block); see docs/shaping.md. */
struct config_shaping {
	uint32_t initial_connections;	/* a new lane's concurrency window (5) */
	uint32_t decrease;		/* percent a slow-down keeps (50) */
	uint32_t rate_step;		/* percent of the reference rate a step adds (10) */
	uint64_t rate_step_every_ms;	/* at most one rate step this often (1min) */
	uint64_t decrease_every_ms;	/* at most one decrease this often (30s) */
	struct rate min_rate;		/* floor of a throttled rate (1/min) */
	uint32_t burst;			/* messages a paced lane may send at once (3) */
	uint64_t close_ms;		/* a failed cohort closes the lane this long (30s) */
	uint64_t max_close_ms;		/* doubling per closure up to this (1h) */
	uint32_t suspend_after;		/* reputation blocks that suspend (3) ... */
	uint64_t suspend_window_ms;	/* ... within this time (10min) */
	uint64_t suspend_ms;		/* how long an IP is suspended for a site (30min) */
	uint64_t resume_spread_ms;	/* waiting jobs come back spread over this (1min) */
	uint32_t warmup_burst;		/* percent of a day's cap usable at once (2) */
};

/*
 * route { tenant = "acme"; campaign = "spring*"; sender_domain = "news.*";
 * pool = "P"; } - a job without a `pool` field goes to the pool of the
 * first route (file order) all of whose criteria match (case-insensitive
 * globs; at least one criterion), else `default` (route.h).
 */
struct config_route {
	char *tenant, *campaign, *sender_domain;	/* NULL: any */
	char *pool;		/* a defined pool */
	int line;		/* for log lines */
};

struct config_site {
	char *name;
	char **mx;		/* glob patterns on MX host names: "*.google.com" */
	size_t nmx;
	struct config_limits lim;
};

struct config_domain {
	char *name;		/* lower-case recipient domain */
	struct config_limits lim;
	char *smarthost;	/* relay through this smarthost (wins over the pool's), or NULL */
};

/* How a smarthost connection is secured. */
enum smarthost_tls {
	SMARTHOST_TLS_STARTTLS = 1,	/* STARTTLS required (port 587, RFC 6409) */
	SMARTHOST_TLS_IMPLICIT,		/* TLS from the first byte (port 465, RFC 8314) */
	SMARTHOST_TLS_NONE,		/* clear text: AUTH in clear (warned at start) */
};

/*
 * smarthost "NAME" { host; port; tls; verify; user; password | password_file;
 * auth; and the limit keys }: a relay that takes the mail of the pools and
 * domains that name it. Their destinations skip the MX lookup and share one
 * shaping destination, "smarthost:NAME", limited by lim.
 */
struct config_smarthost {
	char *name;
	char *host;		/* host name (A/AAAA looked up) or IP literal */
	int port;		/* default 465 for implicit TLS, else 587 */
	int tls;		/* enum smarthost_tls; default by port */
	int verify;		/* chain and host name checked (default true) */
	char *user;		/* NULL: no AUTH */
	char *password;		/* never printed */
	int auth;		/* enum smtp_auth_mech (smtp_client.h): 0 any, 1 plain, 2 login */
	struct config_limits lim;
};

/* A rate cap for campaigns or tenants (config_cap_for). */
struct config_cap {
	int tenant;		/* 0: campaign "GLOB", 1: tenant "GLOB" */
	char *glob;		/* case-insensitive fnmatch pattern on the name */
	struct rate max_rate;
	int line;
};

struct config {
	int detect_ips;			/* smtp.detect_ips: a pool IP this host cannot bind is another host's */
	char *file;		/* path it was loaded from, or NULL */
	char *instance;		/* consumer name; default host:pid */

	/* redis */
	char *redis_url;	/* redis://host:port/db  or unix:/path */
	char *redis_host;	/* parsed from the url */
	int redis_port;
	int redis_db;
	char *redis_unix;	/* unix socket path or NULL */
	char *redis_password;	/* NULL if none */
	char *redis_user;	/* ACL user (AUTH user pass), NULL if none */
	char *redis_url_safe;	/* redis_url with the password as "***": print this one */
	char *prefix;		/* "volley:" */
	uint32_t read_batch;	/* XREADGROUP COUNT, default 256 */
	uint64_t lease_ms;	/* pending/retry lease before takeover, default 300s */
	uint32_t events_maxlen;	/* XADD MAXLEN ~, 0 = unbounded (default 1000000) */
	uint32_t max_deliveries;	/* a job read/claimed more often than this ends failed (10) */
	uint64_t redis_reply_timeout_ms;	/* no reply this long: drop the connection (15s) */
	uint64_t msg_ttl_ms;	/* TTL of PREFIXmsg: keys written by inject (7d; 0 = none) */

	/* dns */
	char **dns_servers;	/* "127.0.0.1:5353"; NULL/0 = /etc/resolv.conf */
	size_t ndns_servers;
	uint64_t dns_timeout_ms;	/* default 5000 */
	uint64_t dns_min_ttl_ms, dns_max_ttl_ms;	/* cache clamps: 5s, 1h */
	int dns_allow_private;	/* use loopback/private/link-local answers (false) */
	int dns_dnssec;		/* resolver validates: trust AD, DANE (false) */

	/* smtp */
	int port;		/* 25 */
	char *ehlo;		/* default: gethostname() */
	uint32_t max_sessions;	/* 20000 */
	uint32_t max_ready;	/* in-memory ready jobs bound, default 10000 */
	uint64_t max_ready_bytes;	/* bytes of message bodies read ahead, default 512M */
	uint32_t max_queued_per_dest;	/* jobs held in memory per destination, 2000 */
	uint64_t max_message_size;	/* larger jobs end failed, default 50M */
	uint64_t *retry_ms;	/* retry schedule; the last one repeats */
	size_t nretry;
	uint64_t max_age_ms;	/* 2d */
	char *id_header;	/* "X-Volley-Id" */
	char *return_path;	/* NULL or "bounces+{id}@bounces.example.com" */
	char *feedback_id_sender;	/* last part of Feedback-ID (NULL: empty) */
	char *unsub_url;	/* template: a job without unsubscribe_url gets it */
	char *unsub_mailto;	/* template: ... without unsubscribe_mailto */
	uint64_t idle_ms;	/* keep an idle session open this long, default 5s */
	uint64_t stop_ms;	/* SIGTERM: how long sessions may finish, default 30s */
	/* RFC 5321 4.5.3.2 timeouts */
	uint64_t bdat_threshold;	/* 1M: larger messages go by BDAT when offered; 0: never */
	uint64_t bdat_pipeline;	/* 128K: smaller ones by one BDAT pipelined with MAIL, RCPT; 0: never */
	uint64_t t_connect_ms;	/* 30s */
	uint64_t t_greeting_ms;	/* 5min */
	uint64_t t_ehlo_ms;	/* 5min */
	uint64_t t_mail_ms;	/* 5min */
	uint64_t t_rcpt_ms;	/* 5min */
	uint64_t t_data_ms;	/* 2min: DATA command to 354 */
	uint64_t t_block_ms;	/* 3min: each data send */
	uint64_t t_dot_ms;	/* 10min: end of data to final reply */
	uint64_t t_transaction_ms;	/* 30min: MAIL to the final reply, all in */
	struct config_limits defaults;	/* max_connections 20, msgs/conn 100, rate 0 */
	struct rate max_rate_per_ip;	/* all sites together, per source IP (0: none) */
	struct config_shaping shaping;

	char *classify_rules;	/* rule file path, or NULL for built-ins */
	char *tls_ca_file;	/* smtp.tls_ca_file: CAs trusted by tls = verify (NULL: system) */
	int mta_sts;		/* smtp.mta_sts: look up and apply MTA-STS policies (true) */
	int mta_sts_port;	/* smtp.mta_sts_port: HTTPS port of mta-sts.DOMAIN (443) */

	struct config_pool *pools;	/* always has "default" */
	size_t npools;
	struct config_route *routes;	/* route { } blocks, in file order */
	size_t nroutes;
	struct config_site *sites;
	size_t nsites;
	struct config_domain *domains;
	size_t ndomains;
	struct config_smarthost *smarthosts;
	size_t nsmarthosts;
	struct config_warmup *warmups;
	size_t nwarmups;
	/* shaping_rule "NAME" { } blocks, in file order (reaction.h) */
	struct reaction_rule *reactions;
	size_t nreactions;
	/* threshold "NAME" { } blocks: the feedback loop's rules (rates.h) */
	struct rate_threshold *thresholds;
	size_t nthresholds;
	/* campaign "GLOB" { max_rate } / tenant "GLOB" { max_rate }: each
	 * matching campaign (tenant) on every engine together, file order */
	struct config_cap *caps;
	size_t ncaps;

	/*
	 * dkim "DOMAIN" { selector; key; algorithm; headers; subdomains;
	 * default; canonicalization; } blocks, keys parsed at load; pick one
	 * with dkim_signer_select(c->dkim, c->ndkim, from_domain).
	 */
	struct dkim_signer *dkim;
	size_t ndkim;
	/* dkim_threads: signing threads (signer.h); 0 signs on the loop */
	uint32_t dkim_threads;

	/* inbound bounces/FBL: the listener (engine/listener.c) */
	char *inbound_listen;
	char **inbound_domains;
	size_t ninbound_domains;
	int inbound_process;		/* inbound.process: this engine reads PREFIXinbound (true) */
	uint64_t inbound_keep_sent_ms;	/* inbound.keep_sent: sent record TTL, 7d; 0 = none */
	int inbound_block;		/* an inbound { } block is present */
	uint64_t inbound_max_size;	/* bytes: 552 at MAIL SIZE= and in DATA */
	uint32_t inbound_max_sessions;	/* more: 421 4.3.2 at connect */
	uint64_t inbound_timeout_ms;	/* a command (or DATA bytes) within this */
	uint64_t inbound_data_timeout_ms;	/* the whole DATA within this */
	char *inbound_tls_cert, *inbound_tls_key;	/* both: STARTTLS offered */
};

/*
 * config_load - parse and validate path. On failure returns NULL and
 * appends one "file:line: message\n" line per error to *errors (malloc'd,
 * caller frees; *errors must be NULL or a malloc'd string). Never exits.
 * All validation errors are collected; a syntax error stops at the first.
 */
struct config *config_load(const char *path, char **errors);
/*
 * config_load_string - the same from memory; name is used in messages and
 * to resolve relative .include and classify_rules paths (c->file stays NULL).
 */
struct config *config_load_string(const char *text, size_t len, const char *name,
    char **errors);
/*
 * config_keep_sent_ms - how long a delivered job's sent record lives (the
 * link from an inbound bounce or complaint back to the job's campaign,
 * tenant, pool and IP): inbound.keep_sent when the config has an inbound
 * block, else 0 (none written: plain senders pay nothing).
 */
uint64_t config_keep_sent_ms(const struct config *c);
/* config_default - the built-in defaults (never NULL). */
struct config *config_default(void);
void config_free(struct config *c);

const struct config_pool *config_pool(const struct config *c, const char *name);
/* Limits for a (site, domain) pair, defaults filled in; either may be NULL. */
struct config_limits config_limits_for(const struct config *c,
    const struct config_site *site, const struct config_domain *dom);
const struct config_domain *config_domain_find(const struct config *c, const char *domain);
/*
 * config_fleet_for - the fleet-wide limit of a destination: the domain
 * block's fleet_max_rate, else the site's. Writes its key ("domain:NAME"
 * or "site:NAME") to key and returns the rate; count 0 (and key "") when
 * neither sets one.
 */
struct rate config_fleet_for(const struct config_site *site, const struct config_domain *dom,
    char *key, size_t len);
/*
 * config_smarthost_for - the smarthost that carries mail of pool to
 * domain: the domain block's, else the pool's; NULL: direct MX delivery.
 */
const struct config_smarthost *config_smarthost_for(const struct config *c, const char *pool,
    const char *domain);
/* First site any of whose mx patterns matches mx_host (case-insensitive glob). */
const struct config_site *config_site_for_mx(const struct config *c, const char *mx_host);
/* Retry delay before attempt n+1 after n failed attempts (n >= 1). */
uint64_t config_retry_delay(const struct config *c, unsigned attempts);

/* Parsers shared with the CLI and tests. Return 0 on success, -1 on bad input. */
int config_parse_duration(const char *s, uint64_t *ms);	/* "90", "5min", "1h", "2d", "500ms" */
int config_parse_rate(const char *s, struct rate *r);
/* config_cap_for - the first campaign (tenant 0) or tenant (1) block whose
 * pattern matches name, or NULL. */
const struct config_cap *config_cap_for(const struct config *c, int tenant, const char *name);	/* "3000/h", "60/min", "5/s", "1000/day" */
int config_parse_size(const char *s, uint64_t *bytes);	/* "50M", "512k", "1G", "1000" */

#endif
