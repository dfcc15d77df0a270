#!/usr/bin/env bash
# t_engine_bdat.sh - BDAT/CHUNKING (RFC 3030) for large messages.
#  - chunk.test: volley-sink with `chunking = true`; a 3 MB message (dot-
#    leading lines, the first line too, a line of dots alone, a bare-LF and
#    a bare-CR line end) goes by BDAT (above smtp.bdat_threshold, default
#    1M: the capture says X-Sink-Chunking: yes) and the capture ends with
#    exactly the normalised message (CRLF, no stuffing, no final dot).
#  - plain.test: the same message to a sink without CHUNKING goes by DATA;
#    its capture is the same bytes (after the sink's own X-Sink lines).
#  - small: a small message to chunk.test goes in one round trip: one
#    "BDAT n LAST" pipelined behind MAIL and RCPT (smtp.bdat_pipeline,
#    default 128K), unstuffed.
#  - rcpt550 / dot550: the same with the recipient refused at RCPT (the
#    event carries RCPT's 550, not the chunk's "no valid recipients") and
#    with the chunk refused (550 at the end of data); then ok2 is
#    delivered. chunk.test has one connection (max_connections = 1), so
#    all of them share one session (the sink counts 1); the sink's one
#    "554 no valid recipients" is its reply to the chunk that came behind
#    the refused RCPT without waiting for it: the round trip was one.
#  - bdat_pipeline = 0: a small message goes by DATA again.
# Every job has exactly one final event.
. "$(dirname "$0")/../lib.sh"
need_volley

CHUNK=127.0.1.81 PLAIN=127.0.1.82
start_redis || bail "redis did not start"
start_dns "$(dns_domain chunk.test $CHUNK)" "$(dns_domain plain.test $PLAIN)" ||
	bail "dnsmasq did not start"
SINK_PORT=$(free_port)
printf 'smtp { chunking = true; size = 20M; }\n' >"$T/chunk.conf"
printf 'smtp { size = 20M; }\n' >"$T/plain.conf"
"$SINK" -c "$T/chunk.conf" --check >/dev/null 2>&1 ||
	bail "volley-sink has no chunking setting: $("$SINK" -c "$T/chunk.conf" --check 2>&1 | head -1)"
start_volley_sink "$CHUNK" "$SINK_PORT" -c "$T/chunk.conf" --stats "$T/chunk.json" ||
	bail "volley-sink (chunking) did not start"
start_volley_sink "$PLAIN" "$SINK_PORT" -c "$T/plain.conf" || bail "volley-sink (plain) did not start"

CFG_EXTRA='domain "chunk.test" { max_connections = 1; }' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null ||
	bail "config invalid: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"

# The big message, and what any receiver must store: line ends made CRLF
# (bare LF and bare CR each one line end), nothing stuffed, no final dot.
"$PY" - "$T/big.eml" "$T/big.expected" <<'PY'
import sys
raw = bytearray(b".first line starts with a dot\r\nFrom: f@sender.test\r\nSubject: big\r\n\r\n")
line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_0123456789\r\n"
i = 0
while len(raw) < 3 * 1024 * 1024:
    if i % 997 == 0:
        raw += b"..two dots lead this line\r\n.\r\n. a dot and a space\r\n"
    if i % 1009 == 0:
        raw += b"bare LF line\nthen a bare CR line\rdone\r\n"
    raw += line
    i += 1
raw += b".\r\nlast line, no line end"
open(sys.argv[1], "wb").write(raw)
exp = bytes(raw).replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
open(sys.argv[2], "wb").write(exp)
PY
printf 'From: f@sender.test\r\nSubject: small\r\n\r\nsmall body\r\n.dot line\r\n' >"$T/small.eml"

add_job() {	# ID TO FILE
	redis_cli -x XADD volley:jobs '*' id "$1" to "$2" from f@sender.test msg <"$3" >/dev/null
}
add_job big-chunk u@chunk.test "$T/big.eml"
add_job big-plain u@plain.test "$T/big.eml"
add_job small v@chunk.test "$T/small.eml"
add_job rcpt550 w+550@chunk.test "$T/small.eml"
add_job dot550 x+dot550@chunk.test "$T/small.eml"
add_job ok2 y@chunk.test "$T/small.eml"

run_drain "$T/run.log" 120 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run.log"
check "every job has exactly one final event" events check-final --expect 6
grep -q -E "panic|AddressSanitizer|runtime error" "$T/run.log" && not_ok "no crash in the log" ||
	ok "no crash in the log"
for id in big-chunk big-plain small ok2; do
	is "$id: delivered" "$(events final $id)" delivered
done
is "rcpt550: bounced" "$(events final rcpt550)" bounced
is "rcpt550: RCPT's reply, not the chunk's" "$(events field rcpt550 code)" 550
case "$(events field rcpt550 reply)" in
*"User unknown"*) ok "rcpt550: the reply text is RCPT's" ;;
*) not_ok "rcpt550: the reply text is RCPT's" "$(events field rcpt550 reply)" ;;
esac
is "dot550: bounced" "$(events final dot550)" bounced
is "dot550: the end-of-data reply" "$(events field dot550 code)" 550

capture_of() {	# SINK_ADDR RCPT: the one capture file for RCPT
	grep -l -a "^X-Sink-Rcpt-To: <$2>" "$(sink_dir "$1")"/* 2>/dev/null
}
cc=$(capture_of $CHUNK u@chunk.test)
cp=$(capture_of $PLAIN u@plain.test)
cs=$(capture_of $CHUNK v@chunk.test)
is "big-chunk: captured once" "$(echo "$cc" | grep -c .)" 1
is "big-plain: captured once" "$(echo "$cp" | grep -c .)" 1
is "small: captured once" "$(echo "$cs" | grep -c .)" 1
is "big-chunk: went by BDAT" "$(grep -a -c '^X-Sink-Chunking: yes' "$cc" 2>/dev/null)" 1
is "big-plain: went by DATA" "$(grep -a -c '^X-Sink-Chunking:' "$cp" 2>/dev/null)" 0
is "small: went by BDAT" "$(grep -a -c '^X-Sink-Chunking: yes' "$cs" 2>/dev/null)" 1
rm -f "$T/chunk.json"; kill -USR1 "$(cat "$T/pids/volley-sink-$CHUNK.pid")"
wait_for 5 test -s "$T/chunk.json"
read -r nsess n554 <<<"$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(d["sessions_total"], d["codes"].get("554", 0))' "$T/chunk.json" 2>/dev/null)"
is "chunk.test: one session for its five messages" "$nsess" 1
is "rcpt550: the chunk came behind the refused RCPT (the sink's one 554)" "$n554" 1
is "rcpt550, dot550: nothing captured" \
	"$(grep -l -a -E '^X-Sink-Rcpt-To: <(w\+550|x\+dot550)@' "$(sink_dir $CHUNK)"/* 2>/dev/null | wc -l)" 0
is "ok2: captured once" "$(grep -l -a '^X-Sink-Rcpt-To: <y@chunk.test>' "$(sink_dir $CHUNK)"/* | wc -l)" 1

# byte-exact: each capture, without the sink's X-Sink lines, is the
# engine's header lines (X-Volley-Id, Message-ID, Date...) then exactly
# the expected message; both big captures hold the same header names.
out=$("$PY" - "$cc" "$cp" "$T/big.expected" <<'PY'
import sys
exp = open(sys.argv[3], "rb").read()
heads = []
for path in sys.argv[1:3]:
    data = open(path, "rb").read()
    while data.startswith(b"X-Sink-"):
        data = data[data.index(b"\r\n") + 2:]
    if not data.endswith(exp):
        n = 0
        for a, b in zip(reversed(data), reversed(exp)):
            if a != b:
                break
            n += 1
        print("%s: does not end with the expected %d bytes (%d match from the end)" %
              (path, len(exp), n))
        sys.exit(1)
    pre = data[:len(data) - len(exp)]
    if pre and not pre.endswith(b"\r\n"):
        print("%s: the engine's lines do not end a line" % path)
        sys.exit(1)
    heads.append(sorted(l.split(b":")[0] for l in pre.split(b"\r\n") if l and l[:1] not in b" \t"))
if heads[0] != heads[1]:
    print("header names differ: %r vs %r" % heads)
    sys.exit(1)
print("ok %d bytes" % len(exp))
PY
)
case "$out" in ok*) ok "BDAT and DATA captures are byte-exact ($out)" ;;
*) not_ok "BDAT and DATA captures are byte-exact" "$out" ;; esac
grep -a -q '^small body' "$cs" && grep -a -q '^\.dot line' "$cs" &&
	ok "small: body unstuffed as sent" || not_ok "small: body unstuffed as sent" "$(tail -c 200 "$cs")"
is "nothing pending" "$(xpending_count)" 0

# smtp.bdat_pipeline = 0: small messages go by DATA again
CFG_SMTP_EXTRA='  bdat_pipeline = 0;' write_config "$T/volley-nopipe.conf"
add_job small-data z@chunk.test "$T/small.eml"
run_drain "$T/run2.log" 60 -c "$T/volley-nopipe.conf"
is "bdat_pipeline = 0: run --drain exits 0" "$DRAIN_RC" 0
is "small-data: delivered" "$(events final small-data)" delivered
cz=$(capture_of $CHUNK z@chunk.test)
is "small-data: captured once" "$(echo "$cz" | grep -c .)" 1
is "small-data: went by DATA" "$(grep -a -c '^X-Sink-Chunking:' "$cz" 2>/dev/null)" 0
check "every job has exactly one final event (both runs)" events check-final --expect 7

done_testing
