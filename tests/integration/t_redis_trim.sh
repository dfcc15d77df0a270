#!/usr/bin/env bash
# t_redis_trim.sh - the producer trims the jobs stream (XTRIM, MAXLEN) while
# jobs are in flight. Every job the engine took still ends with exactly one
# final event:
#   A. jobs held in a slow session whose entries are trimmed (the lease
#      refresh drops them from the pending list): delivered, one event each;
#   B. entries pending at a dead consumer, then trimmed: the takeover
#      (XAUTOCLAIM names them as deleted) gives each one `failed` event
#      whose id is the stream entry ID and whose reply says so;
#   C. the engine is killed with jobs in its pending list, the entries are
#      trimmed, the engine restarts: each gets one `failed` event instead of
#      being acked away.
. "$(dirname "$0")/../lib.sh"
need_volley

MX=127.0.1.1
start_redis || bail "redis did not start"
start_dns "$(dns_domain d0.test $MX)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink "$MX" "$SINK_PORT" || bail "volley-sink did not start"
CFG_LEASE=3s write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: trim\r\n\r\nbody\r\n' >"$T/msg.eml"

stream_ids() { redis_cli XRANGE volley:jobs - + | grep -E '^[0-9]+-[0-9]+$'; }
pending_of() { redis_cli XPENDING volley:jobs volley - + 100000 "$1" | grep -cE '^[0-9]+-[0-9]+$'; }
finals() { events count status=delivered; }

# --- A: held jobs trimmed ---------------------------------------------------
for i in $(seq 1 20); do echo "a$i+slow6@d0.test"; done >"$T/rcpts-a"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" \
	--rcpts "$T/rcpts-a" >"$T/inject-a.log" 2>&1 || bail "inject failed" "$(cat "$T/inject-a.log")"
stream_ids >"$T/ids-a"
is "A: 20 jobs queued" "$(wc -l <"$T/ids-a")" 20

bg_volley "$T/run.log" run -c "$T/volley.conf"
pid=$VOLLEY_PID
wait_for 20 sh -c "[ \$(redis-cli -p $REDIS_PORT XPENDING volley:jobs volley | head -1) -ge 20 ]" ||
	bail "A: the engine did not take the 20 jobs" "$(show_log "$T/run.log")"
redis_cli XTRIM volley:jobs MAXLEN 0 >/dev/null
is "A: the producer trimmed the stream while the jobs were in flight" "$(redis_cli XLEN volley:jobs)" 0
wait_for 40 sh -c "[ \$(redis-cli -p $REDIS_PORT XLEN volley:events) -ge 20 ]"
sleep 1
check "A: every trimmed job that was held has exactly one final event" \
	events check-final --ids "$T/ids-a"
is "A: all 20 delivered" "$(events jobs status=delivered)" 20

# --- B: a dead consumer's pending entries trimmed ----------------------------
# added and read by "ghost" in one script, so the engine cannot take them first
redis_cli EVAL "for i = 1, 3 do redis.call('XADD', KEYS[1], '*', 'to', 'b' .. i .. '@d0.test', 'from', 'f@sender.test', 'msg', 'x') end
return redis.call('XREADGROUP', 'GROUP', 'volley', 'ghost', 'COUNT', 10, 'STREAMS', KEYS[1], '>')" 1 volley:jobs >/dev/null
stream_ids >"$T/ids-b"
is "B: a consumer that will never settle took 3 entries" "$(pending_of ghost)" 3
while read -r id; do redis_cli XDEL volley:jobs "$id" >/dev/null; done <"$T/ids-b"
wait_for 20 sh -c "[ \$(redis-cli -p $REDIS_PORT XLEN volley:events) -ge 23 ]"
sleep 1
check "B: every trimmed entry of the dead consumer has one final event" \
	events check-final --ids "$T/ids-b"
bad=0
while read -r id; do
	st=$(events final "$id")
	r=$(events field "$id" reply)
	[ "$st" = failed ] || bad=1
	case "$r" in *trimmed*) ;; *) bad=1 ;; esac
done <"$T/ids-b"
is "B: each is failed, id = the entry ID, reply says it was trimmed" "$bad" 0
is "B: nothing left pending at the dead consumer" "$(pending_of ghost)" 0

# --- C: killed with pending jobs, trimmed, restarted -------------------------
for i in $(seq 1 10); do echo "c$i+slow8@d0.test"; done >"$T/rcpts-c"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" \
	--rcpts "$T/rcpts-c" >"$T/inject-c.log" 2>&1
stream_ids >"$T/ids-c"
is "C: 10 jobs queued" "$(wc -l <"$T/ids-c")" 10
wait_for 20 sh -c "[ \$(redis-cli -p $REDIS_PORT XPENDING volley:jobs volley | head -1) -ge 10 ]" ||
	note "C: the engine did not take all 10 before the kill"
kill9 "$pid"
redis_cli XTRIM volley:jobs MAXLEN 0 >/dev/null
run_drain "$T/run2.log" 60 -c "$T/volley.conf"
is "C: the restarted engine drains (exit 0)" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run2.log"
check "C: every trimmed job of the killed engine has exactly one final event" \
	events check-final --ids "$T/ids-c"
bad=0
while read -r id; do
	[ "$(events final "$id")" = failed ] || bad=1
done <"$T/ids-c"
is "C: each ended failed" "$bad" 0

check "no job has more than one final event" events check-final
is "nothing pending" "$(xpending_count)" 0

done_testing
