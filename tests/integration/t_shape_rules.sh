#!/usr/bin/env bash
# t_shape_rules.sh - a shaping rule (shaping_rule block) reacting to a
# provider's wording. The sink answers every 4th RCPT with "451 4.3.0
# [TSS99] Temporary failure, message deferred" (a reply trouble.c does not treat as a slow-down,
# so only the rule reacts); the rule "rules-tss99" throttles the lane to
# 240/min (4/s) for 30s once 3 such replies came within 1min. Asserts: a
# `throttled` entry in volley:shaping whose reason names the rule, with
# the new rate; the deliveries after it stay at or under 4/s (wide
# margin: 6/s on average, and far under what the unthrottled lane did);
# all 80 jobs delivered eventually with exactly one final event each; and
# `volley classify` names the rule for that reply and "shaping: none" for
# another.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

start_redis || bail "redis did not start"
start_dns "$(dns_domain rules.test 127.0.1.97)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
cat >"$T/sink.conf" <<'CONF'
rule "tss99" { stage = "rcpt"; every = 4; reply = "451 4.3.0 [TSS99] Temporary failure, message deferred"; }
CONF
start_volley_sink 127.0.1.97 "$SINK_PORT" -c "$T/sink.conf" --stats "$T/sink.json" || bail "volley-sink"
CFG_RETRY='[1s]' CFG_MAX_AGE=10min \
CFG_EXTRA='domain "rules.test" { max_connections = 4; }
shaping { resume_spread = 1s; }
shaping_rule "rules-tss99" {
  site = "rules.test";
  code = "451";
  text = "*TSS99*deferred*";
  threshold = "3 in 1min";
  action = "throttle";
  rate = "240/min";
  duration = 30s;
}
shaping_rule "never" { code = "599"; action = "suspend"; duration = 1h; }' write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"

# volley classify names the rule (the reply the sink sends), or none
out=$("$VOLLEY" classify -c "$T/volley.conf" --stage rcpt --site rules.test \
	"451 4.3.0 [TSS99] Temporary failure, message deferred")
note "classify: $(echo "$out" | tr '\n' '|')"
line=$(grep -n 'shaping_rule "rules-tss99"' "$T/volley.conf" | cut -d: -f1)
echo "$out" | grep -qx "shaping: rule rules-tss99 at $T/volley.conf:$line (threshold 3 in 1min, action throttle to 240/min for 30s, site rules.test)" &&
	ok "classify names the rule, its file:line, threshold and action" ||
	not_ok "classify names the rule" "$out"
out=$("$VOLLEY" classify -c "$T/volley.conf" --site other.test "451 4.3.0 [TSS99] deferred")
echo "$out" | grep -qx "shaping: none" && ok "classify: a rule for another site does not match" ||
	not_ok "classify: another site" "$out"
out=$("$VOLLEY" classify -c "$T/volley.conf" "550 5.1.1 user unknown")
echo "$out" | grep -qx "shaping: none" && ok "classify: shaping: none for a reply no rule matches" ||
	not_ok "classify: shaping: none" "$out"

printf 'From: f@sender.test\r\nSubject: rules\r\n\r\nbody\r\n' >"$T/msg.eml"
for i in $(seq 1 80); do echo "u$i@rules.test"; done >"$T/rcpts"
"$VOLLEY" inject -c "$T/volley.conf" --from f@sender.test --msg "$T/msg.eml" --rcpts "$T/rcpts" >/dev/null

t0=$(now_ms)
run_drain "$T/run.log" 150 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
note "80 jobs in $DRAIN_MS ms"
check "every job has exactly one final event" events check-final --expect 80
is "all 80 delivered" "$(events jobs status=delivered)" 80

# the shaping stream: the throttled entry names the rule and the new rate
redis_cli XRANGE volley:shaping - + >"$T/shaping.txt"
note "shaping stream: $(tr '\n' ' ' <"$T/shaping.txt" | cut -c1-600)"
"$PY" - "$REDIS_PORT" >"$T/thr" <<'PYEOF'
import subprocess, sys
out = subprocess.run(["redis-cli", "-p", sys.argv[1], "--no-raw", "XRANGE", "volley:shaping", "-", "+"],
                     capture_output=True, text=True).stdout
# parse pairs from redis-cli --no-raw output: lines like `   1) "lane"`
vals = []
for line in out.splitlines():
    line = line.strip()
    if '"' in line:
        vals.append(line[line.index('"') + 1:line.rindex('"')].replace('\\"', '"'))
entries, cur = [], None
i = 0
while i < len(vals):
    v = vals[i]
    if v and v[0].isdigit() and "-" in v and v.replace("-", "").isdigit():
        cur = {}
        entries.append(cur)
        i += 1
        continue
    if cur is not None and i + 1 < len(vals):
        cur[v] = vals[i + 1]
        i += 2
    else:
        i += 1
for e in entries:
    if e.get("action") == "throttled" and "rules-tss99" in e.get("reason", ""):
        print(e.get("ts"), e.get("rate"), e.get("until"), e.get("lane"), "|", e.get("reason"))
        break
PYEOF
read -r ts rate until lane _ <"$T/thr" || true
[ -n "${ts:-}" ] && ok "volley:shaping has a throttled entry naming rule rules-tss99 ($(cat "$T/thr"))" ||
	not_ok "volley:shaping names the rule" "$(cat "$T/shaping.txt" | head -40)"
is "the entry carries the new rate" "${rate:-}" "4/s"
case "${lane:-}" in */rules.test) ok "the entry's lane is IP/rules.test ($lane)" ;;
	*) not_ok "the entry's lane" "${lane:-}" ;; esac
[ -n "${until:-}" ] && [ "${until:-0}" -gt "${ts:-0}" ] && ok "until is after ts" || not_ok "until" "${until:-}"
grep -q 'action=throttled.*reason="rule rules-tss99 (3 in 1min)' "$T/run.log" &&
	ok "the log line names the rule and the new limits" ||
	not_ok "the log line" "$(grep shaper "$T/run.log" | head -5)"

# delivery rate: before the rule fired vs after it (within its 30s)
if [ -n "${ts:-}" ]; then
	events json | "$PY" -c '
import json, sys
ts = int(sys.argv[1])
before, after = [], []
for line in sys.stdin:
    e = json.loads(line)
    if e.get("status") != "delivered":
        continue
    t = int(e["ts"])
    (before if t <= ts else after).append(t)
after = [t for t in after if t > ts + 1000 and t <= ts + 29000]
span = (max(after) - min(after)) / 1000.0 if len(after) > 1 else 0
rate = (len(after) - 1) / span if span > 0 else 0
print(len(before), len(after), "%.2f" % rate)' "$ts" >"$T/rate"
	read -r nb na r <"$T/rate"
	note "delivered before the rule fired: $nb; in its window (from 1s after): $na at $r/s (ceiling 4/s)"
	"$PY" -c "import sys; sys.exit(0 if $na >= 10 and $r <= 6.0 else 1)" &&
		ok "after the rule fired the lane delivered at or under its ceiling ($r/s <= 4/s + margin)" ||
		not_ok "the throttled rate" "$na deliveries at $r/s"
fi
done_testing
