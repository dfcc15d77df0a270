#!/usr/bin/env bash
# t_shape_rate.sh - max_rate is smooth: "120/min" sends one message every
# 500 ms after a burst of shaping.burst (3), never the minute's worth at
# once. 40 jobs for one domain: the sink's capture times show the pace
# (120/min +- 5% after the burst) and no second after the first holds more
# than 3. Before lanes, max_rate was parsed and ignored: all 40 left in
# well under a second.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

start_redis || bail "redis did not start"
start_dns "$(dns_domain rate.test 127.0.1.71)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink 127.0.1.71 "$SINK_PORT" || bail "volley-sink"
CFG_EXTRA='domain "rate.test" { max_rate = "120/min"; }' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: rate\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 1 40); do echo "u$i@rate.test"; done >"$T/rcpts"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --rcpts "$T/rcpts" >/dev/null

run_drain "$T/run.log" 90 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
check "every job has exactly one final event" events check-final --expect 40
is "40 delivered" "$(events jobs status=delivered)" 40
ls "$(sink_dir 127.0.1.71)" | sed -n 's/^\([0-9]*\)-.*\.eml$/\1/p' | sort -n >"$T/times"
is "the sink captured 40" "$(wc -l <"$T/times")" 40
read -r rate maxsec first5 curve < <(awk '
	{ t[NR] = $1 }
	END {
		n = NR; span = t[n] - t[3]
		rate = span > 0 ? (n - 3) * 60000 / span : 0
		for (i = 1; i <= n; i++) { s = int((t[i] - t[1]) / 1000); c[s]++; if (s > last) last = s }
		m = 0; curve = ""
		for (s = 0; s <= last; s++) { if (s > 0 && c[s] > m) m = c[s]; curve = curve (c[s] + 0) "," }
		f5 = 0; for (i = 1; i <= n; i++) if (t[i] - t[1] < 5000) f5++
		printf "%d %d %d %s\n", rate, m, f5, curve
	}' "$T/times")
note "messages per second: $curve"
note "rate after the burst: $rate/min; busiest second after the first: $maxsec; first 5 s: $first5"
[ "$rate" -ge 114 ] && [ "$rate" -le 126 ] && ok "about 120 per minute after the burst ($rate)" ||
	not_ok "about 120 per minute after the burst" "$rate/min; $curve"
[ "$maxsec" -le 3 ] && ok "no second after the first holds more than 3 ($maxsec)" ||
	not_ok "no second after the first holds more than 3" "$maxsec; $curve"
[ "$first5" -le 14 ] && ok "no burst at the start: $first5 in the first 5 s" ||
	not_ok "no burst at the start" "$first5 in the first 5 s; $curve"
done_testing
