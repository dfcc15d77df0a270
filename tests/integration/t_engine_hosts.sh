#!/usr/bin/env bash
# t_engine_hosts.sh - pools spread over several hosts, and routing rules.
# Two engines (instances mta1 and mta2) share one Redis and one config in
# which pool "a" has ip 127.0.0.71 { instance = "mta1"; } and pool "b" has
# ip 127.0.0.72 { instance = "mta2"; }. Jobs of both pools go into the one
# stream, both engines read it; each hands the other's jobs over untried
# (PREFIXretry:pool:NAME), so every job of a leaves from 127.0.0.71 and
# every job of b from 127.0.0.72 (events' ip and instance, and the sink's
# client address), each with exactly one final event, nothing bounced or
# failed, nothing left in any retry ZSET. Routes: tenant "acme" -> a,
# sender domain news.test -> b (jobs without a pool field). Some jobs go to
# a domain whose MX is down at first: they are deferred, wait in their
# pool's retry ZSET and are delivered by their pool's owner once it is up.
# A third engine (mta3, owns nothing but default) hands a and b jobs over
# too. volley status shows per-pool waiting counts.
. "$(dirname "$0")/../lib.sh"
need_volley

NA=40 NB=40 NR=10
MX=127.0.1.61 LATE=127.0.1.62

start_redis || bail "redis did not start"
start_dns < <(dns_domain hosts.test "$MX"; dns_domain late.test "$LATE") || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink "$MX" "$SINK_PORT" || bail "smtp-sink did not start"
# A site that fails closes its lane; short closures (and a short spread of
# the jobs that waited for it) keep the test quick.
CFG_MAX_AGE=120s CFG_EXTRA='pool "a" { ip "127.0.0.71" { instance = "mta1"; } }
pool "b" { ip "127.0.0.72" { instance = "mta2"; } }
route { tenant = "acme"; pool = "a"; }
route { sender_domain = "news.test"; pool = "b"; }
shaping { close_time = 1s; max_close_time = 2s; resume_spread = 1s; }' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"

# check-config names a route's unknown pool with file:line
printf 'route { tenant = "x";\n  pool = "nope"; }\n' >"$T/bad.conf"
out=$("$VOLLEY" check-config -c "$T/bad.conf" 2>&1)
case "$out" in *"bad.conf:2: route: pool \"nope\" is not defined"*) ok "check-config: unknown route pool with file:line" ;;
*) not_ok "check-config: unknown route pool with file:line" "$out" ;; esac

printf 'From: f@sender.test\r\nSubject: hosts\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 1 $NA); do echo "a$i@hosts.test"; done >"$T/a"
for i in $(seq 1 $NB); do echo "b$i@hosts.test"; done >"$T/b"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool a --rcpts "$T/a" >/dev/null
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool b --rcpts "$T/b" >/dev/null
for i in $(seq 1 $NR); do
	redis_cli XADD volley:jobs '*' id "ten$i" to "t$i@hosts.test" from f@sender.test tenant acme msg x >/dev/null
	redis_cli XADD volley:jobs '*' id "news$i" to "n$i@hosts.test" from letters@NEWS.test msg x >/dev/null
	redis_cli XADD volley:jobs '*' id "dflt$i" to "d$i@hosts.test" from f@sender.test msg x >/dev/null
done
for i in 1 2 3 4 5; do
	redis_cli XADD volley:jobs '*' id "latea$i" to "la$i@late.test" from f@sender.test pool a msg x >/dev/null
	redis_cli XADD volley:jobs '*' id "lateb$i" to "lb$i@late.test" from f@sender.test pool b msg x >/dev/null
done
TOTAL=$((NA + NB + 3 * NR + 10))

# mta3 owns no IP of a or b: it only hands their jobs over (and sends
# default's). It runs first, alone, for a moment.
VOLLEY_INSTANCE=mta3 bg_volley "$T/mta3.log" run -c "$T/volley.conf"
p3=$VOLLEY_PID
wait_for 20 sh -c "grep -q 'handed over' '$T/mta3.log'" || note "mta3 handed nothing over"
zsets=$(redis_cli --scan --pattern 'volley:retry:pool:*' | sort | tr '\n' ' ')
note "retry ZSETs after mta3 alone: $zsets"
case "$zsets" in *"volley:retry:pool:a"*"volley:retry:pool:b"*) ok "a non-owner hands jobs over to retry:pool:a and retry:pool:b" ;;
*) not_ok "a non-owner hands jobs over to retry:pool:a and retry:pool:b" "$zsets" ;; esac
st=$("$VOLLEY" status -c "$T/volley.conf" 2>&1)
echo "$st" | grep -E 'pool (a|b): .*waiting' | sed 's/^/# /'
echo "$st" | grep -Eq 'pool a: [1-9][0-9]* waiting' && ok "volley status shows pool a's waiting jobs" ||
	not_ok "volley status shows pool a's waiting jobs" "$(echo "$st" | head -30)"

VOLLEY_INSTANCE=mta1 bg_volley "$T/mta1.log" run -c "$T/volley.conf" --drain
p1=$VOLLEY_PID
VOLLEY_INSTANCE=mta2 bg_volley "$T/mta2.log" run -c "$T/volley.conf" --drain
p2=$VOLLEY_PID
# late.test's MX comes up after a few seconds: its jobs were deferred.
wait_for 20 sh -c "[ \$($PY '$LAB_DIR/events.py' --port $REDIS_PORT count status=deferred) -ge 4 ]" ||
	note "fewer than 4 deferrals before late.test came up"
sleep 2
start_smtp_sink "$LATE" "$SINK_PORT" || bail "the late smtp-sink did not start"
wait_pid "$p1" 100
rc1=$WAIT_RC
wait_pid "$p2" 100
rc2=$WAIT_RC
is "mta1 drains and exits 0" "$rc1" 0
is "mta2 drains and exits 0" "$rc2" 0
[ "$rc1" = 0 ] || show_log "$T/mta1.log" 30
[ "$rc2" = 0 ] || show_log "$T/mta2.log" 30
# mta3 keeps sending default's jobs; wait until every job has its event.
wait_for 60 sh -c "[ \$($PY '$LAB_DIR/events.py' --port $REDIS_PORT jobs) -ge $TOTAL ]" ||
	note "not every job has a final event yet"
kill -TERM "$p3" 2>/dev/null
wait_pid "$p3" 40
is "mta3 stops with exit 0" "$WAIT_RC" 0

check "every job has exactly one final event" events check-final --expect $TOTAL
is "nothing bounced" "$(events count status=bounced)" 0
is "nothing failed" "$(events count status=failed)" 0
is "nothing expired" "$(events count status=expired)" 0
is "pool a: all delivered" "$(events jobs status=delivered pool=a)" $((NA + NR + 5))
is "pool b: all delivered" "$(events jobs status=delivered pool=b)" $((NB + NR + 5))
is "default: all delivered" "$(events jobs status=delivered pool=default)" $NR
is "pool a: every delivery from 127.0.0.71 by mta1" \
	"$(events jobs status=delivered pool=a ip=127.0.0.71 instance=mta1)" $((NA + NR + 5))
is "pool b: every delivery from 127.0.0.72 by mta2" \
	"$(events jobs status=delivered pool=b ip=127.0.0.72 instance=mta2)" $((NB + NR + 5))
is "tenant route: acme's jobs used pool a" "$(events field ten3 pool)" a
is "sender-domain route: news.test's jobs used pool b (case-insensitive)" "$(events field news3 pool)" b
is "no route: default" "$(events field dflt3 pool)" default
n=$(events count status=deferred)
[ "$n" -ge 1 ] && ok "late.test jobs were deferred first ($n deferral(s))" || not_ok "late.test jobs were deferred first"
bad=$(events json | "$PY" -c '
import json, sys
bad = 0
for line in sys.stdin:
    e = json.loads(line)
    if e.get("status") == "deferred" and e.get("instance") != {"a": "mta1", "b": "mta2"}.get(e.get("pool"), e.get("instance")):
        bad += 1
print(bad)')
is "every attempt of a/b was made by its owner" "$bad" 0

# the sinks saw each client address only for its pool's recipients
for d in "$(sink_dir $MX)" "$(sink_dir $LATE)"; do
	for f in "$d"/*; do
		awk '/^X-Client-Addr:/{c=$2} /^X-Rcpt-Args:/{r=$2} END{print c, r}' "$f"
	done
done >"$T/summary"
wrong=$(awk '($2 ~ /^<(a[0-9]|t[0-9]|la)/ && $1 != "127.0.0.71") || ($2 ~ /^<(b[0-9]|n[0-9]|lb)/ && $1 != "127.0.0.72") {n++} END{print n+0}' "$T/summary")
is "sink: every a/b message came from its pool's address" "$wrong" 0
is "sink: messages received" "$(wc -l <"$T/summary")" $TOTAL

left=$(for k in $(redis_cli --scan --pattern 'volley:retry*'); do redis_cli ZCARD "$k"; done | awk '{s+=$1} END{print s+0}')
is "nothing left in any retry ZSET" "$left" 0
is "no job hash left" "$(redis_cli --scan --pattern 'volley:job:*' | wc -l)" 0
# (mta3 usually reads the whole stream before the owners start, so
# whether they hand anything over themselves depends on timing.)
grep -q 'handed over' "$T/mta1.log" "$T/mta2.log" && note "the owners handed each other's jobs over too" ||
	note "mta3 handed every job over before the owners read any"
done_testing
