#!/usr/bin/env bash
# t_feedback_rates.sh - rates that act (thresholds on the feedback loop).
# 200 jobs of campaign C are delivered (one site, "rsite", matches the MX);
# then two ARF complaints about C's jobs arrive on volley:inbound. With
# threshold "complaints" (complaint_rate over 1d above 0.5%, min_volume
# 100, per campaign, action pause): C is paused within seconds (the pause
# hash says by whom), one volley:shaping entry carries the figures
# ("complaints 2 of 200 delivered (1%) over 1d > 0.5%"), the counters are in
# Redis per campaign, tenant, pool, ip and site. A second threshold per ip
# (complaint_rate over 1h, action warmup_hold) holds the IP's warm-up ramp
# for an hour with the figures as the reason. Later jobs of C wait (no
# event) while campaign D goes out; `volley status` shows C's rates;
# `volley resume campaign C` releases C's jobs and the threshold does not
# pause C again (its marker covers the window). Then 60 jobs to site
# "ssite", 20 of them refused 550 5.1.1: threshold "site-bounces"
# (invalid_recipient over 1h above 10%, per site, suspend) suspends the
# engine's lane 127.0.0.84/ssite: a threshold entry and a lane entry in
# volley:shaping, the lane `suspended` in `volley status`. Exactly one
# final event per job.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

FIX="$ROOT/tests/fixtures"
start_redis || bail "redis did not start"
start_dns < <(dns_domain fb.test 127.0.1.83; dns_domain sb.test 127.0.1.83) ||
	bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink 127.0.1.83 "$SINK_PORT" || bail "volley-sink did not start"
CFG_MAX_AGE=5min CFG_EXTRA='
inbound { keep_sent = 1d; }
site "rsite" { mx = ["*.fb.test"]; }
site "ssite" { mx = ["*.sb.test"]; }
shaping { warmup_burst = 100; }
warmup "big" { daily = [100000]; }
pool "default" { ip "127.0.0.84" { warmup = "big"; } }
threshold "complaints" {
  metric = "complaint_rate"; over = 1d; above = "0.5%"; min_volume = 100;
  per = "campaign"; action = "pause";
}
threshold "site-bounces" {
  metric = "bounce_rate"; classes = ["invalid_recipient"]; over = 1h; above = "10%";
  min_volume = 50; per = "site"; action = "suspend"; duration = 10min;
}
threshold "ip-complaints" {
  metric = "complaint_rate"; over = 1h; above = "0.5%"; min_volume = 100;
  per = "ip"; action = "warmup_hold"; duration = 1h;
}' write_config "$T/volley.conf"
C="$T/volley.conf"
"$VOLLEY" check-config -c "$C" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$C" 2>&1)"

# jobs PREFIX FROM TO CAMPAIGN [DOMAIN] [TAG]: jobs PREFIX-FROM..PREFIX-TO
# (explicit ids) to PREFIX-N[+TAG]@DOMAIN (fb.test).
jobs() {
	for i in $(seq "$2" "$3"); do
		printf 'XADD volley:jobs * id %s-%d to %s-%d%s@%s from news@example.com campaign %s tenant T msg "From: f@sender.test\\r\\nSubject: rates\\r\\n\\r\\nbody\\r\\n"\n' \
			"$1" "$i" "$1" "$i" "${6:+$6}" "${5:-fb.test}" "$4"
	done | redis_cli >/dev/null
}
jobs c 1 200 C

bg_volley "$T/run.log" run -c "$C"
at_least() { local n=$1; shift; [ "$(events jobs "$@")" -ge "$n" ]; }
wait_for 60 at_least 200 status=delivered campaign=C ||
	bail "200 jobs of C delivered" "$(events summary)" "$(show_log "$T/run.log")"
ok "200 jobs of C delivered"
H=$(($(date +%s) / 3600))
is "delivered counted per campaign" "$(redis_cli HGET "volley:rate:campaign:C:$H" d)" 200
is "... per tenant" "$(redis_cli HGET "volley:rate:tenant:T:$H" d)" 200
is "... per pool" "$(redis_cli HGET "volley:rate:pool:default:$H" d)" 200
is "... per site" "$(redis_cli HGET "volley:rate:site:rsite:$H" d)" 200
is "... per ip" "$(redis_cli HGET "volley:rate:ip:127.0.0.84:$H" d)" 200
is "campaign lifetime count" "$(redis_cli HGET volley:rate:campaign:C:life n)" 200
is "lifetime snapshot at 200 outcomes" "$(redis_cli HGET volley:rate:campaign:C:life @200)" 1
is "site on the final event" "$(events field c-1 site delivered)" rsite
is "not paused yet" "$(redis_cli HEXISTS volley:paused:campaign C)" 0

# Two complaints (ARF, tied by the id header of the returned original).
for id in c-7 c-8; do
	sed -e "s/X-Volley-Id: job-8813/X-Volley-Id: $id/" -e 's/bounces+job-8813/news/g' \
		-e "s/dave@isp\\.example/$id@fb.test/g" "$FIX/arf/abuse-report.eml" |
		redis_cli -x XADD volley:inbound '*' source test msg >/dev/null
done
complained() { [ "$(events count status=complained)" -ge 2 ]; }
wait_for 20 complained || bail "two complained events" "$(show_log "$T/run.log")"
ok "two complaints in"
is "complaints counted" "$(redis_cli HGET "volley:rate:campaign:C:$H" c)" 2
paused() { [ "$(redis_cli HEXISTS volley:paused:campaign C)" = 1 ]; }
wait_for 20 paused || bail "campaign C paused by the threshold" "$(show_log "$T/run.log")"
ok "campaign C paused by the threshold"
case "$(redis_cli HGET volley:paused:campaign C)" in
*" volley:threshold complaints") ok "the pause says who paused it" ;;
*) not_ok "the pause says who paused it" "$(redis_cli HGET volley:paused:campaign C)" ;;
esac
sh=$(redis_cli --raw XRANGE volley:shaping - +)
is "one shaping entry" "$(echo "$sh" | grep -c '^paused$')" 1
echo "$sh" | grep -q '^threshold complaints: complaints 2 of 200 delivered (1%) over 1d > 0.5%$' &&
	ok "shaping entry has the figures" || not_ok "shaping entry has the figures" "$sh"
echo "$sh" | grep -qx 'campaign:C' && ok "shaping entry names the campaign" ||
	not_ok "shaping entry names the campaign" "$sh"
grep -q "paused campaign 'C': threshold complaints: complaints 2 of 200" "$T/run.log" && ok "logged" ||
	not_ok "logged" "$(show_log "$T/run.log")"
# The IP's threshold: its warm-up ramp held for an hour, one entry.
held() { [ -n "$(redis_cli HGET volley:warmup:127.0.0.84 hold_until)" ]; }
wait_for 20 held || not_ok "the IP's warm-up is held" "$(redis_cli HGETALL volley:warmup:127.0.0.84)"
until=$(redis_cli HGET volley:warmup:127.0.0.84 hold_until)
[ "${until:-0}" -gt $(($(now_ms) + 3000000)) ] && ok "the IP's warm-up is held for about an hour" ||
	not_ok "the IP's warm-up is held for about an hour" "hold_until=$until now=$(now_ms)"
case "$(redis_cli HGET volley:warmup:127.0.0.84 hold_reason)" in
"threshold ip-complaints: complaints 2 of 200 delivered (1%) over 1h > 0.5%") ok "hold reason has the figures" ;;
*) not_ok "hold reason has the figures" "$(redis_cli HGETALL volley:warmup:127.0.0.84)" ;;
esac
sh=$(redis_cli --raw XRANGE volley:shaping - +)
is "one warmup_held entry" "$(echo "$sh" | grep -c '^warmup_held$')" 1
echo "$sh" | grep -qx 'ip:127.0.0.84' && ok "it names the IP" || not_ok "it names the IP" "$sh"
st=$("$VOLLEY" status -c "$C")
echo "$st" | grep -Eq "^ *campaign C +200/0/2 0\\.00%b 1\\.00%c +200/0/2" && ok "volley status shows C's rates" ||
	not_ok "volley status shows C's rates" "$st"

# The instance status carries the figures the engine last read (every 5 s
# with thresholds): one field per name, and a field of a name no longer
# read is removed by the next export.
INST="volley:instance:lab-$TEST_NAME"
redis_cli HSET "$INST" rate:campaign:OLD "d1h=1" >/dev/null
exported() {
	[ "$(redis_cli HEXISTS "$INST" rate:campaign:OLD)" = 0 ] &&
		[ -n "$(redis_cli HGET "$INST" rate:campaign:C)" ]
}
wait_for 15 exported && ok "the instance status has C's rates, a stale name is gone" ||
	not_ok "the instance status has C's rates, a stale name is gone" "$(redis_cli HGETALL "$INST")"
is "C's figures in the instance status" "$(redis_cli HGET "$INST" rate:campaign:C)" \
	"d1h=200 b1h=0 c1h=2 br1h=0% cr1h=1% d1d=200 b1d=0 c1d=2 br1d=0% cr1d=1%"
case "$(redis_cli HGET "$INST" rate:site:rsite)" in
"d1h=200 b1h=0 c1h=2 "*) ok "... and the site's (every judged dimension)" ;;
*) not_ok "... and the site's (every judged dimension)" "$(redis_cli HGETALL "$INST")" ;;
esac
[ "$(redis_cli HGET "$INST" rates_at)" -gt $(($(now_ms) - 20000)) ] 2>/dev/null &&
	ok "rates_at says when they were read" || not_ok "rates_at says when they were read"

# C waits, D goes on (once the engine has seen the pause: within a second).
honoured() { grep -q "campaign 'C' is paused" "$T/run.log"; }
wait_for 10 honoured || bail "the engine honours the pause" "$(show_log "$T/run.log")"
jobs c 201 220 C
jobs d 1 20 D
wait_for 30 at_least 20 status=delivered campaign=D ||
	bail "campaign D delivered while C is paused" "$(events summary)"
ok "campaign D delivered while C is paused"
sleep 3
is "no event for C's later jobs" "$(events jobs campaign=C)" 200

"$VOLLEY" resume -c "$C" campaign C >/dev/null
is "volley resume campaign C exits 0" "$?" 0
wait_for 30 at_least 220 status=delivered campaign=C ||
	bail "C's jobs released by the resume" "$(events summary)"
ok "C's jobs released by the resume"
sleep 7	# more than one look at the rates (every 5 s)
is "not paused again within the window" "$(redis_cli HEXISTS volley:paused:campaign C)" 0
is "still one shaping entry" "$(redis_cli --raw XRANGE volley:shaping - + | grep -c '^paused$')" 1

# A site's bounce rate: 60 jobs to sb.test (site ssite), 20 refused with
# 550 5.1.1 (invalid_recipient): 33% > 10% suspends the lanes to ssite.
jobs e 1 40 E sb.test
jobs e 41 60 E sb.test +550
wait_for 60 at_least 60 campaign=E || bail "60 jobs of E settled" "$(events summary)"
is "20 bounced" "$(events jobs campaign=E status=bounced)" 20
is "bounces counted per class" "$(redis_cli HGET "volley:rate:site:ssite:$H" b:invalid_recipient)" 20
suspended() { redis_cli --raw XRANGE volley:shaping - + | grep -qx 127.0.0.84/ssite; }
wait_for 20 suspended || not_ok "the lane to ssite suspended" "$(redis_cli --raw XRANGE volley:shaping - +)"
sh=$(redis_cli --raw XRANGE volley:shaping - +)
is "one suspended entry for the threshold and one for the lane" "$(echo "$sh" | grep -c '^suspended$')" 2
echo "$sh" | grep -q '^threshold site-bounces: bounces 20 of 60 sent (33.3333%) over 1h > 10%$' &&
	ok "suspension reason has the figures" || not_ok "suspension reason has the figures" "$sh"
case "$(redis_cli HGET volley:shaping:held '|ssite')" in
"suspended until="*" mph=0 threshold site-bounces: "*) ok "recorded for every engine (shaping:held |ssite)" ;;
*) not_ok "recorded for every engine (shaping:held |ssite)" "$(redis_cli HGETALL volley:shaping:held)" ;;
esac
# (the instance's stats are published every second)
lane_suspended() { "$VOLLEY" status -c "$C" | grep -F 127.0.0.84/ssite | grep -q suspended; }
wait_for 10 lane_suspended && ok "volley status shows the lane suspended" ||
	not_ok "volley status shows the lane suspended" "$("$VOLLEY" status -c "$C")"
check "exactly one final event per job" events check-final --expect 300

kill -TERM "$VOLLEY_PID"
wait_pid "$VOLLEY_PID" 30
is "engine stops cleanly" "$WAIT_RC" 0
done_testing
