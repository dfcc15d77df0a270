#!/usr/bin/env bash
# t_engine_redis_restart.sh - Redis (AOF, appendfsync always) goes away in
# the middle of a run and comes back on the same port with the same data
# dir: the engine reconnects and finishes. Every job gets a final event,
# every recipient reaches the sink at least once, nothing stays pending.
. "$(dirname "$0")/../lib.sh"
need_volley

N=2000
NDOM=20
MX=127.0.1.1

start_redis --aof || bail "redis did not start"
start_dns < <(for i in $(seq 0 $((NDOM - 1))); do dns_domain "r$i.test" "$MX"; done) || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink "$MX" "$SINK_PORT" -w 1 || bail "smtp-sink did not start"
write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: redis restart\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 0 $((N - 1))); do echo "user$i@r$((i % NDOM)).test"; done >"$T/rcpts"

"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" \
	--rcpts "$T/rcpts" >"$T/inject.log" 2>&1
is "inject queued $N" "$(redis_cli XLEN volley:jobs)" "$N"

bg_volley "$T/run.log" run -c "$T/volley.conf" --drain
pid=$VOLLEY_PID
wait_for 15 sh -c "[ \$(ss -Htn state established dst $MX:$SINK_PORT | wc -l) -ge 10 ]" ||
	note "fewer than 10 sessions seen before the restart"
sleep 1
done_before=$(events count status=delivered)
stop_redis || bail "redis did not stop"
ok "redis stopped mid-run ($done_before of $N delivered events so far)"
sleep 3
kill -0 "$pid" 2>/dev/null && ok "engine still running while redis is down" ||
	not_ok "engine still running while redis is down" "$(show_log "$T/run.log")"
restart_redis || bail "redis did not come back"
ok "redis back on port $REDIS_PORT"

wait_pid "$pid" 130
is "engine finished the drain after the restart (exit 0)" "$WAIT_RC" 0
[ "$WAIT_RC" = 0 ] || show_log "$T/run.log" 25

check_delivered_at_least_once "$T/rcpts" "$N"

done_testing
