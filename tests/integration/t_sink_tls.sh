#!/usr/bin/env bash
# t_sink_tls.sh - volley-sink STARTTLS: self-signed (--tls) and given
# certificate (--tls-cert/--tls-key), swaks over TLS, a python TLS client
# that pipelines after STARTTLS (must be ignored), several messages per TLS
# session with byte-exact capture marked X-Sink-TLS: yes, a broken
# handshake, and the tls counters.
. "$(dirname "$0")/../sink_lib.sh"
[ -x "$SINK" ] || { echo "not ok - volley-sink is built ($SINK)"; exit 1; }

P=$(free_port)
mkdir "$T/cap"
start_sink self -l "127.0.0.1:$P" --tls --capture "$T/cap" --stats "$T/stats.json"

out=$(swaks --server "127.0.0.1:$P" --tls --from a@x.test --to b@y.test 2>&1 || true)
like "swaks over STARTTLS: queued" "$(echo "$out" | grep 'queued as')" "<~  250 2.0.0 Ok: queued as *"
like "STARTTLS advertised before TLS" "$(echo "$out" | grep -c '^<-  250-STARTTLS' || true)" "1"
like "STARTTLS not advertised inside TLS" "$(echo "$out" | grep -c '^<~  250-STARTTLS' || true)" "0"

cat >"$T/tls.py" <<'EOF'
import socket, ssl, sys
port, out = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port)); f = s.makefile("rb")
def rd(fh):
    r = []
    while True:
        l = fh.readline()
        if not l: return r + ["EOF"]
        r.append(l.decode("latin-1").rstrip("\r\n"))
        if l[3:4] != b"-": return r
log = rd(f)
s.sendall(b"EHLO tls.test\r\n"); log += rd(f)
s.sendall(b"STARTTLS\r\nNOOP\r\n")          # the NOOP must be ignored
log += rd(f)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s); g = t.makefile("rb")
t.sendall(b"MAIL FROM:<a@x>\r\n"); log += rd(g)      # 503: HELO forgotten
t.sendall(b"EHLO tls.test\r\n"); log += rd(g)
msgs = []
for i in range(3):
    m = b"Subject: tls %d\r\n\r\n.dot line\r\n%s\r\n" % (i, b"y" * (5000 * i))
    msgs.append(m)
    st = b"".join((b"." + l if l.startswith(b".") else l) for l in m.splitlines(keepends=True))
    t.sendall(b"MAIL FROM:<a@x>\r\nRCPT TO:<r%d@y>\r\nDATA\r\n" % i)
    log += rd(g) + rd(g) + rd(g)
    t.sendall(st + b".\r\n"); log += rd(g)
t.sendall(b"QUIT\r\n"); log += rd(g)
print(" ".join(l[:3] for l in log))
for i, m in enumerate(msgs): open("%s.%d" % (out, i), "wb").write(m)
EOF
like "TLS session: replies (pipelined NOOP after STARTTLS ignored)" "$($PY "$T/tls.py" "$P" "$T/m")" \
	"220 250 250 250 250 250 250 250 220 503 250 250 250 250 250 250 250 250 354 250 250 250 354 250 250 250 354 250 221"
same=0
for i in 0 1 2; do
	f=$(grep -l "^X-Sink-Rcpt-To: <r$i@y>" "$T"/cap/*.eml)
	if sed '1,/^X-Sink-TLS: yes\r$/d' "$f" | cmp -s - "$T/m.$i"; then same=$((same + 1)); fi
done
like "TLS messages captured byte-exact, marked X-Sink-TLS: yes" "$same" "3"

$PY - "$P" >/dev/null <<'EOF' || true
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.settimeout(3); f = s.makefile("rb")
f.readline(); s.sendall(b"EHLO x\r\n")
while f.readline()[3:4] == b"-": pass
s.sendall(b"STARTTLS\r\n"); f.readline()
s.sendall(b"this is not a TLS ClientHello\r\n" * 10)
try: print(s.recv(100))
except Exception as e: print(e)
EOF
like "sink survives a broken TLS handshake" "$(swaks --server "127.0.0.1:$P" --tls --to c@y.test 2>&1 | grep -c 'queued as' || true)" "1"

rm -f "$T/stats.json"; kill -USR1 "${PIDS[0]}"
for _ in $(seq 100); do [ -s "$T/stats.json" ] && break; sleep 0.05; done
like "stats: tls sessions" "$(J 'd["tls"]')" "3"
like "stats: messages" "$(J 'd["messages"]')" "5"

# A given certificate and key.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 2 \
	-subj "/CN=given.sink.test" >/dev/null 2>&1
P2=$(free_port)
start_sink given -l "127.0.0.1:$P2" --tls-cert "$T/cert.pem" --tls-key "$T/key.pem"
cn=$($PY - "$P2" <<'EOF'
import socket, ssl, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); f = s.makefile("rb")
f.readline(); s.sendall(b"EHLO x\r\n")
while f.readline()[3:4] == b"-": pass
s.sendall(b"STARTTLS\r\n"); f.readline()
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s)
import subprocess
der = t.getpeercert(binary_form=True)
print(subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"], input=der, capture_output=True).stdout.decode().strip())
EOF
)
like "--tls-cert: the given certificate is served" "$cn" "*given.sink.test*"
"$SINK" -l "127.0.0.1:1" --tls-cert "$T/cert.pem" --tls-key /nonexistent 2>/dev/null && rc=0 || rc=$?
like "--tls-key missing: fails" "$rc" "1"

[ "$fails" = 0 ]
