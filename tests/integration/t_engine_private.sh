#!/usr/bin/env bash
# t_engine_private.sh - dns.allow_private: with it false (the default), a
# destination whose MX resolves only to loopback addresses - directly (A)
# or as an IPv4-mapped IPv6 address (AAAA ::ffff:127.x) - is deferred with
# class dns_failure and a reason that names the host, the refused address
# and the setting; nothing reaches its server; each job gets exactly one
# final event. With allow_private = true the same destinations deliver
# (the mapped address is used as the IPv4 address it carries).
. "$(dirname "$0")/../lib.sh"
need_volley

start_redis || bail "redis did not start"
start_dns \
	"$(dns_domain priv.test 127.0.1.70)" \
	"mx-host=mapped.test,mx.mapped.test,10" "host-record=mx.mapped.test,::ffff:127.0.1.71" ||
	bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink 127.0.1.70 "$SINK_PORT" || bail "volley-sink (priv) did not start"
start_volley_sink 127.0.1.71 "$SINK_PORT" || bail "volley-sink (mapped) did not start"

CFG_RETRY='[1s]' write_config "$T/allow.conf"
grep -q 'allow_private = true' "$T/allow.conf" || bail "write_config no longer sets allow_private"
sed 's/allow_private = true;/allow_private = false;/' "$T/allow.conf" >"$T/deny.conf"
grep -q 'allow_private = false' "$T/deny.conf" || bail "could not turn allow_private off"
"$VOLLEY" check-config -c "$T/deny.conf" >/dev/null ||
	bail "config: $("$VOLLEY" check-config -c "$T/deny.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: private\r\n\r\nbody\r\n' >"$T/msg.eml"

# add_job ID TO [EXPIRES_AT]
add_job() {
	local args=(XADD volley:jobs '*' id "$1" to "$2" from f@sender.test)
	[ -n "${3:-}" ] && args+=(expires_at "$3")
	redis_cli -x "${args[@]}" msg <"$T/msg.eml" >/dev/null
}

# --- allow_private = false ------------------------------------------------------
soon=$(($(date +%s) + 4))
add_job priv u@priv.test "$soon"
add_job mapped u@mapped.test "$soon"
run_drain "$T/deny.log" 60 -c "$T/deny.conf"
is "deny: run --drain exits 0" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/deny.log"
grep -q -E "panic|AddressSanitizer|runtime error" "$T/deny.log" && not_ok "deny: no crash in the log" ||
	ok "deny: no crash in the log"
check "deny: every job has exactly one final event" events check-final --expect 2

fld() { events field "$@"; }
for id in priv mapped; do
	is "$id: final status" "$(events final $id)" expired
	is "$id: first event is deferred" "$(events history $id | cut -d, -f1)" deferred
	is "$id: class dns_failure" "$(fld $id class deferred)" dns_failure
done
case "$(fld priv reply deferred)" in
*"mx.priv.test resolved to 127.0.1.70 (loopback)"*"dns.allow_private = true"*)
	ok "priv: the reason names the host, the address and the setting" ;;
*) not_ok "priv: the reason names the host, the address and the setting" "reply: $(fld priv reply deferred)" ;;
esac
case "$(fld mapped reply deferred)" in
*"mx.mapped.test resolved to 127.0.1.71 (loopback)"*"dns.allow_private = true"*)
	ok "mapped: an IPv4-mapped loopback address is refused too" ;;
*) not_ok "mapped: an IPv4-mapped loopback address is refused too" "reply: $(fld mapped reply deferred)" ;;
esac
is "deny: nothing reached the servers" "$(sink_count 127.0.1.70 127.0.1.71)" 0

# --- allow_private = true -------------------------------------------------------
add_job priv2 v@priv.test
add_job mapped2 v@mapped.test
run_drain "$T/allow.log" 60 -c "$T/allow.conf"
is "allow: run --drain exits 0" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/allow.log"
check "allow: every job has exactly one final event" events check-final --expect 4
is "allow: priv2 delivered" "$(events final priv2)" delivered
is "allow: mapped2 delivered" "$(events final mapped2)" delivered
is "allow: the MX at 127.0.1.70 got one message" "$(sink_count 127.0.1.70)" 1
is "allow: the mapped MX got one message over IPv4" "$(sink_count 127.0.1.71)" 1
done_testing
