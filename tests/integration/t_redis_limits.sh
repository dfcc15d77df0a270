#!/usr/bin/env bash
# t_redis_limits.sh - Redis data that would otherwise lose jobs silently or
# grow without bound:
#   1. the events stream cannot be written (a wrong key type): the job is
#      not acked without its event; it stays pending and, once the key is
#      fixed, ends with exactly one event;
#   2. a maxmemory-policy other than noeviction is warned about;
#   3. a stream entry delivered more than redis.max_deliveries times, and a
#      retry leased that often, end `failed` instead of going round again;
#   4. a retry whose job hash is gone (evicted) ends `failed`, id = its key;
#   5. `volley inject` stores the message with a TTL (redis.msg_ttl; 0 =
#      none) and refuses a directory, /dev/zero, a FIFO and a message larger
#      than smtp.max_message_size (exit 1, a clear error).
. "$(dirname "$0")/../lib.sh"
need_volley

MX=127.0.1.1
start_redis || bail "redis did not start"
start_dns "$(dns_domain d0.test $MX)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink "$MX" "$SINK_PORT" || bail "smtp-sink did not start"
CFG_LEASE=3s write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: limits\r\n\r\nbody\r\n' >"$T/msg.eml"
M=$(cat "$T/msg.eml")

# --- 1: the event comes before the ack ---------------------------------------
redis_cli SET volley:events not-a-stream >/dev/null
redis_cli XADD volley:jobs '*' id ev1 to ev1@d0.test from f@sender.test msg "$M" >/dev/null
bg_volley "$T/run1.log" run -c "$T/volley.conf" --drain
pid=$VOLLEY_PID
wait_for 15 grep -q "settling write failed" "$T/run1.log" ||
	note "the settling write did not fail as planned"
is "the job was not acked without its event" "$(xpending_count)" 1
redis_cli DEL volley:events >/dev/null
wait_pid "$pid" 40
is "once the events key is fixed the job is taken over and the run drains" "$WAIT_RC" 0
[ "$WAIT_RC" = 0 ] || show_log "$T/run1.log"
is "ev1: exactly one final event (delivered)" "$(events history ev1)" delivered

# --- 2..4 ------------------------------------------------------------------------
redis_cli CONFIG SET maxmemory-policy allkeys-lru >/dev/null
# a stream entry some consumer already had 15 times
id=$(redis_cli EVAL "local id = redis.call('XADD', KEYS[1], '*', 'id', 'over', 'to', 'over@d0.test', 'from', 'f@sender.test', 'msg', ARGV[1])
redis.call('XREADGROUP', 'GROUP', 'volley', 'ghost', 'COUNT', 1, 'STREAMS', KEYS[1], '>')
redis.call('XCLAIM', KEYS[1], 'volley', 'ghost', 0, id, 'IDLE', 600000, 'RETRYCOUNT', 15, 'JUSTID')
return id" 1 volley:jobs "$M")
# a retry leased 10 times already, due now
exp=$(($(date +%s) + 60))
redis_cli HSET volley:job:1-1 id overretry to overretry@d0.test from f@sender.test msg "$M" \
	attempts 1 leases 10 expires_at "$exp" >/dev/null
redis_cli ZADD volley:retry 0 1-1 >/dev/null
# a retry whose hash was evicted
redis_cli ZADD volley:retry 0 1-2 >/dev/null
# and a plain job, delivered as usual
redis_cli XADD volley:jobs '*' id plain to plain@d0.test from f@sender.test msg "$M" >/dev/null

run_drain "$T/run2.log" 40 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run2.log"
grep -q "maxmemory-policy is allkeys-lru" "$T/run2.log" && ok "maxmemory-policy allkeys-lru is warned about" ||
	not_ok "maxmemory-policy allkeys-lru is warned about" "$(grep ' redis: ' "$T/run2.log" | head)"
is "over-delivered stream entry: failed" "$(events final over)" failed
case "$(events field over reply)" in *"delivered to the engine 15 times"*) ok "its reply says so" ;;
*) not_ok "its reply says so" "$(events field over reply)" ;; esac
is "over-leased retry: failed" "$(events final overretry)" failed
case "$(events field overretry reply)" in *"delivered to the engine 10 times"*) ok "its reply says so" ;;
*) not_ok "its reply says so" "$(events field overretry reply)" ;; esac
is "orphaned retry: failed, id = its key" "$(events final 1-2)" failed
case "$(events field 1-2 reply)" in *"retry data"*lost*) ok "its reply says the retry data was lost" ;;
*) not_ok "its reply says the retry data was lost" "$(events field 1-2 reply)" ;; esac
is "the plain job was delivered" "$(events final plain)" delivered
check "every job has exactly one final event" events check-final --expect 5
is "nothing pending" "$(xpending_count)" 0
is "nothing scheduled" "$(redis_cli ZCARD volley:retry)" 0
is "no job hash left" "$(redis_cli EXISTS volley:job:1-1 volley:job:1-2)" 0
redis_cli CONFIG SET maxmemory-policy noeviction >/dev/null

# --- 5: inject ---------------------------------------------------------------------
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" i1@d0.test >/dev/null 2>&1
key=$(redis_cli --scan --pattern 'volley:msg:*' | head -1)
ttl=$(redis_cli PTTL "$key")
[ -n "$key" ] && [ "$ttl" -gt 0 ] && ok "inject stores $key with a TTL ($ttl ms)" ||
	not_ok "inject stores the message with a TTL" "key '$key' pttl '$ttl'"
redis_cli DEL "$key" >/dev/null
CFG_LEASE=3s write_config "$T/nottl.conf"
sed -i 's/^  lease = .*/&\n  msg_ttl = 0;/' "$T/nottl.conf"
"$VOLLEY" inject -c "$T/nottl.conf" --from f@sender.test --msg "$T/msg.eml" i2@d0.test >/dev/null 2>&1
is "redis.msg_ttl = 0: no TTL" "$(redis_cli PTTL "$key")" -1

before=$(redis_cli XLEN volley:jobs)
refuse() {
	local what=$1 file=$2 want=$3 out rc
	shift 3
	out=$(timeout 10 "$VOLLEY" inject "$@" --from f@sender.test --msg "$file" x@d0.test 2>&1)
	rc=$?
	if [ "$rc" = 1 ] && printf '%s' "$out" | grep -q "$want"; then
		ok "inject refuses $what (exit 1: $out)"
	else
		not_ok "inject refuses $what" "exit $rc: $out"
	fi
}
mkdir "$T/adir"
mkfifo "$T/fifo"
head -c 3000 /dev/urandom | base64 >"$T/big.eml"
CFG_LEASE=3s CFG_SMTP_EXTRA="max_message_size = 1k;" write_config "$T/small.conf"
refuse "a directory" "$T/adir" "not a regular file" -c "$T/volley.conf"
refuse "/dev/zero" /dev/zero "not a regular file" -c "$T/volley.conf"
refuse "a FIFO" "$T/fifo" "not a regular file" -c "$T/volley.conf"
refuse "a message larger than smtp.max_message_size" "$T/big.eml" "max_message_size" -c "$T/small.conf"
is "and queued nothing" "$(redis_cli XLEN volley:jobs)" "$before"

done_testing
