#!/usr/bin/env bash
# t_shape_priority.sh - transactional mail first: a job on volley:jobs:high
# leaves within seconds although 100,000 bulk jobs for the same destination
# were queued before it and that destination's lane is rate-limited
# (max_rate "50/s", 2 connections: draining the bulk would take over half
# an hour). The high job is read before the normal stream, goes to the head
# of its destination's queue (taking the room of a bulk job when the queue
# is at smtp.max_queued_per_destination), and the figure from XADD to its
# `delivered` event is printed. A job with priority=bogus ends `failed`
# with one event. The engine is stopped (SIGTERM) with the bulk unfinished:
# every job that finished has exactly one final event.
#
# Phase 2 (a fresh Redis database): a high-stream entry and a normal-stream
# entry with the SAME entry ID are both delivered, each once, with their
# own settle markers (volley:done:h-ID and volley:done:ID); a restart reads
# neither again; and a high entry that comes back pending after it was
# settled (its marker set) is acked without a second event; a deferred
# high job keeps `priority` in its retry hash.
#
# Phase 3, the read-ahead reserve: smtp.max_ready = 20 is full of bulk jobs
# stuck on a destination that answers each message after 20 s on one
# connection; no normal entry is read any more, but a high job for another
# destination is, and leaves within 5 s (without the reserve it would wait
# for a bulk message to finish).
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

BULK=${PRIO_BULK:-100000}
start_redis || bail "redis did not start"
start_dns "$(dns_domain bulk.test 127.0.1.91; dns_domain slow.test 127.0.1.92
	dns_domain fast.test 127.0.1.93)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink --nocapture 127.0.1.91 "$SINK_PORT" || bail "volley-sink"
CFG_MAX_AGE=1h CFG_EXTRA='domain "bulk.test" { max_rate = "50/s"; max_connections = 2; }' \
	write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: news@sender.test\r\nSubject: bulk\r\n\r\nnewsletter\r\n' >"$T/msg.eml"
seq 1 "$BULK" | sed 's/^/b/; s/$/@bulk.test/' >"$T/rcpts"

t0=$(now_ms)
queued=$("$VOLLEY" inject -c "$T/volley.conf" --from news@sender.test --msg "$T/msg.eml" \
	--rcpts "$T/rcpts" --campaign bulk 2>&1)
note "inject: $queued in $(($(now_ms) - t0)) ms"
is "$BULK bulk jobs queued" "$(redis_cli XLEN volley:jobs)" "$BULK"

bg_volley "$T/run.log" run -c "$T/volley.conf"
pid=$VOLLEY_PID
# Steady state: the lane is sending at its rate and the destination's queue
# is full (the rest of the bulk parked in Redis or still unread).
bulk_flowing() { [ "$(events count status=delivered campaign=bulk)" -ge 100 ]; }
wait_for 60 bulk_flowing || bail "bulk mail did not start flowing" "$(show_log "$T/run.log")"
note "before the high job: $(events count status=delivered campaign=bulk) bulk delivered," \
	"$(redis_cli ZCARD volley:retry) parked, $(redis_cli XLEN volley:jobs) in the stream"

# The password reset, on the high stream.
t1=$(now_ms)
hid=$(redis_cli XADD volley:jobs:high '*' to reset@bulk.test from auth@sender.test \
	msg "$(printf 'From: auth@sender.test\r\nSubject: reset\r\n\r\nyour code\r\n')" id reset-1)
high_done() { [ "$(events final reset-1)" != none ]; }
if wait_for 30 high_done; then
	ts=$(events field reset-1 ts)
	lat=$((ts - t1))
	note "high-priority job: XADD -> delivered event in $lat ms (behind $BULK bulk jobs, 50/s lane)"
	is "the high job is delivered" "$(events final reset-1)" delivered
	[ "$lat" -le 5000 ] && ok "it left within 5 s ($lat ms)" ||
		not_ok "it left within 5 s" "$lat ms"
	is "its event names the high stream's key" "$(events field reset-1 key)" "h-$hid"
else
	not_ok "the high job is delivered within 30 s" "$(events history reset-1); $(show_log "$T/run.log")"
fi

# The same on the normal stream with priority=high, behind what is unread
# there: measured, not asserted (it waits until the intake reaches it).
t2=$(now_ms)
redis_cli XADD volley:jobs '*' to vip@bulk.test from auth@sender.test priority high \
	msg "$(printf 'Subject: vip\r\n\r\nx\r\n')" id vip-1 >/dev/null
# And an invalid priority: failed, one event, with the reason.
redis_cli XADD volley:jobs:high '*' to x@bulk.test from auth@sender.test priority bogus \
	msg "$(printf 'Subject: x\r\n\r\nx\r\n')" id bogus-1 >/dev/null
bogus_done() { [ "$(events final bogus-1)" != none ]; }
wait_for 30 bogus_done
is "priority=bogus ends failed" "$(events final bogus-1)" failed
reply=$(events field bogus-1 reply)
case "$reply" in
*"invalid priority"*) ok "the reason says so ($reply)" ;;
*) not_ok "the reason says so" "$reply" ;;
esac
vip_done() { [ "$(events final vip-1)" != none ]; }
if wait_for 20 vip_done; then
	note "priority=high on volley:jobs: XADD -> $(events final vip-1) in" \
		"$(($(events field vip-1 ts) - t2)) ms"
else
	note "priority=high on volley:jobs: not reached within 20 s ($(redis_cli XLEN volley:jobs) unread)"
fi

kill -TERM "$pid"
wait_pid "$pid" 60
is "SIGTERM: exit 0" "$WAIT_RC" 0
printf 'reset-1\nbogus-1\n' >"$T/high-ids"
check "the high and the bogus job have exactly one final event each" \
	events check-final --ids "$T/high-ids"
check "no job that finished has two final events" events check-final
delivered=$(events jobs status=delivered campaign=bulk)
left=$(($(redis_cli ZCARD volley:retry) + $(redis_cli XLEN volley:jobs)))
is "bulk: delivered + parked + unread = $BULK (nothing lost, nothing doubled)" \
	"$((delivered + left))" "$BULK"
is "nothing left on the high stream" "$(redis_cli XLEN volley:jobs:high)" 0
note "bulk delivered before the stop: $delivered"

# --- phase 2: equal entry IDs, settle markers, restart ---
redis_cli FLUSHALL >/dev/null
redis_cli XADD volley:jobs 5-1 to n@bulk.test from a@sender.test id n-1 msg "$(printf 'Subject: n\r\n\r\nn\r\n')" >/dev/null
redis_cli XADD volley:jobs:high 5-1 to h@bulk.test from a@sender.test msg "$(printf 'Subject: h\r\n\r\nh\r\n')" >/dev/null
"$VOLLEY" status -c "$T/volley.conf" | grep -q "high-priority stream: 1 unread or pending" &&
	ok "volley status shows the high stream's depth" ||
	not_ok "volley status shows the high stream's depth" "$("$VOLLEY" status -c "$T/volley.conf" | head -5)"
run_drain "$T/run2.log" 60 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
check "two jobs with the same entry ID: one final event each" events check-final --expect 2
is "both delivered" "$(events jobs status=delivered)" 2
is "the high one's default id is its bare entry ID" "$(events ids to=h@bulk.test | cut -f2)" 5-1
keys=$(events json | "$PY" -c 'import json,sys; print(" ".join(sorted(json.loads(l)["key"] for l in sys.stdin)))')
is "their keys: 5-1 and h-5-1" "$keys" "5-1 h-5-1"
is "settle marker of the normal job" "$(redis_cli EXISTS volley:done:5-1)" 1
is "settle marker of the high job" "$(redis_cli EXISTS volley:done:h-5-1)" 1

run_drain "$T/run3.log" 60 -c "$T/volley.conf"
is "restart: run --drain exits 0" "$DRAIN_RC" 0
is "restart: nothing read again (still 2 events)" "$(events count)" 2

# A settled high job that comes back pending (its ack lost, say): the
# marker under its key makes the settle a no-op (no second event).
redis_cli XADD volley:jobs:high 6-1 to again@bulk.test from a@sender.test id again-1 \
	msg "$(printf 'Subject: a\r\n\r\na\r\n')" >/dev/null
redis_cli XREADGROUP GROUP volley "lab-$TEST_NAME" COUNT 1 STREAMS volley:jobs:high '>' >/dev/null
redis_cli SET volley:done:h-6-1 1 PX 600000 >/dev/null
is "it is pending on the high stream" "$(xpending_count volley:jobs:high)" 1
run_drain "$T/run4.log" 60 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
is "no event for the already settled high job" "$(events count id=again-1)" 0
is "it is acked and gone from the high stream" "$(redis_cli XLEN volley:jobs:high)" 0
is "nothing pending on the high stream" "$(xpending_count volley:jobs:high)" 0

# A deferred high job keeps its class: the retry hash under its key says so.
gid=$(redis_cli XADD volley:jobs:high '*' to g+grey@bulk.test from a@sender.test id grey-1 \
	msg "$(printf 'Subject: g\r\n\r\ng\r\n')")
bg_volley "$T/run6.log" run -c "$T/volley.conf"
pid=$VOLLEY_PID
deferred() { [ "$(events count id=grey-1 status=deferred)" -ge 1 ]; }
wait_for 20 deferred || not_ok "the greylisted high job is deferred" "$(show_log "$T/run6.log")"
is "its retry hash keeps priority high" "$(redis_cli HGET "volley:job:h-$gid" priority)" high
kill -TERM "$pid"
wait_pid "$pid" 60
is "SIGTERM: exit 0" "$WAIT_RC" 0
is "it waits in the retry schedule under its key" "$(redis_cli ZSCORE volley:retry "h-$gid" | grep -c .)" 1

# --- phase 3: the read-ahead reserve ---
redis_cli FLUSHALL >/dev/null
start_volley_sink --nocapture 127.0.1.92 "$SINK_PORT" || bail "volley-sink (slow)"
start_volley_sink --nocapture 127.0.1.93 "$SINK_PORT" || bail "volley-sink (fast)"
CFG_SMTP_EXTRA='max_ready = 20;' CFG_MAX_AGE=1h \
CFG_EXTRA='domain "slow.test" { max_connections = 1; }' write_config "$T/volley3.conf"
seq 1 40 | sed 's/^/s/; s/$/+slow20@slow.test/' >"$T/slow"
"$VOLLEY" inject -c "$T/volley3.conf" --from news@sender.test --msg "$T/msg.eml" \
	--rcpts "$T/slow" >/dev/null
bg_volley "$T/run5.log" run -c "$T/volley3.conf"
pid=$VOLLEY_PID
full() { [ "$(xpending_count volley:jobs)" -ge 20 ]; }
wait_for 20 full || bail "the read-ahead did not fill" "$(show_log "$T/run5.log")"
sleep 1
is "the read-ahead is full: 20 bulk jobs held, no more read" "$(xpending_count volley:jobs)" 20
t3=$(now_ms)
redis_cli XADD volley:jobs:high '*' to otp@fast.test from auth@sender.test id otp-1 \
	msg "$(printf 'Subject: otp\r\n\r\n123456\r\n')" >/dev/null
otp_done() { [ "$(events final otp-1)" != none ]; }
if wait_for 15 otp_done; then
	lat=$(($(events field otp-1 ts) - t3))
	note "high job with the read-ahead full: XADD -> $(events final otp-1) in $lat ms"
	is "it is delivered" "$(events final otp-1)" delivered
	[ "$lat" -le 5000 ] && ok "within 5 s ($lat ms)" || not_ok "within 5 s" "$lat ms"
else
	not_ok "the high job is read although the read-ahead is full" "$(show_log "$T/run5.log")"
fi
is "still no more normal entries read" "$(xpending_count volley:jobs)" 20
kill -TERM "$pid"
wait_pid "$pid" 60
is "SIGTERM: exit 0" "$WAIT_RC" 0
echo otp-1 >"$T/otp-id"
check "the high job has exactly one final event" events check-final --ids "$T/otp-id"
check "no job that finished has two final events" events check-final
done_testing
