#!/usr/bin/env bash
# t_shape_warmup.sh - a warming IP sends no more than its warm-up budget
# and the pool's other IP carries the rest (overflow, the default). The
# schedule "new" allows 20 on day 1, spread over the (UTC) day: at time t
# the budget is floor(20 x part of the day gone) + 1 (warmup_burst 2% of
# 20, at least 1). 60 jobs: the warming IP 127.0.0.51 sends exactly that
# budget (computed here from the clock), 127.0.0.52 the rest; the
# shaping stream says the budget is spent.
. "$(dirname "$0")/../lib.sh"
need_volley

start_redis || bail "redis did not start"
start_dns "$(dns_domain warm.test 127.0.1.97)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink 127.0.1.97 "$SINK_PORT" || bail "smtp-sink did not start"
CFG_EXTRA='warmup "new" { daily = [20]; }
pool "w" {
  ip "127.0.0.51" { warmup = "new"; }
  ip "127.0.0.52" { }
}' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: warm\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 1 60); do echo "u$i@warm.test"; done >"$T/rcpts"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool w --rcpts "$T/rcpts" >/dev/null

budget() { "$PY" -c 'import time; ms = int(time.time() * 1000) % 86400000; print(min(20, 20 * ms // 86400000 + 1))'; }
b0=$(budget)
run_drain "$T/run.log" 60 -c "$T/volley.conf"
b1=$(budget)
is "run --drain exits 0" "$DRAIN_RC" 0
check "every job has exactly one final event" events check-final --expect 60
is "all 60 delivered" "$(events jobs status=delivered)" 60
n51=$(events jobs status=delivered ip=127.0.0.51)
n52=$(events jobs status=delivered ip=127.0.0.52)
note "budget now $b0..$b1 of 20 for day 1; sent from 127.0.0.51: $n51, from 127.0.0.52: $n52"
[ "$n51" -ge "$b0" ] && [ "$n51" -le "$b1" ] &&
	ok "the warming IP sent exactly its budget so far ($n51)" ||
	not_ok "the warming IP sent exactly its budget so far" "$n51, budget $b0..$b1"
is "the other IP carried the rest" "$((n51 + n52))" 60
redis_cli XRANGE volley:shaping - + >"$T/shaping"
grep -qx warmup_exhausted "$T/shaping" && grep -q '^127.0.0.51/' "$T/shaping" &&
	ok "the shaping stream says 127.0.0.51's warm-up budget is spent" ||
	not_ok "the shaping stream says 127.0.0.51's warm-up budget is spent" "$(tr '\n' ' ' <"$T/shaping" | head -c 600)"
done_testing
