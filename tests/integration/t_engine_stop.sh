#!/usr/bin/env bash
# t_engine_stop.sh - stopping safely. SIGTERM while an MX lookup hangs (a
# DNS server that never answers) exits 0 at once and loses nothing. SIGTERM
# while sessions wait on a peer that stalls at end of data: after
# smtp.stop_timeout the sessions are aborted, their jobs deferred (not
# lost), exit 0; the next run delivers them. Every job ends with EXACTLY
# one final event. Under `make asan` this also checks the teardown is clean.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

start_redis || bail "redis did not start"
start_dns "$(dns_domain stall.test 127.0.1.41)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink 127.0.1.41 "$SINK_PORT" || bail "volley-sink"
printf 'From: f@sender.test\r\nSubject: stop\r\n\r\nbody\r\n' >"$T/msg.eml"

# 1. A DNS server that never answers: the lookup is pending at SIGTERM.
HOLE_PORT=$(free_port)
"$PY" - "$HOLE_PORT" <<'PYEOF' &
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
end = time.time() + 60
s.settimeout(1)
while time.time() < end:
    try:
        s.recvfrom(2048)        # swallow every query
    except socket.timeout:
        pass
PYEOF
hole=$!
LAB_PIDS+=("$hole")
# Bound before the engine asks it anything (else the query is refused at
# once and the job deferred: a race on a loaded machine).
hole_bound() { ss -Hlun | awk '{print $4}' | grep -qx "127.0.0.1:$HOLE_PORT"; }
wait_for 10 hole_bound || bail "the silent DNS server did not start"
write_config "$T/hole.conf"
sed -i "s/127.0.0.1:$DNS_PORT/127.0.0.1:$HOLE_PORT/" "$T/hole.conf"
redis_cli XADD volley:jobs '*' id hole to u@stall.test from f@sender.test msg x >/dev/null
bg_volley "$T/hole.log" run -c "$T/hole.conf"
pid=$VOLLEY_PID
sleep 1.5
t0=$(now_ms)
kill -TERM "$pid"
wait_pid "$pid" 20
is "SIGTERM during a hanging MX lookup: exit 0" "$WAIT_RC" 0
el=$(($(now_ms) - t0))
[ "$el" -lt 5000 ] && ok "it stopped promptly ($el ms)" || not_ok "it stopped promptly" "$el ms"
grep -q -E "AddressSanitizer|runtime error|panic" "$T/hole.log" && not_ok "clean teardown" "$(show_log "$T/hole.log")" ||
	ok "clean teardown"
is "the job is still there, pending" "$(redis_cli XLEN volley:jobs)" 1
is "no event for it yet" "$(events count id=hole)" 0

# The same job is delivered by the next run with a working resolver.
CFG_SMTP_EXTRA='stop_timeout = 3s;' CFG_RETRY='[1s]' CFG_MAX_AGE=60s write_config "$T/volley.conf"
run_drain "$T/run1.log" 60 -c "$T/volley.conf"
is "next run drains, exit 0" "$DRAIN_RC" 0
is "the job is delivered" "$(events final hole)" delivered
is "hole: exactly one event, the final one" "$(events history hole)" delivered

# 2. Sessions stuck at end of data: abort after stop_timeout, defer, exit 0.
# (+slow20: the sink answers the final dot only after 20 s, long after
# SIGTERM + stop_timeout, but within the 30 s dot timeout of the next run.)
for i in 1 2 3; do
	redis_cli XADD volley:jobs '*' id "stall$i" to "u$i+slow20@stall.test" from f@sender.test msg x >/dev/null
done
bg_volley "$T/run2.log" run -c "$T/volley.conf"
pid=$VOLLEY_PID
wait_for 15 sh -c "[ \$(ss -Htn state established dst 127.0.1.41:$SINK_PORT | wc -l) -ge 1 ]" ||
	note "no session seen before SIGTERM"
sleep 1
t0=$(now_ms)
kill -TERM "$pid"
wait_pid "$pid" 30
is "SIGTERM with stuck sessions: exit 0" "$WAIT_RC" 0
el=$(($(now_ms) - t0))
[ "$el" -ge 2500 ] && [ "$el" -lt 15000 ] && ok "waited for stop_timeout, then aborted ($el ms)" ||
	not_ok "waited for stop_timeout, then aborted" "$el ms"
grep -q "aborting them" "$T/run2.log" && ok "the abort is logged" || not_ok "the abort is logged" "$(show_log "$T/run2.log")"
grep -q -E "AddressSanitizer|runtime error|panic" "$T/run2.log" && not_ok "clean teardown (2)" "$(show_log "$T/run2.log")" ||
	ok "clean teardown (2)"
for i in 1 2 3; do
	is "stall$i: deferred, not lost" "$(events history "stall$i")" deferred
done
case "$(events field stall1 reply deferred)" in *"engine stopped"*) ok "the reply says the engine stopped" ;;
*) not_ok "the reply says the engine stopped" "$(events field stall1 reply deferred)" ;; esac
is "they wait in the retry set" "$(redis_cli ZCARD volley:retry)" 3
is "nothing pending in the stream" "$(xpending_count)" 0

# 3. The next run delivers them: one final event each, never two.
run_drain "$T/run3.log" 120 -c "$T/volley.conf"
is "the run after the stop drains, exit 0" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run3.log"
for i in 1 2 3; do
	is "stall$i: deferred once, then delivered once" "$(events history "stall$i")" deferred,delivered
done
check "every job has exactly one final event (4 jobs)" events check-final --expect 4
is "nothing pending" "$(xpending_count)" 0
is "nothing scheduled for retry" "$(redis_cli ZCARD volley:retry)" 0

done_testing
