#!/usr/bin/env bash
# t_redis_watchdog.sh - Redis stops answering without closing the
# connection (CLIENT PAUSE ALL, as a hung server or a dead path would):
# with redis.reply_timeout = 2s the engine logs that it got no reply, drops
# the connection and reconnects; once Redis answers again the run finishes,
# every recipient reached the sink exactly once and every job has exactly
# one final event (the resent settling writes are idempotent).
. "$(dirname "$0")/../lib.sh"
need_volley

N=600
NDOM=6
MX=127.0.1.1

start_redis || bail "redis did not start"
start_dns < <(for i in $(seq 0 $((NDOM - 1))); do dns_domain "w$i.test" "$MX"; done) || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink "$MX" "$SINK_PORT" -w 1 || bail "smtp-sink did not start"
# At most 30 sessions against a sink that holds each DATA for 1 s: the run
# takes 20 s or more, so the pause always lands in the middle of it.
CFG_LEASE=60s CFG_SMTP_EXTRA="  max_sessions = 30;" write_config "$T/volley.conf"
sed -i 's/^  lease = .*/&\n  reply_timeout = 2s;/' "$T/volley.conf"
grep -q "reply_timeout = 2s" "$T/volley.conf" || bail "could not set reply_timeout"
printf 'From: f@sender.test\r\nSubject: watchdog\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 0 $((N - 1))); do echo "user$i@w$((i % NDOM)).test"; done >"$T/rcpts"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" \
	--rcpts "$T/rcpts" >"$T/inject.log" 2>&1
is "inject queued $N" "$(redis_cli XLEN volley:jobs)" "$N"

bg_volley "$T/run.log" run -c "$T/volley.conf" --drain
pid=$VOLLEY_PID
events_at_least() { [ "$(redis_cli XLEN volley:events 2>/dev/null || echo 0)" -ge "$1" ]; }
wait_for 30 events_at_least 30 ||
	note "fewer than 30 events seen before the pause"
redis_cli CLIENT PAUSE 7000 ALL >/dev/null
before=$(redis_cli XLEN volley:events 2>/dev/null || echo "?")
ok "redis paused for 7 s (connections stay open, nothing is answered)"
note "events before the pause: $before of $N"
sleep 8

wait_pid "$pid" 120
is "engine finished the drain after the pause (exit 0)" "$WAIT_RC" 0
[ "$WAIT_RC" = 0 ] || show_log "$T/run.log" 25
grep -q "no reply from Redis" "$T/run.log" && ok "the engine logged the missing replies" ||
	not_ok "the engine logged the missing replies" "$(grep -v ' job: ' "$T/run.log" | tail -15)"
grep -q "dropping the connection" "$T/run.log" && ok "and dropped the connection" ||
	not_ok "and dropped the connection"
[ "$(grep -c "redis: connected to" "$T/run.log")" -ge 2 ] && ok "and reconnected" ||
	not_ok "and reconnected" "$(grep ' redis: ' "$T/run.log" | tail -10)"
check "every recipient reached the sink exactly once" \
	dumps check-rcpts --expect "$T/rcpts" "$(sink_dir "$MX")"
check "every job has exactly one final event" events check-final --expect "$N"
is "nothing pending" "$(xpending_count)" 0

done_testing
