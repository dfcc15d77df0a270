#!/usr/bin/env bash
# t_engine_malformed.sh - invalid jobs each get exactly one `failed` event
# whose reply says why, nothing of theirs reaches a sink, valid jobs in the
# same batch are delivered and the engine keeps running (--drain exits 0).
# Also: a recipient on volley:suppressed gets `suppressed` and is not sent.
. "$(dirname "$0")/../lib.sh"
need_volley

start_redis || bail "redis did not start"
start_dns "$(dns_domain d0.test 127.0.1.1)" "$(dns_domain evil.test 127.0.1.1)" ||
	bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink 127.0.1.1 "$SINK_PORT" || bail "smtp-sink did not start"
write_config "$T/volley.conf"

printf 'From: f@sender.test\r\nSubject: malformed batch\r\n\r\nbody\r\n' >"$T/msg.eml"
redis_cli -x SET volley:msg:shared <"$T/msg.eml" >/dev/null

# job ID FIELD VALUE ...: XADD with exactly these fields
job() {
	local id=$1
	shift
	redis_cli XADD volley:jobs '*' id "$id" "$@" >/dev/null
}
M=$(cat "$T/msg.eml")
CRLF=$'\r\n'

# interleave valid and invalid jobs so they share read batches
job good1 to good1@d0.test from f@sender.test msg "$M"
job no_to from f@sender.test msg "$M"
job no_from to nofrom@d0.test msg "$M"
job no_msg to nomsg@d0.test from f@sender.test
job good2 to good2@d0.test from f@sender.test msg_ref volley:msg:shared
job bad_ref to badref@d0.test from f@sender.test msg_ref volley:msg:missing
job bad_addr1 to not-an-address from f@sender.test msg "$M"
job bad_addr2 to 'a@@d0.test' from f@sender.test msg "$M"
job bad_addr3 to 'trailing@' from f@sender.test msg "$M"
job crlf_to to "x@d0.test${CRLF}RCPT TO:<evil@evil.test>" from f@sender.test msg "$M"
job crlf_from to crlffrom@d0.test from "f@sender.test${CRLF}RCPT TO:<evil2@evil.test>" msg "$M"
job lf_to to "y@d0.test"$'\n'"DATA" from f@sender.test msg "$M"
job null_sender to nullsender@d0.test from "" msg "$M"
job good3 to good3@d0.test from f@sender.test msg "$M" campaign c7
job supp to supp@d0.test from f@sender.test msg "$M"
job supp_case to Supp2@D0.test from f@sender.test msg "$M"
# both msg and msg_ref: the contract does not say which wins; it must still
# end in exactly one final event (checked below with the others)
job both to both@d0.test from f@sender.test msg "$M" msg_ref volley:msg:shared
redis_cli SADD volley:suppressed supp@d0.test supp2@d0.test >/dev/null
# a stream entry with garbage field names only
redis_cli XADD volley:jobs '*' junk "$(head -c 300 /dev/urandom | base64 -w0)" >/dev/null

run_drain "$T/run.log" 90 -c "$T/volley.conf"
is "run --drain exits 0 (the engine survived the batch)" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run.log"
check "every job has exactly one final event" events check-final --expect 18

for id in no_to no_from no_msg bad_ref bad_addr1 bad_addr2 bad_addr3 crlf_to crlf_from lf_to; do
	is "$id: history is one failed event" "$(events history $id)" failed
	r=$(events field $id reply)
	[ -n "$r" ] && ok "$id: reply explains ($r)" || not_ok "$id: reply explains" "empty reply"
done
# the reasons name what is wrong
reply_has() {	# ID WORD...: reply mentions one of the words (case-insensitive)
	local r id=$1 w
	shift
	r=$(events field "$id" reply | tr 'A-Z' 'a-z')
	for w in "$@"; do case "$r" in *"$w"*) return 0 ;; esac; done
	echo "reply: $r"
	return 1
}
check "no_to: reason names the field" reply_has no_to to recipient
check "no_from: reason names the field" reply_has no_from from sender
check "no_msg: reason names the message" reply_has no_msg msg message
check "bad_ref: reason names the key" reply_has bad_ref msg_ref volley:msg:missing missing
check "crlf_to: reason names the address" reply_has crlf_to address cr lf control

for id in good1 good2 good3 null_sender; do
	is "$id: delivered" "$(events history $id)" delivered
done
is "campaign echoed" "$(events field good3 campaign)" c7
is "suppressed: status" "$(events history supp)" suppressed
is "suppressed (mixed case): status" "$(events history supp_case)" suppressed
f=$(events final both)
case "$f" in delivered|failed) ok "msg+msg_ref: one final event ($f)" ;; *) not_ok "msg+msg_ref: one final event" "$f" ;; esac
# the junk entry (no id field: its event uses the stream entry id) fails too
nfail=11
[ "$f" = failed ] && nfail=12
is "failed events: the 10 above, the junk entry$([ "$f" = failed ] && echo ', msg+msg_ref')" \
	"$(events count status=failed)" "$nfail"
is "failed events carry no SMTP code" "$(events count status=failed code!=)" 0

dir=$(sink_dir 127.0.1.1)
dumps rcpts "$dir" | awk -F'\t' '{print $2}' | tr 'A-Z' 'a-z' | sort >"$T/got"
want="good1@d0.test good2@d0.test good3@d0.test nullsender@d0.test"
[ "$f" = delivered ] && want="$want both@d0.test"
printf '%s\n' $want | sort >"$T/want"
if cmp -s "$T/got" "$T/want"; then
	ok "the sink got exactly the valid jobs"
else
	not_ok "the sink got exactly the valid jobs" "$(diff "$T/want" "$T/got")"
fi
is "no smuggled recipient reached the sink" "$(grep -c evil "$T/got")" 0
is "null sender sent as <>" "$(dumps show nullsender@d0.test "$dir" | grep '^X-Mail-Args:' | awk '{print $2}')" "<>"
is "nothing pending" "$(xpending_count)" 0

done_testing
