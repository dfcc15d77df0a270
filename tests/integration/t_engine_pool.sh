#!/usr/bin/env bash
# t_engine_pool.sh - IP pools: jobs with `pool` go out from that pool's
# addresses (bound per session, round robin) with each address's EHLO name;
# other jobs use the default source; events name the source IP used; a job
# naming an unknown pool fails with a clear reason.
. "$(dirname "$0")/../lib.sh"
need_volley

start_redis || bail "redis did not start"
start_dns "$(dns_domain pool.test 127.0.1.51)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink 127.0.1.51 "$SINK_PORT" || bail "smtp-sink did not start"
CFG_EXTRA='pool "marketing" {
  ip "127.0.0.21" { ehlo = "m1.pool.test"; }
  ip "127.0.0.22" { ehlo = "m2.pool.test"; }
}
domain "pool.test" { max_connections = 4; max_msgs_per_connection = 5; }' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: pools\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 1 40); do echo "m$i@pool.test"; done >"$T/mkt"
for i in $(seq 1 10); do echo "d$i@pool.test"; done >"$T/dflt"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool marketing \
	--rcpts "$T/mkt" >/dev/null
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --rcpts "$T/dflt" >/dev/null
redis_cli XADD volley:jobs '*' id nopool to x@pool.test from f@sender.test pool transactional msg x >/dev/null

run_drain "$T/run.log" 60 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
check "every job has exactly one final event" events check-final --expect 51
is "marketing: 40 delivered" "$(events jobs status=delivered pool=marketing)" 40
is "default: 10 delivered" "$(events jobs status=delivered pool=default)" 10
is "unknown pool: failed" "$(events final nopool)" failed
case "$(events field nopool reply)" in *"unknown pool"*) ok "unknown pool: reply says so" ;;
*) not_ok "unknown pool: reply says so" "$(events field nopool reply)" ;; esac

dir=$(sink_dir 127.0.1.51)
# smtp-sink's dump headers: X-Client-Addr and X-Helo-Args, then X-Rcpt-Args.
summary() {	# prints "client helo rcpt" per dump
	for f in "$dir"/*; do
		awk '/^X-Client-Addr:/{c=$2} /^X-Helo-Args:/{h=$2} /^X-Rcpt-Args:/{r=$2} END{print c, h, r}' "$f"
	done
}
summary >"$T/summary"
n21=$(grep -c '^127.0.0.21 m1.pool.test <m' "$T/summary" || true)
n22=$(grep -c '^127.0.0.22 m2.pool.test <m' "$T/summary" || true)
[ "$n21" -gt 0 ] && [ "$n22" -gt 0 ] && [ $((n21 + n22)) -eq 40 ] &&
	ok "marketing mail left from both pool IPs with their EHLO names ($n21 + $n22)" ||
	not_ok "marketing mail left from both pool IPs with their EHLO names" "$(sort "$T/summary" | uniq -c | head)"
nd=$(grep -c '^127.0.0.1 mta.test <d' "$T/summary" || true)
is "default mail left from the default source with smtp.ehlo" "$nd" 10
bad=$(events json | "$PY" -c '
import json, sys
bad = 0
for line in sys.stdin:
    e = json.loads(line)
    if e.get("status") != "delivered":
        continue
    want = ("127.0.0.21", "127.0.0.22") if e.get("pool") == "marketing" else ("127.0.0.1",)
    if e.get("ip") not in want:
        bad += 1
print(bad)')
is "every delivered event names the source IP used" "$bad" 0
done_testing
