#!/usr/bin/env bash
# t_inbound_listen.sh - the engine's inbound SMTP listener (inbound.listen):
# a DSN fixture sent with swaks to bounces+ID@bounces.test gets 250 and
# lands in the stream volley:inbound as one entry with the exact raw message
# and its envelope; a raw pipelined client shows dot-unstuffing, the null
# sender, a case-insensitive domain match and 550 5.7.1 (no relay) for any
# other domain; 552 at MAIL SIZE= and after an oversize DATA; 451 4.3.0 with
# Redis stopped, then 250 after its restart; 421 4.3.2 past max_sessions;
# 421 4.4.2 after the idle timeout; STARTTLS; SIGHUP keeps the listener;
# SIGTERM closes idle sessions, lets a message in progress finish, and the
# engine exits 0.
. "$(dirname "$0")/../lib.sh"
need_volley
command -v swaks >/dev/null || bail "swaks is not installed (tests/deps.sh)"

start_redis || bail "redis did not start"
DNS_PORT=$(free_port)		# no DNS server: no job is sent in this test
SINK_PORT=$(free_port)
LP=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj "/CN=mta.test" -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1 ||
	bail "openssl could not make a test certificate"
CFG_EXTRA="inbound {
  listen = \"127.0.0.1:$LP\";
  domains = [\"bounces.test\", \"fbl.test\"];
  max_size = 20k;
  max_sessions = 3;
  timeout = 3s;
  tls_cert = \"$T/cert.pem\";
  tls_key = \"$T/key.pem\";
  process = false;   # keep the entries in the stream to look at them
}"
write_config "$T/volley.conf"
bg_volley "$T/run.log" run -c "$T/volley.conf"
pid=$VOLLEY_PID
wait_listen 127.0.0.1 "$LP" 20 || bail "the listener is not listening" "$(show_log "$T/run.log")"
ok "engine listens on 127.0.0.1:$LP"

cat >"$T/smtp.py" <<'EOF'
# smtp.py PORT SCRIPT: a raw SMTP client. SCRIPT lines: "> text" sends
# text+CRLF (several > lines before a < are pipelined), "<" reads one reply
# and prints it, "<wait" reads one reply with a long timeout, "=FILE" sends
# FILE dot-stuffed plus ".CRLF", "sleep S".
import socket, sys, time
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=20)
f = s.makefile("rb")
def rd():
    lines = []
    while True:
        try:
            l = f.readline()
        except OSError:
            l = b""
        if not l:
            print("EOF"); sys.stdout.flush(); return False
        lines.append(l.decode("latin-1").rstrip("\r\n"))
        if l[3:4] != b"-":
            print(lines[-1][:3] + " " + " | ".join(x[4:] for x in lines)); sys.stdout.flush()
            return True
out = b""
for line in open(sys.argv[2]).read().splitlines():
    if line.startswith("> "):
        out += line[2:].encode() + b"\r\n"
        continue
    if out:
        s.sendall(out); out = b""
    if line == "<":
        if not rd(): break
    elif line == "<wait":
        s.settimeout(60)
        if not rd(): break
    elif line.startswith("="):
        msg = open(line[1:], "rb").read()
        st = b"".join((b"." + l if l.startswith(b".") else l) for l in msg.splitlines(keepends=True))
        s.sendall(st + b".\r\n")
    elif line.startswith("sleep "):
        time.sleep(float(line[6:]))
if out:
    s.sendall(out)
EOF
smtp() { "$PY" "$T/smtp.py" "$LP" /dev/stdin; }
field() {	# field ID NAME: one field of an entry of volley:inbound, raw bytes
	"$PY" - "$REDIS_PORT" "$1" "$2" <<'EOF'
import socket, sys
port, eid, name = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
s = socket.create_connection(("127.0.0.1", port))
args = [b"XRANGE", b"volley:inbound", eid.encode(), eid.encode()]
s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
f = s.makefile("rb")
def read():
    l = f.readline()
    t, v = l[:1], l[1:-2]
    if t == b"*":
        return [read() for _ in range(int(v))]
    if t == b"$":
        n = int(v)
        return None if n < 0 else f.read(n + 2)[:-2]
    return v
kv = read()[0][1]
d = dict(zip(kv[0::2], kv[1::2]))
sys.stdout.buffer.write(d.get(name, b"<missing>"))
EOF
}
last_id() { redis_cli --raw XREVRANGE volley:inbound + - COUNT 1 | head -1; }

# 1. swaks delivers a DSN fixture from the null sender.
FIX=$ROOT/tests/fixtures/dsn/postfix-multi-rcpt.eml
[ -f "$FIX" ] || bail "fixture $FIX missing"
swaks --server "127.0.0.1:$LP" --from '<>' --to 'bounces+ID1@bounces.test' --helo mx.remote.test \
	--data "$FIX" >"$T/swaks1.log" 2>&1 && rc=0 || rc=$?
is "swaks: exit 0" "$rc" 0
check "swaks: 250 after the dot" grep -q '<- *250 2.0.0 Ok: stored' "$T/swaks1.log"
is "one entry in volley:inbound" "$(redis_cli XLEN volley:inbound)" 1
id=$(last_id)
# swaks sends the file with CRLF line ends and one empty line before the
# dot: the stored message is exactly those bytes.
"$PY" -c 'import sys; d=open(sys.argv[1],"rb").read().replace(b"\r\n",b"\n").replace(b"\n",b"\r\n"); sys.stdout.buffer.write(d + b"\r\n")' "$FIX" >"$T/want1"
field "$id" msg >"$T/got1"
check "the entry holds the exact message ($(wc -c <"$T/want1") bytes)" cmp -s "$T/want1" "$T/got1"
is "rcpt field" "$(field "$id" rcpt)" "bounces+ID1@bounces.test"
is "from field (null sender)" "$(field "$id" from)" ""
is "source field" "$(field "$id" source)" "smtp 127.0.0.1"
ts=$(field "$id" ts)
check "ts is unix ms, now" "$PY" -c "import sys,time; t=int('$ts'); sys.exit(0 if abs(t/1000-time.time())<60 else 1)"
check "log: one line for the accepted message" grep -q 'accepted from=<> rcpt=<bounces+ID1@bounces.test> size=' "$T/run.log"

# 2. a raw pipelined transaction: no relay, exact bytes, two recipients.
printf 'From: MAILER-DAEMON@remote.test\r\nSubject: ARF-ish\r\n\r\n.leading dot\r\n..two\r\n.\r\nbare\rcr \x80\xff bytes\r\nlast\r\n' >"$T/raw.eml"
smtp >"$T/raw.out" <<EOF
<
> EHLO mx.remote.test
<
> MAIL FROM:<>
> RCPT TO:<someone@example.com>
> RCPT TO:<bounces+ID2@Bounces.TEST>
> RCPT TO:<x@sub.bounces.test>
> RCPT TO:<fbl@fbl.test>
> RCPT TO:<noat>
> DATA
<
<
<
<
<
<
<
=$T/raw.eml
<
> QUIT
<
EOF
is "raw: the replies in order" "$(cut -c1-3 "$T/raw.out" | tr '\n' ' ')" \
	"220 250 250 550 250 550 250 550 354 250 221 "
check "raw: 550 5.7.1 for another domain" grep -q '^550 5.7.1 <someone@example.com>' "$T/raw.out"
check "raw: EHLO offers SIZE and STARTTLS" grep -q 'SIZE 20480 .*STARTTLS' "$T/raw.out"
is "two entries now" "$(redis_cli XLEN volley:inbound)" 2
id=$(last_id)
field "$id" msg >"$T/got2"
check "raw: stored message is the unstuffed bytes" cmp -s "$T/raw.eml" "$T/got2"
is "raw: rcpt field lists the accepted recipients" "$(field "$id" rcpt)" \
	"bounces+ID2@Bounces.TEST,fbl@fbl.test"
check "log: the relay refusal" grep -q 'refused: relaying denied for "someone@example.com"' "$T/run.log"

# 3. size limits (max_size 20k): at MAIL SIZE= and after the dot.
"$PY" -c 'import sys; sys.stdout.write("Subject: big\r\n\r\n" + ("x" * 998 + "\r\n") * 30)' >"$T/big.eml"
smtp >"$T/big.out" <<EOF
<
> EHLO mx.remote.test
<
> MAIL FROM:<> SIZE=30000
<
> MAIL FROM:<>
> RCPT TO:<b@bounces.test>
> DATA
<
<
<
=$T/big.eml
<
> QUIT
<
EOF
is "size: replies" "$(cut -c1-3 "$T/big.out" | tr '\n' ' ')" "220 250 552 250 250 354 552 221 "
check "size: 552 5.3.4" grep -q '^552 5.3.4' "$T/big.out"
is "size: nothing stored" "$(redis_cli XLEN volley:inbound)" 2

# 4. Redis stopped: 451 4.3.0; back: 250.
cat >"$T/one.smtp" <<EOF
<
> EHLO mx.remote.test
> MAIL FROM:<>
> RCPT TO:<bounces+ID3@bounces.test>
> DATA
<
<
<
<
=$T/raw.eml
<wait
> QUIT
<
EOF
stop_redis || bail "redis did not stop"
"$PY" "$T/smtp.py" "$LP" "$T/one.smtp" >"$T/down.out"
is "redis down: 451 after the dot" "$(sed -n 6p "$T/down.out" | cut -c1-9)" "451 4.3.0"
kill -0 "$pid" 2>/dev/null && ok "engine still running with Redis down" ||
	bail "engine died with Redis down" "$(show_log "$T/run.log")"
restart_redis || bail "redis did not restart"
got=""
for i in $(seq 60); do
	"$PY" "$T/smtp.py" "$LP" "$T/one.smtp" >"$T/up.out"
	got=$(sed -n 6p "$T/up.out" | cut -c1-3)
	[ "$got" = 250 ] && break
	sleep 0.5
done
is "redis back: 250 (after $i attempt(s))" "$got" 250
is "redis back: the entry is there (a fresh Redis, no AOF)" "$(redis_cli XLEN volley:inbound)" 1

# 5. the session cap: 3 sessions open, the 4th gets 421 4.3.2.
holds=()
for n in 1 2 3; do
	printf '<\n<wait\n' | "$PY" "$T/smtp.py" "$LP" /dev/stdin >"$T/hold$n.out" &
	holds+=($!)
done
wait_for 10 sh -c "[ \$(cat $T/hold1.out $T/hold2.out $T/hold3.out 2>/dev/null | grep -c '^220') -eq 3 ]" ||
	note "the three sessions did not all get their greeting"
printf '<\n' | smtp >"$T/over.out"
check "4th session: 421 4.3.2" grep -q '^421 4.3.2' "$T/over.out"
check "log: the cap refusal" grep -q 'refused: too many sessions' "$T/run.log"

# 6. idle timeout (3s): the held sessions are closed with 421 4.4.2.
wait "${holds[@]}"
check "idle sessions got 421 4.4.2" grep -q '^421 4.4.2' "$T/hold1.out"
printf '<\n> NOOP\n<\n> QUIT\n<\n' | smtp >"$T/after.out"
is "after the cap: a new session works" "$(cut -c1-3 "$T/after.out" | tr '\n' ' ')" "220 250 221 "

# 7. STARTTLS (swaks --tls), then the message is stored.
swaks --server "127.0.0.1:$LP" --from 'feedback@isp.test' --to 'fbl@fbl.test' --tls \
	--data "$FIX" >"$T/swaks2.log" 2>&1 && rc=0 || rc=$?
is "swaks --tls: exit 0" "$rc" 0
check "swaks --tls: TLS started and 250" sh -c "grep -q 'TLS started' $T/swaks2.log && grep -q '<~ *250 2.0.0 Ok: stored' $T/swaks2.log"
is "TLS message stored" "$(redis_cli XLEN volley:inbound)" 2

# 8. SIGHUP keeps the listener.
kill -HUP "$pid"
sleep 1
printf '<\n> QUIT\n<\n' | smtp >"$T/hup.out"
is "after SIGHUP: still answering" "$(cut -c1-3 "$T/hup.out" | tr '\n' ' ')" "220 221 "

# 9. SIGTERM: stops accepting, closes an idle session, lets a message in
# progress finish (250, then 421), exits 0.
cat >"$T/slow.smtp" <<EOF
<
> EHLO mx.remote.test
> MAIL FROM:<>
> RCPT TO:<bounces+ID4@bounces.test>
> DATA
<
<
<
<
sleep 3
=$T/raw.eml
<wait
<wait
EOF
"$PY" "$T/smtp.py" "$LP" "$T/slow.smtp" >"$T/slow.out" &
slow=$!
printf '<\n<wait\n' | "$PY" "$T/smtp.py" "$LP" /dev/stdin >"$T/idle.out" &
idle=$!
wait_for 10 sh -c "grep -q '^354' $T/slow.out && grep -q '^220' $T/idle.out" ||
	note "the two sessions were not ready before SIGTERM"
kill -TERM "$pid"
wait "$slow" "$idle"
is "SIGTERM: the idle session gets 421 4.3.2" "$(sed -n 2p "$T/idle.out" | cut -c1-9)" "421 4.3.2"
is "SIGTERM: the message in progress is stored, then 421" "$(cut -c1-3 "$T/slow.out" | tr '\n' ' ')" \
	"220 250 250 250 354 250 421 "
wait_pid "$pid" 40
is "SIGTERM: exit 0" "$WAIT_RC" 0
is "SIGTERM: the message is in the stream" "$(redis_cli XLEN volley:inbound)" 3
check "SIGTERM: the port is closed" sh -c "! ss -Hltn | awk '{print \$4}' | grep -qxF 127.0.0.1:$LP"
check "no body in the log" sh -c "! grep -q 'leading dot' $T/run.log"
[ "$TESTS_FAILED" = 0 ] || show_log "$T/run.log" 40

# The other half: an engine that processes the stream takes what the
# listener stored (these reports name jobs that never existed: they end in
# the unmatched stream with their reason, none is dropped).
sed 's/^  process = false;.*$/  process = true;/' "$T/volley.conf" >"$T/volley-process.conf"
bg_volley "$T/run2.log" run -c "$T/volley-process.conf"
pid=$VOLLEY_PID
stream_empty() { [ "$(redis_cli XLEN volley:inbound)" = 0 ]; }
wait_for 15 stream_empty
is "processing engine: the listener's entries were consumed" "$(redis_cli XLEN volley:inbound)" 0
is "processing engine: all three are in volley:inbound:unmatched" \
	"$(redis_cli XLEN volley:inbound:unmatched)" 3
kill -TERM "$pid"
wait_pid "$pid" 30
is "processing engine: exit 0" "$WAIT_RC" 0
done_testing
