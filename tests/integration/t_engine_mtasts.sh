#!/usr/bin/env bash
# t_engine_mtasts.sh - MTA-STS (RFC 8461) against real peers on loopback:
# dnsmasq serves the MX, A and _mta-sts TXT records; a Python HTTPS server
# (tests/peers/mtasts_https.py, certificate for every mta-sts.DOMAIN from a
# test CA that smtp.tls_ca_file trusts) serves the policies; volley-sink
# with a certificate from the same CA is the MX that offers STARTTLS.
#   (a) enforce, MX in the policy, STARTTLS: delivered over TLS, verified;
#   (b) enforce, the MX offers no STARTTLS: deferred tls_failure, nothing
#       sent in clear text (then expired);
#   (c) enforce, the MX is not in the policy: deferred tls_failure, no
#       connection (then expired);
#   (d) testing, MX not in the policy and no STARTTLS: delivered in clear
#       text, the log says what enforce would have done;
#   a policy served with the wrong Content-Type, and one behind a redirect:
#       no policy (delivered as without MTA-STS), the log says why;
#   the policy of a domain is fetched once while its TXT id stays (jobs
#       retried several times);
#   a policy host that accepts and never answers: after the 10 s fetch
#       time-out, no policy (delivered), the log says so;
#   SIGTERM while a fetch hangs: the engine stops cleanly, the job is not
#       lost (no final event, handed back to Redis);
#   (e) a second run with smtp.mta_sts off: no TXT query at all (dnsmasq
#       log) and the (b) domain is delivered in clear text as before;
#   (f) mta-sts.multi.test has two addresses, the first refusing
#       connections: the policy comes from the second (the log says so);
#   (g) short.test's policy (max_age 6) is refreshed in the background
#       once past half its age while its job is retried, never sent in
#       clear text meanwhile;
#   a domain without MTA-STS whose MX refuses connections, retried every
#       second: its TXT record is asked for once (the "no policy" answer is
#       remembered), not once per MX lookup;
#   (h) a restart with the policy server gone and smtp.mta_sts left at
#       its default (on): the policies stored in Redis (PREFIXmta_sts)
#       are loaded, and the (b) domain is still deferred, not sent in
#       clear text.
# Every job ends with exactly one final event.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink is not built ($SINK)"

start_redis || bail "redis did not start"
STS=127.0.2.1
sts_domain() {	# DOMAIN MX_ADDR: MX, its A, mta-sts.DOMAIN and the TXT record
	dns_domain "$1" "$2"
	echo "host-record=mta-sts.$1,$STS"
	echo "txt-record=_mta-sts.$1,\"v=STSv1; id=${3:-1}\""
}
start_dns "log-queries" \
	"$(sts_domain enf.test 127.0.1.1)" "$(sts_domain nostls.test 127.0.1.2)" \
	"$(sts_domain nomatch.test 127.0.1.1)" "$(sts_domain testing.test 127.0.1.2)" \
	"$(sts_domain ctype.test 127.0.1.2)" "$(sts_domain redir.test 127.0.1.2)" \
	"$(dns_domain nopol.test 127.0.1.2)" "$(STS=127.0.2.2 sts_domain hang.test 127.0.1.2)" \
	"host-record=mta-sts.multi.test,127.0.2.9" "$(sts_domain multi.test 127.0.1.1)" \
	"$(sts_domain short.test 127.0.1.2)" "$(dns_domain down.test 127.0.1.3)" ||
	bail "dnsmasq did not start"
SINK_PORT=$(free_port)
STS_PORT=$(free_port)

# A test CA; the MX sink's and the policy server's certificates from it.
ca_sign() {	# NAME SANS
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$1.key" \
		-out "$T/$1.csr" -subj "/CN=$1" >/dev/null 2>&1 &&
	printf 'subjectAltName=%s\n' "$2" >"$T/$1.ext" &&
	openssl x509 -req -in "$T/$1.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
		-days 2 -extfile "$T/$1.ext" -out "$T/$1.pem" >/dev/null 2>&1
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-keyout "$T/ca.key" -out "$T/ca.pem" -subj "/CN=volley test CA" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
	>/dev/null 2>&1 || bail "openssl: CA"
ca_sign mx "DNS:mx.enf.test,DNS:mx.nomatch.test,DNS:mx.multi.test" || bail "openssl: MX certificate"
ca_sign sts "DNS:mta-sts.enf.test,DNS:mta-sts.nostls.test,DNS:mta-sts.nomatch.test,DNS:mta-sts.testing.test,DNS:mta-sts.ctype.test,DNS:mta-sts.redir.test,DNS:mta-sts.multi.test,DNS:mta-sts.short.test" ||
	bail "openssl: policy server certificate"

mkdir -p "$T/sts"
printf 'version: STSv1\r\nmode: enforce\r\nmx: mx.enf.test\r\nmax_age: 86400\r\n' >"$T/sts/enf.test.txt"
printf 'version: STSv1\nmode: enforce\nmx: *.nostls.test\nmax_age: 86400\n' >"$T/sts/nostls.test.txt"
printf 'version: STSv1\nmode: enforce\nmx: *.elsewhere.test\nmx: mail.nomatch.test\nmax_age: 86400\n' >"$T/sts/nomatch.test.txt"
printf 'version: STSv1\nmode: testing\nmx: *.elsewhere.test\nmax_age: 86400\n' >"$T/sts/testing.test.txt"
printf 'version: STSv1\nmode: enforce\nmx: *.elsewhere.test\nmax_age: 86400\n' >"$T/sts/ctype.test.txt"
echo "text/html" >"$T/sts/ctype.test.ctype"
printf 'version: STSv1\nmode: enforce\nmx: mx.multi.test\nmax_age: 86400\n' >"$T/sts/multi.test.txt"
printf 'version: STSv1\nmode: enforce\nmx: mx.short.test\nmax_age: 6\n' >"$T/sts/short.test.txt"
echo "https://mta-sts.enf.test:$STS_PORT/.well-known/mta-sts.txt" >"$T/sts/redir.test.redirect"

"$PY" "$ROOT/tests/peers/mtasts_https.py" "$STS" "$STS_PORT" "$T/sts.pem" "$T/sts.key" \
	"$T/sts" "$T/https.log" >"$T/https.err" 2>&1 &
HTTPS_PID=$!
LAB_PIDS+=("$HTTPS_PID")
wait_listen "$STS" "$STS_PORT" 10 || bail "policy server" "$(cat "$T/https.err")"
# A policy host that accepts connections and never says a word.
"$PY" -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.2.2", int(sys.argv[1]))); s.listen(16); held = []
while True: held.append(s.accept())' "$STS_PORT" >/dev/null 2>&1 &
LAB_PIDS+=("$!")
wait_listen 127.0.2.2 "$STS_PORT" 10 || bail "silent policy host"
start_volley_sink 127.0.1.1 "$SINK_PORT" --tls-cert "$T/mx.pem" --tls-key "$T/mx.key" ||
	bail "TLS sink"
start_volley_sink 127.0.1.2 "$SINK_PORT" || bail "plain sink"

CFG_RETRY='[1s]' CFG_MAX_AGE=60s \
CFG_SMTP_EXTRA="  tls_ca_file = \"$T/ca.pem\"; idle = 1s; mta_sts = true; mta_sts_port = $STS_PORT;" \
	write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: sts\r\n\r\nbody\r\n' >"$T/msg.eml"

soon=$(($(date +%s) + 8))
add_job() {	# ID TO [EXPIRES_AT]
	local args=(XADD volley:jobs '*' id "$1" to "$2" from f@sender.test)
	[ -n "${3:-}" ] && args+=(expires_at "$3")
	redis_cli -x "${args[@]}" msg <"$T/msg.eml" >/dev/null
}
add_job enf1 a@enf.test
add_job enf2 b@enf.test
add_job nostls c@nostls.test "$soon"
add_job nomatch d@nomatch.test "$soon"
add_job testing e@testing.test
add_job ctype f@ctype.test
add_job redir g@redir.test
add_job nopol h@nopol.test
add_job hang j@hang.test
add_job multi l@multi.test
add_job short m@short.test "$soon"
add_job down o@down.test "$soon"
N=12

VOLLEY_LOG=debug bg_volley "$T/run.log" run -c "$T/volley.conf"
wait_for 60 events check-final --expect $N ||
	{ show_log "$T/run.log" 40; bail "not every job ended" "$(events summary)"; }
kill -TERM "$VOLLEY_PID" 2>/dev/null
wait_pid "$VOLLEY_PID" 20
is "the engine stopped cleanly" "$WAIT_RC" 0

check "every job has exactly one final event" events check-final --expect $N

captured_tls() {	# RCPT ADDR: the X-Sink-TLS header of RCPT's capture
	local f
	f=$(grep -l "^X-Sink-Rcpt-To: <$1>" "$(sink_dir "$2")"/*.eml 2>/dev/null | head -1)
	[ -n "$f" ] || { echo "not captured"; return; }
	sed -n 's/^X-Sink-TLS: \([a-z]*\)\r$/\1/p' "$f"
}
like_reply() { case "$(events field "$1" reply deferred)" in *"$2"*) ok "$1: reply says '$2'" ;;
	*) not_ok "$1: reply says '$2'" "$(events field "$1" reply deferred)" ;; esac; }
logged() {	# DESC PATTERN
	grep -qE "$2" "$T/run.log" && ok "$1" || not_ok "$1" "$(grep mtasts "$T/run.log" | head -10)"
}

# (a)
is "enf1: delivered" "$(events history enf1)" delivered
is "enf2: delivered" "$(events history enf2)" delivered
is "enf1: over TLS (sink capture)" "$(captured_tls a@enf.test 127.0.1.1)" yes
logged "enf: policy fetched and logged" 'mtasts: policy domain=enf.test id=1 mode=enforce max_age=86400 mx="mx.enf.test"'
logged "enf: the session verified the MX certificate (policy verify)" \
	'tls established .*mx="mx.enf.test" policy=verify .*verify=0 '
# (b)
is "nostls: first event deferred" "$(events history nostls | cut -d, -f1)" deferred
is "nostls: class tls_failure" "$(events field nostls class deferred)" tls_failure
like_reply nostls "does not offer STARTTLS"
is "nostls: nothing sent in clear text" "$(captured_tls c@nostls.test 127.0.1.2)" "not captured"
is "nostls: ends expired" "$(events final nostls)" expired
# (c)
is "nomatch: class tls_failure" "$(events field nomatch class deferred)" tls_failure
like_reply nomatch "MTA-STS policy of nomatch.test: mode enforce: no MX host matches"
like_reply nomatch '(MX: "mx.nomatch.test"; policy mx: *.elsewhere.test, mail.nomatch.test)'
is "nomatch: nothing captured" "$(captured_tls d@nomatch.test 127.0.1.1)" "not captured"
is "nomatch: ends expired" "$(events final nomatch)" expired
grep -q 'peer=127.0.1.1:[0-9]* mx="mx.nomatch.test"' "$T/run.log" &&
	not_ok "nomatch: no connection to the MX outside the policy" ||
	ok "nomatch: no connection to the MX outside the policy"
# (d)
is "testing: delivered" "$(events history testing)" delivered
is "testing: in clear text" "$(captured_tls e@testing.test 127.0.1.2)" no
logged "testing: the log says what enforce would do" \
	'mtasts: testing dest=.*testing.test: enforce would skip MX "mx.testing.test" \(not in the policy\) and require verified TLS'
# bad policies: no policy
is "ctype: delivered (policy refused: not text/plain)" "$(events history ctype)" delivered
logged "ctype: the log says why" 'policy fetch failed domain=ctype.test id=1: Content-Type "text/html", not text/plain; no policy'
is "redir: delivered (3xx not followed)" "$(events history redir)" delivered
logged "redir: the log says why" 'policy fetch failed domain=redir.test id=1: HTTP status 301 \(redirects are not followed\)'
is "redir: the redirect target was not fetched for it" \
	"$(grep -c '^mta-sts.enf.test' "$T/https.log")" 1
is "nopol (no TXT): delivered" "$(events history nopol)" delivered
is "hang: delivered (the fetch timed out: no policy)" "$(events history hang)" delivered
logged "hang: the log says the fetch timed out" 'policy fetch failed domain=hang.test id=1: timed out \(127.0.2.2\); no policy'
# (f)
is "multi: delivered" "$(events history multi)" delivered
is "multi: over TLS (policy enforced)" "$(captured_tls l@multi.test 127.0.1.1)" yes
logged "multi: the refusing address was tried, then the next one" \
	'policy fetch domain=multi.test from 127.0.2.9 failed: connect: Connection refused; trying the next address'
logged "multi: policy fetched from the second address" 'mtasts: policy domain=multi.test id=1 mode=enforce'
# (g)
is "short: never sent in clear text" "$(captured_tls m@short.test 127.0.1.2)" "not captured"
is "short: ends expired" "$(events final short)" expired
is "short: every attempt deferred tls_failure" \
	"$(events history short | tr , '\n' | grep -v -c -e deferred -e expired)" 0
logged "short: refreshed in the background past half its max_age" \
	'refreshing policy domain=short.test id=1 \(past half its max_age\) in the background'
n=$(grep -c '^mta-sts.short.test' "$T/https.log")
[ "$n" -ge 2 ] && ok "short: its policy fetched again ($n fetches)" || not_ok "short: its policy fetched again" "$n"
# no policy: one TXT query, however many MX lookups
n=$(events history down | tr , '\n' | grep -c deferred)
[ "$n" -ge 3 ] && ok "down: tried $n times" || not_ok "down: tried several times" "$n"
is "down: ends expired" "$(events final down)" expired
is "down: one TXT query for all its attempts" "$(grep -c 'query\[TXT\] _mta-sts.down.test' "$T/dnsmasq.log")" 1
# the cache
n=$(events history nostls | tr , '\n' | grep -c deferred)
[ "$n" -ge 2 ] && ok "nostls was tried $n times" || not_ok "nostls was tried several times" "$n"
is "nostls: its policy fetched once" "$(grep -c '^mta-sts.nostls.test' "$T/https.log")" 1

# (e) smtp.mta_sts off: no TXT query, delivered as before.
redis_cli DEL volley:events >/dev/null
q0=$(grep -c 'query\[TXT\]' "$T/dnsmasq.log")
[ "$q0" -ge 1 ] && ok "run 1 queried TXT records ($q0)" || not_ok "run 1 queried TXT records"
CFG_RETRY='[1s]' CFG_MAX_AGE=60s CFG_SMTP_EXTRA="  idle = 1s; mta_sts = false;" write_config "$T/off.conf"
add_job off1 i@nostls.test
VOLLEY_LOG=debug bg_volley "$T/run2.log" run -c "$T/off.conf"
wait_for 30 events check-final --expect 1 ||
	{ show_log "$T/run2.log" 30; bail "off1 did not end" "$(events summary)"; }
kill -TERM "$VOLLEY_PID" 2>/dev/null
wait_pid "$VOLLEY_PID" 20
check "off1: exactly one final event" events check-final --expect 1
is "off1: delivered" "$(events history off1)" delivered
is "off1: in clear text" "$(captured_tls i@nostls.test 127.0.1.2)" no
is "mta_sts off: no TXT query" "$(grep -c 'query\[TXT\]' "$T/dnsmasq.log")" "$q0"
grep -q ' mtasts: ' "$T/run2.log" && not_ok "mta_sts off: nothing logged by mtasts" || ok "mta_sts off: nothing logged by mtasts"

# SIGTERM while a policy fetch hangs (a new id: the cached policy does not
# apply; the TXT answer is cached, so a new domain).
redis_cli DEL volley:events >/dev/null
CFG_RETRY='[1s]' CFG_MAX_AGE=60s \
CFG_SMTP_EXTRA="  tls_ca_file = \"$T/ca.pem\"; mta_sts = true; mta_sts_port = $STS_PORT;" \
	write_config "$T/hang.conf"
add_job hang2 k@hang.test
VOLLEY_LOG=debug bg_volley "$T/run3.log" run -c "$T/hang.conf"
wait_for 20 grep -q 'fetching policy domain=hang.test' "$T/run3.log" || not_ok "run 3 started the fetch"
sleep 1
kill -TERM "$VOLLEY_PID" 2>/dev/null
wait_pid "$VOLLEY_PID" 30
is "SIGTERM during a hanging fetch: clean exit" "$WAIT_RC" 0
is "hang2: no final event (handed back, not lost)" "$(events jobs)" 0
[ "$(xpending_count)" -ge 1 ] && ok "hang2: still pending in Redis" ||
	not_ok "hang2: still pending in Redis" "$(xpending_count)"

# (h) restart, the policy server gone, smtp.mta_sts at its default.
kill "$HTTPS_PID" 2>/dev/null
wait_for 10 sh -c "! kill -0 $HTTPS_PID 2>/dev/null"
stored=$(redis_cli HGET volley:mta_sts nostls.test)
case "$stored" in
"1 "[0-9]*" version: STSv1"*"mode: enforce"*"mx: *.nostls.test"*) ok "nostls: policy stored in Redis" ;;
*) not_ok "nostls: policy stored in Redis" "$stored" ;;
esac
redis_cli DEL volley:events >/dev/null
CFG_RETRY='[1s]' CFG_MAX_AGE=60s \
CFG_SMTP_EXTRA="  tls_ca_file = \"$T/ca.pem\"; idle = 1s; mta_sts_port = $STS_PORT;" \
	write_config "$T/restart.conf"
rm -f "$(sink_dir 127.0.1.2)"/*.eml
add_job restart1 n@nostls.test "$(($(date +%s) + 4))"
VOLLEY_LOG=debug bg_volley "$T/run4.log" run -c "$T/restart.conf"
wait_for 30 events check-final --expect 1 ||
	{ show_log "$T/run4.log" 30; bail "restart1 did not end" "$(events summary)"; }
kill -TERM "$VOLLEY_PID" 2>/dev/null
wait_pid "$VOLLEY_PID" 20
is "restart: clean exit" "$WAIT_RC" 0
check "restart1: exactly one final event" events check-final --expect 1
grep -q 'mtasts: [0-9]* stored policy(ies) loaded' "$T/run4.log" && ok "restart: stored policies loaded" ||
	not_ok "restart: stored policies loaded" "$(grep mtasts "$T/run4.log" | head)"
is "restart1: first event deferred" "$(events history restart1 | cut -d, -f1)" deferred
is "restart1: class tls_failure" "$(events field restart1 class deferred)" tls_failure
is "restart1: not sent in clear text" "$(captured_tls n@nostls.test 127.0.1.2)" "not captured"
is "restart1: ends expired" "$(events final restart1)" expired
grep -q 'fetching policy domain=nostls.test' "$T/run4.log" &&
	not_ok "restart: the stored policy was used, no fetch waited for" ||
	ok "restart: the stored policy was used, no fetch waited for"

done_testing
