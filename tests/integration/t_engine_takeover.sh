#!/usr/bin/env bash
# t_engine_takeover.sh - several instances share one Redis: two engines
# (different instance names) split one stream between them; one is killed
# with SIGKILL, and the other takes over its pending jobs (XAUTOCLAIM after
# the lease) and finishes the whole run. Then SIGTERM: the engine stops
# taking jobs, exits 0 promptly, and a restart delivers the rest.
. "$(dirname "$0")/../lib.sh"
need_volley

N=1500
NDOM=15
MX=127.0.1.1

start_redis || bail "redis did not start"
start_dns < <(for i in $(seq 0 $((NDOM - 1))); do dns_domain "t$i.test" "$MX"; done) || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
# -w 1: each DATA waits a second for its 354, so the run lasts a while.
start_smtp_sink "$MX" "$SINK_PORT" -w 1 || bail "smtp-sink did not start"
# A small read-ahead (smtp.max_ready) so that neither instance takes the
# whole stream into memory before the other one starts.
CFG_SMTP_EXTRA="max_ready = 100;" CFG_LEASE=3s CFG_INSTANCE=mta-a write_config "$T/a.conf"
CFG_SMTP_EXTRA="max_ready = 100;" CFG_LEASE=3s CFG_INSTANCE=mta-b write_config "$T/b.conf"
printf 'From: f@sender.test\r\nSubject: takeover\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 0 $((N - 1))); do echo "user$i@t$((i % NDOM)).test"; done >"$T/rcpts"
"$VOLLEY" inject -c "$T/a.conf" --from f@sender.test --msg "$T/msg.eml" --rcpts "$T/rcpts" \
	>"$T/inject.log" 2>&1
is "inject queued $N" "$(redis_cli XLEN volley:jobs)" "$N"

bg_volley "$T/a.log" run -c "$T/a.conf"
apid=$VOLLEY_PID
bg_volley "$T/b.log" run -c "$T/b.conf" --drain
bpid=$VOLLEY_PID
wait_for 20 sh -c "[ \$(redis-cli -p $REDIS_PORT XLEN volley:events) -ge 100 ]" ||
	note "fewer than 100 events before the kill"
sleep 1
na=$(events count status=delivered instance=mta-a)
nb=$(events count status=delivered instance=mta-b)
[ "$na" -gt 0 ] && [ "$nb" -gt 0 ] && ok "both instances delivered (a: $na, b: $nb)" ||
	not_ok "both instances delivered" "a: $na, b: $nb"
kill9 "$apid"
ok "instance a killed with SIGKILL"
pa=$(redis_cli XPENDING volley:jobs volley - + 100000 mta-a | grep -c '^[0-9]*-[0-9]*$' || true)
note "a left $pa pending entries"
[ "$pa" -gt 0 ] && ok "the dead instance left pending work" ||
	note "a left nothing pending (the takeover is not exercised this time)"

wait_pid "$bpid" 150
is "instance b drains everything and exits 0" "$WAIT_RC" 0
[ "$WAIT_RC" = 0 ] || show_log "$T/b.log"
grep -q "took over" "$T/b.log" && ok "b logged the takeover" ||
	{ [ "$pa" -gt 0 ] && not_ok "b logged the takeover" "$(show_log "$T/b.log")" || true; }
check "every recipient reached the sink at least once" \
	dumps check-rcpts --at-least-once --expect "$T/rcpts" "$(sink_dir "$MX")"
check "every job has at least one final event" events check-final --at-least-one --expect "$N"
is "nothing pending" "$(xpending_count)" 0
is "nothing scheduled for retry" "$(redis_cli ZCARD volley:retry)" 0

# SIGTERM: stop taking jobs, finish what is in a session, exit 0.
for i in $(seq 0 $((N - 1))); do echo "term$i@t$((i % NDOM)).test"; done >"$T/rcpts2"
"$VOLLEY" inject -c "$T/a.conf" --from f@sender.test --msg "$T/msg.eml" --rcpts "$T/rcpts2" \
	>"$T/inject2.log" 2>&1
bg_volley "$T/a2.log" run -c "$T/a.conf"
apid=$VOLLEY_PID
wait_for 20 sh -c "[ \$(ss -Htn state established dst $MX:$SINK_PORT | wc -l) -ge 10 ]" ||
	note "fewer than 10 sessions before SIGTERM"
t0=$(now_ms)
kill -TERM "$apid"
wait_pid "$apid" 40
is "SIGTERM: exit 0" "$WAIT_RC" 0
note "SIGTERM to exit: $(($(now_ms) - t0)) ms"
grep -q "finishing what is in flight" "$T/a2.log" && ok "SIGTERM logged" || not_ok "SIGTERM logged"
done_before=$(events count status=delivered)
[ "$done_before" -lt $((2 * N)) ] && ok "SIGTERM stopped the run early ($done_before of $((2 * N)) delivered)" ||
	note "everything was delivered before SIGTERM"
run_drain "$T/a3.log" 150 -c "$T/a.conf"
is "restart after SIGTERM drains, exit 0" "$DRAIN_RC" 0
cat "$T/rcpts" "$T/rcpts2" >"$T/rcpts-all"
check "every recipient of both runs reached the sink" \
	dumps check-rcpts --at-least-once --expect "$T/rcpts-all" "$(sink_dir "$MX")"
check "every job has at least one final event" events check-final --at-least-one --expect $((2 * N))
is "nothing pending" "$(xpending_count)" 0

done_testing
