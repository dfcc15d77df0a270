#!/usr/bin/env bash
# tests/integration/run.sh - run the integration tests (`make integration`,
# `make asan` with VOLLEY_BUILD=build-asan).
#
# Usage: run.sh [PATTERN]
#   Runs every tests/integration/t_*.sh (engine, sink and lab tests alike),
#   or only those whose name contains PATTERN (a shell glob fragment, e.g.
#   "engine_faults" or "sink"). Each test runs in its own bash process under
#   `timeout` (TEST_TIMEOUT seconds, default 180), its output prefixed with
#   its name. Ends with the line "N passed, N failed"; exit 1 if any failed.
#
# A test passes when it exits 0 (tests/lib.sh's done_testing does that only
# when every check passed). Tests run one after another: several of them
# measure timing and load the machine on purpose.
set -u

here=$(cd "$(dirname "$0")" && pwd)
pattern=${1:-}
limit=${TEST_TIMEOUT:-180}
passed=0 failed=0
failed_names=()

shopt -s nullglob
tests=("$here"/t_*.sh)
if [ ${#tests[@]} -eq 0 ]; then
	echo "no tests found in $here"
	echo "0 passed, 0 failed"
	exit 1
fi

# Every test's lab dir goes under LAB_PARENT; if a test is killed before its
# own cleanup runs, the daemons it left (their pid files are in
# LAB_PARENT/*/pids) are stopped here.
LAB_PARENT=$(mktemp -d "${TMPDIR:-/tmp}/volley-it.XXXXXX")
chmod 755 "$LAB_PARENT"	# smtp-sink runs as nobody and writes below it
export LAB_PARENT
sweep() {
	local f pid
	for f in "$LAB_PARENT"/*/pids/*.pid; do
		[ -s "$f" ] || continue
		pid=$(cat "$f")
		kill -KILL "$pid" 2>/dev/null && echo "(swept leftover pid $pid from $(basename "$f"))"
	done
	[ "${KEEP:-0}" = 1 ] || rm -rf "${LAB_PARENT:?}"/*
}
# Each test's output, kept apart from the lab dirs the sweep empties.
RESULTS=$(mktemp -d "${TMPDIR:-/tmp}/volley-results.XXXXXX")
trap 'sweep; rm -rf "$RESULTS"; [ "${KEEP:-0}" = 1 ] || rmdir "$LAB_PARENT" 2>/dev/null' EXIT

echo "integration: VOLLEY_BUILD=${VOLLEY_BUILD:-build}, timeout ${limit}s per test"
for t in "${tests[@]}"; do
	name=$(basename "$t" .sh)
	if [ -n "$pattern" ]; then
		case "$name" in *$pattern*) ;; *) continue ;; esac
	fi
	echo "=== $name"
	start=$(date +%s)
	# stdin from /dev/null: CI has none, and nothing here may prompt.
	TEST_NAME=$name timeout -k 10 "$limit" bash "$t" </dev/null 2>&1 |
		sed -u "s/^/[$name] /" | tee "$RESULTS/$name.out"
	rc=${PIPESTATUS[0]}
	secs=$(($(date +%s) - start))
	sweep
	if [ "$rc" -eq 0 ]; then
		passed=$((passed + 1))
		echo "=== $name: PASS (${secs}s)"
	else
		failed=$((failed + 1))
		failed_names+=("$name")
		why="exit $rc"
		[ "$rc" -eq 124 ] && why="timed out after ${limit}s"
		echo "=== $name: FAIL ($why, ${secs}s)"
		# Kept for the summary: CI logs are often read from the tail.
		grep -v '] ok ' "$RESULTS/$name.out" | tail -40 >"$RESULTS/$name.fail"
	fi
	rm -f "$RESULTS/$name.out"
done

if [ $((passed + failed)) -eq 0 ]; then
	echo "no test matches '$pattern'"
	echo "0 passed, 0 failed"
	exit 1
fi
if [ $failed -gt 0 ]; then
	for name in "${failed_names[@]}"; do
		echo
		echo "--- $name: what it printed besides its passing checks (last 40 lines)"
		cat "$RESULTS/$name.fail"
	done
	echo
	echo "failed: ${failed_names[*]}"
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
