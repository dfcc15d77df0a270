#!/usr/bin/env bash
# t_redis_scripts.sh - the engine's Lua scripts under stress:
#   1. SCRIPT FLUSH while only a deferred job is left: the retry lease gets
#      NOSCRIPT, the scripts are loaded again, and the job runs to its end
#      (expired) instead of waiting forever;
#   2. a refused write (NOPERM: the ACL user loses EVALSHA for a while) is
#      kept and retried with a growing back-off, one log line per step
#      rather than one per write; once the permission is back every job
#      ends with exactly one final event and nothing is delivered twice.
. "$(dirname "$0")/../lib.sh"
need_volley

MX=127.0.1.1
start_redis || bail "redis did not start"
start_dns "$(dns_domain d0.test $MX)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink "$MX" "$SINK_PORT" || bail "volley-sink did not start"
printf 'From: f@sender.test\r\nSubject: scripts\r\n\r\nbody\r\n' >"$T/msg.eml"

# --- 1: NOSCRIPT on the retry path -------------------------------------------
CFG_RETRY='[2s]' CFG_MAX_AGE=8s write_config "$T/volley.conf"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" \
	soft+451@d0.test ok1@d0.test >/dev/null 2>&1
bg_volley "$T/run1.log" run -c "$T/volley.conf" --drain
pid=$VOLLEY_PID
wait_for 15 sh -c "[ \$(redis-cli -p $REDIS_PORT XLEN volley:events) -ge 2 ]" ||
	note "the first attempt did not end in time"
is "first attempt: one deferral" "$(events count status=deferred)" 1
redis_cli SCRIPT FLUSH >/dev/null
ok "SCRIPT FLUSH with only a deferred job left"
wait_pid "$pid" 40
is "the engine reloaded its scripts and drained (exit 0)" "$WAIT_RC" 0
[ "$WAIT_RC" = 0 ] || show_log "$T/run1.log"
soft=$(events ids to=soft+451@d0.test status=expired | cut -f2 | head -1)
is "the deferred job ran on to its end (expired)" "$(events final "$soft")" expired
check "every job has exactly one final event" events check-final --expect 2

# --- 2: NOPERM back-off ----------------------------------------------------
N=300
NDOM=1
redis_cli ACL SETUSER app on '>apppw' '~volley:*' '+@all' >/dev/null
CFG_RETRY='[2s]' CFG_MAX_AGE=60s CFG_LEASE=60s write_config "$T/app.conf"
sed -i "s|redis://127.0.0.1:|redis://app:apppw@127.0.0.1:|" "$T/app.conf"
for i in $(seq 1 $N); do echo "p$i+slow1@d0.test"; done >"$T/rcpts"
"$VOLLEY" inject -c "$T/app.conf" --from f@sender.test --msg "$T/msg.eml" \
	--rcpts "$T/rcpts" >/dev/null 2>&1
bg_volley "$T/run2.log" run -c "$T/app.conf" --drain
pid=$VOLLEY_PID
p_done() { [ "$(events count status=delivered 'to~+slow1@')" -ge 5 ]; }
wait_for 15 p_done || note "no delivery before the permission was taken away"
redis_cli ACL SETUSER app -evalsha >/dev/null
ok "EVALSHA taken away from the engine's ACL user"
sleep 7
lines=$(grep -c "settling write refused" "$T/run2.log" || true)
failed=$(grep -c "settling write failed" "$T/run2.log" || true)
redis_cli ACL SETUSER app +evalsha >/dev/null
ok "EVALSHA given back"
[ "$lines" -ge 1 ] && [ "$lines" -le 6 ] && ok "refused writes: $lines log line(s) in 7 s, one per back-off step" ||
	not_ok "refused writes: one log line per back-off step" "got $lines 'refused' and $failed 'failed' lines"
is "no settling write was given up" "$failed" 0
wait_pid "$pid" 90
is "the engine drained once the permission was back (exit 0)" "$WAIT_RC" 0
[ "$WAIT_RC" = 0 ] || show_log "$T/run2.log"
check "every job has exactly one final event" events check-final --expect $((N + 2))
is "all $N delivered" "$(events jobs status=delivered to~+slow1@)" "$N"
is "nothing pending" "$(xpending_count)" 0
is "nothing was delivered twice (sink: ok1 + $N)" "$(sink_count "$MX")" $((N + 1))

done_testing
