#!/usr/bin/env bash
# t_redis_lock.sh - one live process per instance name (volley:lock:NAME):
# a second engine with the same name exits 1 naming the instance while the
# first keeps working; after kill -9 of the first, a new one with that name
# starts once the dead holder's lock expires. A clean exit releases the
# lock at once and leaves nothing behind: no stats hash, no member of
# volley:instances, no consumer in the group (it had nothing pending).
. "$(dirname "$0")/../lib.sh"
need_volley

MX=127.0.1.1
start_redis || bail "redis did not start"
start_dns "$(dns_domain d0.test $MX)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink "$MX" "$SINK_PORT" || bail "smtp-sink did not start"
CFG_INSTANCE=mta-x write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: lock\r\n\r\nbody\r\n' >"$T/msg.eml"
inject() { "$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" "$@" >/dev/null 2>&1; }

bg_volley "$T/a.log" run -c "$T/volley.conf"
apid=$VOLLEY_PID
wait_for 10 grep -q "lock volley:lock:mta-x taken" "$T/a.log" ||
	bail "the first engine did not take its lock" "$(show_log "$T/a.log")"
ok "first engine holds volley:lock:mta-x"

bg_volley "$T/b.log" run -c "$T/volley.conf"
bpid=$VOLLEY_PID
wait_pid "$bpid" 20
is "a second engine with the same instance name exits 1" "$WAIT_RC" 1
grep -q "instance 'mta-x' is already running" "$T/b.log" &&
	ok "and says the instance is already running" ||
	not_ok "and says the instance is already running" "$(show_log "$T/b.log")"

inject a1@d0.test a2@d0.test a3@d0.test
wait_for 15 sh -c "[ \$(redis-cli -p $REDIS_PORT XLEN volley:events) -ge 3 ]"
is "the first engine keeps working (3 delivered)" "$(events jobs status=delivered)" 3
kill -0 "$apid" 2>/dev/null && ok "the first engine is still running" ||
	not_ok "the first engine is still running" "$(show_log "$T/a.log")"

kill9 "$apid"
inject c1@d0.test c2@d0.test
t0=$(now_ms)
run_drain "$T/c.log" 40 -c "$T/volley.conf"
is "after kill -9, a new engine with the name starts and drains (exit 0)" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/c.log"
grep -q "is held by" "$T/c.log" && ok "it waited for the dead holder's lock ($(($(now_ms) - t0)) ms)" ||
	note "the dead holder's lock had already expired"
is "its jobs were delivered" "$(events jobs status=delivered)" 5

# clean exit: the lock is released at once, nothing is left behind
is "stats hash removed at the clean exit" "$(redis_cli EXISTS volley:instance:mta-x)" 0
is "no member of volley:instances left" "$(redis_cli SISMEMBER volley:instances mta-x)" 0
is "lock released" "$(redis_cli EXISTS volley:lock:mta-x)" 0
consumers=$(redis_cli XINFO CONSUMERS volley:jobs volley | grep -cx mta-x || true)
is "consumer deleted (nothing pending)" "$consumers" 0
t0=$(now_ms)
run_drain "$T/d.log" 20 -c "$T/volley.conf"
is "an engine started right after a clean exit runs at once (exit 0)" "$DRAIN_RC" 0
grep -q "is held by" "$T/d.log" && not_ok "it did not wait for a lock" "$(show_log "$T/d.log")" ||
	ok "it did not wait for a lock ($(($(now_ms) - t0)) ms)"

check "every job has exactly one final event" events check-final --expect 5

done_testing
