#!/usr/bin/env bash
# t_dkim_verify.sh - volley's DKIM signatures checked by an independent
# verifier (Debian's python3-dkim, through tests/dkim_check.py).
#
# Keys are made here with `openssl genpkey` (RSA-2048 and Ed25519, PEM as
# an operator would make them). The unit test binary, in its --write mode,
# loads them through a config of dkim blocks (both algorithms; relaxed and
# simple; a subdomain signer; a default signer), signs messages from the
# dot-stuffed form the engine keeps (long lines, trailing white space,
# empty and missing bodies, leading dots, 8-bit headers and body, folded
# headers, bare LF, and 100 random messages made of the bytes
# canonicalisation cares about) and writes them as a receiver sees them, with the
# per-job X-Volley-Id header between the signatures and the message.
# Every signature must verify; a changed body or signed header must not;
# another job id must (the id header is not signed). Then `volley
# check-config` on dkim blocks: a missing key is an error with file:line.
. "$(dirname "$0")/../lib.sh"
need_volley

"$PY" -c 'import dkim, nacl' 2>/dev/null ||
	bail "python3-dkim (and python3-nacl) missing: run make deps"
DRIVER=$BUILD_DIR/tests/test_dkim
if [ ! -x "$DRIVER" ] && [ "$VOLLEY_BUILD" = build ]; then
	make -s -C "$ROOT" build/tests/test_dkim >/dev/null || bail "cannot build $DRIVER"
fi
[ -x "$DRIVER" ] || bail "$DRIVER not built (make unit)"

# --- keys as an operator makes them -----------------------------------------
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa.pem" 2>/dev/null ||
	bail "openssl could not make an RSA key"
openssl genpkey -algorithm ed25519 -out "$T/ed.pem" 2>/dev/null ||
	bail "openssl could not make an Ed25519 key"

# --- sign, then verify with dkimpy -------------------------------------------
mkdir -p "$T/out"
check "the driver signs every message" "$DRIVER" --write "$T/out" "$T/rsa.pem" "$T/ed.pem"
n=$(ls "$T/out"/*.eml 2>/dev/null | wc -l)
[ "$n" -ge 130 ] && ok "$n signed messages written" || not_ok "signed messages written" "got $n"

out=$("$PY" "$ROOT/tests/dkim_check.py" "$T/out" 2>&1)
rc=$?
verified=$(printf '%s\n' "$out" | grep -c '^ok - .* verifies$' || true)
rsa=$(printf '%s\n' "$out" | grep -c '^ok - .*(rsa-sha256, .* verifies$' || true)
ed=$(printf '%s\n' "$out" | grep -c '^ok - .*(ed25519-sha256, .* verifies$' || true)
simple=$(printf '%s\n' "$out" | grep -c '^ok - .*simple/simple.* verifies$' || true)
bad=$(printf '%s\n' "$out" | grep '^not ok' || true)
is "dkimpy: every check passes" "$rc" 0
[ -z "$bad" ] || not_ok "dkimpy failures" "$(printf '%s\n' "$out" | grep -A2 '^not ok' | head -30)"
[ "$rsa" -ge 10 ] && ok "rsa-sha256 signatures verify ($rsa)" || not_ok "rsa-sha256 signatures verify" "got $rsa"
[ "$ed" -ge 10 ] && ok "ed25519-sha256 signatures verify ($ed)" || not_ok "ed25519-sha256 signatures verify" "got $ed"
[ "$simple" -ge 10 ] && ok "simple/simple signatures verify ($simple)" || not_ok "simple/simple signatures verify" "got $simple"
for m in plain long_lines trailing_ws empty_body no_body leading_dot eightbit folded bare_lf; do
	c=$(printf '%s\n' "$out" | grep -c "^ok - $m\..* verifies\$" || true)
	[ "$c" -ge 4 ] && ok "$m: $c signatures verify" || not_ok "$m: signatures verify" "got $c"
done
c=$(printf '%s\n' "$out" | grep -c '^ok - random.* verifies$' || true)
[ "$c" -ge 100 ] && ok "100 random messages (white space, dots, folds, 8-bit, bare LF/CR): $c signatures verify" ||
	not_ok "random messages: signatures verify" "got $c"
note "$verified signatures verified by dkimpy"

# the default signer signs mail from a domain without a key of its own
grep -q 'd=esp.example' "$T/out/plain.unknown.example.eml" &&
	ok "a From domain without a key is signed by the default signer" ||
	not_ok "a From domain without a key is signed by the default signer"
grep -q 'd=ed.example' "$T/out/plain.news.ed.example.eml" &&
	ok "a subdomain is signed by its parent with subdomains = true" ||
	not_ok "a subdomain is signed by its parent with subdomains = true"

# --- check-config -------------------------------------------------------------
cat >"$T/good.conf" <<EOF
dkim "example.com" {
  selector = ["rsa1", "ed1"];
  key = ["rsa.pem", "ed.pem"];          # relative to this file
  algorithm = ["rsa-sha256", "ed25519-sha256"];
}
EOF
out=$(cd / && "$VOLLEY" check-config -c "$T/good.conf" 2>&1)
rc=$?
is "check-config accepts dkim blocks with keys relative to the file" "$rc" 0
[ "$rc" = 0 ] || note "$out"

cat >"$T/bad.conf" <<EOF
dkim "example.com" {
  selector = "s1";
  key = "$T/missing.pem";
}
dkim "example.org" {
  selector = "s1";
  key = "$T/ed.pem";
  algorithm = "rsa-sha256";
}
EOF
out=$("$VOLLEY" check-config -c "$T/bad.conf" 2>&1)
rc=$?
[ "$rc" != 0 ] && ok "check-config refuses a missing key" || not_ok "check-config refuses a missing key" "$out"
printf '%s\n' "$out" | grep -qF "$T/bad.conf:3: dkim \"example.com\": key \"$T/missing.pem\": cannot open the key file" &&
	ok "a missing key file is reported with file:line" ||
	not_ok "a missing key file is reported with file:line" "$out"
printf '%s\n' "$out" | grep -qF "$T/bad.conf:7: dkim \"example.org\": key \"$T/ed.pem\": an Ed25519 key cannot sign rsa-sha256" &&
	ok "a key of the wrong algorithm is reported with file:line" ||
	not_ok "a key of the wrong algorithm is reported with file:line" "$out"

done_testing
