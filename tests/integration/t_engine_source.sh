#!/usr/bin/env bash
# t_engine_source.sh - a pool address that cannot be bound on this host is
# this host's fault, not the destination's: the pool's other address
# carries every job, nothing is deferred, and the log says the bad source
# is not used (the start-up bind test leaves it out). Before the fix, the failed bind counted as a site failure
# and deferred the destination's queue.
. "$(dirname "$0")/../lib.sh"
need_volley

start_redis || bail "redis did not start"
start_dns "$(dns_domain source.test 127.0.1.71)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink 127.0.1.71 "$SINK_PORT" || bail "smtp-sink did not start"
# 192.0.2.1 (TEST-NET-1) is not on this host: bind() fails EADDRNOTAVAIL.
CFG_EXTRA='pool "p" {
  ip "192.0.2.1" { ehlo = "bad.source.test"; }
  ip "127.0.0.41" { ehlo = "good.source.test"; }
}
domain "source.test" { max_connections = 1; max_msgs_per_connection = 100; }' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: sources\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 1 30); do echo "s$i@source.test"; done >"$T/rcpts"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool p \
	--rcpts "$T/rcpts" >/dev/null

run_drain "$T/run.log" 60 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
check "every job has exactly one final event" events check-final --expect 30
is "all 30 delivered" "$(events jobs status=delivered)" 30
is "nothing deferred" "$(events count status=deferred)" 0
is "every event names the good source" "$(events jobs status=delivered ip=127.0.0.41)" 30
# The start-up test bind finds 192.0.2.1 is not an address of this host
# (docs/shaping.md, "Pools across hosts"): the pool's lanes never hold it.
# A source that fails to bind later is set aside at the first failure.
grep -Eq "source 192.0.2.1: .*set aside|pool=p: 1 of its 2 IP\(s\) are this host's" "$T/run.log" &&
	ok "the log says the bad source is not used" ||
	not_ok "the log says the bad source is not used" "$(show_log "$T/run.log")"

# With smtp.detect_ips the start-up test bind takes 192.0.2.1 for another
# host's address: the pool's lanes never hold it at all.
sed 's/^  retry = /  detect_ips = true;\n  retry = /' "$T/volley.conf" >"$T/detect.conf"
for i in $(seq 1 10); do echo "d$i@source.test"; done >"$T/rcpts2"
"$VOLLEY" inject -c "$T/detect.conf" --from f@sender.test --msg "$T/msg.eml" --pool p \
	--rcpts "$T/rcpts2" >/dev/null
run_drain "$T/run2.log" 60 -c "$T/detect.conf"
is "detect_ips: run --drain exits 0" "$DRAIN_RC" 0
grep -q "pool=p: 1 of its 2 IP(s) are this host's" "$T/run2.log" &&
	ok "detect_ips: the unbindable address is taken as another host's" ||
	not_ok "detect_ips: the unbindable address is taken as another host's" "$(show_log "$T/run2.log")"
is "detect_ips: all 10 delivered from the good source" "$(events jobs status=delivered ip=127.0.0.41)" 40
done_testing
