#!/usr/bin/env bash
# t_engine_supperr.sh - Redis refuses the suppression check (the set has
# the wrong type: WRONGTYPE; NOPERM or an old Redis look the same). The
# jobs are handed back with their delivery count put back and reading
# backs off; nothing is sent unchecked and nothing ends `failed` for being
# "delivered too often". Before the fix they were dropped and read again
# in a hot loop, and after redis.max_deliveries leases they ended failed.
# Once the set is mended, every job is delivered exactly once.
. "$(dirname "$0")/../lib.sh"
need_volley

start_redis || bail "redis did not start"
start_dns "$(dns_domain supp.test 127.0.1.97)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink 127.0.1.97 "$SINK_PORT" || bail "smtp-sink did not start"
CFG_LEASE=2s write_config "$T/volley.conf"
sed -i 's/^  lease = 2s;/  lease = 2s;\n  max_deliveries = 2;/' "$T/volley.conf"
grep -q "max_deliveries = 2" "$T/volley.conf" || bail "could not set max_deliveries"
printf 'From: f@sender.test\r\nSubject: supp\r\n\r\nbody\r\n' >"$T/msg.eml"
redis_cli SET volley:suppressed not-a-set >/dev/null
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" \
	a@supp.test b@supp.test c@supp.test >/dev/null

bg_volley "$T/run.log" run -c "$T/volley.conf"
pid=$VOLLEY_PID
sleep 9		# four leases' worth of the broken check
is "nothing settled while the check fails" "$(events count)" 0
is "nothing sent unchecked" "$(ls "$(sink_dir 127.0.1.97)" 2>/dev/null | wc -l)" 0
grep -q "the suppression check failed; jobs handed back" "$T/run.log" &&
	ok "the log says so" || not_ok "the log says so" "$(show_log "$T/run.log")"
n=$(grep -c "the suppression check failed" "$T/run.log")
[ "$n" -le 8 ] && ok "reading backs off ($n log lines in 9 s)" || not_ok "reading backs off" "$n lines"
redis_cli DEL volley:suppressed >/dev/null
wait_for 40 sh -c "[ \$(redis-cli -p $REDIS_PORT XLEN volley:jobs) -eq 0 ]" ||
	not_ok "the jobs are settled once the set is mended" "$(show_log "$T/run.log")"
kill -TERM "$pid"
wait_pid "$pid" 20
check "every job has exactly one final event" events check-final --expect 3
is "all 3 delivered" "$(events jobs status=delivered)" 3
done_testing
