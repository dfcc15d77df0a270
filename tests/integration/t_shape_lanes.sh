#!/usr/bin/env bash
# t_shape_lanes.sh - a lane is (source IP, destination), and its
# max_connections holds across every domain that shares it. Fifty domains
# whose MX is the same host share one lane per IP (the MX rollup); ten
# domains with different MX hosts that match a site's pattern share the
# site's lanes. The sink (which answers each message after 300 ms, so
# sessions overlap) counts concurrent sessions per client IP: never more
# than the lane's max_connections (3 for the rollup, 2 for the site),
# although every domain alone would be allowed that many. The site's
# domains, on one server address, pass their sessions on to each other.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

start_redis || bail "redis did not start"
dns=""
for i in $(seq 1 50); do
	dns+="mx-host=r$i.test,mx.shared.test,10"$'\n'
done
dns+="host-record=mx.shared.test,127.0.1.61"$'\n'
for i in $(seq 1 10); do
	dns+="mx-host=h$i.test,mx$i.hoster.test,10"$'\n'"host-record=mx$i.hoster.test,127.0.1.62"$'\n'
done
start_dns "$dns" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
cat >"$T/sink.conf" <<'CONF'
rule "slow" { stage = "dot"; delay = 300ms; }
CONF
start_volley_sink --nocapture 127.0.1.61 "$SINK_PORT" -c "$T/sink.conf" --stats "$T/rollup.json" ||
	bail "volley-sink (rollup)"
start_volley_sink --nocapture 127.0.1.62 "$SINK_PORT" -c "$T/sink.conf" --stats "$T/site.json" ||
	bail "volley-sink (site)"
CFG_SMTP_EXTRA='max_connections = 3;' \
CFG_EXTRA='pool "p" {
  ip "127.0.0.31" { }
  ip "127.0.0.32" { }
}
site "hoster" { mx = ["*.hoster.test"]; max_connections = 2; }
shaping { initial_connections = 3; }' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: lanes\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 1 50); do echo "a@r$i.test"; echo "b@r$i.test"; done >"$T/rollup"
for i in $(seq 1 10); do for j in 1 2 3 4; do echo "u$j@h$i.test"; done; done >"$T/site"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool p --rcpts "$T/rollup" >/dev/null
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool p --rcpts "$T/site" >/dev/null

t0=$(now_ms); export VOLLEY_LOG=debug
run_drain "$T/run.log" 150 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
note "140 messages in $(($(now_ms) - t0)) ms"
check "every job has exactly one final event" events check-final --expect 140
is "rollup: 100 delivered" "$(events count status=delivered to~@r)" 100
is "site: 40 delivered" "$(events count status=delivered to~@h)" 40
for s in rollup site; do
	kill_pidfile "$T/pids/volley-sink-127.0.1.6$([ $s = rollup ] && echo 1 || echo 2).pid"
done
sleep 0.5
J() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
# The sink counts a session until it has freed it, a moment after volley
# has seen the QUIT answered and closed: a session closing and the next one
# of the lane overlap there for a few ms (all sessions here end together,
# every 300 ms). So the sink's peak may show up to twice the limit; without
# lanes every domain opened sessions of its own: the sink saw 50 at once per IP.
for f in rollup:3 site:2; do
	name=${f%:*} max=${f#*:}
	for ip in 127.0.0.31 127.0.0.32; do
		got=$(J "$T/$name.json" "d['by_client'].get('$ip',{}).get('sessions_max_concurrent',0)")
		note "$name: $ip at most $got concurrent session(s) seen by the sink"
		[ "$got" -ge 1 ] && [ "$got" -le $((2 * max)) ] &&
			ok "$name: sessions from $ip stay within the lane's max_connections ($got <= $max + closing)" ||
			not_ok "$name: sessions from $ip stay within the lane's max_connections" \
				"max concurrent $got, limit $max; $(head -c 600 "$T/$name.json")"
	done
done
# The ten hoster domains have ten MX names on one address: a session whose
# domain has nothing left passes to a domain waiting for the lane (the
# server's address is one of its MX addresses), instead of closing and
# another one opening. Without that every domain needed a session of its
# own: at least 10.
nsite=$(J "$T/site.json" "d['sessions_total']")
nadopt=$(grep -c 'takes over a session of dest=' "$T/run.log" || true)
[ "$nsite" -ge 1 ] && [ "$nsite" -lt 10 ] && [ "$nadopt" -ge 1 ] &&
	ok "site: 10 domains on one server address shared $nsite session(s) ($nadopt hand-overs)" ||
	not_ok "site: 10 domains on one server address share sessions" \
		"$nsite sessions seen by the sink (fewer than 10 expected), $nadopt hand-overs logged"
# volley's own count when it opens a session: never past the window, and
# the window never past max_connections.
bad=$(grep 'session from lane' "$T/run.log" | awk '{
	lane = $0; sub(/.*session from lane /, "", lane); sub(/ .*/, "", lane)
	n = $0; sub(/.*\(/, "", n); split(n, a, " ")
	max = (lane ~ /hoster$/) ? 2 : 3
	if (a[1] + 0 > max || a[4] + 0 > max) print lane, a[1], a[4]
}' | head -3)
nopen=$(grep -c 'session from lane' "$T/run.log" || true)
[ -z "$bad" ] && [ "$nopen" -gt 0 ] &&
	ok "volley never opens a session past its lane's window ($nopen sessions)" ||
	not_ok "volley never opens a session past its lane's window" "$bad (of $nopen)"
for lane in 127.0.0.31/mx.shared.test 127.0.0.32/mx.shared.test 127.0.0.31/hoster 127.0.0.32/hoster; do
	grep -q "session from lane $lane " "$T/run.log" && ok "lane $lane carried mail" ||
		not_ok "lane $lane carried mail" "$(grep -o 'session from lane [^ ]*' "$T/run.log" | sort | uniq -c)"
done
done_testing
