#!/usr/bin/env bash
# t_engine_redis_restart.sh - Redis (AOF, appendfsync always) goes away in
# the middle of a run and comes back on the same port with the same data
# dir, and spends several seconds reading its AOF back (answering -LOADING
# meanwhile): the engine keeps its sessions, reconnects through that, and
# finishes. The engine did not crash, so nothing may happen twice:
# every job gets EXACTLY one final event (`delivered`), every recipient
# reaches the sink exactly once, nothing stays pending.
. "$(dirname "$0")/../lib.sh"
need_volley

N=2000
NDOM=20
MX=127.0.1.1
PAD=100000	# filler keys, loaded back at 60 us each: ~6 s of -LOADING

start_redis --aof || bail "redis did not start"
start_dns < <(for i in $(seq 0 $((NDOM - 1))); do dns_domain "r$i.test" "$MX"; done) || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink "$MX" "$SINK_PORT" -w 1 || bail "smtp-sink did not start"
write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: redis restart\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 0 $((N - 1))); do echo "user$i@r$((i % NDOM)).test"; done >"$T/rcpts"

# Filler the restarted Redis must load before it serves anything: its
# clients (the engine) see -LOADING for a while instead of a quick restart.
redis_cli EVAL "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'pad:' .. i, 'x') end return 1" \
	0 "$PAD" >/dev/null || bail "filler keys"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" \
	--rcpts "$T/rcpts" >"$T/inject.log" 2>&1
is "inject queued $N" "$(redis_cli XLEN volley:jobs)" "$N"

bg_volley "$T/run.log" run -c "$T/volley.conf" --drain
pid=$VOLLEY_PID
# stop Redis once the run is well under way: sessions open, events flowing
wait_for 60 sh -c "[ \$(redis-cli -p $REDIS_PORT XLEN volley:events) -ge 200 ]" ||
	note "fewer than 200 events before the restart"
done_before=$(events count status=delivered)
stop_redis || bail "redis did not stop"
ok "redis stopped mid-run ($done_before of $N delivered events so far)"
[ "$done_before" -lt "$N" ] && ok "the restart happens mid-run" ||
	not_ok "the restart happens mid-run" "all $N were delivered before Redis stopped: the test proves nothing"
sleep 3
kill -0 "$pid" 2>/dev/null && ok "engine still running while redis is down" ||
	not_ok "engine still running while redis is down" "$(show_log "$T/run.log")"
t0=$(now_ms)
restart_redis_loading 60 || bail "redis did not come back"
ok "redis back on port $REDIS_PORT, serving after $(($(now_ms) - t0)) ms of loading"

wait_pid "$pid" 170
is "engine finished the drain after the restart (exit 0)" "$WAIT_RC" 0
[ "$WAIT_RC" = 0 ] || show_log "$T/run.log" 25
note "engine log: $(grep -c -i 'loading' "$T/run.log") lines about -LOADING: $(grep -i -m1 'loading' "$T/run.log" | cut -c1-200)"

check_one_final "$T/rcpts" "$N" exact

done_testing
