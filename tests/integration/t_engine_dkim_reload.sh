#!/usr/bin/env bash
# t_engine_dkim_reload.sh - SIGHUP during a DKIM run that signs on the
# worker threads: every job carries its own unsubscribe_url, so each
# message needs its own RSA-2048 signature. The configuration is reloaded
# several times while signatures are in flight:
#   - every job ends with exactly one final event, all delivered;
#   - each reload is logged with its duration and the signatures in
#     flight and still to sign when it ended: at least one ended with
#     signatures still to sign (the loop did not wait for the workers), and
#     none took long;
#   - captured messages signed before, during and after the reloads verify
#     with an independent verifier (python3-dkim through tests/dkim_check.py).
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"
"$PY" -c 'import dkim, nacl' 2>/dev/null || bail "python3-dkim (and python3-nacl) missing: run make deps"

N=${DKIM_RELOAD_JOBS:-3000}
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa.pem" 2>/dev/null ||
	bail "openssl could not make an RSA key"
rsa_p=$(openssl pkey -in "$T/rsa.pem" -pubout -outform DER 2>/dev/null | base64 -w0)

start_redis || bail "redis did not start"
start_dns "$(dns_domain dkim.test 127.0.1.92)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink 127.0.1.92 "$SINK_PORT" || bail "volley-sink"
CFG_SMTP_EXTRA="  max_connections = 4;" CFG_EXTRA="dkim_threads = 2;
dkim \"sender.test\" { selector = \"r1\"; key = \"$T/rsa.pem\"; algorithm = \"rsa-sha256\"; }" \
	write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null ||
	bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"

# N jobs, each with its own List-Unsubscribe URL (a per-message signature).
"$PY" - "$N" >"$T/jobs.resp" <<'EOF'
import sys
n = int(sys.argv[1])
msg = ("From: News <news@sender.test>\r\nTo: you@dkim.test\r\nSubject: reload\r\n"
       "Message-ID: <%d@sender.test>\r\n\r\nbody line\r\n")
out = sys.stdout.buffer
for i in range(n):
    args = ["XADD", "volley:jobs", "*", "id", "j%d" % i, "to", "u%d@dkim.test" % i,
            "from", "news@sender.test", "msg", msg % i,
            "unsubscribe_url", "https://u.sender.test/u/%d" % i]
    out.write(b"*%d\r\n" % len(args))
    for a in args:
        b = a.encode()
        out.write(b"$%d\r\n%s\r\n" % (len(b), b))
EOF
redis_cli --pipe <"$T/jobs.resp" >/dev/null || bail "could not queue the jobs"

bg_volley "$T/run.log" run -c "$T/volley.conf"
# Reload while the run is under way: five times, a fifth of a second apart.
wait_for 30 sh -c "[ \$(redis-cli -p $REDIS_PORT XLEN volley:events) -ge 50 ]" ||
	bail "the run did not start" "$(tail -20 "$T/run.log")"
for i in 1 2 3 4 5; do
	kill -HUP "$VOLLEY_PID"
	sleep 0.2
done
wait_for 120 events check-final --expect "$N" ||
	{ show_log "$T/run.log" 30; bail "not every job ended" "$(events summary)"; }
kill -TERM "$VOLLEY_PID" 2>/dev/null
wait_pid "$VOLLEY_PID" 30
is "the engine stopped cleanly" "$WAIT_RC" 0

check "every job has exactly one final event" events check-final --expect "$N"
is "all $N delivered" "$(events jobs status=delivered)" "$N"
reloads=$(grep -c 'SIGHUP: reloaded' "$T/run.log")
[ "$reloads" -ge 1 ] && ok "reloaded $reloads time(s)" || not_ok "reloaded" "$(tail -20 "$T/run.log")"
grep 'SIGHUP: reloaded' "$T/run.log" | sed 's/.*SIGHUP: /# /'
# "still to sign" is counted as the reload ends: a reload that waited for
# the workers (as it once did) always logs 0 there.
busy=$(grep 'SIGHUP: reloaded' "$T/run.log" | grep -vc ', 0 still to sign')
[ "$busy" -ge 1 ] && ok "$busy reload(s) ended with signatures still to sign (nothing waited)" ||
	not_ok "a reload ended with signatures still to sign" "$(grep 'SIGHUP' "$T/run.log")"
slow=$(grep 'SIGHUP: reloaded' "$T/run.log" | sed -n 's/.* in \([0-9]*\) ms, .*/\1/p' |
	awk -v max="${RELOAD_MAX_MS:-500}" '$1 > max' | wc -l)
is "no reload took over ${RELOAD_MAX_MS:-500} ms (it does not wait for the workers)" "$slow" 0
grep -q 'rq_\|panic\|ERROR' "$T/run.log" && not_ok "no error logged" "$(grep -m5 'panic\|ERROR' "$T/run.log")" ||
	ok "no error logged"

# Signatures verify: 30 messages spread over the run.
mkdir -p "$T/v"
printf 'r1._domainkey.sender.test\tv=DKIM1; k=rsa; p=%s\n' "$rsa_p" >"$T/v/dns.txt"
ls "$(sink_dir 127.0.1.92)"/*.eml | awk -v n="$N" 'NR % int(n / 30) == 1' | head -30 |
	while read -r f; do cp "$f" "$T/v/"; done
n=$(ls "$T"/v/*.eml | wc -l)
[ "$n" -ge 20 ] && ok "$n captured messages to verify" || not_ok "captured messages to verify" "$n"
out=$("$PY" "$ROOT/tests/dkim_check.py" "$T/v" 2>&1)
is "dkimpy: every check passes" "$?" 0
v=$(printf '%s\n' "$out" | grep -c '(rsa-sha256, .* verifies$')
[ "$v" -ge "$n" ] && ok "rsa-sha256 verifies on all $n" || not_ok "rsa-sha256 verifies" "$out"
sig=$(grep -h -A3 '^DKIM-Signature:' "$T"/v/*.eml | grep -c 'list-unsubscribe')
[ "$sig" -ge "$n" ] && ok "each signature covers the job's own List-Unsubscribe" ||
	not_ok "signatures cover List-Unsubscribe" "$sig of $n"
done_testing
