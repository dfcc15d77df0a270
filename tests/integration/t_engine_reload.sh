#!/usr/bin/env bash
# t_engine_reload.sh - SIGHUP reloads the configuration: an invalid file is
# refused (logged, the engine keeps running on the old one); a valid one
# takes effect for new sessions (here: a pool's source IP and EHLO name).
. "$(dirname "$0")/../lib.sh"
need_volley

start_redis || bail "redis did not start"
start_dns "$(dns_domain reload.test 127.0.1.61)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink 127.0.1.61 "$SINK_PORT" || bail "smtp-sink did not start"
CFG_SMTP_EXTRA='idle = 0;' CFG_EXTRA='pool "p" { ip "127.0.0.31" { ehlo = "old.reload.test"; } }' \
	write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: reload\r\n\r\nbody\r\n' >"$T/msg.eml"

bg_volley "$T/run.log" run -c "$T/volley.conf"
pid=$VOLLEY_PID
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool p a1@reload.test >/dev/null
wait_for 15 sh -c "[ \$(redis-cli -p $REDIS_PORT XLEN volley:events) -ge 1 ]" || not_ok "first job delivered"

# An invalid file: refused, the engine keeps going.
cp "$T/volley.conf" "$T/good.conf"
echo 'smtp { bogus_setting = 1; }' >>"$T/volley.conf"
kill -HUP "$pid"
wait_for 10 grep -q "keeping the running configuration" "$T/run.log" &&
	ok "an invalid config is refused on SIGHUP" || not_ok "an invalid config is refused on SIGHUP" "$(show_log "$T/run.log")"
kill -0 "$pid" 2>/dev/null && ok "the engine is still running" || not_ok "the engine is still running"

# A valid change: new source IP and EHLO for pool p.
sed 's/127.0.0.31/127.0.0.32/; s/old.reload.test/new.reload.test/' "$T/good.conf" >"$T/volley.conf"
kill -HUP "$pid"
wait_for 10 grep -q "SIGHUP: reloaded" "$T/run.log" && ok "a valid config is reloaded" ||
	not_ok "a valid config is reloaded" "$(show_log "$T/run.log")"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool p a2@reload.test >/dev/null
wait_for 15 sh -c "[ \$(redis-cli -p $REDIS_PORT XLEN volley:events) -ge 2 ]" || not_ok "second job delivered"
# Two more reloads: the configuration the second one replaces was loaded
# by SIGHUP, no session uses it (idle = 0), so it is freed at once.
kill -HUP "$pid"
wait_for 10 sh -c "[ \$(grep -c 'SIGHUP: reloaded' '$T/run.log') -ge 2 ]"
kill -HUP "$pid"
wait_for 10 grep -q "configuration replaced by SIGHUP is freed" "$T/run.log" &&
	ok "a replaced configuration is freed once no session uses it" ||
	not_ok "a replaced configuration is freed once no session uses it" "$(show_log "$T/run.log")"
kill -TERM "$pid"
wait_pid "$pid" 20
is "SIGTERM: exit 0" "$WAIT_RC" 0

dir=$(sink_dir 127.0.1.61)
who() { grep -l "X-Rcpt-Args: <$1>" "$dir"/* | head -1 | xargs awk '/^X-Client-Addr:/{c=$2} /^X-Helo-Args:/{h=$2} END{print c, h}'; }
is "before the reload: old IP and EHLO" "$(who a1@reload.test)" "127.0.0.31 old.reload.test"
is "after the reload: new IP and EHLO" "$(who a2@reload.test)" "127.0.0.32 new.reload.test"
is "events say so too" "$(events field "$(events ids to=a2@reload.test | cut -f2)" ip)" 127.0.0.32
done_testing
