#!/usr/bin/env bash
# t_engine_tls.sh - STARTTLS by policy against real peers on loopback:
#   opportunistic (the default) to volley-sink --tls: delivered over TLS
#     (the capture says X-Sink-TLS: yes, the sink counts TLS sessions, the
#     engine log names protocol and cipher);
#   opportunistic to a sink without STARTTLS: delivered in clear text;
#   required without STARTTLS: deferred, class tls_failure (then expired);
#   required to the TLS sink (self-signed): delivered over TLS;
#   verify to the self-signed sink: deferred tls_failure; verify to a sink
#     whose certificate smtp.tls_ca_file trusts: delivered; the same sink
#     under another MX name: deferred tls_failure (name mismatch);
#   a server whose handshake fails: opportunistic retries at once in clear
#     text and is delivered (logged), and the next session to that MX host
#     does not try TLS again (fallback table); required defers tls_failure;
#   a later session to the TLS sink resumes the TLS session;
#   a server that sends plaintext after its 220 to STARTTLS (injection):
#     deferred protocol_error, nothing sent;
#   disabled to the TLS sink: delivered in clear text;
#   Postfix's smtpd with a self-signed certificate (a private instance,
#   relaying to the TLS sink): delivered over TLS, Postfix logs the TLS
#   connection (skipped, with a note, when Postfix is not installed).
# Events carry `tls` (protocol and cipher, or none). `volley status` counts
# per site the sessions and deliveries over TLS and in clear text (site
# "tlssite": mx.tls.test, all TLS; site "plainsite": mx.plain.test and
# mx.off.test, all clear text).
# Every job ends with exactly one final event.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink is not built ($SINK)"

start_redis || bail "redis did not start"
start_dns \
	"$(dns_domain tls.test 127.0.1.1)" "$(dns_domain reqok.test 127.0.1.1)" \
	"$(dns_domain ver.test 127.0.1.1)" "$(dns_domain off.test 127.0.1.1)" \
	"$(dns_domain plain.test 127.0.1.2)" "$(dns_domain req.test 127.0.1.2)" \
	"$(dns_domain verok.test 127.0.1.3)" "$(dns_domain verbad.test 127.0.1.3)" \
	"$(dns_domain broken.test 127.0.1.4)" "$(dns_domain brokenreq.test 127.0.1.6)" \
	"$(dns_domain inject.test 127.0.1.5)" "$(dns_domain postfix.test 127.0.1.7)" ||
	bail "dnsmasq did not start"
SINK_PORT=$(free_port)

# A certificate for mx.verok.test, trusted through smtp.tls_ca_file.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-keyout "$T/key.pem" -out "$T/cert.pem" -subj "/CN=mx.verok.test" \
	-addext "subjectAltName=DNS:mx.verok.test" >/dev/null 2>&1 || bail "openssl req failed"

start_volley_sink 127.0.1.1 "$SINK_PORT" --tls --stats "$T/stats1.json" || bail "TLS sink"
start_volley_sink 127.0.1.2 "$SINK_PORT" || bail "plain sink"
start_volley_sink 127.0.1.3 "$SINK_PORT" --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" ||
	bail "TLS sink with a given certificate"

# fake_smtp ADDR MODE: offers STARTTLS; "badtls": answers the ClientHello
# with text; "inject": sends a reply after its 220 in the same write.
# Mail in clear text is accepted. It logs "starttls"/"message" lines.
cat >"$T/fake_smtp.py" <<'EOF'
import socket, sys, threading
addr, port, mode, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((addr, port)); ls.listen(64)
lock = threading.Lock()
def log(line):
    with lock, open(out, "a") as f:
        f.write(line + "\n")
def serve(c):
    f = c.makefile("rb"); data = False
    c.sendall(b"220 fake ESMTP\r\n")
    while True:
        l = f.readline()
        if not l: break
        if data:
            if l == b".\r\n":
                data = False; log("message"); c.sendall(b"250 2.0.0 Ok\r\n")
            continue
        cmd = l[:4].upper()
        if cmd == b"EHLO":
            c.sendall(b"250-fake\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
        elif cmd == b"STAR":
            log("starttls")
            if mode == "inject":
                c.sendall(b"220 2.0.0 Ready\r\n250-fake\r\n250 PIPELINING\r\n")
                c.settimeout(5)
                try:
                    c.recv(4096)
                except OSError:
                    pass
            else:
                c.sendall(b"220 2.0.0 Ready\r\n"); c.recv(4096)
                c.sendall(b"this is not a TLS ServerHello\r\n")
            break
        elif cmd == b"DATA":
            data = True; c.sendall(b"354 go\r\n")
        elif cmd == b"QUIT":
            c.sendall(b"221 bye\r\n"); break
        else:
            c.sendall(b"250 ok\r\n")
    c.close()
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
fake_smtp() {
	"$PY" "$T/fake_smtp.py" "$1" "$SINK_PORT" "$2" "$T/fake-$1.log" >"$T/fake-$1.err" 2>&1 &
	LAB_PIDS+=("$!")
	wait_listen "$1" "$SINK_PORT" 10
}
fake_smtp 127.0.1.4 badtls || bail "fake server (bad TLS)"
fake_smtp 127.0.1.5 inject || bail "fake server (injection)"
fake_smtp 127.0.1.6 badtls || bail "fake server (bad TLS, required)"

# postfix_smtpd: a private Postfix on 127.0.1.7 (its own config, queue and
# data dirs under $T, no chroot) whose smtpd offers STARTTLS with a
# self-signed certificate and relays everything to the TLS sink.
postfix_smtpd() {
	local PF=$T/postfix
	[ -x /usr/lib/postfix/sbin/master ] && am_root && [ -n "$T" ] || return 1
	make_postfix_dirs "$PF"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout "$PF/etc/key.pem" \
		-out "$PF/etc/cert.pem" -subj "/CN=mx.postfix.test" >/dev/null 2>&1 || return 1
	: >"$PF/maillog"
	cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.postfix.test
mydomain = postfix.test
myorigin = postfix.test
mydestination =
local_recipient_maps =
relay_domains = postfix.test
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
inet_interfaces = all
inet_protocols = ipv4
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.1.1]:$SINK_PORT
maillog_file = $PF/maillog
maillog_file_prefixes = $T
smtpd_tls_security_level = may
smtpd_tls_cert_file = $PF/etc/cert.pem
smtpd_tls_key_file = $PF/etc/key.pem
smtpd_tls_loglevel = 1
smtp_tls_security_level = may
biff = no
smtputf8_enable = no
EOF
	write_postfix_master_cf "$PF/etc/master.cf" "127.0.1.7:$SINK_PORT" 10
	/usr/lib/postfix/sbin/master -c "$PF/etc" -w 2>"$PF/master.err" || return 1
	wait_for 10 test -s "$PF/queue/pid/master.pid" || return 1
	echo $(($(tr -d ' ' <"$PF/queue/pid/master.pid"))) >"$T/pids/postfix-master.pid"
	wait_listen 127.0.1.7 "$SINK_PORT" 10
}
HAVE_POSTFIX=0
postfix_smtpd && HAVE_POSTFIX=1 || note "Postfix smtpd not started: its case is skipped"

CFG_RETRY='[1s]' CFG_MAX_AGE=60s \
CFG_SMTP_EXTRA="  tls_ca_file = \"$T/cert.pem\"; idle = 1s;" \
CFG_EXTRA='
domain "req.test" { tls = required; }
domain "reqok.test" { tls = required; }
domain "ver.test" { tls = verify; }
domain "verok.test" { tls = verify; }
domain "verbad.test" { tls = verify; }
domain "brokenreq.test" { tls = required; }
domain "broken.test" { max_msgs_per_connection = 1; }
domain "off.test" { tls = disabled; }
site "tlssite" { mx = ["mx.tls.test"]; }
site "plainsite" { mx = ["mx.plain.test", "mx.off.test"]; }
' write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: tls\r\n\r\nbody\r\n' >"$T/msg.eml"

soon=$(($(date +%s) + 8))
# add_job ID TO [EXPIRES_AT]
add_job() {
	local args=(XADD volley:jobs '*' id "$1" to "$2" from f@sender.test)
	[ -n "${3:-}" ] && args+=(expires_at "$3")
	redis_cli -x "${args[@]}" msg <"$T/msg.eml" >/dev/null
}
add_job tls1 a@tls.test
add_job tls2 b@tls.test
add_job plain c@plain.test
add_job req d@req.test "$soon"
add_job reqok e@reqok.test
add_job ver f@ver.test "$soon"
add_job verok g@verok.test
add_job verbad h@verbad.test "$soon"
add_job broken1 i@broken.test
add_job brokenreq j@brokenreq.test "$soon"
add_job inject k@inject.test "$soon"
add_job off l@off.test
N=12
[ $HAVE_POSTFIX = 1 ] && { add_job postfix n@postfix.test; N=13; }

VOLLEY_LOG=debug bg_volley "$T/run.log" run -c "$T/volley.conf"
wait_for 40 events check-final --expect $N ||
	{ show_log "$T/run.log" 40; bail "not every job ended" "$(events summary)"; }
# The next session to the MX host whose handshake failed: no STARTTLS.
# ... and a later session to mx.tls.test resumes the TLS session.
add_job broken2 m@broken.test
add_job tls3 o@tls.test
N=$((N + 2))
wait_for 20 events check-final --expect $N || not_ok "broken2 ended"
# site_tls SITE: its "tls/plain sessions tls/plain delivered" from `volley
# status` (the snapshot is published once a second).
site_tls() {
	"$VOLLEY" status -c "$T/volley.conf" 2>/dev/null |
		awk -v s="$1" '$1 == s && NF >= 8 { print $7, $8; exit }'
}
tlssite_counted() { case "$(site_tls tlssite)" in *" 3/0") return 0 ;; esac; return 1; }
wait_for 5 tlssite_counted
"$VOLLEY" status -c "$T/volley.conf" >"$T/status.txt" 2>&1
kill -TERM "$VOLLEY_PID" 2>/dev/null
wait_pid "$VOLLEY_PID" 20

check "every job has exactly one final event" events check-final --expect $N

# captured_tls RCPT: the X-Sink-TLS header of RCPT's capture
captured_tls() {
	local f
	f=$(grep -l "^X-Sink-Rcpt-To: <$1>" "$(sink_dir "$2")"/*.eml 2>/dev/null | head -1)
	[ -n "$f" ] || { echo "not captured"; return; }
	sed -n 's/^X-Sink-TLS: \([a-z]*\)\r$/\1/p' "$f"
}

# opportunistic, offered
for j in tls1:a@tls.test tls2:b@tls.test; do
	is "${j%%:*}: delivered" "$(events history "${j%%:*}")" delivered
	is "${j%%:*}: sent over TLS (sink capture)" "$(captured_tls "${j#*:}" 127.0.1.1)" yes
done
grep -q 'tls established .*mx="mx.tls.test" policy=opportunistic tls="TLSv1.3 TLS_AES_256_GCM_SHA384" verify=18' "$T/run.log" &&
	ok "the engine log names protocol, cipher and verify result" ||
	not_ok "the engine log names protocol, cipher and verify result" "$(grep 'tls' "$T/run.log" | head -5)"
is "tls3: delivered" "$(events history tls3)" delivered
grep -q 'tls established .*mx="mx.tls.test" .*resumed=1' "$T/run.log" &&
	ok "a later session to the same MX host resumed its TLS session" ||
	not_ok "a later session to the same MX host resumed its TLS session" \
	"$(grep 'tls established .*mx.tls.test' "$T/run.log")"
rm -f "$T/stats1.json"; kill -USR1 "$(cat "$T/pids/volley-sink-127.0.1.1.pid")"
wait_for 5 test -s "$T/stats1.json"
n=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["tls"])' "$T/stats1.json")
[ "${n:-0}" -ge 2 ] && ok "the TLS sink counted TLS sessions ($n)" ||
	not_ok "the TLS sink counted TLS sessions" "tls: $n"

# opportunistic, not offered
is "plain: delivered" "$(events history plain)" delivered
is "plain: in clear text" "$(captured_tls c@plain.test 127.0.1.2)" no

# required
is "req (no STARTTLS): first event deferred" "$(events history req | cut -d, -f1)" deferred
is "req: class tls_failure" "$(events field req class deferred)" tls_failure
like_reply() { case "$(events field "$1" reply deferred)" in *"$2"*) ok "$1: reply says '$2'" ;;
	*) not_ok "$1: reply says '$2'" "$(events field "$1" reply deferred)" ;; esac; }
like_reply req "does not offer STARTTLS"
is "req: nothing reached the sink" "$(captured_tls d@req.test 127.0.1.2)" "not captured"
is "req: ends expired" "$(events final req)" expired
is "reqok: delivered" "$(events history reqok)" delivered
is "reqok: over TLS" "$(captured_tls e@reqok.test 127.0.1.1)" yes

# verify
is "ver (self-signed, untrusted): deferred tls_failure" "$(events field ver class deferred)" tls_failure
like_reply ver "certificate verify failed"
is "ver: nothing captured" "$(captured_tls f@ver.test 127.0.1.1)" "not captured"
is "verok (tls_ca_file trusts it): delivered" "$(events history verok)" delivered
is "verok: over TLS" "$(captured_tls g@verok.test 127.0.1.3)" yes
is "verbad (trusted, wrong name): deferred tls_failure" "$(events field verbad class deferred)" tls_failure
like_reply verbad "hostname mismatch"
is "verbad: nothing captured" "$(captured_tls h@verbad.test 127.0.1.3)" "not captured"

# a handshake that fails
is "broken1: delivered (clear text after the failed handshake)" "$(events history broken1)" delivered
is "broken2: delivered" "$(events history broken2)" delivered
grep -q 'tls failed .*mx="mx.broken.test".*retrying in clear text' "$T/run.log" &&
	ok "the fallback to clear text is logged" ||
	not_ok "the fallback to clear text is logged" "$(grep 'broken' "$T/run.log" | head -5)"
grep -q 'tls fallback .*mx="mx.broken.test": clear text .*within the last hour' "$T/run.log" &&
	ok "the next session to that host goes in clear text at once" ||
	not_ok "the next session to that host goes in clear text at once" "$(grep 'fallback' "$T/run.log" | head)"
is "the failing server saw STARTTLS once (broken1), not again" \
	"$(grep -c starttls "$T/fake-127.0.1.4.log")" 1
is "brokenreq: deferred tls_failure" "$(events field brokenreq class deferred)" tls_failure
like_reply brokenreq "TLS handshake failed"

# injection after the 220
is "inject: deferred protocol_error" "$(events field inject class deferred)" protocol_error
like_reply inject "possible injection"
is "inject: no message reached the server" "$(grep -c message "$T/fake-127.0.1.5.log")" 0

# disabled
is "off: delivered" "$(events history off)" delivered
is "off: in clear text although offered" "$(captured_tls l@off.test 127.0.1.1)" no

# Postfix's smtpd
if [ $HAVE_POSTFIX = 1 ]; then
	is "postfix: delivered" "$(events history postfix)" delivered
	grep -q 'tls established .*mx="mx.postfix.test" policy=opportunistic tls="TLSv1' "$T/run.log" &&
		ok "postfix: the engine used TLS" || not_ok "postfix: the engine used TLS" "$(grep postfix "$T/run.log" | head -5)"
	grep -q 'smtpd.*TLS connection established from .*TLSv1' "$T/postfix/maillog" &&
		ok "postfix: smtpd logged the TLS connection" ||
		not_ok "postfix: smtpd logged the TLS connection" "$(grep -i tls "$T/postfix/maillog" | head -5)"
	wait_for 20 sh -c "grep -ql '^X-Sink-Rcpt-To: <n@postfix.test>' '$(sink_dir 127.0.1.1)'/*.eml" &&
		ok "postfix: relayed the message to the sink" || not_ok "postfix: relayed the message to the sink"
fi

# The event field `tls`.
is "event tls field (tls1)" "$(events field tls1 tls)" "TLSv1.3 TLS_AES_256_GCM_SHA384"
is "event tls field (plain)" "$(events field plain tls)" none
is "event tls field (off: disabled)" "$(events field off tls)" none

# volley status: TLS and clear text per site.
grep -q 'tls/plain sessions  tls/plain delivered' "$T/status.txt" &&
	ok "status: the site table has the TLS columns" ||
	not_ok "status: the site table has the TLS columns" "$(cat "$T/status.txt")"
read -r ts tm <<<"$(awk '$1 == "tlssite" { print $7, $8 }' "$T/status.txt")"
case "${ts:-}" in
[1-9]*/0) ok "status: tlssite sessions all over TLS ($ts)" ;;
*) not_ok "status: tlssite sessions all over TLS" "$(cat "$T/status.txt")" ;;
esac
is "status: tlssite delivered 3 over TLS, 0 in clear text" "${tm:-}" 3/0
read -r ps pm <<<"$(awk '$1 == "plainsite" { print $7, $8 }' "$T/status.txt")"
is "status: plainsite sessions in clear text" "${ps:-}" 0/2
is "status: plainsite delivered 2 in clear text" "${pm:-}" 0/2

done_testing
