#!/usr/bin/env bash
# sink_bench.sh - receive speed and CPU per message: build/volley-sink versus
# Postfix's smtp-sink on the same machine, same traffic, side by side.
#
# Three clients, each run against both sinks (a fresh sink per run, on
# 127.0.1.1, started the same way every time), REPS (3) repetitions,
# interleaved (A B, B A, A B) so a drifting background load hits both alike;
# the table shows the median of each column:
#
#   smtp-source -d     PROCS (4) smtp-source processes in parallel, each
#                      -s 50 -l 2048 -d (sessions reused), MSGS_REUSED (60000)
#                      messages in total
#   smtp-source        the same with one message per session (no -d),
#                      MSGS_SESSION (20000) in total
#   volley             the engine: VOLLEY_N (20000) jobs of 2 KB over 50
#                      domains (MX via dnsmasq -> the sink), injected into
#                      Redis, then `volley run --drain`; timed from its start
#                      to its exit (as bench/run.sh part (a))
#
# Per run: wall time from the first client's start to the last one's exit,
# msgs/s, the sink's CPU (utime+stime of /proc/PID/stat, all its threads,
# before/after) per message, the clients' CPU per message (rusage of the
# reaped client processes), and how busy the whole machine was (/proc/stat).
# Every client must exit 0 (smtp-source aborts on any unexpected reply);
# volley must report every job delivered. Asserts nothing else.
#
#   bench/sink_bench.sh                       about 1.5 minutes when idle
#   REPS=5 PROCS=2 MSGS_REUSED=60000 bench/sink_bench.sh
#   CLIENTS="volley" bench/sink_bench.sh       (any of: reused session volley)
#
# Uses tests/lib.sh for the temp dir, ports, redis-server, dnsmasq, both
# sinks and the cleanup of every process started (EXIT trap). Loopback only.
. "$(dirname "$0")/../tests/lib.sh"
BEGIN=$(now_ms)

REPS=${REPS:-3}
PROCS=${PROCS:-4}
SESS=${SESS:-50}
SIZE=${SIZE:-2048}
MSGS_REUSED=${MSGS_REUSED:-60000}
MSGS_SESSION=${MSGS_SESSION:-20000}
LIMIT=${LIMIT:-230}		# seconds for the whole script; every client run is cut off there
VOLLEY_N=${VOLLEY_N:-20000}
CLIENTS=${CLIENTS:-reused session volley}
NDOM=50
MX=127.0.1.1
ROWS=$T/rows

[ -x "$SINK" ] || { echo "build volley-sink first (make)" >&2; exit 1; }
command -v smtp-source >/dev/null || { echo "smtp-source (postfix) is needed" >&2; exit 1; }
want() { case " $CLIENTS " in *" $1 "*) return 0 ;; esac; return 1; }
log() { echo "sink_bench: $*" >&2; }

# drive.py SINK_PID MSGS OUT LABEL... -- P CMD...: start P copies of CMD at
# once, reap them all, append one result line to OUT.
cat >"$T/drive.py" <<'EOF'
import os, subprocess, sys, time
a = sys.argv[1:]
sep = a.index("--")
sink_pid, msgs, out, label = int(a[0]), int(a[1]), a[2], a[3:sep]
procs, cmd = int(a[sep + 1]), a[sep + 2:]
hz = os.sysconf("SC_CLK_TCK")
def sink_cpu():
    f = open("/proc/%d/stat" % sink_pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / hz          # utime + stime, all threads
def machine():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(v), v[3] + v[4]                       # total, idle + iowait
c0, m0 = sink_cpu(), machine()
t0 = time.monotonic()
kids = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open("%s.err%d" % (out, i), "w"))
        for i in range(procs)]
left, bad, ccpu = {k.pid for k in kids}, [], 0.0
while left:
    pid, status, ru = os.wait4(-1, 0)
    if pid in left:
        left.discard(pid)
        ccpu += ru.ru_utime + ru.ru_stime
        if os.waitstatus_to_exitcode(status) != 0:
            bad.append(os.waitstatus_to_exitcode(status))
t1 = time.monotonic()
c1, m1 = sink_cpu(), machine()
dt, scpu = t1 - t0, c1 - c0
busy = os.cpu_count() * (1 - (m1[1] - m0[1]) / max(1, m1[0] - m0[0]))   # in CPUs
if bad:
    sys.stderr.write("client exit status %s: %s\n" % (bad, open(out + ".err0").read()[-300:]))
    sys.exit(1)
line = "%s %d %.3f %.0f %.1f %.1f %.2f %.2f %.2f" % (" ".join(label), msgs, dt, msgs / dt,
        scpu / msgs * 1e6, ccpu / msgs * 1e6, scpu / dt, ccpu / dt, busy)
open(out, "a").write(line + "\n")
print(line)
EOF

# sink_up NAME PORT: start that sink on $MX:PORT; its pid in SINK_PID.
# smtp-sink: -u nobody (we are root), backlog 4096 and -m 12000 (tests/lib.sh:
# its default of 256 concurrent sessions would leave most of volley's 1000
# sessions waiting in the backlog). volley-sink: --quiet, no capture.
sink_up() {
	if [ "$1" = smtp-sink ]; then
		start_smtp_sink --nodump "$MX" "$2" || return 1
		SINK_PID=$(cat "$T/pids/smtp-sink-$MX.pid")
	else
		start_volley_sink --nocapture "$MX" "$2" --quiet || return 1
		SINK_PID=$(cat "$T/pids/volley-sink-$MX.pid")
	fi
}

# bounded SECS CMD...: CMD under timeout(1), in the background with its pid in
# $T/pids so that the lab's cleanup TERMs it: timeout passes the signal on to
# its whole process group (drive.py and every client it started).
bounded() {
	local secs=$1 pid rc
	shift
	timeout -k 2 "$secs" "$@" &
	pid=$!
	echo "$pid" >"$T/pids/client.pid"
	wait "$pid"
	rc=$?
	rm -f "$T/pids/client.pid"
	return $rc
}

# one_run SINK CLIENT: CLIENT is reused, session or volley
one_run() {
	local sink=$1 client=$2 port n per left
	left=$((LIMIT - ($(now_ms) - BEGIN) / 1000))
	[ "$left" -gt 5 ] || { log "out of time (LIMIT=$LIMIT s)"; return 1; }
	port=$(free_port)
	sink_up "$sink" "$port" || { log "$sink did not start"; return 1; }
	case $client in
	reused | session)
		per=$((MSGS_REUSED / PROCS))
		[ "$client" = session ] && per=$((MSGS_SESSION / PROCS))
		n=$((per * PROCS))
		local d=-d label="${PROCS}x${SESS}-reused"
		[ "$client" = session ] && d= label="${PROCS}x${SESS}-per-msg"
		bounded "$left" "$PY" "$T/drive.py" "$SINK_PID" "$n" "$ROWS" "$sink" smtp-source "$label" -- \
			"$PROCS" smtp-source -s "$SESS" -l "$SIZE" -m "$per" $d \
			-f bench@sender.test -t u@b0.test "$MX:$port" >/dev/null ||
			{ log "$sink / smtp-source $label failed"; stop_sink "$MX"; return 1; }
		;;
	volley)
		SINK_PORT=$port CFG_INSTANCE=sinkbench CFG_RETRY='[5s]' CFG_MAX_AGE=1h \
			write_config "$T/volley.conf"
		redis_cli FLUSHALL >/dev/null
		"$VOLLEY" inject -c "$T/volley.conf" --from bench@sender.test --msg "$T/msg.eml" \
			--rcpts "$T/rcpts" >"$T/inject.log" 2>&1 ||
			{ log "inject failed: $(tail -3 "$T/inject.log")"; stop_sink "$MX"; return 1; }
		VOLLEY_LOG=warn bounded "$left" "$PY" "$T/drive.py" "$SINK_PID" "$VOLLEY_N" "$ROWS" \
			"$sink" volley 50-domains -- 1 "$VOLLEY" run -c "$T/volley.conf" --drain --no-progress \
			>/dev/null || { log "$sink / volley run failed"; stop_sink "$MX"; return 1; }
		local got
		got=$(events count status=delivered)
		[ "$got" = "$VOLLEY_N" ] ||
			{ log "$sink / volley: $got of $VOLLEY_N delivered"; sed -i '$d' "$ROWS"; stop_sink "$MX"; return 1; }
		# the delivery span: first to last event (stream ids are ms), without
		# the engine's start (DNS, connects) and its drain check at the end
		local first last
		first=$(redis_cli XRANGE volley:events - + COUNT 1 | head -1)
		last=$(redis_cli XREVRANGE volley:events + - COUNT 1 | head -1)
		sed -i "\$s/\$/ $(((${last%-*} - ${first%-*}) ))/" "$ROWS"
		;;
	esac
	stop_sink "$MX"
	tail -1 "$ROWS" | awk '{printf "sink_bench: %-11s %-11s %-15s %6d msgs %6.2f s %6d msgs/s; us/msg: sink %5.1f, client %5.1f; CPUs busy: sink %.2f, client %.2f, machine %.2f%s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, (NF > 11 ? sprintf("; first-last delivery %d ms", $12) : "")}' >&2
}

if want volley; then
	[ -x "$VOLLEY" ] || { echo "build volley first (make)" >&2; exit 1; }
	start_redis || { echo "redis did not start" >&2; exit 1; }
	start_dns < <(for i in $(seq 0 $((NDOM - 1))); do dns_domain "b$i.test" "$MX"; done) ||
		{ echo "dnsmasq did not start" >&2; exit 1; }
	# the ~2 KB message of bench/run.sh (2048 bytes with headers, CRLF)
	"$PY" "$(dirname "${BASH_SOURCE[0]}")/bench_msg.py" 2048 >"$T/msg.eml"
	for i in $(seq 0 $((VOLLEY_N - 1))); do echo "u$i@b$((i % NDOM)).test"; done >"$T/rcpts"
fi

START=$(now_ms)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log "$(nproc) CPUs, load $LOAD0; $REPS repetitions; clients: $CLIENTS"
for rep in $(seq "$REPS"); do
	if [ $((rep % 2)) = 1 ]; then order="volley-sink smtp-sink"; else order="smtp-sink volley-sink"; fi
	for c in reused session volley; do
		want "$c" || continue
		for s in $order; do one_run "$s" "$c" || exit 1; done
	done
done
SECS=$((($(now_ms) - START) / 1000))

echo
echo "# sink_bench: $(nproc) CPUs, loopback, sinks on $MX; median of $REPS runs each;" \
	"load $LOAD0 before, $(cut -d' ' -f1-3 /proc/loadavg) after; ${SECS} s"
"$PY" - "$ROWS" "$SIZE" <<'EOF'
import statistics, sys
rows = {}
for l in open(sys.argv[1]):
    f = l.split()
    rows.setdefault(tuple(f[:3]), []).append([float(x) for x in f[3:]])
med = {k: [statistics.median(c) for c in zip(*v)] for k, v in rows.items()}
rng = {k: (min(r[2] for r in v), max(r[2] for r in v)) for k, v in rows.items()}
hdr = ("sink", "client", "mode", "msgs", "msgs/s", "(min-max)", "sink µs/msg",
       "client µs/msg", "sink CPUs", "client CPUs", "machine CPUs")
fmt = "| %-11s | %-11s | %-15s | %6s | %6s | %-11s | %11s | %13s | %9s | %11s | %12s |"
print(fmt % hdr)
print("|" + "|".join("-" * len(c) for c in (fmt % hdr).split("|")[1:-1]) + "|")
modes = []
for k in rows:
    if k[1:] not in modes:
        modes.append(k[1:])
for m in modes:
    for s in ("volley-sink", "smtp-sink"):
        k = (s,) + m
        if k not in med:
            continue
        n, dt, r, sus, cus, scpus, ccpus, busy = med[k][:8]
        print(fmt % (s, m[0], m[1], "%d" % n, "%.0f" % r, "%.0f-%.0f" % rng[k],
                     "%.1f" % sus, "%.1f" % cus, "%.2f" % scpus, "%.2f" % ccpus, "%.2f" % busy))
print()
for m in modes:
    v, s = med.get(("volley-sink",) + m), med.get(("smtp-sink",) + m)
    if v and s:
        print("# %-11s %-15s volley-sink/smtp-sink: %.2fx msgs/s, %.2fx sink CPU per message"
              % (m[0], m[1], v[2] / s[2], v[3] / s[3]))
for m in modes:
    v, s = med.get(("volley-sink",) + m), med.get(("smtp-sink",) + m)
    if v and s and len(v) > 8:
        print("# %-11s %-15s first to last delivery (no start-up, no drain check): volley-sink %.2f s"
              " = %.0f msgs/s, smtp-sink %.2f s = %.0f msgs/s: %.2fx"
              % (m[0], m[1], v[8] / 1e3, v[0] / v[8] * 1e3, s[8] / 1e3, s[0] / s[8] * 1e3, s[8] / v[8]))
EOF
