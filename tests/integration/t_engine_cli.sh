#!/usr/bin/env bash
# t_engine_cli.sh - the documented command line: check-config on good
# and broken files (errors as file:line), --help texts, inject (count
# printed, entries as the contract describes them), status showing the
# queue depth, classify naming the class.
. "$(dirname "$0")/../lib.sh"
need_volley

start_redis || bail "redis did not start"
start_dns "$(dns_domain d0.test 127.0.1.1)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
write_config "$T/good.conf"

# --- check-config ---------------------------------------------------------
out=$("$VOLLEY" check-config -c "$T/good.conf" 2>&1)
rc=$?
is "check-config on the lab config exits 0" "$rc" 0
[ "$rc" = 0 ] || note "$out"

# syntax error: an unterminated block (line 4 opens it)
cat >"$T/syntax.conf" <<'EOF'
instance = "x";
redis { url = "redis://127.0.0.1:6379/0"; }
dns { servers = ["127.0.0.1:5353"]; }
smtp {
  port = 25;
  ehlo = "mta.test"
EOF
out=$("$VOLLEY" check-config -c "$T/syntax.conf" 2>&1)
rc=$?
[ "$rc" -ne 0 ] && ok "check-config on a syntax error exits non-zero ($rc)" ||
	not_ok "check-config on a syntax error exits non-zero" "$out"
case "$out" in *syntax.conf:[0-9]*) ok "syntax error reported as file:line" ;;
*) not_ok "syntax error reported as file:line" "$out" ;; esac

# semantic errors, each alone on its line
cat >"$T/bad.conf" <<'EOF'
instance = "x";
redis { url = "redis://127.0.0.1:6379/0"; }
smtp {
  port = 99999;
  retry = [1s, 2s];
}
site "s" {
  mx = ["*.example.com"];
  max_rate = "lots/fortnight";
}
EOF
out=$("$VOLLEY" check-config -c "$T/bad.conf" 2>&1)
rc=$?
[ "$rc" -ne 0 ] && ok "check-config on bad values exits non-zero ($rc)" ||
	not_ok "check-config on bad values exits non-zero" "$out"
case "$out" in *bad.conf:4*) ok "bad port reported at bad.conf:4" ;;
*) not_ok "bad port reported at bad.conf:4" "$out" ;; esac
case "$out" in *bad.conf:9*) ok "bad rate reported at bad.conf:9" ;;
*) not_ok "bad rate reported at bad.conf:9" "$out" ;; esac

out=$("$VOLLEY" check-config -c "$T/nonexistent.conf" 2>&1)
[ $? -ne 0 ] && ok "check-config on a missing file exits non-zero" ||
	not_ok "check-config on a missing file exits non-zero" "$out"

# --- help -------------------------------------------------------------------
out=$("$VOLLEY" --help 2>&1)
rc=$?
is "volley --help exits 0" "$rc" 0
missing=""
for w in run inject status check-config classify; do
	case "$out" in *"$w"*) ;; *) missing="$missing $w" ;; esac
done
is "volley --help lists every command" "${missing:-none}" none
out=$("$VOLLEY" run --help 2>&1)
case "$out" in *--drain*) ok "run --help mentions --drain" ;; *) not_ok "run --help mentions --drain" "$out" ;; esac
case "$out" in *-c*) ok "run --help mentions -c" ;; *) not_ok "run --help mentions -c" "$out" ;; esac
out=$("$VOLLEY" inject --help 2>&1)
missing=""
for w in --from --msg --rcpts --pool --campaign; do
	case "$out" in *"$w"*) ;; *) missing="$missing $w" ;; esac
done
is "inject --help lists its options" "${missing:-none}" none
"$VOLLEY" no-such-command >/dev/null 2>&1
[ $? -ne 0 ] && ok "an unknown command exits non-zero" || not_ok "an unknown command exits non-zero"

# --- inject + status --------------------------------------------------------
printf 'From: f@sender.test\r\nSubject: cli\r\n\r\nbody\r\n' >"$T/msg.eml"
printf 'a1@d0.test\na2@d0.test\n\na3@d0.test\n' >"$T/rcpts"
out=$("$VOLLEY" inject -c "$T/good.conf" --from f@sender.test --msg "$T/msg.eml" \
	--campaign spring --pool default --rcpts "$T/rcpts" b1@d0.test b2@d0.test 2>&1)
rc=$?
is "inject exits 0" "$rc" 0
case "$out" in *5*) ok "inject prints how many were queued ($out)" ;; *) not_ok "inject prints 5" "$out" ;; esac
is "5 entries in volley:jobs (blank lines skipped)" "$(redis_cli XLEN volley:jobs)" 5
"$PY" - "$REDIS_PORT" "$LAB_DIR" >"$T/entries" <<'EOF'
import sys
sys.path.insert(0, sys.argv[2])
from events import Redis
r = Redis("127.0.0.1", int(sys.argv[1]))
for eid, kv in r.cmd("XRANGE", "volley:jobs", "-", "+"):
    f = dict(zip(kv[::2], kv[1::2]))
    body = f.get("msg") or (r.cmd("GET", f["msg_ref"]) if "msg_ref" in f else None) or ""
    print(f.get("to"), f.get("from"), f.get("campaign"), f.get("pool"),
          "body-ok" if "Subject: cli" in body else "body-missing")
EOF
is "entries carry to/from/campaign/pool and the message" "$(sort "$T/entries" | tr '\n' '|')" \
	"a1@d0.test f@sender.test spring default body-ok|a2@d0.test f@sender.test spring default body-ok|a3@d0.test f@sender.test spring default body-ok|b1@d0.test f@sender.test spring default body-ok|b2@d0.test f@sender.test spring default body-ok|"

out=$("$VOLLEY" status -c "$T/good.conf" 2>&1)
rc=$?
is "status exits 0" "$rc" 0
echo "$out" | grep -Eiq '(queue|unread|depth|jobs|waiting|backlog)[^0-9]*\b5\b' &&
	ok "status shows the queue depth (5)" || not_ok "status shows the queue depth (5)" "$out"

out=$("$VOLLEY" inject -c "$T/good.conf" --from f@sender.test --msg "$T/nonexistent.eml" x@d0.test 2>&1)
[ $? -ne 0 ] && ok "inject with a missing --msg file exits non-zero" || not_ok "inject with a missing --msg file fails" "$out"
is "and queues nothing" "$(redis_cli XLEN volley:jobs)" 5

# --- classify ---------------------------------------------------------------
out=$("$VOLLEY" classify "550 5.1.1 The email account that you tried to reach does not exist." 2>&1)
case "$out" in *invalid_recipient*) ok "classify: 5.1.1 -> invalid_recipient" ;; *) not_ok "classify: invalid_recipient" "$out" ;; esac
out=$("$VOLLEY" classify -c "$T/good.conf" "452 4.2.2 The email account that you tried to reach is over quota." 2>&1)
case "$out" in *mailbox_full*) ok "classify -c: 4.2.2 over quota -> mailbox_full" ;; *) not_ok "classify: mailbox_full" "$out" ;; esac

done_testing
