#!/usr/bin/env bash
# t_engine_bdat.sh - BDAT/CHUNKING (RFC 3030) for large messages.
#  - chunk.test: volley-sink with `chunking = true`; a 3 MB message (dot-
#    leading lines, the first line too, a line of dots alone, a bare-LF and
#    a bare-CR line end) goes by BDAT (above smtp.bdat_threshold, default
#    1M: the capture says X-Sink-Chunking: yes) and the capture ends with
#    exactly the normalised message (CRLF, no stuffing, no final dot).
#  - plain.test: the same message to a sink without CHUNKING goes by DATA;
#    its capture is the same bytes (after the sink's own X-Sink lines).
#  - small: a small message to chunk.test still goes by DATA.
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
start_volley_sink "$CHUNK" "$SINK_PORT" -c "$T/chunk.conf" || bail "volley-sink (chunking) did not start"
start_volley_sink "$PLAIN" "$SINK_PORT" -c "$T/plain.conf" || bail "volley-sink (plain) did not start"

write_config "$T/volley.conf"
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

run_drain "$T/run.log" 120 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run.log"
check "every job has exactly one final event" events check-final --expect 3
grep -q -E "panic|AddressSanitizer|runtime error" "$T/run.log" && not_ok "no crash in the log" ||
	ok "no crash in the log"
for id in big-chunk big-plain small; do
	is "$id: delivered" "$(events final $id)" delivered
done

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
is "small: went by DATA although CHUNKING is offered" \
	"$(grep -a -c '^X-Sink-Chunking:' "$cs" 2>/dev/null)" 0

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

done_testing
