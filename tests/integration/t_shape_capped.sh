#!/usr/bin/env bash
# t_shape_capped.sh - a campaign rate cap (`campaign "GLOB" { max_rate }`)
# holds that campaign back without touching the others on the same IPs:
# 40 jobs of campaign "cap-a" (capped at 180/min, 3/s) and 40 of "free"
# to one domain. "free" is delivered at once; "cap-a" at about 3/s (no
# more than 3/s x elapsed + a small burst in any prefix of the run); all
# 80 delivered in the end, exactly one final event each, no deferral
# (capped jobs wait in the retry schedule untried).
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

MX=127.0.1.100
start_redis || bail "redis did not start"
start_dns "$(dns_domain cap.test "$MX")" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink "$MX" "$SINK_PORT" || bail "volley-sink"
CFG_MAX_AGE=5min CFG_EXTRA='campaign "cap-*" { max_rate = "180/min"; }' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: capped\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 1 40); do echo "a$i@cap.test"; done >"$T/ra"
for i in $(seq 1 40); do echo "f$i@cap.test"; done >"$T/rf"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --campaign cap-a --rcpts "$T/ra" >/dev/null
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --campaign free --rcpts "$T/rf" >/dev/null
t0=$(now_ms)
run_drain "$T/run.log" 90 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
check "every job has exactly one final event" events check-final --expect 80
is "all 80 delivered" "$(events jobs status=delivered)" 80
is "nothing deferred" "$(events count status=deferred)" 0
events json | "$PY" -c '
import json, sys
t0 = int(sys.argv[1])
a, f = [], []
for line in sys.stdin:
    e = json.loads(line)
    if e.get("status") != "delivered":
        continue
    (a if e.get("campaign") == "cap-a" else f).append(int(e["ts"]) - t0)
a.sort(); f.sort()
worst = max((i + 1) - (3.0 * (t - a[0]) / 1000.0) for i, t in enumerate(a))
print(len(a), len(f), f[-1], a[-1], a[-1] - a[0], round(worst, 1))
' "$t0" >"$T/stats"
read -r na nf flast alast aspan worst <"$T/stats"
note "free: last delivered ${flast} ms after start; cap-a: 40 over ${aspan} ms (3/s is about 13 s); most ahead of 3/s at any point: $worst"
[ "$flast" -lt "$alast" ] && ok "the uncapped campaign was not held behind the capped one" ||
	not_ok "the uncapped campaign was not held behind the capped one" "free last $flast ms, cap-a last $alast ms"
[ "$aspan" -ge 10000 ] && ok "the capped campaign took at least 10 s for 40 (3/s)" ||
	not_ok "the capped campaign took at least 10 s for 40 (3/s)" "$aspan ms"
awk -v w="$worst" 'BEGIN { exit !(w <= 6) }' && ok "never more than a small burst ahead of 3/s ($worst)" ||
	not_ok "never more than a small burst ahead of 3/s" "$worst"
grep -q "holding jobs of rate-capped campaigns/tenants" "$T/run.log" && ok "the log says capped jobs wait" ||
	not_ok "the log says capped jobs wait" "$(show_log "$T/run.log")"
done_testing
