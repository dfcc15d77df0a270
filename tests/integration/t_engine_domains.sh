#!/usr/bin/env bash
# t_engine_domains.sh - a cold start on many destinations at once: 4,000
# jobs over 2,000 domains (each its own MX host) through a 2-IP pool and 5
# site blocks whose patterns cover them, into volley-sink. Every domain is
# new, so the engine asks for 2,000 MX and 4,000 A/AAAA records at once:
# none of them may time out (the resolver's socket buffer holds a few
# hundred datagrams; the engine keeps at most 100 queries out), so every
# job is delivered at its first attempt, with no `deferred` event, exactly
# one final event each, and both IPs carry part of the load. The drain
# time is printed (throughput is measured in `make bench`, not asserted).
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

N=4000
NDOM=2000
MX=127.0.1.4

start_redis || bail "redis did not start"
for i in $(seq 0 $((NDOM - 1))); do dns_domain "d$i.site$((i % 5)).test" "$MX"; done >"$T/dns.lines"
start_dns <"$T/dns.lines" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink --nocapture "$MX" "$SINK_PORT" --quiet || bail "volley-sink did not start"
{
	echo 'pool "bulk" {'
	echo '  ip "127.0.0.21" { ehlo = "b1.test"; }'
	echo '  ip "127.0.0.22" { ehlo = "b2.test"; }'
	echo '}'
	for k in 0 1 2 3 4; do
		echo "site \"site$k\" { mx = [\"*.site$k.test\"]; max_connections = 20; }"
	done
} >"$T/extra.conf"
CFG_MAX_AGE=10min CFG_EXTRA="$(cat "$T/extra.conf")" write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: many domains\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 0 $((N - 1))); do d=$((i % NDOM)); echo "u$i@d$d.site$((d % 5)).test"; done >"$T/rcpts"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool bulk \
	--rcpts "$T/rcpts" >/dev/null || bail "inject failed"

run_drain "$T/run.log" 150 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
note "drain took ${DRAIN_MS} ms ($((N * 1000 / (DRAIN_MS > 0 ? DRAIN_MS : 1))) msg/s) for $NDOM new domains"
check "every job has exactly one final event" events check-final --expect "$N"
is "all $N delivered" "$(events jobs status=delivered)" "$N"
d=$(events count status=deferred)
is "no job deferred (no DNS time-out on the cold start)" "$d" 0
[ "$d" = 0 ] || show_log "$T/run.log" 5
a=$(events count status=delivered ip=127.0.0.21)
b=$(events count status=delivered ip=127.0.0.22)
note "by source IP: 127.0.0.21 $a, 127.0.0.22 $b"
[ "$a" -gt 0 ] && [ "$b" -gt 0 ] && ok "both pool IPs carried mail" ||
	not_ok "both pool IPs carried mail" "$a / $b"
is "nothing pending" "$(xpending_count)" 0
done_testing
