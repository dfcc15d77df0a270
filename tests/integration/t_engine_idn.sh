#!/usr/bin/env bash
# t_engine_idn.sh - internationalised recipients: a job to user@bücher.test
# is resolved and sent as the A-label xn--bcher-kva.test (RCPT TO carries
# the xn-- form; the event's `to` is the address as given); mixed case maps
# to the same domain; a UTF-8 local part goes as given under SMTPUTF8; an
# address literal (user@[127.0.0.1]) and a domain IDNA cannot encode end
# `failed` with a clear reason and nothing is sent for them.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

UMLAUT=$(printf 'b\xc3\xbccher.test')		# bücher.test
UPPER=$(printf 'B\xc3\x9cCHER.test')		# BÜCHER.test
JOSE=$(printf 'jos\xc3\xa9')			# josé
SNOWMAN=$(printf '\xe2\x98\x83.test')		# ☃.test (disallowed in IDNA 2008)

start_redis || bail "redis did not start"
start_dns "$(dns_domain xn--bcher-kva.test 127.0.1.51)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink 127.0.1.51 "$SINK_PORT" || bail "volley-sink did not start"
CFG_RETRY='[1s]' CFG_MAX_AGE=20s write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: idn\r\n\r\nbody\r\n' >"$T/msg.eml"

add_job() {	# ID TO
	redis_cli -x XADD volley:jobs '*' id "$1" to "$2" from f@sender.test msg <"$T/msg.eml" >/dev/null
}
add_job idn "user@$UMLAUT"
add_job idn_case "User2@$UPPER"
add_job utf8_local "$JOSE@$UMLAUT"
add_job literal 'user@[127.0.0.1]'
add_job literal6 'user@[IPv6:::1]'
add_job badidn "user@$SNOWMAN"

run_drain "$T/run.log" 60 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run.log"
check "every job has exactly one final event" events check-final --expect 6

fld() { events field "$@"; }
is "idn: delivered" "$(events history idn)" delivered
is "idn: event echoes the address as given" "$(fld idn to)" "user@$UMLAUT"
is "idn_case: delivered" "$(events history idn_case)" delivered
is "utf8_local: delivered" "$(events history utf8_local)" delivered

caps() { cat "$(sink_dir 127.0.1.51)"/*.eml 2>/dev/null | tr -d '\r'; }
rcpts() { caps | sed -n 's/^X-Sink-Rcpt-To: <\(.*\)>$/\1/p' | sort | tr '\n' ' '; }
want=$(printf '%s\n' "User2@xn--bcher-kva.test" "$JOSE@xn--bcher-kva.test" "user@xn--bcher-kva.test" | sort | tr '\n' ' ')
is "RCPT TO used the A-label (a UTF-8 local part goes under SMTPUTF8)" "$(rcpts)" "$want"
is "SMTPUTF8 only for the UTF-8 local part" "$(caps | grep -c '^X-Sink-Mail-Params:.*SMTPUTF8')" 1

for id in literal literal6; do
	is "$id: failed" "$(events history $id)" failed
	case "$(fld $id reply)" in *"address literals are not accepted"*) ok "$id: reason names address literals" ;;
	*) not_ok "$id: reason names address literals" "reply: $(fld $id reply)" ;; esac
done
is "badidn: failed" "$(events history badidn)" failed
case "$(fld badidn reply)" in *IDNA*) ok "badidn: reason names IDNA" ;;
*) not_ok "badidn: reason names IDNA" "reply: $(fld badidn reply)" ;; esac
is "nothing sent but the three valid jobs" "$(ls "$(sink_dir 127.0.1.51)" | wc -l)" 3
is "nobody suppressed" "$(redis_cli SCARD volley:suppressed)" 0
is "nothing pending" "$(xpending_count)" 0

done_testing
