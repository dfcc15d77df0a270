#!/usr/bin/env bash
# t_redis_loading.sh - Redis (AOF) restarts in the middle of a run with a
# dataset large enough that it answers -LOADING for a while after the
# restart. Sessions finish while Redis is away, so settling writes wait in
# the engine's outbox. The engine must not read its pending list back
# before those writes are answered: every recipient reaches the sink
# exactly once and every job has exactly one final event.
. "$(dirname "$0")/../lib.sh"
need_volley

N=1500
NDOM=15
MX=127.0.1.1

start_redis --aof || bail "redis did not start"
# ~3M small keys: loading them takes a second or two
for i in 1 2 3; do
	redis_cli EVAL "for i = 1, 1000000 do redis.call('SET', 'fill:' .. ARGV[1] .. ':' .. i, 'x') end return 1" 0 "$i" >/dev/null ||
		bail "could not fill redis"
done
redis_cli BGREWRITEAOF >/dev/null 2>&1
aof_idle() { redis_cli INFO persistence | grep -q '^aof_rewrite_in_progress:0' &&
	! redis_cli INFO persistence | grep -q '^aof_rewrite_scheduled:1'; }
sleep 1
wait_for 60 aof_idle || bail "AOF rewrite did not finish"
note "redis holds $(redis_cli DBSIZE) keys"

start_dns < <(for i in $(seq 0 $((NDOM - 1))); do dns_domain "l$i.test" "$MX"; done) || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink "$MX" "$SINK_PORT" -w 2 || bail "smtp-sink did not start"
CFG_LEASE=60s write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: loading\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 0 $((N - 1))); do echo "user$i@l$((i % NDOM)).test"; done >"$T/rcpts"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" \
	--rcpts "$T/rcpts" >"$T/inject.log" 2>&1
is "inject queued $N" "$(redis_cli XLEN volley:jobs)" "$N"

bg_volley "$T/run.log" run -c "$T/volley.conf" --drain
pid=$VOLLEY_PID
wait_for 20 sh -c "[ \$(ss -Htn state established dst $MX:$SINK_PORT | wc -l) -ge 50 ]" ||
	note "fewer than 50 sessions seen before the restart"
stop_redis || bail "redis did not stop"
ok "redis stopped mid-run ($(sink_count "$MX") transactions so far)"
sleep 0.2
restart_redis_loading() {
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" \
		--save "" --appendonly yes --appendfsync always \
		--daemonize yes --pidfile "$T/pids/redis.pid" \
		--logfile "$REDIS_DIR/redis.log" >/dev/null
}
restart_redis_loading || bail "redis did not restart"
saw_loading=0
for i in $(seq 1 100); do
	case "$(redis_cli PING 2>&1)" in
	LOADING*) saw_loading=1 ;;
	PONG) break ;;
	esac
	sleep 0.1
done
[ $saw_loading = 1 ] && ok "redis answered LOADING after the restart" ||
	note "LOADING was not observed (the machine loaded the data too fast)"

wait_pid "$pid" 150
is "engine finished the drain after the restart (exit 0)" "$WAIT_RC" 0
[ "$WAIT_RC" = 0 ] || show_log "$T/run.log" 25
grep -q "not ready yet: LOADING" "$T/run.log" && ok "the engine met LOADING" ||
	note "the engine did not meet LOADING this time"
check "every recipient reached the sink exactly once" \
	dumps check-rcpts --expect "$T/rcpts" "$(sink_dir "$MX")"
check "every job has exactly one final event" events check-final --expect "$N"
is "nothing pending" "$(xpending_count)" 0

done_testing
