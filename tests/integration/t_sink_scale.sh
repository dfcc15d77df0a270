#!/usr/bin/env bash
# t_sink_scale.sh - volley-sink holds 20,000 concurrent idle sessions: a
# python client opens 20k sockets from 127.0.7.1-4, waits for every
# greeting, then SIGUSR1 stats must show 20000 current sessions; reports
# the sink's RSS per idle session. Then the client closes them all and the
# sink must count 0 current sessions and still serve mail.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SINK=${VOLLEY_SINK:-$ROOT/${VOLLEY_BUILD:-build}/volley-sink}
PY=/usr/bin/python3
N=${SINK_SCALE_N:-20000}
T=$(mktemp -d /tmp/t_sink_scale.XXXXXX)
PID=
cleanup() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
fails=0
ok() { echo "ok - $1"; }
nok() { echo "not ok - $1"; fails=$((fails + 1)); }
like() { if [[ "$2" == $3 ]]; then ok "$1"; else echo "#   got: $2" >&2; nok "$1"; fi; }
[ -x "$SINK" ] || { echo "not ok - volley-sink is built ($SINK)"; exit 1; }
# The sink needs N descriptors plus a few: raise the limit if we may (root
# with CAP_SYS_RESOURCE); else hold as many as the hard limit allows.
ulimit -n $((N + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
lim=$(ulimit -n)
if [ "$lim" -lt $((N + 16)) ]; then
	echo "# RLIMIT_NOFILE hard limit is $lim here (no CAP_SYS_RESOURCE): holding $((lim - 16)) sessions instead of $N"
	N=$((lim - 16))
fi

P=$($PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$SINK" -l "127.0.0.1:$P" --stats "$T/stats.json" 2>"$T/sink.err" &
PID=$!
for _ in $(seq 100); do grep -q listening "$T/sink.err" && break; sleep 0.05; done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
stats_now() {
	rm -f "$T/stats.json"; kill -USR1 "$PID"
	for _ in $(seq 200); do [ -s "$T/stats.json" ] && return 0; sleep 0.05; done; return 1
}
J() { $PY -c "import json;d=json.load(open('$T/stats.json'));print($1)"; }

rss0=$(rss)
cat >"$T/idle.py" <<'EOF'
import os, selectors, socket, sys, time
port, first, n, go, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
sel = selectors.DefaultSelector()
socks, got = [], 0
t0 = time.time()
for b in range(first, first + n, 2000):
    batch = []
    for i in range(b, min(first + n, b + 2000)):
        s = socket.socket(); s.setblocking(False)
        s.bind(("127.0.7.%d" % (1 + i % 4), 0))
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_READ); batch.append(s)
    pending = len(batch)
    while pending:
        ev = sel.select(10)
        if not ev: raise SystemExit("timeout waiting for greetings (%d pending)" % pending)
        for k, _ in ev:
            d = k.fileobj.recv(512)
            sel.unregister(k.fileobj)
            pending -= 1
            if d.startswith(b"220 "): got += 1
    socks += batch
open(out, "w").write("%d %.1f\n" % (got, time.time() - t0))
while not os.path.exists(go): time.sleep(0.05)   # hold until told
for s in socks: s.close()
EOF
# Two client processes: each stays under its own descriptor limit.
H1=$((N / 2)); H2=$((N - H1))
$PY "$T/idle.py" "$P" 0 "$H1" "$T/go" "$T/idle1.out" & C1=$!
$PY "$T/idle.py" "$P" "$H1" "$H2" "$T/go" "$T/idle2.out" & C2=$!
for _ in $(seq 900); do [ -s "$T/idle1.out" ] && [ -s "$T/idle2.out" ] && break; sleep 0.05; done
stats_now
rss1=$(rss)
like "clients got $N greetings" "$(( $(cut -d' ' -f1 "$T/idle1.out") + $(cut -d' ' -f1 "$T/idle2.out") ))" "$N"
like "sessions_current = $N" "$(J 'd["sessions_current"]')" "$N"
like "sessions_max_concurrent = $N" "$(J 'd["sessions_max_concurrent"]')" "$N"
like "spread over 4 client addresses" "$(J 'len(d["by_client"])')" "4"
echo "# $N sessions opened in $(cut -d' ' -f2 "$T/idle2.out") s; sink RSS ${rss0} kB -> ${rss1} kB:" \
	"$(( (rss1 - rss0) * 1024 / N )) bytes per idle session (user space; the kernel socket is extra)"
touch "$T/go"
wait "$C1" "$C2"
for _ in $(seq 100); do stats_now; [ "$(J 'd["sessions_current"]')" = 0 ] && break; sleep 0.1; done
like "all closed: sessions_current = 0" "$(J 'd["sessions_current"]')" "0"
like "still serving mail" "$(smtp-source -m 3 -c "127.0.0.1:$P" >/dev/null 2>&1 && stats_now && J 'd["messages"]')" "3"
[ "$fails" = 0 ]
