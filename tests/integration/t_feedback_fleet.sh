#!/usr/bin/env bash
# t_feedback_fleet.sh - a threshold's suspension reaches every engine.
# Two engines share one Redis: fl-a owns pool "a" (127.0.0.86) and is the
# only one with a threshold ("ip-bounces": invalid_recipient over 1h above
# 10%, per ip, site "ssite", action suspend for 30 s); fl-b owns pool "b"
# (127.0.0.87) and has no threshold. 60 jobs of pool b to site ssite, 20
# of them refused 550 5.1.1, all leave from fl-b's IP. fl-a's look crosses
# the threshold for ip 127.0.0.87: it has no lane from that IP, so before
# this change nothing was suspended. Now the action is recorded in
# volley:shaping:held ("127.0.0.87|ssite" = "suspended until=MS ...") and
# fl-b, which reads it once a second, suspends its own lane
# 127.0.0.87/ssite: a lane entry in volley:shaping (one, not one per
# read), the lane `suspended` in `volley status`, fl-b's log says so, and
# five later jobs of pool b are not sent while it lasts. Once the 30 s
# are over the lane resumes, the later jobs are delivered, and the field
# is deleted by the first engine to read it past its end. fl-b (no
# thresholds) still exports the rates to its instance status (every
# 10 s). Exactly one final event per job.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

MX=127.0.1.88
start_redis || bail "redis did not start"
start_dns < <(dns_domain sb.test "$MX") || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink "$MX" "$SINK_PORT" || bail "volley-sink did not start"
# (a short resume_spread: the waiting jobs come back soon after the end)
common='
shaping { resume_spread = 1s; }
site "ssite" { mx = ["*.sb.test"]; }
pool "a" { ip "127.0.0.86" { instance = "fl-a"; } }
pool "b" { ip "127.0.0.87" { instance = "fl-b"; } }'
CFG_INSTANCE=fl-a CFG_MAX_AGE=5min CFG_EXTRA="$common
threshold \"ip-bounces\" {
  metric = \"bounce_rate\"; classes = [\"invalid_recipient\"]; over = 1h; above = \"10%\";
  min_volume = 50; per = \"ip\"; site = \"ssite\"; action = \"suspend\"; duration = 30s;
}" write_config "$T/a.conf"
CFG_INSTANCE=fl-b CFG_MAX_AGE=5min CFG_EXTRA="$common" write_config "$T/b.conf"
for c in a b; do
	"$VOLLEY" check-config -c "$T/$c.conf" >/dev/null ||
		bail "config $c: $("$VOLLEY" check-config -c "$T/$c.conf" 2>&1)"
done

# jobs FROM TO [TAG]: jobs e-FROM..e-TO of pool b to e-N[+TAG]@sb.test.
jobs() {
	for i in $(seq "$1" "$2"); do
		printf 'XADD volley:jobs * id e-%d to e-%d%s@sb.test from news@example.com pool b campaign E msg "From: f@sender.test\\r\\nSubject: fleet\\r\\n\\r\\nbody\\r\\n"\n' \
			"$i" "$i" "${3:+$3}"
	done | redis_cli >/dev/null
}
jobs 1 40
jobs 41 60 +550

bg_volley "$T/a.log" run -c "$T/a.conf"
apid=$VOLLEY_PID
bg_volley "$T/b.log" run -c "$T/b.conf"
bpid=$VOLLEY_PID
at_least() { local n=$1; shift; [ "$(events jobs "$@")" -ge "$n" ]; }
wait_for 60 at_least 60 campaign=E || bail "60 jobs settled" "$(events summary)" "$(show_log "$T/b.log")"
is "20 bounced" "$(events jobs campaign=E status=bounced)" 20
is "every one sent from fl-b's IP" "$(events count status=delivered ip=127.0.0.87)" 40
H=$(($(date +%s) / 3600))
is "bounces counted for the IP" "$(redis_cli HGET "volley:rate:ip:127.0.0.87:$H" b:invalid_recipient)" 20

# fl-a crosses the threshold (it reads every 5 s) and records it.
held() { [ -n "$(redis_cli HGET volley:shaping:held '127.0.0.87|ssite')" ]; }
wait_for 20 held || bail "the suspension recorded in volley:shaping:held" \
	"$(redis_cli HGETALL volley:shaping:held)" "$(show_log "$T/a.log")"
v=$(redis_cli HGET volley:shaping:held '127.0.0.87|ssite')
case "$v" in
"suspended until="*" mph=0 threshold ip-bounces: bounces 20 of 60 sent (33.3333%) over 1h > 10%")
	ok "held: action, end and the figures" ;;
*) not_ok "held: action, end and the figures" "$v" ;;
esac
until=${v#suspended until=}
until=${until%% *}
left=$((until - $(now_ms)))
[ "$left" -gt 15000 ] && [ "$left" -le 30000 ] && ok "held until about 30 s from now" ||
	not_ok "held until about 30 s from now" "$left ms left"
grep -q "threshold ip-bounces: no lane of this engine to ssite from 127.0.0.87" "$T/a.log" &&
	ok "fl-a has no lane from that IP" || not_ok "fl-a has no lane from that IP" "$(show_log "$T/a.log")"

# fl-b applies it to its own lane within a second or two.
lane_entry() {
	redis_cli --raw XRANGE volley:shaping - + | grep -c '^127.0.0.87/ssite$'
}
two() { [ "$(lane_entry)" -ge 2 ]; }
wait_for 10 two || not_ok "fl-b's lane suspended (a lane entry besides the threshold's)" \
	"$(redis_cli --raw XRANGE volley:shaping - +)" "$(show_log "$T/b.log")"
grep -q "rates: suspend 127.0.0.87/ssite for [0-9]*s (shaping:held): 1 lane(s) of this engine changed" \
	"$T/b.log" && ok "fl-b logs the suspension it applied" ||
	not_ok "fl-b logs the suspension it applied" "$(show_log "$T/b.log")"
lane_suspended() {
	"$VOLLEY" status -c "$T/b.conf" | grep -F 127.0.0.87/ssite | grep -q suspended
}
wait_for 10 lane_suspended && ok "volley status shows fl-b's lane suspended" ||
	not_ok "volley status shows fl-b's lane suspended" "$("$VOLLEY" status -c "$T/b.conf")"

# Held, not sent: five more jobs wait while it lasts.
sent=$(sink_count "$MX")
jobs 61 65
sleep 4
is "the later jobs are not sent while suspended" "$(sink_count "$MX")" "$sent"
is "... no final event for them" "$(events jobs campaign=E)" 60
is "one lane entry (applied once, not at every read)" "$(lane_entry)" 2
is "two suspended entries: the threshold's and fl-b's lane" \
	"$(redis_cli --raw XRANGE volley:shaping - + | grep -c '^suspended$')" 2

# fl-b without thresholds still exports the rates (every 10 s).
exported() { [ -n "$(redis_cli HGET volley:instance:fl-b rate:ip:127.0.0.87)" ]; }
wait_for 15 exported && ok "fl-b's instance status has the IP's rates" ||
	not_ok "fl-b's instance status has the IP's rates" "$(redis_cli HGETALL volley:instance:fl-b)"
case "$(redis_cli HGET volley:instance:fl-b rate:ip:127.0.0.87)" in
*"d1d=40 b1d=20 c1d=0 br1d=33.3333% cr1d=0%") ok "... with its figures" ;;
*) not_ok "... with its figures" "$(redis_cli HGET volley:instance:fl-b rate:ip:127.0.0.87)" ;;
esac

# The end: the lane resumes, the later jobs go, the field is deleted.
wait_for 90 at_least 65 campaign=E || not_ok "the later jobs delivered once the suspension ended" \
	"$(events summary)" "$(show_log "$T/b.log")"
is "... all five delivered" "$(events jobs campaign=E status=delivered)" 45
[ "$(now_ms)" -ge "$until" ] && ok "... not before its end" ||
	not_ok "... not before its end" "now $(now_ms), until $until"
gone() { [ "$(redis_cli HEXISTS volley:shaping:held '127.0.0.87|ssite')" = 0 ]; }
wait_for 10 gone && ok "the field is deleted once past its end" ||
	not_ok "the field is deleted once past its end" "$(redis_cli HGETALL volley:shaping:held)"
check "exactly one final event per job" events check-final --expect 65

kill -TERM "$apid" "$bpid"
wait_pid "$apid" 30
is "fl-a stops cleanly" "$WAIT_RC" 0
wait_pid "$bpid" 30
is "fl-b stops cleanly" "$WAIT_RC" 0
done_testing
