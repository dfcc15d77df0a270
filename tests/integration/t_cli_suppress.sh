#!/usr/bin/env bash
# t_cli_suppress.sh - the suppression lists, global and per tenant.
# `volley suppress add|remove|check|list|import|export [--tenant T]`: a
# round trip through every action, with addresses stored as the engine
# compares them (lower case, A-label domain). Then the engine: a job to an
# address on the global list ends `suppressed` whatever its tenant; one on
# tenant A's list stops tenant A's jobs only (tenant B's and a job without
# a tenant are delivered); a 550 5.1.1 for a tenant-A job adds the address
# to A's list, not the global one, and a job without a tenant still adds
# to the global list. `check` shows the reason and time the engine wrote
# (suppressed_info[:TENANT]); `remove` deletes them with the address.
. "$(dirname "$0")/../lib.sh"
need_volley
[ -x "$SINK" ] || bail "volley-sink not built ($SINK)"

start_redis || bail "redis did not start"
start_dns "$(dns_domain supp.test 127.0.1.92)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_volley_sink 127.0.1.92 "$SINK_PORT" || bail "volley-sink"
write_config "$T/volley.conf"
C="$T/volley.conf"
S() { "$VOLLEY" suppress -c "$C" "$@"; }

# --- the command line ---
S --help | grep -q "^SYNOPSIS" && ok "volley suppress --help" || not_ok "volley suppress --help"
out=$(S add Bob@Example.COM 'José@Bücher.DE.' 2>&1)
is "add exits 0" "$?" 0
case "$out" in *"added 2 address(es) to volley:suppressed"*) ok "add says what it did" ;;
*) not_ok "add says what it did" "$out" ;; esac
is "stored as the engine compares them" "$(redis_cli SMEMBERS volley:suppressed | sort | tr '\n' ' ')" \
	"bob@example.com josé@xn--bcher-kva.de "
out=$(S add bob@example.com)
case "$out" in *"added 0 address(es)"*"1 already there"*) ok "adding again changes nothing" ;;
*) not_ok "adding again changes nothing" "$out" ;; esac
S add ok@supp.test 'bad@@x' >/dev/null 2>"$T/err"
is "a malformed address: exit 1" "$?" 1
grep -q "bad@@x" "$T/err" && ok "the error names the malformed address" ||
	not_ok "the error names the malformed address" "$(cat "$T/err")"
is "a malformed address: nothing added" "$(redis_cli SISMEMBER volley:suppressed ok@supp.test)" 0
S check BOB@example.com 'josé@bücher.de' >"$T/out"
is "check of listed addresses: exit 0" "$?" 0
grep -q "^bob@example.com (given as BOB@example.com): suppressed on volley:suppressed" "$T/out" &&
	ok "check says where an address is listed" || not_ok "check says where it is listed" "$(cat "$T/out")"
S check bob@example.com nobody@supp.test >"$T/out"
is "check with an unlisted address: exit 3" "$?" 3
grep -q "^nobody@supp.test: not suppressed" "$T/out" && ok "check says: not suppressed" ||
	not_ok "check says: not suppressed" "$(cat "$T/out")"
out=$(S remove bob@example.com gone@supp.test)
case "$out" in *"removed 1 address(es) from volley:suppressed (1 not there)"*) ok "remove" ;;
*) not_ok "remove" "$out" ;; esac
S check bob@example.com >/dev/null
is "removed: check exits 3" "$?" 3

{
	echo "# bounces from the old system"
	echo ""
	echo "  One@Import.test  "
	printf 'two@import.test\r\n'
	echo "not-an-address"
	for i in $(seq 1 2500); do echo "bulk$i@import.test"; done
} >"$T/import.txt"
out=$(S import "$T/import.txt" 2>"$T/err")
is "import with a malformed line: exit 1" "$?" 1
case "$out" in *"2502 address(es)"*"2502 added"*"1 malformed"*) ok "import reports what it did" ;;
*) not_ok "import reports what it did" "$out" ;; esac
grep -q "import.txt:5: 'not-an-address'" "$T/err" && ok "the malformed line is named FILE:LINE" ||
	not_ok "the malformed line is named FILE:LINE" "$(cat "$T/err")"
is "imported: 2502 + 1 earlier" "$(redis_cli SCARD volley:suppressed)" 2503
S list | sort >"$T/list"
is "list: one address per line, every one" "$(wc -l <"$T/list")" 2503
grep -qx "one@import.test" "$T/list" && ok "list shows imported addresses lower-cased" ||
	not_ok "list shows imported addresses lower-cased"
S export >"$T/export"
is "export exits 0" "$?" 0
head -1 "$T/export" | grep -q "^# volley suppression list volley:suppressed" &&
	ok "export starts with a comment naming the list" || not_ok "export header" "$(head -1 "$T/export")"
S import "$T/export" --tenant copy >/dev/null
is "export | import --tenant copy: exit 0" "$?" 0
S list --tenant copy | sort >"$T/list2"
cmp -s "$T/list" "$T/list2" && ok "round trip: the tenant's copy equals the global list" ||
	not_ok "round trip: the tenant's copy equals the global list" "$(diff "$T/list" "$T/list2" | head -5)"
printf 'three@import.test\n' | S import - --tenant stdin >/dev/null
is "import - reads standard input" "$(redis_cli SMEMBERS volley:suppressed:stdin)" "three@import.test"
S frob >/dev/null 2>&1
is "unknown action: exit 2" "$?" 2
S add >/dev/null 2>&1
is "add without addresses: exit 2" "$?" 2
S list extra >/dev/null 2>&1
is "list with an argument: exit 2" "$?" 2

# --- the engine ---
redis_cli DEL volley:suppressed volley:suppressed:copy >/dev/null
S add global@supp.test >/dev/null
S add --tenant A tenanta@supp.test >/dev/null
S check --tenant A tenanta@supp.test global@supp.test >"$T/out"
is "check --tenant A: both lists count" "$?" 0
S check tenanta@supp.test >/dev/null
is "check without --tenant: A's list does not count" "$?" 3
printf 'From: f@sender.test\r\nSubject: supp\r\n\r\nbody\r\n' >"$T/msg.eml"
inj() {	# inj CAMPAIGN [--tenant T] RCPT...
	local camp=$1
	shift
	"$VOLLEY" inject -c "$C" --from f@sender.test --msg "$T/msg.eml" --campaign "$camp" "$@" \
		>/dev/null || bail "inject $camp"
}
inj g-none global@supp.test
inj g-b --tenant B GLOBAL@supp.test
inj a-a --tenant A TenantA@supp.test
inj a-b --tenant B tenanta@supp.test
inj a-none tenanta@supp.test
inj bounce-a --tenant A bob+550@supp.test
inj bounce-none carl+550@supp.test
run_drain "$T/run1.log" 60 -c "$C"
is "first run drains" "$DRAIN_RC" 0
fin() { events field "$(events ids campaign="$1" | cut -f2 | head -1)" status; }
is "global list, no tenant: suppressed" "$(fin g-none)" suppressed
is "global list, tenant B: suppressed" "$(fin g-b)" suppressed
is "A's list, tenant A: suppressed" "$(fin a-a)" suppressed
is "A's list, tenant B: delivered" "$(fin a-b)" delivered
is "A's list, no tenant: delivered" "$(fin a-none)" delivered
is "550 5.1.1 for tenant A's job: bounced" "$(fin bounce-a)" bounced
is "... it is in A's list" "$(redis_cli SISMEMBER volley:suppressed:A bob+550@supp.test)" 1
is "... and not in the global list" "$(redis_cli SISMEMBER volley:suppressed bob+550@supp.test)" 0
is "550 5.1.1 without a tenant: in the global list" \
	"$(redis_cli SISMEMBER volley:suppressed carl+550@supp.test)" 1
is "the sink got the two delivered jobs only" "$(sink_count 127.0.1.92)" 2

inj again-a --tenant A Bob+550@supp.test
inj again-b --tenant B bob+550@supp.test
run_drain "$T/run2.log" 60 -c "$C"
is "second run drains" "$DRAIN_RC" 0
is "tenant A again to the bounced address: suppressed" "$(fin again-a)" suppressed
is "tenant B to it: tried, bounced (A's bounce does not stop B)" "$(fin again-b)" bounced
check "every job has exactly one final event (9 jobs)" events check-final --expect 9

# check shows why and since when; remove deletes that with the address.
S check --tenant A bob+550@supp.test carl+550@supp.test >"$T/out"
is "check of the bounced addresses: exit 0" "$?" 0
grep -Eq "^bob\+550@supp.test: suppressed on volley:suppressed:A \(bounced:invalid_recipient, since 20[0-9-]+ [0-9:]+ UTC\)$" \
	"$T/out" && ok "check: the tenant list's reason and time" || not_ok "check: the tenant list's reason and time" "$(cat "$T/out")"
grep -Eq "^carl\+550@supp.test: suppressed on volley:suppressed \(bounced:invalid_recipient, since 20[0-9-]+ [0-9:]+ UTC\)$" \
	"$T/out" && ok "check: the global list's reason and time" || not_ok "check: the global list's reason and time" "$(cat "$T/out")"
S check global@supp.test | grep -qx "global@supp.test: suppressed on volley:suppressed" &&
	ok "check: added by hand, no reason" || not_ok "check: added by hand, no reason" "$(S check global@supp.test)"
redis_cli HSET volley:suppressed_info global@supp.test "$(printf 'by	hand')" >/dev/null
S check global@supp.test | grep -qx "global@supp.test: suppressed on volley:suppressed (by?hand)" &&
	ok "check: an info of another shape is shown as it is, control bytes as ?" ||
	not_ok "check: an info of another shape is shown as it is" "$(S check global@supp.test)"
out=$(S remove --tenant A bob+550@supp.test)
case "$out" in *"removed 1 address(es) from volley:suppressed:A"*) ok "remove from A's list" ;;
*) not_ok "remove from A's list" "$out" ;; esac
is "... its reason and time are gone" "$(redis_cli HEXISTS volley:suppressed_info:A bob+550@supp.test)" 0
S remove carl+550@supp.test global@supp.test >/dev/null
is "remove from the global list: reason and time gone" \
	"$(redis_cli HEXISTS volley:suppressed_info carl+550@supp.test)$(redis_cli HEXISTS volley:suppressed_info global@supp.test)" 00
is "... and the addresses" "$(redis_cli SISMEMBER volley:suppressed carl+550@supp.test)" 0
redis_cli HSET volley:suppressed_info left@supp.test "bounced:bad_domain 1" >/dev/null
S remove left@supp.test >/dev/null
is "remove of an unlisted address deletes a leftover reason" \
	"$(redis_cli HEXISTS volley:suppressed_info left@supp.test)" 0
done_testing
