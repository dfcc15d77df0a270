#!/usr/bin/env bash
# t_shape_weights.sh - a pool's IPs share its load by weight, and only its
# IPs carry it: pool "w" has 127.0.0.81 (weight 3, EHLO w1.test) and
# 127.0.0.82 (weight 1, EHLO w2.test); pool "x" has 127.0.0.83. 2,000 jobs
# of pool w over 20 domains and 200 of pool x go through volley-sink.
# Asserts: the split of pool w's messages is 75/25 within 5 points (from
# the events' ip field and from the client addresses the sink saw), each
# IP greets with its own EHLO name, pool x's jobs leave only from
# 127.0.0.83, exactly one final event per job.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

MX=127.0.1.98
start_redis || bail "redis did not start"
start_dns < <(for i in $(seq 0 19); do dns_domain "w$i.test" "$MX"; done) || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink "$MX" "$SINK_PORT" --stats "$T/sink.json" || bail "volley-sink"
CFG_MAX_AGE=5min CFG_EXTRA='pool "w" {
  ip "127.0.0.81" { ehlo = "w1.test"; weight = 3; }
  ip "127.0.0.82" { ehlo = "w2.test"; weight = 1; }
}
pool "x" { ip "127.0.0.83" { ehlo = "x1.test"; } }' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: weights\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 1 2000); do echo "u$i@w$((i % 20)).test"; done >"$T/rcpts-w"
for i in $(seq 1 200); do echo "x$i@w$((i % 20)).test"; done >"$T/rcpts-x"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool w --rcpts "$T/rcpts-w" >/dev/null
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool x --rcpts "$T/rcpts-x" >/dev/null
run_drain "$T/run.log" 120 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
check "every job has exactly one final event" events check-final --expect 2200
a=$(events count status=delivered pool=w ip=127.0.0.81)
b=$(events count status=delivered pool=w ip=127.0.0.82)
note "pool w: 127.0.0.81 (weight 3) $a, 127.0.0.82 (weight 1) $b"
is "pool w: all 2000 delivered from its two IPs" "$((a + b))" 2000
pct=$((a * 100 / (a + b > 0 ? a + b : 1)))
[ "$pct" -ge 70 ] && [ "$pct" -le 80 ] && ok "weights 3:1 hold within 5 points ($pct% / $((100 - pct))%)" ||
	not_ok "weights 3:1 hold within 5 points" "$pct% on the weight-3 IP"
is "pool x: all 200 from 127.0.0.83" "$(events count status=delivered pool=x ip=127.0.0.83)" 200
# What the sink saw: client addresses and EHLO names per message.
dir=$(sink_dir "$MX")
c81=$(grep -l "^X-Sink-Client: 127\.0\.0\.81:" "$dir"/*.eml 2>/dev/null | wc -l)
note "the sink saw $c81 messages from 127.0.0.81"
is "the sink agrees with the events for 127.0.0.81" "$c81" "$a"
grep -h "^X-Sink-Helo:" "$dir"/*.eml 2>/dev/null | sort | uniq -c >"$T/helos"
grep -q "w1.test" "$T/helos" && grep -q "w2.test" "$T/helos" && grep -q "x1.test" "$T/helos" &&
	ok "each IP greets with its own EHLO name" || not_ok "each IP greets with its own EHLO name" "$(cat "$T/helos")"
done_testing
