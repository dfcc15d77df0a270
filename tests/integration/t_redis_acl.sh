#!/usr/bin/env bash
# t_redis_acl.sh - redis://USER:PASSWORD@host:port/db with the ACL user of
# docs/redis.md (keys under the prefix, no dangerous commands but CONFIG
# GET): the engine and the command line authenticate as that user (AUTH user
# pass), it is enough for everything they do, and the password appears
# nowhere: not in the engine's log, not in `volley status`, `volley inject`
# or `volley check-config` output.
. "$(dirname "$0")/../lib.sh"
need_volley

MX=127.0.1.1
PW='Sup3r-s3cret-PW'
start_redis || bail "redis did not start"
start_dns "$(dns_domain d0.test $MX)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink "$MX" "$SINK_PORT" || bail "smtp-sink did not start"
redis_cli ACL SETUSER app on ">$PW" '~volley:*' '+@all' '-@dangerous' '+config|get' >/dev/null || bail "ACL SETUSER failed"
CFG_INSTANCE=acl1 write_config "$T/volley.conf"
sed -i "s|redis://127.0.0.1:|redis://app:$PW@127.0.0.1:|" "$T/volley.conf"
grep -q "redis://app:" "$T/volley.conf" || bail "could not put the user in the url"
printf 'From: f@sender.test\r\nSubject: acl\r\n\r\nbody\r\n' >"$T/msg.eml"

out=$("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)
is "check-config exits 0" "$?" 0
case "$out" in *"$PW"*) not_ok "check-config does not print the password" "$out" ;;
*) ok "check-config does not print the password" ;; esac

"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" \
	a1@d0.test a2@d0.test a3@d0.test >"$T/inject.log" 2>&1
is "inject as the ACL user exits 0" "$?" 0
is "3 jobs queued" "$(redis_cli XLEN volley:jobs)" 3

bg_volley "$T/run.log" run -c "$T/volley.conf"
pid=$VOLLEY_PID
wait_for 15 sh -c "[ \$(redis-cli -p $REDIS_PORT XLEN volley:events) -ge 3 ]" ||
	note "the jobs did not end in time"
redis_cli CLIENT LIST | grep -q 'user=app' && ok "the engine is connected as user app" ||
	not_ok "the engine is connected as user app" "$(redis_cli CLIENT LIST)"
sleep 1.5
"$VOLLEY" status -c "$T/volley.conf" >"$T/status.out" 2>&1
is "status as the ACL user exits 0" "$?" 0
grep -q "instance acl1" "$T/status.out" && ok "status shows the running instance" ||
	not_ok "status shows the running instance" "$(cat "$T/status.out")"
kill -TERM "$pid"
wait_pid "$pid" 20
is "SIGTERM: exit 0" "$WAIT_RC" 0
is "3 delivered" "$(events jobs status=delivered)" 3
check "every job has exactly one final event" events check-final --expect 3
is "no ACL denial logged by redis" "$(redis_cli ACL LOG | grep -c "^reason$" || true)" 0

leaks=$(grep -l -- "$PW" "$T/run.log" "$T/status.out" "$T/inject.log" 2>/dev/null | xargs -r -n1 basename | tr '\n' ' ')
is "the password appears in no log or output" "${leaks:-none}" none
grep -q 'redis://app:\*\*\*@' "$T/run.log" && ok "the log names the url with the password hidden" ||
	not_ok "the log names the url with the password hidden" "$(grep -m3 redis:// "$T/run.log")"

done_testing
