#!/usr/bin/env bash
# t_engine_takeover.sh - several instances share one Redis: two engines
# (different instance names) split one stream between them; one (mta-a) is
# killed with SIGKILL while it holds pending jobs, and the other (mta-b)
# takes them over (XAUTOCLAIM after the lease) and finishes the whole run.
# Deterministic: it fails unless a really held pending jobs at the kill, b
# logged taking over exactly that many, and each of a's jobs ends with
# exactly one final event written by b (`instance` = mta-b). Every job of
# the run has exactly one final event. Then SIGTERM: the engine stops
# taking jobs, exits 0 promptly, and a restart delivers the rest, again
# with exactly one final event per job.
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
wait_for 60 sh -c "[ \$(redis-cli -p $REDIS_PORT XLEN volley:events) -ge 100 ]" ||
	note "fewer than 100 events before the kill"
sleep 1
na=$(events count status=delivered instance=mta-a)
nb=$(events count status=delivered instance=mta-b)
[ "$na" -gt 0 ] && [ "$nb" -gt 0 ] && ok "both instances delivered (a: $na, b: $nb)" ||
	not_ok "both instances delivered" "a: $na, b: $nb"
# a reads ahead (max_ready 100) and every DATA takes a second: it holds
# pending jobs whenever it is running. Wait until it visibly does.
wait_for 30 sh -c "[ -n \"\$(redis-cli -p $REDIS_PORT XPENDING volley:jobs volley - + 1 mta-a)\" ]" ||
	note "a holds no pending job before the kill"
kill -0 "$apid" 2>/dev/null && ok "instance a still running at the kill" ||
	not_ok "instance a still running at the kill" "$(show_log "$T/a.log")"
kill9 "$apid"
ok "instance a killed with SIGKILL"
pending_ids mta-a >"$T/a-pending"
pa=$(wc -l <"$T/a-pending")
[ "$pa" -gt 0 ] && ok "the dead instance left $pa pending jobs" ||
	not_ok "the dead instance left pending jobs" "XPENDING for mta-a is empty: no takeover can be tested"

wait_pid "$bpid" 170
is "instance b drains everything and exits 0" "$WAIT_RC" 0
[ "$WAIT_RC" = 0 ] || show_log "$T/b.log"
took=$(grep -o 'took over [0-9]* job' "$T/b.log" | awk '{ n += $3 } END { print n + 0 }')
is "b logged taking over a's $pa pending jobs" "$took" "$pa"
check "each of a's pending jobs has exactly one final event, written by b" \
	events check-keys "$T/a-pending" instance=mta-b status=delivered
check "every job has exactly one final event ($N jobs)" events check-final --expect "$N"
is "every job's final event is delivered" "$(events jobs status=delivered)" "$N"
check "every recipient reached the sink at least once (a's killed sessions may have sent some)" \
	dumps check-rcpts --at-least-once --expect "$T/rcpts" "$(sink_dir "$MX")"
note "sink duplicates: $(dumps check-rcpts --at-least-once --expect "$T/rcpts" "$(sink_dir "$MX")" | head -1)"
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
wait_pid "$apid" 60
is "SIGTERM: exit 0" "$WAIT_RC" 0
note "SIGTERM to exit: $(($(now_ms) - t0)) ms"
grep -q "finishing what is in flight" "$T/a2.log" && ok "SIGTERM logged" || not_ok "SIGTERM logged"
done_before=$(events count status=delivered)
[ "$done_before" -lt $((2 * N)) ] && ok "SIGTERM stopped the run early ($done_before of $((2 * N)) delivered)" ||
	note "everything was delivered before SIGTERM"
run_drain "$T/a3.log" 170 -c "$T/a.conf"
is "restart after SIGTERM drains, exit 0" "$DRAIN_RC" 0
cat "$T/rcpts" "$T/rcpts2" >"$T/rcpts-all"
check "every recipient of both runs reached the sink" \
	dumps check-rcpts --at-least-once --expect "$T/rcpts-all" "$(sink_dir "$MX")"
check "every job of both runs has exactly one final event" events check-final --expect $((2 * N))
is "every job's final event is delivered" "$(events jobs status=delivered)" $((2 * N))
is "nothing pending" "$(xpending_count)" 0
is "nothing scheduled for retry" "$(redis_cli ZCARD volley:retry)" 0

done_testing
