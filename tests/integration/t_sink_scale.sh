#!/usr/bin/env bash
# t_sink_scale.sh - volley-sink holds 20,000 concurrent idle sessions.
#
# Round 1 (default accept mode): python clients open N sockets from
# 127.0.7.1-4 and wait for every greeting; SIGUSR1 stats must show N current
# sessions; reports the sink's RSS per idle session. With direct descriptors
# (the sink logs "accept mode: direct") the sessions live in the ring's
# fixed-file table, not the fd table, so N is the full 20,000 even where the
# hard RLIMIT_NOFILE is 20,000: the sink's own fd count must stay small, and
# one connection past the full table must wait in the backlog and be greeted
# as soon as a slot frees. Then the clients close everything: 0 current
# sessions, and the sink still serves mail.
# Round 2 (--no-direct, plain fds): the same with N = the fd limit minus 16
# (SINK_SCALE_PLAIN=0 skips it).
. "$(dirname "$0")/../sink_lib.sh"
WANT=${SINK_SCALE_N:-20000}
[ -x "$SINK" ] || { echo "not ok - volley-sink is built ($SINK)"; exit 1; }
# Raise the limit if we may (root with CAP_SYS_RESOURCE); else the hard one.
ulimit -n $((WANT + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
lim=$(ulimit -n)

rss() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }

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
        # IP_BIND_ADDRESS_NO_PORT: the port is picked at connect time per
        # 4-tuple, so earlier rounds' TIME_WAIT sockets don't slow bind().
        s.setsockopt(socket.IPPROTO_IP, 24, 1)
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
# One more connection while the table is full: no greeting for 1 s (it
# waits in the backlog), then one once the others close.
cat >"$T/extra.py" <<'EOF'
import os, socket, sys, time
port, go, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(1)
try: early = s.recv(512)
except socket.timeout: early = b""
open(out + ".ready", "w").write("waiting\n")
while not os.path.exists(go): time.sleep(0.05)
s.settimeout(20)
try: late = early or s.recv(512)
except socket.timeout: late = b""
open(out, "w").write("%s %s\n" % ("early" if early else "none", late[:3].decode() or "nothing"))
EOF

# hold LABEL N [sink args...]: one round.
hold() {
	local label=$1 n=$2 mode h1 h2 rss0 rss1 fds C1 C2 C3=; shift 2
	local P
	P=$($PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
	rm -f "$T"/go "$T"/*.out "$T"/*.ready
	"$SINK" -l "127.0.0.1:$P" --stats "$T/stats.json" "$@" 2>"$T/sink.err" &
	PID=$!
	for _ in $(seq 100); do grep -q listening "$T/sink.err" && break; sleep 0.05; done
	mode=plain
	grep -q "accept mode: direct" "$T/sink.err" && mode=direct
	echo "# $label: $(grep -o 'accept mode: .*' "$T/sink.err")"
	if [ "$label" = default ] && [ "$mode" = plain ]; then
		# No direct descriptors on this kernel: the fd table is the limit.
		[ "$lim" -lt $((n + 16)) ] && n=$((lim - 16))
		echo "# direct descriptors unavailable: holding $n sessions (fd limit $lim)"
	fi
	rss0=$(rss)
	# Two client processes: each stays under its own descriptor limit.
	h1=$((n / 2)); h2=$((n - h1))
	$PY "$T/idle.py" "$P" 0 "$h1" "$T/go" "$T/idle1.out" & C1=$!
	$PY "$T/idle.py" "$P" "$h1" "$h2" "$T/go" "$T/idle2.out" & C2=$!
	for _ in $(seq 900); do [ -s "$T/idle1.out" ] && [ -s "$T/idle2.out" ] && break; sleep 0.05; done
	stats_now
	rss1=$(rss)
	fds=$(ls "/proc/$PID/fd" | wc -l)
	like "$label: clients got $n greetings" "$(( $(cut -d' ' -f1 "$T/idle1.out") + $(cut -d' ' -f1 "$T/idle2.out") ))" "$n"
	like "$label: sessions_current = $n" "$(J 'd["sessions_current"]')" "$n"
	like "$label: sessions_max_concurrent = $n" "$(J 'd["sessions_max_concurrent"]')" "$n"
	like "$label: spread over 4 client addresses" "$(J 'len(d["by_client"])')" "4"
	is "$label: exact per client address" "$(J 'sorted(v["sessions_current"] for v in d["by_client"].values())')" \
		"$($PY -c "n=$n;print(sorted(n // 4 + (k < n % 4) for k in range(4)))")"
	is "$label: local address 127.0.0.1:$P" "$(J 'list(d["by_local"])')" "['127.0.0.1:$P']"
	echo "# $label: $n sessions opened in $(cut -d' ' -f2 "$T/idle2.out") s; sink RSS ${rss0} kB -> ${rss1} kB:" \
		"$(( (rss1 - rss0) * 1024 / n )) bytes per idle session (user space; the kernel socket is extra);" \
		"sink fds: $fds"
	if [ "$mode" = direct ]; then
		like "$label: sessions use no process fds ($fds open)" "$([ "$fds" -lt 64 ] && echo yes || echo no)" yes
		if [ "$n" -ge "$(grep -o '[0-9]* table slots' "$T/sink.err" | cut -d' ' -f1)" ]; then
			$PY "$T/extra.py" "$P" "$T/go" "$T/extra.out" & C3=$!
			for _ in $(seq 100); do [ -s "$T/extra.out.ready" ] && break; sleep 0.05; done
		fi
	fi
	touch "$T/go"
	wait "$C1" "$C2"
	if [ -n "$C3" ]; then
		wait "$C3" || true
		like "$label: past a full table: waits in the backlog, then greeted" "$(cat "$T/extra.out")" "none 220"
	fi
	for _ in $(seq 100); do stats_now; [ "$(J 'd["sessions_current"]')" = 0 ] && break; sleep 0.1; done
	like "$label: all closed: sessions_current = 0" "$(J 'd["sessions_current"]')" "0"
	like "$label: still serving mail" "$(smtp-source -m 3 -c "127.0.0.1:$P" >/dev/null 2>&1 && stats_now && J 'd["messages"]')" "3"
	kill "$PID"; wait "$PID" || true; PID=
}

hold default "$WANT"
if [ "${SINK_SCALE_PLAIN:-1}" = 1 ]; then
	np=$WANT
	[ "$lim" -lt $((np + 16)) ] && np=$((lim - 16))
	hold no-direct "$np" --no-direct
fi
[ "$fails" = 0 ]
