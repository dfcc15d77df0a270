#!/usr/bin/env bash
# t_engine_ipv6.sh - IPv6 end to end: MX hosts resolved with AAAA as well
# as A; a pool whose ip is "::1" delivers to an IPv6-only MX from ::1 (the
# event's ip is ::1, the sink sees the client [::1]); the default source
# reaches an IPv6-only MX too; a dual-stack MX is reached over IPv4 from an
# IPv4 pool address and over IPv6 from the IPv6 one; an IPv6 source with
# an IPv4-only destination is deferred with a reason that says so (never a
# crash); an IPv6 pool address that is not on this host is a local failure
# (bind: EADDRNOTAVAIL) named in the deferral; every job gets exactly one
# final event.
. "$(dirname "$0")/../lib.sh"
need_volley

start_redis || bail "redis did not start"
start_dns \
	"mx-host=v6.test,mx.v6.test,10" "host-record=mx.v6.test,::1" \
	"mx-host=dual.test,mx.dual.test,10" "host-record=mx.dual.test,127.0.1.61,::1" \
	"$(dns_domain v4only.test 127.0.1.62)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
# One sink on [::1] and on 127.0.1.61 (the dual-stack MX), one on the
# IPv4-only MX (which must see nothing).
start_volley_sink '[::1]' "$SINK_PORT" --listen "127.0.1.61:$SINK_PORT" || bail "volley-sink did not start"
wait_listen 127.0.1.61 "$SINK_PORT" || bail "volley-sink does not listen on 127.0.1.61"
start_volley_sink 127.0.1.62 "$SINK_PORT" || bail "volley-sink (IPv4 only) did not start"

CFG_RETRY='[1s]' CFG_EXTRA='pool "six" { ip "::1" { ehlo = "six.pool.test"; } }
pool "four" { ip "127.0.0.31" { ehlo = "four.pool.test"; } }
pool "ghost6" { ip "2001:db8::1"; }' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null ||
	bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: ipv6\r\n\r\nbody\r\n' >"$T/msg.eml"

soon=$(($(date +%s) + 5))
# add_job ID TO POOL [EXPIRES_AT]
add_job() {
	local args=(XADD volley:jobs '*' id "$1" to "$2" from f@sender.test)
	[ -n "$3" ] && args+=(pool "$3")
	[ -n "${4:-}" ] && args+=(expires_at "$4")
	redis_cli -x "${args[@]}" msg <"$T/msg.eml" >/dev/null
}
add_job six u6@v6.test six
add_job dflt u0@v6.test ''
add_job dual6 d6@dual.test six
add_job dual4 d4@dual.test four
add_job nov4 n4@v4only.test six "$soon"
add_job ghost g6@v6.test ghost6 "$soon"

run_drain "$T/run.log" 60 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run.log"
grep -q -E "panic|AddressSanitizer|runtime error" "$T/run.log" && not_ok "no crash in the log" ||
	ok "no crash in the log"
check "every job has exactly one final event" events check-final --expect 6

fld() { events field "$@"; }
is "six: delivered" "$(events final six)" delivered
is "six: the event's ip is ::1" "$(fld six ip)" ::1
is "six: the event's mx is the AAAA host" "$(fld six mx)" mx.v6.test
is "default source to an IPv6-only MX: delivered" "$(events final dflt)" delivered
is "default source to an IPv6-only MX: ip ::1" "$(fld dflt ip)" ::1
is "dual-stack MX from the IPv6 pool: delivered" "$(events final dual6)" delivered
is "dual-stack MX from the IPv6 pool: ip ::1" "$(fld dual6 ip)" ::1
is "dual-stack MX from the IPv4 pool: delivered" "$(events final dual4)" delivered
is "dual-stack MX from the IPv4 pool: ip 127.0.0.31" "$(fld dual4 ip)" 127.0.0.31

dir=$(sink_dir '[::1]')
client_of() {	# the X-Sink-Client of the capture holding recipient $1
	local f
	f=$(grep -l -a "^X-Sink-Rcpt-To: <$1>" "$dir"/*.eml 2>/dev/null | head -1)
	[ -n "$f" ] && sed -n 's/^X-Sink-Client: \(.*\)\r$/\1/p' "$f" | head -1
}
case "$(client_of u6@v6.test)" in "[::1]:"*|"::1:"*) ok "six: the sink saw the client [::1]" ;;
*) not_ok "six: the sink saw the client [::1]" "client: $(client_of u6@v6.test)" ;; esac
case "$(client_of d6@dual.test)" in "[::1]:"*|"::1:"*) ok "dual6: the sink saw the client [::1]" ;;
*) not_ok "dual6: the sink saw the client [::1]" "client: $(client_of d6@dual.test)" ;; esac
case "$(client_of d4@dual.test)" in "127.0.0.31:"*) ok "dual4: the sink saw the client 127.0.0.31" ;;
*) not_ok "dual4: the sink saw the client 127.0.0.31" "client: $(client_of d4@dual.test)" ;; esac

# An IPv6 source and an IPv4-only destination: deferred, then expired.
is "nov4: final status" "$(events final nov4)" expired
is "nov4: first event is deferred" "$(events history nov4 | cut -d, -f1)" deferred
case "$(fld nov4 reply deferred)" in *"::1 is IPv6"*IPv4*) ok "nov4: the reason names the source and its family" ;;
*) not_ok "nov4: the reason names the source and its family" "reply: $(fld nov4 reply deferred)" ;; esac
is "nov4: the deferral's ip is ::1" "$(fld nov4 ip deferred)" ::1
is "nov4: nothing reached the IPv4-only MX" "$(sink_count 127.0.1.62)" 0

# An IPv6 pool address this host does not have.
is "ghost: final status" "$(events final ghost)" expired
case "$(fld ghost reply deferred)" in *"bind to source 2001:db8::1: Cannot assign requested address"*)
	ok "ghost: the reason is the failed bind" ;;
*) not_ok "ghost: the reason is the failed bind" "reply: $(fld ghost reply deferred)" ;; esac
is "ghost: the deferral's ip is 2001:db8::1" "$(fld ghost ip deferred)" 2001:db8::1
done_testing
