#!/usr/bin/env bash
# t_sink_basic.sh - volley-sink: --help, config errors, many listeners (a
# range), smtp-source traffic with exact counters per local address,
# PIPELINING, byte-exact capture after dot-unstuffing, SIGUSR1/SIGTERM stats.
. "$(dirname "$0")/../sink_lib.sh"

[ -x "$SINK" ] || { echo "not ok - volley-sink is built ($SINK)"; exit 1; }

# --help is a manual.
"$SINK" --help >"$T/help" && h=0 || h=$?
check "help exits 0" eq "$h" 0
check "help has synopsis, tags, signals, examples" \
	bash -c "grep -q SYNOPSIS $T/help && grep -q 'RECIPIENT TAGS' $T/help && grep -q SIGUSR1 $T/help && grep -q EXAMPLES $T/help"

# Config errors: file:line, exit 2.
printf 'listen = "127.0.0.1:1";\nrule "x" {\n  stage = "rcpt";\n  reply = "hello";\n}\n' >"$T/bad.conf"
"$SINK" -c "$T/bad.conf" 2>"$T/bad.err" && rc=0 || rc=$?
check "bad config exits 2" eq "$rc" 2
check "bad config names file:line" grep -q "^$T/bad.conf:4: 'reply'" "$T/bad.err"
printf 'smtp {\n  size = 12;\n}\n' >"$T/bad2.conf"
"$SINK" -l 127.0.0.1:1 -c "$T/bad2.conf" 2>"$T/bad2.err" && rc=0 || rc=$?
check "out-of-range value: exit 2 with file:line" bash -c "[ $rc = 2 ] && grep -q '^$T/bad2.conf:2: ' $T/bad2.err"
"$SINK" -l nonsense 2>/dev/null && rc=0 || rc=$?
check "bad --listen exits 2" eq "$rc" 2

P=$(free_port)
mkdir "$T/cap"
start_sink sink -l "127.0.3.1-127.0.3.3:$P" -l "127.0.0.1:$P" --stats "$T/stats.json" --capture "$T/cap"

# smtp-source: 50 messages x 3 recipients over 5 reused sessions to .2,
# 20 messages in 20 sessions to .3.
smtp-source -s 5 -m 50 -r 3 -l 2048 -d "127.0.3.2:$P" >/dev/null
smtp-source -s 4 -m 20 -l 1024 "127.0.3.3:$P" >/dev/null

# A raw, pipelined client with awkward message bytes and split writes.
cat >"$T/raw.py" <<'EOF'
import socket, sys, time
port = int(sys.argv[1]); out = sys.argv[2]
s = socket.create_connection(("127.0.3.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
f = s.makefile("rb")
def rd():
    r = []
    while True:
        l = f.readline()
        if not l: raise SystemExit("eof")
        r.append(l.decode("latin-1").rstrip("\r\n"))
        if l[3:4] != b"-": return r
replies = []
replies += rd()
s.sendall(b"EHLO raw.test\r\n"); replies += rd()
s.sendall(b"MAIL FROM:<sender@raw.test> BODY=8BITMIME\r\nRCPT TO:<one@rcpt.test>\r\n"
          b"RCPT TO:<two+550@rcpt.test>\r\nRCPT TO:<three@rcpt.test>\r\nDATA\r\n")
for _ in range(5): replies += rd()
msg = (b"Subject: exact\r\n\r\n.leading dot\r\n..two dots\r\n.\r\n\r\nbare\rcr and \x80\xff\x00 bytes\r\n"
       + b"x" * 9000 + b"\r\n. \r\nlast line\r\n")
stuffed = b"".join((b"." + l if l.startswith(b".") else l) for l in msg.splitlines(keepends=True))
wire = stuffed + b".\r\n"
# Split right after every dot so the unstuffing state crosses reads.
pos = 0
for i, ch in enumerate(wire):
    if ch == ord("."):
        s.sendall(wire[pos:i + 1]); pos = i + 1; time.sleep(0.01)
s.sendall(wire[pos:])
replies += rd()
s.sendall(b"RSET\r\nNOOP\r\nMAIL FROM:<>\r\nRCPT TO:<four@rcpt.test>\r\nDATA\r\n")
for _ in range(5): replies += rd()
s.sendall(b"Subject: second\r\n\r\nbody\r\n.\r\nQUIT\r\n")
replies += rd(); replies += rd()
open(out + ".msg", "wb").write(msg)
open(out + ".replies", "w").write("\n".join(r[:3] for r in replies if r[:3].isdigit()) + "\n")
EOF
$PY "$T/raw.py" "$P" "$T/raw"
check "pipelined replies in order" eq "$(tr '\n' ' ' <"$T/raw.replies")" \
	"220 250 250 250 250 250 250 250 250 550 250 354 250 250 250 250 250 354 250 221 "

f=$(grep -l "^X-Sink-Helo: raw.test" "$T"/cap/*.eml | head -1 || true)
{
	printf 'X-Sink-Client: 127.0.0.1:%s\r\n' "$(sed -n 's/^X-Sink-Client: 127.0.0.1:\([0-9]*\)\r$/\1/p' "$f" | head -1)"
	printf 'X-Sink-Local: 127.0.3.1:%s\r\nX-Sink-Helo: raw.test\r\nX-Sink-Mail-From: <sender@raw.test>\r\nX-Sink-Mail-Params: BODY=8BITMIME\r\n' "$P"
	printf 'X-Sink-Rcpt-To: <one@rcpt.test>\r\nX-Sink-Rcpt-To: <three@rcpt.test>\r\nX-Sink-TLS: no\r\n'
	cat "$T/raw.msg"
} >"$T/expect.eml"
check "capture is byte-exact (headers + unstuffed message)" cmp "$f" "$T/expect.eml"
check "one capture file per message" eq "$(ls "$T"/cap/*.eml | wc -l)" 72
check "no temporary capture files left" eq "$(ls -A "$T/cap" | grep -c '^\.tmp' || true)" 0

stats_now
check "messages total" eq "$(J 'd["messages"]')" 72
check "recipients total" eq "$(J 'd["recipients"]')" $((150 + 20 + 2 + 1))
check "sessions total" eq "$(J 'd["sessions_total"]')" $((5 + 20 + 1))
check "sessions now 0" eq "$(J 'd["sessions_current"]')" 0
check "per local: 127.0.3.2 messages" eq "$(J "d['by_local']['127.0.3.2:$P']['messages']")" 50
check "per local: 127.0.3.2 recipients" eq "$(J "d['by_local']['127.0.3.2:$P']['recipients']")" 150
check "per local: 127.0.3.3 sessions" eq "$(J "d['by_local']['127.0.3.3:$P']['sessions_total']")" 20
check "per local: 127.0.3.1 one 550" eq "$(J "d['by_local']['127.0.3.1:$P']['codes']['550']")" 1
check "codes: 354 per message" eq "$(J 'd["codes"]["354"]')" 72
check "codes: 220 per session" eq "$(J 'd["codes"]["220"]')" 26
check "rejected recipients" eq "$(J 'd["rcpts_rejected"]')" 1
check "by_client 127.0.0.1" eq "$(J "d['by_client']['127.0.0.1']['messages']")" 72
check "ehlo name recorded" eq "$(J "d['by_local']['127.0.3.1:$P']['ehlo']['raw.test']")" 1
check "per_minute counts all" eq "$(J 'sum(d["per_minute"])')" 72
check "bytes of the raw message" bash -c "[ $(J "d['by_local']['127.0.3.1:$P']['bytes']") = $(( $(stat -c %s "$T/raw.msg") + 25 )) ]"
check "three of the four listeners used" eq "$(J 'len(d["by_local"])')" 3

rm -f "$T/stats.json"
kill -TERM "$PID"; wait "$PID" && rc=0 || rc=$?; PID=
check "SIGTERM exits 0" eq "$rc" 0
check "SIGTERM writes stats" bash -c "[ -s $T/stats.json ] && [ ! -e $T/stats.json.tmp ]"

[ "$fails" = 0 ]
