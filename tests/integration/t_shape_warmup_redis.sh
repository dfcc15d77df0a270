#!/usr/bin/env bash
# t_shape_warmup_redis.sh - warm-up counters live in Redis: they survive a
# crash and a restart. Schedule "w20" allows 20 on day 1 (warmup_burst =
# 100: the whole day's cap at once). Pool "w" has only the warming IP
# 127.0.0.61 and overflow = false: of 60 jobs exactly 20 are delivered,
# the other 40 are deferred to the next window (not failed). kill -9
# once the count is in Redis, restart, 10 new jobs: none sent (deferred).
# SIGTERM, restart: still 20. Pool "o" (overflow = true) shares 127.0.0.61
# with 127.0.0.62: its 20 jobs all leave from 127.0.0.62.
. "$(dirname "$0")/../lib.sh"
need_volley

start_redis || bail "redis did not start"
start_dns "$(dns_domain warm.test 127.0.1.98)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink 127.0.1.98 "$SINK_PORT" || bail "smtp-sink did not start"
CFG_MAX_AGE=2d CFG_EXTRA='shaping { warmup_burst = 100; }
warmup "w20" { daily = [20]; }
pool "w" {
  overflow = false;
  ip "127.0.0.61" { warmup = "w20"; }
}
pool "o" {
  overflow = true;
  ip "127.0.0.61" { warmup = "w20"; }
  ip "127.0.0.62" { }
}' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: f@sender.test\r\nSubject: warm\r\n\r\nbody\r\n' >"$T/msg.eml"
inject() { # POOL FIRST LAST
	for i in $(seq "$2" "$3"); do echo "u$i@warm.test"; done >"$T/rcpts"
	"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --pool "$1" \
	    --rcpts "$T/rcpts" >/dev/null
}
day=$(( $(date -u +%s) / 86400 ))
dkey="volley:warmup:127.0.0.61:$day"
sent_redis() { redis_cli HGET "$dkey" d; }
delivered() { events count status=delivered "$@"; }
deferred() { events count status=deferred; }
at_least() { [ "$("$1")" -ge "$2" ] 2>/dev/null; }
deferred_at_least() { [ "$(deferred)" -ge "$1" ] 2>/dev/null; }
redis_is() { [ "$(sent_redis)" = "$1" ]; }

# 1. 60 jobs, one warming IP, no overflow: 20 go, 40 wait.
inject w 1 60
bg_volley "$T/run1.log" run -c "$T/volley.conf"
wait_for 60 deferred_at_least 40 || show_log "$T/run1.log"
is "run 1: 20 delivered from 127.0.0.61" "$(delivered ip=127.0.0.61)" 20
is "run 1: the other 40 deferred to the next window" "$(deferred)" 40
is "run 1: none failed or bounced" "$(events count status=failed)$(events count status=bounced)" 00
wait_for 10 redis_is 20
is "the day's count is in Redis ($dkey d)" "$(sent_redis)" 20
is "the start day is set in Redis on first use" "$(redis_cli HGET volley:warmup:127.0.0.61 start)" "$day"
reply=$(events json | "$PY" -c 'import json,sys
for l in sys.stdin:
    e = json.loads(l)
    if e.get("status") == "deferred": print(e.get("reply", "")); break')
note "deferred reply: $reply"
case $reply in *warm-up*) ok "the deferral says the warm-up budget is spent" ;;
	*) not_ok "the deferral says the warm-up budget is spent" "$reply" ;; esac
now=$(( $(date -u +%s) * 1000 ))
early=$(redis_cli ZRANGEBYSCORE volley:retry -inf "$((now + 600000))" | grep -c . || true)
is "the 40 wait in Redis, none due within 10 minutes" "$(redis_cli ZCARD volley:retry)/$early" 40/0

# 2. kill -9, restart, 10 new jobs: nothing more from the warming IP.
kill9 "$VOLLEY_PID"
inject w 61 70
bg_volley "$T/run2.log" run -c "$T/volley.conf"
wait_for 60 deferred_at_least 50 || show_log "$T/run2.log"
is "after kill -9 and a restart: still 20 delivered" "$(delivered)" 20
is "after kill -9 and a restart: the 10 new jobs are deferred" "$(deferred)" 50
kill -TERM "$VOLLEY_PID"
wait_pid "$VOLLEY_PID" 30
is "SIGTERM: exit 0" "$WAIT_RC" 0
is "after SIGTERM the day's count in Redis is still 20" "$(sent_redis)" 20

# 3. restart again; status shows the warm-up; pool "o" overflows to .62.
"$VOLLEY" status -c "$T/volley.conf" >"$T/status" 2>&1
grep -E '127\.0\.0\.61 .*day 1.*20/20' "$T/status" >/dev/null &&
	ok "volley status shows 127.0.0.61 on day 1 with 20/20 sent" ||
	not_ok "volley status shows 127.0.0.61 on day 1 with 20/20 sent" "$(grep -A4 -i warm "$T/status" | tr '\n' '|')"
inject o 71 90
bg_volley "$T/run3.log" run -c "$T/volley.conf"
d62() { [ "$(delivered ip=127.0.0.62)" -ge 20 ] 2>/dev/null; }
wait_for 60 d62 || show_log "$T/run3.log"
is "pool o: 127.0.0.62 took all 20 (overflow)" "$(delivered ip=127.0.0.62)" 20
is "pool o: 127.0.0.61 sent nothing more (20 in total)" "$(delivered ip=127.0.0.61)" 20
kill -TERM "$VOLLEY_PID"
wait_pid "$VOLLEY_PID" 30
is "SIGTERM: exit 0" "$WAIT_RC" 0
is "the day's count in Redis is 20 at the end" "$(sent_redis)" 20
dups=$(events ids status=delivered | cut -f2 | sort | uniq -d | grep -c . || true)
is "no job delivered twice" "$dups" 0
is "40 delivered in all, 50 still waiting" "$(delivered)/$(redis_cli ZCARD volley:retry)" 40/50
done_testing
