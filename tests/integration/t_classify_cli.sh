#!/usr/bin/env bash
# t_classify_cli.sh - `volley classify`: the class, the rule and where the
# rule is written (file:line), with the built-in rules, with the shipped
# pools/bounce-rules.conf named as smtp.classify_rules, with an operator
# file tried first; --stage; a broken rule file is an error naming its
# line. Needs no servers.
. "$(dirname "$0")/../lib.sh"
need_volley

RULES="$ROOT/pools/bounce-rules.conf"
line_of() { grep -n "^$1 " "$RULES" | head -1 | cut -d: -f1; }

out=$("$VOLLEY" classify "550 5.1.1 <a@example.org>: Recipient address rejected: User unknown" 2>&1 | head -1)
is "built-in rule: class, rule, (built-in):LINE of the shipped file" "$out" \
  "invalid_recipient (rule enh-5.1.1 at (built-in):$(line_of enh-5.1.1))"

out=$("$VOLLEY" classify "250 2.0.0 Ok" 2>&1 | head -1)
is "no rule: default, no location" "$out" "unknown (rule default)"
out=$("$VOLLEY" classify "250 2.0.0 Ok" 2>&1 | sed -n 2p)
is "the second line: the shaping rule, none without shaping_rule blocks" "$out" "shaping: none"

out=$("$VOLLEY" classify --stage greeting "554 mx.example.org ESMTP not accepting messages" 2>&1 | head -1)
is "--stage greeting selects a stage rule" "$out" \
  "reputation_block (rule greeting-refused at (built-in):$(line_of greeting-refused))"
out=$("$VOLLEY" classify "554 mx.example.org ESMTP not accepting messages" 2>&1 | head -1)
is "without --stage the stage rule does not apply" "$out" \
  "unknown (rule default-5xx at (built-in):$(line_of default-5xx))"

printf 'smtp { classify_rules = "%s"; }\n' "$RULES" >"$T/shipped.conf"
out=$("$VOLLEY" classify -c "$T/shipped.conf" "452 4.2.2 The email account that you tried to reach is over quota." 2>&1 | head -1)
is "the shipped file as smtp.classify_rules: its own path and line" "$out" \
  "mailbox_full (rule gmail-over-quota at $RULES:$(line_of gmail-over-quota))"

printf '# site rules\nacme-policy   reputation_block  code=550 enh=5.7.1 text="not authorized"\n' >"$T/site.rules"
printf 'smtp { classify_rules = "%s"; }\n' "$T/site.rules" >"$T/site.conf"
out=$("$VOLLEY" classify -c "$T/site.conf" "550 5.7.1 Delivery not authorized" 2>&1 | head -1)
is "an operator rule comes first" "$out" "reputation_block (rule acme-policy at $T/site.rules:2)"
out=$("$VOLLEY" classify -c "$T/site.conf" "550 5.1.1 nobody" 2>&1 | head -1)
is "then the built-ins" "$out" "invalid_recipient (rule enh-5.1.1 at (built-in):$(line_of enh-5.1.1))"

printf 'ok spam_content text=x\nbad spam_content stage=nowhere\n' >"$T/bad.rules"
printf 'smtp { classify_rules = "%s"; }\n' "$T/bad.rules" >"$T/bad.conf"
out=$("$VOLLEY" check-config -c "$T/bad.conf" 2>&1)
rc=$?
[ "$rc" -ne 0 ] && ok "check-config refuses a bad rule file" || not_ok "check-config refuses a bad rule file" "$out"
case "$out" in *"$T/bad.rules:2: bad or repeated stage="*) ok "the error names file:line" ;;
  *) not_ok "the error names file:line" "$out" ;; esac
out=$("$VOLLEY" classify -c "$T/bad.conf" "550 x" 2>&1)
rc=$?
[ "$rc" -ne 0 ] && ok "classify with a bad rule file exits non-zero" || not_ok "classify with a bad rule file" "$out"

done_testing
