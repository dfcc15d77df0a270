#!/usr/bin/env bash
# t_engine_early.sh - a peer that answers the final dot before it has read
# the body, over STARTTLS (tests/peers/early_tls.py). The transaction must
# stay open until the body's send is reported: before the fix the engine
# took the early reply as the end, started the next message and freed the
# first one's header and body while its TLS send still read from them (a
# use-after-free that `make asan` catches, and freed heap encrypted and
# sent to the peer). Every job still ends exactly once.
. "$(dirname "$0")/../lib.sh"
need_volley

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=mx.early.test -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null ||
	bail "openssl could not make a certificate"
start_redis || bail "redis did not start"
start_dns "$(dns_domain early.test 127.0.1.95)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
"$PY" "$ROOT/tests/peers/early_tls.py" 127.0.1.95 "$SINK_PORT" "$T/cert.pem" "$T/key.pem" \
	"$T/peer.log" 2>>"$T/peer.err" &
LAB_PIDS+=("$!")
wait_listen 127.0.1.95 "$SINK_PORT" 10 || bail "the early peer did not start: $(cat "$T/peer.err")"
CFG_EXTRA='domain "early.test" { max_connections = 1; }' CFG_MAX_AGE=20s write_config "$T/volley.conf"
"$PY" - "$T/msg.eml" <<'PYEOF'
import sys
with open(sys.argv[1], "w") as f:
    f.write("From: a@src.test\r\nTo: b@early.test\r\nSubject: big\r\n\r\n")
    for i in range(150000):
        f.write("Z" * 70 + "\r\n")
PYEOF
"$VOLLEY" inject -c "$T/volley.conf" --from a@src.test --inline --msg "$T/msg.eml" \
	u1@early.test u2@early.test u3@early.test >/dev/null

run_drain "$T/run.log" 60 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
grep -q "early reply sent" "$T/peer.log" && ok "the peer answered before the end of the data" ||
	not_ok "the peer answered before the end of the data" "$(cat "$T/peer.log" "$T/peer.err" 2>/dev/null)"
grep -q -E "AddressSanitizer|runtime error|panic" "$T/run.log" &&
	not_ok "no memory error" "$(show_log "$T/run.log")" || ok "no memory error"
check "every job has exactly one final event" events check-final --expect 3
done_testing
