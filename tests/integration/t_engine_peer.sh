#!/usr/bin/env bash
# t_engine_peer.sh - the engine against a hostile and provider-like peer
# (volley-sink): garbage and overlong replies, a disconnect at RCPT and a
# stall at end of data end in `deferred` (never a crash), greylisting is
# retried until accepted, provider wording is classed (rate_limited,
# invalid_recipient) and a hard bounce suppresses the next job to that
# address; a 421 greeting on the first MX moves on to the second; a message
# over the server's SIZE is bounced 5.3.4 without being sent; an 8-bit body
# is declared BODY=8BITMIME.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

start_redis || bail "redis did not start"
start_dns \
	"$(dns_domain peer.test 127.0.1.21)" \
	"$(dns_domain gmail.test 127.0.1.22)" \
	"$(dns_domain small.test 127.0.1.23)" \
	"$(dns_domain limited.test 127.0.1.26)" \
	"$(dns_domain rset.test 127.0.1.27)" \
	"mx-host=busy.test,mx1.busy.test,10" "host-record=mx1.busy.test,127.0.1.24" \
	"mx-host=busy.test,mx2.busy.test,20" "host-record=mx2.busy.test,127.0.1.25" ||
	bail "dnsmasq did not start"
SINK_PORT=$(free_port)
cat >"$T/sink.conf" <<CONF
greylist { delay = 2s; }
smtp { stall_time = 20s; }
rule "long-mail" { stage = "mail"; from = "long@*"; longline = 5000; }
CONF
cat >"$T/busy.conf" <<CONF
rule "busy" { stage = "connect"; reply = "421 4.3.2 Service not available, too busy"; }
CONF
start_volley_sink 127.0.1.21 "$SINK_PORT" -c "$T/sink.conf" || bail "volley-sink (peer)"
start_volley_sink 127.0.1.22 "$SINK_PORT" --profile gmail || bail "volley-sink (gmail)"
start_volley_sink 127.0.1.23 "$SINK_PORT" --size 1000 || bail "volley-sink (small)"
start_volley_sink 127.0.1.24 "$SINK_PORT" -c "$T/busy.conf" || bail "volley-sink (busy)"
start_volley_sink 127.0.1.25 "$SINK_PORT" || bail "volley-sink (second MX)"
cat >"$T/limited.conf" <<CONF
limits { per_ip_connections = 3; }
CONF
start_volley_sink 127.0.1.26 "$SINK_PORT" -c "$T/limited.conf" || bail "volley-sink (limited)"
cat >"$T/norset.conf" <<CONF
rule "no-rset" { stage = "rset"; reply = "502 5.5.2 RSET not supported here"; }
CONF
start_volley_sink 127.0.1.27 "$SINK_PORT" -c "$T/norset.conf" || bail "volley-sink (no RSET)"

# dot = 3s: the stall at end of data is a time-out, not a hang.
CFG_RETRY='[1s]' CFG_MAX_AGE=60s CFG_SMTP_EXTRA='timeouts { dot = 3s; }' \
	CFG_EXTRA='domain "rset.test" { max_connections = 1; }' write_config "$T/volley.conf"
sed -i 's/^    dot = 30s;$//' "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: peer\r\n\r\nbody\r\n' >"$T/msg.eml"
printf 'From: f@sender.test\r\nSubject: caf\xc3\xa9\r\n\r\nna\xc3\xafve 8-bit body\r\n' >"$T/8bit.eml"
{ printf 'From: f@sender.test\r\nSubject: big\r\n\r\n'; for i in $(seq 40); do printf '%076d\r\n' "$i"; done; } >"$T/big.eml"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config invalid: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"

soon=$(($(date +%s) + 8))
add_job() {	# ID TO FROM MSGFILE [EXPIRES]
	local args=(XADD volley:jobs '*' id "$1" to "$2" from "$3")
	[ -n "${5:-}" ] && args+=(expires_at "$5")
	redis_cli -x "${args[@]}" msg <"$4" >/dev/null
}
add_job garbage u+garbage@peer.test f@sender.test "$T/msg.eml" "$soon"
add_job longline u@peer.test long@sender.test "$T/msg.eml" "$soon"
add_job droprcpt u+droprcpt@peer.test f@sender.test "$T/msg.eml" "$soon"
add_job stall u+stall10@peer.test f@sender.test "$T/msg.eml" "$soon"
add_job grey u+grey@peer.test f@sender.test "$T/msg.eml"
add_job eightbit u8@peer.test f@sender.test "$T/8bit.eml"
add_job ratelimit u+ratelimit@gmail.test f@sender.test "$T/msg.eml" "$soon"
add_job unknown u+unknown@gmail.test f@sender.test "$T/msg.eml"
add_job big u@small.test f@sender.test "$T/big.eml"
add_job busy u@busy.test f@sender.test "$T/msg.eml"
# 60 jobs to a site that takes 3 connections per client IP: the engine opens
# up to 20, the rest get 421 at the greeting; the 3 open sessions carry the
# queue and nothing is deferred.
for i in $(seq 1 60); do add_job "lim$i" "u$i@limited.test" f@sender.test "$T/msg.eml"; done
# A server that refuses RSET: after a failed transaction the next job on that
# session must not inherit the refusal as its own bounce.
add_job rsetbad u+550@rset.test f@sender.test "$T/msg.eml"
add_job rsetgood1 good1@rset.test f@sender.test "$T/msg.eml"
add_job rsetgood2 good2@rset.test f@sender.test "$T/msg.eml"

run_drain "$T/run.log" 90 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run.log"
check "every job has exactly one final event" events check-final --expect 73
grep -q -E "panic|AddressSanitizer|runtime error" "$T/run.log" && not_ok "no crash in the log" || ok "no crash in the log"

fld() { events field "$@"; }
for id in garbage longline droprcpt stall; do
	is "$id: first event deferred" "$(events history $id | cut -d, -f1)" deferred
	is "$id: final expired" "$(events final $id)" expired
done
is "garbage: class protocol_error" "$(fld garbage class deferred)" protocol_error
is "longline: class protocol_error" "$(fld longline class deferred)" protocol_error
is "droprcpt: class connection_failure" "$(fld droprcpt class deferred)" connection_failure
is "stall: class connection_failure (time-out)" "$(fld stall class deferred)" connection_failure
case "$(fld stall reply deferred)" in *timeout*|*time*out*) ok "stall: reply says time-out" ;;
*) not_ok "stall: reply says time-out" "reply: $(fld stall reply deferred)" ;; esac

is "grey: first deferred" "$(events history grey | cut -d, -f1)" deferred
is "grey: class greylisted" "$(fld grey class deferred)" greylisted
is "grey: delivered on a retry" "$(events final grey)" delivered
[ "$(fld grey attempt)" -ge 2 ] && ok "grey: attempt $(fld grey attempt)" || not_ok "grey: attempt >= 2"

is "eightbit: delivered" "$(events final eightbit)" delivered
cap=$(grep -l "u8@peer.test" "$(sink_dir 127.0.1.21)"/* 2>/dev/null | head -1)
[ -n "$cap" ] && grep -a -q "BODY=8BITMIME" "$cap" && ok "eightbit: MAIL had BODY=8BITMIME" ||
	not_ok "eightbit: MAIL had BODY=8BITMIME" "$(head -8 "$cap" 2>/dev/null)"
[ -n "$cap" ] && grep -a -q "na$(printf '\xc3\xaf')ve 8-bit body" "$cap" && ok "eightbit: body intact" ||
	not_ok "eightbit: body intact"

is "ratelimit: deferred" "$(events history ratelimit | cut -d, -f1)" deferred
is "ratelimit: class rate_limited" "$(fld ratelimit class deferred)" rate_limited
is "ratelimit: code 421" "$(fld ratelimit code deferred)" 421
is "unknown: bounced" "$(events final unknown)" bounced
is "unknown: class invalid_recipient" "$(fld unknown class)" invalid_recipient
is "unknown: enh 5.1.1" "$(fld unknown enh)" 5.1.1
is "unknown: suppressed from now on" "$(redis_cli SISMEMBER volley:suppressed u+unknown@gmail.test)" 1
case "$(redis_cli HGET volley:suppressed_info u+unknown@gmail.test)" in
"bounced:invalid_recipient "[0-9]*) ok "unknown: the suppression keeps its reason and time" ;;
*) not_ok "unknown: the suppression keeps its reason and time" "$(redis_cli HGET volley:suppressed_info u+unknown@gmail.test)" ;;
esac

is "big: bounced" "$(events final big)" bounced
is "big: enh 5.3.4" "$(fld big enh)" 5.3.4
is "big: class message_too_large" "$(fld big class)" message_too_large
is "big: nothing sent" "$(ls "$(sink_dir 127.0.1.23)" | wc -l)" 0

is "busy: delivered" "$(events final busy)" delivered
is "busy: via the second MX" "$(fld busy mx)" mx2.busy.test
is "busy: on the first attempt" "$(fld busy attempt)" 1

is "rset: the unknown user bounced" "$(events final rsetbad)" bounced
is "rset: good1 delivered in the end" "$(events final rsetgood1)" delivered
is "rset: good2 delivered in the end" "$(events final rsetgood2)" delivered
is "rset: no 502 bounce" "$(events count code=502 status=bounced)" 0
is "limited: all 60 delivered" "$(events jobs status=delivered domain=limited.test)" 60
is "limited: none deferred" "$(events count status=deferred domain=limited.test)" 0
grep -q "other session(s) carry the queue" "$T/run.log" && ok "limited: the refused connections were logged" ||
	not_ok "limited: the refused connections were logged"

# A second job to the bounced address is suppressed, never sent.
add_job again u+unknown@gmail.test f@sender.test "$T/msg.eml"
before=$(ls "$(sink_dir 127.0.1.22)" | wc -l)
run_drain "$T/run2.log" 30 -c "$T/volley.conf"
is "second run exits 0" "$DRAIN_RC" 0
is "again: suppressed" "$(events final again)" suppressed
is "again: nothing sent" "$(ls "$(sink_dir 127.0.1.22)" | wc -l)" "$before"

done_testing
