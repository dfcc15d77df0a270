#!/usr/bin/env bash
# t_shape_suspend.sh - a reputation block suspends that IP for that site;
# the pool's other IPs carry the site's mail; jobs that must wait for a
# suspended lane come back when it ends, not on the retry schedule.
#
# multi.test (site "prov"), pool "three" (127.0.0.41-43): the sink answers
# 550 5.7.1 ... blocked using zen.spamhaus.org at RCPT to 127.0.0.41 only.
# Two blocks suspend 127.0.0.41/prov; the jobs it was refused go to .42 and
# .43, and all 60 are delivered, none from .41.
#
# solo.test (site "solo"), pool "solo" (127.0.0.44 alone), blocked too: the
# two blocks that suspend the lane bounce (no other IP to try; with the
# message the lane's other session had in flight, at most 3), the other
# jobs wait (deferred into Redis until the suspension ends: retry = 5min, so
# the retry schedule would take far longer), the sink is restarted without
# the block meanwhile, and they are delivered about 20 s after the
# suspension began.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

start_redis || bail "redis did not start"
start_dns "$(dns_domain multi.test 127.0.1.91; dns_domain solo.test 127.0.1.92)" ||
	bail "dnsmasq did not start"
SINK_PORT=$(free_port)
cat >"$T/sinkA.conf" <<'CONF'
rule "blk" { stage = "rcpt"; client = "127.0.0.41"; reply = "550 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org"; }
CONF
cat >"$T/sinkB.conf" <<'CONF'
rule "blk" { stage = "rcpt"; client = "127.0.0.44"; reply = "550 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org"; }
CONF
start_volley_sink 127.0.1.91 "$SINK_PORT" -c "$T/sinkA.conf" || bail "volley-sink A"
start_volley_sink 127.0.1.92 "$SINK_PORT" -c "$T/sinkB.conf" || bail "volley-sink B"
CFG_RETRY='[5min]' CFG_MAX_AGE=10min \
CFG_EXTRA='pool "three" {
  ip "127.0.0.41" { }
  ip "127.0.0.42" { }
  ip "127.0.0.43" { }
}
pool "solo" { ip "127.0.0.44" { } }
site "prov" { mx = ["mx.multi.test"]; max_connections = 2; }
site "solo" { mx = ["mx.solo.test"]; max_connections = 2; }
shaping { suspend_after = 2; suspend = 20s; resume_spread = 2s; }' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: suspend\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 1 60); do echo "m$i@multi.test"; done >"$T/multi"
for i in $(seq 1 10); do echo "s$i@solo.test"; done >"$T/solo"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool three --rcpts "$T/multi" >/dev/null
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool solo --rcpts "$T/solo" >/dev/null

t0=$(now_ms)
bg_volley "$T/run.log" run --drain -c "$T/volley.conf"
pid=$VOLLEY_PID
suspended() { redis_cli XRANGE volley:shaping - + | grep -q "^127.0.0.44/solo$"; }
if wait_for 20 suspended; then
	ts=$(now_ms)
	ok "the shaping stream has an entry for lane 127.0.0.44/solo ($((ts - t0)) ms)"
else
	ts=$(now_ms)
	not_ok "the shaping stream has an entry for lane 127.0.0.44/solo" "$(show_log "$T/run.log")"
fi
status_shows() { "$VOLLEY" status -c "$T/volley.conf" >"$T/status" 2>&1 && grep -q '127.0.0.44/solo .*suspended [0-9]*s' "$T/status"; }
if wait_for 5 status_shows; then
	ok "volley status shows the lane suspended"
	note "$(grep -A12 'lane (ip' "$T/status" | head -12)"
else
	not_ok "volley status shows the lane suspended" "$(head -c 1500 "$T/status")"
fi
# The provider lifts the block while the lane is suspended.
stop_sink 127.0.1.92
gone() { ! is_listening 127.0.1.92 "$SINK_PORT"; }
wait_for 10 gone
start_volley_sink 127.0.1.92 "$SINK_PORT" || bail "volley-sink B again"
wait_pid "$pid" 80
is "run --drain exits 0" "$WAIT_RC" 0
tend=$(now_ms)
note "done $((tend - t0)) ms after start; suspension seen at $((ts - t0)) ms"

check "every job has exactly one final event" events check-final --expect 70
is "multi.test: all 60 delivered" "$(events jobs status=delivered to~@multi.test)" 60
is "multi.test: none delivered from the blocked IP" "$(events jobs status=delivered to~@multi.test ip=127.0.0.41)" 0
is "multi.test: nothing bounced (the blocked IP's jobs went to the others)" "$(events jobs status=bounced to~@multi.test)" 0
n42=$(events jobs status=delivered to~@multi.test ip=127.0.0.42)
n43=$(events jobs status=delivered to~@multi.test ip=127.0.0.43)
note "multi.test: $n42 from .42, $n43 from .43"
[ "$n42" -gt 0 ] && [ "$n43" -gt 0 ] && ok "the other two IPs share the load ($n42 + $n43)" ||
	not_ok "the other two IPs share the load" "$n42 + $n43"
grep -q 'lane=127.0.0.41/prov action=suspended' "$T/run.log" &&
	ok "the log says 127.0.0.41 is suspended for prov" ||
	not_ok "the log says 127.0.0.41 is suspended for prov" "$(grep shaper "$T/run.log" | head -5)"
grep -q 'lane=127.0.0.4[23]/prov action=suspended' "$T/run.log" &&
	not_ok "the other IPs are not suspended" "$(grep 'action=suspended' "$T/run.log")" ||
	ok "the other IPs are not suspended"

nb=$(events jobs status=bounced to~@solo.test)
nd=$(events jobs status=delivered to~@solo.test)
# The two blocks, and the message the lane's other session had in flight.
[ "$nb" -ge 2 ] && [ "$nb" -le 3 ] && [ $((nb + nd)) -eq 10 ] &&
	ok "solo.test: only the blocks before the suspension bounced ($nb), the rest delivered ($nd)" ||
	not_ok "solo.test: only the blocks before the suspension bounced, the rest delivered" \
		"$nb bounced, $nd delivered"
waited=$(events count status=deferred to~@solo.test reply~suspended)
note "solo.test: $waited deferral(s) naming the suspension"
[ $((tend - t0)) -ge 18000 ] && [ $((tend - t0)) -le 60000 ] &&
	ok "solo.test's waiting jobs left when the suspension ended ($((tend - t0)) ms, suspension 20 s, retry schedule 5 min)" ||
	not_ok "solo.test's waiting jobs left when the suspension ended" "$((tend - t0)) ms"
redis_cli XRANGE volley:shaping - + >"$T/shaping"
grep -qx resumed "$T/shaping" && ok "the shaping stream records the resumption" ||
	not_ok "the shaping stream records the resumption" "$(tr '\n' ' ' <"$T/shaping" | head -c 800)"
grep -qx suspended "$T/shaping" && grep -qx 'lane' "$T/shaping" && grep -qx 'until' "$T/shaping" &&
	ok "shaping entries carry lane, action, until" ||
	not_ok "shaping entries carry lane, action, until" "$(tr '\n' ' ' <"$T/shaping" | head -c 800)"
done_testing
