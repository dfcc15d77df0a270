#!/usr/bin/env bash
# t_shape_rule_campaign.sh - a shaping rule with scope campaign pauses the
# campaign whose mail drew the replies, for every engine, for the rule's
# duration, and only that campaign. Campaign K's first two recipients are
# refused with a blocklist reply (volley-sink's +block); the rule
# "k-block" (2 in 1min, suspend campaign for 6s) pauses K: a pause with an
# end in volley:paused:campaign and a `paused` entry in volley:shaping
# naming the rule. K's next jobs wait while campaign L's go out, then
# leave once the pause is over (the entry is gone); every job has exactly
# one final event.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

MX=127.0.1.99
start_redis || bail "redis did not start"
start_dns "$(dns_domain camp.test "$MX")" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink "$MX" "$SINK_PORT" || bail "volley-sink"
CFG_RETRY='[1s]' CFG_MAX_AGE=5min CFG_EXTRA='shaping_rule "k-block" {
  text = "*zen.spamhaus.org*";
  threshold = "2 in 1min";
  action = "suspend";
  scope = "campaign";
  duration = 6s;
}' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: campaign rule\r\n\r\nbody\r\n' >"$T/msg.eml"
inj() {	# inj CAMPAIGN RCPT...
	local c=$1
	shift
	"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --campaign "$c" \
		"$@" >/dev/null || bail "inject $c"
}
bg_volley "$T/run.log" run -c "$T/volley.conf"
pid=$VOLLEY_PID
inj K b1+block@camp.test b2+block@camp.test
two_bounced() { [ "$(events jobs status=bounced campaign=K)" -ge 2 ]; }
wait_for 20 two_bounced || bail "the two blocked jobs bounced" "$(show_log "$T/run.log")"
paused() { redis_cli HEXISTS volley:paused:campaign K | grep -qx 1; }
wait_for 5 paused && ok "the rule paused campaign K in Redis" ||
	not_ok "the rule paused campaign K in Redis" "$(show_log "$T/run.log")"
v=$(redis_cli HGET volley:paused:campaign K)
case "$v" in *"volley:shaping_rule:k-block until="[0-9]*) ok "the pause names the rule and has an end ($v)" ;;
*) not_ok "the pause names the rule and has an end" "$v" ;; esac
redis_cli XRANGE volley:shaping - + >"$T/shaping.txt"
grep -qx "campaign:K" "$T/shaping.txt" && grep -qx "paused" "$T/shaping.txt" &&
	grep -q "rule k-block" "$T/shaping.txt" && ok "a paused entry in volley:shaping names the rule" ||
	not_ok "a paused entry in volley:shaping names the rule" "$(cat "$T/shaping.txt")"
t0=$(now_ms)
sleep 1.5	# every engine reads the pause state once a second
inj K k1@camp.test k2@camp.test k3@camp.test k4@camp.test k5@camp.test
inj L l1@camp.test l2@camp.test l3@camp.test l4@camp.test l5@camp.test
l_done() { [ "$(events jobs status=delivered campaign=L)" -ge 5 ]; }
wait_for 10 l_done && ok "campaign L delivered while K is paused" ||
	not_ok "campaign L delivered while K is paused" "$(events summary)"
is "campaign K: nothing delivered while paused" "$(events jobs status=delivered campaign=K)" 0
k_done() { [ "$(events jobs status=delivered campaign=K)" -ge 5 ]; }
if wait_for 20 k_done; then
	ms=$(($(now_ms) - t0))
	[ "$ms" -ge 3000 ] && ok "campaign K went out once the pause was over (${ms} ms after it began + 1.5 s)" ||
		not_ok "campaign K went out once the pause was over" "$ms ms"
else
	not_ok "campaign K delivered after the pause" "$(events summary)"
fi
is "the pause entry is gone" "$(redis_cli HEXISTS volley:paused:campaign K)" 0
# An operator's pause replaces a rule's (it has no end, and must not end
# when the rule's would); a rule never shortens an operator's.
redis_cli HSET volley:paused:campaign Z "1 volley:shaping_rule:k-block until=$(( $(date +%s) * 1000 + 600000 ))" >/dev/null
out=$("$VOLLEY" pause -c "$T/volley.conf" campaign Z)
case "$out" in *"paused campaign 'Z'"*) ok "volley pause over a rule's pause takes it over" ;;
*) not_ok "volley pause over a rule's pause takes it over" "$out" ;; esac
case "$(redis_cli HGET volley:paused:campaign Z)" in *until=*) not_ok "the operator's pause has no end" "$(redis_cli HGET volley:paused:campaign Z)" ;;
*) ok "the operator's pause has no end" ;; esac
"$VOLLEY" resume -c "$T/volley.conf" campaign Z >/dev/null
kill -TERM "$pid"
wait_pid "$pid" 30
is "SIGTERM: exit 0" "$WAIT_RC" 0
check "every job has exactly one final event" events check-final --expect 12
done_testing
