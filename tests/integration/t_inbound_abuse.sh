#!/usr/bin/env bash
# t_inbound_abuse.sh - a client of the inbound listener that pipelines
# commands without ever reading a reply: the listener stops parsing once
# 64 KiB of replies wait for it, holds at most 1 MiB of its input, then
# closes the session; the engine's memory stays flat (before, every NOOP
# queued another reply without bound) and the listener keeps serving
# others. No Redis traffic is needed beyond the engine's own.
. "$(dirname "$0")/../lib.sh"
need_volley

start_redis || bail "redis did not start"
DNS_PORT=$(free_port)		# no DNS server: no job is sent in this test
SINK_PORT=$(free_port)
LP=$(free_port)
CFG_EXTRA="inbound {
  listen = \"127.0.0.1:$LP\";
  domains = [\"bounces.test\"];
  timeout = 5s;
  process = false;
}"
write_config "$T/volley.conf"
# Under AddressSanitizer (make asan) freed memory sits in ASan's quarantine
# (256 MB by default) and stays resident, so RSS would count every buffer
# the session ever freed: keep none, so that RSS is what is still in use.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0"
bg_volley "$T/run.log" run -c "$T/volley.conf"
pid=$VOLLEY_PID
wait_listen 127.0.0.1 "$LP" 20 || bail "the listener is not listening" "$(show_log "$T/run.log")"
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
before=$(rss)
out=$("$PY" - "$LP" <<'PYEOF'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # read nothing, hold little
chunk = b"EHLO x\r\n" + b"NOOP\r\n" * 20000
sent, end = 0, time.time() + 20
s.settimeout(2)
while sent < 64 * 1024 * 1024 and time.time() < end:
    try:
        sent += s.send(chunk)
    except socket.timeout:
        continue          # the server stopped reading: keep trying until it closes
    except OSError:
        break             # closed by the server
print(sent)
PYEOF
)
after=$(rss)
note "client pushed $out bytes without reading; engine RSS ${before} kB -> ${after} kB"
[ "${out:-0}" -lt $((64 * 1024 * 1024)) ] && ok "the listener cut the client off before 64 MB" ||
	not_ok "the listener cut the client off before 64 MB" "sent $out"
[ $((after - before)) -lt 8000 ] && ok "engine memory stayed flat (+$((after - before)) kB)" ||
	not_ok "engine memory stayed flat" "+$((after - before)) kB"
check "the listener still answers others" sh -c \
	"swaks --server 127.0.0.1:$LP --to x@bounces.test --from '' --quit-after RCPT >/dev/null 2>&1"
kill -TERM "$pid"
wait_pid "$pid" 30
is "SIGTERM: exit 0" "$WAIT_RC" 0
done_testing
