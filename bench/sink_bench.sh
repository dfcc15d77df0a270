#!/usr/bin/env bash
# sink_bench.sh - receive speed: smtp-source -> volley-sink versus
# smtp-source -> Postfix smtp-sink, same message size and session count,
# side by side: msgs/s, ratio, and sink CPU per message (utime+stime from
# /proc/PID/stat). Prints a table; asserts nothing.
#
#   bench/sink_bench.sh                 100 sessions, 100000 x 2 KB messages
#   MSGS=20000 SESS=50 SIZE=10240 bench/sink_bench.sh
#
# Two modes: sessions reused for many messages (smtp-source -d) and one
# message per session (connection set-up dominates).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SINK=${VOLLEY_SINK:-$ROOT/${VOLLEY_BUILD:-build}/volley-sink}
MSGS=${MSGS:-100000}
SESS=${SESS:-100}
SIZE=${SIZE:-2048}
PY=/usr/bin/python3
HZ=$(getconf CLK_TCK)
T=$(mktemp -d /tmp/sink_bench.XXXXXX)
PID=
cleanup() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
[ -x "$SINK" ] || { echo "build volley-sink first (make)" >&2; exit 1; }
command -v smtp-source >/dev/null || { echo "smtp-source (postfix) is needed" >&2; exit 1; }

free_port() { $PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_port() {
	for _ in $(seq 100); do
		$PY -c "import socket;socket.create_connection(('127.0.0.1',$1)).close()" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# run NAME MODE(-d or "") -> one table row
run() {
	local name=$1 mode=$2 port t0 t1 c0 c1 msgs
	port=$(free_port)
	if [ "$name" = volley-sink ]; then
		"$SINK" -q -l "127.0.0.1:$port" 2>"$T/err" &
	else
		smtp-sink -u nobody "127.0.0.1:$port" 1000 2>"$T/err" &
	fi
	PID=$!
	wait_port "$port"
	msgs=$MSGS
	[ -z "$mode" ] && msgs=$((MSGS / 4))	# a session per message is slower
	c0=$(cpu_ticks "$PID")
	t0=$(date +%s.%N)
	smtp-source -s "$SESS" -m "$msgs" -l "$SIZE" $mode -c "127.0.0.1:$port" >/dev/null
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$PID")
	kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
	$PY -c "
n, dt, cpu = $msgs, $t1 - $t0, ($c1 - $c0) / $HZ
print('%-12s %-22s %8d %8.2f %10.0f %9.2f %10.1f' % ('$name', '${mode:+reused sessions (-d)}' or 'session per message', n, dt, n / dt, cpu, cpu / n * 1e6))
" | tee -a "$T/rows"
}

echo "# smtp-source -s $SESS -l $SIZE; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-12s %-22s %8s %8s %10s %9s %10s\n' sink mode msgs seconds msgs/s cpu_s cpu_us/msg
for mode in -d ""; do
	run volley-sink "$mode"
	run smtp-sink "$mode"
done
$PY - "$T/rows" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
def rate(name, reused):
    for r in rows:
        if r[0] == name and (("reused" in r) == reused): return float(r[-3]), float(r[-1])
for reused, label in ((True, "reused sessions"), (False, "session per message")):
    v, s = rate("volley-sink", reused), rate("smtp-sink", reused)
    print("# %-20s volley-sink/smtp-sink: %.2fx msgs/s, %.2fx CPU per message" % (label, v[0] / s[0], v[1] / s[1]))
EOF
