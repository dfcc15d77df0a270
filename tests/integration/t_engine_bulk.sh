#!/usr/bin/env bash
# t_engine_bulk.sh - 3000 recipients over 30 domains through `volley inject
# --rcpts` and `volley run --drain`, against one smtp-sink. Checks what the
# sink holds (each recipient exactly once, the body byte-exact including
# lines that start with a dot and a bare-LF line end, X-Volley-Id matching
# the job id), what the events say (3000 delivered, one final event per
# job) and what Redis holds (nothing left pending).
. "$(dirname "$0")/../lib.sh"
need_volley

N=3000
NDOM=30
MX=127.0.1.1

start_redis || bail "redis did not start"
for i in $(seq 0 $((NDOM - 1))); do dns_domain "d$i.test" "$MX"; done >"$T/dns.lines"
start_dns <"$T/dns.lines" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink "$MX" "$SINK_PORT" || bail "smtp-sink did not start"
write_config "$T/volley.conf"

# The message: CRLF lines, one bare-LF line end, a line starting with ".",
# a line that is only "..", a line that is only "." would end DATA if the
# engine forgot to stuff it.
printf 'From: News <news@sender.test>\r\nTo: list@sender.test\r\nSubject: bulk dots\r\nMessage-ID: <bulk-1@sender.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello,\r\n.this line starts with a dot\r\n..\r\n.\r\nbare LF follows\nafter the bare LF\r\n...three\r\nend.\r\n' >"$T/msg.eml"

for i in $(seq 0 $((N - 1))); do echo "user$i@d$((i % NDOM)).test"; done >"$T/rcpts"

out=$("$VOLLEY" inject -c "$T/volley.conf" --from bounce@sender.test \
	--msg "$T/msg.eml" --campaign bulk1 --rcpts "$T/rcpts" 2>&1)
rc=$?
is "inject exits 0" "$rc" 0
case "$out" in *"$N"*) ok "inject says $N queued" ;; *) not_ok "inject says $N queued" "$out" ;; esac
is "volley:jobs holds $N entries" "$(redis_cli XLEN volley:jobs)" "$N"

run_drain "$T/run.log" 120 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
note "drain took ${DRAIN_MS} ms ($((N * 1000 / (DRAIN_MS > 0 ? DRAIN_MS : 1))) msg/s)"
[ "$DRAIN_RC" = 0 ] || show_log "$T/run.log"

dir=$(sink_dir "$MX")
check "every recipient reached the sink exactly once" dumps check-rcpts --expect "$T/rcpts" "$dir"
check "bodies byte-exact, headers kept, X-Volley-Id present" dumps check-body --eml "$T/msg.eml" "$dir"
is "envelope sender" "$(dumps field X-Mail-Args "$dir" | awk -F'\t' '{print $2}' | sed 's/ .*//' | sort -u)" "<bounce@sender.test>"
is "EHLO name from the config" "$(dumps field X-Helo-Args "$dir" | awk -F'\t' '{print $2}' | sort -u)" "mta.test"

is "delivered events" "$(events count status=delivered)" "$N"
check "one final event per job, $N jobs" events check-final --expect "$N"
is "no other statuses" "$(events count status!=delivered)" 0
is "campaign echoed in events" "$(events count status=delivered campaign=bulk1)" "$N"
is "delivered events carry code 250" "$(events count status=delivered code=250)" "$N"
is "mx field names the MX" "$(events count status=delivered mx~mx.d)" "$N"
is "attempt is 1" "$(events count status=delivered attempt=1)" "$N"

# X-Volley-Id in each message is the job id of that recipient's event
dumps ids "$dir" >"$T/ids.sink"
events ids status=delivered >"$T/ids.events"
if cmp -s "$T/ids.sink" "$T/ids.events" && [ -s "$T/ids.sink" ]; then
	ok "X-Volley-Id equals the event id for every recipient"
else
	not_ok "X-Volley-Id equals the event id for every recipient" \
		"$(diff "$T/ids.sink" "$T/ids.events" | head -5)"
fi

is "nothing pending in volley:jobs" "$(xpending_count)" 0

done_testing
