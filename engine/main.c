/*
 * main.c - the volley command line: run, inject, status, pause, resume,
 * suppress, check-config, classify. `run` is the engine (engine.c); the others are short-lived
 * tools that talk to Redis through the blocking half of the Redis module
 * (redis_sync.h): no command or key name is built here.
 */
#include "classify.h"
#include "reaction.h"
#include "config.h"
#include "engine.h"
#include "job.h"
#include "redis_sync.h"
#include "version.h"
#include "util.h"
#include "warmup.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>



static const char usage_main[] =
"NAME\n"
"    volley - high-throughput outbound SMTP sending engine\n"
"\n"
"SYNOPSIS\n"
"    volley run          [-c FILE] [--drain] [--progress|--no-progress]\n"
"    volley inject       [-c FILE] --from ADDR --msg FILE.eml [--pool P] [--campaign C]\n"
"                        [--tenant T] [--inline] [--rcpts FILE] [RCPT...]\n"
"    volley status       [-c FILE] [--all]\n"
"    volley pause        [-c FILE] campaign|tenant NAME\n"
"    volley resume       [-c FILE] campaign|tenant NAME\n"
"    volley suppress     [-c FILE] add|remove|check ADDR... [--tenant T]\n"
"    volley suppress     [-c FILE] list|export [--tenant T]\n"
"    volley suppress     [-c FILE] import FILE|- [--tenant T]\n"
"    volley check-config [-c FILE]\n"
"    volley classify     [-c FILE] [--stage STAGE] [--site SITE] \"REPLY\"\n"
"    volley help | --help | --version\n"
"\n"
"DESCRIPTION\n"
"    volley pulls send jobs from a Redis stream (PREFIXjobs, consumer group\n"
"    \"volley\"), resolves each recipient domain's MX with c-ares, and delivers\n"
"    over SMTP from its IP pools, thousands of sessions on one io_uring loop.\n"
"    Every job ends in exactly one final event on PREFIXevents: delivered,\n"
"    bounced, expired, suppressed or failed; temporary failures are written\n"
"    as deferred events and retried from Redis on the smtp.retry schedule.\n"
"\n"
"    Without -c, built-in defaults are used: Redis on 127.0.0.1:6379, the\n"
"    system resolver, one pool \"default\" on the host's default source\n"
"    address, destination port 25.\n"
"\n"
"COMMANDS\n"
"    run            Run the engine in the foreground. SIGTERM/SIGINT: stop taking\n"
"                   jobs, finish what is in a session (smtp.stop_timeout, 30 s;\n"
"                   then abort and defer it), exit 0. SIGHUP: reload the config\n"
"                   (pools, limits, timeouts, rules; Redis/DNS at the next start).\n"
"                   --drain  exit 0 once no job is unread, pending, scheduled for\n"
"                            retry or in a session (demos and benchmarks).\n"
"                   --progress / --no-progress  live progress line on stderr\n"
"                            (default: on when stderr is a terminal).\n"
"    inject         Queue one job per recipient (pipelined) and print how many\n"
"                   were queued. The message is stored once under\n"
"                   PREFIXmsg:SHA1 and shared with msg_ref (--inline: copy it\n"
"                   into every job's msg field instead).\n"
"    status         Queue depth, in flight, deferred, suppressed, paused\n"
"                   campaigns and tenants, and each running instance's sessions\n"
"                   and per-destination counters.\n"
"    pause          Pause a campaign or a tenant: every engine sees it within a\n"
"                   second; its jobs wait in Redis (the retry schedule), untried\n"
"                   and without events, and are not expired before their\n"
"                   expires_at. Other campaigns on the same IPs go on.\n"
"    resume         Undo pause: the waiting jobs go out within about a second.\n"
"    suppress       The suppression lists: the global one (PREFIXsuppressed)\n"
"                   and one per tenant (--tenant T: PREFIXsuppressed:T). A job\n"
"                   to a listed address ends `suppressed`, never sent; a\n"
"                   tenant's job is checked against both lists.\n"
"    check-config   Parse and validate; print each error as file:line: message.\n"
"    classify       Print the bounce class for an SMTP reply line and the rule\n"
"                   that matched, using the engine's rules, and the shaping\n"
"                   rule (shaping_rule) it would count toward.\n"
"\n"
"OPTIONS\n"
"    -c, --config FILE   configuration file (UCL); see docs/config.md\n"
"    -h, --help          this text (also: volley COMMAND --help)\n"
"\n"
"ENVIRONMENT\n"
"    VOLLEY_LOG=error|warn|info|debug   log level (default info), logs on stderr\n"
"    VOLLEY_INSTANCE=NAME               overrides the config's `instance` (consumer name)\n"
"\n"
"EXIT STATUS\n"
"    0 success; 1 runtime or configuration error; 2 usage error;\n"
"    3 suppress check: an address given is not suppressed.\n"
"\n"
"EXAMPLES\n"
"    volley check-config -c pools/volley.conf\n"
"    volley inject -c volley.conf --from news@example.com --msg autumn.eml \\\n"
"        --campaign autumn --rcpts list.txt\n"
"    volley run -c volley.conf\n"
"    volley pause -c volley.conf campaign autumn\n"
"    volley suppress -c volley.conf import bounces.txt --tenant shop1\n"
"    volley classify \"452 4.2.2 The email account that you tried to reach is over quota.\"\n";

static const char usage_run[] =
"usage: volley run [-c FILE] [--drain] [--progress|--no-progress]\n"
"  Run the engine in the foreground until SIGTERM/SIGINT (finish what is in a\n"
"  session for up to smtp.stop_timeout, then exit 0). SIGHUP reloads -c FILE.\n"
"  --drain        exit 0 once no job is unread, pending, scheduled for retry\n"
"                 or in a session\n"
"  --progress     live progress line on stderr (default when stderr is a tty)\n"
"  -c FILE        configuration (default: built-in defaults)\n";

static const char usage_inject[] =
"usage: volley inject [-c FILE] --from ADDR --msg FILE.eml [--pool P] [--campaign C]\n"
"                     [--tenant T] [--inline] [--expires-at UNIX] [--rcpts FILE] [RCPT...]\n"
"  Queue one job per recipient on PREFIXjobs and print how many were queued.\n"
"  --from ADDR      envelope sender (\"\" for the null reverse-path <>)\n"
"  --msg FILE       the raw RFC 5322 message\n"
"  --rcpts FILE     one recipient address per line ('#' comments and blank\n"
"                   lines skipped); addresses may also follow as arguments\n"
"  --pool P         IP pool; --campaign C, --tenant T: tags echoed in events\n"
"  --inline         put the message in each job (default: stored once, msg_ref)\n";

static const char usage_status[] =
"usage: volley status [-c FILE] [--all]\n"
"  Show queue depth (unread, pending, deferred), suppressed recipients, events,\n"
"  paused campaigns and tenants,\n"
"  and per-instance sessions and destination counters (the busiest 25\n"
"  destinations; --all: every one).\n";

static const char usage_pause[] =
"NAME\n"
"    volley pause, volley resume - hold back or release a campaign's or a\n"
"    tenant's jobs\n"
"\n"
"SYNOPSIS\n"
"    volley pause  [-c FILE] campaign|tenant NAME\n"
"    volley resume [-c FILE] campaign|tenant NAME\n"
"\n"
"DESCRIPTION\n"
"    pause records NAME in PREFIXpaused:campaign or PREFIXpaused:tenant\n"
"    (with when and by whom). Every running engine reads these once a second:\n"
"    from then on a job whose `campaign` or `tenant` field is NAME is not\n"
"    sent. It waits in Redis, in the retry schedule (counted as deferred by\n"
"    volley status), untried: no event, no attempt counted. It is not\n"
"    expired for waiting, but a job past its expires_at still ends\n"
"    `expired`. Jobs of other campaigns and tenants go on as before.\n"
"    Jobs already queued for a destination inside an engine when the pause\n"
"    arrives (at most smtp.max_queued_per_destination per destination) may\n"
"    still go out; nothing new is handed to a destination.\n"
"\n"
"    resume removes NAME; the waiting jobs leave within about a second.\n"
"    Both are idempotent: pausing a paused NAME says since when it is.\n"
"\n"
"EXIT STATUS\n"
"    0 done (or nothing to do); 1 Redis error; 2 usage error.\n"
"\n"
"EXAMPLES\n"
"    volley pause campaign autumn-sale\n"
"    volley resume tenant shop1\n";

static const char usage_suppress[] =
"NAME\n"
"    volley suppress - the suppression lists\n"
"\n"
"SYNOPSIS\n"
"    volley suppress [-c FILE] add ADDR... [--tenant T]\n"
"    volley suppress [-c FILE] remove ADDR... [--tenant T]\n"
"    volley suppress [-c FILE] check ADDR... [--tenant T]\n"
"    volley suppress [-c FILE] list [--tenant T]\n"
"    volley suppress [-c FILE] export [--tenant T]\n"
"    volley suppress [-c FILE] import FILE|- [--tenant T]\n"
"\n"
"DESCRIPTION\n"
"    A job to an address on a suppression list ends `suppressed` and is never\n"
"    sent. The global list is PREFIXsuppressed; with --tenant T the list is\n"
"    tenant T's own, PREFIXsuppressed:T. A job carrying tenant T is checked\n"
"    against both; a job without a tenant against the global list only. Hard\n"
"    bounces add the recipient to the tenant's list (jobs with a tenant) or\n"
"    to the global one.\n"
"\n"
"    Addresses are stored as the engine compares them: lower case, the\n"
"    domain in IDNA A-label form, no trailing dot (J.Doe@Bücher.DE is stored\n"
"    as j.doe@xn--bcher-kva.de). A malformed address is an error.\n"
"\n"
"    add, remove   change the list; print how many changed. remove also\n"
"                  deletes the addresses' reason and time (suppressed_info).\n"
"    check         one line per address: on which list it is, if any, with\n"
"                  why and since when where the engine recorded it (a hard\n"
"                  bounce, a complaint); with --tenant T both lists count\n"
"                  (what a job of T would meet).\n"
"    list          every address, one per line (read with SSCAN: a huge list\n"
"                  streams; an address may appear twice if the list changes\n"
"                  meanwhile).\n"
"    export        like list, after a comment line naming the list: the\n"
"                  output can be given to import.\n"
"    import FILE   add every address of FILE (\"-\": standard input), one per\n"
"                  line; blank lines and lines starting with # are skipped.\n"
"                  Malformed lines are reported as FILE:LINE and skipped; the\n"
"                  rest is added (pipelined, 1000 per command).\n"
"\n"
"OPTIONS\n"
"    --tenant T    tenant T's list instead of the global one\n"
"    -c FILE       configuration (Redis URL and key prefix)\n"
"\n"
"EXIT STATUS\n"
"    0 success; 1 Redis error or a malformed address (import: a malformed\n"
"    line; the others were added); 2 usage error; 3 check: at least one\n"
"    address is not suppressed.\n"
"\n"
"EXAMPLES\n"
"    volley suppress add bob@example.com --tenant shop1\n"
"    volley suppress check bob@example.com --tenant shop1\n"
"    volley suppress export > suppressed.txt\n"
"    volley suppress import suppressed.txt --tenant shop2\n";

static const char usage_check[] =
"usage: volley check-config [-c FILE]\n"
"  Parse and validate the configuration. Exit 0 if valid; otherwise print\n"
"  each error as file:line: message and exit 1.\n";

static const char usage_classify[] =
"usage: volley classify [-c FILE] [--stage STAGE] [--site SITE] \"REPLY\"\n"
"  Print the bounce class of an SMTP reply line, the rule that matched and\n"
"  where it is written (FILE:LINE; \"(built-in):N\" is line N of the shipped\n"
"  pools/bounce-rules.conf), using the engine's rules (smtp.classify_rules).\n"
"  --stage STAGE  the command the reply answered: connect, greeting, ehlo,\n"
"                 helo, mail, rcpt, data, dot (rules with stage= need it)\n"
"  --site SITE    the site or domain the reply came from: shaping rules for\n"
"                 other sites do not match (default: any site)\n"
"  A second line names the shaping rule (shaping_rule blocks) the reply\n"
"  would count toward: its name, FILE:LINE, threshold and action, or\n"
"  \"shaping: none\".\n"
"  e.g. volley classify \"550 5.1.1 user unknown\"\n"
"       ->  invalid_recipient (rule enh-5.1.1 at (built-in):N)\n"
"           shaping: none\n";

/* VOLLEY_INSTANCE overrides `instance`: one config file, many instances. */
static struct config *
instance_from_env(struct config *c)
{
	const char *env = getenv("VOLLEY_INSTANCE");

	if (env && *env && strlen(env) < 200 && strpbrk(env, " \t\r\n") == NULL) {
		free(c->instance);
		c->instance = xstrdup(env);
	}
	return c;
}

static struct config *
load_config(const char *path)
{
	struct config *c;
	char *errors = NULL;

	if (path == NULL)
		return instance_from_env(config_default());
	c = config_load(path, &errors);
	if (c == NULL) {
		fprintf(stderr, "%s", errors ? errors : "configuration error\n");
		if (errors && errors[strlen(errors) - 1] != '\n')
			fputc('\n', stderr);
		free(errors);
		exit(1);
	}
	free(errors);
	return instance_from_env(c);
}

static struct rqs *
redis_sync(const struct config *c)
{
	char err[512];
	struct rqs *s = rqs_connect(c, 5000, err, sizeof err);

	if (s == NULL) {
		fprintf(stderr, "volley: %s\n", err);
		exit(1);
	}
	return s;
}

/* --- run --- */

static int
cmd_run(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "drain", no_argument, NULL, 'd' },
		{ "progress", no_argument, NULL, 'p' },
		{ "no-progress", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct engine_opts o = { .drain = 0, .progress = isatty(STDERR_FILENO) };
	const char *path = NULL;
	struct config *c;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "c:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'd': o.drain = 1; break;
		case 'p': o.progress = 1; break;
		case 'P': o.progress = 0; break;
		case 'h': fputs(usage_run, stdout); return 0;
		default: fputs(usage_run, stderr); return 2;
		}
	}
	if (optind != argc) {
		fputs(usage_run, stderr);
		return 2;
	}
	c = load_config(path);
	rc = engine_run(c, path, &o);
	config_free(c);
	return rc;
}

/* --- inject --- */

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b = { 0 };
	char tmp[65536];
	size_t n;

	if (f == NULL) {
		fprintf(stderr, "volley: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
		buf_append(&b, tmp, n);
	fclose(f);
	*len = b.len;
	return b.data ? b.data : xstrdup("");
}

/*
 * read_msg - the message file: a regular file of at most max bytes
 * (smtp.max_message_size). A directory, a device such as /dev/zero or a
 * FIFO is refused, and so is a larger file: exit 1 with the reason.
 */
static char *
read_msg(const char *path, uint64_t max, size_t *len)
{
	struct stat st;
	struct buf b = { 0 };
	char tmp[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "volley inject: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "volley inject: %s is not a regular file\n", path);
		exit(1);
	}
	if (max > 0 && (uint64_t)st.st_size > max) {
		fprintf(stderr, "volley inject: %s is %lld bytes, larger than smtp.max_message_size "
		    "(%llu bytes)\n", path, (long long)st.st_size, (unsigned long long)max);
		exit(1);
	}
	while ((n = read(fd, tmp, sizeof tmp)) > 0) {
		buf_append(&b, tmp, (size_t)n);
		if (max > 0 && b.len > max) {
			fprintf(stderr, "volley inject: %s grew past smtp.max_message_size (%llu bytes)\n",
			    path, (unsigned long long)max);
			exit(1);
		}
	}
	if (n < 0) {
		fprintf(stderr, "volley inject: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	close(fd);
	*len = b.len;
	return b.data ? b.data : xstrdup("");
}

static int
cmd_inject(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "from", required_argument, NULL, 'f' },
		{ "msg", required_argument, NULL, 'm' },
		{ "pool", required_argument, NULL, 'p' },
		{ "campaign", required_argument, NULL, 'C' },
		{ "tenant", required_argument, NULL, 'T' },
		{ "rcpts", required_argument, NULL, 'r' },
		{ "inline", no_argument, NULL, 'i' },
		{ "expires-at", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *from = NULL, *msgfile = NULL, *pool = NULL, *campaign = NULL;
	const char *tenant = NULL, *rcptfile = NULL, *expires = NULL;
	int inl = 0, ch;
	char **rcpts = NULL;
	size_t nrcpts = 0, caprcpts = 0, msglen, queued = 0, refused = 0;
	char *msg, *rcptbuf = NULL, msgkey[300], err[512] = "";
	struct config *c;
	struct rqs *rs;
	struct rqs_job job;

	while ((ch = getopt_long(argc, argv, "c:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'f': from = optarg; break;
		case 'm': msgfile = optarg; break;
		case 'p': pool = optarg; break;
		case 'C': campaign = optarg; break;
		case 'T': tenant = optarg; break;
		case 'r': rcptfile = optarg; break;
		case 'i': inl = 1; break;
		case 'e': expires = optarg; break;
		case 'h': fputs(usage_inject, stdout); return 0;
		default: fputs(usage_inject, stderr); return 2;
		}
	}
	if (from == NULL || msgfile == NULL) {
		fputs("volley inject: --from and --msg are required\n", stderr);
		fputs(usage_inject, stderr);
		return 2;
	}
	for (int i = optind; i < argc; i++) {
		if (nrcpts == caprcpts) {
			caprcpts = caprcpts ? caprcpts * 2 : 64;
			rcpts = xrealloc(rcpts, caprcpts * sizeof *rcpts);
		}
		rcpts[nrcpts++] = argv[i];
	}
	if (rcptfile) {
		size_t len;
		char *line, *save = NULL;
		rcptbuf = read_file(rcptfile, &len);
		for (line = strtok_r(rcptbuf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			size_t l = strlen(line);
			while (l > 0 && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t'))
				line[--l] = '\0';
			while (*line == ' ' || *line == '\t')
				line++;
			if (*line == '\0' || *line == '#')
				continue;
			if (nrcpts == caprcpts) {
				caprcpts = caprcpts ? caprcpts * 2 : 64;
				rcpts = xrealloc(rcpts, caprcpts * sizeof *rcpts);
			}
			rcpts[nrcpts++] = line;
		}
	}
	if (nrcpts == 0) {
		fputs("volley inject: no recipients (give --rcpts FILE or addresses)\n", stderr);
		return 2;
	}
	c = load_config(path);
	msg = read_msg(msgfile, c->max_message_size, &msglen);
	if (msglen == 0) {
		fprintf(stderr, "volley inject: %s is empty\n", msgfile);
		return 1;
	}
	rs = redis_sync(c);
	memset(&job, 0, sizeof job);
	job.from = from;
	job.pool = pool;
	job.campaign = campaign;
	job.tenant = tenant;
	job.expires_at = expires;
	if (inl) {
		job.msg = msg;
		job.msg_len = msglen;
	} else {
		if (rqs_store_msg(rs, msg, msglen, c->msg_ttl_ms, msgkey, sizeof msgkey, err,
		    sizeof err) != 0) {
			fprintf(stderr, "volley inject: %s\n", err);
			return 1;
		}
		job.msg_ref = msgkey;
	}
	queued = rqs_inject(rs, &job, (const char *const *)rcpts, nrcpts, &refused, err, sizeof err);
	if (queued + refused < nrcpts || refused > 0)
		fprintf(stderr, "volley inject: %s (%zu refused)\n", err, refused);
	printf("queued %zu job(s) on %s\n", queued, rqs_jobs_key(rs));
	rqs_free(rs);
	free(msg);
	free(rcptbuf);
	free(rcpts);
	config_free(c);
	return queued == nrcpts ? 0 : 1;
}

/* --- status --- */

static void format_utc(uint64_t ms, char *out, size_t len);

struct dest_row {
	char name[300];
	unsigned sessions;
	unsigned long long queued, delivered, deferred, bounced;
	unsigned long long tls_sess, plain_sess, tls_msgs, plain_msgs;	/* sites */
};

/* Busiest first: open sessions and queued jobs, then delivered. */
static int
dest_row_cmp(const void *a, const void *b)
{
	const struct dest_row *x = a, *y = b;
	unsigned long long ax = x->sessions + x->queued, ay = y->sessions + y->queued;

	if (ax != ay)
		return ax > ay ? -1 : 1;
	if (x->delivered != y->delivered)
		return x->delivered > y->delivered ? -1 : 1;
	return strcmp(x->name, y->name);
}

#define STATUS_ROWS 25

/*
 * print_table - a table of the snapshot: NAME SESSIONS QUEUED DELIVERED
 * DEFERRED BOUNCED per line, and for sites (with_tls) also TLS_SESSIONS
 * PLAIN_SESSIONS TLS_DELIVERED PLAIN_DELIVERED (counted since the engine
 * started; missing from older engines: shown as "-").
 */
static void
print_table(const char *title, const char *dests, int all, int with_queued, int with_tls)
{
	struct dest_row *rows = NULL;
	size_t n = 0, cap = 0;
	char *copy = xstrdup(dests), *save = NULL;

	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		struct dest_row r;
		int got = sscanf(l, "%299s %u %llu %llu %llu %llu %llu %llu %llu %llu", r.name,
		    &r.sessions, &r.queued, &r.delivered, &r.deferred, &r.bounced, &r.tls_sess,
		    &r.plain_sess, &r.tls_msgs, &r.plain_msgs);

		if (got < 6)
			continue;
		if (got < 10)
			r.tls_sess = r.plain_sess = r.tls_msgs = r.plain_msgs = ~0ULL;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			rows = xrealloc(rows, cap * sizeof *rows);
		}
		rows[n++] = r;
	}
	free(copy);
	if (n > 0)
		qsort(rows, n, sizeof *rows, dest_row_cmp);
	printf("    %-36s %8s %8s %10s %9s %8s%s\n", title,
	    "sessions", with_queued ? "queued" : "", "delivered", "deferred", "bounced",
	    with_tls ? "  tls/plain sessions  tls/plain delivered" : "");
	for (size_t i = 0; i < n && (all || i < STATUS_ROWS); i++) {
		char q[24] = "", ts[48] = "", tm[48] = "";
		if (with_queued)
			snprintf(q, sizeof q, "%llu", rows[i].queued);
		if (with_tls && rows[i].tls_sess == ~0ULL) {
			snprintf(ts, sizeof ts, "-");
			snprintf(tm, sizeof tm, "-");
		} else if (with_tls) {
			snprintf(ts, sizeof ts, "%llu/%llu", rows[i].tls_sess, rows[i].plain_sess);
			snprintf(tm, sizeof tm, "%llu/%llu", rows[i].tls_msgs, rows[i].plain_msgs);
		}
		if (with_tls)
			printf("    %-36s %8u %8s %10llu %9llu %8llu  %18s  %19s\n", rows[i].name,
			    rows[i].sessions, q, rows[i].delivered, rows[i].deferred,
			    rows[i].bounced, ts, tm);
		else
			printf("    %-36s %8u %8s %10llu %9llu %8llu\n", rows[i].name,
			    rows[i].sessions, q, rows[i].delivered, rows[i].deferred,
			    rows[i].bounced);
	}
	if (!all && n > STATUS_ROWS)
		printf("    (%zu more rows; volley status --all shows every one)\n",
		    n - STATUS_ROWS);
	free(rows);
}

/*
 * print_lanes - the shaping lanes of an instance's snapshot, one line
 * each: NAME WINDOW MAX NCONN RATE CEILING SUSPENDED_S CLOSED_S SENT
 * SLOWDOWNS (as stats.c writes them; malformed lines are skipped).
 */
static void
print_lanes(const char *tab, int all)
{
	char *copy = xstrdup(tab), *save = NULL;
	size_t n = 0, more = 0;

	printf("    %-40s %9s %5s %12s %12s %-16s %8s %6s\n", "lane (ip/destination)", "window",
	    "open", "rate", "ceiling", "state", "sent", "slow");
	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char name[320], rate[32], ceil[32], state[40], win[24];
		unsigned w, max, nconn;
		unsigned long long susp, closed, sent, slow;

		if (sscanf(l, "%319s %u %u %u %31s %31s %llu %llu %llu %llu", name, &w, &max, &nconn,
		    rate, ceil, &susp, &closed, &sent, &slow) != 10)
			continue;
		if (!all && n >= STATUS_ROWS) {
			more++;
			continue;
		}
		n++;
		if (susp)
			snprintf(state, sizeof state, "suspended %llus", susp);
		else if (closed)
			snprintf(state, sizeof state, "closed %llus", closed);
		else
			snprintf(state, sizeof state, "-");
		snprintf(win, sizeof win, "%u/%u", w, max);
		printf("    %-40s %9s %5u %12s %12s %-16s %8llu %6llu\n", name, win, nconn, rate, ceil,
		    state, sent, slow);
	}
	if (more)
		printf("    (%zu more lanes; volley status --all shows every one)\n", more);
	free(copy);
}

/* The warm-up state of every pool IP with a schedule, from Redis (shared
 * by every host): day of the ramp, sent today / today's cap. */
/*
 * print_rates - the feedback loop's counters: per campaign and tenant (the
 * most recently counted first, top 10 unless --all), then pool, ip and
 * site: delivered, bounced, complaints over the last hour and day, with
 * the rates.
 */
static void
print_rates(struct rqs *rs, int all, uint64_t now)
{
	static const char *const dims[] = { "campaign:,tenant:,", "pool:,ip:,site:," };
	char err[512];

	for (size_t k = 0; k < 2; k++) {
		struct rate_entry *e;
		size_t n, max = all ? 10000 : 10;

		if (rqs_rates_read(rs, now, dims[k], max, &e, &n, err, sizeof err) != 0) {
			printf("  rates      (cannot read: %s)\n", err);
			return;
		}
		if (n > 0 && k == 0)
			printf("\n  rates      %-24s %-32s %s\n", "", "last hour", "last day");
		for (size_t i = 0; i < n; i++) {
			const struct rate_counts *w[2] = { &e[i].hour, &e[i].day };
			char col[2][96], who[128];

			for (int j = 0; j < 2; j++) {
				double sent = w[j]->d + w[j]->b;
				snprintf(col[j], sizeof col[j], "%.0f/%.0f/%.0f %.2f%%b %.2f%%c", w[j]->d,
				    w[j]->b, w[j]->c, sent > 0 ? 100.0 * w[j]->b / sent : 0,
				    w[j]->d > 0 ? 100.0 * w[j]->c / w[j]->d : 0);
			}
			snprintf(who, sizeof who, "%s %s", rates_dim_name(e[i].dim), e[i].name);
			printf("    %-33s %-32s %s\n", who, col[0], col[1]);
		}
		if (n > 0 && k == 1)
			printf("    (delivered/bounced/complaints, bounce %% of sent, complaint %% of "
			    "delivered)\n");
		rqs_rates_free(e, n);
	}
}

static void
print_warmup(struct rqs *rs, const struct config *c, uint64_t now)
{
	char err[512];

	for (size_t i = 0; i < c->npools; i++) {
		for (size_t j = 0; j < c->pools[i].nips; j++) {
			const struct config_ip *ip = &c->pools[i].ips[j];
			const struct config_warmup *w = NULL;
			struct rqs_warmup st;
			struct warmup_ramp r;
			struct warmup_answer a;
			int seen = 0;
			int64_t start;

			for (size_t k = 0; ip->warmup && k < c->nwarmups; k++)
				if (strcmp(c->warmups[k].name, ip->warmup) == 0)
					w = &c->warmups[k];
			for (size_t pi = 0; pi <= i && !seen; pi++)	/* each address once */
				for (size_t pj = 0; pj < (pi == i ? j : c->pools[pi].nips); pj++)
					if (strcmp(c->pools[pi].ips[pj].addr, ip->addr) == 0 &&
					    c->pools[pi].ips[pj].warmup != NULL)
						seen = 1;
			if (w == NULL || seen)
				continue;
			if (rqs_warmup_read(rs, ip->addr, now, &st, err, sizeof err) != 0) {
				printf("  warm-up    %s  (cannot read: %s)\n", ip->addr, err);
				continue;
			}
			start = ip->warmup_start ? warmup_day_number(ip->warmup_start) : st.start;
			if (start < 0) {
				printf("  warm-up    %s  schedule %s  not used yet\n", ip->addr, w->name);
				continue;
			}
			start += st.shift;
			if (st.hold_day)
				start += warmup_hold_shift(start, 0, st.hold_day,
				    (int64_t)(now / WARMUP_DAY_MS));
			r = warmup_ramp(w, NULL);
			warmup_check(&r, start, now, st.sent_day, st.sent_hour, 0, &a);
			if (a.done)
				printf("  warm-up    %s  schedule %s  done (past day %zu)  sent today %u\n",
				    ip->addr, w->name, w->ndaily, st.sent_day);
			else
				printf("  warm-up    %s  schedule %s  day %u of %zu  sent today %u/%u"
				    "  this hour %u%s\n", ip->addr, w->name, a.day, w->ndaily,
				    st.sent_day, a.cap_day, st.sent_hour,
				    st.sent_day >= a.cap_day ? "  (spent: waits for tomorrow)" : "");
			if (st.hold_day) {
				char until[64];
				format_utc(st.hold_until, until, sizeof until);
				printf("             held at day %u until %s: %s\n", st.hold_day, until,
				    st.hold_reason[0] ? st.hold_reason : "(no reason given)");
			}
		}
	}
}

/*
 * print_fleet - the fleet-wide limits an instance uses, one line each: KEY
 * RATE TOKENS TAKEN GRANTED ASKS WAITS (as stats.c writes them).
 */
static void
print_fleet(const char *tab)
{
	char *copy = xstrdup(tab), *save = NULL;

	printf("    %-40s %12s %6s %8s %8s %8s %8s\n", "fleet limit (all hosts)", "rate", "tokens",
	    "sent", "granted", "asks", "waits");
	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char name[300], rate[32];
		unsigned tokens;
		unsigned long long taken, granted, asks, waits;

		if (sscanf(l, "%299s %31s %u %llu %llu %llu %llu", name, rate, &tokens, &taken,
		    &granted, &asks, &waits) != 7)
			continue;
		printf("    %-40s %12s %6u %8llu %8llu %8llu %8llu\n", name, rate, tokens, taken,
		    granted, asks, waits);
	}
	free(copy);
}

static int
cmd_status(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "all", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	int all = 0;
	struct config *c;
	struct rqs *rs;
	struct rqs_status st;
	char err[512];
	uint64_t now = clock_wall_ms();
	int ch;

	while ((ch = getopt_long(argc, argv, "c:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'a': all = 1; break;
		case 'h': fputs(usage_status, stdout); return 0;
		default: fputs(usage_status, stderr); return 2;
		}
	}
	c = load_config(path);
	rs = redis_sync(c);
	if (rqs_status_read(rs, &st, err, sizeof err) != 0) {
		fprintf(stderr, "volley status: %s\n", err);
		rqs_free(rs);
		config_free(c);
		return 1;
	}
	printf("volley status  (redis %s, prefix \"%s\")\n\n", c->redis_url_safe, c->prefix);
	printf("  queue      unread %-8lld pending %-8lld deferred %-8lld\n", st.unread, st.pending,
	    st.deferred < 0 ? 0 : st.deferred);
	if (st.high_len > 0)
		printf("             high-priority stream: %lld unread or pending\n", st.high_len);
	if (st.has_next_retry) {
		long long in = (long long)((st.next_retry_ms - (double)now) / 1000.0);
		printf("             next retry due %s%llds\n", in < 0 ? "-" : "in ",
		    in < 0 ? -in : in);
	}
	for (size_t i = 0; i < st.npools; i++)
		printf("             pool %s: %lld waiting for its owners' retry reads (%lld due "
		    "now)\n", st.pools[i].pool, st.pools[i].waiting < 0 ? 0 : st.pools[i].waiting,
		    st.pools[i].due < 0 ? 0 : st.pools[i].due);
	printf("  suppressed %lld    events %lld\n", st.suppressed < 0 ? 0 : st.suppressed,
	    st.events < 0 ? 0 : st.events);
	for (int tenant = 0; tenant < 2; tenant++) {
		struct rqs_paused *p;
		size_t np;
		if (rqs_paused_list(rs, tenant, &p, &np, err, sizeof err) != 0) {
			printf("  paused     (cannot read: %s)\n", err);
			continue;
		}
		for (size_t i = 0; i < np; i++) {
			char when[64];
			format_utc(p[i].since_ms, when, sizeof when);
			printf("  paused     %s %s  since %s by %s  (its jobs wait in the retry "
			    "schedule)\n", tenant ? "tenant" : "campaign", p[i].name, when, p[i].by);
		}
		rqs_paused_free(p, np);
	}
	print_warmup(rs, c, now);
	print_rates(rs, all, now);
	putchar('\n');
	for (size_t i = 0; i < st.ninst; i++) {
		const struct rqs_instance *h = &st.inst[i];
		const char *hb = rqs_instance_get(h, "heartbeat_ms");
		const char *started = rqs_instance_get(h, "started_ms");
		const char *tab;
		double ago = hb ? ((double)now - atof(hb)) / 1000.0 : -1;
		double up = started ? ((double)now - atof(started)) / 1000.0 : 0;
#define F(name) (rqs_instance_get(h, name) ? rqs_instance_get(h, name) : "?")
		printf("  instance %s  pid %s  up %.0fs  heartbeat %.1fs ago%s\n", h->name, F("pid"),
		    up, ago, ago > 5 ? "  (STALE: not running?)" : "");
		printf("    sessions %s  in memory %s  delivered %s  deferred %s  bounced %s"
		    "  expired %s  failed %s  suppressed %s\n", F("sessions"), F("in_memory"),
		    F("delivered"), F("deferred"), F("bounced"), F("expired"), F("failed"),
		    F("suppressed"));
#undef F
		tab = rqs_instance_get(h, "ips");
		if (tab && *tab)
			print_table("pool|source ip", tab, all, 0, 0);
		tab = rqs_instance_get(h, "sites");
		if (tab && *tab)
			print_table("site (\"-\": none)", tab, all, 1, 1);
		tab = rqs_instance_get(h, "dests");
		if (tab && *tab)
			print_table("pool|destination", tab, all, 1, 0);
		tab = rqs_instance_get(h, "lanes");
		if (tab && *tab)
			print_lanes(tab, all);
		tab = rqs_instance_get(h, "fleet");
		if (tab && *tab)
			print_fleet(tab);
	}
	if (st.ninst == 0)
		printf("  no engine instance is running (none reported in the last 30 s)\n");
	rqs_status_free(&st);
	rqs_free(rs);
	config_free(c);
	return 0;
}

/* --- pause, resume --- */

/* Who asked, for the record: USER@HOST. */
static void
who_am_i(char *out, size_t len)
{
	const char *u = getenv("SUDO_USER");
	char host[128] = "?";

	if (u == NULL || *u == '\0')
		u = getenv("USER");
	if (u == NULL || *u == '\0')
		u = "unknown";
	gethostname(host, sizeof host - 1);
	host[sizeof host - 1] = '\0';
	snprintf(out, len, "%.100s@%s", u, host);
}

static void
format_utc(uint64_t ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms == 0 || gmtime_r(&t, &tm) == NULL)
		snprintf(out, len, "?");
	else
		strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/*
 * supp_why - " (REASON, since DATE)" from a suppression's info ("REASON
 * TS_MS", suppressed_info), "" without one; a value of another shape is
 * shown as it is, control bytes as '?'.
 */
static void
supp_why(const char *info, char *out, size_t len)
{
	char reason[200], when[64];
	const char *sp;
	char *end;
	size_t n = 0;
	unsigned long long ms = 0;

	out[0] = '\0';
	if (info == NULL || info[0] == '\0')
		return;
	sp = strrchr(info, ' ');
	if (sp != NULL && sp[1] != '\0')
		ms = strtoull(sp + 1, &end, 10);
	if (sp == NULL || sp[1] == '\0' || *end != '\0' || ms == 0)
		sp = info + strlen(info);	/* no time: all of it is the reason */
	for (const char *p = info; p < sp && n < sizeof reason - 1; p++)
		reason[n++] = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
	reason[n] = '\0';
	if (ms == 0) {
		snprintf(out, len, " (%s)", reason);
		return;
	}
	format_utc(ms, when, sizeof when);
	snprintf(out, len, " (%s, since %s)", reason, when);
}

static int
cmd_pause(int argc, char **argv, int resume)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *verb = resume ? "resume" : "pause", *kind, *name;
	char err[512] = "", was[300] = "", by[256];
	struct config *c;
	struct rqs *rs;
	int ch, tenant, rc;

	while ((ch = getopt_long(argc, argv, "c:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'h': fputs(usage_pause, stdout); return 0;
		default: fputs(usage_pause, stderr); return 2;
		}
	}
	if (optind + 2 != argc) {
		fprintf(stderr, "volley %s: give campaign|tenant and a NAME\n", verb);
		return 2;
	}
	kind = argv[optind];
	name = argv[optind + 1];
	if (strcmp(kind, "campaign") != 0 && strcmp(kind, "tenant") != 0) {
		fprintf(stderr, "volley %s: '%s': expected campaign or tenant\n", verb, kind);
		return 2;
	}
	tenant = kind[0] == 't';
	/* The names a job can carry: 1-255 bytes. */
	if (name[0] == '\0' || strlen(name) > 255) {
		fprintf(stderr, "volley %s: a %s name is 1 to 255 bytes\n", verb, kind);
		return 2;
	}
	c = load_config(path);
	rs = redis_sync(c);
	if (resume) {
		rc = rqs_resume(rs, tenant, name, err, sizeof err);
		if (rc == 1)
			printf("resumed %s '%s': its waiting jobs go out again within about a second\n",
			    kind, name);
		else if (rc == 0)
			printf("%s '%s' was not paused; nothing to do\n", kind, name);
	} else {
		who_am_i(by, sizeof by);
		rc = rqs_pause(rs, tenant, name, by, was, sizeof was, err, sizeof err);
		if (rc == 1) {
			printf("paused %s '%s': every engine holds its jobs back within a second; "
			    "they wait in Redis until volley resume %s '%s'\n", kind, name, kind, name);
		} else if (rc == 0) {
			char when[64];
			char *sp = strchr(was, ' ');
			format_utc(strtoull(was, NULL, 10), when, sizeof when);
			printf("%s '%s' is already paused (since %s by %s); nothing to do\n", kind, name,
			    when, sp ? sp + 1 : "?");
		}
	}
	if (rc < 0)
		fprintf(stderr, "volley %s: %s\n", verb, err);
	rqs_free(rs);
	config_free(c);
	return rc < 0 ? 1 : 0;
}

/* --- suppress --- */

/*
 * address_key - the suppression key of addr, computed by the job decoder
 * itself, so that it is exactly what the engine compares for a job to
 * that recipient (lower case, A-label domain, no trailing dot). malloc'd;
 * NULL with the reason in why if the address is not a valid recipient.
 */
static char *
address_key(const struct config *c, const char *addr, char *why, size_t whylen)
{
	const char *f[] = { "to", "from", "msg" };
	const size_t fl[] = { 2, 4, 3 };
	const char *v[] = { addr, "", "x" };
	const size_t vl[] = { strlen(addr), 0, 1 };
	struct job *j = job_decode(f, fl, v, vl, 3, "0-1", JOB_FROM_STREAM, c, clock_wall_ms());
	char *k = NULL;

	if (j->error || j->to_lc == NULL)
		snprintf(why, whylen, "%s", j->error ? j->error : "malformed recipient address");
	else
		k = xstrdup(j->to_lc);
	job_free(j);
	return k;
}

static int
print_member(void *arg, const char *addr, size_t len)
{
	(void)arg;
	/* Members are stored by this tool and the engine: one line each.
	 * Anything with a newline came from elsewhere; keep it one line. */
	for (size_t i = 0; i < len; i++)
		if (putchar(addr[i] == '\n' || addr[i] == '\r' ? '?' : addr[i]) == EOF)
			return -1;
	return putchar('\n') == EOF ? -1 : 0;
}

#define IMPORT_BATCH 10000

static int
suppress_import(struct rqs *rs, const struct config *c, const char *tenant, const char *file,
    const char *listname)
{
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
	char *line = NULL, why[512], err[512] = "";
	size_t cap = 0, lineno = 0, nbatch = 0, added = 0, valid = 0, bad = 0;
	char **batch;
	ssize_t len;
	int rc = 0;

	if (f == NULL) {
		fprintf(stderr, "volley suppress import: %s: %s\n", file, strerror(errno));
		return 1;
	}
	batch = xcalloc(IMPORT_BATCH, sizeof *batch);
	for (;;) {
		char *p, *k;
		size_t n;
		len = getline(&line, &cap, f);
		if (len >= 0) {
			lineno++;
			p = line;
			n = (size_t)len;
			while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' ' ||
			    p[n - 1] == '\t'))
				p[--n] = '\0';
			while (*p == ' ' || *p == '\t')
				p++;
			if (*p == '\0' || *p == '#')
				continue;
			if (strlen(p) != (size_t)(n - (size_t)(p - line))) {
				fprintf(stderr, "%s:%zu: NUL byte in line; skipped\n", file, lineno);
				bad++;
				continue;
			}
			k = address_key(c, p, why, sizeof why);
			if (k == NULL) {
				fprintf(stderr, "%s:%zu: '%.200s': %s; skipped\n", file, lineno, p, why);
				bad++;
				continue;
			}
			batch[nbatch++] = k;
			valid++;
		}
		if (nbatch > 0 && (nbatch == IMPORT_BATCH || len < 0)) {
			size_t a = 0;
			int r = rqs_suppress_add(rs, tenant, (const char *const *)batch, nbatch, &a,
			    err, sizeof err);
			added += a;
			for (size_t i = 0; i < nbatch; i++)
				free(batch[i]);
			nbatch = 0;
			if (r != 0) {
				fprintf(stderr, "volley suppress import: %s\n", err);
				rc = 1;
				break;
			}
		}
		if (len < 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "volley suppress import: %s: read error\n", file);
		rc = 1;
	}
	for (size_t i = 0; i < nbatch; i++)
		free(batch[i]);
	free(batch);
	free(line);
	if (f != stdin)
		fclose(f);
	printf("imported %zu address(es) from %s into %s: %zu added, %zu already there, "
	    "%zu malformed line(s) skipped\n", valid, file, listname, added, valid - added, bad);
	return rc ? rc : bad ? 1 : 0;
}

static int
cmd_suppress(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "tenant", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *tenant = NULL, *action;
	char err[512] = "", why[512], *listname, *glob;
	char **keys;
	size_t nkeys = 0, nargs;
	struct config *c;
	struct rqs *rs;
	int ch, rc = 0;

	while ((ch = getopt_long(argc, argv, "c:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'T': tenant = optarg; break;
		case 'h': fputs(usage_suppress, stdout); return 0;
		default: fputs(usage_suppress, stderr); return 2;
		}
	}
	if (optind >= argc) {
		fputs("volley suppress: give add, remove, check, list, import or export "
		    "(volley suppress --help)\n", stderr);
		return 2;
	}
	action = argv[optind++];
	nargs = (size_t)(argc - optind);
	if (tenant && (tenant[0] == '\0' || strlen(tenant) > 255)) {
		fputs("volley suppress: a tenant name is 1 to 255 bytes\n", stderr);
		return 2;
	}
	if (strcmp(action, "add") == 0 || strcmp(action, "remove") == 0 ||
	    strcmp(action, "check") == 0) {
		if (nargs == 0) {
			fprintf(stderr, "volley suppress %s: give one or more addresses\n", action);
			return 2;
		}
	} else if (strcmp(action, "import") == 0) {
		if (nargs != 1) {
			fputs("volley suppress import: give one FILE (\"-\": standard input)\n", stderr);
			return 2;
		}
	} else if (strcmp(action, "list") == 0 || strcmp(action, "export") == 0) {
		if (nargs != 0) {
			fprintf(stderr, "volley suppress %s: takes no arguments but --tenant T\n",
			    action);
			return 2;
		}
	} else {
		fprintf(stderr, "volley suppress: unknown action '%s' (add, remove, check, list, "
		    "import, export)\n", action);
		return 2;
	}
	c = load_config(path);
	/* Every address first: a malformed one changes nothing. */
	keys = xcalloc(nargs + 1, sizeof *keys);
	if (strcmp(action, "import") != 0) {
		for (size_t i = 0; i < nargs; i++) {
			char *k = address_key(c, argv[optind + i], why, sizeof why);
			if (k == NULL) {
				fprintf(stderr, "volley suppress %s: '%s': %s\n", action, argv[optind + i],
				    why);
				rc = 1;
				continue;
			}
			keys[nkeys++] = k;
		}
	}
	if (rc != 0) {
		fprintf(stderr, "volley suppress %s: nothing changed\n", action);
		goto out_keys;
	}
	rs = redis_sync(c);
	listname = rqs_suppress_key(rs, tenant);
	glob = rqs_suppress_key(rs, NULL);
	if (strcmp(action, "add") == 0 || strcmp(action, "remove") == 0) {
		size_t changed = 0;
		int add = action[0] == 'a';
		int r = add ? rqs_suppress_add(rs, tenant, (const char *const *)keys, nkeys, &changed,
		    err, sizeof err) : rqs_suppress_remove(rs, tenant, (const char *const *)keys,
		    nkeys, &changed, err, sizeof err);
		if (r != 0) {
			fprintf(stderr, "volley suppress %s: %s\n", action, err);
			rc = 1;
		} else if (add) {
			printf("added %zu address(es) to %s (%zu already there)\n", changed, listname,
			    nkeys - changed);
		} else {
			printf("removed %zu address(es) from %s (%zu not there)\n", changed, listname,
			    nkeys - changed);
		}
	} else if (strcmp(action, "check") == 0) {
		int *member = xcalloc(nkeys + 1, sizeof *member);
		char **ig = xcalloc(nkeys + 1, sizeof *ig), **it = xcalloc(nkeys + 1, sizeof *it);
		if (rqs_suppress_check(rs, tenant, (const char *const *)keys, nkeys, member, err,
		    sizeof err) != 0 || rqs_suppress_info(rs, tenant, (const char *const *)keys,
		    nkeys, ig, it, err, sizeof err) != 0) {
			fprintf(stderr, "volley suppress check: %s\n", err);
			rc = 1;
		} else {
			for (size_t i = 0; i < nkeys; i++) {
				char given[600] = "", wg[300] = "", wt[300] = "";
				if (strcmp(keys[i], argv[optind + i]) != 0)
					snprintf(given, sizeof given, " (given as %s)", argv[optind + i]);
				if (member[i] == 0)
					rc = 3;
				if (member[i] & RQS_SUPP_GLOBAL)
					supp_why(ig[i], wg, sizeof wg);
				if (member[i] & RQS_SUPP_TENANT)
					supp_why(it[i], wt, sizeof wt);
				printf("%s%s: %s%s%s%s%s%s\n", keys[i], given,
				    member[i] ? "suppressed on " : "not suppressed",
				    member[i] & RQS_SUPP_GLOBAL ? glob : "", wg,
				    member[i] == (RQS_SUPP_GLOBAL | RQS_SUPP_TENANT) ? " and " : "",
				    member[i] & RQS_SUPP_TENANT ? listname : "", wt);
			}
		}
		for (size_t i = 0; i < nkeys; i++) {
			free(ig[i]);
			free(it[i]);
		}
		free(ig);
		free(it);
		free(member);
	} else if (strcmp(action, "import") == 0) {
		rc = suppress_import(rs, c, tenant, argv[optind], listname);
	} else {
		size_t count = 0;
		if (action[0] == 'e') {
			char when[64];
			format_utc(clock_wall_ms(), when, sizeof when);
			printf("# volley suppression list %s, exported %s\n", listname, when);
		}
		if (rqs_suppress_scan(rs, tenant, print_member, NULL, &count, err, sizeof err) != 0) {
			fprintf(stderr, "volley suppress %s: %s\n", action, err);
			rc = 1;
		}
		if (fflush(stdout) != 0) {
			fprintf(stderr, "volley suppress %s: cannot write: %s\n", action,
			    strerror(errno));
			rc = 1;
		}
	}
	free(listname);
	free(glob);
	rqs_free(rs);
out_keys:
	for (size_t i = 0; i < nkeys; i++)
		free(keys[i]);
	free(keys);
	config_free(c);
	return rc;
}

/* --- check-config, classify --- */

static int
cmd_check(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	struct config *c;
	char *errors = NULL;
	int ch;

	while ((ch = getopt_long(argc, argv, "c:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'h': fputs(usage_check, stdout); return 0;
		default: fputs(usage_check, stderr); return 2;
		}
	}
	if (path == NULL) {
		c = instance_from_env(config_default());
	} else {
		c = config_load(path, &errors);
		if (c != NULL)
			instance_from_env(c);
		if (c == NULL) {
			fprintf(stderr, "%s", errors ? errors : "invalid configuration\n");
			if (errors && *errors && errors[strlen(errors) - 1] != '\n')
				fputc('\n', stderr);
			free(errors);
			return 1;
		}
	}
	if (c->classify_rules) {
		struct classify_rules *rules = classify_rules_load(c->classify_rules, &errors);
		if (rules == NULL) {
			fprintf(stderr, "%s\n", errors);
			free(errors);
			config_free(c);
			return 1;
		}
		classify_rules_free(rules);
	}
	printf("%s: OK (instance %s, redis %s, %zu pool(s), %zu site(s), %zu domain rule(s), "
	    "%zu warm-up schedule(s), %zu shaping rule(s), %zu threshold(s))\n",
	    path ? path : "built-in defaults", c->instance, c->redis_url_safe, c->npools, c->nsites,
	    c->ndomains, c->nwarmups, c->nreactions, c->nthresholds);
	free(errors);
	config_free(c);
	return 0;
}

static int
cmd_classify(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "stage", required_argument, NULL, 's' },
		{ "site", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *stage = NULL, *site = NULL;
	const struct reaction_rule *rr;
	char enh[16], thr[48], act[96];
	const char *text;
	int code;
	struct config *c;
	struct classify_rules *rules;
	struct classify_match m;
	char *err = NULL;
	enum bounce_class cls;
	int ch;

	while ((ch = getopt_long(argc, argv, "c:s:S:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 's': stage = optarg; break;
		case 'S': site = optarg; break;
		case 'h': fputs(usage_classify, stdout); return 0;
		default: fputs(usage_classify, stderr); return 2;
		}
	}
	if (optind + 1 != argc) {
		fputs(usage_classify, stderr);
		return 2;
	}
	c = load_config(path);
	rules = c->classify_rules ? classify_rules_load(c->classify_rules, &err)
	    : classify_rules_builtin();
	if (rules == NULL) {
		fprintf(stderr, "%s\n", err);
		free(err);
		config_free(c);
		return 1;
	}
	cls = classify_line_stage(rules, stage, argv[optind], &m);
	if (m.file != NULL)
		printf("%s (rule %s at %s:%d)\n", bounce_class_name(cls), m.rule, m.file, m.line);
	else
		printf("%s (rule %s)\n", bounce_class_name(cls), m.rule);
	/* the shaping rule it would count toward (the engine matches the
	 * failed replies of a lane the same way) */
	text = reaction_parse_reply(argv[optind], &code, enh);
	rr = code >= 200 && code < 300 ? NULL : reaction_match(c->reactions, c->nreactions, code,
	    enh, text, stage, site, site);
	if (rr != NULL)
		printf("shaping: rule %s at %s:%d (threshold %s, action %s%s%s)\n", rr->name,
		    rr->file, rr->line, reaction_threshold_text(rr, thr, sizeof thr),
		    reaction_rule_text(rr, act, sizeof act), rr->site ? ", site " : "",
		    rr->site ? rr->site : "");
	else
		printf("shaping: none\n");
	classify_rules_free(rules);
	config_free(c);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *cmd;

	log_init("volley");
	signal(SIGPIPE, SIG_IGN);	/* hiredis write()s: a dropped Redis is an error, not a kill */
	if (argc < 2) {
		fputs(usage_main, stderr);
		return 2;
	}
	cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		fputs(usage_main, stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		printf("volley %s\n", VOLLEY_VERSION);
		return 0;
	}
	argc--;
	argv++;
	if (strcmp(cmd, "run") == 0)
		return cmd_run(argc, argv);
	if (strcmp(cmd, "inject") == 0)
		return cmd_inject(argc, argv);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(argc, argv);
	if (strcmp(cmd, "pause") == 0)
		return cmd_pause(argc, argv, 0);
	if (strcmp(cmd, "resume") == 0)
		return cmd_pause(argc, argv, 1);
	if (strcmp(cmd, "suppress") == 0)
		return cmd_suppress(argc, argv);
	if (strcmp(cmd, "check-config") == 0)
		return cmd_check(argc, argv);
	if (strcmp(cmd, "classify") == 0)
		return cmd_classify(argc, argv);
	fprintf(stderr, "volley: unknown command '%s' (try volley --help)\n", cmd);
	return 2;
}
