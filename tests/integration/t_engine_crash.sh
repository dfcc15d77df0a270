#!/usr/bin/env bash
# t_engine_crash.sh - kill -9 the engine while hundreds of sessions are in
# flight, start it again (same config, same instance name) with --drain:
# no job is lost. After a crash a job may be delivered twice, never zero
# times: every recipient reaches the sink at least once (duplicates are
# reported), but every job still gets EXACTLY one final event (the event is
# written only together with the ack), and nothing stays pending.
. "$(dirname "$0")/../lib.sh"
need_volley

N=2000
NDOM=20
MX=127.0.1.1

start_redis || bail "redis did not start"
start_dns < <(for i in $(seq 0 $((NDOM - 1))); do dns_domain "c$i.test" "$MX"; done) || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
# -w 1: every DATA waits a second for its 354, so sessions are mid-
# transaction most of the time.
start_smtp_sink "$MX" "$SINK_PORT" -w 1 || bail "smtp-sink did not start"
CFG_LEASE=5s write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: crash\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 0 $((N - 1))); do echo "user$i@c$((i % NDOM)).test"; done >"$T/rcpts"

"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" \
	--rcpts "$T/rcpts" >"$T/inject.log" 2>&1
is "inject queued $N" "$(redis_cli XLEN volley:jobs)" "$N"

bg_volley "$T/run1.log" run -c "$T/volley.conf"
pid=$VOLLEY_PID
# kill it once the run is well under way: events flowing, sessions open
wait_for 60 sh -c "[ \$(redis-cli -p $REDIS_PORT XLEN volley:events) -ge 200 ]" ||
	note "fewer than 200 events before the kill"
sessions=$(ss -Htn state established dst "$MX:$SINK_PORT" | wc -l)
if kill -0 "$pid" 2>/dev/null; then
	kill9 "$pid"
	ok "engine killed with SIGKILL while $sessions sessions were open"
else
	not_ok "engine still running at the kill" "$(show_log "$T/run1.log")"
fi
before_sink=$(sink_count "$MX")
before_ev=$(events count status=delivered)
note "at the kill: $before_sink dump files (smtp-sink opens one per transaction at MAIL), $before_ev delivered events"
[ "$before_ev" -lt "$N" ] && ok "the crash happened mid-run ($before_ev of $N done)" ||
	not_ok "the crash happened mid-run" "all $N were already delivered: the test proves nothing"
pending=$(xpending_count)
note "pending entries left by the dead engine: ${pending:-?}"

run_drain "$T/run2.log" 130 -c "$T/volley.conf"
is "restarted engine: run --drain exits 0" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run2.log"
note "second run took $DRAIN_MS ms"

check_one_final "$T/rcpts" "$N" at-least-once

done_testing
