/*
 * test_config.c - configuration: the contract's example loads verbatim with
 * the right values; built-in defaults; duration/rate/redis-url parsers;
 * every validation error with its exact file:line; errors are collected;
 * lookups (site by MX, domain, merged limits, retry delays); the shipped
 * pools/volley.conf loads; dkim blocks (keys parsed at load, every
 * validation error with file:line); smarthost blocks (defaults by port,
 * routing from pools and domains, every error with file:line, the password
 * never in an error).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tmpdir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "config.h"
#include "tls.h"
#include "util.h"

/* The configuration example of the README's contract section, verbatim. */
static const char contract_example[] =
"instance = \"mta1\";                        # consumer name; default host:pid\n"
"redis { url = \"redis://127.0.0.1:6379/0\"; prefix = \"volley:\"; }\n"
"dns   { servers = [\"127.0.0.1:5353\"]; }   # default: /etc/resolv.conf\n"
"smtp {\n"
"  port = 25;                              # destination port for MX delivery\n"
"  ehlo = \"mta.example.com\";\n"
"  max_sessions = 20000;                   # global cap on outbound sessions\n"
"  retry = [1min, 5min, 15min, 30min, 1h, 2h, 4h];  # last one repeats\n"
"  max_age = 2d;                           # then: expired\n"
"}\n"
"pool \"marketing\" {\n"
"  ip \"127.0.0.2\" { ehlo = \"m1.example.com\"; warmup = \"standard\"; }\n"
"  ip \"127.0.0.3\" { ehlo = \"m2.example.com\"; }\n"
"}\n"
"site \"gmail\"        { mx = [\"*.google.com\"]; max_connections = 20;\n"
"                      max_msgs_per_connection = 100; max_rate = \"3000/h\"; }\n"
"domain \"example.net\" { max_connections = 2; max_rate = \"60/min\"; }\n"
"warmup \"standard\"   { daily = [50, 100, 200, 400, 800, 1600]; }\n";

static struct config *
load_str(const char *text, char **errors)
{
	*errors = NULL;
	return config_load_string(text, strlen(text), "t.conf", errors);
}

static void
test_contract_example(void **state)
{
	char *errors = NULL;
	struct config *c = load_str(contract_example, &errors);
	static const uint64_t retry[] = { 60000, 300000, 900000, 1800000, 3600000, 7200000, 14400000 };

	if (c == NULL)
		fail_msg("%s", errors);
	assert_string_equal(c->instance, "mta1");
	assert_string_equal(c->redis_url, "redis://127.0.0.1:6379/0");
	assert_string_equal(c->redis_host, "127.0.0.1");
	assert_int_equal(c->redis_port, 6379);
	assert_int_equal(c->redis_db, 0);
	assert_null(c->redis_unix);
	assert_null(c->redis_password);
	assert_string_equal(c->prefix, "volley:");
	assert_int_equal(c->ndns_servers, 1);
	assert_string_equal(c->dns_servers[0], "127.0.0.1:5353");
	assert_int_equal(c->port, 25);
	assert_string_equal(c->ehlo, "mta.example.com");
	assert_int_equal(c->max_sessions, 20000);
	assert_int_equal(c->nretry, 7);
	for (size_t i = 0; i < 7; i++)
		assert_int_equal(c->retry_ms[i], retry[i]);
	assert_int_equal(c->max_age_ms, 2ull * 86400 * 1000);

	/* pools: marketing, then the implicit default */
	assert_int_equal(c->npools, 2);
	const struct config_pool *p = config_pool(c, "marketing");

	assert_non_null(p);
	assert_int_equal(p->nips, 2);
	assert_string_equal(p->ips[0].addr, "127.0.0.2");
	assert_string_equal(p->ips[0].ehlo, "m1.example.com");
	assert_string_equal(p->ips[0].warmup, "standard");
	assert_null(p->ips[0].warmup_start);
	assert_string_equal(p->ips[1].addr, "127.0.0.3");
	assert_string_equal(p->ips[1].ehlo, "m2.example.com");
	assert_null(p->ips[1].warmup);
	p = config_pool(c, "default");
	assert_non_null(p);
	assert_int_equal(p->nips, 0);

	assert_int_equal(c->nsites, 1);
	assert_string_equal(c->sites[0].name, "gmail");
	assert_int_equal(c->sites[0].nmx, 1);
	assert_string_equal(c->sites[0].mx[0], "*.google.com");
	assert_int_equal(c->sites[0].lim.max_connections, 20);
	assert_int_equal(c->sites[0].lim.max_msgs_per_connection, 100);
	assert_int_equal(c->sites[0].lim.max_rate.count, 3000);
	assert_int_equal(c->sites[0].lim.max_rate.per_ms, 3600000);

	assert_int_equal(c->ndomains, 1);
	assert_string_equal(c->domains[0].name, "example.net");
	assert_int_equal(c->domains[0].lim.max_connections, 2);
	assert_int_equal(c->domains[0].lim.max_msgs_per_connection, 0);
	assert_int_equal(c->domains[0].lim.max_rate.count, 60);
	assert_int_equal(c->domains[0].lim.max_rate.per_ms, 60000);

	assert_int_equal(c->nwarmups, 1);
	assert_string_equal(c->warmups[0].name, "standard");
	assert_int_equal(c->warmups[0].ndaily, 6);
	assert_int_equal(c->warmups[0].daily[0], 50);
	assert_int_equal(c->warmups[0].daily[5], 1600);

	/* engine settings not in the example keep their defaults */
	assert_int_equal(c->read_batch, 256);
	assert_int_equal(c->t_dot_ms, 600000);
	assert_null(c->file);
	config_free(c);
}

/* fleet_max_rate: on site, domain and ip blocks; the domain's wins. */
static void
test_fleet_limits(void **state)
{
	static const char text[] =
	    "site \"g\" { mx = [\"*.g.test\"]; fleet_max_rate = \"20/s\"; }\n"
	    "domain \"a.test\" { fleet_max_rate = \"30/min\"; }\n"
	    "domain \"b.test\" { max_connections = 2; }\n"
	    "pool \"p\" { ip \"127.0.0.2\" { fleet_max_rate = \"100/h\"; } }\n";
	char *errors = NULL, key[300];
	struct config *c = load_str(text, &errors);
	struct rate r;

	assert_non_null(c);
	assert_null(errors);
	assert_int_equal(c->pools[0].ips[0].fleet_max_rate.count, 100);
	assert_int_equal(c->pools[0].ips[0].fleet_max_rate.per_ms, 3600000);
	r = config_fleet_for(&c->sites[0], &c->domains[0], key, sizeof key);
	assert_int_equal(r.count, 30);
	assert_string_equal(key, "domain:a.test");
	r = config_fleet_for(&c->sites[0], &c->domains[1], key, sizeof key);
	assert_int_equal(r.count, 20);
	assert_int_equal(r.per_ms, 1000);
	assert_string_equal(key, "site:g");
	r = config_fleet_for(NULL, &c->domains[1], key, sizeof key);
	assert_int_equal(r.count, 0);
	assert_string_equal(key, "");
	config_free(c);
}

static void
test_defaults(void **state)
{
	struct config *c = config_default();
	char host[256], inst[300];

	assert_non_null(c);
	assert_null(c->file);
	gethostname(host, sizeof host);
	host[255] = '\0';
	snprintf(inst, sizeof inst, "%s:%d", host, (int)getpid());
	assert_string_equal(c->instance, inst);
	assert_string_equal(c->ehlo, host);
	assert_string_equal(c->redis_host, "127.0.0.1");
	assert_int_equal(c->redis_port, 6379);
	assert_int_equal(c->redis_db, 0);
	assert_string_equal(c->prefix, "volley:");
	assert_int_equal(c->read_batch, 256);
	assert_int_equal(c->lease_ms, 300000);
	assert_int_equal(c->events_maxlen, 1000000);
	assert_int_equal(c->max_deliveries, 10);
	assert_int_equal(c->max_message_size, 50ull << 20);
	assert_int_equal(c->bdat_threshold, 1ull << 20);
	assert_int_equal(c->bdat_pipeline, 128 * 1024);
	assert_int_equal(c->max_ready_bytes, 512ull << 20);
	assert_int_equal(c->dns_allow_private, 0);
	assert_int_equal(c->t_transaction_ms, 1800000);
	assert_null(c->redis_user);
	assert_string_equal(c->redis_url_safe, "redis://127.0.0.1:6379/0");
	assert_int_equal(c->ndns_servers, 0);
	assert_int_equal(c->dns_timeout_ms, 5000);
	assert_int_equal(c->dns_min_ttl_ms, 5000);
	assert_int_equal(c->dns_max_ttl_ms, 3600000);
	assert_int_equal(c->port, 25);
	assert_int_equal(c->max_sessions, 20000);
	assert_int_equal(c->max_ready, 10000);
	assert_int_equal(c->nretry, 7);
	assert_int_equal(c->retry_ms[0], 60000);
	assert_int_equal(c->retry_ms[6], 4 * 3600000);
	assert_int_equal(c->max_age_ms, 172800000);
	assert_string_equal(c->id_header, "X-Volley-Id");
	assert_null(c->return_path);
	assert_int_equal(c->idle_ms, 5000);
	assert_int_equal(c->t_connect_ms, 30000);
	assert_int_equal(c->t_greeting_ms, 300000);
	assert_int_equal(c->t_ehlo_ms, 300000);
	assert_int_equal(c->t_mail_ms, 300000);
	assert_int_equal(c->t_rcpt_ms, 300000);
	assert_int_equal(c->t_data_ms, 120000);
	assert_int_equal(c->t_block_ms, 180000);
	assert_int_equal(c->t_dot_ms, 600000);
	assert_int_equal(c->defaults.max_connections, 20);
	assert_int_equal(c->defaults.max_msgs_per_connection, 100);
	assert_int_equal(c->defaults.max_rate.count, 0);
	assert_int_equal(c->defaults.max_conn_rate.count, 0);
	assert_int_equal(c->max_rate_per_ip.count, 0);
	assert_int_equal(c->shaping.initial_connections, 5);
	assert_int_equal(c->shaping.decrease, 50);
	assert_int_equal(c->shaping.decrease_every_ms, 30000);
	assert_int_equal(c->shaping.rate_step, 10);
	assert_int_equal(c->shaping.rate_step_every_ms, 60000);
	assert_int_equal(c->shaping.min_rate.count, 1);
	assert_int_equal(c->shaping.min_rate.per_ms, 60000);
	assert_int_equal(c->shaping.burst, 3);
	assert_int_equal(c->shaping.close_ms, 30000);
	assert_int_equal(c->shaping.max_close_ms, 3600000);
	assert_int_equal(c->shaping.suspend_after, 3);
	assert_int_equal(c->shaping.suspend_window_ms, 600000);
	assert_int_equal(c->shaping.suspend_ms, 1800000);
	assert_int_equal(c->shaping.resume_spread_ms, 60000);
	assert_int_equal(c->shaping.warmup_burst, 2);
	assert_null(c->classify_rules);
	assert_int_equal(c->npools, 1);
	assert_string_equal(c->pools[0].name, "default");
	assert_int_equal(c->pools[0].nips, 0);
	assert_int_equal(c->pools[0].overflow, 1);
	assert_int_equal(c->nsites, 0);
	assert_null(c->inbound_listen);
	assert_int_equal(c->inbound_max_size, 10ull * 1024 * 1024);
	assert_int_equal(c->inbound_max_sessions, 100);
	assert_int_equal(c->inbound_timeout_ms, 300000);
	assert_int_equal(c->inbound_data_timeout_ms, 600000);
	assert_null(c->inbound_tls_cert);
	config_free(c);

	/* an empty file is the defaults too */
	char *errors = NULL;

	c = load_str("", &errors);
	assert_non_null(c);
	assert_int_equal(c->npools, 1);
	assert_int_equal(c->port, 25);
	config_free(c);
}

static void
test_parse_duration(void **state)
{
	static const struct { const char *in; int rc; uint64_t ms; } cases[] = {
		{ "90", 0, 90000 }, { "0", 0, 0 }, { "500ms", 0, 500 }, { "30s", 0, 30000 },
		{ "5min", 0, 300000 }, { "5m", 0, 300000 }, { "1h", 0, 3600000 },
		{ "2d", 0, 172800000 }, { "1w", 0, 604800000 }, { "1.5h", 0, 5400000 },
		{ "0.25s", 0, 250 }, { "10sec", 0, 10000 },
		{ "", -1, 0 }, { "-5s", -1, 0 }, { "5 min", -1, 0 }, { "5x", -1, 0 },
		{ "min", -1, 0 }, { "1.s", -1, 0 }, { "99999999999999999999", -1, 0 },
		{ "11y", -1, 0 }, { "5000w", -1, 0 }, { "5MIN", -1, 0 }, { ".5s", -1, 0 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint64_t ms = 12345;
		int rc = config_parse_duration(cases[i].in, &ms);

		if (rc != cases[i].rc)
			fail_msg("'%s': rc %d want %d", cases[i].in, rc, cases[i].rc);
		if (rc == 0 && ms != cases[i].ms)
			fail_msg("'%s': %llu want %llu", cases[i].in, (unsigned long long)ms,
			    (unsigned long long)cases[i].ms);
	}
}

static void
test_parse_rate(void **state)
{
	static const struct { const char *in; int rc; uint32_t count; uint64_t per; } cases[] = {
		{ "3000/h", 0, 3000, 3600000 }, { "60/min", 0, 60, 60000 }, { "5/s", 0, 5, 1000 },
		{ "1000/day", 0, 1000, 86400000 }, { "10/m", 0, 10, 60000 }, { "7/hour", 0, 7, 3600000 },
		{ "2/d", 0, 2, 86400000 }, { "unlimited", 0, 0, 0 }, { "0", 0, 0, 0 },
		{ "0/h", -1, 0, 0 }, { "5", -1, 0, 0 }, { "5/", -1, 0, 0 }, { "/h", -1, 0, 0 },
		{ "5/week", -1, 0, 0 }, { "-5/h", -1, 0, 0 }, { "5 /h", -1, 0, 0 },
		{ "99999999999/h", -1, 0, 0 }, { "", -1, 0, 0 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct rate r = { 99, 99 };
		int rc = config_parse_rate(cases[i].in, &r);

		if (rc != cases[i].rc)
			fail_msg("'%s': rc %d want %d", cases[i].in, rc, cases[i].rc);
		if (rc == 0 && (r.count != cases[i].count || r.per_ms != cases[i].per))
			fail_msg("'%s': %u/%llu", cases[i].in, r.count, (unsigned long long)r.per_ms);
	}
}

static void
test_redis_urls(void **state)
{
	static const struct {
		const char *url, *host, *unix_path, *pass, *user, *safe;
		int port, db;
	} cases[] = {
		{ "redis://127.0.0.1:6379/0", "127.0.0.1", NULL, NULL, NULL, "redis://127.0.0.1:6379/0", 6379, 0 },
		{ "redis://10.1.2.3:7000/5", "10.1.2.3", NULL, NULL, NULL, "redis://10.1.2.3:7000/5", 7000, 5 },
		{ "redis://localhost", "localhost", NULL, NULL, NULL, "redis://localhost", 6379, 0 },
		{ "redis://:s3cret@redis.example:6380/2", "redis.example", NULL, "s3cret", NULL,
		  "redis://:***@redis.example:6380/2", 6380, 2 },
		{ "redis://user:pw@h/1", "h", NULL, "pw", "user", "redis://user:***@h/1", 6379, 1 },
		{ "redis://[::1]:6390/3", "::1", NULL, NULL, NULL, "redis://[::1]:6390/3", 6390, 3 },
		{ "unix:/run/redis/redis.sock", NULL, "/run/redis/redis.sock", NULL, NULL,
		  "unix:/run/redis/redis.sock", 0, 0 },
		{ "unix:///tmp/r.sock", NULL, "/tmp/r.sock", NULL, NULL, "unix:///tmp/r.sock", 0, 0 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char text[256], *errors = NULL;
		struct config *c;

		snprintf(text, sizeof text, "redis { url = \"%s\"; }", cases[i].url);
		c = load_str(text, &errors);
		if (c == NULL)
			fail_msg("%s: %s", cases[i].url, errors);
		if (cases[i].host)
			assert_string_equal(c->redis_host, cases[i].host);
		else
			assert_null(c->redis_host);
		if (cases[i].unix_path)
			assert_string_equal(c->redis_unix, cases[i].unix_path);
		else
			assert_null(c->redis_unix);
		if (cases[i].pass)
			assert_string_equal(c->redis_password, cases[i].pass);
		else
			assert_null(c->redis_password);
		if (cases[i].user)
			assert_string_equal(c->redis_user, cases[i].user);
		else
			assert_null(c->redis_user);
		assert_string_equal(c->redis_url_safe, cases[i].safe);
		assert_int_equal(c->redis_port, cases[i].port);
		assert_int_equal(c->redis_db, cases[i].db);
		config_free(c);
	}
}

/* Each invalid config yields exactly these error lines. */
static void
test_validation_errors(void **state)
{
	static const struct { const char *in, *errors; } cases[] = {
		{ "smtp {\n  prot = 25;\n}",
		  "t.conf:2: unknown setting 'smtp.prot' (did you mean 'port'?)\n" },
		{ "bogus = 1", "t.conf:1: unknown setting 'bogus'\n" },
		{ "smtp { port = 0 }", "t.conf:1: smtp.port: '0' is not a whole number in 1..65535\n" },
		{ "smtp { port = -25 }", "t.conf:1: smtp.port: '-25' is not a whole number in 1..65535\n" },
		{ "smtp { port = [25] }", "t.conf:1: smtp.port: expected a single value, got a list\n" },
		{ "smtp = 5", "t.conf:1: smtp: expected smtp { ... }, got a value\n" },
		{ "smtp {\n max_sessions = 0\n}",
		  "t.conf:2: smtp.max_sessions: '0' is not a whole number in 1..10000000\n" },
		{ "smtp {\n\n retry = [];\n}", "t.conf:3: smtp.retry: the list is empty\n" },
		{ "smtp { retry = [1min, soon, 0s] }",
		  "t.conf:1: smtp.retry: 'soon' is not a duration (e.g. 30s, 5min, 1h, 2d)\n"
		  "t.conf:1: smtp.retry: 0s is too short (at least 1000ms)\n" },
		/* "2 days" is the value 2 then a key "days" without value */
		{ "smtp { max_age = 2 days }", "t.conf:1: missing value for 'days'\n" },
		{ "smtp { max_age = 2x }",
		  "t.conf:1: smtp.max_age: '2x' is not a duration (e.g. 30s, 5min, 1h, 2d)\n" },
		{ "smtp { timeouts { connect = 0 } }",
		  "t.conf:1: smtp.timeouts.connect: 0 is out of range (1ms..3600000ms)\n" },
		{ "smtp { bdat_pipeline = 2M }",
		  "t.conf:1: smtp.bdat_pipeline: 2M is out of range (0..1048576 bytes)\n" },
		{ "smtp { timeouts { conect = 5s } }",
		  "t.conf:1: unknown setting 'smtp.timeouts.conect' (did you mean 'connect'?)\n" },
		{ "site \"g\" { mx = [\"*.g.test\"]; fleet_max_rate = \"5/week\" }",
		  "t.conf:1: site \"g\": fleet_max_rate: '5/week' is not a rate (N/s, N/min, N/h or N/day, N >= 1)\n" },
		{ "pool \"p\" { ip \"127.0.0.2\" { fleet_max_rate = \"0/s\" } }",
		  "t.conf:1: pool \"p\" ip \"127.0.0.2\": fleet_max_rate: '0/s' is not a rate (N/s, N/min, N/h or N/day, N >= 1)\n" },
		{ "smtp { max_rate = \"5/week\" }",
		  "t.conf:1: smtp.max_rate: '5/week' is not a rate (N/s, N/min, N/h or N/day, N >= 1)\n" },
		{ "smtp { ehlo = \"bad host\" }", "t.conf:1: smtp.ehlo: 'bad host' not a host name\n" },
		{ "smtp { id_header = \"X-Id:\" }",
		  "t.conf:1: smtp.id_header: 'X-Id:' not a header field name\n" },
		{ "smtp { return_path = \"bounces\" }",
		  "t.conf:1: smtp.return_path: 'bounces' not an address (local@domain, {id} is replaced by the job id)\n" },
		{ "smtp {\n port = 25\n port = 26\n}", "t.conf:3: smtp.port is already set at t.conf:2\n" },
		{ "redis { url = \"http://x\" }",
		  "t.conf:1: redis.url: 'http://x' must start with redis:// or unix:\n" },
		{ "redis { url = \"redis://h:99999/0\" }",
		  "t.conf:1: redis.url: 'redis://h:99999/0' bad port (1..65535)\n" },
		{ "redis { url = \"redis://h/x\" }", "t.conf:1: redis.url: 'redis://h/x' bad database number\n" },
		{ "redis { url = \"unix:relative.sock\" }",
		  "t.conf:1: redis.url: 'unix:relative.sock' unix socket path must be absolute (unix:/path/to/sock)\n" },
		{ "redis { read_batch = 0 }", "t.conf:1: redis.read_batch: '0' is not a whole number in 1..100000\n" },
		{ "dns { servers = [\"8.8.8.8\", \"dns.example\"] }",
		  "t.conf:1: dns.servers: 'dns.example' not an IP address (ADDR or ADDR:PORT)\n" },
		{ "dns { min_ttl = 2h; }", "t.conf:1: dns.min_ttl must not be larger than dns.max_ttl\n" },
		{ "pool \"p\" {\n  ip \"not-an-ip\" { }\n}", "t.conf:2: pool \"p\": 'not-an-ip' is not an IP address\n" },
		{ "pool \"p\" {\n  ip \"127.0.0.2\" { warmup = \"fast\"; }\n}",
		  "t.conf:2: pool \"p\" ip \"127.0.0.2\": warmup \"fast\" is not defined\n" },
		{ "pool \"p\" {\n  ip \"127.0.0.2\" { warmup_start = \"yesterday\"; }\n}",
		  "t.conf:2: pool \"p\" ip \"127.0.0.2\": warmup_start: 'yesterday' not a date (YYYY-MM-DD)\n" },
		{ "pool \"p\" {\n  ip \"127.0.0.2\" { ehl = x; }\n}",
		  "t.conf:2: ip \"127.0.0.2\": unknown setting 'ehl' (did you mean 'ehlo'?)\n" },
		{ "pool \"p\" {\n ip = \"::1\"\n ip = \"::1\"\n}", "t.conf:3: pool \"p\": duplicate ip ::1\n" },
		{ "pool \"a\" { }\n\npool \"a\" { }", "t.conf:3: duplicate pool \"a\" (first defined at t.conf:1)\n" },
		{ "pool { }", "t.conf:1: pool: expected pool \"NAME\" { ... }, got a block\n" },
		{ "pool \"p\" { ips = [] }", "t.conf:1: pool \"p\": unknown setting 'ips' (did you mean 'ip'?)\n" },
		{ "site \"g\" { mx = [\"*.g\"] }\nsite \"g\" { mx = [\"*.h\"] }",
		  "t.conf:2: duplicate site \"g\" (first defined at t.conf:1)\n" },
		{ "site \"g\" { max_connections = 5 }", "t.conf:1: site \"g\": needs mx = [\"pattern\", ...]\n" },
		{ "site \"g\" {\n mx = []\n}", "t.conf:2: site \"g\": the mx list is empty\n" },
		{ "site \"g\" {\n mx = [\"*.g\"]\n max_connections = 0\n}",
		  "t.conf:3: site \"g\": max_connections: '0' is not a whole number in 1..1000000\n" },
		{ "site \"g\" {\n mx = [\"*.g\"]\n max_rate = \"0/h\"\n}",
		  "t.conf:3: site \"g\": max_rate: '0/h' is not a rate (N/s, N/min, N/h or N/day, N >= 1)\n" },
		{ "site \"g\" {\n mx = [\"*.g\"]\n max_conn = 1\n}",
		  "t.conf:3: site \"g\": unknown setting 'max_conn'\n" },
		{ "domain \"Example.NET\" { }\ndomain \"example.net\" { }",
		  "t.conf:2: duplicate domain \"example.net\" (first defined at t.conf:1)\n" },
		{ "domain \"a b\" { }", "t.conf:1: domain \"a b\": not a host name\n" },
		{ "warmup \"w\" { }", "t.conf:1: warmup \"w\": needs daily = [N, N, ...]\n" },
		{ "warmup \"w\" {\n daily = [10, 0, x]\n}",
		  "t.conf:2: warmup \"w\": daily: '0' is not a whole number >= 1\n"
		  "t.conf:2: warmup \"w\": daily: 'x' is not a whole number >= 1\n" },
		{ "warmup \"w\" { daily = [] }", "t.conf:1: warmup \"w\": daily: needs 1..4096 entries\n" },
		{ "warmup \"w\" { daily = [1] }\nwarmup \"w\" { daily = [2] }",
		  "t.conf:2: duplicate warmup \"w\" (first defined at t.conf:1)\n" },
		/* shaping settings */
		{ "smtp { max_conn_rate = \"fast\" }",
		  "t.conf:1: smtp.max_conn_rate: 'fast' is not a rate (N/s, N/min, N/h or N/day, N >= 1)\n" },
		{ "site \"g\" {\n mx = [\"*.g\"]\n max_conn_rate = \"5/fortnight\"\n}",
		  "t.conf:3: site \"g\": max_conn_rate: '5/fortnight' is not a rate (N/s, N/min, N/h or N/day, N >= 1)\n" },
		{ "domain \"d.example\" {\n max_con_rate = \"5/s\"\n}",
		  "t.conf:2: domain \"d.example\": unknown setting 'max_con_rate' (did you mean 'max_conn_rate'?)\n" },
		{ "shaping {\n decrease = 100\n}",
		  "t.conf:2: shaping.decrease: '100' is not a whole number in 1..99\n" },
		{ "shaping { burts = 3 }",
		  "t.conf:1: unknown setting 'shaping.burts' (did you mean 'burst'?)\n" },
		{ "shaping {\n min_rate = unlimited\n}",
		  "t.conf:2: shaping.min_rate: a throttled lane needs a floor (N/s, N/min, N/h or N/day)\n" },
		{ "shaping {\n close_time = 2h\n}",
		  "t.conf:2: shaping.close_time must not be larger than shaping.max_close_time\n" },
		{ "shaping = 1", "t.conf:1: shaping: expected shaping { ... }, got a value\n" },
		{ "pool \"p\" {\n overflow = maybe\n}",
		  "t.conf:2: pool \"p\": overflow: 'maybe' is not true or false\n" },
		{ "pool \"p\" {\n overflow = yes\n overflow = no\n}",
		  "t.conf:3: pool \"p\": overflow already set at line 2\n" },
		{ "pool \"p\" {\n  ip \"127.0.0.2\" { weight = 0; }\n}",
		  "t.conf:2: pool \"p\" ip \"127.0.0.2\": weight: '0' is not a whole number in 1..1000\n" },
		{ "pool \"p\" {\n  ip \"127.0.0.2\" { max_rate = \"lots\"; }\n}",
		  "t.conf:2: pool \"p\" ip \"127.0.0.2\": max_rate: 'lots' is not a rate (N/s, N/min, N/h or N/day, N >= 1)\n" },
		{ "warmup \"w\" {\n daily = [1]\n hourly = 5\n}",
		  "t.conf:3: warmup \"w\": hourly: expected a list of messages per hour (one entry per day), got a value\n" },
		{ "warmup \"w\" {\n daily = [1]\n daily = [2]\n}",
		  "t.conf:3: warmup \"w\": daily already set at line 2\n" },
		{ "warmup \"w\" {\n daily = [1]\n site \"nosuch\" { daily = [1] }\n}",
		  "t.conf:3: warmup \"w\": site \"nosuch\" is not defined\n" },
		{ "site \"g\" { mx = [\"*.g\"] }\nwarmup \"w\" {\n daily = [1]\n site \"g\" { hourly = [0] }\n}",
		  "t.conf:4: warmup \"w\" site \"g\": hourly: '0' is not a whole number >= 1\n"
		  "t.conf:4: warmup \"w\" site \"g\": needs daily = [N, N, ...]\n" },
		{ "site \"g\" { mx = [\"*.g\"] }\nwarmup \"w\" {\n daily = [1]\n site \"g\" { daily = [1] }\n site \"g\" { daily = [2] }\n}",
		  "t.conf:5: warmup \"w\": duplicate site \"g\"\n" },
		{ "warmup \"w\" {\n daily = [1]\n site = 5\n}",
		  "t.conf:3: warmup \"w\": expected site \"NAME\" { daily = [...]; }, got a value\n" },
		{ "inbound { listen = \"127.0.0.1\"; domains = [\"b.example\"] }",
		  "t.conf:1: inbound.listen: '127.0.0.1' needs a port (ADDR:PORT)\n" },
		{ "inbound {\n listen = \"127.0.0.1:2526\";\n}",
		  "t.conf:2: inbound: listen is set but domains is empty\n" },
		{ "inbound {\n listen = \"127.0.0.1:2526\"; domains = [\"b.example\"];\n tls_key = \"k.pem\";\n}",
		  "t.conf:3: inbound: tls_cert and tls_key go together\n" },
		{ "inbound {\n max_sessions = 0;\n}",
		  "t.conf:2: inbound.max_sessions: '0' is not a whole number in 1..100000\n" },
		{ "instance = \"\"", "t.conf:1: instance: '' must not be empty\n" },
		/* several errors are all reported, in file order */
		{ "smtp {\n port = 0\n max_age = x\n}\npool \"p\" { ip \"1.2.3\" {} }\nfoo = 1\n",
		  "t.conf:2: smtp.port: '0' is not a whole number in 1..65535\n"
		  "t.conf:3: smtp.max_age: 'x' is not a duration (e.g. 30s, 5min, 1h, 2d)\n"
		  "t.conf:5: pool \"p\": '1.2.3' is not an IP address\n"
		  "t.conf:6: unknown setting 'foo'\n" },
		/* syntax errors stop at the first */
		{ "smtp {\n port = ;\n}", "t.conf:2: missing value for 'port'\n" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *errors = NULL;
		struct config *c = load_str(cases[i].in, &errors);

		if (c != NULL)
			fail_msg("case %zu loaded: %s", i, cases[i].in);
		if (errors == NULL || strcmp(errors, cases[i].errors) != 0)
			fail_msg("case %zu:\ngot:  %swant: %s", i, errors ? errors : "(none)\n",
			    cases[i].errors);
		free(errors);
	}
}

static void
test_accepted_forms(void **state)
{
	const char *in =
	    "smtp {\n"
	    "  retry = 10m\n"
	    "  max_rate = \"100/s\"\n"
	    "  return_path = \"bounces+{id}@bounces.example.com\"\n"
	    "  bdat_threshold = 0\n"
	    "  bdat_pipeline = 64k\n"
	    "  timeouts { connect = 1500ms; dot = 1.5min }\n"
	    "}\n"
	    "pool \"p\" { ip = \"::1\"; ip \"127.0.0.9\" { warmup = \"w\"; warmup_start = \"2024-02-29\" } }\n"
	    "warmup \"w\" { daily = [1, 2] }\n"
	    "site \"S\" { mx = [\"*.Example.COM.\", mx.other.net] }\n"
	    "domain \"Example.ORG.\" { max_msgs_per_connection = 7 }\n"
	    "inbound { listen = \"[::1]:2526\"; domains = \"Bounces.Example.com\"; max_size = 2M;\n"
	    "  max_sessions = 5; timeout = 30s; data_timeout = 1min }\n";
	char *errors = NULL;
	struct config *c = load_str(in, &errors);

	if (c == NULL)
		fail_msg("%s", errors);
	assert_int_equal(c->nretry, 1);
	assert_int_equal(c->retry_ms[0], 600000);
	assert_int_equal(c->defaults.max_rate.count, 100);
	assert_int_equal(c->defaults.max_rate.per_ms, 1000);
	assert_string_equal(c->return_path, "bounces+{id}@bounces.example.com");
	assert_int_equal(c->t_connect_ms, 1500);
	assert_int_equal(c->t_dot_ms, 90000);
	assert_int_equal(c->bdat_threshold, 0);
	assert_int_equal(c->bdat_pipeline, 65536);
	assert_int_equal(c->npools, 2);
	assert_int_equal(c->pools[0].nips, 2);
	assert_string_equal(c->pools[0].ips[0].addr, "::1");
	assert_string_equal(c->pools[0].ips[1].warmup_start, "2024-02-29");
	assert_string_equal(c->sites[0].mx[0], "*.example.com");
	assert_string_equal(c->sites[0].mx[1], "mx.other.net");
	assert_string_equal(c->domains[0].name, "example.org");
	assert_string_equal(c->inbound_listen, "[::1]:2526");
	assert_int_equal(c->ninbound_domains, 1);
	assert_string_equal(c->inbound_domains[0], "bounces.example.com");
	assert_int_equal(c->inbound_max_size, 2ull * 1024 * 1024);
	assert_int_equal(c->inbound_max_sessions, 5);
	assert_int_equal(c->inbound_timeout_ms, 30000);
	assert_int_equal(c->inbound_data_timeout_ms, 60000);
	config_free(c);

	/* the shaping settings */
	in = "smtp { max_conn_rate = \"30/min\"; max_rate_per_ip = \"10000/h\" }\n"
	    "shaping { initial_connections = 2; decrease = 70; rate_step = 5; rate_step_every = 30s;\n"
	    "  min_rate = \"10/h\"; burst = 1; close_time = 1min; max_close_time = 2h;\n"
	    "  suspend_after = 2; suspend_window = 1h; suspend = 4h; resume_spread = 5min;\n"
	    "  warmup_burst = 0 }\n"
	    "pool \"p\" { overflow = false; ip \"127.0.0.9\" { weight = 3; max_rate = \"100/min\"; warmup = \"w\" } }\n"
	    "site \"gmail\" { mx = [\"*.google.com\"]; max_conn_rate = \"10/min\" }\n"
	    "domain \"example.org\" { max_conn_rate = \"1/s\" }\n"
	    "warmup \"w\" { daily = [50, 100]; hourly = [5];\n"
	    "  site \"gmail\" { daily = [10, 20, 40]; hourly = [2, 4] } }\n";
	c = load_str(in, &errors);
	if (c == NULL)
		fail_msg("%s", errors);
	assert_int_equal(c->defaults.max_conn_rate.count, 30);
	assert_int_equal(c->max_rate_per_ip.count, 10000);
	assert_int_equal(c->shaping.initial_connections, 2);
	assert_int_equal(c->shaping.decrease, 70);
	assert_int_equal(c->shaping.rate_step, 5);
	assert_int_equal(c->shaping.rate_step_every_ms, 30000);
	assert_int_equal(c->shaping.min_rate.count, 10);
	assert_int_equal(c->shaping.burst, 1);
	assert_int_equal(c->shaping.close_ms, 60000);
	assert_int_equal(c->shaping.max_close_ms, 7200000);
	assert_int_equal(c->shaping.suspend_after, 2);
	assert_int_equal(c->shaping.suspend_window_ms, 3600000);
	assert_int_equal(c->shaping.suspend_ms, 4 * 3600000);
	assert_int_equal(c->shaping.resume_spread_ms, 300000);
	assert_int_equal(c->shaping.warmup_burst, 0);
	assert_int_equal(c->pools[0].overflow, 0);
	assert_int_equal(c->pools[0].ips[0].weight, 3);
	assert_int_equal(c->pools[0].ips[0].max_rate.count, 100);
	assert_int_equal(c->sites[0].lim.max_conn_rate.count, 10);
	assert_int_equal(c->domains[0].lim.max_conn_rate.count, 1);
	assert_int_equal(c->warmups[0].ndaily, 2);
	assert_int_equal(c->warmups[0].nhourly, 1);
	assert_int_equal(c->warmups[0].hourly[0], 5);
	assert_int_equal(c->warmups[0].nsites, 1);
	assert_string_equal(c->warmups[0].sites[0].site, "gmail");
	assert_int_equal(c->warmups[0].sites[0].ndaily, 3);
	assert_int_equal(c->warmups[0].sites[0].daily[2], 40);
	assert_int_equal(c->warmups[0].sites[0].nhourly, 2);
	/* the limits merge field by field: the domain's conn rate over the site's */
	struct config_limits l = config_limits_for(c, &c->sites[0], &c->domains[0]);
	assert_int_equal(l.max_conn_rate.count, 1);
	l = config_limits_for(c, &c->sites[0], NULL);
	assert_int_equal(l.max_conn_rate.count, 10);
	l = config_limits_for(c, NULL, NULL);
	assert_int_equal(l.max_conn_rate.count, 30);
	/* an ip without weight weighs 1 */
	config_free(c);
	c = load_str("pool \"p\" { ip = \"127.0.0.2\" }", &errors);
	assert_non_null(c);
	assert_int_equal(c->pools[0].ips[0].weight, 1);
	assert_int_equal(c->pools[0].overflow, 1);
	config_free(c);
}

static void
test_lookups(void **state)
{
	const char *in =
	    "smtp { max_connections = 9; max_msgs_per_connection = 50; max_rate = \"10/s\"; "
	    "       retry = [1min, 10min, 1h] }\n"
	    "site \"gmail\" { mx = [\"*.google.com\", \"*.googlemail.com\"]; max_connections = 4; }\n"
	    "site \"exact\" { mx = [\"mx.example.com\"]; max_rate = \"5/min\"; }\n"
	    "domain \"example.net\" { max_connections = 2; max_msgs_per_connection = 3; }\n";
	char *errors = NULL;
	struct config *c = load_str(in, &errors);
	const struct config_site *s;
	const struct config_domain *d;
	struct config_limits l;

	if (c == NULL)
		fail_msg("%s", errors);
	static const struct { const char *mx, *site; } mxs[] = {
		{ "gmail-smtp-in.l.google.com", "gmail" },
		{ "ALT1.GMAIL-SMTP-IN.L.GOOGLE.COM.", "gmail" },
		{ "gmr-smtp-in.l.googlemail.com", "gmail" },
		{ "google.com", NULL },
		{ "mx.example.com.", "exact" },
		{ "mx2.example.com", NULL },
		{ "", NULL },
		{ ".", NULL },
	};
	for (size_t i = 0; i < sizeof mxs / sizeof mxs[0]; i++) {
		s = config_site_for_mx(c, mxs[i].mx);
		if (mxs[i].site == NULL && s != NULL)
			fail_msg("%s matched %s", mxs[i].mx, s->name);
		if (mxs[i].site != NULL && (s == NULL || strcmp(s->name, mxs[i].site) != 0))
			fail_msg("%s: want %s", mxs[i].mx, mxs[i].site);
	}
	assert_null(config_site_for_mx(c, NULL));

	d = config_domain_find(c, "EXAMPLE.net.");
	assert_non_null(d);
	assert_null(config_domain_find(c, "example.org"));

	/* nothing given: the smtp defaults */
	l = config_limits_for(c, NULL, NULL);
	assert_int_equal(l.max_connections, 9);
	assert_int_equal(l.max_msgs_per_connection, 50);
	assert_int_equal(l.max_rate.count, 10);
	/* site overrides what it sets */
	s = config_site_for_mx(c, "x.google.com");
	l = config_limits_for(c, s, NULL);
	assert_int_equal(l.max_connections, 4);
	assert_int_equal(l.max_msgs_per_connection, 50);
	assert_int_equal(l.max_rate.count, 10);
	/* domain is more specific than site */
	l = config_limits_for(c, s, d);
	assert_int_equal(l.max_connections, 2);
	assert_int_equal(l.max_msgs_per_connection, 3);
	assert_int_equal(l.max_rate.count, 10);
	s = config_site_for_mx(c, "mx.example.com");
	l = config_limits_for(c, s, d);
	assert_int_equal(l.max_rate.count, 5);
	assert_int_equal(l.max_rate.per_ms, 60000);

	/* retry: attempt n uses entry n-1, the last one repeats */
	assert_int_equal(config_retry_delay(c, 0), 60000);
	assert_int_equal(config_retry_delay(c, 1), 60000);
	assert_int_equal(config_retry_delay(c, 2), 600000);
	assert_int_equal(config_retry_delay(c, 3), 3600000);
	assert_int_equal(config_retry_delay(c, 4), 3600000);
	assert_int_equal(config_retry_delay(c, 1000), 3600000);
	assert_null(config_pool(c, "nope"));
	config_free(c);
}

/* --- files ------------------------------------------------------------ */

static int
setup_dir(void **state)
{
	static const char *const subdirs[] = { "pools", NULL };

	return tmpdir_make("volley-config", subdirs);
}

static int
teardown_dir(void **state)
{
	return tmpdir_remove();
}

static void
test_file_errors_name_the_file(void **state)
{
	char path[256], want[1024], *errors = NULL;
	struct config *c;

	write_file("pools/a.conf", "pool \"x\" {\n  ip \"127.0.0.2\" { warmup = \"later\"; }\n}\n");
	write_file("pools/b.conf", "warmup \"later\" { daily = [5] }\nsite \"s\" {\n  mx = [\"*.s\"];\n  max_rate = fast;\n}\n");
	write_file("main.conf", "smtp { port = 2525 }\n.include \"pools/*.conf\"\n");
	snprintf(path, sizeof path, "%s/main.conf", tmpdir);
	c = config_load(path, &errors);
	assert_null(c);
	/* the warm-up defined in a later file is found; the bad rate is reported in b.conf */
	snprintf(want, sizeof want,
	    "%s/pools/b.conf:4: site \"s\": max_rate: 'fast' is not a rate (N/s, N/min, N/h or N/day, N >= 1)\n",
	    tmpdir);
	assert_string_equal(errors, want);
	free(errors);

	write_file("pools/b.conf", "warmup \"later\" { daily = [5] }\n");
	errors = NULL;
	c = config_load(path, &errors);
	if (c == NULL)
		fail_msg("%s", errors);
	assert_string_equal(c->file, path);
	assert_int_equal(c->port, 2525);
	assert_string_equal(config_pool(c, "x")->ips[0].warmup, "later");
	config_free(c);

	/* a missing file */
	snprintf(path, sizeof path, "%s/none.conf", tmpdir);
	errors = NULL;
	assert_null(config_load(path, &errors));
	snprintf(want, sizeof want, "cannot open %s/none.conf: No such file or directory\n", tmpdir);
	assert_string_equal(errors, want);
	free(errors);
}

static void
test_classify_rules_path(void **state)
{
	char path[256], want[1024], *errors = NULL;
	struct config *c;

	write_file("rules.txt", "# custom\nmy-rule  spam_content  text=\"naughty\"\n");
	write_file("r.conf", "smtp {\n  classify_rules = \"rules.txt\";\n}\n");
	snprintf(path, sizeof path, "%s/r.conf", tmpdir);
	c = config_load(path, &errors);
	if (c == NULL)
		fail_msg("%s", errors);
	snprintf(want, sizeof want, "%s/rules.txt", tmpdir);
	assert_string_equal(c->classify_rules, want);
	config_free(c);

	/* a bad rule file is a config error naming both places */
	write_file("rules.txt", "ok-rule spam_content text=x\nbad-rule no_such_class\n");
	errors = NULL;
	assert_null(config_load(path, &errors));
	snprintf(want, sizeof want,
	    "%s/r.conf:2: smtp.classify_rules: %s/rules.txt:2: unknown class 'no_such_class'\n",
	    tmpdir, tmpdir);
	assert_string_equal(errors, want);
	free(errors);
}

static void
test_shipped_pools(void **state)
{
	char *errors = NULL;
	struct config *c = config_load("pools/volley.conf", &errors);
	const struct config_site *s;

	if (c == NULL)
		fail_msg("pools/volley.conf: %s", errors);
	assert_non_null(config_pool(c, "default"));
	s = config_site_for_mx(c, "gmail-smtp-in.l.google.com.");
	assert_non_null(s);
	assert_string_equal(s->name, "gmail");
	s = config_site_for_mx(c, "mta7.am0.yahoodns.net");
	assert_non_null(s);
	assert_string_equal(s->name, "yahoo");
	s = config_site_for_mx(c, "example-com.mail.protection.outlook.com");
	assert_non_null(s);
	assert_string_equal(s->name, "outlook");
	s = config_site_for_mx(c, "mx01.mail.icloud.com");
	assert_non_null(s);
	assert_string_equal(s->name, "icloud");
	assert_null(config_site_for_mx(c, "mx.example.org"));
	int have_standard = 0, have_conservative = 0;

	for (size_t i = 0; i < c->nwarmups; i++) {
		if (strcmp(c->warmups[i].name, "standard") == 0 && c->warmups[i].ndaily == 30)
			have_standard = 1;
		if (strcmp(c->warmups[i].name, "conservative") == 0)
			have_conservative = 1;
	}
	assert_true(have_standard);
	assert_true(have_conservative);
	/* the standard ramp has its own for Gmail and Microsoft, and the
	 * shipped shaping block is the defaults */
	for (size_t i = 0; i < c->nwarmups; i++) {
		if (strcmp(c->warmups[i].name, "standard") != 0)
			continue;
		assert_int_equal(c->warmups[i].nsites, 2);
		assert_string_equal(c->warmups[i].sites[0].site, "gmail");
		assert_string_equal(c->warmups[i].sites[1].site, "outlook");
		assert_int_equal(c->warmups[i].sites[0].daily[0], 20);
	}
	struct config *d = config_default();

	const struct config_shaping *x = &c->shaping, *y = &d->shaping;

	assert_int_equal(x->initial_connections, y->initial_connections);
	assert_int_equal(x->decrease, y->decrease);
	assert_int_equal(x->decrease_every_ms, y->decrease_every_ms);
	assert_int_equal(x->rate_step, y->rate_step);
	assert_int_equal(x->rate_step_every_ms, y->rate_step_every_ms);
	assert_int_equal(x->min_rate.count, y->min_rate.count);
	assert_int_equal(x->min_rate.per_ms, y->min_rate.per_ms);
	assert_int_equal(x->burst, y->burst);
	assert_int_equal(x->close_ms, y->close_ms);
	assert_int_equal(x->max_close_ms, y->max_close_ms);
	assert_int_equal(x->suspend_after, y->suspend_after);
	assert_int_equal(x->suspend_window_ms, y->suspend_window_ms);
	assert_int_equal(x->suspend_ms, y->suspend_ms);
	assert_int_equal(x->resume_spread_ms, y->resume_spread_ms);
	assert_int_equal(x->warmup_burst, y->warmup_burst);
	assert_int_equal(c->max_rate_per_ip.count, 0);
	config_free(d);
	assert_int_equal(c->nretry, 7);
	config_free(c);
}

/* write a fresh private key of type (e.g. "ED25519", or "RSA" with bits) as PEM to rel */
static void
write_key(const char *rel, const char *type, size_t bits)
{
	EVP_PKEY *pk = strcmp(type, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits) :
	    EVP_PKEY_Q_keygen(NULL, NULL, type);
	char path[256];
	FILE *f;

	assert_non_null(pk);
	snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	EVP_PKEY_free(pk);
}

static void
test_dkim_blocks(void **state)
{
	char path[256], *errors = NULL;
	struct config *c;

	write_key("rsa.pem", "RSA", 1024);
	write_key("ed.pem", "ED25519", 0);
	write_file("dkim.conf",
	    "dkim \"Example.COM.\" {\n"
	    "  selector = [\"rsa1\", \"ed1\"];\n"
	    "  key = [\"rsa.pem\", \"ed.pem\"];   # relative to this file\n"
	    "  algorithm = [\"rsa-sha256\", \"ed25519-sha256\"];\n"
	    "  headers = [\"From\", \"To\", \"Subject\"];\n"
	    "  subdomains = true;\n"
	    "}\n"
	    "dkim \"esp.example\" { selector = \"s.x-1\"; key = \"ed.pem\"; default = yes;\n"
	    "  canonicalization = \"simple/relaxed\"; }\n");
	snprintf(path, sizeof path, "%s/dkim.conf", tmpdir);
	c = config_load(path, &errors);
	if (c == NULL)
		fail_msg("%s", errors);
	assert_int_equal(c->ndkim, 2);
	assert_string_equal(c->dkim[0].domain, "example.com");
	assert_int_equal(c->dkim[0].nkeys, 2);
	assert_string_equal(c->dkim[0].keys[0].selector, "rsa1");
	assert_int_equal(dkim_key_alg(c->dkim[0].keys[0].key), DKIM_RSA_SHA256);
	assert_string_equal(c->dkim[0].keys[1].selector, "ed1");
	assert_int_equal(dkim_key_alg(c->dkim[0].keys[1].key), DKIM_ED25519_SHA256);
	assert_int_equal(c->dkim[0].nheaders, 3);
	assert_string_equal(c->dkim[0].headers[0], "from");
	assert_string_equal(c->dkim[0].headers[2], "subject");
	assert_true(c->dkim[0].subdomains);
	assert_false(c->dkim[0].is_default);
	assert_int_equal(c->dkim[0].hcanon, DKIM_CANON_RELAXED);
	assert_int_equal(c->dkim[0].bcanon, DKIM_CANON_RELAXED);
	assert_string_equal(c->dkim[1].domain, "esp.example");
	assert_int_equal(c->dkim[1].nkeys, 1);
	assert_int_equal(dkim_key_alg(c->dkim[1].keys[0].key), DKIM_ED25519_SHA256);
	assert_null(c->dkim[1].headers);
	assert_true(c->dkim[1].is_default);
	assert_int_equal(c->dkim[1].hcanon, DKIM_CANON_SIMPLE);
	assert_int_equal(c->dkim[1].bcanon, DKIM_CANON_RELAXED);
	assert_ptr_equal(dkim_signer_select(c->dkim, c->ndkim, "news.example.com"), &c->dkim[0]);
	assert_ptr_equal(dkim_signer_select(c->dkim, c->ndkim, "example.net"), &c->dkim[1]);
	config_free(c);

	/* no dkim block: nothing signs */
	c = config_default();
	assert_int_equal(c->ndkim, 0);
	config_free(c);

	static const struct { const char *in, *errors; } cases[] = {
		{ "dkim \"example.com\" {\n selector = \"s1\";\n}",
		  "t.conf:1: dkim \"example.com\": needs key = \"/path/to/key.pem\"\n" },
		{ "dkim \"example.com\" { key = \"TMP/ed.pem\" }",
		  "t.conf:1: dkim \"example.com\": needs selector = \"NAME\"\n" },
		{ "dkim \"example.com\" {\n selector = \"s1\";\n key = \"TMP/none.pem\";\n}",
		  "t.conf:3: dkim \"example.com\": key \"TMP/none.pem\": cannot open the key file: "
		  "No such file or directory\n" },
		{ "dkim \"example.com\" { selector = s1; key = \"TMP/ed.pem\"; algorithm = rsa-sha256 }",
		  "t.conf:1: dkim \"example.com\": key \"TMP/ed.pem\": an Ed25519 key cannot sign rsa-sha256\n" },
		{ "dkim \"example.com\" { selector = s1; key = \"TMP/dkim.conf\" }",
		  "t.conf:1: dkim \"example.com\": key \"TMP/dkim.conf\": not a private key (PEM, or the "
		  "base64 32-byte seed of an Ed25519 key)\n" },
		{ "dkim \"example.com\" {\n selector = s1;\n key = [\"TMP/rsa.pem\", \"TMP/ed.pem\"] }",
		  "t.conf:2: dkim \"example.com\": 2 keys but 1 selector (one selector per key)\n" },
		{ "dkim \"example.com\" { selector = s1; key = \"TMP/rsa.pem\";\n algorithm = [rsa-sha256, ed25519-sha256] }",
		  "t.conf:2: dkim \"example.com\": 1 key but 2 algorithms (one algorithm per key)\n" },
		{ "dkim \"example.com\" { selector = s1; key = \"TMP/rsa.pem\"; algorithm = rsa-sha1 }",
		  "t.conf:1: dkim \"example.com\": algorithm: 'rsa-sha1' is not rsa-sha256 or ed25519-sha256\n" },
		{ "dkim \"example.com\" { selector = [a, b]; key = [\"TMP/rsa.pem\", \"TMP/rsa.pem\"] }",
		  "t.conf:1: dkim \"example.com\": two keys for rsa-sha256 (one key per algorithm)\n" },
		{ "dkim \"example.com\" { selector = [a, b, c]; key = [\"TMP/rsa.pem\", \"TMP/ed.pem\", \"TMP/ed.pem\"] }",
		  "t.conf:1: dkim \"example.com\": at most 2 keys (one per algorithm)\n" },
		{ "dkim \"example.com\" { selector = s1; key = \"TMP/ed.pem\";\n headers = [To, Subject] }",
		  "t.conf:2: dkim \"example.com\": headers must include From (RFC 6376 5.4)\n" },
		{ "dkim \"example.com\" { selector = s1; key = \"TMP/ed.pem\";\n headers = [From, x-volley-id] }",
		  "t.conf:2: dkim \"example.com\": headers: X-Volley-Id is the per-job id header "
		  "(smtp.id_header) and is never signed\n" },
		{ "dkim \"example.com\" { selector = s1; key = \"TMP/ed.pem\"; headers = [From, \"To:\"] }",
		  "t.conf:1: dkim \"example.com\": headers: 'To:' not a header field name\n" },
		{ "dkim \"a.example\" { selector = s1; key = \"TMP/ed.pem\"; default = true }\n"
		  "dkim \"b.example\" { selector = s1; key = \"TMP/ed.pem\"; default = true }",
		  "t.conf:2: dkim \"b.example\": a second default signer (the first is at t.conf:1)\n" },
		{ "dkim \"example.com\" { selector = s1; key = \"TMP/ed.pem\" }\n"
		  "dkim \"Example.com\" { selector = s2; key = \"TMP/ed.pem\" }",
		  "t.conf:2: duplicate dkim \"Example.com\" (first defined at t.conf:1)\n" },
		{ "dkim \"example.com\" { selector = \"s 1\"; key = \"TMP/ed.pem\" }",
		  "t.conf:1: dkim \"example.com\": selector: 's 1' not a selector (labels of letters, digits, - and _)\n" },
		{ "dkim \"example.com\" { selectr = s1; selector = s1; key = \"TMP/ed.pem\" }",
		  "t.conf:1: dkim \"example.com\": unknown setting 'selectr' (did you mean 'selector'?)\n" },
		{ "dkim \"example.com\" { selector = s1; key = \"TMP/ed.pem\"; canonicalization = relaxed }",
		  "t.conf:1: dkim \"example.com\": canonicalization: 'relaxed' is not HEADER/BODY with "
		  "relaxed or simple (e.g. relaxed/relaxed)\n" },
		{ "dkim { selector = s1 }", "t.conf:1: dkim: expected dkim \"NAME\" { ... }, got a block\n" },
		{ "dkim \"bad domain\" { selector = s1; key = \"TMP/ed.pem\" }",
		  "t.conf:1: dkim \"bad domain\": not a host name\n" },
		{ "dkim \"example.com\" { selector = s1; key = \"TMP/ed.pem\"; subdomains = maybe }",
		  "t.conf:1: dkim \"example.com\": subdomains: 'maybe' is not true or false\n" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf in = { 0 }, want = { 0 };

		/* TMP stands for the scratch directory */
		for (int k = 0; k < 2; k++) {
			const char *t = k ? cases[i].errors : cases[i].in;
			struct buf *b = k ? &want : &in;

			for (const char *p = t; *p; p++) {
				if (strncmp(p, "TMP", 3) == 0) {
					buf_append(b, tmpdir, strlen(tmpdir));
					p += 2;
				} else {
					buf_append(b, p, 1);
				}
			}
			buf_append(b, "", 1);
		}
		errors = NULL;
		c = config_load_string(in.data, in.len - 1, "t.conf", &errors);
		if (c != NULL)
			fail_msg("case %zu loaded; want %s", i, want.data);
		if (errors == NULL || strcmp(errors, want.data) != 0)
			fail_msg("case %zu:\n got  %s\n want %s", i, errors ? errors : "(none)", want.data);
		free(errors);
		buf_free(&in);
		buf_free(&want);
	}
}

/* tls = opportunistic | required | verify | disabled: smtp, site, domain,
 * the most specific wins; smtp.tls_ca_file must be readable. */
/* smtp.mta_sts is on by default; site and domain blocks may turn it off
 * (or on), the domain's word winning; unset inherits (0). */
static void
test_mta_sts_setting(void **state)
{
	const char *in =
	    "site \"big\" { mx = [\"*.big.test\"]; mta_sts = false; }\n"
	    "site \"plain\" { mx = [\"*.plain.test\"]; }\n"
	    "domain \"on.test\" { mta_sts = yes; }\n"
	    "domain \"off.test\" { mta_sts = off; }\n";
	char *errors = NULL;
	struct config *c = config_default();
	struct config_limits l;

	(void)state;
	assert_int_equal(c->mta_sts, 1);
	assert_int_equal(c->mta_sts_port, 443);
	assert_int_equal(c->defaults.mta_sts, 0);
	config_free(c);

	c = load_str(in, &errors);
	if (c == NULL)
		fail_msg("%s", errors);
	assert_int_equal(c->mta_sts, 1);
	l = config_limits_for(c, config_site_for_mx(c, "mx.big.test"), NULL);
	assert_int_equal(l.mta_sts, 2);
	l = config_limits_for(c, config_site_for_mx(c, "mx.plain.test"), NULL);
	assert_int_equal(l.mta_sts, 0);
	l = config_limits_for(c, config_site_for_mx(c, "mx.big.test"), config_domain_find(c, "on.test"));
	assert_int_equal(l.mta_sts, 1);
	assert_int_equal(config_domain_find(c, "off.test")->lim.mta_sts, 2);
	config_free(c);

	c = load_str("smtp {\n mta_sts = false;\n}\n", &errors);
	if (c == NULL)
		fail_msg("%s", errors);
	assert_int_equal(c->mta_sts, 0);
	config_free(c);

	assert_null(load_str("domain \"d.test\" {\n mta_sts = maybe; }\n", &errors));
	assert_non_null(strstr(errors, "t.conf:2: domain \"d.test\": mta_sts: 'maybe' is not true or false"));
	free(errors);
}

static void
test_tls_policy(void **state)
{
	const char *in =
	    "smtp { tls = required; }\n"
	    "site \"big\" { mx = [\"*.big.test\"]; tls = verify; }\n"
	    "site \"plain\" { mx = [\"*.plain.test\"]; max_connections = 3; }\n"
	    "domain \"old.test\" { tls = DISABLED; }\n";
	static const struct { const char *in, *errors; } bad[] = {
		{ "smtp {\n tls = may\n}\n",
		  "t.conf:2: smtp.tls: 'may' is not a TLS policy (opportunistic, required, verify "
		  "or disabled)\n" },
		{ "site \"s\" { mx = [\"a\"];\n tls = yes; }\n",
		  "t.conf:2: site \"s\": tls: 'yes' is not a TLS policy (opportunistic, required, "
		  "verify or disabled)\n" },
		{ "smtp {\n tls_ca_file = \"/nonexistent/ca.pem\"\n}\n",
		  "t.conf:2: smtp.tls_ca_file: cannot read /nonexistent/ca.pem: No such file or "
		  "directory\n" },
	};
	char *errors = NULL;
	struct config *c = config_default();
	struct config_limits l;

	(void)state;
	/* the default: opportunistic, the system CA store */
	assert_int_equal(c->defaults.tls, TLS_POLICY_OPPORTUNISTIC);
	assert_null(c->tls_ca_file);
	config_free(c);

	c = load_str(in, &errors);
	if (c == NULL)
		fail_msg("%s", errors);
	l = config_limits_for(c, NULL, NULL);
	assert_int_equal(l.tls, TLS_POLICY_REQUIRED);
	l = config_limits_for(c, config_site_for_mx(c, "mx.big.test"), NULL);
	assert_int_equal(l.tls, TLS_POLICY_VERIFY);
	/* a site that does not set it inherits smtp's */
	l = config_limits_for(c, config_site_for_mx(c, "mx.plain.test"), NULL);
	assert_int_equal(l.tls, TLS_POLICY_REQUIRED);
	assert_int_equal(l.max_connections, 3);
	/* the domain is more specific than the site */
	l = config_limits_for(c, config_site_for_mx(c, "mx.big.test"),
	    config_domain_find(c, "old.test"));
	assert_int_equal(l.tls, TLS_POLICY_DISABLED);
	config_free(c);

	/* a CA file that exists */
	c = load_str("smtp { tls_ca_file = \"/etc/hostname\"; }", &errors);
	if (c == NULL)
		fail_msg("%s", errors);
	assert_string_equal(c->tls_ca_file, "/etc/hostname");
	config_free(c);

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		c = load_str(bad[i].in, &errors);
		if (c != NULL)
			fail_msg("case %zu loaded", i);
		if (errors == NULL || strcmp(errors, bad[i].errors) != 0)
			fail_msg("case %zu:\ngot:  %swant: %s", i, errors ? errors : "(none)\n",
			    bad[i].errors);
		free(errors);
		errors = NULL;
	}
}

/* smarthost "NAME" { }: defaults, routing (the domain's wins), errors. */
static void
test_smarthost(void **state)
{
	const char *in =
	    "smarthost \"sub\" { host = \"smtp.provider.test\"; user = \"u\"; password = \"Pw-1\"; }\n"
	    "smarthost \"ssl\" { host = \"smtps.provider.test\"; port = 465; user = \"u\";\n"
	    "  password = \"Pw-2\"; auth = LOGIN; max_connections = 3; }\n"
	    "smarthost \"imp\" { host = \"192.0.2.7\"; tls = implicit; verify = false; }\n"
	    "smarthost \"clear\" { host = \"2001:db8::25\"; port = 2525; tls = none; }\n"
	    "pool \"p\" { smarthost = \"sub\"; ip \"127.0.0.2\" { } }\n"
	    "domain \"d.test\" { smarthost = \"ssl\"; }\n"
	    "domain \"other.test\" { max_connections = 2; }\n";
	static const struct { const char *in, *errors; } bad[] = {
		{ "smarthost \"s\" {\n port = 587;\n}\n",
		  "t.conf:1: smarthost \"s\": needs host = \"HOST\"\n" },
		{ "smarthost \"s\" { host = \"h.test\";\n user = \"u\"; }\n",
		  "t.conf:2: smarthost \"s\": user needs password or password_file\n" },
		{ "smarthost \"s\" { host = \"h.test\";\n password = \"Secret-9\"; }\n",
		  "t.conf:2: smarthost \"s\": a password needs user\n" },
		{ "smarthost \"s\" { host = \"h.test\"; user = \"u\"; password = \"Secret-9\";\n"
		  " password_file = \"/etc/hostname\"; }\n",
		  "t.conf:2: smarthost \"s\": password and password_file are exclusive (password at "
		  "line 1)\n" },
		{ "smarthost \"s\" { host = \"h.test\"; user = \"u\";\n"
		  " password_file = \"/nonexistent/pw\"; }\n",
		  "t.conf:2: smarthost \"s\": password_file: cannot read /nonexistent/pw: No such file "
		  "or directory\n" },
		{ "smarthost \"s\" { host = \"h.test\";\n tls = ssl; }\n",
		  "t.conf:2: smarthost \"s\": tls: 'ssl' is not starttls, implicit or none\n" },
		{ "smarthost \"s\" { host = \"h.test\"; user = \"u\"; password = \"Secret-9\";\n"
		  " auth = cram-md5; }\n",
		  "t.conf:2: smarthost \"s\": auth: 'cram-md5' is not plain or login\n" },
		{ "smarthost \"s\" { host = \"h.test\";\n auth = plain; }\n",
		  "t.conf:2: smarthost \"s\": auth needs user and password\n" },
		{ "smarthost \"s\" { host = \"h.test\"; tls = none;\n verify = true; }\n",
		  "t.conf:2: smarthost \"s\": verify = true needs TLS (tls = \"none\")\n" },
		{ "smarthost \"s\" { host = \"h.test\";\n port = 0; }\n",
		  "t.conf:2: smarthost \"s\": port: '0' is not a whole number in 1..65535\n" },
		{ "smarthost \"s\" {\n host = \"[192.0.2.1]\"; }\n",
		  "t.conf:2: smarthost \"s\": host: '[192.0.2.1]' is an address literal: write the "
		  "address without brackets\n" },
		{ "smarthost \"s\" { host = \"h.test\";\n hots = \"x\"; }\n",
		  "t.conf:2: smarthost \"s\": unknown setting 'hots' (did you mean 'host'?)\n" },
		{ "smarthost \"s\" { host = \"h.test\"; }\nsmarthost \"s\" { host = \"h.test\"; }\n",
		  "t.conf:2: duplicate smarthost \"s\" (first defined at t.conf:1)\n" },
		{ "pool \"p\" { ip \"127.0.0.2\" { }\n smarthost = \"nope\"; }\n",
		  "t.conf:2: smarthost \"nope\" is not defined\n" },
		{ "domain \"d.test\" {\n smarthost = \"nope\"; }\n",
		  "t.conf:2: smarthost \"nope\" is not defined\n" },
		{ "smarthost \"s\" { host = \"h.test\"; }\ndomain \"d.test\" {\n smarthost = [\"s\"]; }\n",
		  "t.conf:3: domain \"d.test\": smarthost: expected smarthost = \"NAME\"\n" },
	};
	const struct config_smarthost *h;
	char *errors = NULL;
	struct config *c;

	(void)state;
	c = load_str(in, &errors);
	if (c == NULL)
		fail_msg("%s", errors);
	assert_int_equal(c->nsmarthosts, 4);
	/* STARTTLS on 587 by default, verified, AUTH as offered */
	h = config_smarthost_for(c, "p", "x.test");
	assert_non_null(h);
	assert_string_equal(h->name, "sub");
	assert_string_equal(h->host, "smtp.provider.test");
	assert_int_equal(h->port, 587);
	assert_int_equal(h->tls, SMARTHOST_TLS_STARTTLS);
	assert_true(h->verify);
	assert_string_equal(h->user, "u");
	assert_string_equal(h->password, "Pw-1");
	assert_int_equal(h->auth, 0);
	/* port 465: implicit TLS; the domain's smarthost wins over the pool's */
	h = config_smarthost_for(c, "p", "d.test");
	assert_non_null(h);
	assert_string_equal(h->name, "ssl");
	assert_int_equal(h->port, 465);
	assert_int_equal(h->tls, SMARTHOST_TLS_IMPLICIT);
	assert_int_equal(h->auth, 2);
	assert_int_equal(h->lim.max_connections, 3);
	h = config_smarthost_for(c, NULL, "d.test");
	assert_non_null(h);
	assert_string_equal(h->name, "ssl");
	/* a domain block without smarthost falls back on the pool's */
	h = config_smarthost_for(c, "p", "other.test");
	assert_non_null(h);
	assert_string_equal(h->name, "sub");
	/* no route: the MX */
	assert_null(config_smarthost_for(c, NULL, "x.test"));
	assert_null(config_smarthost_for(c, "unknown", "x.test"));
	/* tls = implicit: port 465; IP literals as is; no user: no AUTH */
	h = &c->smarthosts[2];
	assert_string_equal(h->host, "192.0.2.7");
	assert_int_equal(h->port, 465);
	assert_int_equal(h->tls, SMARTHOST_TLS_IMPLICIT);
	assert_false(h->verify);
	assert_null(h->user);
	assert_null(h->password);
	h = &c->smarthosts[3];
	assert_string_equal(h->host, "2001:db8::25");
	assert_int_equal(h->port, 2525);
	assert_int_equal(h->tls, SMARTHOST_TLS_NONE);
	config_free(c);

	/* password_file: its first line, relative to the config file */
	write_file("pw.txt", "File-Pw-3\nsecond line\n");
	write_file("sh.conf", "smarthost \"f\" { host = \"h.test\"; user = \"u\";\n"
	    "  password_file = \"pw.txt\"; }\n");
	{
		char path[256];

		snprintf(path, sizeof path, "%s/sh.conf", tmpdir);
		c = config_load(path, &errors);
		if (c == NULL)
			fail_msg("%s", errors);
		assert_string_equal(c->smarthosts[0].password, "File-Pw-3");
		config_free(c);
		write_file("pw.txt", "\n");
		errors = NULL;
		assert_null(config_load(path, &errors));
		assert_non_null(strstr(errors, "sh.conf:2: smarthost \"f\": password_file: "));
		assert_non_null(strstr(errors, "the first line is empty"));
		free(errors);
		errors = NULL;
	}

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		c = load_str(bad[i].in, &errors);
		if (c != NULL)
			fail_msg("case %zu loaded", i);
		if (errors == NULL || strcmp(errors, bad[i].errors) != 0)
			fail_msg("case %zu:\ngot:  %swant: %s", i, errors ? errors : "(none)\n",
			    bad[i].errors);
		assert_null(strstr(errors, "Secret-9"));	/* never echoed */
		free(errors);
		errors = NULL;
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_contract_example),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_rate),
		cmocka_unit_test(test_redis_urls),
		cmocka_unit_test(test_validation_errors),
		cmocka_unit_test(test_accepted_forms),
		cmocka_unit_test(test_lookups),
		cmocka_unit_test(test_tls_policy),
		cmocka_unit_test(test_mta_sts_setting),
		cmocka_unit_test(test_smarthost),
		cmocka_unit_test(test_file_errors_name_the_file),
		cmocka_unit_test(test_classify_rules_path),
		cmocka_unit_test(test_shipped_pools),
		cmocka_unit_test(test_dkim_blocks),
		cmocka_unit_test(test_fleet_limits),
	};

	return cmocka_run_group_tests_name("config", tests, setup_dir, teardown_dir);
}
