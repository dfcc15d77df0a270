#!/usr/bin/env bash
# t_shape_421.sh - adaptive back-off against a provider's rate limit. The
# sink answers "421 4.7.0 ... slow down" (and closes) once a client IP had
# 10 messages accepted in the current second; the lane's configured
# max_rate is 20/s. Each 421 is a slow-down verdict: the lane halves its
# rate (at most once per decrease_every = 1s), then grows back by 10% of
# 20/s every rate_step_every = 2s while deliveries are clean, by a quarter
# of that near the rate it was pushed back at. volley delivers all 300
# jobs (the refused ones come back on the retry schedule), and 421s become
# rare once the lane has settled under the limit. The curve (per 2 s:
# accepted, 421s) is printed.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

start_redis || bail "redis did not start"
start_dns "$(dns_domain rl.test 127.0.1.95)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
cat >"$T/sink.conf" <<'CONF'
limits { per_ip_rate = "10/s"; }
replies { rate_limit = "421 4.7.0 [{ip}] Too many messages from your IP address, slow down"; }
CONF
start_volley_sink 127.0.1.95 "$SINK_PORT" -c "$T/sink.conf" --stats "$T/sink.json" || bail "volley-sink"
CFG_RETRY='[1s]' CFG_MAX_AGE=10min \
CFG_EXTRA='domain "rl.test" { max_rate = "20/s"; }
shaping { decrease_every = 1s; rate_step_every = 2s; close_time = 1s; resume_spread = 1s; }' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: rl\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 1 300); do echo "u$i@rl.test"; done >"$T/rcpts"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --rcpts "$T/rcpts" >/dev/null

t0=$(now_ms)
run_drain "$T/run.log" 150 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
note "300 jobs in $(($(now_ms) - t0)) ms"
check "every job has exactly one final event" events check-final --expect 300
is "all 300 delivered" "$(events jobs status=delivered)" 300
ls "$(sink_dir 127.0.1.95)" | sed -n 's/^\([0-9]*\)-.*\.eml$/\1 a/p' >"$T/series"
events json | "$PY" -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e.get("status") == "deferred" and "421" in str(e.get("reply", "")):
        print(e.get("ts"), "r")' >>"$T/series"
sort -n "$T/series" | awk -v t0="$t0" '
	{ b = int(($1 - t0) / 2000); if ($2 == "a") a[b]++; else r[b]++; if (b > last) last = b }
	END {
		for (i = 0; i <= last; i++) printf "%d %d %d\n", i * 2, a[i] + 0, r[i] + 0
	}' >"$T/curve"
note "seconds  accepted/2s  421s/2s"
while read -r s a r; do note "$(printf '%4ds  %4d  %4d  %s' "$s" "$a" "$r" "$(printf '%*s' "$a" '' | tr ' ' '#')")"; done <"$T/curve"
n=$(wc -l <"$T/curve")
half=$((n / 2))
r1=$(head -n "$half" "$T/curve" | awk '{ s += $3 } END { print s + 0 }')
r2=$(tail -n +$((half + 1)) "$T/curve" | awk '{ s += $3 } END { print s + 0 }')
a2=$(tail -n +$((half + 1)) "$T/curve" | head -n -1 | awk '{ s += $2; n++ } END { print n ? int(s / n / 2) : 0 }')
note "421s: $r1 in the first half, $r2 in the second; settled rate about $a2/s (limit 10/s)"
[ "$r2" -lt "$r1" ] && ok "fewer 421s once settled ($r1 -> $r2)" ||
	not_ok "fewer 421s once settled" "$r1 -> $r2"
[ "$a2" -ge 5 ] && [ "$a2" -le 10 ] && ok "settled under the limit, not far below it ($a2/s of 10/s)" ||
	not_ok "settled under the limit, not far below it" "$a2/s"
grep -q 'action=throttled' "$T/run.log" && ok "the log shows the lane throttled" ||
	not_ok "the log shows the lane throttled" "$(show_log "$T/run.log")"
done_testing
