#!/usr/bin/env bash
# t_engine_headers.sh - the headers bulk senders need, and 8-bit safety.
#
# Through volley-sink (capture) with a dkim block (RSA-2048 + Ed25519):
#  - a message without Message-ID and Date gets both; one that has them
#    keeps them, byte for byte, and its own List-Unsubscribe (no second
#    one, no Post);
#  - unsubscribe_url + unsubscribe_mailto give List-Unsubscribe
#    "<mailto:...>, <https://...>" and List-Unsubscribe-Post: One-Click;
#    the smtp.unsubscribe_url template serves jobs without them;
#  - Feedback-ID: campaign:tenant:pool:sender, or the job's feedback_id;
#  - every added header is in h= and every signature verifies with
#    python3-dkim (tests/dkim_check.py: plus tamper controls); jobs of a
#    shared body with the same per-job headers share one signature, a job
#    with its own unsubscribe URL has its own;
#  - a hostile unsubscribe_url (CRLF) ends `failed`, one event, not sent.
# Through Postfix's smtp-sink -8 (no 8BITMIME): an 8-bit body ends
# `bounced` 5.6.3 protocol_error and nothing reaches the sink; a 7-bit one
# to the same server is delivered.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"
[ -x /usr/sbin/smtp-sink ] || bail "smtp-sink missing: run make deps"
"$PY" -c 'import dkim, nacl' 2>/dev/null || bail "python3-dkim (and python3-nacl) missing: run make deps"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa.pem" 2>/dev/null ||
	bail "openssl could not make an RSA key"
openssl genpkey -algorithm ed25519 -out "$T/ed.pem" 2>/dev/null ||
	bail "openssl could not make an Ed25519 key"
rsa_p=$(openssl pkey -in "$T/rsa.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
ed_p=$(openssl pkey -in "$T/ed.pem" -pubout -outform DER 2>/dev/null | tail -c 32 | base64 -w0)

start_redis || bail "redis did not start"
start_dns "$(dns_domain hdr.test 127.0.1.95)" "$(dns_domain no8.test 127.0.1.96)" ||
	bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink 127.0.1.95 "$SINK_PORT" || bail "volley-sink"
start_smtp_sink 127.0.1.96 "$SINK_PORT" -8 || bail "smtp-sink -8"
CFG_SMTP_EXTRA='feedback_id_sender = "esp1";
  unsubscribe_url = "https://u.test/t?c={campaign}&t={tenant}";' \
CFG_EXTRA="dkim \"sender.test\" {
  selector = [\"r1\", \"e1\"];
  key = [\"$T/rsa.pem\", \"$T/ed.pem\"];
  algorithm = [\"rsa-sha256\", \"ed25519-sha256\"];
}" write_config "$T/volley.conf"
"$VOLLEY" check-config -c "$T/volley.conf" >/dev/null ||
	bail "config: $("$VOLLEY" check-config -c "$T/volley.conf" 2>&1)"

printf 'From: News <news@sender.test>\r\nTo: you@hdr.test\r\nSubject: bare\r\n\r\nno id, no date\r\n' >"$T/bare.eml"
printf 'From: News <news@sender.test>\r\nSubject: own\r\nMessage-ID: <own-1@sender.test>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0100\r\nList-Unsubscribe: <mailto:own@sender.test>\r\n\r\nmine\r\n' >"$T/own.eml"
printf 'From: News <news@sender.test>\r\nSubject: shared\r\n\r\none body, many jobs\r\n' >"$T/shared.eml"
printf 'From: f@sender.test\r\nSubject: caf\xc3\xa9\r\n\r\nna\xc3\xafve 8-bit body\r\n' >"$T/8bit.eml"
printf 'From: f@sender.test\r\nSubject: plain\r\n\r\n7-bit body\r\n' >"$T/7bit.eml"
redis_cli -x SET volley:msg:shared <"$T/shared.eml" >/dev/null

add_job() {	# ID TO MSGFILE [FIELD VALUE]...
	local id=$1 to=$2 msg=$3
	shift 3
	redis_cli -x XADD volley:jobs '*' id "$id" to "$to" from news@sender.test "$@" msg <"$msg" >/dev/null
}
add_ref() {	# ID TO [FIELD VALUE]...
	local id=$1 to=$2
	shift 2
	redis_cli XADD volley:jobs '*' id "$id" to "$to" from news@sender.test msg_ref volley:msg:shared \
		campaign autumn tenant acme "$@" >/dev/null
}
add_job bare a@hdr.test "$T/bare.eml" campaign spring tenant acme \
	unsubscribe_url 'https://u.test/u?id=bare' unsubscribe_mailto 'mailto:unsub@sender.test?subject=bare'
add_job own b@hdr.test "$T/own.eml" unsubscribe_url 'https://u.test/u?id=own' feedback_id 'x:y:z'
add_ref ref1 r1@hdr.test unsubscribe_url 'https://u.test/u?id=ref1'
add_ref ref2 r2@hdr.test unsubscribe_url 'https://u.test/u?id=ref2'
add_ref ref3 r3@hdr.test
add_ref ref4 r4@hdr.test
redis_cli XADD volley:jobs '*' id evil to e@hdr.test from news@sender.test msg_ref volley:msg:shared \
	unsubscribe_url "$(printf 'https://u.test/x\r\nBcc: victim@hdr.test')" >/dev/null
add_job eight u8@no8.test "$T/8bit.eml"
add_job seven u7@no8.test "$T/7bit.eml"

run_drain "$T/run.log" 90 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
[ "$DRAIN_RC" = 0 ] || show_log "$T/run.log"
check "every job has exactly one final event" events check-final --expect 9
grep -q -E "panic|AddressSanitizer|runtime error" "$T/run.log" && not_ok "no crash in the log" ||
	ok "no crash in the log"
is "7 delivered (6 to volley-sink, 1 to smtp-sink)" "$(events jobs status=delivered)" 7

capture() { grep -l -a "^X-Sink-Rcpt-To: <$1>" "$(sink_dir 127.0.1.95)"/*.eml 2>/dev/null | head -1; }
# hdr FILE NAME: the field's value (unfolded), first instance
hdr() { "$PY" - "$1" "$2" <<'EOF'
import email.parser, email.policy, sys
m = email.parser.BytesParser(policy=email.policy.compat32).parse(open(sys.argv[1], "rb"))
v = m.get(sys.argv[2])
print("" if v is None else " ".join(str(v).split()))
EOF
}
count_hdr() { grep -a -c -i "^$2:" "$1"; }

# --- Message-ID and Date -----------------------------------------------------
f=$(capture a@hdr.test)
[ -n "$f" ] || bail "bare: not captured"
case "$(hdr "$f" Message-ID)" in "<"*"@sender.test>") ok "bare: Message-ID added on the From domain" ;;
*) not_ok "bare: Message-ID added" "$(hdr "$f" Message-ID)" ;; esac
d=$(hdr "$f" Date)
"$PY" -c 'import email.utils,sys,time; t=email.utils.parsedate_tz(sys.argv[1]); sys.exit(0 if t and t[9]==0 and abs(email.utils.mktime_tz(t)-time.time())<600 else 1)' "$d" &&
	ok "bare: Date added, RFC 5322, UTC, now ($d)" || not_ok "bare: Date added" "$d"
is "bare: one Message-ID" "$(count_hdr "$f" Message-ID)" 1
is "bare: one Date" "$(count_hdr "$f" Date)" 1
g=$(capture b@hdr.test)
is "own: Message-ID kept" "$(hdr "$g" Message-ID)" "<own-1@sender.test>"
is "own: Date kept" "$(hdr "$g" Date)" "Tue, 01 Dec 2026 10:00:00 +0100"
is "own: one Message-ID, one Date" "$(count_hdr "$g" Message-ID)$(count_hdr "$g" Date)" 11

# --- List-Unsubscribe, Post, Feedback-ID ------------------------------------
is "bare: List-Unsubscribe, mailto first" "$(hdr "$f" List-Unsubscribe)" \
	"<mailto:unsub@sender.test?subject=bare>, <https://u.test/u?id=bare>"
is "bare: List-Unsubscribe-Post" "$(hdr "$f" List-Unsubscribe-Post)" "List-Unsubscribe=One-Click"
is "bare: Feedback-ID campaign:tenant:pool:sender" "$(hdr "$f" Feedback-ID)" "spring:acme:default:esp1"
awk 'length($0) > 79 { bad = 1 } END { exit bad }' "$f" && ok "bare: no line over 78 columns" ||
	not_ok "bare: no line over 78 columns" "$(awk 'length($0) > 79' "$f" | head -3)"
is "own: its own List-Unsubscribe only" "$(count_hdr "$g" List-Unsubscribe)" 1
is "own: List-Unsubscribe is the message's" "$(hdr "$g" List-Unsubscribe)" "<mailto:own@sender.test>"
is "own: no Post for a List-Unsubscribe that is not ours" "$(count_hdr "$g" List-Unsubscribe-Post)" 0
is "own: feedback_id overrides" "$(hdr "$g" Feedback-ID)" "x:y:z"
r3=$(capture r3@hdr.test)
is "ref3: the smtp.unsubscribe_url template" "$(hdr "$r3" List-Unsubscribe)" "<https://u.test/t?c=autumn&t=acme>"
is "ref3: Post with the template's https URL" "$(hdr "$r3" List-Unsubscribe-Post)" "List-Unsubscribe=One-Click"
r1=$(capture r1@hdr.test)
is "ref1: its own URL" "$(hdr "$r1" List-Unsubscribe)" "<https://u.test/u?id=ref1>"

# --- DKIM: h= and independent verification --------------------------------
hlist() { "$PY" - "$1" <<'EOF'
import email.parser, email.policy, re, sys
m = email.parser.BytesParser(policy=email.policy.compat32).parse(open(sys.argv[1], "rb"))
for s in m.get_all("DKIM-Signature") or []:
    s = re.sub(r"\s+", "", str(s))
    print(re.search(r"(?:^|;)h=([^;]*)", s).group(1))
EOF
}
want="message-id date list-unsubscribe list-unsubscribe-post feedback-id"
for name in bare ref1 ref3; do
	case $name in bare) file=$f ;; ref1) file=$r1 ;; ref3) file=$r3 ;; esac
	h=$(hlist "$file" | head -1)
	miss=""
	for w in $want; do echo ":$h:" | tr 'A-Z' 'a-z' | grep -q ":$w:" || miss="$miss $w"; done
	[ -z "$miss" ] && ok "$name: h= signs the added headers ($h)" || not_ok "$name: h= signs the added headers" "missing:$miss h=$h"
done
h=$(hlist "$g" | head -1)
echo ":$h:" | tr 'A-Z' 'a-z' | grep -q ":list-unsubscribe:list-unsubscribe:" &&
	not_ok "own: h= lists one List-Unsubscribe" "$h" || ok "own: h= lists one List-Unsubscribe"

mkdir -p "$T/v"
printf 'r1._domainkey.sender.test\tv=DKIM1; k=rsa; p=%s\ne1._domainkey.sender.test\tv=DKIM1; k=ed25519; p=%s\n' \
	"$rsa_p" "$ed_p" >"$T/v/dns.txt"
n=0
for r in a b r1 r2 r3 r4; do
	c=$(capture "$r@hdr.test")
	[ -n "$c" ] && cp "$c" "$T/v/$r.eml" && n=$((n + 1))
done
is "6 signed messages captured" "$n" 6
out=$("$PY" "$ROOT/tests/dkim_check.py" "$T/v" 2>&1)
is "dkimpy: every signature verifies (and the tamper controls fail)" "$?" 0
[ "$(printf '%s\n' "$out" | grep -c '(rsa-sha256, .* verifies$')" -ge 6 ] && ok "rsa-sha256 verifies on all 6" ||
	not_ok "rsa-sha256 verifies on all 6" "$out"
[ "$(printf '%s\n' "$out" | grep -c '(ed25519-sha256, .* verifies$')" -ge 6 ] && ok "ed25519-sha256 verifies on all 6" ||
	not_ok "ed25519-sha256 verifies on all 6" "$out"
# a changed List-Unsubscribe must break the signature (it is signed)
sed 's|u?id=ref1|u?id=ref9|' "$T/v/r1.eml" >"$T/tampered.eml"
"$PY" -c 'import dkim,sys
recs={l.split("\t")[0]:l.rstrip("\n").split("\t")[1].encode() for l in open(sys.argv[2])}
d=dkim.DKIM(open(sys.argv[1],"rb").read())
sys.exit(0 if d.verify(dnsfunc=lambda n,timeout=5: recs.get(n.decode().rstrip("."))) else 1)' \
	"$T/tampered.eml" "$T/v/dns.txt" 2>/dev/null &&
	not_ok "a changed List-Unsubscribe fails verification" ||
	ok "a changed List-Unsubscribe fails verification"

# sigs FILE: the b= values of its signatures (the whole folded fields)
sigs() { "$PY" - "$1" <<'EOF'
import email.parser, email.policy, re, sys
m = email.parser.BytesParser(policy=email.policy.compat32).parse(open(sys.argv[1], "rb"))
print(" ".join(re.search(r"(?:^|;)b=([^;]*)", re.sub(r"\s+", "", str(s))).group(1)
               for s in m.get_all("DKIM-Signature") or []))
EOF
}
[ -n "$(sigs "$T/v/r3.eml")" ] && [ "$(sigs "$T/v/r3.eml")" = "$(sigs "$T/v/r4.eml")" ] &&
	ok "ref3 and ref4 (same per-job headers) share one signature" ||
	not_ok "ref3 and ref4 (same per-job headers) share one signature"
[ "$(sigs "$T/v/r1.eml")" != "$(sigs "$T/v/r2.eml")" ] && [ "$(sigs "$T/v/r1.eml")" != "$(sigs "$T/v/r3.eml")" ] &&
	ok "ref1 and ref2 (own URLs) are signed per job" || not_ok "ref1 and ref2 are signed per job"
is "a shared body has one Message-ID" "$(for r in r1 r2 r3 r4; do hdr "$T/v/$r.eml" Message-ID; done | sort -u | wc -l)" 1

# --- hostile field -------------------------------------------------------------
is "evil: failed" "$(events final evil)" failed
case "$(events field evil reply)" in *"invalid unsubscribe_url: CR, LF or NUL"*) ok "evil: the reason names the field" ;;
*) not_ok "evil: the reason names the field" "$(events field evil reply)" ;; esac
is "evil: one event" "$(events count id=evil)" 1
[ -z "$(capture e@hdr.test)" ] && ok "evil: not sent" || not_ok "evil: not sent"
grep -a -q -i '^Bcc:' "$(sink_dir 127.0.1.95)"/*.eml && not_ok "no Bcc injected anywhere" || ok "no Bcc injected anywhere"

# --- 8BITMIME --------------------------------------------------------------------
is "eight: bounced" "$(events final eight)" bounced
is "eight: enh 5.6.3" "$(events field eight enh)" 5.6.3
is "eight: class protocol_error" "$(events field eight class)" protocol_error
is "eight: one event" "$(events count id=eight)" 1
is "seven: delivered through the same server" "$(events final seven)" delivered
is "smtp-sink -8 got the 7-bit message only" "$(sink_count 127.0.1.96)" 1
grep -a -q 'na.ve 8-bit' "$(sink_dir 127.0.1.96)"/* 2>/dev/null && not_ok "the 8-bit body was not sent" ||
	ok "the 8-bit body was not sent"
done_testing
