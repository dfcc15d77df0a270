#!/usr/bin/env bash
# t_inbound_e2e.sh - the feedback loop over real SMTP, end to end: jobs are
# delivered with a VERP return path; then swaks hands the engine's own
# inbound listener a DSN (to the VERP address) and an ARF report (to the
# feedback address) as a provider would; a relay attempt is refused; an
# unparseable message is stored and ends in the unmatched stream. Asserts
# the `bounced` (async=1) and `complained` events with the job's campaign
# and tenant, the tenant's suppression list, and that later jobs to those
# recipients end `suppressed` (exactly one final event per job).
. "$(dirname "$0")/../lib.sh"
need_volley
command -v swaks >/dev/null || bail "swaks is not installed (tests/deps.sh)"

FIX="$ROOT/tests/fixtures"
start_redis || bail "redis did not start"
start_dns "$(dns_domain e2e.test 127.0.1.82)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink 127.0.1.82 "$SINK_PORT" || bail "smtp-sink did not start"
LP=$(free_port)
CFG_SMTP_EXTRA='return_path = "bounces+{id}@bounces.test";' \
CFG_EXTRA="inbound {
  listen = \"127.0.0.1:$LP\";
  domains = [\"bounces.test\", \"fbl.test\"];
}" write_config "$T/volley.conf"
printf 'From: news@example.com\r\nSubject: e2e\r\n\r\nbody\r\n' >"$T/msg.eml"
add() {	# add ID TO TENANT
	redis_cli -x XADD volley:jobs '*' id "$1" to "$2" from news@example.com \
		tenant "$3" campaign "camp-$3" msg <"$T/msg.eml" >/dev/null
}
add e-bounce alice@e2e.test T1
add e-complain carol@e2e.test T1

bg_volley "$T/run.log" run -c "$T/volley.conf"
pid=$VOLLEY_PID
wait_listen 127.0.0.1 "$LP" 20 || bail "the listener is not listening" "$(show_log "$T/run.log")"
delivered() { [ "$(events count status=delivered)" -ge "$1" ]; }
wait_for 30 delivered 2 || bail "two jobs delivered" "$(show_log "$T/run.log")"
ok "two jobs delivered"

sed -e 's/job-8812/e-bounce/g' -e 's/alice@example\.net/alice@e2e.test/g' \
	"$FIX/dsn/hard-user-unknown.eml" >"$T/dsn.eml"
sed -e 's/X-Volley-Id: job-8813/X-Volley-Id: e-complain/' -e 's/bounces+job-8813/news/g' \
	-e 's/dave@isp\.example/carol@e2e.test/g' "$FIX/arf/abuse-report.eml" >"$T/arf.eml"
printf 'From: someone@else.test\r\nSubject: hello\r\n\r\nnot a report at all\r\n' >"$T/junk.eml"
send() {	# send TO FROM FILE: one message through the listener with swaks
	swaks --server "127.0.0.1:$LP" --to "$1" --from "$2" --data "@$3" \
		--hide-all >/dev/null 2>&1
}
check "swaks: the DSN to the VERP address is accepted" send "bounces+e-bounce@bounces.test" "" "$T/dsn.eml"
check "swaks: the ARF report to the feedback address is accepted" send "fbl@fbl.test" "fbl@isp.example" "$T/arf.eml"
check "swaks: an unparseable message is accepted (kept for an operator)" send "postmaster@bounces.test" "x@else.test" "$T/junk.eml"
out=$(swaks --server "127.0.0.1:$LP" --to victim@elsewhere.test --from spam@else.test \
	--quit-after RCPT 2>&1)
case "$out" in *"<** 550 5.7.1"*) ok "a relay attempt is refused with 550 5.7.1" ;;
*) not_ok "a relay attempt is refused with 550 5.7.1" "$out" ;; esac

evs() { [ "$(events count status=bounced async=1)" -ge 1 ] && [ "$(events count status=complained)" -ge 1 ]; }
wait_for 20 evs || not_ok "bounced and complained events" "$(show_log "$T/run.log")"
is "bounce follows the delivery" "$(events history e-bounce)" "delivered,bounced"
is "bounce: async, class" "$(events field e-bounce async bounced) $(events field e-bounce class bounced)" \
	"1 invalid_recipient"
is "bounce: campaign and tenant of the job" \
	"$(events field e-bounce campaign bounced) $(events field e-bounce tenant bounced)" "camp-T1 T1"
is "complaint follows the delivery" "$(events history e-complain)" "delivered,complained"
is "bounced recipient on tenant T1's list" "$(redis_cli SISMEMBER volley:suppressed:T1 alice@e2e.test)" 1
is "complainer on tenant T1's list" "$(redis_cli SISMEMBER volley:suppressed:T1 carol@e2e.test)" 1
unmatched() { [ "$(redis_cli XLEN volley:inbound:unmatched)" -ge 1 ]; }
wait_for 10 unmatched || true
is "the unparseable message is in volley:inbound:unmatched" "$(redis_cli XLEN volley:inbound:unmatched)" 1
reason=$(redis_cli XRANGE volley:inbound:unmatched - + | grep -A1 '^reason$' | tail -1)
[ -n "$reason" ] && ok "with its reason ($reason)" || not_ok "with its reason" "$(redis_cli XRANGE volley:inbound:unmatched - +)"

# Later jobs to those recipients are never sent.
add e-later1 alice@e2e.test T1
add e-later2 carol@e2e.test T1
finals() { [ "$(events jobs)" -ge 4 ]; }
wait_for 20 finals || not_ok "the later jobs settled" "$(events summary)"
is "later job to the bounced recipient: suppressed" "$(events final e-later1)" suppressed
is "later job to the complainer: suppressed" "$(events final e-later2)" suppressed
is "the sink got only the first two" "$(sink_count 127.0.1.82)" 2
kill -TERM "$pid"
wait_pid "$pid" 30
is "SIGTERM: exit 0" "$WAIT_RC" 0
check "exactly one final event per job" events check-final --expect 4
done_testing
