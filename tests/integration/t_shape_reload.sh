#!/usr/bin/env bash
# t_shape_reload.sh - a destination waiting for a full lane survives a
# SIGHUP. Two domains share one site whose lane allows 1 connection; the
# sink holds each DATA for 1 s, so while a.hup.test's session sends,
# b.hup.test waits for the lane. A SIGHUP rebuilds every destination's
# lanes; the waiting one must look again (it used to be forgotten: its
# jobs stayed in memory and --drain never ended). Everything is delivered
# and every job has exactly one final event.
. "$(dirname "$0")/../lib.sh"
need_volley

MX=127.0.1.97
start_redis || bail "redis did not start"
start_dns < <(dns_domain a.hup.test "$MX"; dns_domain b.hup.test "$MX") || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink "$MX" "$SINK_PORT" -w 1 || bail "smtp-sink did not start"
CFG_MAX_AGE=5min CFG_EXTRA='site "hup" { mx = ["*.hup.test"]; max_connections = 1; }' \
	write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: hup\r\n\r\nbody\r\n' >"$T/msg.eml"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" \
	a1@a.hup.test a2@a.hup.test a3@a.hup.test >/dev/null || bail "inject a"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" \
	b1@b.hup.test b2@b.hup.test b3@b.hup.test >/dev/null || bail "inject b"

t0=$(now_ms)
bg_volley "$T/run.log" run -c "$T/volley.conf" --drain
pid=$VOLLEY_PID
one_session() { [ "$(ss -Htn state established dst "$MX:$SINK_PORT" | wc -l)" -ge 1 ]; }
wait_for 15 one_session || note "no session seen before SIGHUP"
sleep 0.3
kill -HUP "$pid"
wait_pid "$pid" 60
rc=$WAIT_RC
note "drain took $(($(now_ms) - t0)) ms"
is "run --drain ends after the SIGHUP (exit 0)" "$rc" 0
[ "$rc" = 0 ] || show_log "$T/run.log" 20
grep -q "SIGHUP: reloaded" "$T/run.log" && ok "the configuration was reloaded mid-run" ||
	not_ok "the configuration was reloaded mid-run" "$(show_log "$T/run.log")"
check "every job has exactly one final event" events check-final --expect 6
is "all 6 delivered" "$(events jobs status=delivered)" 6
done_testing
