#!/usr/bin/env bash
# t_lab.sh - the test lab checks itself: redis (plain and AOF, restart keeps
# data), dnsmasq (MX, A, null MX, NXDOMAIN), smtp-sink (dumps per message,
# dot lines, -r/-f/-q fault flags), events.py and dumps.py. Needs no engine:
# when this fails, every other integration test's verdict is suspect.
. "$(dirname "$0")/../lib.sh"

# --- redis -------------------------------------------------------------------
start_redis --aof || bail "redis did not start"
ok "redis up on port $REDIS_PORT"
redis_cli SET lab:k v1 >/dev/null
redis_cli XADD volley:events '*' id j1 to a@d0.test status deferred code 450 >/dev/null
redis_cli XADD volley:events '*' id j1 to a@d0.test status delivered code 250 >/dev/null
redis_cli XADD volley:events '*' id j2 to b@d1.test status bounced code 550 enh 5.1.1 class invalid_recipient >/dev/null
redis_cli XADD volley:events '*' id j3 to 'c@d1.test' status failed reply 'no to, "quoted"' >/dev/null
stop_redis || bail "redis did not stop"
if redis_ping; then not_ok "redis stopped"; else ok "redis stopped"; fi
restart_redis || bail "redis did not restart"
is "AOF kept data across a restart" "$(redis_cli GET lab:k)" v1

is "events: count status=delivered" "$(events count status=delivered)" 1
is "events: jobs with a final bounce" "$(events jobs status=bounced)" 1
is "events: final of j1" "$(events final j1)" delivered
is "events: history of j1" "$(events history j1)" deferred,delivered
is "events: field enh of j2" "$(events field j2 enh)" 5.1.1
is "events: field of a non-final status" "$(events field j1 code deferred)" 450
is "events: unknown id" "$(events final nosuch)" none
check "events: check-final passes" events check-final --expect 3
redis_cli XADD volley:events '*' id j1 to a@d0.test status delivered >/dev/null
if events check-final >/dev/null; then
	not_ok "events: check-final sees a duplicate final event"
else
	ok "events: check-final sees a duplicate final event"
fi
check "events: --at-least-one tolerates it" events check-final --at-least-one
events summary | grep -q '^d1.test ' && ok "events: summary per domain" ||
	not_ok "events: summary per domain" "$(events summary)"

# --- dns ------------------------------------------------------------------------
start_dns \
	"$(dns_domain d0.test 127.0.1.1)" \
	"mx-host=two.test,mx1.two.test,10" "mx-host=two.test,mx2.two.test,20" \
	"host-record=mx1.two.test,127.0.1.9" "host-record=mx2.two.test,127.0.1.10" \
	"mx-host=nullmx.test,.,0" || bail "dnsmasq did not start"
ok "dnsmasq up on port $DNS_PORT"
is "MX of d0.test" "$(dns_query d0.test MX | tr '\n' ' ')" "NOERROR 10 mx.d0.test "
is "A of mx.d0.test" "$(dns_query mx.d0.test A | tr '\n' ' ')" "NOERROR 127.0.1.1 "
is "two MX records" "$(dns_query two.test MX | sort | tr '\n' ' ')" "10 mx1.two.test 20 mx2.two.test NOERROR "
is "null MX" "$(dns_query nullmx.test MX | tr '\n' ' ')" "NOERROR 0 . "
is "NXDOMAIN under .test" "$(dns_query nosuch.test MX | head -1)" NXDOMAIN
is "nothing outside .test is forwarded" "$(dns_query example.com A | head -1)" REFUSED

# --- smtp-sink ------------------------------------------------------------------
SINK_PORT=$(free_port)
start_smtp_sink 127.0.1.1 "$SINK_PORT" || bail "smtp-sink did not start"
start_smtp_sink 127.0.1.2 "$SINK_PORT" -r RCPT || bail "smtp-sink -r did not start"
start_smtp_sink 127.0.1.3 "$SINK_PORT" -f RCPT -B "550 5.1.1 User unknown" || bail "smtp-sink -f did not start"
start_smtp_sink 127.0.1.4 "$SINK_PORT" -q . || bail "smtp-sink -q did not start"
ok "four sinks on port $SINK_PORT"

eml=$T/m.eml
printf 'From: a@x.test\nTo: u@d0.test\nSubject: dots\n\nfirst\n.leading dot\n..\nbare LF next\r\nend\n' >"$eml"
sw() { smtp_send "$1" "$SINK_PORT" a@x.test "$2" "$eml" 2>&1; }

out=$(sw 127.0.1.1 u1@d0.test)
wait_for 5 test "$(sink_count 127.0.1.1)" = 1
is "sink dumped one message" "$(dumps count "$(sink_dir 127.0.1.1)")" 1
printf 'u1@d0.test\n' >"$T/want"
check "dumps: check-rcpts" dumps check-rcpts --expect "$T/want" "$(sink_dir 127.0.1.1)"
# swaks adds no X-Volley-Id: check-body must say so, and only that
out=$(dumps check-body --eml "$eml" "$(sink_dir 127.0.1.1)")
case "$out" in
*"no X-Volley-Id"*) case "$out" in *"body differs"*) not_ok "sink keeps the body byte-exact" "$out" ;;
	*) ok "sink keeps the body byte-exact (dot lines intact)" ;; esac ;;
*) not_ok "dumps: check-body flags a missing X-Volley-Id" "$out" ;;
esac
sed 's/^Subject: dots$/X-Volley-Id: 1-0\nSubject: dots/' "$eml" >"$T/m2.eml"
rm -f "$(sink_dir 127.0.1.1)"/*
smtp_send 127.0.1.1 "$SINK_PORT" a@x.test u2@d0.test "$T/m2.eml" >/dev/null
wait_for 5 test "$(sink_count 127.0.1.1)" = 1
check "dumps: check-body passes with X-Volley-Id" dumps check-body --eml "$eml" "$(sink_dir 127.0.1.1)"
is "dumps: ids" "$(dumps ids "$(sink_dir 127.0.1.1)")" "$(printf 'u2@d0.test\t1-0')"

out=$(sw 127.0.1.2 u@d0.test)
case "$out" in "450 "*) ok "-r RCPT answers 4xx" ;; *) not_ok "-r RCPT answers 4xx" "$out" ;; esac
out=$(sw 127.0.1.3 u@d0.test)
case "$out" in "550 5.1.1 User unknown"*) ok "-f RCPT -B answers 550 5.1.1" ;; *) not_ok "-f RCPT answers 550" "$out" ;; esac
out=$(sw 127.0.1.4 u@d0.test)
case "$out" in "error: SMTPServerDisconnected"*) ok "-q . hangs up after the dot" ;; *) not_ok "-q . hangs up after the dot" "$out" ;; esac
# and swaks is there for people poking at the lab by hand
swaks --version >/dev/null 2>&1 && ok "swaks present" || not_ok "swaks present"
is "nothing listens on a closed MX address" "$(is_listening 127.0.1.9 "$SINK_PORT" && echo yes || echo no)" no

# --- config ---------------------------------------------------------------------
write_config "$T/volley.conf"
grep -q "port = $SINK_PORT;" "$T/volley.conf" && grep -q "redis://127.0.0.1:$REDIS_PORT/0" "$T/volley.conf" &&
	grep -q "\"127.0.0.1:$DNS_PORT\"" "$T/volley.conf" && ok "write_config fills in the lab's ports" ||
	not_ok "write_config fills in the lab's ports" "$(cat "$T/volley.conf")"

done_testing
