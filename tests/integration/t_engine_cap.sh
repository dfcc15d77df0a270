#!/usr/bin/env bash
# t_engine_cap.sh - one slow destination must not stall the others.
# smtp.max_ready = 20 jobs in memory; slow.test answers each message after
# 2 s on one connection and has 60 jobs queued ahead of 10 for fast.test.
# With smtp.max_queued_per_destination = 5, slow.test holds 5 jobs and the
# rest wait in Redis (parked in the retry schedule: no event, no attempt),
# so fast.test's jobs are read and delivered at once. Before the cap, the
# 20 slots filled with slow.test's jobs and fast.test waited about 80 s.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

start_redis || bail "redis did not start"
start_dns "$(dns_domain slow.test 127.0.1.81; dns_domain fast.test 127.0.1.82)" ||
	bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink 127.0.1.81 "$SINK_PORT" || bail "volley-sink (slow)"
start_volley_sink 127.0.1.82 "$SINK_PORT" || bail "volley-sink (fast)"
CFG_SMTP_EXTRA='max_ready = 20; max_queued_per_destination = 5;' \
CFG_EXTRA='domain "slow.test" { max_connections = 1; }' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: cap\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 1 60); do echo "s$i+slow2@slow.test"; done >"$T/slow"
for i in $(seq 1 10); do echo "f$i@fast.test"; done >"$T/fast"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --rcpts "$T/slow" >/dev/null
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --rcpts "$T/fast" >/dev/null

t0=$(now_ms)
bg_volley "$T/run.log" run -c "$T/volley.conf"
pid=$VOLLEY_PID
fast_done() { [ "$(events jobs status=delivered domain=fast.test)" -ge 10 ]; }
if wait_for 20 fast_done; then
	ok "fast.test: all 10 delivered while slow.test is busy ($(($(now_ms) - t0)) ms)"
else
	not_ok "fast.test: all 10 delivered while slow.test is busy" \
		"$(events jobs status=delivered domain=fast.test) delivered; $(show_log "$T/run.log")"
fi
grep -q "dest=default|slow.test holds 5 jobs (smtp.max_queued_per_destination)" "$T/run.log" &&
	ok "the log says slow.test's other jobs wait in Redis" ||
	not_ok "the log says slow.test's other jobs wait in Redis" "$(show_log "$T/run.log")"
kill -TERM "$pid"
wait_pid "$pid" 30
is "SIGTERM: exit 0" "$WAIT_RC" 0

check "every job with an event has exactly one final event" events check-final
is "parking writes no event: nothing deferred" "$(events count status=deferred)" 0
delivered=$(events jobs status=delivered domain=slow.test)
parked=$(redis_cli ZCARD volley:retry)
unread=$(redis_cli XLEN volley:jobs)
is "slow.test: delivered + parked + still in the stream = 60 (nothing lost, nothing doubled)" \
	"$((delivered + parked + unread))" 60
[ "$parked" -gt 0 ] && ok "parked jobs wait in the retry schedule ($parked)" ||
	not_ok "parked jobs wait in the retry schedule" "ZCARD $parked"
done_testing
