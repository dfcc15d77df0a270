#!/usr/bin/env bash
# t_engine_pause.sh - `volley pause|resume campaign|tenant NAME`.
# Two campaigns and two tenants share one domain (one MX, one lane). A and
# tenant t1 are paused before the engine starts: B and t2 are delivered
# while A and t1 send nothing and write no event (their jobs wait in the
# retry schedule); `volley resume` releases them within a few seconds
# (within about a second: the engine makes the waiting jobs due at once).
# A campaign paused while the engine runs is honoured for jobs injected a
# second later; a paused job past its expires_at ends `expired`. Jobs
# already queued in memory behind a slow lane (4/s) stop within a second or
# two of the pause and go out after the resume. Every job gets exactly one
# final event.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

start_redis || bail "redis did not start"
start_dns < <(dns_domain pause.test 127.0.1.91; dns_domain slow.test 127.0.1.91) ||
	bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink 127.0.1.91 "$SINK_PORT" || bail "volley-sink"
CFG_MAX_AGE=5min CFG_EXTRA='domain "slow.test" { max_rate = "4/s"; }' write_config "$T/volley.conf"
C="$T/volley.conf"
"$VOLLEY" check-config -c "$C" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$C" 2>&1)"
printf 'From: f@sender.test\r\nSubject: pause\r\n\r\nbody\r\n' >"$T/msg.eml"

inject() {	# inject NAME N [inject options...]: N jobs to NAME-i@pause.test
	local name=$1 n=$2 dom=pause.test
	shift 2
	case "$name" in slow*) dom=slow.test ;; esac
	for i in $(seq 1 "$n"); do echo "$name-$i@$dom"; done >"$T/rcpts.$name"
	"$VOLLEY" inject -c "$C" --from f@sender.test --msg "$T/msg.eml" --rcpts "$T/rcpts.$name" \
		"$@" >/dev/null || bail "inject $name failed"
}
delivered() { events jobs status=delivered "$@"; }
at_least() { local n=$1; shift; [ "$(events jobs "$@")" -ge "$n" ]; }	# at_least N FILTERS...
both_done() { at_least 20 status=delivered campaign=B && at_least 10 status=delivered tenant=t2; }

out=$("$VOLLEY" pause -c "$C" campaign A)
is "volley pause campaign A exits 0" "$?" 0
case "$out" in *"paused campaign 'A'"*) ok "pause says what it did" ;;
*) not_ok "pause says what it did" "$out" ;; esac
"$VOLLEY" pause -c "$C" tenant t1 >/dev/null
is "volley pause tenant t1 exits 0" "$?" 0
out=$("$VOLLEY" pause -c "$C" campaign A)
case "$out" in *"already paused"*) ok "pausing again says it already is" ;;
*) not_ok "pausing again says it already is" "$out" ;; esac
"$VOLLEY" pause -c "$C" fleet A >/dev/null 2>&1
is "volley pause fleet A: usage error" "$?" 2
"$VOLLEY" pause --help | grep -q "^SYNOPSIS" && ok "volley pause --help" || not_ok "volley pause --help"

inject a 20 --campaign A
inject b 20 --campaign B
inject t1 10 --campaign C --tenant t1
inject t2 10 --campaign C --tenant t2

bg_volley "$T/run.log" run -c "$C"
pid=$VOLLEY_PID
if wait_for 30 both_done; then
	ok "campaign B and tenant t2 delivered while A and t1 are paused"
else
	not_ok "campaign B and tenant t2 delivered while A and t1 are paused" \
		"B $(delivered campaign=B), t2 $(delivered tenant=t2); $(show_log "$T/run.log")"
fi
sleep 3
is "paused campaign A: no event at all" "$(events count campaign=A)" 0
is "paused tenant t1: no event at all" "$(events count tenant=t1)" 0
is "the sink got only B's and t2's messages" "$(sink_count 127.0.1.91)" 30
parked=$(redis_cli ZCARD volley:retry)
[ "$parked" -ge 1 ] && ok "paused jobs wait in the retry schedule ($parked there)" ||
	not_ok "paused jobs wait in the retry schedule" "ZCARD $parked"
"$VOLLEY" status -c "$C" >"$T/status.out" 2>&1
grep -q "paused *campaign A" "$T/status.out" && grep -q "paused *tenant t1" "$T/status.out" &&
	ok "volley status shows the paused campaign and tenant" ||
	not_ok "volley status shows the paused campaign and tenant" "$(show_log "$T/status.out")"
grep -q "campaign 'A' is paused" "$T/run.log" && ok "the engine logs that it saw the pause" ||
	not_ok "the engine logs that it saw the pause" "$(show_log "$T/run.log")"

t0=$(now_ms)
out=$("$VOLLEY" resume -c "$C" campaign A)
case "$out" in *"resumed campaign 'A'"*) ok "resume says what it did" ;;
*) not_ok "resume says what it did" "$out" ;; esac
if wait_for 10 at_least 20 status=delivered campaign=A; then
	ms=$(($(now_ms) - t0))
	[ "$ms" -le 5000 ] && ok "campaign A delivered within 5 s of resume ($ms ms)" ||
		not_ok "campaign A delivered within 5 s of resume" "$ms ms"
else
	not_ok "campaign A delivered after resume" "$(delivered campaign=A) of 20; $(show_log "$T/run.log")"
fi
grep -q "resumed campaign(s): [0-9]* waiting job(s) due now" "$T/run.log" &&
	ok "on resume the waiting jobs are made due at once (not a park later)" ||
	not_ok "on resume the waiting jobs are made due at once" "$(show_log "$T/run.log")"
is "tenant t1 still paused: no event" "$(events count tenant=t1)" 0
t0=$(now_ms)
"$VOLLEY" resume -c "$C" tenant t1 >/dev/null
if wait_for 10 at_least 10 status=delivered tenant=t1; then
	ms=$(($(now_ms) - t0))
	[ "$ms" -le 5000 ] && ok "tenant t1 delivered within 5 s of resume ($ms ms)" ||
		not_ok "tenant t1 delivered within 5 s of resume" "$ms ms"
else
	not_ok "tenant t1 delivered after resume" "$(delivered tenant=t1) of 10; $(show_log "$T/run.log")"
fi
out=$("$VOLLEY" resume -c "$C" tenant t1)
case "$out" in *"was not paused"*) ok "resuming again says it was not paused" ;;
*) not_ok "resuming again says it was not paused" "$out" ;; esac

# Paused while the engine runs: honoured within a second.
"$VOLLEY" pause -c "$C" campaign D >/dev/null
sleep 1.5
inject d 10 --campaign D
# A paused job whose expires_at passes while it waits ends `expired`.
"$VOLLEY" pause -c "$C" campaign E >/dev/null
sleep 1.5
inject e 1 --campaign E --expires-at $(($(date +%s) + 3))
sleep 4
is "campaign D paused at run time: nothing sent" "$(events count campaign=D)" 0
if wait_for 10 at_least 1 campaign=E; then
	is "a paused job past its expires_at ends expired" "$(events final "$(events ids campaign=E | cut -f2)")" expired
else
	not_ok "a paused job past its expires_at ends expired" "no final event for campaign E"
fi
"$VOLLEY" resume -c "$C" campaign D >/dev/null
wait_for 10 at_least 10 status=delivered campaign=D &&
	ok "campaign D delivered after resume" ||
	not_ok "campaign D delivered after resume" "$(delivered campaign=D) of 10"
"$VOLLEY" resume -c "$C" campaign E >/dev/null

# Paused while its jobs are already queued in memory (a 4/s lane holds
# 40 for 10 s): what is queued stops too, not only what is read later.
inject slow 40 --campaign G
wait_for 15 at_least 4 status=delivered campaign=G || note "campaign G: fewer than 4 delivered"
"$VOLLEY" pause -c "$C" campaign G >/dev/null
sleep 2
c1=$(delivered campaign=G)
sleep 3
c2=$(delivered campaign=G)
if [ "$c1" -lt 40 ] && [ "$c2" = "$c1" ]; then
	ok "queued jobs of a campaign paused mid-run stop ($c1 of 40 went before the pause took hold)"
else
	not_ok "queued jobs of a campaign paused mid-run stop" "$c1 then $c2 of 40 delivered"
fi
grep -q "queued job(s) of newly paused campaigns/tenants went back to Redis" "$T/run.log" &&
	ok "the engine logs that it took the queued jobs back" ||
	not_ok "the engine logs that it took the queued jobs back" "$(show_log "$T/run.log")"
"$VOLLEY" resume -c "$C" campaign G >/dev/null
wait_for 30 at_least 40 status=delivered campaign=G &&
	ok "campaign G delivered after resume" ||
	not_ok "campaign G delivered after resume" "$(delivered campaign=G) of 40"

kill -TERM "$pid"
wait_pid "$pid" 30
is "SIGTERM: exit 0" "$WAIT_RC" 0
check "every job has exactly one final event (111 jobs)" events check-final --expect 111
is "pausing writes no event: nothing deferred" "$(events count status=deferred)" 0
is "the sink got every message but the expired one" "$(sink_count 127.0.1.91)" 110
is "nothing left in the retry schedule" "$(redis_cli ZCARD volley:retry)" 0
done_testing
