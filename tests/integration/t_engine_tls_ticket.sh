#!/usr/bin/env bash
# t_engine_tls_ticket.sh - a cold start opens many sessions to one MX host
# at once. The first makes a full TLS handshake; the others, about to start
# theirs while it is under way, wait (at most 250 ms) for its session
# ticket and resume with it: one certificate to parse and check instead of
# twenty. 25 domains, each its own MX host name on one volley-sink --tls,
# 20 jobs and 20 sessions at once each (a lane window of 20 from the
# start): 500 sessions. One full handshake per MX host (25, a few more
# allowed); without the wait a loaded loop made five times as many.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

start_redis || bail "redis did not start"
dns=""
for d in $(seq 1 25); do dns+="$(dns_domain "b$d.test" 127.0.1.91)"$'\n'; done
start_dns "$dns" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink --nocapture 127.0.1.91 "$SINK_PORT" --tls ||
	bail "volley-sink --tls"
CFG_EXTRA='shaping { initial_connections = 20; }' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: tickets\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 1 500); do echo "u$i@b$((i % 25 + 1)).test"; done >"$T/rcpts"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --rcpts "$T/rcpts" >/dev/null

VOLLEY_LOG=info run_drain "$T/run.log" 60 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
check "every job has exactly one final event" events check-final --expect 500
is "500 delivered" "$(events count status=delivered)" 500
full=$(grep -c 'tls established .*resumed=0' "$T/run.log" || true)
res=$(grep -c 'tls established .*resumed=1' "$T/run.log" || true)
note "$((full + res)) TLS sessions: $full full handshake(s), $res resumed"
[ "$((full + res))" -ge 250 ] && [ "$full" -le 30 ] &&
	ok "sessions started together wait for the first ticket and resume ($full full, $res resumed)" ||
	not_ok "sessions started together wait for the first ticket and resume" \
		"$full full, $res resumed; $(grep 'tls established' "$T/run.log" | head -5)"
done_testing
