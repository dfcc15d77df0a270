#!/usr/bin/env bash
# t_engine_msgid.sh - the Message-ID volley adds is the same on a retry.
# Two jobs whose message has no Message-ID: one inline (`msg`), one by
# `volley inject` (`msg_ref`), to two domains served by volley-sink. The
# sink captures each message at the end of data; on the first attempt it
# then holds its reply for 20 s (rule `delay`), so the engine's dot
# time-out (3 s) defers the job although the sink has the data; on the
# second attempt (rule `every = 2`) it answers 250 at once. The first
# engine stops after the deferrals; a second engine (a new process: no
# body, header or random state survives) makes the retries. Each
# recipient's two captured copies carry one and the same Message-ID, and
# the events say deferred then delivered on attempt 2.
#
# Why this fails if the Message-ID were made per attempt: the two attempts
# are made by two processes seconds apart, so a Message-ID built from the
# time, a random number, a counter, the pid or the attempt number differs
# between the two captures; only one derived from what the two attempts
# share (the body and the job's key or msg_ref) is equal.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

MX=127.0.1.97
start_redis || bail "redis did not start"
start_dns "$(dns_domain mid.test "$MX")" "$(dns_domain mid2.test "$MX")" ||
	bail "dnsmasq did not start"
SINK_PORT=$(free_port)
cat >"$T/sink.conf" <<'EOF'
rule "inline-2nd" { stage = "dot"; rcpt = "inline@mid.test"; every = 2; reply = "250 2.0.0 Ok: second"; }
rule "inline-1st" { stage = "dot"; rcpt = "inline@mid.test"; delay = 20s; }
rule "ref-2nd" { stage = "dot"; rcpt = "ref@mid2.test"; every = 2; reply = "250 2.0.0 Ok: second"; }
rule "ref-1st" { stage = "dot"; rcpt = "ref@mid2.test"; delay = 20s; }
EOF
start_volley_sink "$MX" "$SINK_PORT" -c "$T/sink.conf" || bail "volley-sink did not start"
# The retry comes 10 s after the deferral: the first engine is stopped
# before it, the second one makes it.
CFG_RETRY='[10s]' CFG_MAX_AGE=5min CFG_SMTP_EXTRA='timeouts { dot = 3s; }' \
	write_config "$T/volley.conf"
sed -i 's/^    dot = 30s;$//' "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null ||
	bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"

redis_cli XADD volley:jobs '*' id inline-1 to inline@mid.test from f@sender.test \
	msg "$(printf 'From: f@sender.test\r\nSubject: inline\r\n\r\nthe body\r\n')" >/dev/null
printf 'From: f@sender.test\r\nSubject: shared\r\n\r\nanother body\r\n' >"$T/msg.eml"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" ref@mid2.test \
	>/dev/null || bail "inject"

bg_volley "$T/run1.log" run -c "$T/volley.conf"
pid1=$VOLLEY_PID
deferred() { [ "$(events count status=deferred)" -ge 2 ]; }
wait_for 30 deferred || bail "both jobs deferred by the dot time-out" "$(events summary)" \
	"$(show_log "$T/run1.log")"
kill -TERM "$pid1"
wait_pid "$pid1" 30
is "the first engine stops cleanly" "$WAIT_RC" 0
is "no final event yet" "$(events jobs)" 0
is "the sink has both first attempts" "$(sink_count "$MX")" 2

run_drain "$T/run2.log" 90 -c "$T/volley.conf"
is "a second engine makes the retries and drains" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run2.log"
is "inline: deferred, then delivered" "$(events history inline-1)" "deferred,delivered"
is "... on attempt 2" "$(events field inline-1 attempt delivered)" 2
ref_id=$(events ids to=ref@mid2.test | cut -f2 | head -1)
is "msg_ref: deferred, then delivered" "$(events history "$ref_id")" "deferred,delivered"
check "exactly one final event per job" events check-final --expect 2

# msgids RCPT: the Message-ID of each captured copy for RCPT, one a line.
msgids() {
	grep -l -F "X-Sink-Rcpt-To: <$1>" "$(sink_dir "$MX")"/*.eml |
		xargs -r grep -h -i '^Message-ID:' | tr -d '\r'
}
for r in inline@mid.test ref@mid2.test; do
	ids=$(msgids "$r")
	is "$r: two copies captured, each with a Message-ID" "$(echo "$ids" | grep -c .)" 2
	is "$r: the same Message-ID on both attempts" "$(echo "$ids" | sort -u | grep -c .)" 1
	case "$ids" in
	"Message-ID: <"*"@sender.test>"*) ok "$r: volley's Message-ID on the From domain" ;;
	*) not_ok "$r: volley's Message-ID on the From domain" "$ids" ;;
	esac
	note "$r: $(echo "$ids" | head -1)"
done
a=$(msgids inline@mid.test | head -1)
b=$(msgids ref@mid2.test | head -1)
[ -n "$a" ] && [ "$a" != "$b" ] && ok "two different messages, two Message-IDs" ||
	not_ok "two different messages, two Message-IDs" "$a / $b"
done_testing
