#!/usr/bin/env bash
# t_engine_verp.sh - bounce tracking on the way out: with smtp.return_path
# the envelope sender is the VERP address built from the job id (unsafe id
# characters replaced), the id header name follows smtp.id_header, and a job
# with the null sender keeps <> (a bounce must never bounce).
. "$(dirname "$0")/../lib.sh"
need_volley

start_redis || bail "redis did not start"
start_dns "$(dns_domain verp.test 127.0.1.71)" || bail "dnsmasq did not start"
SINK_PORT=$(free_port)
start_smtp_sink 127.0.1.71 "$SINK_PORT" || bail "smtp-sink did not start"
CFG_SMTP_EXTRA='return_path = "bounces+{id}@bounces.example.com"; id_header = "X-Job-Id";' \
	write_config "$T/volley.conf"
printf 'From: f@sender.test\r\nSubject: verp\r\n\r\nbody\r\n' >"$T/msg.eml"
add() { redis_cli -x XADD volley:jobs '*' id "$1" to "$2" from "$3" msg <"$T/msg.eml" >/dev/null; }
add job-8812 a@verp.test news@example.com
add 'odd/id+x' b@verp.test news@example.com
add nullsender c@verp.test ''
run_drain "$T/run.log" 30 -c "$T/volley.conf"
is "run --drain exits 0" "$DRAIN_RC" 0
check "three delivered" events check-final --expect 3

dir=$(sink_dir 127.0.1.71)
env_of() { grep -l "X-Rcpt-Args: <$1>" "$dir"/* | head -1 | xargs awk '/^X-Mail-Args:/{print $2; exit}'; }
is "VERP sender from the id" "$(env_of a@verp.test)" "<bounces+job-8812@bounces.example.com>"
is "unsafe id characters replaced" "$(env_of b@verp.test)" "<bounces+odd=id=x@bounces.example.com>"
is "null sender stays <>" "$(env_of c@verp.test)" "<>"
f=$(grep -l "X-Rcpt-Args: <a@verp.test>" "$dir"/* | head -1)
grep -q "^X-Job-Id: job-8812" "$f" && ok "id header named by smtp.id_header" || not_ok "id header named by smtp.id_header" "$(head -12 "$f")"
grep -q "^X-Volley-Id:" "$f" && not_ok "no default header when renamed" || ok "no default header when renamed"
done_testing
