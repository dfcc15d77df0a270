#!/usr/bin/env bash
# t_engine_faults.sh - each kind of destination failure gives the contract's
# events, each with its exact class: 4xx on RCPT ("450 4.2.0 Try again
# later", which says nothing more specific) -> deferred class unknown,
# retried, then expired at expires_at; 5xx 5.1.1 on RCPT -> bounced class
# invalid_recipient; hang-up after the dot and at DATA -> deferred class
# connection_failure, no code, retried; nothing listening -> deferred class
# connection_failure; null MX -> bounced 5.1.10 bad_domain; NXDOMAIN ->
# bounced 5.1.2 bad_domain; first MX refusing connections -> delivered
# through the second MX. Every job has exactly one final event.
. "$(dirname "$0")/../lib.sh"
need_volley

start_redis || bail "redis did not start"
start_dns \
	"$(dns_domain soft.test 127.0.1.2)" \
	"$(dns_domain hard.test 127.0.1.3)" \
	"$(dns_domain hangdot.test 127.0.1.4)" \
	"$(dns_domain hangdata.test 127.0.1.5)" \
	"$(dns_domain closed.test 127.0.1.9)" \
	"$(dns_domain ok.test 127.0.1.1)" \
	"mx-host=twomx.test,mx1.twomx.test,10" "host-record=mx1.twomx.test,127.0.1.9" \
	"mx-host=twomx.test,mx2.twomx.test,20" "host-record=mx2.twomx.test,127.0.1.10" \
	"mx-host=nullmx.test,.,0" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink 127.0.1.1 "$SINK_PORT" || bail "sink ok"
start_smtp_sink 127.0.1.2 "$SINK_PORT" -r RCPT -b "450 4.2.0 <rcpt>: Try again later" || bail "sink -r"
start_smtp_sink 127.0.1.3 "$SINK_PORT" -f RCPT -B "550 5.1.1 <rcpt>: Recipient address rejected: User unknown" || bail "sink -f"
start_smtp_sink 127.0.1.4 "$SINK_PORT" -q . || bail "sink -q ."
start_smtp_sink 127.0.1.5 "$SINK_PORT" -q DATA || bail "sink -q DATA"
start_smtp_sink 127.0.1.10 "$SINK_PORT" || bail "sink second MX"
is_listening 127.0.1.9 "$SINK_PORT" && bail "something listens on 127.0.1.9:$SINK_PORT"

CFG_RETRY='[1s]' CFG_MAX_AGE=60s write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nTo: r@x.test\r\nSubject: faults\r\n\r\nbody\r\n' >"$T/msg.eml"

soon=$(($(date +%s) + 6))
# add_job ID TO [EXPIRES_AT]
add_job() {
	local args=(XADD volley:jobs '*' id "$1" to "$2" from f@sender.test)
	[ -n "${3:-}" ] && args+=(expires_at "$3")
	redis_cli -x "${args[@]}" msg <"$T/msg.eml" >/dev/null
}
add_job soft u@soft.test "$soon"
add_job hard u@hard.test
add_job hangdot u@hangdot.test "$soon"
add_job hangdata u@hangdata.test "$soon"
add_job closed u@closed.test "$soon"
add_job nullmx u@nullmx.test
add_job nxdomain u@nosuch.test
add_job twomx u@twomx.test
add_job ok u@ok.test
is "9 jobs queued" "$(redis_cli XLEN volley:jobs)" 9

run_drain "$T/run.log" 90 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run.log"
check "every job has exactly one final event" events check-final --expect 9
events json >"$T/events.json"

# helpers over the event stream
final() { events final "$1"; }
fld() { events field "$@"; }
ndeferred() { events count id="$1" status=deferred; }
expired_in_time() {	# the expired event is not earlier than expires_at
	local ts
	ts=$(fld "$1" ts)
	[ -n "$ts" ] && [ "$ts" -ge $((soon * 1000)) ]
}

# 4xx on RCPT
is "soft: final status" "$(final soft)" expired
is "soft: first event is deferred" "$(events history soft | cut -d, -f1)" deferred
is "soft: deferred code" "$(fld soft code deferred)" 450
is "soft: deferred enh" "$(fld soft enh deferred)" 4.2.0
[ "$(ndeferred soft)" -ge 2 ] && ok "soft: retried ($(ndeferred soft) deferrals)" ||
	not_ok "soft: retried" "history: $(events history soft)"
is "soft: deferred class" "$(fld soft class deferred)" unknown
is "soft: every deferral has that class" "$(events count id=soft status=deferred class=unknown)" "$(ndeferred soft)"
check "soft: expired no earlier than expires_at" expired_in_time soft
is "soft: nothing reached the sink" "$(sink_count 127.0.1.2)" 0

# 5xx on RCPT
is "hard: final status" "$(final hard)" bounced
is "hard: a single event (no retry)" "$(events history hard)" bounced
is "hard: code" "$(fld hard code)" 550
is "hard: enh" "$(fld hard enh)" 5.1.1
is "hard: class" "$(fld hard class)" invalid_recipient
case "$(fld hard reply)" in *"User unknown"*) ok "hard: reply carries the server's text" ;;
*) not_ok "hard: reply carries the server's text" "$(fld hard reply)" ;; esac
is "hard: mx" "$(fld hard mx)" mx.hard.test

# hang-up after the final dot, and at DATA
for j in hangdot hangdata; do
	is "$j: first event is deferred" "$(events history $j | cut -d, -f1)" deferred
	is "$j: deferred class" "$(fld $j class deferred)" connection_failure
	is "$j: no SMTP code (the peer hung up)" "$(fld $j code deferred)" ""
	is "$j: every deferral has that class" \
		"$(events count id=$j status=deferred class=connection_failure)" "$(ndeferred $j)"
	[ "$(events count id=$j status=deferred attempt=2)" -ge 1 ] && ok "$j: retried (attempt 2 seen)" ||
		not_ok "$j: retried (attempt 2 seen)" "history: $(events history $j)"
	is "$j: final status" "$(final $j)" expired
done
is "hangdata: no message captured" "$(sink_count 127.0.1.5)" 0

# MX address where nothing listens
is "closed: first event is deferred" "$(events history closed | cut -d, -f1)" deferred
is "closed: class" "$(fld closed class deferred)" connection_failure
is "closed: no SMTP code" "$(fld closed code deferred)" ""
is "closed: final status" "$(final closed)" expired

# DNS
is "null MX: final status" "$(final nullmx)" bounced
is "null MX: enh" "$(fld nullmx enh)" 5.1.10
is "null MX: one event" "$(events history nullmx)" bounced
is "null MX: class" "$(fld nullmx class)" bad_domain
is "NXDOMAIN: final status" "$(final nxdomain)" bounced
is "NXDOMAIN: enh" "$(fld nxdomain enh)" 5.1.2
is "NXDOMAIN: class" "$(fld nxdomain class)" bad_domain
is "NXDOMAIN: one event" "$(events history nxdomain)" bounced

# two MX, the preferred one refusing
is "twomx: final status" "$(final twomx)" delivered
is "twomx: delivered on the first attempt" "$(events history twomx)" delivered
case "$(fld twomx mx)" in *mx2.twomx.test*|*127.0.1.10*) ok "twomx: event names the second MX ($(fld twomx mx))" ;;
*) not_ok "twomx: event names the second MX" "mx=$(fld twomx mx)" ;; esac
is "twomx: the second MX's sink has it" "$(dumps count "$(sink_dir 127.0.1.10)")" 1

is "ok: delivered" "$(final ok)" delivered
is "ok: in the sink" "$(dumps count "$(sink_dir 127.0.1.1)")" 1
is "nothing pending" "$(xpending_count)" 0

done_testing
