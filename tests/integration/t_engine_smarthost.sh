#!/usr/bin/env bash
# t_engine_smarthost.sh - mail relayed through a `smarthost` with AUTH, to
# volley-sink playing the provider. No recipient domain has any DNS record
# at all (dnsmasq knows only the relay host names, every other .test name
# is NXDOMAIN), so a delivery proves the MX lookup was skipped.
#   STARTTLS (verified: smtp.tls_ca_file trusts the sink's certificate for
#     smtp.relay.test) + AUTH PLAIN: delivered over TLS, the sink's capture
#     says X-Sink-Auth: u;
#   the same with AUTH LOGIN: delivered, X-Sink-Auth: u;
#   implicit TLS (volley-sink --tls-implicit, smtps.relay.test), AUTH as
#     offered: delivered over TLS as u;
#   an IP literal host (no lookup), password_file: delivered as u;
#   a wrong password: deferred, class auth_failure, nothing captured, the
#     recipient not suppressed, the lane of smarthost:wrongpw closed (short
#     closures here); one job ends expired (expires_at), another is
#     delivered after the password is fixed and the engine reloaded (SIGHUP);
#   neither password appears in the engine log nor in the event stream.
# Every job ends with exactly one final event.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink is not built ($SINK)"

start_redis || bail "redis did not start"
start_dns "host-record=smtp.relay.test,127.0.1.1" "host-record=smtps.relay.test,127.0.1.2" ||
	bail "dnsmasq did not start"
SINK_PORT=$(free_port)
GOOD='Gd-pw_4xQ7zv'
BAD='Bd-pw_9kR2mw'

is "the recipient domains have no MX record (NXDOMAIN)" "$(dns_query plain.test MX)" NXDOMAIN
is "... nor an address" "$(dns_query plain.test A)" NXDOMAIN

# One certificate for both relay names (and the literal's address).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-keyout "$T/key.pem" -out "$T/cert.pem" -subj "/CN=smtp.relay.test" \
	-addext "subjectAltName=DNS:smtp.relay.test,DNS:smtps.relay.test,IP:127.0.1.1" \
	>/dev/null 2>&1 || bail "openssl req failed"

start_volley_sink 127.0.1.1 "$SINK_PORT" --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" \
	--auth "u:$GOOD" -v || bail "STARTTLS sink"
start_volley_sink 127.0.1.2 "$SINK_PORT" --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" \
	--tls-implicit --auth "u:$GOOD" -v || bail "implicit TLS sink"
printf '%s\n' "$GOOD" >"$T/relay.pass"
chmod 600 "$T/relay.pass"

# smarthosts PW_OF_BAD: the relay blocks; "wrongpw" uses PW_OF_BAD.
smarthosts() {
	cat <<EOF
smarthost "plain" { host = "smtp.relay.test"; port = $SINK_PORT; tls = "starttls";
  user = "u"; password = "$GOOD"; auth = "plain"; }
smarthost "login" { host = "smtp.relay.test"; port = $SINK_PORT; tls = "starttls";
  user = "u"; password = "$GOOD"; auth = "login"; }
smarthost "smtps" { host = "smtps.relay.test"; port = $SINK_PORT; tls = "implicit";
  user = "u"; password = "$GOOD"; }
smarthost "literal" { host = "127.0.1.1"; port = $SINK_PORT; verify = false;
  user = "u"; password_file = "$T/relay.pass"; }
smarthost "wrongpw" { host = "smtp.relay.test"; port = $SINK_PORT; tls = "starttls";
  user = "u"; password = "$1"; }
domain "plain.test" { smarthost = "plain"; }
domain "login.test" { smarthost = "login"; }
domain "smtps.test" { smarthost = "smtps"; }
domain "literal.test" { smarthost = "literal"; }
domain "wrong.test" { smarthost = "wrongpw"; }
domain "fixed.test" { smarthost = "wrongpw"; }
shaping { close_time = 2s; max_close_time = 4s; resume_spread = 1s; }
EOF
}
CFG_RETRY='[2s]' CFG_MAX_AGE=120s \
CFG_SMTP_EXTRA="  tls_ca_file = \"$T/cert.pem\"; idle = 1s;" \
CFG_EXTRA="$(smarthosts "$BAD")" write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: relayed\r\n\r\nbody\r\n' >"$T/msg.eml"

soon=$(($(date +%s) + 10))
# add_job ID TO [EXPIRES_AT]
add_job() {
	local args=(XADD volley:jobs '*' id "$1" to "$2" from f@sender.test)
	[ -n "${3:-}" ] && args+=(expires_at "$3")
	redis_cli -x "${args[@]}" msg <"$T/msg.eml" >/dev/null
}
add_job plain1 a@plain.test
add_job plain2 b@plain.test
add_job login1 c@login.test
add_job smtps1 d@smtps.test
add_job literal1 e@literal.test
add_job wrong1 f@wrong.test "$soon"
add_job fixed1 g@fixed.test
N=7

VOLLEY_LOG=debug bg_volley "$T/run.log" run -c "$T/volley.conf"
# all_final ID...: each has a final event
all_final() {
	local id
	for id in "$@"; do [ "$(events final "$id")" != none ] || return 1; done
}
wait_for 40 all_final plain1 plain2 login1 smtps1 literal1 wrong1 ||
	{ show_log "$T/run.log" 40; bail "the jobs did not end" "$(events summary)"; }
is "fixed1: deferred so far (wrong password)" "$(events final fixed1)" none
is "fixed1: class auth_failure" "$(events field fixed1 class deferred)" auth_failure
# Fix the password and reload: the held job goes through.
CFG_RETRY='[2s]' CFG_MAX_AGE=120s \
CFG_SMTP_EXTRA="  tls_ca_file = \"$T/cert.pem\"; idle = 1s;" \
CFG_EXTRA="$(smarthosts "$GOOD")" write_config "$T/volley.conf"
kill -HUP "$VOLLEY_PID"
wait_for 40 events check-final --expect $N ||
	{ show_log "$T/run.log" 40; not_ok "fixed1 ended after the reload" "$(events summary)"; }
kill -TERM "$VOLLEY_PID" 2>/dev/null
wait_pid "$VOLLEY_PID" 20

check "every job has exactly one final event" events check-final --expect $N

# capture RCPT ADDR HEADER: that X-Sink header of RCPT's capture on the sink at ADDR
capture() {
	local f
	f=$(grep -l "^X-Sink-Rcpt-To: <$1>" "$(sink_dir "$2")"/*.eml 2>/dev/null | head -1)
	[ -n "$f" ] || { echo "not captured"; return; }
	sed -n "s/^X-Sink-$3: \\(.*\\)\\r\$/\\1/p" "$f"
}
for j in plain1:a@plain.test plain2:b@plain.test login1:c@login.test literal1:e@literal.test \
    fixed1:g@fixed.test; do
	id=${j%%:*} to=${j#*:}
	is "$id: delivered" "$(events final "$id")" delivered
	is "$id: over TLS (STARTTLS sink)" "$(capture "$to" 127.0.1.1 TLS)" yes
	is "$id: the sink saw AUTH as u" "$(capture "$to" 127.0.1.1 Auth)" u
done
is "smtps1: delivered" "$(events final smtps1)" delivered
is "smtps1: over TLS (implicit TLS sink)" "$(capture d@smtps.test 127.0.1.2 TLS)" yes
is "smtps1: the sink saw AUTH as u" "$(capture d@smtps.test 127.0.1.2 Auth)" u
grep -q 'AUTH PLAIN as u: ok' "$T/volley-sink-127.0.1.1.log" && ok "the sink logged AUTH PLAIN" ||
	not_ok "the sink logged AUTH PLAIN" "$(grep AUTH "$T/volley-sink-127.0.1.1.log" | head -3)"
grep -q 'AUTH LOGIN as u: ok' "$T/volley-sink-127.0.1.1.log" && ok "the sink logged AUTH LOGIN" ||
	not_ok "the sink logged AUTH LOGIN" "$(grep AUTH "$T/volley-sink-127.0.1.1.log" | head -3)"
is "the engine connected to the relay, not to an MX: mx of plain1" \
	"$(events field plain1 mx)" smtp.relay.test

# the wrong password
is "wrong1: first event deferred" "$(events history wrong1 | cut -d, -f1)" deferred
is "wrong1: class auth_failure" "$(events field wrong1 class deferred)" auth_failure
case "$(events field wrong1 reply deferred)" in
*535*) ok "wrong1: the reply is the relay's 535" ;;
*) not_ok "wrong1: the reply is the relay's 535" "$(events field wrong1 reply deferred)" ;;
esac
is "wrong1: ends expired" "$(events final wrong1)" expired
is "wrong1: nothing captured" "$(capture f@wrong.test 127.0.1.1 TLS)" "not captured"
grep -q 'AUTH PLAIN as u: failed' "$T/volley-sink-127.0.1.1.log" && ok "the sink refused the login" ||
	not_ok "the sink refused the login" "$(grep AUTH "$T/volley-sink-127.0.1.1.log" | head -3)"
is "no recipient suppressed" "$(redis_cli SCARD volley:suppressed)" 0
grep -q 'lane=0.0.0.0/smarthost:wrongpw action=closed' "$T/run.log" &&
	ok "the refused logins closed the relay's lane" ||
	not_ok "the refused logins closed the relay's lane" "$(grep 'smarthost:wrongpw' "$T/run.log" | head -3)"
is "fixed1: deferred before the fix, then delivered" \
	"$(events history fixed1 | tr ',' '\n' | sort -u | tr '\n' ' ')" "deferred delivered "

# secrets
for pw in "$GOOD" "$BAD"; do
	grep -qF -- "$pw" "$T/run.log" && not_ok "a password is in the engine log" \
		"$(grep -nF -- "$pw" "$T/run.log" | head -3)" || ok "a password is not in the engine log"
	events json | grep -qF -- "$pw" && not_ok "a password is in the events" ||
		ok "a password is not in the events"
done

done_testing
