#!/usr/bin/env bash
# t_engine_dkim.sh - the engine signs what it sends: a dkim block for the
# From domain (RSA-2048 and Ed25519 keys made here with openssl), a
# campaign through volley-sink with capture, and every captured message
# verified by an independent verifier (Debian's python3-dkim, through
# tests/dkim_check.py): both signatures verify, a changed body or signed
# header fails, and the per-job X-Volley-Id header is outside the
# signature (one signature serves every recipient of a shared body).
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"
"$PY" -c 'import dkim, nacl' 2>/dev/null || bail "python3-dkim (and python3-nacl) missing: run make deps"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa.pem" 2>/dev/null ||
	bail "openssl could not make an RSA key"
openssl genpkey -algorithm ed25519 -out "$T/ed.pem" 2>/dev/null ||
	bail "openssl could not make an Ed25519 key"
rsa_p=$(openssl pkey -in "$T/rsa.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
ed_p=$(openssl pkey -in "$T/ed.pem" -pubout -outform DER 2>/dev/null | tail -c 32 | base64 -w0)

start_redis || bail "redis did not start"
start_dns "$(dns_domain dkim.test 127.0.1.91)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink 127.0.1.91 "$SINK_PORT" || bail "volley-sink"
CFG_EXTRA="dkim \"sender.test\" {
  selector = [\"r1\", \"e1\"];
  key = [\"$T/rsa.pem\", \"$T/ed.pem\"];
  algorithm = [\"rsa-sha256\", \"ed25519-sha256\"];
}" write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null || bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"
printf 'From: News <news@sender.test>\r\nTo: you@dkim.test\r\nSubject: signed\r\nMessage-ID: <1@sender.test>\r\n\r\n.a line with a leading dot\r\ntrailing space   \r\n\r\n\r\n' >"$T/msg.eml"
for i in $(seq 1 5); do echo "u$i@dkim.test"; done >"$T/rcpts"
"$VOLLEY" inject -c "$T/volley.conf" --from news@sender.test --msg "$T/msg.eml" --rcpts "$T/rcpts" >/dev/null
printf 'From: other@unsigned.test\r\nSubject: no key\r\n\r\nbody\r\n' >"$T/other.eml"
"$VOLLEY" inject -c "$T/volley.conf" --from other@unsigned.test --msg "$T/other.eml" nokey@dkim.test >/dev/null

run_drain "$T/run.log" 60 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
check "every job has exactly one final event" events check-final --expect 6
is "all 6 delivered" "$(events jobs status=delivered)" 6

mkdir -p "$T/v"
printf 'r1._domainkey.sender.test\tv=DKIM1; k=rsa; p=%s\ne1._domainkey.sender.test\tv=DKIM1; k=ed25519; p=%s\n' \
	"$rsa_p" "$ed_p" >"$T/v/dns.txt"
n=0
for f in "$(sink_dir 127.0.1.91)"/*.eml; do
	grep -q "^Subject: signed" "$f" || continue
	cp "$f" "$T/v/m$n.eml"
	n=$((n + 1))
done
is "5 signed messages captured" "$n" 5
out=$("$PY" "$ROOT/tests/dkim_check.py" "$T/v" 2>&1)
is "dkimpy: every check passes (both signatures, tamper controls, id header outside)" "$?" 0
[ "$(printf '%s\n' "$out" | grep -c '(rsa-sha256, .* verifies$')" -ge 5 ] && ok "rsa-sha256 verifies" ||
	not_ok "rsa-sha256 verifies" "$out"
[ "$(printf '%s\n' "$out" | grep -c '(ed25519-sha256, .* verifies$')" -ge 5 ] && ok "ed25519-sha256 verifies" ||
	not_ok "ed25519-sha256 verifies" "$out"
sig=$(grep -h '^DKIM-Signature:' "$T"/v/*.eml | sort -u | wc -l)
is "one signature per key for all recipients of the shared body" "$sig" 2
nokey=$(grep -l "^Subject: no key" "$(sink_dir 127.0.1.91)"/*.eml | head -1)
! grep -q '^DKIM-Signature:' "$nokey" && ok "no key for the From domain: sent unsigned" ||
	not_ok "no key for the From domain: sent unsigned"
done_testing
