#!/usr/bin/env bash
# bench/run.sh - `make bench`: volley against Postfix and against the
# ceiling (smtp-source straight into the sink), plus memory per session at
# 10,000 concurrent sessions. Loopback only, throwaway servers, < 10 min.
#
#   (a) volley: BENCH_N (20,000) jobs of ~2 KB over 50 domains (MX via
#       dnsmasq -> 127.0.1.1) into smtp-sink (default 20 sessions per
#       domain, then 2 per domain = 100 sessions like (c)), then into
#       volley-sink when it is built; time from `volley run --drain` start
#       to its exit. smtp-sink offers no CHUNKING: every message goes by
#       DATA (two round trips). volley-sink offers CHUNKING and PIPELINING
#       here, as Gmail, Outlook and Postfix do: each message goes in one
#       round trip (BDAT LAST behind MAIL and RCPT, smtp.bdat_pipeline).
#   (b) Postfix 3.7 (a private instance under the temp dir) relaying the same
#       number of 2 KB messages to the same sink from a pre-loaded queue: the
#       queue is filled through its smtpd with every message put on hold
#       (header_checks = static:HOLD), then released (`postsuper -H ALL`,
#       `postqueue -f`); time from the release until the queue is empty.
#   (c) smtp-source -d -s 100 -l 2048 -m N straight into smtp-sink: the most
#       this sink takes on this machine (100 reused sessions, no queue).
#   (d) 500 domains x max_connections 20 = 10,000 sessions against an
#       smtp-sink that stalls every DATA for 60 s (-w 60); volley's RSS and
#       the established session count while they are all open.
#   (e) shaping cost: N jobs over 1,000 domains into volley-sink, first
#       unshaped (default pool, one source IP, no site: every domain its
#       own destination), then through a 4-IP pool with 5 site blocks
#       (each domain's MX matches one site's pattern), limits set high
#       (25 connections per lane, 1,000,000/s): 20 lanes.
#   (f) convergence: volley-sink answers "421 4.7.0" once a client IP had
#       CONV_LIMIT (600) messages accepted in the current minute; the lane's
#       max_rate is 3x that; default shaping settings. 1,200 jobs; reported:
#       how long until the lane settles under the limit (the first 10 s
#       window after which no window has more than 5% of its attempts
#       refused), the 421s drawn until then and after, and the rate it
#       settles at.
#
#   For every (a) row also the CPU time per message, separately for the
#   engine (utime+stime of the `volley run --drain` process, from wait4())
#   and for redis-server (utime+stime from /proc/PID/stat read before and
#   after the drain), in microseconds per message.
#
#   (g) TLS: the volley-sink round with STARTTLS, as a ratio of plain;
#       then both again with a sink that offers no CHUNKING (DATA).
#   (h) DKIM: Ed25519, RSA-2048 (shared body), RSA-2048 per recipient
#       (threads, and on the loop), each as a ratio of plain.
#   (i) RSS per TLS session: 5,000 STARTTLS sessions held at DATA.
#
# Environment: BENCH_N (20000), BENCH_PARTS ("a b c d e f g h i"), KEEP=1,
# BENCH_TLS_PER (10 sessions per domain in (i), x 500 domains).
# Output: one line per figure, then a summary table (docs/benchmarks.md).
. "$(dirname "$0")/../tests/lib.sh"

N=${BENCH_N:-20000}
PARTS=${BENCH_PARTS:-a b c d e f g h i}
NDOM=50
MX=127.0.1.1
declare -A RATE=() NOTE=() CPU_ENGINE=() CPU_REDIS=()
CLK_TCK=$(getconf CLK_TCK)
# volley-sink as the big providers answer: CHUNKING offered (see (a))
SINK_CHUNKING=(-c "$T/sink-chunking.conf")
printf 'smtp { chunking = true; }\n' >"$T/sink-chunking.conf"

want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
log() { echo "bench: $*"; }
rate() { echo $(($1 * 1000 / ($2 > 0 ? $2 : 1))); }	# N MS -> per second
# per_msg US N: microseconds per message, one decimal
per_msg() { awk -v us="$1" -v n="$2" 'BEGIN { printf "%.1f", (n > 0 ? us / n : 0) }'; }

# proc_cpu_us PID: utime+stime of a live process so far, in microseconds
# (fields 14 and 15 of /proc/PID/stat, in clock ticks; the command name in
# field 2 may hold spaces, so count from the closing parenthesis).
proc_cpu_us() {
	awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%d\n", ($12 + $13) * 1000000 / hz }' \
		"/proc/$1/stat" 2>/dev/null || echo 0
}
redis_pid() { cat "$T/pids/redis.pid" 2>/dev/null; }

# cpu_drain LOG SECS ARGS...: like run_drain (`volley run ARGS --drain`
# under a deadline; sets DRAIN_RC, 124 on timeout, and DRAIN_MS), and also
# DRAIN_CPU_US, the engine's own utime+stime from wait4() (exact even though
# the process is gone by the time it is read).
cpu_drain() {
	local log=$1 secs=$2 out
	shift 2
	out=$("$PY" - "$log" "$secs" "$VOLLEY" run "$@" --drain <<'EOF'
import os, signal, sys, time
log, secs, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
    os.execv(cmd[0], cmd)
timed_out = False
def expire(*_):
    global timed_out
    timed_out = True
    os.kill(pid, signal.SIGTERM)
    signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
    signal.alarm(5)
signal.signal(signal.SIGALRM, expire)
signal.setitimer(signal.ITIMER_REAL, secs)
_, status, ru = os.wait4(pid, 0)
ms = int((time.monotonic() - t0) * 1000)
signal.setitimer(signal.ITIMER_REAL, 0)
rc = 124 if timed_out else (os.waitstatus_to_exitcode(status) & 255)
print(rc, ms, int((ru.ru_utime + ru.ru_stime) * 1e6))
EOF
)
	read -r DRAIN_RC DRAIN_MS DRAIN_CPU_US <<<"${out:-1 0 0}"
}

start_redis || { echo "bench: redis did not start" >&2; exit 1; }
start_dns < <(
	for i in $(seq 0 $((NDOM - 1))); do dns_domain "b$i.test" "$MX"; done
	for i in $(seq 0 499); do dns_domain "s$i.test" 127.0.1.3; done
	for i in $(seq 0 999); do dns_domain "d$i.site$((i % 5)).test" 127.0.1.4; done
	dns_domain conv.test 127.0.1.5
) || { echo "bench: dnsmasq did not start" >&2; exit 1; }
SINK_PORT=$(free_port)

# A ~2 KB message (headers + body lines; 2048 bytes total, CRLF).
"$PY" "$(dirname "${BASH_SOURCE[0]}")/bench_msg.py" 2048 >"$T/msg.eml"
log "message size $(wc -c <"$T/msg.eml") bytes, N=$N, parts: $PARTS, $(nproc) CPUs"
for i in $(seq 0 $((N - 1))); do echo "u$i@b$((i % NDOM)).test"; done >"$T/rcpts"

CFG_INSTANCE=bench CFG_RETRY='[5s]' CFG_MAX_AGE=1h write_config "$T/volley.conf"
# The same with 2 sessions per domain: 100 sessions in all, as many as
# smtp-source's -s 100 in (c). smtp-sink slows down with many sessions (it
# is one select() loop), so this is the like-for-like row against (c).
CFG_INSTANCE=bench CFG_RETRY='[5s]' CFG_MAX_AGE=1h CFG_SMTP_EXTRA='  max_connections = 2;' \
	write_config "$T/volley-100.conf"

# volley_round LABEL [CONF [RCPTS [inject options...]]]: inject N jobs,
# drain them, report.
volley_round() {
	local label=$1 conf=${2:-$T/volley.conf} rcpts=${3:-$T/rcpts} t0 ms inj delivered rpid r0 r1
	shift $(($# < 3 ? $# : 3))
	redis_cli FLUSHALL >/dev/null
	t0=$(now_ms)
	"$VOLLEY" inject -c "$conf" --from bench@sender.test --msg "$T/msg.eml" \
		--rcpts "$rcpts" "$@" >"$T/inject.log" 2>&1 || { log "inject failed: $(tail -3 "$T/inject.log")"; return 1; }
	inj=$(($(now_ms) - t0))
	log "(a) $label: injected $N jobs in $inj ms ($(rate "$N" "$inj")/s)"
	rpid=$(redis_pid)
	r0=$(proc_cpu_us "$rpid")
	VOLLEY_LOG=warn cpu_drain "$T/run-$label.log" 300 -c "$conf" --no-progress
	r1=$(proc_cpu_us "$rpid")
	delivered=$(events count status=delivered)
	if [ "$DRAIN_RC" != 0 ] || [ "$delivered" != "$N" ]; then
		log "(a) $label: FAILED: exit $DRAIN_RC, $delivered of $N delivered"
		show_log "$T/run-$label.log" 5
		NOTE[$label]="failed (exit $DRAIN_RC, $delivered/$N delivered)"
		return 1
	fi
	RATE[$label]=$(rate "$N" "$DRAIN_MS")
	CPU_ENGINE[$label]=$(per_msg "$DRAIN_CPU_US" "$N")
	CPU_REDIS[$label]=$(per_msg $((r1 - r0)) "$N")
	log "(a) $label: $N delivered in $DRAIN_MS ms = ${RATE[$label]} msg/s;" \
		"CPU per message: engine ${CPU_ENGINE[$label]} us, redis ${CPU_REDIS[$label]} us"
}

# --- (a) volley ---------------------------------------------------------------
if want a; then
	if [ -x "$VOLLEY" ]; then
		start_smtp_sink --nodump "$MX" "$SINK_PORT" || exit 1
		volley_round volley_smtp_sink
		volley_round volley_smtp_sink_100 "$T/volley-100.conf"
		stop_sink "$MX"
		if [ -x "$SINK" ] && start_volley_sink --nocapture "$MX" "$SINK_PORT" --quiet \
		    "${SINK_CHUNKING[@]}"; then
			volley_round volley_volley_sink
			stop_sink "$MX"
		else
			NOTE[volley_volley_sink]="volley-sink not available"
		fi
	else
		NOTE[volley_smtp_sink]="$VOLLEY not built"
	fi
fi

# --- (c) smtp-source ceiling -------------------------------------------------------
if want c; then
	start_smtp_sink --nodump "$MX" "$SINK_PORT" || exit 1
	t0=$(now_ms)
	timeout 120 smtp-source -d -s 100 -l 2048 -m "$N" -f bench@sender.test \
		-t u@b0.test "$MX:$SINK_PORT" >"$T/smtp-source.log" 2>&1
	rc=$?
	ms=$(($(now_ms) - t0))
	if [ $rc = 0 ]; then
		RATE[smtp_source]=$(rate "$N" "$ms")
		log "(c) smtp-source -> smtp-sink: $N in $ms ms = ${RATE[smtp_source]} msg/s"
	else
		NOTE[smtp_source]="smtp-source exit $rc: $(tail -2 "$T/smtp-source.log" | tr '\n' ' ')"
		log "(c) ${NOTE[smtp_source]}"
	fi
	stop_sink "$MX"
fi

# --- (b) Postfix ------------------------------------------------------------------
# A private instance: its own config_directory, queue_directory and
# data_directory under $T, no chroot, loopback-only smtpd used only to load
# the queue. Started with master -w (`postfix start` fails silently here).
postfix_setup() {
	PF=$T/postfix
	PF_PORT=$(free_port)
	make_postfix_dirs "$PF"
	: >"$PF/maillog"
	cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.test
mydomain = bench.test
myorigin = bench.test
mydestination =
local_recipient_maps =
relay_domains =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
inet_interfaces = loopback-only
inet_protocols = ipv4
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
relayhost = [$MX]:$SINK_PORT
maillog_file = $PF/maillog
maillog_file_prefixes = $T
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
smtputf8_enable = no
message_size_limit = 0
in_flow_delay = 0
# best case for a relay: a hundred parallel deliveries from the start,
# cached connections, everything active at once
default_process_limit = 250
smtp_destination_concurrency_limit = 100
default_destination_concurrency_limit = 100
initial_destination_concurrency = 100
smtp_connection_cache_on_demand = yes
qmgr_message_active_limit = 40000
qmgr_message_recipient_limit = 40000
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
# hold every message while loading: header_checks with a static map
# answers HOLD for the first header line, so cleanup files each message
# straight into the hold queue and qmgr never sees it
header_checks = static:HOLD
EOF
	write_postfix_master_cf "$PF/etc/master.cf" "127.0.0.1:$PF_PORT" 100
	/usr/lib/postfix/sbin/master -c "$PF/etc" -w 2>"$PF/master.err" ||
		{ log "(b) postfix master did not start: $(cat "$PF/master.err") $(tail -3 "$PF/maillog")"; return 1; }
	# the master's pid file is $PF/queue/pid/master.pid; copy it where the
	# lab's cleanup kills daemons
	wait_for 10 test -s "$PF/queue/pid/master.pid" || return 1
	echo $(($(tr -d ' ' <"$PF/queue/pid/master.pid"))) >"$T/pids/postfix-master.pid"
	wait_listen 127.0.0.1 "$PF_PORT" 10
}
pf_count() {	# messages in the given queue dirs
	local n=0 d
	for d in "$@"; do n=$((n + $(find "$PF/queue/$d" -type f 2>/dev/null | wc -l))); done
	echo $n
}
postfix_round() {
	local t0 ms load sent
	postfix_setup || { NOTE[postfix]="postfix did not start"; return 1; }
	log "(b) postfix: loading $N messages through its smtpd (delivery held)"
	t0=$(now_ms)
	timeout 300 smtp-source -d -s 20 -l 2048 -m "$N" -N -f bench@sender.test \
		-t u@b0.test "127.0.0.1:$PF_PORT" >"$T/pf-load.log" 2>&1 ||
		{ NOTE[postfix]="loading failed: $(tail -2 "$T/pf-load.log" | tr '\n' ' ')"; log "(b) ${NOTE[postfix]}"; return 1; }
	# everything must have settled in the hold queue
	wait_for 120 sh -c "[ \$(find $PF/queue/incoming $PF/queue/maildrop -type f | wc -l) = 0 ] && [ \$(find $PF/queue/hold -type f | wc -l) -ge $N ]" ||
		{ NOTE[postfix]="queue did not settle: hold $(pf_count hold), incoming $(pf_count incoming maildrop)"; log "(b) ${NOTE[postfix]}"; return 1; }
	load=$(($(now_ms) - t0))
	log "(b) postfix: $(pf_count hold) messages on hold after $load ms; releasing"
	# postsuper -H moves them to the deferred queue with a current time
	# stamp; postqueue -f makes qmgr take them all at once
	t0=$(now_ms)
	postsuper -c "$PF/etc" -H ALL 2>>"$PF/postsuper.log"
	postqueue -c "$PF/etc" -f
	wait_for 300 sh -c "[ \$(find $PF/queue/hold $PF/queue/deferred $PF/queue/active $PF/queue/incoming -type f | wc -l) = 0 ]"
	ms=$(($(now_ms) - t0))
	sent=$(grep -c ' status=sent ' "$PF/maillog")
	if [ "$sent" -lt "$N" ]; then
		NOTE[postfix]="only $sent of $N sent in $ms ms"
		log "(b) postfix: ${NOTE[postfix]}; $(grep -m1 'status=deferred' "$PF/maillog")"
		return 1
	fi
	RATE[postfix]=$(rate "$N" "$ms")
	log "(b) postfix: $sent relayed in $ms ms = ${RATE[postfix]} msg/s"
	kill_pidfile "$T/pids/postfix-master.pid"
}
if want b; then
	start_smtp_sink --nodump "$MX" "$SINK_PORT" || exit 1
	postfix_round
	stop_sink "$MX"
fi

# --- (d) 10,000 concurrent sessions ----------------------------------------------
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
if want d && [ -x "$VOLLEY" ]; then
	D_MX=127.0.1.3
	start_smtp_sink --nodump "$D_MX" "$SINK_PORT" -w 60 || exit 1
	CFG_INSTANCE=bench-d CFG_RETRY='[5s]' CFG_MAX_AGE=1h \
		CFG_SMTP_EXTRA='  max_sessions = 12000;' \
		CFG_EXTRA='shaping { initial_connections = 20; }   # every lane opens its 20 at once' \
		write_config "$T/volley-d.conf"
	redis_cli FLUSHALL >/dev/null
	# idle engine: RSS with an empty queue
	bg_volley "$T/run-d-idle.log" run -c "$T/volley-d.conf" --no-progress
	sleep 1.5
	idle=$(rss_kb "$VOLLEY_PID")
	kill9 "$VOLLEY_PID"
	for i in $(seq 0 9999); do echo "u$i@s$((i % 500)).test"; done >"$T/rcpts-d"
	"$VOLLEY" inject -c "$T/volley-d.conf" --from bench@sender.test --msg "$T/msg.eml" \
		--rcpts "$T/rcpts-d" >/dev/null 2>&1
	VOLLEY_LOG=warn bg_volley "$T/run-d.log" run -c "$T/volley-d.conf" --no-progress
	pid=$VOLLEY_PID
	peak=0 peak_rss=0 t0=$(now_ms)
	while [ $(($(now_ms) - t0)) -lt 45000 ] && kill -0 "$pid" 2>/dev/null; do
		n=$(ss -Htn state established dst "$D_MX:$SINK_PORT" 2>/dev/null | wc -l)
		r=$(rss_kb "$pid")
		if [ "$n" -gt "$peak" ]; then peak=$n peak_rss=$r; fi
		[ "$n" -ge 10000 ] && { sleep 2; n=$(ss -Htn state established dst "$D_MX:$SINK_PORT" | wc -l); r=$(rss_kb "$pid"); peak=$n peak_rss=$r; break; }
		sleep 1
	done
	reach=$(($(now_ms) - t0))
	kill9 "$pid"
	stop_sink "$D_MX"
	if [ "$peak" -gt 0 ]; then
		per=$(((peak_rss - idle) * 1024 / peak))
		NOTE[sessions]="$peak sessions open after $reach ms; RSS $((peak_rss / 1024)) MB (idle $((idle / 1024)) MB) = $per bytes/session above idle"
	else
		NOTE[sessions]="no session ever opened (see $T/run-d.log)"
		show_log "$T/run-d.log" 5
	fi
	log "(d) ${NOTE[sessions]}"
fi

# --- (e) the cost of shaping ------------------------------------------------------
if want e && [ -x "$VOLLEY" ] && [ -x "$SINK" ]; then
	E_MX=127.0.1.4
	for i in $(seq 0 $((N - 1))); do d=$((i % 1000)); echo "u$i@d$d.site$((d % 5)).test"; done >"$T/rcpts-e"
	CFG_INSTANCE=bench-e CFG_RETRY='[5s]' CFG_MAX_AGE=1h write_config "$T/volley-e1.conf"
	{
		echo 'pool "bulk" {'
		for k in 1 2 3 4; do echo "  ip \"127.0.0.1$k\" { ehlo = \"b$k.bench.test\"; }"; done
		echo '}'
		for k in 0 1 2 3 4; do
			echo "site \"site$k\" { mx = [\"*.site$k.test\"]; max_connections = 25;"
			echo "  max_msgs_per_connection = 100000; max_rate = \"1000000/s\"; }"
		done
	} >"$T/e-extra.conf"
	CFG_INSTANCE=bench-e CFG_RETRY='[5s]' CFG_MAX_AGE=1h CFG_EXTRA="$(cat "$T/e-extra.conf")" \
		write_config "$T/volley-e2.conf"
	if ! "$VOLLEY" check-config -c "$T/volley-e2.conf" >"$T/e-check.log" 2>&1; then
		NOTE[shaped]="config refused: $(head -3 "$T/e-check.log" | tr '\n' ' ')"
	elif start_volley_sink --nocapture "$E_MX" "$SINK_PORT" --quiet; then
		volley_round unshaped "$T/volley-e1.conf" "$T/rcpts-e"
		volley_round shaped "$T/volley-e2.conf" "$T/rcpts-e" --pool bulk
		# Which source IPs carried the shaped round (events carry ip).
		NOTE[shaped_ips]=$(events json | "$PY" -c '
import collections, json, sys
c = collections.Counter(json.loads(l).get("ip", "") for l in sys.stdin)
print(" ".join("%s:%d" % (k, v) for k, v in sorted(c.items())))')
		stop_sink "$E_MX"
	else
		NOTE[shaped]="volley-sink did not start"
	fi
fi

# --- (f) convergence under a provider's per-IP limit ---------------------------------
if want f && [ -x "$VOLLEY" ] && [ -x "$SINK" ]; then
	F_MX=127.0.1.5 LIM=${CONV_LIMIT:-600} FN=1200
	cat >"$T/sink-f.conf" <<CONF
limits { per_ip_rate = "$LIM/min"; }
replies { rate_limit = "421 4.7.0 [{ip}] Too many messages from your IP address, slow down"; }
CONF
	CFG_INSTANCE=bench-f CFG_RETRY='[1s]' CFG_MAX_AGE=1h \
		CFG_EXTRA="domain \"conv.test\" { max_rate = \"$((LIM * 3))/min\"; }" write_config "$T/volley-f.conf"
	for i in $(seq 1 $FN); do echo "c$i@conv.test"; done >"$T/rcpts-f"
	if start_volley_sink --nocapture "$F_MX" "$SINK_PORT" -c "$T/sink-f.conf" --quiet; then
		redis_cli FLUSHALL >/dev/null
		"$VOLLEY" inject -c "$T/volley-f.conf" --from bench@sender.test --msg "$T/msg.eml" \
			--rcpts "$T/rcpts-f" >/dev/null 2>&1
		t0=$(now_ms)
		VOLLEY_LOG=warn cpu_drain "$T/run-f.log" 400 -c "$T/volley-f.conf" --no-progress
		stop_sink "$F_MX"
		NOTE[conv]=$(events json | "$PY" -c '
import json, sys
t0, lim, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
acc, ref = {}, {}
for line in sys.stdin:
    e = json.loads(line)
    b = (int(e.get("ts", t0)) - t0) // 10000
    if e.get("status") == "delivered":
        acc[b] = acc.get(b, 0) + 1
    elif e.get("status") == "deferred" and "421" in str(e.get("code", "")):
        ref[b] = ref.get(b, 0) + 1
last = max(list(acc) + list(ref) + [0])
def bad(b):
    a, r = acc.get(b, 0), ref.get(b, 0)
    return r > 0.05 * (a + r)
settle = 0
for b in range(last + 1):
    if bad(b):
        settle = b + 1
before = sum(v for b, v in ref.items() if b < settle)
after = sum(v for b, v in ref.items() if b >= settle)
full = [acc.get(b, 0) for b in range(settle, last)]  # the last window is partial
rate = (sum(full) / len(full) * 6) if full else 0
tail = full[-3:]
end = (sum(tail) / len(tail) * 6) if tail else 0
curve = " ".join("%d/%d" % (acc.get(b, 0), ref.get(b, 0)) for b in range(last + 1))
print("limit %d/min: settled after %d s with %d 421s on the way, %d more after (probes); "
      "%.0f/min on average from then on (%.0f%% of the limit), %.0f/min at the end (%.0f%%); "
      "%d of %d delivered; per 10 s accepted/421: %s"
      % (lim, settle * 10, before, after, rate, 100.0 * rate / lim, end, 100.0 * end / lim,
         sum(acc.values()), n, curve))
' "$t0" "$LIM" "$FN")
		[ "$DRAIN_RC" = 0 ] || NOTE[conv]="drain exit $DRAIN_RC; ${NOTE[conv]}"
		log "(f) ${NOTE[conv]}"
	else
		NOTE[conv]="volley-sink did not start"
	fi
fi

# --- (g) TLS: STARTTLS to volley-sink ------------------------------------------------
# The (a) volley-sink round again with the sink offering STARTTLS (a
# self-signed certificate; smtp.tls opportunistic, the default): every
# session negotiates TLS. Reported as a ratio of the plain round.
plain_round() {	# the plain volley-sink round, unless (a) ran it
	[ -n "${RATE[volley_volley_sink]:-}" ] && return 0
	start_volley_sink --nocapture "$MX" "$SINK_PORT" --quiet "${SINK_CHUNKING[@]}" || return 1
	volley_round volley_volley_sink
	stop_sink "$MX"
}
if want g && [ -x "$VOLLEY" ] && [ -x "$SINK" ]; then
	plain_round
	if start_volley_sink --nocapture "$MX" "$SINK_PORT" --quiet --tls --stats "$T/stats-g.json" \
	    "${SINK_CHUNKING[@]}"; then
		volley_round tls
		stop_sink "$MX"
	else
		NOTE[tls]="volley-sink --tls did not start"
	fi
	# the same pair by DATA: a sink without CHUNKING
	if start_volley_sink --nocapture "$MX" "$SINK_PORT" --quiet; then
		volley_round plain_data
		stop_sink "$MX"
	else
		NOTE[plain_data]="volley-sink did not start"
	fi
	if start_volley_sink --nocapture "$MX" "$SINK_PORT" --quiet --tls; then
		volley_round tls_data
		stop_sink "$MX"
	else
		NOTE[tls_data]="volley-sink --tls did not start"
	fi
fi

# --- (h) DKIM: Ed25519 and RSA-2048, shared and per-recipient ------------------------
# The plain volley-sink round with a dkim block for the From domain:
# Ed25519 alone, RSA-2048 alone (one signature per body: every job shares
# it), and RSA-2048 with smtp.unsubscribe_url = ".../u?r={to}" (every job
# its own List-Unsubscribe, so its own signature: made by the signing
# threads, dkim_threads = 2), and the same signed on the loop
# (dkim_threads = 0) to show what the threads take off it.
if want h && [ -x "$VOLLEY" ] && [ -x "$SINK" ]; then
	plain_round
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/dkim-rsa.pem" 2>/dev/null
	openssl genpkey -algorithm ed25519 -out "$T/dkim-ed.pem" 2>/dev/null
	dkim_conf() {	# FILE KEY ALG THREADS [SMTP_EXTRA]
		CFG_INSTANCE=bench-h CFG_RETRY='[5s]' CFG_MAX_AGE=1h CFG_SMTP_EXTRA="${5:-}" \
			CFG_EXTRA="dkim_threads = $4;
dkim \"sender.test\" { selector = \"b1\"; key = \"$2\"; algorithm = \"$3\"; }" \
			write_config "$1"
	}
	dkim_conf "$T/volley-h-ed.conf" "$T/dkim-ed.pem" ed25519-sha256 2
	dkim_conf "$T/volley-h-rsa.conf" "$T/dkim-rsa.pem" rsa-sha256 2
	unsub='  unsubscribe_url = "https://sender.test/u?r={to}";'
	dkim_conf "$T/volley-h-rsa-rcpt.conf" "$T/dkim-rsa.pem" rsa-sha256 2 "$unsub"
	dkim_conf "$T/volley-h-rsa-rcpt0.conf" "$T/dkim-rsa.pem" rsa-sha256 0 "$unsub"
	if ! "$VOLLEY" check-config -c "$T/volley-h-rsa-rcpt.conf" >"$T/h-check.log" 2>&1; then
		NOTE[dkim_ed]="config refused: $(head -3 "$T/h-check.log" | tr '\n' ' ')"
	elif start_volley_sink --nocapture "$MX" "$SINK_PORT" --quiet "${SINK_CHUNKING[@]}"; then
		volley_round dkim_ed "$T/volley-h-ed.conf"
		volley_round dkim_rsa "$T/volley-h-rsa.conf"
		volley_round dkim_rsa_rcpt "$T/volley-h-rsa-rcpt.conf"
		volley_round dkim_rsa_rcpt_loop "$T/volley-h-rsa-rcpt0.conf"
		stop_sink "$MX"
	else
		NOTE[dkim_ed]="volley-sink did not start"
	fi
fi

# --- (i) memory per TLS session ------------------------------------------------------
# As (d), with STARTTLS: 500 domains x max_connections I_PER (10) = 5,000
# sessions against volley-sink --tls whose every DATA command stalls for
# 120 s, so each session sits idle after its TLS handshake, MAIL and RCPT.
# RSS above the idle engine per established session.
if want i && [ -x "$VOLLEY" ] && [ -x "$SINK" ]; then
	I_MX=127.0.1.3 I_PER=${BENCH_TLS_PER:-10}
	I_N=$((500 * I_PER))
	echo 'rule "hold" { stage = "data"; stall = 120s; }' >"$T/sink-i.conf"
	if start_volley_sink --nocapture "$I_MX" "$SINK_PORT" --quiet --tls -c "$T/sink-i.conf"; then
		CFG_INSTANCE=bench-i CFG_RETRY='[5s]' CFG_MAX_AGE=1h \
			CFG_SMTP_EXTRA="  max_sessions = $((I_N + 1000)); max_connections = $I_PER;" \
			CFG_EXTRA="shaping { initial_connections = $I_PER; }" \
			write_config "$T/volley-i.conf"
		redis_cli FLUSHALL >/dev/null
		bg_volley "$T/run-i-idle.log" run -c "$T/volley-i.conf" --no-progress
		sleep 1.5
		idle=$(rss_kb "$VOLLEY_PID")
		kill9 "$VOLLEY_PID"
		for k in $(seq 0 $((I_N - 1))); do echo "u$k@s$((k % 500)).test"; done >"$T/rcpts-i"
		"$VOLLEY" inject -c "$T/volley-i.conf" --from bench@sender.test --msg "$T/msg.eml" \
			--rcpts "$T/rcpts-i" >/dev/null 2>&1
		VOLLEY_LOG=warn bg_volley "$T/run-i.log" run -c "$T/volley-i.conf" --no-progress
		pid=$VOLLEY_PID
		peak=0 peak_rss=0 t0=$(now_ms)
		while [ $(($(now_ms) - t0)) -lt 60000 ] && kill -0 "$pid" 2>/dev/null; do
			n=$(ss -Htn state established dst "$I_MX:$SINK_PORT" 2>/dev/null | wc -l)
			r=$(rss_kb "$pid")
			if [ "$n" -gt "$peak" ]; then peak=$n peak_rss=$r; fi
			if [ "$n" -ge "$I_N" ]; then
				sleep 3	# every session past its handshake and at DATA
				n=$(ss -Htn state established dst "$I_MX:$SINK_PORT" | wc -l)
				r=$(rss_kb "$pid")
				peak=$n peak_rss=$r
				break
			fi
			sleep 1
		done
		reach=$(($(now_ms) - t0))
		kill9 "$pid"
		stop_sink "$I_MX"
		if [ "$peak" -gt 0 ]; then
			per=$(((peak_rss - idle) * 1024 / peak))
			NOTE[tls_sessions]="$peak TLS sessions open after $reach ms; RSS $((peak_rss / 1024)) MB (idle $((idle / 1024)) MB) = $per bytes/session above idle (target <= 32768)"
		else
			NOTE[tls_sessions]="no session ever opened (see $T/run-i.log)"
			show_log "$T/run-i.log" 5
		fi
		log "(i) ${NOTE[tls_sessions]}"
	else
		NOTE[tls_sessions]="volley-sink --tls did not start"
	fi
fi

# --- summary --------------------------------------------------------------------------
echo
echo "=== volley bench: $N messages of 2 KB, loopback, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
# row LABEL KEY: msg/s, then (volley rows) CPU us/msg of engine and redis
row() {
	local v=${RATE[$2]:-n/a} e=${CPU_ENGINE[$2]:-} r=${CPU_REDIS[$2]:-}
	printf '  %-44s %10s %12s %12s  %s\n' "$1" "$v" "${e:--}" "${r:--}" "${NOTE[$2]:-}"
}
printf '  %-44s %10s %12s %12s\n' "" "msg/s" "engine us/m" "redis us/m"
row "(a) volley -> smtp-sink (50 domains)" volley_smtp_sink
row "(a) same, 2 sessions/domain (100)" volley_smtp_sink_100
row "(a) volley -> volley-sink (50 domains)" volley_volley_sink
row "(b) Postfix relay, pre-loaded queue" postfix
row "(c) smtp-source -> smtp-sink (ceiling)" smtp_source
row "(e) 1,000 domains, unshaped, 1 IP" unshaped
row "(e) same, 4-IP pool x 5 sites (20 lanes)" shaped
row "(g) volley -> volley-sink, STARTTLS" tls
row "(g) plain, sink without CHUNKING (DATA)" plain_data
row "(g) STARTTLS, sink without CHUNKING (DATA)" tls_data
row "(h) DKIM Ed25519, shared body" dkim_ed
row "(h) DKIM RSA-2048, shared body" dkim_rsa
row "(h) DKIM RSA-2048, per-recipient (threads)" dkim_rsa_rcpt
row "(h) same, signed on the loop (dkim_threads=0)" dkim_rsa_rcpt_loop
ratio() { [ -n "${RATE[$1]:-}" ] && [ -n "${RATE[$2]:-}" ] && [ "${RATE[$2]}" -gt 0 ] &&
	awk -v a="${RATE[$1]}" -v b="${RATE[$2]}" 'BEGIN{printf "%.2fx", a/b}' || echo n/a; }
printf '  %-44s %10s\n' "volley / Postfix" "$(ratio volley_smtp_sink postfix)"
printf '  %-44s %10s\n' "volley / smtp-source" "$(ratio volley_smtp_sink smtp_source)"
printf '  %-44s %10s\n' "volley (100 sessions) / smtp-source (100)" "$(ratio volley_smtp_sink_100 smtp_source)"
printf '  %-44s %10s\n' "(e) shaped / unshaped" "$(ratio shaped unshaped)"
printf '  %-44s %10s  %s\n' "(g) TLS / plain volley-sink" "$(ratio tls volley_volley_sink)" "target >= 0.50"
printf '  %-44s %10s\n' "(g) same by DATA (no CHUNKING)" "$(ratio tls_data plain_data)"
printf '  %-44s %10s  %s\n' "(h) Ed25519 shared / plain" "$(ratio dkim_ed volley_volley_sink)" "target >= 0.80"
printf '  %-44s %10s  %s\n' "(h) RSA shared / plain" "$(ratio dkim_rsa volley_volley_sink)" "target >= 0.90"
printf '  %-44s %10s\n' "(h) RSA per-recipient / plain" "$(ratio dkim_rsa_rcpt volley_volley_sink)"
printf '  %-44s %10s\n' "(h) RSA per-recipient on the loop / plain" "$(ratio dkim_rsa_rcpt_loop volley_volley_sink)"
echo "  (d) ${NOTE[sessions]:-not run}"
[ -n "${NOTE[shaped_ips]:-}" ] && echo "  (e) shaped round by source IP: ${NOTE[shaped_ips]}"
echo "  (f) ${NOTE[conv]:-not run}"
echo "  (i) ${NOTE[tls_sessions]:-not run}"
echo "  (us/m: CPU microseconds per message, utime+stime, during the drain only)"
exit 0
