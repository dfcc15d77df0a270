# tests/lib.sh - the test lab: sourced by every integration test, the demo
# and the bench. Not executable on its own.
#
# Owns: one temp dir per test ($T, from mktemp -d) and every process started
# through it (redis-server, dnsmasq, smtp-sink, volley-sink, volley, Postfix
# master). The EXIT trap (`cleanup`) kills all of them and removes $T; set
# KEEP=1 to keep $T for a post-mortem. Everything listens on loopback only,
# on ports picked free at run time below the ephemeral range (so a test
# never collides with another test running at the same time, nor with the
# thousands of outbound sockets an engine under test opens).
#
# API (all functions return non-zero on failure; tests usually `|| bail`):
#   free_port                       print a free TCP+UDP port in 20000-32767
#   start_redis [--aof]             $REDIS_PORT, $REDIS_DIR; waits for PING
#   stop_redis [-9]                 SIGTERM (clean shutdown) or SIGKILL
#   restart_redis                   same port, same dir (AOF kept)
#   redis_cli ARGS...               redis-cli -p $REDIS_PORT (raw output)
#   start_dns LINE... | start_dns < lines
#                                   dnsmasq with those config lines
#                                   (mx-host=..., host-record=...); $DNS_PORT
#   start_smtp_sink [--nodump] ADDR PORT [smtp-sink flags...]
#                                   Postfix's smtp-sink; dumps one file per
#                                   message under $(sink_dir ADDR)
#   start_volley_sink [--nocapture] ADDR PORT [args...]
#                                   build/volley-sink (--capture sink_dir)
#   stop_sink ADDR                  stop the sink on ADDR
#   sink_dir ADDR                   the dump dir of the sink on ADDR
#   sink_count ADDR...              dump files so far
#   smtp_send ADDR PORT FROM TO FILE  one message via Python's smtplib
#   dns_domain D ADDR [PREF]        print dnsmasq lines: D has MX mx.D at ADDR
#   dns_query NAME [A|MX]           ask the lab's dnsmasq (tests/dnsq.py)
#   wait_listen ADDR PORT [secs]    until something listens there
#   write_config FILE               a volley config for this lab (see below)
#   wait_for SECS CMD...            poll CMD every 0.2 s until it succeeds
#   events ARGS...                  tests/events.py against this Redis
#   dumps ARGS...                   tests/dumps.py
#   bg_volley LOG ARGS...           start $VOLLEY ARGS in the background,
#                                   pid in $VOLLEY_PID, output in LOG
#   run_drain LOG SECS ARGS...      `volley run ARGS --drain` under timeout;
#                                   sets DRAIN_RC (124: timed out), DRAIN_MS
#   wait_pid PID SECS               wait for a background child; WAIT_RC
#   kill9 PID                       SIGKILL a background child, wait it out
#   xpending_count                  entries pending in volley:jobs/volley
#   need_volley                     fail the test at once if no engine binary
#   ok DESC / not_ok DESC [detail] / check DESC CMD... / is DESC GOT WANT
#   bail MSG                        not_ok and exit now
#   done_testing                    print the tally; exit 1 if anything failed
#
# Invariants: $T is mode 755 so the unprivileged smtp-sink (-u nobody) can
# reach its dump dirs (made 1777). Processes are killed by their own pid,
# never by name. Debian's /usr/bin/python3 is used explicitly (the python3
# first on PATH may be a pyenv one without the system modules).

set -u

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LAB_DIR/.." && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)

VOLLEY_BUILD=${VOLLEY_BUILD:-build}
case "$VOLLEY_BUILD" in
/*) BUILD_DIR=$VOLLEY_BUILD ;;
*) BUILD_DIR=$ROOT/$VOLLEY_BUILD ;;
esac
VOLLEY=$BUILD_DIR/volley
SINK=$BUILD_DIR/volley-sink

# run.sh sets LAB_PARENT so it can sweep up after a test killed by timeout
T=$(mktemp -d "${LAB_PARENT:-${TMPDIR:-/tmp}}/volley-lab.XXXXXX") || { echo "mktemp failed" >&2; exit 1; }
chmod 755 "$T"
mkdir -p "$T/dump" "$T/pids"

LAB_PIDS=()		# background children (smtp-sink, volley, ...)
REDIS_PORT='' REDIS_DIR='' REDIS_AOF=no
DNS_PORT=''
VOLLEY_PID=''
TESTS_RUN=0 TESTS_FAILED=0
TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}

am_root() { [ "$(id -u)" -eq 0 ]; }

# kill_pid PID: TERM, up to 3 s grace, then KILL. Only our own pids.
kill_pid() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 30); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	for i in $(seq 20); do	# gone, its sockets closed, before the next one binds
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	return 0
}

kill_pidfile() {
	local f=$1
	[ -s "$f" ] || return 0
	kill_pid "$(cat "$f" 2>/dev/null)"
}

cleanup() {
	local rc=$? p f
	trap - EXIT INT TERM
	for p in "${LAB_PIDS[@]}"; do
		disown "$p" 2>/dev/null   # no "Killed" job notices
		kill -KILL "$p" 2>/dev/null   # volley, sinks: no grace needed
	done
	for f in "$T"/pids/*.pid; do
		[ -e "$f" ] && kill_pidfile "$f"
	done
	if [ "${KEEP:-0}" = 1 ]; then
		echo "# KEEP=1: lab dir kept at $T" >&2
	else
		rm -rf "$T"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- reporting ------------------------------------------------------------

ok() { TESTS_RUN=$((TESTS_RUN + 1)); echo "ok $TESTS_RUN - $1"; }
not_ok() {
	TESTS_RUN=$((TESTS_RUN + 1)); TESTS_FAILED=$((TESTS_FAILED + 1))
	echo "not ok $TESTS_RUN - $1"
	shift
	local l
	for l in "$@"; do printf '%s\n' "$l" | sed 's/^/#   /'; done
}
note() { echo "# $*"; }
# check DESC CMD...: ok if CMD succeeds; on failure its output is shown.
check() {
	local desc=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$desc"
	else
		not_ok "$desc" "$(printf '%s\n' "$out" | head -20)"
	fi
}
# is DESC GOT WANT
is() {
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got:  '$2'" "want: '$3'"; fi
}
bail() { not_ok "$1"; shift; for l in "$@"; do echo "#   $l"; done; done_testing; }
done_testing() {
	echo "# $TEST_NAME: $TESTS_RUN checks, $TESTS_FAILED failed"
	[ "$TESTS_FAILED" -eq 0 ] && [ "$TESTS_RUN" -gt 0 ] && exit 0
	exit 1
}
# need_volley: skip-as-failure with a clear message when the engine is absent.
need_volley() {
	[ -x "$VOLLEY" ] || bail "engine binary $VOLLEY not built"
}

# --- helpers ----------------------------------------------------------------

# wait_for SECS CMD...: poll every 0.2 s.
wait_for() {
	local secs=$1 end
	shift
	end=$(($(date +%s%N) / 1000000 + secs * 1000))
	while :; do
		"$@" >/dev/null 2>&1 && return 0
		[ $(($(date +%s%N) / 1000000)) -ge $end ] && return 1
		sleep 0.2
	done
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# free_port: a port free for TCP and UDP on every address, outside the
# ephemeral range (32768-60999), never handed out twice in one lab.
free_port() {
	"$PY" - "$T/ports" <<'EOF'
import random, socket, sys, os
used = set()
path = sys.argv[1]
if os.path.exists(path):
    used = {int(x) for x in open(path).read().split()}
for _ in range(500):
    p = random.randint(20000, 32700)
    if p in used:
        continue
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind(("0.0.0.0", p))
            finally:
                s.close()
    except OSError:
        continue
    with open(path, "a") as f:
        f.write("%d\n" % p)
    print(p)
    sys.exit(0)
sys.exit("no free port")
EOF
}

# wait_listen ADDR PORT [SECS]
is_listening() {
	ss -Hltn 2>/dev/null | awk '{print $4}' | grep -qxF "$1:$2"
}
wait_listen() { wait_for "${3:-10}" is_listening "$1" "$2"; }
not_listening() { ! is_listening "$1" "$2"; }

# --- redis --------------------------------------------------------------------

redis_cli() { redis-cli -p "$REDIS_PORT" "$@"; }

_redis_launch() {
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" \
		--save "" --appendonly "$REDIS_AOF" --appendfsync always \
		--daemonize yes --pidfile "$T/pids/redis.pid" \
		--logfile "$REDIS_DIR/redis.log" --protected-mode yes \
		--maxclients 1000 >/dev/null || return 1
	wait_for 10 redis_ping || { cat "$REDIS_DIR/redis.log" >&2; return 1; }
}
redis_ping() { [ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ]; }

start_redis() {
	REDIS_AOF=no
	[ "${1:-}" = --aof ] && REDIS_AOF=yes
	REDIS_PORT=$(free_port) || return 1
	REDIS_DIR=$T/redis
	mkdir -p "$REDIS_DIR"
	_redis_launch
}

stop_redis() {
	local f=$T/pids/redis.pid pid i
	[ -s "$f" ] || return 0
	pid=$(cat "$f")
	if [ "${1:-}" = -9 ]; then
		kill -KILL "$pid" 2>/dev/null
	else
		kill -TERM "$pid" 2>/dev/null
	fi
	for i in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	rm -f "$f"
	# the port must be free again before a restart binds it
	wait_for 10 sh -c "! ss -Hltn | awk '{print \$4}' | grep -qxF 127.0.0.1:$REDIS_PORT"
}

restart_redis() { _redis_launch; }

# --- dns ------------------------------------------------------------------------

# start_dns [LINE...]: dnsmasq answering for *.test only; every other name
# under .test is NXDOMAIN. With no arguments the lines come from stdin.
start_dns() {
	local conf=$T/dnsmasq.conf l
	DNS_PORT=$(free_port) || return 1
	{
		echo "port=$DNS_PORT"
		echo "listen-address=127.0.0.1"
		echo "bind-interfaces"
		echo "no-resolv"
		echo "no-hosts"
		echo "no-negcache"
		echo "local=/test/"
		echo "local-ttl=60"
		echo "user=nobody"
		if [ $# -gt 0 ]; then
			for l in "$@"; do echo "$l"; done
		else
			cat
		fi
	} >"$conf"
	dnsmasq --conf-file="$conf" --pid-file="$T/pids/dnsmasq.pid" \
		--log-facility="$T/dnsmasq.log" 2>"$T/dnsmasq.err" ||
		{ cat "$T/dnsmasq.err" >&2; return 1; }
	wait_for 10 dns_ready || { echo "dnsmasq did not answer" >&2; return 1; }
}
dns_ready() {
	"$PY" "$LAB_DIR/dnsq.py" 127.0.0.1 "$DNS_PORT" probe.test MX >/dev/null
}
# dns_query NAME TYPE: print the answer (for checks and debugging)
dns_query() { "$PY" "$LAB_DIR/dnsq.py" 127.0.0.1 "$DNS_PORT" "$1" "${2:-A}"; }

# dns_domain DOMAIN ADDR [PREF]: the lines for "DOMAIN has one MX mx.DOMAIN
# at ADDR" (print them; feed to start_dns).
dns_domain() {
	echo "mx-host=$1,mx.$1,${3:-10}"
	echo "host-record=mx.$1,$2"
}

# --- SMTP sinks ---------------------------------------------------------------

sink_dir() { echo "$T/dump/$1"; }

# start_smtp_sink [--nodump] ADDR PORT [flags...]
start_smtp_sink() {
	local dump=1 addr port dir pid
	if [ "${1:-}" = --nodump ]; then dump=0; shift; fi
	addr=$1 port=$2
	shift 2
	dir=$(sink_dir "$addr")
	mkdir -p "$dir"
	chmod 1777 "$dir"
	if am_root && ! runuser -u nobody -- test -w "$dir" 2>/dev/null; then
		echo "start_smtp_sink: $dir is not writable by nobody (is a parent dir mode 700?)" >&2
		return 1
	fi
	local args=(-m 12000 -h "sink-$addr")
	wait_for 5 not_listening "$addr" "$port" ||
		{ echo "smtp-sink on $addr:$port: the port is still taken" >&2; return 1; }
	am_root && args+=(-u nobody)
	[ $dump = 1 ] && args+=(-d "$dir/%M.")
	/usr/sbin/smtp-sink "${args[@]}" "$@" "$addr:$port" 4096 \
		>"$T/smtp-sink-$addr.log" 2>&1 &
	pid=$!
	disown "$pid"
	LAB_PIDS+=("$pid")
	echo "$pid" >"$T/pids/smtp-sink-$addr.pid"
	wait_listen "$addr" "$port" 10 ||
		{ echo "smtp-sink on $addr:$port did not start:" >&2; cat "$T/smtp-sink-$addr.log" >&2; return 1; }
}

stop_sink() { kill_pidfile "$T/pids/smtp-sink-$1.pid"; kill_pidfile "$T/pids/volley-sink-$1.pid"; }

# make_postfix_dirs PF: the queue and data directories of a private
# Postfix instance under PF (owned as Postfix wants them); PF/etc too.
make_postfix_dirs() {
	local pf=$1 d
	mkdir -p "$pf/etc" "$pf/data" "$pf/queue"
	for d in active bounce corrupt defer deferred flush hold incoming private saved trace; do
		mkdir -p "$pf/queue/$d"
		chown postfix:root "$pf/queue/$d"
		chmod 700 "$pf/queue/$d"
	done
	mkdir -p "$pf/queue/maildrop" "$pf/queue/public" "$pf/queue/pid"
	chown postfix:postdrop "$pf/queue/maildrop" "$pf/queue/public"
	chmod 730 "$pf/queue/maildrop"
	chmod 710 "$pf/queue/public"
	chown postfix "$pf/data"
	chmod 700 "$pf/data"
}

# write_postfix_master_cf FILE LISTEN MAXPROC: master.cf of a private
# Postfix instance (a test's smtpd, the bench's relay): smtpd on LISTEN
# (ADDR:PORT) with at most MAXPROC processes, and the usual services.
write_postfix_master_cf() {
	{
		echo "$2 inet n - n - $3 smtpd"
		cat <<'EOF'
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
	} >"$1"
}

# start_volley_sink [--nocapture] ADDR PORT [args...]: the project's sink,
# capturing into $(sink_dir ADDR) unless --nocapture.
start_volley_sink() {
	local addr port dir pid cap=1
	if [ "${1:-}" = --nocapture ]; then cap=0; shift; fi
	addr=$1 port=$2
	shift 2
	dir=$(sink_dir "$addr")
	mkdir -p "$dir"
	local args=(--listen "$addr:$port")
	[ $cap = 1 ] && args+=(--capture "$dir")
	# A sink stopped just before on this address may still hold the port:
	# seeing its socket would pass for this one's, which then fails to bind.
	wait_for 5 not_listening "$addr" "$port" ||
		{ echo "volley-sink on $addr:$port: the port is still taken" >&2; return 1; }
	"$SINK" "${args[@]}" "$@" \
		>"$T/volley-sink-$addr.log" 2>&1 &
	pid=$!
	disown "$pid"
	LAB_PIDS+=("$pid")
	echo "$pid" >"$T/pids/volley-sink-$addr.pid"
	wait_listen "$addr" "$port" 10 && kill -0 "$pid" 2>/dev/null ||
		{ echo "volley-sink on $addr:$port did not start:" >&2; cat "$T/volley-sink-$addr.log" >&2; return 1; }
}

# sink_count ADDR...: messages dumped so far by those sinks
sink_count() {
	local n=0 a
	for a in "$@"; do
		n=$((n + $(find "$(sink_dir "$a")" -type f 2>/dev/null | wc -l)))
	done
	echo $n
}

# smtp_send ADDR PORT FROM TO FILE: one message through smtplib (which
# dot-stuffs; line ends are made CRLF first: smtp-sink only un-stuffs after
# CRLF; unlike swaks, nothing is appended to the message). Prints "250 ..."
# or the error; exit 0 on 2xx.
smtp_send() {
	"$PY" - "$@" <<'EOF'
import re, smtplib, sys
addr, port, frm, to, path = sys.argv[1:6]
# smtplib only fixes line ends of str messages: do it for bytes here
data = re.sub(rb"\r?\n", b"\r\n", open(path, "rb").read())
try:
    s = smtplib.SMTP(addr, int(port), "lab.test", timeout=20)
    s.ehlo("lab.test")
    s.sendmail(frm, [to], data)
    print("250 sent")
    s.quit()
except smtplib.SMTPResponseException as e:
    print(e.smtp_code, e.smtp_error.decode("latin-1", "replace"))
    sys.exit(1)
except smtplib.SMTPRecipientsRefused as e:
    code, msg = list(e.recipients.values())[0]
    print(code, msg.decode("latin-1", "replace"))
    sys.exit(1)
except (OSError, smtplib.SMTPException) as e:
    print("error:", e.__class__.__name__, e)
    sys.exit(1)
EOF
}

# --- volley ---------------------------------------------------------------------

# write_config FILE: a config for this lab. Knobs (environment):
#   SINK_PORT (required), CFG_INSTANCE, CFG_RETRY ("[1s, 2s]"),
#   CFG_MAX_AGE (30s), CFG_LEASE (5s), CFG_SMTP_EXTRA (UCL lines inside
#   smtp { }), CFG_EXTRA (UCL appended at the end).
write_config() {
	cat >"$1" <<EOF
# generated by tests/lib.sh for $TEST_NAME
instance = "${CFG_INSTANCE:-lab-$TEST_NAME}";
redis {
  url = "redis://127.0.0.1:$REDIS_PORT/0";
  prefix = "volley:";
  lease = ${CFG_LEASE:-5s};
}
dns {
  servers = ["127.0.0.1:$DNS_PORT"];
  allow_private = true;   # the lab's MX hosts live on loopback
}
smtp {
  port = $SINK_PORT;
  ehlo = "mta.test";
  retry = ${CFG_RETRY:-[1s, 2s]};
  max_age = ${CFG_MAX_AGE:-30s};
  timeouts {
    connect = 5s;
    greeting = 10s;
    ehlo = 10s;
    mail = 10s;
    rcpt = 10s;
    data = 10s;
    block = 10s;
    dot = 30s;
  }
${CFG_SMTP_EXTRA:-}
}
${CFG_EXTRA:-}
EOF
}

# bg_volley LOG ARGS...: run the engine in the background.
bg_volley() {
	local log=$1
	shift
	"$VOLLEY" "$@" >"$log" 2>&1 </dev/null &
	VOLLEY_PID=$!
	LAB_PIDS+=("$VOLLEY_PID")
}

# kill9 PID: SIGKILL a background child (the crash test's "kill -9") and
# wait until it is gone, without bash's "Killed" job notice.
kill9() {
	disown "$1" 2>/dev/null
	kill -KILL "$1" 2>/dev/null
	wait_for 10 sh -c "! kill -0 $1 2>/dev/null"
}

# wait_pid PID SECS: wait for a background child to exit; sets WAIT_RC to
# its exit status, 124 if it was still running at the deadline (it is then
# killed). Not in $(...): only this shell can wait for its children.
wait_pid() {
	local pid=$1 secs=$2 end
	end=$(($(now_ms) + secs * 1000))
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$(now_ms)" -ge $end ]; then
			kill9 "$pid"
			WAIT_RC=124
			return 0
		fi
		sleep 0.1
	done
	wait "$pid" 2>/dev/null
	WAIT_RC=$?
}

# run_drain LOG SECS ARGS...: `volley run --drain` with a deadline; sets
# DRAIN_RC (124 on timeout) and DRAIN_MS.
run_drain() {
	local log=$1 secs=$2 t0
	shift 2
	t0=$(now_ms)
	timeout -k 5 "$secs" "$VOLLEY" run "$@" --drain >"$log" 2>&1 </dev/null
	DRAIN_RC=$?
	DRAIN_MS=$(($(now_ms) - t0))
}

# show_log FILE [N]: the tail of a log, indented, for failure reports
show_log() { [ -f "$1" ] && tail -n "${2:-15}" "$1" | sed 's/^/#   | /'; return 0; }

events() { "$PY" "$LAB_DIR/events.py" --port "$REDIS_PORT" "$@"; }
dumps() { "$PY" "$LAB_DIR/dumps.py" "$@"; }

# xpending_count [STREAM] [GROUP]: entries in the group's pending list
xpending_count() {
	redis_cli XPENDING "${1:-volley:jobs}" "${2:-volley}" 2>/dev/null | head -1
}

# check_delivered_at_least_once RCPTS N: after a crash or a Redis restart
# every recipient reached the sink ($MX) at least once, every job has a
# final event (all `delivered`), nothing is pending; duplicates are noted.
check_delivered_at_least_once() {
	local rcpts=$1 n=$2 dir
	dir=$(sink_dir "$MX")
	check "every recipient reached the sink at least once" \
		dumps check-rcpts --at-least-once --expect "$rcpts" "$dir"
	check "every job has at least one final event" events check-final --at-least-one --expect "$n"
	is "every job's final event is delivered" "$(events jobs status=delivered)" "$n"
	is "nothing pending" "$(xpending_count)" 0
	note "duplicates: sink: $(dumps check-rcpts --at-least-once --expect "$rcpts" "$dir" | head -1)"
	note "duplicates: events: $(events check-final --at-least-one | head -1)"
}

# check_one_final RCPTS N exact|at-least-once: the end state of a run that
# should have delivered every one of N jobs: every job has EXACTLY one final
# event (never two, whatever happened on the way), all `delivered`, nothing
# pending or scheduled for retry; the sink ($MX) got every recipient in
# RCPTS exactly once, or at least once (after a kill -9 a message may go
# out twice: the contract allows it; the duplicates are noted).
check_one_final() {
	local rcpts=$1 n=$2 mode=$3 dir opt=()
	dir=$(sink_dir "$MX")
	[ "$mode" = at-least-once ] && opt=(--at-least-once)
	check "every job has exactly one final event ($n jobs)" events check-final --expect "$n"
	is "every job's final event is delivered" "$(events jobs status=delivered)" "$n"
	is "nothing pending" "$(xpending_count)" 0
	is "nothing scheduled for retry" "$(redis_cli ZCARD volley:retry)" 0
	check "every recipient reached the sink ${mode/exact/exactly once}" \
		dumps check-rcpts "${opt[@]}" --expect "$rcpts" "$dir"
	[ "$mode" = at-least-once ] &&
		note "sink duplicates: $(dumps check-rcpts --at-least-once --expect "$rcpts" "$dir" | head -1)"
	return 0
}

# pending_ids CONSUMER: the stream entry IDs in CONSUMER's pending list
pending_ids() {
	redis_cli XPENDING volley:jobs volley - + 1000000 "$1" 2>/dev/null |
		grep -E '^[0-9]+-[0-9]+$' || true
}

# restart_redis_loading USEC: restart Redis on the same port with the same
# dir, loading its AOF back slowly (Redis's key-load-delay: USEC
# microseconds per key), so that its clients get -LOADING for a while: the
# "Redis restarted and is still reading its data" case. Returns once Redis
# serves commands again (up to 60 s).
restart_redis_loading() {
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" \
		--save "" --appendonly "$REDIS_AOF" --appendfsync always \
		--daemonize yes --pidfile "$T/pids/redis.pid" \
		--logfile "$REDIS_DIR/redis.log" --protected-mode yes \
		--maxclients 1000 --key-load-delay "$1" >/dev/null || return 1
	wait_for 60 redis_ping || { tail -5 "$REDIS_DIR/redis.log" >&2; return 1; }
	redis_cli CONFIG SET key-load-delay 0 >/dev/null
}
