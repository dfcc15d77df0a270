#!/usr/bin/env bash
# t_sink_behaviour.sh - volley-sink answers as configured: recipient tags
# (swaks), config rules at each stage (reply, delay, every Nth, probability,
# disconnect, stall, garbage, overlong line, multi-line), blocklist,
# per-IP connection and rate limits, greylisting, and the gmail / yahoo /
# outlook profiles' wording. Each check uses its own 127.0.5.x source IP
# so that per-IP limits don't interfere.
. "$(dirname "$0")/../sink_lib.sh"
[ -x "$SINK" ] || { echo "not ok - volley-sink is built ($SINK)"; exit 1; }

# smtp.py SRC DST PORT CMD... : one command at a time; prints each reply
# (multi-line joined by " | ") and the seconds it took, tab-separated.
# "BODY:text" sends text and the final dot. Stops at EOF or TIMEOUT.
cat >"$T/smtp.py" <<'EOF'
import socket, sys, time
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(); s.bind((src, 0)); s.settimeout(4); s.connect((dst, port))
f = s.makefile("rb")
def rd():
    lines = []
    while True:
        try: l = f.readline()
        except (socket.timeout, ConnectionResetError): return "TIMEOUT" if not lines else " | ".join(lines)
        if not l: return "EOF" if not lines else " | ".join(lines)
        l = l.decode("latin-1").rstrip("\r\n"); lines.append(l)
        if len(l) < 4 or l[3] != "-": return " | ".join(lines)
def step(data):
    t = time.time()
    if data is not None: s.sendall(data)
    r = rd(); print("%s\t%.1f" % (r, time.time() - t)); sys.stdout.flush()
    return r
r = step(None)
for c in sys.argv[4:]:
    if r in ("EOF", "TIMEOUT"): break
    r = step((c[5:] + "\r\n.\r\n").encode() if c.startswith("BODY:") else (c + "\r\n").encode())
EOF
smtp() { $PY "$T/smtp.py" "$@"; }
rep() { cut -f1 | sed -n "${1}p"; }	# the Nth reply
secs() { cut -f2 | sed -n "${1}p"; }

P=$(free_port)
cat >"$T/sink.conf" <<EOF
# test configuration
listen = ["127.0.5.1-127.0.5.3:$P"];
smtp { slow_delay = 1s; stall_time = 1s; }
greylist { delay = 2s; }
limits { per_ip_connections = 3; per_ip_rate = "3/min"; }
blocklist = ["127.0.5.9"];
rule "block-connect" { stage = "connect"; client = "127.0.5.8"; reply = "554 5.7.1 [{ip}] go away"; }
rule "slow-ehlo"    { stage = "ehlo"; local = "127.0.5.2"; delay = 1s; }
rule "garbage-helo" { stage = "ehlo"; helo = "garbage.test"; garbage = true; }
rule "every3"       { stage = "mail"; from = "every@*"; every = 3; reply = "451 4.3.2 try later"; }
rule "long"         { stage = "mail"; from = "long@*"; longline = 3000; }
rule "never"        { stage = "rcpt"; rcpt = "*@never.test"; probability = 0; reply = "550 5.0.0 never"; }
rule "stall-rcpt"   { stage = "rcpt"; rcpt = "stall@*"; stall = 1s; }
rule "multi"        { stage = "rcpt"; rcpt = "multi@*"; reply = "550 5.7.1 first line\nsecond line for {rcpt}"; }
rule "drop-data"    { stage = "data"; from = "dropdata@*"; disconnect = true; }
EOF
start_sink main -c "$T/sink.conf" --stats "$T/stats.json"
D=127.0.5.1

# --- recipient tags, through swaks ---
sw() { local src=$1 to=$2; shift 2; swaks -li "$src" --server "$D:$P" --from s@x.test --to "$to" "$@" 2>&1 || true; }
like "tag 550: 550 5.1.1 at RCPT" "$(sw 127.0.5.10 u+550@d.test | grep '^<\*\*')" "<\*\* 550 5.1.1 <u+550@d.test>: Recipient address rejected*"
like "tag 451: 451 4.3.0 at RCPT" "$(sw 127.0.5.11 u+451@d.test | grep '^<\*\*')" "<\*\* 451 4.3.0 *"
like "tag 452: mailbox full 452 4.2.2" "$(sw 127.0.5.12 u+452@d.test | grep '^<\*\*')" "<\*\* 452 4.2.2 *Mailbox full*"
like "tag 552: 552 5.2.2" "$(sw 127.0.5.13 u+552@d.test | grep '^<\*\*')" "<\*\* 552 5.2.2 *"
like "tag dot550: 550 after the message" "$(sw 127.0.5.14 u+dot550@d.test | grep -A1 '^ -> \.$' | tail -1)" "<\*\* 550 5.7.1 Message rejected"
like "plain recipient: queued" "$(sw 127.0.5.15 u@d.test | grep 'queued as')" "<-  250 2.0.0 Ok: queued as *"

out=$(smtp 127.0.5.16 $D $P "EHLO t" "MAIL FROM:<s@x>" "RCPT TO:<u+slow1@d.test>" DATA "BODY:Subject: s")
like "tag slow1: final reply delayed 1 s" "$(echo "$out" | rep 6)	$(echo "$out" | secs 6)" "250 2.0.0 Ok: queued as *	1.[0-9]"
out=$(smtp 127.0.5.17 $D $P "EHLO t" "MAIL FROM:<s@x>" "RCPT TO:<u+drop@d.test>" DATA "BODY:Subject: d")
like "tag drop: disconnect without reply at end of data" "$(echo "$out" | rep 6)" "EOF"
out=$(smtp 127.0.5.18 $D $P "EHLO t" "MAIL FROM:<s@x>" "RCPT TO:<u+grey@d.test>" "RCPT TO:<u+grey@d.test>")
like "tag grey: 451 4.7.1 the first time" "$(echo "$out" | rep 4)" "451 4.7.1 Greylisting in action*"
like "tag grey: still 451 before the delay" "$(echo "$out" | rep 5)" "451 4.7.1 *"
sleep 2.1
out=$(smtp 127.0.5.18 $D $P "EHLO t" "MAIL FROM:<s@x>" "RCPT TO:<u+grey@d.test>")
like "tag grey: accepted after greylist.delay" "$(echo "$out" | rep 4)" "250 2.1.5 Ok"
out=$(smtp 127.0.5.19 $D $P "EHLO t" "MAIL FROM:<s@x>" "RCPT TO:<u+garbage@d.test>")
like "tag garbage: a non-SMTP reply" "$(echo "$out" | rep 4)" $'\x16\x03\x01 *garbage*'

# --- rules ---
like "rule at connect by client address" "$(smtp 127.0.5.8 $D $P | rep 1)" "554 5.7.1 \[127.0.5.8\] go away"
out=$(smtp 127.0.5.20 127.0.5.2 $P "EHLO t"; smtp 127.0.5.20 127.0.5.3 $P "EHLO t")
like "rule: EHLO delayed on local 127.0.5.2" "$(echo "$out" | secs 2)" "1.[0-9]"
like "rule: EHLO not delayed on local 127.0.5.3" "$(echo "$out" | secs 4)" "0.[0-2]"
like "rule: local address in EHLO reply stays normal" "$(echo "$out" | rep 2)" "250-sink.volley.test | 250-PIPELINING*"
out=$(for i in 1 2 3; do smtp 127.0.5.21 $D $P "EHLO t" "MAIL FROM:<every@x>" | rep 3; done | tr '\n' '/')
like "rule every 3rd MAIL" "$out" "250 2.1.0 Ok/250 2.1.0 Ok/451 4.3.2 try later/"
like "rule with probability 0 never fires" "$(smtp 127.0.5.22 $D $P "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<x@never.test>" | rep 4)" "250 2.1.5 Ok"
like "rule: garbage EHLO reply" "$(smtp 127.0.5.23 $D $P "EHLO garbage.test" | rep 2)" $'\x16\x03\x01 *'
r=$(smtp 127.0.5.24 $D $P "EHLO t" "MAIL FROM:<long@x>" | rep 3)
like "rule: overlong reply line (3004 bytes)" "${#r}" "3004"
out=$(smtp 127.0.5.25 $D $P "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<stall@d.test>")
like "rule: stall then disconnect" "$(echo "$out" | rep 4)	$(echo "$out" | secs 4)" "EOF	1.[0-9]"
like "rule: multi-line reply with variables" "$(smtp 127.0.5.26 $D $P "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<multi@d.test>" | rep 4)" \
	"550-5.7.1 first line | 550 5.7.1 second line for multi@d.test"
like "rule: disconnect at DATA" "$(smtp 127.0.5.27 $D $P "EHLO t" "MAIL FROM:<dropdata@x>" "RCPT TO:<a@d.test>" DATA | rep 5)" "EOF"
like "blocklisted client: 550 5.7.1 at RCPT" "$(smtp 127.0.5.9 $D $P "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<a@d.test>" | rep 4)" \
	"550 5.7.1 Service unavailable; Client host \[127.0.5.9\] blocked using zen.spamhaus.org*"

# --- limits ---
cat >"$T/conns.py" <<EOF
import socket
ss = []
for i in range(4):
    s = socket.socket(); s.bind(("127.0.5.30", 0)); s.connect(("$D", $P)); s.settimeout(3)
    ss.append(s); print(s.makefile("rb").readline().decode().rstrip())
EOF
like "per-IP connection limit: 421 at greeting past 3" "$($PY "$T/conns.py" | cut -c1-3 | tr '\n' ' ')" "220 220 220 421 "
out=$(smtp 127.0.5.31 $D $P "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<a@d>" DATA "BODY:m1" "MAIL FROM:<a@x>" "RCPT TO:<a@d>" DATA "BODY:m2" \
	"MAIL FROM:<a@x>" "RCPT TO:<a@d>" DATA "BODY:m3" "MAIL FROM:<a@x>" "RCPT TO:<a@d>")
like "per-IP rate: 3 messages accepted" "$(echo "$out" | rep 14)" "250 2.0.0 Ok*"
like "per-IP rate: 421 4.7.0 past 3/min" "$(echo "$out" | rep 15)" "421 4.7.0 \[127.0.5.31\] Too many messages*"
like "per-IP rate: then closed" "$(echo "$out" | rep 16)" "EOF"

# stats: exact counts of a few codes
rm -f "$T/stats.json"; kill -USR1 "${PIDS[0]}"
for _ in $(seq 100); do [ -s "$T/stats.json" ] && break; sleep 0.05; done
like "stats: per-client 451 count for the greylisted client" "$(J "d['by_client']['127.0.5.18']['codes']['451']")" "2"
like "stats: 421 sent twice (conn limit, rate limit)" "$(J "d['codes']['421']")" "2"
like "stats: rate-limited client sent 3 messages" "$(J "d['by_client']['127.0.5.31']['messages']")" "3"

# --- provider profiles ---
PG=$(free_port)
printf 'profile = "gmail";\nlimits { per_ip_rate = "1/min"; }\n' >"$T/gmail.conf"
start_sink gmail -l "127.0.5.1:$PG" -c "$T/gmail.conf"
like "gmail banner" "$(smtp 127.0.5.40 $D $PG | rep 1)" "220 mx.google.sink.test ESMTP *gsmtp"
like "gmail +unknown" "$(smtp 127.0.5.41 $D $PG "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<u+unknown@gmail.test>" | rep 4)" \
	"550 5.1.1 The email account that you tried to reach does not exist.*"
like "gmail +ratelimit" "$(smtp 127.0.5.42 $D $PG "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<u+ratelimit@gmail.test>" | rep 4)" \
	"421 4.7.28 \[127.0.5.42\] Our system has detected an unusual rate*"
like "gmail +auth at end of data" "$(smtp 127.0.5.43 $D $PG "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<u+auth@gmail.test>" DATA BODY:x | rep 6)" \
	"550 5.7.26 This mail has been blocked because the sender is unauthenticated.*"
out=$(smtp 127.0.5.44 $D $PG "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<a@d>" DATA "BODY:m1" "MAIL FROM:<a@x>")
like "gmail per-IP rate limit wording" "$(echo "$out" | rep 7)" "421 4.7.28 \[127.0.5.44\] Our system has detected an unusual rate*"

PY2=$(free_port)
start_sink yahoo -l "127.0.5.1:$PY2" --profile yahoo
like "yahoo +unknown (no enhanced code)" "$(smtp 127.0.5.45 $D $PY2 "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<u+unknown@yahoo.test>" | rep 4)" \
	"554 delivery error: dd This user doesn't have a yahoo.com account (u+unknown@yahoo.test)*"
like "yahoo +ratelimit [TSS04]" "$(smtp 127.0.5.46 $D $PY2 "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<u+ratelimit@yahoo.test>" | rep 4)" \
	"421 4.7.0 \[TSS04\] Messages from 127.0.5.46 temporarily deferred*"
like "yahoo +block [TSS09]" "$(smtp 127.0.5.47 $D $PY2 "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<u+block@yahoo.test>" | rep 4)" \
	"553 5.7.2 \[TSS09\] All messages from 127.0.5.47 will be permanently deferred*"

PO=$(free_port)
start_sink outlook -l "127.0.5.1:$PO" --profile outlook
out=$(smtp 127.0.5.48 $D $PO "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<u+ratelimit@outlook.test>" "NOOP")
like "outlook +ratelimit 451 4.7.650" "$(echo "$out" | rep 4)" "451 4.7.650 The mail server \[127.0.5.48\] has been temporarily rate limited*\(S775\)"
like "outlook +ratelimit closes" "$(echo "$out" | rep 5)" "EOF"
like "outlook +block (S3150)" "$(smtp 127.0.5.49 $D $PO "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<u+block@outlook.test>" | rep 4)" \
	"550 5.7.1 Unfortunately, messages from \[127.0.5.49\] weren't sent.*\(S3150\)."
like "outlook +unknown" "$(smtp 127.0.5.50 $D $PO "EHLO t" "MAIL FROM:<a@x>" "RCPT TO:<u+unknown@outlook.test>" | rep 4)" \
	"550 5.1.10 RESOLVER.ADR.RecipientNotFound*"

[ "$fails" = 0 ]
