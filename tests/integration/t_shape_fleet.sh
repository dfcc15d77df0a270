#!/usr/bin/env bash
# t_shape_fleet.sh - a fleet-wide limit holds across instances: two engines
# (instances fleet-a and fleet-b, one Redis, one jobs stream) send 600 jobs
# to ten domains of one site with fleet_max_rate = "20/s" and no other
# rate limit. Each instance alone could send far faster; together they stay
# under 20/s. The sink's capture times are checked over sliding windows of
# 1 s and 5 s: at most 20 per second times the window plus 12 (the
# tolerance: one bucket burst of 4 in Redis, plus one batch of 4 tokens in
# hand per instance at the window's start). Over the whole run the rate is
# 20/s within a few percent, both instances sent a share, every job has
# exactly one final event, and the Redis key of the limit exists.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

N=600
NDOM=10
MX=127.0.1.81

start_redis || bail "redis did not start"
start_dns < <(for i in $(seq 0 $((NDOM - 1))); do dns_domain "f$i.fleet.test" "$MX"; done) ||
	bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink "$MX" "$SINK_PORT" || bail "volley-sink"
# A small read-ahead so that neither instance takes the whole stream.
site='site "fleetsite" { mx = ["mx.*.fleet.test"]; fleet_max_rate = "20/s"; }'
CFG_EXTRA=$site CFG_SMTP_EXTRA="max_ready = 40;" CFG_MAX_AGE=10min CFG_INSTANCE=fleet-a \
	write_config "$T/a.conf"
CFG_EXTRA=$site CFG_SMTP_EXTRA="max_ready = 40;" CFG_MAX_AGE=10min CFG_INSTANCE=fleet-b \
	write_config "$T/b.conf"
"$VOLLEY" check-config -c "$T/a.conf" >/dev/null ||
	bail "config: $("$VOLLEY" check-config -c "$T/a.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: fleet\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 0 $((N - 1))); do echo "user$i@f$((i % NDOM)).fleet.test"; done >"$T/rcpts"
"$VOLLEY" inject -c "$T/a.conf" --from f@sender.test --msg "$T/msg.eml" --rcpts "$T/rcpts" \
	>"$T/inject.log" 2>&1
is "inject queued $N" "$(redis_cli XLEN volley:jobs)" "$N"

t0=$(now_ms)
bg_volley "$T/a.log" run -c "$T/a.conf" --drain
apid=$VOLLEY_PID
bg_volley "$T/b.log" run -c "$T/b.conf" --drain
bpid=$VOLLEY_PID
# The limit's key lives while tokens are being taken.
wait_for 20 sh -c "[ \$(redis-cli -p $REDIS_PORT EXISTS volley:fleet:site:fleetsite) = 1 ]" &&
	ok "the limit's bucket is in Redis (volley:fleet:site:fleetsite)" ||
	not_ok "the limit's bucket is in Redis" "$(redis_cli KEYS 'volley:fleet:*')"
# volley status shows the limit with each instance's tokens and counters.
wait_for 10 sh -c "'$VOLLEY' status -c '$T/a.conf' >'$T/status' 2>&1 &&
	[ \$(grep -c 'site:fleetsite *20/s' '$T/status') = 2 ]" &&
	ok "volley status shows the fleet limit for both instances" ||
	not_ok "volley status shows the fleet limit for both instances" "$(cat "$T/status")"
grep -E 'fleet limit|site:fleetsite' "$T/status" | sed 's/^/# /'
wait_pid "$apid" 150
is "instance a drains and exits 0" "$WAIT_RC" 0
[ "$WAIT_RC" = 0 ] || show_log "$T/a.log"
wait_pid "$bpid" 60
is "instance b drains and exits 0" "$WAIT_RC" 0
[ "$WAIT_RC" = 0 ] || show_log "$T/b.log"
note "run took $(( $(now_ms) - t0 )) ms"

check "every job has exactly one final event ($N jobs)" events check-final --expect "$N"
is "every job's final event is delivered" "$(events jobs status=delivered)" "$N"
na=$(events count status=delivered instance=fleet-a)
nb=$(events count status=delivered instance=fleet-b)
[ "$na" -ge 60 ] && [ "$nb" -ge 60 ] && ok "both instances sent a share (a: $na, b: $nb)" ||
	not_ok "both instances sent a share" "a: $na, b: $nb"

ls "$(sink_dir "$MX")" | sed -n 's/^\([0-9]*\)-.*\.eml$/\1/p' | sort -n >"$T/times"
is "the sink captured $N" "$(wc -l <"$T/times")" "$N"
read -r w1 w5 rate curve < <(awk '
	{ t[NR] = $1 }
	END {
		n = NR
		# sliding windows: the most messages in any 1 s and any 5 s
		j = 1; k = 1; w1 = 0; w5 = 0
		for (i = 1; i <= n; i++) {
			while (t[i] - t[j] >= 1000) j++
			while (t[i] - t[k] >= 5000) k++
			if (i - j + 1 > w1) w1 = i - j + 1
			if (i - k + 1 > w5) w5 = i - k + 1
		}
		span = t[n] - t[1]
		rate = span > 0 ? (n - 1) * 1000 / span : 0
		for (i = 1; i <= n; i++) { s = int((t[i] - t[1]) / 1000); c[s]++; if (s > last) last = s }
		curve = ""
		for (s = 0; s <= last; s++) curve = curve (c[s] + 0) ","
		printf "%d %d %.2f %s\n", w1, w5, rate, curve
	}' "$T/times")
note "messages per second (both instances): $curve"
note "busiest 1 s: $w1, busiest 5 s: $w5, overall $rate/s"
[ "$w1" -le 32 ] && ok "no 1 s window over 20 + 12 ($w1)" ||
	not_ok "no 1 s window over 20 + 12" "$w1; $curve"
[ "$w5" -le 112 ] && ok "no 5 s window over 100 + 12 ($w5)" ||
	not_ok "no 5 s window over 100 + 12" "$w5; $curve"
awk -v r="$rate" 'BEGIN { exit !(r <= 20.5 && r >= 16) }' &&
	ok "overall rate under the limit and near it ($rate/s)" ||
	not_ok "overall rate under the limit and near it" "$rate/s; $curve"
is "nothing pending" "$(xpending_count)" 0
done_testing
