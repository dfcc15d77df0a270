#!/usr/bin/env bash
# t_engine_dane.sh - DANE for SMTP (RFC 7672) against real peers on loopback.
# The resolver is tests/peers/dane_dns.py (it sets the AD bit per name, as a
# validating resolver would); the MX hosts are volley-sinks, one with STARTTLS
# and a certificate made here, one without STARTTLS. With dns.dnssec = true:
#   (a) ok.test: TLSA 3 1 1 of the sink's key, every answer AD: delivered over
#       TLS, the log says policy=dane and DANE verified;
#   (b) bad.test: TLSA 3 1 1 that matches nothing: deferred tls_failure,
#       nothing reached the sink (no clear-text fallback), then expired;
#   (c) notls.test: TLSA present, the sink offers no STARTTLS: deferred
#       tls_failure, nothing sent, expired;
#   (d) insecure.test: the same wrong TLSA, but no answer has AD: DANE is not
#       applied (no TLSA query at all), delivered opportunistically;
#   (d2) tlsanoad.test: MX and A with AD, the TLSA answer without: DANE not
#       applied, delivered;
#   (f) fail.test: TLSA SERVFAIL for an AD MX host: deferred dns_failure,
#       nothing sent, expired;
#   every query asks for AD (the AD bit in the query).
# Then with dns.dnssec off (a second engine run):
#   (e) off.test: a wrong TLSA with AD: no TLSA query is sent, delivered.
# Every job ends with exactly one final event.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink is not built ($SINK)"

start_redis || bail "redis did not start"
SINK_PORT=$(free_port)
DNS_PORT=$(free_port)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-keyout "$T/key.pem" -out "$T/cert.pem" -subj "/CN=sink.dane.test" \
	>/dev/null 2>&1 || bail "openssl req failed"
# 3 1 1: SHA-256 of the certificate's SubjectPublicKeyInfo
SPKI=$(openssl x509 -in "$T/cert.pem" -noout -pubkey | openssl pkey -pubin -outform DER |
	openssl dgst -sha256 -hex | sed 's/^.*= *//')
[ ${#SPKI} = 64 ] || bail "cannot hash the sink's key" "$SPKI"
WRONG=$(printf 'not the key' | openssl dgst -sha256 -hex | sed 's/^.*= *//')

start_volley_sink 127.0.1.1 "$SINK_PORT" --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" ||
	bail "TLS sink"
start_volley_sink 127.0.1.2 "$SINK_PORT" || bail "plain sink"

# zone D AD ADDR TLSA_JSON [MX_AD [TLSA_AD [SERVFAIL]]]: the JSON lines for
# D with MX mx.D at ADDR and TLSA on mx.D
zone() {
	local d=$1 ad=$2 addr=$3 tlsa=$4 tad=${5:-$2} sf=${6:-}
	printf '"%s": {"ad": %s, "MX": [[10, "mx.%s"]]},\n' "$d" "$ad" "$d"
	printf '"mx.%s": {"ad": %s, "A": ["%s"]},\n' "$d" "$ad" "$addr"
	printf '"_%s._tcp.mx.%s": {"ad": %s, "TLSA": %s, "servfail": [%s]},\n' \
		"$SINK_PORT" "$d" "$tad" "$tlsa" "$sf"
}
{
	echo "{"
	zone ok.test true 127.0.1.1 "[[3, 1, 1, \"$SPKI\"], [1, 1, 1, \"$WRONG\"]]"
	zone bad.test true 127.0.1.1 "[[3, 1, 1, \"$WRONG\"]]"
	zone notls.test true 127.0.1.2 "[[3, 1, 1, \"$SPKI\"]]"
	zone insecure.test false 127.0.1.1 "[[3, 1, 1, \"$WRONG\"]]"
	zone tlsanoad.test true 127.0.1.1 "[[3, 1, 1, \"$WRONG\"]]" false
	zone fail.test true 127.0.1.1 "[]" true '"TLSA"'
	zone off.test true 127.0.1.1 "[[3, 1, 1, \"$WRONG\"]]"
	echo '"nx_ad": true}'
} >"$T/zone.json"
"$PY" -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/zone.json" || bail "bad zone JSON"
"$PY" "$ROOT/tests/peers/dane_dns.py" 127.0.0.1 "$DNS_PORT" "$T/zone.json" "$T/dns.log" \
	>"$T/dns.err" 2>&1 &
LAB_PIDS+=("$!")
wait_for 10 "$PY" "$LAB_DIR/dnsq.py" 127.0.0.1 "$DNS_PORT" ok.test MX ||
	bail "the DNS responder did not answer" "$(cat "$T/dns.err")"
: >"$T/dns.log"	# the probe above asked without AD

CFG_RETRY='[1s]' CFG_MAX_AGE=60s CFG_SMTP_EXTRA='  idle = 1s;' write_config "$T/on.conf"
sed -i 's/allow_private = true;.*/&\n  dnssec = true;/' "$T/on.conf"
grep -q 'dnssec = true' "$T/on.conf" || bail "config edit failed"
CFG_RETRY='[1s]' CFG_MAX_AGE=60s CFG_SMTP_EXTRA='  idle = 1s;' write_config "$T/off.conf"
"$VOLLEY" check-config -c "$T/on.conf" >/dev/null || bail "check-config rejects dns.dnssec"
printf 'From: f@sender.test\r\nSubject: dane\r\n\r\nbody\r\n' >"$T/msg.eml"

soon=$(($(date +%s) + 8))
# add_job ID TO [EXPIRES_AT]
add_job() {
	local args=(XADD volley:jobs '*' id "$1" to "$2" from f@sender.test)
	[ -n "${3:-}" ] && args+=(expires_at "$3")
	redis_cli -x "${args[@]}" msg <"$T/msg.eml" >/dev/null
}
add_job ok a@ok.test
add_job bad b@bad.test "$soon"
add_job notls c@notls.test "$soon"
add_job insecure d@insecure.test
add_job tlsanoad e@tlsanoad.test
add_job fail f@fail.test "$soon"
N=6

VOLLEY_LOG=debug bg_volley "$T/run.log" run -c "$T/on.conf"
wait_for 60 events check-final --expect $N ||
	{ show_log "$T/run.log" 40; bail "not every job ended" "$(events summary)"; }
kill -TERM "$VOLLEY_PID" 2>/dev/null
wait_pid "$VOLLEY_PID" 20

# dnssec off: a second run
add_job off g@off.test
N=$((N + 1))
cp "$T/dns.log" "$T/dns-on.log"
VOLLEY_LOG=debug bg_volley "$T/run-off.log" run -c "$T/off.conf"
wait_for 30 events check-final --expect $N ||
	{ show_log "$T/run-off.log" 40; bail "off: the job did not end" "$(events summary)"; }
kill -TERM "$VOLLEY_PID" 2>/dev/null
wait_pid "$VOLLEY_PID" 20

check "every job has exactly one final event" events check-final --expect $N

# captured_tls RCPT ADDR: the X-Sink-TLS header of RCPT's capture
captured_tls() {
	local f
	f=$(grep -l "^X-Sink-Rcpt-To: <$1>" "$(sink_dir "$2")"/*.eml 2>/dev/null | head -1)
	[ -n "$f" ] || { echo "not captured"; return; }
	sed -n 's/^X-Sink-TLS: \([a-z]*\)\r$/\1/p' "$f"
}
like_reply() { case "$(events field "$1" reply deferred)" in *"$2"*) ok "$1: reply says '$2'" ;;
	*) not_ok "$1: reply says '$2'" "$(events field "$1" reply deferred)" ;; esac; }
asked() { grep -c "^$1 $2 " "$T/dns-on.log"; }

# (a)
is "ok: delivered" "$(events history ok)" delivered
is "ok: over TLS (sink capture)" "$(captured_tls a@ok.test 127.0.1.1)" yes
grep -q 'tls established .*mx="mx.ok.test" policy=dane .*dane="verified usage=3 selector=1 mtype=1 depth=0"' \
	"$T/run.log" && ok "ok: the log says DANE verified (3 1 1)" ||
	not_ok "ok: the log says DANE verified (3 1 1)" "$(grep 'mx.ok.test' "$T/run.log" | head -5)"
grep -q 'dane .*mx="mx.ok.test" tlsa="1 usable of 2 (3 1 1, 1 1 1)" policy=opportunistic -> dane' \
	"$T/run.log" && ok "ok: PKIX-EE (1) is not usable, DANE-EE (3) is" ||
	not_ok "ok: PKIX-EE (1) is not usable, DANE-EE (3) is" "$(grep 'dane ' "$T/run.log" | head -5)"

# (b)
is "bad: first event deferred" "$(events history bad | cut -d, -f1)" deferred
is "bad: class tls_failure" "$(events field bad class deferred)" tls_failure
like_reply bad "TLSA"
is "bad: nothing reached the sink" "$(captured_tls b@bad.test 127.0.1.1)" "not captured"
is "bad: ends expired" "$(events final bad)" expired

# (c)
is "notls: class tls_failure" "$(events field notls class deferred)" tls_failure
like_reply notls "does not offer STARTTLS"
is "notls: nothing reached the sink" "$(captured_tls c@notls.test 127.0.1.2)" "not captured"
is "notls: ends expired" "$(events final notls)" expired

# (d), (d2)
is "insecure: delivered" "$(events history insecure)" delivered
is "insecure: no TLSA query (the MX answer had no AD)" "$(asked "_$SINK_PORT._tcp.mx.insecure.test" TLSA)" 0
grep -q 'tls established .*mx="mx.insecure.test" policy=opportunistic' "$T/run.log" &&
	ok "insecure: opportunistic TLS" || not_ok "insecure: opportunistic TLS" "$(grep insecure "$T/run.log" | head)"
is "tlsanoad: delivered" "$(events history tlsanoad)" delivered
[ "$(asked "_$SINK_PORT._tcp.mx.tlsanoad.test" TLSA)" -ge 1 ] && ok "tlsanoad: its TLSA was asked" || not_ok "tlsanoad: its TLSA was asked"
grep -q 'tls established .*mx="mx.tlsanoad.test" policy=opportunistic' "$T/run.log" &&
	ok "tlsanoad: TLSA without AD is not used" ||
	not_ok "tlsanoad: TLSA without AD is not used" "$(grep tlsanoad "$T/run.log" | head)"

# (f)
is "fail: class dns_failure" "$(events field fail class deferred)" dns_failure
like_reply fail "TLSA lookup for _$SINK_PORT._tcp.mx.fail.test failed"
is "fail: nothing reached the sink" "$(captured_tls f@fail.test 127.0.1.1)" "not captured"
is "fail: ends expired" "$(events final fail)" expired

# every query of the dnssec run asked for AD
is "dnssec on: every query has the AD bit" "$(grep -vc ' ad=1$' "$T/dns-on.log")" 0

# (e)
is "off: delivered" "$(events history off)" delivered
is "off: no TLSA query with dnssec off" "$(grep -c 'TLSA' <(tail -n +"$(($(wc -l <"$T/dns-on.log") + 1))" "$T/dns.log"))" 0
is "off: its MX was asked (without AD)" "$(grep -c '^off.test MX ad=0$' "$T/dns.log")" 1
grep -q 'tls established .*mx="mx.off.test" policy=opportunistic' "$T/run-off.log" &&
	ok "off: opportunistic TLS" || not_ok "off: opportunistic TLS" "$(grep off.test "$T/run-off.log" | head)"

done_testing
