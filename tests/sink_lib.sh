#!/usr/bin/env bash
# tests/sink_lib.sh - sourced by tests/integration/t_sink_*.sh: volley-sink's
# own small harness (the engine tests use tests/lib.sh). A temp dir $T,
# cleanup of every sink started, ok/nok reporting, free_port, start_sink,
# stats_now and J for the stats JSON.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SINK=${VOLLEY_SINK:-$ROOT/${VOLLEY_BUILD:-build}/volley-sink}
PY=/usr/bin/python3
T=$(mktemp -d "/tmp/$(basename "$0" .sh).XXXXXX")
PID=
PIDS=()
cleanup() {
	for p in "${PIDS[@]}" $PID; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
fails=0
ok() { echo "ok - $1"; }
nok() { echo "not ok - $1"; fails=$((fails + 1)); }
check() { local n=$1; shift; if "$@"; then ok "$n"; else nok "$n"; fi; }
eq() { [ "$1" = "$2" ] || { echo "#   got '$1', want '$2'" >&2; return 1; }; }
# like NAME GOT PATTERN: shell glob match
like() { if [[ "$2" == $3 ]]; then ok "$1"; else echo "#   got: $2" >&2; nok "$1"; fi; }
is() { if [ "$2" = "$3" ]; then ok "$1"; else echo "#   got: $2, want: $3" >&2; nok "$1"; fi; }
free_port() { $PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
# start_sink NAME ARGS...: start volley-sink (stderr in $T/NAME.err), wait
# until it listens; PID is the newest sink.
start_sink() {
	local n=$1
	shift
	: >"$T/$n.err"
	"$SINK" "$@" 2>"$T/$n.err" &
	PID=$!
	PIDS+=("$PID")
	for _ in $(seq 100); do grep -q listening "$T/$n.err" && return 0; sleep 0.05; done
	cat "$T/$n.err" >&2
	return 1
}
# stats_now: SIGUSR1 the sink $PID and wait for $T/stats.json.
stats_now() {
	rm -f "$T/stats.json"
	kill -USR1 "$PID"
	for _ in $(seq 200); do [ -s "$T/stats.json" ] && return 0; sleep 0.05; done
	return 1
}
# J EXPR: a Python expression over the stats JSON as d.
J() { $PY -c "import json;d=json.load(open('$T/stats.json'));print($1)"; }
