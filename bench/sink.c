/*
 * sink.c - volley-sink: command line, listeners, signals and the main loop
 * of the project's SMTP sink and mailbox-provider simulator.
 *
 * Command line (docs/sink.md): volley-sink --listen ADDR:PORT [--listen ...]
 * [-c FILE] [--capture DIR] [--stats FILE]; SIGUSR1 writes the stats JSON,
 * SIGTERM/SIGINT write it and exit 0; a bad config prints "file:line:
 * message" and exits 2. --help is the manual.
 *
 * Listeners: every ADDR:PORT (and every address of a range
 * A.B.C.D-E.F.G.H:PORT) gets its own socket with accepts on the loop
 * (direct descriptors or plain fds: see "Accept modes" below); the session
 * records which local address was reached, so one process plays many MX
 * hosts. Signals only set flags (sigaction without
 * SA_RESTART interrupts the ring wait); the end-of-turn hook acts on them.
 */
#include "sink.h"
#include "loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage_text[] =
"NAME\n"
"  volley-sink - SMTP sink and mailbox-provider simulator on io_uring\n"
"\n"
"SYNOPSIS\n"
"  volley-sink --listen ADDR:PORT [--listen ...] [-c FILE] [--capture DIR]\n"
"              [--stats FILE] [--profile NAME] [--tls] [--tls-cert FILE\n"
"              --tls-key FILE] [--tls-implicit] [--auth USER:PASSWORD]\n"
"              [--auth-clear] [--max-sessions N] [--size BYTES]\n"
"              [--hostname NAME] [--no-direct] [--quiet] [--verbose]\n"
"  volley-sink --check -c FILE\n"
"\n"
"DESCRIPTION\n"
"  Accepts SMTP on many addresses at once, answers every stage as the rules,\n"
"  the recipient tags and the provider profile say, counts everything per\n"
"  client IP and per local address, and optionally stores each message.\n"
"  ESMTP: PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8 and, with\n"
"  a certificate or --tls, STARTTLS; with --auth (or auth { }), AUTH PLAIN\n"
"  LOGIN. Many messages per session.\n"
"\n"
"OPTIONS\n"
"  -l, --listen ADDR:PORT  listen here (repeatable). ADDR may be an IPv4\n"
"                          range A-B (127.0.1.1-127.0.1.50:2525), [IPv6],\n"
"                          or * for all. Overrides the config's `listen`.\n"
"  -c, --config FILE       UCL configuration (docs/sink.md)\n"
"  -p, --profile NAME      provider profile: gmail, yahoo, outlook or a path\n"
"                          (overrides the config's `profile`)\n"
"      --capture DIR       write each accepted message to DIR/*.eml, headed\n"
"                          by X-Sink-Client, X-Sink-Local, X-Sink-Helo,\n"
"                          X-Sink-Mail-From, X-Sink-Mail-Params (if any),\n"
"                          X-Sink-Rcpt-To (one per rcpt),\n"
"                          X-Sink-TLS, X-Sink-Auth (after a good AUTH),\n"
"                          then the message byte for byte as\n"
"                          received after dot-unstuffing\n"
"      --stats FILE        JSON counters, written at exit and on SIGUSR1\n"
"                          (to FILE.tmp, then renamed)\n"
"      --tls               offer STARTTLS with a self-signed certificate\n"
"      --tls-cert FILE     PEM certificate chain (implies --tls)\n"
"      --tls-key FILE      PEM private key\n"
"      --tls-implicit      TLS from the first byte (SMTPS, port 465 style) on\n"
"                          every listener instead of STARTTLS (implies --tls)\n"
"      --auth USER:PASSWORD  offer AUTH PLAIN LOGIN (after STARTTLS, or at\n"
"                          once with --tls-implicit); 235 for these, 535 5.7.8\n"
"                          for anything else (config: auth { user; password; })\n"
"      --auth-clear        offer AUTH without TLS too\n"
"      --max-sessions N    421 at greeting beyond N sessions (100000)\n"
"      --size BYTES        SIZE limit (52428800)\n"
"      --hostname NAME     name in the greeting and EHLO reply\n"
"      --seed N            random seed for `probability` rules\n"
"      --check             load the config, print errors, exit\n"
"      --no-direct         accept into plain process fds, not io_uring direct\n"
"                          descriptors (the default when the kernel has them:\n"
"                          sessions then do not count against RLIMIT_NOFILE;\n"
"                          listeners on * or [::] always use plain fds)\n"
"  -q, --quiet             log errors only\n"
"  -v, --verbose           log every session (debug)\n"
"  -h, --help              this text\n"
"\n"
"BEHAVIOUR (first that applies, per stage)\n"
"  1. limits: sessions past --max-sessions or past limits.per_ip_connections\n"
"     from one IP get 421 at the greeting; MAIL past limits.per_ip_rate\n"
"     (accepted messages per IP and window) gets the profile's rate-limit\n"
"     reply and the session is closed.\n"
"  2. rules from the config (then the profile's), in file order: a rule\n"
"     names a stage (connect ehlo mail rcpt data dot rset quit), may match\n"
"     local/client addresses or prefixes and helo/from/rcpt glob patterns,\n"
"     may fire only with a probability or on every Nth match, and then\n"
"     replies (code, enhanced code, text), delays, stalls, disconnects,\n"
"     sends garbage or an overlong line, or greylists; `drip = N;\n"
"     drip_every = T;` sends the reply N bytes every T. A blocklisted client\n"
"     (blocklist = [...]) gets the profile's block reply at RCPT.\n"
"  3. recipient tags, user+TAG@domain (several: user+slow+dot550@d).\n"
"  4. greylist (greylist.all = true): 451 4.7.1 the first time for a\n"
"     (client IP, sender, recipient) triplet, accepted after greylist.delay.\n"
"  5. the normal reply. A 421 always closes the session.\n"
"\n"
"RECIPIENT TAGS (built in; a profile rewords them with its own text)\n"
"  at RCPT:  550 unknown   550 5.1.1 user unknown\n"
"            disabled      550 5.2.1 mailbox disabled\n"
"            451           451 4.3.0 temporary failure\n"
"            452 full      452 4.2.2 mailbox full\n"
"            552           552 5.2.2 mailbox full (permanent)\n"
"            554           554 5.7.1 relay access denied\n"
"            421           421 4.7.0 and close\n"
"            block         550 5.7.1 blocked (reputation)\n"
"            ratelimit     421 rate limited, close\n"
"            grey          greylisted (451 4.7.1) until greylist.delay passed\n"
"            droprcpt      disconnect without a reply\n"
"            garbage       a reply line that is not SMTP\n"
"            longline      a 5000-byte reply line\n"
"  after the message (end of DATA):\n"
"            slow, slowN   delay the final reply smtp.slow_delay or N seconds\n"
"            stall, stallN say nothing for smtp.stall_time or N s, then close\n"
"            drop          disconnect without a reply\n"
"            auth          550 5.7.23 / the provider's authentication failure\n"
"            spam          554 5.7.1 rejected as spam\n"
"            toobig        552 5.3.4 too large\n"
"            dot421 dot451 dot452 dot550 dot552 dot554   that code\n"
"  Profiles add: gmail, yahoo, outlook: unknown, disabled, full, block,\n"
"  auth, spam, ratelimit, toobig, lowrep with the provider's wording.\n"
"\n"
"SIGNALS\n"
"  SIGUSR1   write the --stats file now\n"
"  SIGTERM, SIGINT   write the --stats file and exit 0\n"
"\n"
"EXIT STATUS\n"
"  0 on a signal-driven stop; 2 on a usage or configuration error\n"
"  (\"file:line: message\" on stderr); 1 on a start-up failure.\n"
"\n"
"EXAMPLES\n"
"  volley-sink --listen 127.0.0.1:2525 --stats /tmp/s.json\n"
"  volley-sink -l 127.0.1.1-127.0.1.50:25 -p gmail --capture /tmp/mail\n"
"  volley-sink -c bench/sink-example.conf --tls\n"
"  swaks --server 127.0.0.1:2525 --to user+550@example.com   # 550 5.1.1\n"
"  kill -USR1 $(pidof volley-sink); cat /tmp/s.json\n"
"\n"
"SEE ALSO\n"
"  docs/sink.md (configuration, profiles, stats format, benchmarks)\n";

/*
 * Accept modes. Plain: one multishot accept per listener; the session gets a
 * process fd, so sessions are capped by RLIMIT_NOFILE. Direct (the default
 * when the kernel has it): accepted sockets go straight into the ring's
 * fixed-file table (io_uring_register_files_sparse, as many slots as the
 * soft RLIMIT_NOFILE) and use no process fd at all. A multishot accept
 * writes every peer address to the same sockaddr, which the next accept may
 * overwrite before its CQE is read, so direct mode uses single-shot accepts,
 * each with its own sockaddr, several in flight per listener, each re-armed
 * on its completion; the local address is the listener's own (so a
 * wildcard listener, which needs getsockname, stays plain). When every slot
 * is taken the accepts park (the connection waits in the backlog, as with
 * EMFILE in plain mode) and re-arm as sessions end.
 */
struct listener;
struct acceptor {
	struct io_op op;
	struct timer retry;
	struct listener *ls;
	struct acceptor *park_next;
	struct sockaddr_storage peer;
	socklen_t peerlen;
};

struct listener {
	struct io_op op;
	struct timer retry;
	int fd;
	int direct;			/* bound to one address: direct accepts */
	struct sockaddr_storage addr;	/* what it is bound to */
	struct acceptor *acc;		/* direct: nacc single-shot accepts */
	char name[64];
};

static struct sink_conf conf;	/* static: reachable until exit */
static struct listener *listeners;
static size_t nlisteners;
static volatile sig_atomic_t got_usr1, got_term;
static const char *stats_path;
static struct timer sweep_timer;
static int no_direct;
/* Direct mode: table slots, slots in use (sessions + closes in flight). */
static unsigned direct_slots, direct_used, direct_inflight, nacc;
static struct acceptor *parked;
static struct io_op close_op;

static void
on_signal(int sig)
{
	if (sig == SIGUSR1)
		got_usr1 = 1;
	else
		got_term = 1;
}

static void usage_error(const char *fmt, ...)
	__attribute__((noreturn, format(printf, 1, 2)));

static void
usage_error(const char *fmt, ...)
{
	va_list va;

	fprintf(stderr, "volley-sink: ");
	va_start(va, fmt);
	vfprintf(stderr, fmt, va);
	va_end(va);
	fprintf(stderr, "\nTry 'volley-sink --help'.\n");
	exit(2);
}

static void on_accept(struct io_op *op, int res, uint32_t flags);

static void
accept_arm(struct listener *ls)
{
	loop_accept_multishot(sink.loop, ls->fd, &ls->op);
}

static void
on_accept_retry(struct timer *t)
{
	accept_arm((struct listener *)((char *)t - offsetof(struct listener, retry)));
}

static void
on_accept(struct io_op *op, int res, uint32_t flags)
{
	struct listener *ls = (struct listener *)op;
	static uint64_t warned_ms;

	if (res >= 0)
		sink_session_start(res);
	else if (res != -ECONNABORTED && res != -EINTR && res != -EAGAIN) {
		uint64_t now = loop_now(sink.loop);
		if (now - warned_ms > 5000 || warned_ms == 0) {
			log_warn("sink", "accept on %s: %s", ls->name, strerror(-res));
			warned_ms = now;
		}
	}
	if (flags & IORING_CQE_F_MORE)
		return;
	if (res < 0 && (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS))
		timer_set(sink.loop, &ls->retry, 100, on_accept_retry);	/* don't spin */
	else
		accept_arm(ls);
}

static void on_accept_direct(struct io_op *op, int res, uint32_t flags);

static void
acc_arm(struct acceptor *a)
{
	if (direct_used + direct_inflight >= direct_slots) {
		a->park_next = parked;	/* every slot taken or promised */
		parked = a;
		return;
	}
	direct_inflight++;
	a->peerlen = sizeof a->peer;
	loop_accept_direct(sink.loop, a->ls->fd, (struct sockaddr *)&a->peer, &a->peerlen, &a->op);
}

static void
on_acc_retry(struct timer *t)
{
	acc_arm((struct acceptor *)((char *)t - offsetof(struct acceptor, retry)));
}

static void
on_accept_direct(struct io_op *op, int res, uint32_t flags)
{
	struct acceptor *a = (struct acceptor *)op;
	static uint64_t warned_ms;

	(void)flags;
	direct_inflight--;
	if (res >= 0) {
		direct_used++;
		sink_session_start_direct((unsigned)res, (struct sockaddr *)&a->peer,
		    (struct sockaddr *)&a->ls->addr);
		acc_arm(a);
		return;
	}
	if (res != -ECONNABORTED && res != -EINTR && res != -EAGAIN) {
		uint64_t now = loop_now(sink.loop);
		if (now - warned_ms > 5000 || warned_ms == 0) {
			log_warn("sink", "accept on %s: %s", a->ls->name, strerror(-res));
			warned_ms = now;
		}
		timer_set(sink.loop, &a->retry, 100, on_acc_retry);	/* don't spin */
		return;
	}
	acc_arm(a);
}

static void
on_close_direct(struct io_op *op, int res, uint32_t flags)
{
	(void)op;
	(void)flags;
	if (res < 0)
		log_warn("sink", "close of a direct descriptor: %s", strerror(-res));
	direct_used--;
	while (parked != NULL && direct_used + direct_inflight < direct_slots) {
		struct acceptor *a = parked;
		parked = a->park_next;
		acc_arm(a);
	}
}

void
sink_direct_release(unsigned slot)
{
	/* The slot counts as used until the close completes. */
	loop_close_direct(sink.loop, slot, &close_op);
}

static void
listener_arm(struct listener *ls)
{
	if (!ls->direct || direct_slots == 0) {
		accept_arm(ls);
		return;
	}
	ls->acc = xcalloc(nacc, sizeof *ls->acc);
	for (unsigned i = 0; i < nacc; i++) {
		ls->acc[i].op.cb = on_accept_direct;
		ls->acc[i].ls = ls;
		acc_arm(&ls->acc[i]);
	}
}

/* probe_cb - the probe's accept (static op: a late CQE finds it). */
static int probe_res, probe_done;
static void
probe_cb(struct io_op *op, int res, uint32_t flags)
{
	(void)op;
	(void)flags;
	if (probe_done++ == 0)
		probe_res = res;
	else if (res >= 0)	/* completed after we gave up: give it back */
		loop_close_direct(sink.loop, (unsigned)res, NULL);
}

/*
 * direct_probe - register the table and accept one loopback connection
 * as a direct descriptor; returns 0 if that worked, else -errno (and a
 * reason in *why).
 */
static int
direct_probe(unsigned slots, const char **why)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof sa;
	struct sockaddr_storage peer;
	socklen_t pl = sizeof peer;
	static struct io_op op = { probe_cb };
	int lfd, cfd, r;

	r = loop_register_files_sparse(sink.loop, slots);
	if (r < 0) {
		*why = "io_uring_register_files_sparse";
		return r;
	}
	*why = "the probe accept";
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return -errno;
	if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 4) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0) {
		r = -errno;
		close(lfd);
		return r;
	}
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (cfd < 0 || (connect(cfd, (struct sockaddr *)&sa, sizeof sa) != 0 &&
	    errno != EINPROGRESS)) {
		r = -errno;
		if (cfd >= 0)
			close(cfd);
		close(lfd);
		return r;
	}
	probe_done = 0;
	loop_accept_direct(sink.loop, lfd, (struct sockaddr *)&peer, &pl, &op);
	for (int i = 0; i < 200 && !probe_done; i++)
		loop_turn(sink.loop, 10);
	if (!probe_done) {	/* no completion in 2 s: give up on it */
		probe_done = 1;
		loop_cancel_op(sink.loop, &op);
		loop_turn(sink.loop, 0);
		*why = "the probe accept (no completion)";
		r = -ETIMEDOUT;
	} else if (probe_res >= 0) {
		loop_close_direct(sink.loop, (unsigned)probe_res, NULL);
		loop_turn(sink.loop, 0);
		r = pl > 0 && peer.ss_family == AF_INET ? 0 : -EPROTO;
		if (r)
			*why = "the probe accept (no peer address)";
	} else
		r = probe_res;
	close(cfd);
	close(lfd);
	return r;
}

/* setup_direct - decide the accept mode and log it. */
static void
setup_direct(unsigned long nofile)
{
	const char *why = NULL;
	size_t ndirect = 0;
	int r;

	for (size_t i = 0; i < nlisteners; i++)
		ndirect += listeners[i].direct != 0;
	if (no_direct || ndirect == 0 || nofile == 0) {
		log_info("sink", "accept mode: plain fds (%s), up to ~%lu sessions",
		    no_direct ? "--no-direct" : ndirect == 0 ? "only wildcard listeners" :
		    "no RLIMIT_NOFILE", nofile);
		return;
	}
	direct_slots = nofile > 1000000 ? 1000000 : (unsigned)nofile;
	r = direct_probe(direct_slots, &why);
	if (r < 0) {
		/* A table that was registered stays (unused): harmless. */
		log_warn("sink", "accept mode: plain fds, direct descriptors not available "
		    "(%s: %s)", why, strerror(-r));
		direct_slots = 0;
		return;
	}
	if (ndirect > direct_slots / 2) {
		/* Every listener needs an accept armed at all times; with
		 * more listeners than half the table, some would starve. */
		log_warn("sink", "accept mode: plain fds (%zu listeners for %u table slots)",
		    ndirect, direct_slots);
		direct_slots = 0;
		for (size_t i = 0; i < nlisteners; i++)
			listeners[i].direct = 0;
		return;
	}
	close_op.cb = on_close_direct;
	/* Accepts in flight promise slots: keep all of them together within
	 * half the table, at least one per listener, so no listener starves
	 * while the table has room. */
	nacc = ndirect <= 64 ? 16 : ndirect <= 1024 ? 4 : 1;
	while (nacc > 1 && (size_t)ndirect * nacc > direct_slots / 2)
		nacc /= 2;
	log_info("sink", "accept mode: direct descriptors, %u table slots (soft RLIMIT_NOFILE), "
	    "%u accepts in flight per listener%s", direct_slots, nacc,
	    ndirect < nlisteners ? "; wildcard listeners use plain fds" : "");
}

static void
listen_one(const struct sockaddr *sa, socklen_t sl, const char *name)
{
	int one = 1, fd;
	struct listener *ls;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fatal("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	/* Accepted sockets inherit TCP_NODELAY from the listener (Linux). */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, sa, sl) != 0)
		fatal("listen %s: bind: %s", name, strerror(errno));
	if (listen(fd, 4096) != 0)
		fatal("listen %s: %s", name, strerror(errno));
	listeners = xrealloc(listeners, (nlisteners + 1) * sizeof *listeners);
	ls = &listeners[nlisteners++];
	memset(ls, 0, sizeof *ls);
	ls->fd = fd;
	ls->op.cb = on_accept;
	memcpy(&ls->addr, sa, sl);
	ls->direct = sa->sa_family == AF_INET ?
	    ((const struct sockaddr_in *)sa)->sin_addr.s_addr != htonl(INADDR_ANY) :
	    !IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	snprintf(ls->name, sizeof ls->name, "%s", name);
}

/* "ADDR:PORT", "A-B:PORT" (IPv4 range), "[v6]:PORT", "*:PORT", ":PORT". */
static int
listen_spec(const char *spec, int dry)
{
	char host[128], *dash;
	const char *colon;
	char *end;
	long port;

	if (spec[0] == '[') {
		const char *rb = strchr(spec, ']');
		if (rb == NULL || rb[1] != ':' || (size_t)(rb - spec) >= sizeof host)
			return -1;
		memcpy(host, spec + 1, (size_t)(rb - spec - 1));
		host[rb - spec - 1] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(spec, ':');
		if (colon == NULL || (size_t)(colon - spec) >= sizeof host)
			return -1;
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = '\0';
	}
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || end == colon + 1 || port < 1 || port > 65535)
		return -1;
	if (spec[0] == '[') {
		struct sockaddr_in6 s6;
		memset(&s6, 0, sizeof s6);
		s6.sin6_family = AF_INET6;
		s6.sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &s6.sin6_addr) != 1)
			return -1;
		if (!dry)
			listen_one((struct sockaddr *)&s6, sizeof s6, spec);
		return 0;
	}
	if (host[0] == '\0' || strcmp(host, "*") == 0)
		snprintf(host, sizeof host, "0.0.0.0");
	dash = strchr(host, '-');
	{
		struct in_addr a, b;
		uint32_t lo, hi;

		if (dash)
			*dash = '\0';
		if (inet_pton(AF_INET, host, &a) != 1)
			return -1;
		b = a;
		if (dash && inet_pton(AF_INET, dash + 1, &b) != 1)
			return -1;
		lo = ntohl(a.s_addr);
		hi = ntohl(b.s_addr);
		if (hi < lo || hi - lo > 65535)
			return -1;
		for (uint64_t ip = lo; ip <= hi && !dry; ip++) {
			struct sockaddr_in s4;
			char name[64], ipt[INET_ADDRSTRLEN];
			memset(&s4, 0, sizeof s4);
			s4.sin_family = AF_INET;
			s4.sin_port = htons((uint16_t)port);
			s4.sin_addr.s_addr = htonl((uint32_t)ip);
			inet_ntop(AF_INET, &s4.sin_addr, ipt, sizeof ipt);
			snprintf(name, sizeof name, "%s:%ld", ipt, port);
			listen_one((struct sockaddr *)&s4, sizeof s4, name);
		}
	}
	return 0;
}

static void
stats_dump(const char *why)
{
	struct sink_counters *t = sink_totals();

	if (stats_path != NULL && sink_stats_write(stats_path, loop_refresh_now(sink.loop)) != 0)
		log_error("sink", "stats %s: %s", stats_path, strerror(errno));
	if (!sink.quiet)
		log_info("sink", "%s: sessions %llu (now %u, max %u), messages %llu, recipients "
		    "%llu, bytes %llu", why, (unsigned long long)t->sessions_total, t->cur, t->max,
		    (unsigned long long)t->messages, (unsigned long long)t->recipients,
		    (unsigned long long)t->bytes);
}

static void
on_sweep(struct timer *t)
{
	(void)t;
	sink_session_sweep(loop_now(sink.loop));
	timer_set(sink.loop, &sweep_timer, 5000, on_sweep);
}

static void
end_of_turn(void *arg)
{
	(void)arg;
	sink_session_flush_all();
	if (got_usr1) {
		got_usr1 = 0;
		stats_dump("SIGUSR1");
	}
	if (got_term) {
		stats_dump("exit");
		loop_stop(sink.loop);
	}
}

/*
 * Room for max_sessions sockets: as root, raise the hard limit too. Returns
 * the soft limit (the size of the direct-descriptor table).
 */
static unsigned long
raise_nofile(unsigned want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max < want) {
		struct rlimit n = { want, want };
		FILE *f = fopen("/proc/sys/fs/nr_open", "r");
		unsigned long nr = 0;
		if (f) {
			if (fscanf(f, "%lu", &nr) != 1)
				nr = 0;
			fclose(f);
		}
		if (nr && n.rlim_max > nr)
			n.rlim_cur = n.rlim_max = nr;
		(void)setrlimit(RLIMIT_NOFILE, &n);	/* fails unless privileged: fine */
	}
	return loop_raise_nofile();
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "config", required_argument, NULL, 'c' },
		{ "capture", required_argument, NULL, 'C' },
		{ "stats", required_argument, NULL, 'S' },
		{ "profile", required_argument, NULL, 'p' },
		{ "tls", no_argument, NULL, 'T' },
		{ "tls-cert", required_argument, NULL, 'E' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ "tls-implicit", no_argument, NULL, 'I' },
		{ "auth", required_argument, NULL, 'A' },
		{ "auth-clear", no_argument, NULL, 'a' },
		{ "max-sessions", required_argument, NULL, 'M' },
		{ "size", required_argument, NULL, 'Z' },
		{ "hostname", required_argument, NULL, 'H' },
		{ "seed", required_argument, NULL, 'R' },
		{ "check", no_argument, NULL, 'k' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "no-direct", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cfg = NULL, *profile = NULL, *cert = NULL, *key = NULL, *capture = NULL;
	const char *hostname = NULL, *auth = NULL;
	char **cli_listen = NULL;
	size_t ncli = 0;
	int tls = 0, implicit = 0, auth_clear = 0, check = 0, quiet = 0, verbose = 0, o;
	unsigned long long max_sessions = 0, size = 0, seed = 0;
	int have_seed = 0;
	char exe[PATH_MAX], *exe_dir = NULL, *err = NULL;
	struct loop_hook hook;
	struct sigaction sa;
	ssize_t el;
	unsigned long nofile;

	log_init("volley-sink");
	while ((o = getopt_long(argc, argv, "l:c:p:qvh", opts, NULL)) != -1) {
		char *end;
		switch (o) {
		case 'l':
			cli_listen = xrealloc(cli_listen, (ncli + 1) * sizeof *cli_listen);
			cli_listen[ncli++] = optarg;
			break;
		case 'c': cfg = optarg; break;
		case 'C': capture = optarg; break;
		case 'S': stats_path = optarg; break;
		case 'p': profile = optarg; break;
		case 'T': tls = 1; break;
		case 'E': cert = optarg; tls = 1; break;
		case 'K': key = optarg; tls = 1; break;
		case 'I': implicit = 1; tls = 1; break;
		case 'A':
			if (strchr(optarg, ':') == NULL || optarg[0] == ':' || strchr(optarg, ':')[1] == '\0')
				usage_error("--auth wants USER:PASSWORD, got %s", optarg);
			auth = optarg;
			break;
		case 'a': auth_clear = 1; break;
		case 'M':
		case 'Z':
		case 'R':
			errno = 0;
			{
				unsigned long long v = strtoull(optarg, &end, 10);
				if (errno || *end || end == optarg || optarg[0] == '-')
					usage_error("not a number: %s", optarg);
				if (o == 'M')
					max_sessions = v;
				else if (o == 'Z')
					size = v;
				else {
					seed = v;
					have_seed = 1;
				}
			}
			break;
		case 'H': hostname = optarg; break;
		case 'k': check = 1; break;
		case 'D': no_direct = 1; break;
		case 'q': quiet = 1; break;
		case 'v': verbose = 1; break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			fprintf(stderr, "Try 'volley-sink --help'.\n");
			return 2;
		}
	}
	if (optind < argc)
		usage_error("unexpected argument: %s", argv[optind]);
	if (quiet)
		log_level_max = LOG_ERROR;
	if (verbose)
		log_level_max = LOG_DEBUG;

	el = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (el > 0) {
		exe[el] = '\0';
		exe_dir = xstrdup(dirname(exe));
	}
	sink_conf_defaults(&conf);
	o = (cfg || profile) ? sink_conf_load(&conf, cfg, profile, exe_dir, &err) : 0;
	free(exe_dir);
	if (o != 0) {
		fprintf(stderr, "%s\n", err ? err : "config error");
		free(err);
		free(cli_listen);
		sink_conf_free(&conf);
		return 2;
	}
	if (ncli > 0) {
		for (size_t i = 0; i < conf.nlisten; i++)
			free(conf.listen[i]);
		free(conf.listen);
		conf.listen = NULL;
		conf.nlisten = 0;
		for (size_t i = 0; i < ncli; i++) {
			conf.listen = xrealloc(conf.listen, (conf.nlisten + 1) * sizeof *conf.listen);
			conf.listen[conf.nlisten++] = xstrdup(cli_listen[i]);
		}
	}
	free(cli_listen);
	for (size_t i = 0; i < conf.nlisten; i++)
		if (listen_spec(conf.listen[i], 1) != 0) {
			fprintf(stderr, "volley-sink: listen: \"%s\" is not ADDR:PORT, A-B:PORT or "
			    "[IPv6]:PORT\n", conf.listen[i]);
			return 2;
		}
	if (tls)
		conf.tls = 1;
	if (cert) {
		free(conf.tls_cert);
		conf.tls_cert = xstrdup(cert);
	}
	if (key) {
		free(conf.tls_key);
		conf.tls_key = xstrdup(key);
	}
	if (auth) {
		const char *c = strchr(auth, ':');
		free(conf.auth_user);
		free(conf.auth_pass);
		conf.auth_user = xstrndup(auth, (size_t)(c - auth));
		conf.auth_pass = xstrdup(c + 1);
	}
	if (auth_clear)
		conf.auth_clear = 1;
	if (max_sessions)
		conf.max_sessions = (uint32_t)(max_sessions > 1000000 ? 1000000 : max_sessions);
	if (size)
		conf.size = size;
	if (have_seed)
		conf.seed = seed;
	if (hostname) {
		free(conf.hostname);
		conf.hostname = xstrdup(hostname);
	}
	sink_conf_finish(&conf);
	if (check) {
		printf("ok: %zu listen, %zu rules, %zu tags%s%s\n", conf.nlisten, conf.nrules,
		    conf.ntags, conf.profile ? ", profile " : "", conf.profile ? conf.profile : "");
		sink_conf_free(&conf);
		return 0;
	}
	if (conf.nlisten == 0)
		usage_error("%s", "nothing to listen on: give --listen ADDR:PORT or listen = [...]");
	if (capture) {
		struct stat st;
		if (stat(capture, &st) != 0 && mkdir(capture, 0755) != 0)
			fatal("--capture %s: %s", capture, strerror(errno));
		if (access(capture, W_OK) != 0)
			fatal("--capture %s: not writable", capture);
	}

	memset(&sink, 0, sizeof sink);
	sink.conf = &conf;
	sink.capture_dir = capture;
	sink.rng = conf.seed ? conf.seed : 1;
	sink.quiet = quiet;
	if (conf.tls)
		sink.tls = sink_tls_ctx(conf.tls_cert, conf.tls_key);
	sink.tls_implicit = implicit;

	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;	/* no SA_RESTART: the ring wait returns EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	nofile = raise_nofile(conf.max_sessions + 1024);
	sink.loop = loop_new(4096, 1024, 4096);
	sink_stats_init(loop_now(sink.loop));
	for (size_t i = 0; i < conf.nlisten; i++)
		listen_spec(conf.listen[i], 0);
	setup_direct(nofile);
	for (size_t i = 0; i < nlisteners; i++)
		listener_arm(&listeners[i]);
	hook.fn = end_of_turn;
	hook.arg = NULL;
	loop_add_hook(sink.loop, &hook);
	timer_set(sink.loop, &sweep_timer, 5000, on_sweep);
	log_info("sink", "listening on %zu address%s (%s%s), profile %s, %s %s, AUTH %s, pid %d",
	    nlisteners, nlisteners == 1 ? "" : "es", conf.listen[0],
	    conf.nlisten > 1 ? ", ..." : "", conf.profile ? conf.profile : "none",
	    implicit ? "implicit TLS" : "STARTTLS", sink.tls ? "on" : "off",
	    conf.auth_user ? (conf.auth_clear ? "on (also without TLS)" : "on") : "off",
	    (int)getpid());

	while (!got_term)
		loop_run(sink.loop);
	for (size_t i = 0; i < nlisteners; i++)
		close(listeners[i].fd);
	return 0;
}
