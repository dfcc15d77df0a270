#!/usr/bin/env bash
# t_engine_drip.sh - a server that drips its replies cannot hold a session:
# per-stage time-outs run from when the reply became due, not from the
# last byte, and the whole transaction has its own limit.
#  - drip.test: the RCPT reply comes one byte every 1.5 s (about 20 s in
#    all, each byte well inside the 3 s RCPT time-out): the job is deferred
#    about 3 s after the MAIL reply, class connection_failure, the reply
#    naming RCPT; not delivered 20 s later.
#  - txn.test: MAIL, RCPT and the 354 each dripped within their own
#    time-outs (about 10.5 s in all) against an 8 s transaction limit: the
#    job is deferred at DATA, the reply naming the stage and the limit.
#  - ok.test on the same sink: delivered at once.
# Every job has exactly one final event.
. "$(dirname "$0")/../lib.sh"
need_volley

DRIP=127.0.1.71 TXN=127.0.1.72 OK=127.0.1.73
start_redis || bail "redis did not start"
start_dns "$(dns_domain drip.test $DRIP)" "$(dns_domain txn.test $TXN)" \
	"$(dns_domain ok.test $OK)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
cat >"$T/sink.conf" <<'CONF'
rule "drip-rcpt" { stage = "rcpt"; rcpt = "*@drip.test"; drip = 1; drip_every = 1500ms; }
rule "slow-mail" { stage = "mail"; from = "slow@*"; drip = 1; drip_every = 300ms; }
rule "slow-rcpt" { stage = "rcpt"; rcpt = "*@txn.test"; drip = 2; drip_every = 200ms; }
rule "slow-data" { stage = "data"; rcpt = "*@txn.test"; drip = 2; drip_every = 300ms; }
CONF
"$SINK" -c "$T/sink.conf" --check >/dev/null 2>&1 ||
	bail "volley-sink has no drip rule: $("$SINK" -c "$T/sink.conf" --check 2>&1 | head -1)"
start_volley_sink "$DRIP" "$SINK_PORT" -c "$T/sink.conf" \
	--listen "$TXN:$SINK_PORT" --listen "$OK:$SINK_PORT" || bail "volley-sink did not start"
wait_listen "$OK" "$SINK_PORT" || bail "volley-sink does not listen on $OK"

CFG_RETRY='[1s]' CFG_MAX_AGE=60s CFG_SMTP_EXTRA='timeouts { rcpt = 3s; transaction = 8s; }' \
	write_config "$T/volley.conf"
sed -i 's/^    rcpt = 10s;$//' "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null ||
	bail "config invalid: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: drip\r\n\r\nbody\r\n' >"$T/msg.eml"

until=$(($(date +%s) + 12))
add_job() {	# ID TO FROM [EXPIRES]
	local args=(XADD volley:jobs '*' id "$1" to "$2" from "$3")
	[ -n "${4:-}" ] && args+=(expires_at "$4")
	redis_cli -x "${args[@]}" msg <"$T/msg.eml" >/dev/null
}
add_job drip u@drip.test f@sender.test "$until"
add_job txn u@txn.test slow@sender.test "$until"
add_job ok u@ok.test f@sender.test

t0=$(now_ms)
run_drain "$T/run.log" 90 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run.log"
check "every job has exactly one final event" events check-final --expect 3
grep -q -E "panic|AddressSanitizer|runtime error" "$T/run.log" && not_ok "no crash in the log" ||
	ok "no crash in the log"
fld() { events field "$@"; }

# the dripped RCPT reply
is "drip: first event deferred (not delivered after the drip)" \
	"$(events history drip | cut -d, -f1)" deferred
is "drip: class connection_failure" "$(fld drip class deferred)" connection_failure
r=$(fld drip reply deferred)
case "$r" in *RCPT*) ok "drip: reply names the stage ($r)" ;;
*) not_ok "drip: reply names the stage" "reply: $r" ;; esac
ts=$(fld drip ts deferred)
if [ -n "$ts" ]; then
	d=$((ts - t0))
	[ "$d" -ge 3000 ] && [ "$d" -lt 10000 ] &&
		ok "drip: deferred after the 3 s RCPT time-out, not the 20 s drip (${d} ms)" ||
		not_ok "drip: deferred after ~3 s" "deferred ${d} ms after the start"
else
	not_ok "drip: deferred after ~3 s" "no deferred event: $(events history drip)"
fi
is "drip: never delivered" "$(events count id=drip status=delivered)" 0
captured() { grep -l -a "^X-Sink-Rcpt-To: <$1>" "$(sink_dir $DRIP)"/* 2>/dev/null | wc -l; }
is "drip: nothing captured" "$(captured u@drip.test)" 0

# the transaction limit
is "txn: first event deferred" "$(events history txn | cut -d, -f1)" deferred
is "txn: class connection_failure" "$(fld txn class deferred)" connection_failure
r=$(fld txn reply deferred)
case "$r" in *DATA*"transaction time limit of 8s"*) ok "txn: reply names the stage and the limit ($r)" ;;
*) not_ok "txn: reply names the stage and the limit" "reply: $r" ;; esac
ts=$(fld txn ts deferred)
if [ -n "$ts" ]; then
	d=$((ts - t0))
	[ "$d" -ge 8000 ] && [ "$d" -lt 10000 ] &&
		ok "txn: deferred at the 8 s limit, before the drip ended (${d} ms)" ||
		not_ok "txn: deferred at the 8 s limit" "deferred ${d} ms after the start"
else
	not_ok "txn: deferred at the 8 s limit" "no deferred event: $(events history txn)"
fi
is "txn: never delivered" "$(events count id=txn status=delivered)" 0

is "ok: delivered" "$(events final ok)" delivered
is "ok: captured once" "$(captured u@ok.test)" 1
is "txn: nothing captured" "$(captured u@txn.test)" 0
is "nothing pending" "$(xpending_count)" 0

done_testing
