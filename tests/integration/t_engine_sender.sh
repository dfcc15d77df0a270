#!/usr/bin/env bash
# t_engine_sender.sh - a refusal of the SENDER is not a verdict on the
# recipient: `553 5.1.8 Sender address rejected: Domain not found` at MAIL
# (the return-path domain had a DNS outage) bounces each job exactly once
# with class auth_failure and adds nobody to volley:suppressed; the same
# words at RCPT (Postfix delays sender checks to RCPT by default) do the
# same; a 4xx at MAIL defers and never suppresses; a 550 5.1.1 at RCPT
# still bounces invalid_recipient and suppresses that one recipient.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

start_redis || bail "redis did not start"
start_dns "$(dns_domain d0.test 127.0.1.41)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
cat >"$T/sink.conf" <<'CONF'
rule "sender-dns-mail" { stage = "mail"; from = "*@outage.test";
  reply = "553 5.1.8 <{from}>: Sender address rejected: Domain not found"; }
rule "sender-dns-rcpt" { stage = "rcpt"; from = "*@late.test";
  reply = "553 5.1.8 <{from}>: Sender address rejected: Domain not found"; }
rule "sender-dns-temp" { stage = "mail"; from = "*@flaky.test";
  reply = "451 4.1.8 <{from}>: Sender address rejected: Domain not found"; }
CONF
start_volley_sink 127.0.1.41 "$SINK_PORT" -c "$T/sink.conf" || bail "volley-sink did not start"
CFG_RETRY='[1s]' CFG_MAX_AGE=60s write_config "$T/volley.conf"
printf 'From: news@outage.test\r\nSubject: sender refused\r\n\r\nbody\r\n' >"$T/msg.eml"

add_job() {	# ID TO FROM [EXPIRES_AT]
	local args=(XADD volley:jobs '*' id "$1" to "$2" from "$3")
	[ -n "${4:-}" ] && args+=(expires_at "$4")
	redis_cli -x "${args[@]}" msg <"$T/msg.eml" >/dev/null
}
soon=$(($(date +%s) + 5))
for i in 1 2 3 4 5; do add_job "mail$i" "user$i@d0.test" news@outage.test; done
for i in 1 2; do add_job "rcpt$i" "late$i@d0.test" news@late.test; done
add_job temp1 temp1@d0.test news@flaky.test "$soon"
add_job unknown u+550@d0.test news@good.test
add_job good good@d0.test news@good.test

run_drain "$T/run.log" 90 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run.log"
check "every job has exactly one final event" events check-final --expect 10

fld() { events field "$@"; }
for id in mail1 mail2 mail3 mail4 mail5 rcpt1 rcpt2; do
	is "$id: history is one bounced event" "$(events history $id)" bounced
	is "$id: class auth_failure (the sender was refused)" "$(fld $id class)" auth_failure
	is "$id: code 553" "$(fld $id code)" 553
	is "$id: enh 5.1.8" "$(fld $id enh)" 5.1.8
done
case "$(fld mail1 reply)" in *"Sender address rejected"*) ok "mail1: reply is the server's" ;;
*) not_ok "mail1: reply is the server's" "reply: $(fld mail1 reply)" ;; esac

is "temp1: first event deferred" "$(events history temp1 | cut -d, -f1)" deferred
is "temp1: final expired" "$(events final temp1)" expired
is "temp1: deferred as auth_failure" "$(fld temp1 class deferred)" auth_failure

is "unknown: bounced" "$(events history unknown)" bounced
is "unknown: class invalid_recipient" "$(fld unknown class)" invalid_recipient
is "good: delivered" "$(events final good)" delivered

# Only the unknown recipient is on the suppression list.
is "volley:suppressed holds only the unknown recipient" \
	"$(redis_cli SMEMBERS volley:suppressed | sort | tr '\n' ' ')" "u+550@d0.test "
rcpts() { cat "$(sink_dir 127.0.1.41)"/*.eml 2>/dev/null | tr -d '\r' |
	sed -n 's/^X-Sink-Rcpt-To: <\(.*\)>$/\1/p' | sort | tr '\n' ' '; }
is "no refused sender's recipient was delivered" "$(rcpts)" "good@d0.test "
is "nothing pending" "$(xpending_count)" 0

done_testing
