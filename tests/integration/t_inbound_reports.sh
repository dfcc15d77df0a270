#!/usr/bin/env bash
# t_inbound_reports.sh - bounces and complaints in: jobs are delivered with
# a VERP return path, then volley:inbound gets a DSN (tied by the VERP
# envelope recipient), an ARF report (tied by the id header of the
# returned original), a delay notice, garbage and a DSN for an unknown id.
# Asserts: `bounced` async=1 after `delivered` with the job's campaign,
# tenant, pool and IP; `complained`; suppression per tenant (tenant A's
# complaint does not stop tenant B's mail) with its reason; a later job to
# the bounced address ends `suppressed`; the garbage and the unknown id in
# volley:inbound:unmatched with their reasons; the inbound stream fully
# acked; and after a kill -9, an entry left in the dead engine's pending
# list plus the same reports sent again yield no second event.
. "$(dirname "$0")/../lib.sh"
need_volley

FIX="$ROOT/tests/fixtures"
start_redis || bail "redis did not start"
start_dns "$(dns_domain ib.test 127.0.1.81)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink 127.0.1.81 "$SINK_PORT" || bail "smtp-sink did not start"
CFG_SMTP_EXTRA='return_path = "bounces+{id}@bounces.example.com";' \
CFG_EXTRA='inbound { keep_sent = 1d; }' \
	write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: inbound\r\n\r\nbody\r\n' >"$T/msg.eml"
# add ID TO TENANT
add() {
	redis_cli -x XADD volley:jobs '*' id "$1" to "$2" from news@example.com \
		tenant "$3" campaign "camp-$1" msg <"$T/msg.eml" >/dev/null
}
add j-bounce alice@ib.test A
add j-complain dave@ib.test A
add j-other dave@ib.test B
add j-delay bob@ib.test A

bg_volley "$T/run1.log" run -c "$T/volley.conf"
delivered() { [ "$(events count status=delivered)" -ge "$1" ]; }
wait_for 30 delivered 4 || bail "four jobs delivered" "$(events summary)" "$(show_log "$T/run1.log")"
ok "four jobs delivered"
is "sent record written for a delivered job" "$(redis_cli HGET volley:sent:j-bounce tenant)" "A"
ttl=$(redis_cli PTTL volley:sent:j-bounce)
[ "$ttl" -gt 80000000 ] && [ "$ttl" -le 86400000 ] && ok "sent record expires after inbound.keep_sent" ||
	not_ok "sent record expires after inbound.keep_sent" "PTTL $ttl"

# The reports, made from the fixtures for these jobs.
sed -e 's/job-8812/j-bounce/g' -e 's/alice@example\.net/alice@ib.test/g' \
	"$FIX/dsn/hard-user-unknown.eml" >"$T/dsn.eml"
# The ARF: no VERP anywhere, only the id header in the returned original.
sed -e 's/X-Volley-Id: job-8813/X-Volley-Id: j-complain/' -e 's/bounces+job-8813/news/g' \
	-e 's/dave@isp\.example/dave@ib.test/g' "$FIX/arf/abuse-report.eml" >"$T/arf.eml"
sed -e 's/job-9001/j-delay/g' -e 's/bob@example\.org/bob@ib.test/g' \
	"$FIX/dsn/delayed-mailbox-full.eml" >"$T/delayed.eml"
sed -e 's/job-8812/j-nope/g' "$FIX/dsn/hard-user-unknown.eml" >"$T/unknown.eml"
printf 'hello, this is not a report\r\n' >"$T/garbage.eml"
inb() {	# inb FILE [field value...]
	local f=$1
	shift
	redis_cli -x XADD volley:inbound '*' "$@" source test msg <"$f" >/dev/null
}

inb "$T/dsn.eml" rcpt "bounces+j-bounce@bounces.example.com" from ""
inb "$T/arf.eml"
async_bounced() { [ "$(events count status=bounced async=1)" -ge 1 ]; }
complained() { [ "$(events count status=complained)" -ge 1 ]; }
wait_for 20 async_bounced || bail "async bounce event" "$(show_log "$T/run1.log")"
wait_for 20 complained || bail "complained event" "$(show_log "$T/run1.log")"
ok "bounced async=1 and complained written"
is "bounce follows the delivery" "$(events history j-bounce)" "delivered,bounced"
is "delivery stays the final outcome" "$(events final j-bounce)" "delivered"
f() { events field j-bounce "$1" bounced; }
is "bounce: async" "$(f async)" 1
is "bounce: class" "$(f class)" invalid_recipient
is "bounce: code/enh" "$(f code) $(f enh)" "550 5.1.1"
is "bounce: campaign, tenant, pool" "$(f campaign) $(f tenant) $(f pool)" "camp-j-bounce A default"
is "bounce: ip and to from the sent record" "$(f ip) $(f to)" "$(events field j-bounce ip) alice@ib.test"
is "bounce: tied by the VERP envelope recipient" "$(f via)" verp-envelope
g() { events field j-complain "$1" complained; }
is "complaint: feedback type, tenant, campaign" "$(g feedback_type) $(g tenant) $(g campaign)" \
	"abuse A camp-j-complain"
is "complaint: tied by the id header" "$(g via)" id-header

is "bounced address on tenant A's list" "$(redis_cli SISMEMBER volley:suppressed:A alice@ib.test)" 1
is "complained address on tenant A's list" "$(redis_cli SISMEMBER volley:suppressed:A dave@ib.test)" 1
is "not on tenant B's list" "$(redis_cli SISMEMBER volley:suppressed:B dave@ib.test)" 0
is "not on the global list" "$(redis_cli SISMEMBER volley:suppressed dave@ib.test)" 0
case "$(redis_cli HGET volley:suppressed_info:A alice@ib.test)" in
"bounced:invalid_recipient "[0-9]*) ok "suppression reason and time kept" ;;
*) not_ok "suppression reason and time kept" "$(redis_cli HGETALL volley:suppressed_info:A)" ;;
esac

# Crash: kill -9, then leave one entry in the dead engine's pending list
# (read, never settled) and send the same two reports again.
kill9 "$VOLLEY_PID"
inb "$T/dsn.eml" rcpt "bounces+j-bounce@bounces.example.com"
redis_cli XREADGROUP GROUP volley-inbound "lab-$TEST_NAME" COUNT 1 STREAMS volley:inbound '>' >/dev/null
is "one entry left pending for the dead engine" "$(redis_cli XPENDING volley:inbound volley-inbound | head -1)" 1
inb "$T/arf.eml"
inb "$T/delayed.eml" rcpt "bounces+j-delay@bounces.example.com"
inb "$T/garbage.eml"
inb "$T/unknown.eml"
add j-after alice@ib.test A
add j-a2 dave@ib.test A
add j-b2 dave@ib.test B

bg_volley "$T/run2.log" run -c "$T/volley.conf"
inbound_done() {
	[ "$(redis_cli XLEN volley:inbound)" = 0 ] &&
		[ "$(redis_cli XPENDING volley:inbound volley-inbound | head -1)" = 0 ]
}
finals() { [ "$(events jobs)" -ge 7 ]; }
wait_for 30 inbound_done || not_ok "inbound stream emptied" "XLEN $(redis_cli XLEN volley:inbound)" "$(show_log "$T/run2.log")"
wait_for 30 finals || not_ok "seven jobs settled" "$(events summary)"
ok "inbound stream fully acked and deleted"
is "exactly one bounced event for the report sent twice" "$(events count id=j-bounce status=bounced)" 1
is "exactly one complained event for the report sent twice" "$(events count id=j-complain status=complained)" 1
is "the delay notice changes nothing" "$(events history j-delay)" delivered
is "no event for the unknown id" "$(events count id=j-nope)" 0
is "later job to the bounced address: suppressed" "$(events final j-after)" suppressed
is "tenant A's job to the complainer: suppressed" "$(events final j-a2)" suppressed
is "tenant B's job to the same address: delivered" "$(events final j-b2)" delivered
check "exactly one final event per job" events check-final --expect 7

is "two unmatched messages" "$(redis_cli XLEN volley:inbound:unmatched)" 2
um=$(redis_cli --raw XRANGE volley:inbound:unmatched - +)
echo "$um" | grep -q "^not a report" && ok "garbage kept with its reason" || not_ok "garbage kept with its reason" "$um"
echo "$um" | grep -q "^unknown job j-nope" && ok "unknown id kept with its reason" || not_ok "unknown id kept with its reason" "$um"
echo "$um" | grep -q "^hello, this is not a report" && ok "raw message kept" || not_ok "raw message kept" "$um"
grep -q "delayed only" "$T/run2.log" && ok "delay notice logged" || not_ok "delay notice logged" "$(show_log "$T/run2.log")"

kill -TERM "$VOLLEY_PID"
wait_pid "$VOLLEY_PID" 30
is "engine stops cleanly" "$WAIT_RC" 0
done_testing
