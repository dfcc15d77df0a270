#!/usr/bin/env bash
# tests/demo.sh - `make demo`: a small newsletter campaign against throwaway
# servers on loopback, start to finish in well under a minute.
#
# Sets up (all on 127.x addresses, ports picked free, torn down at exit):
#   redis-server           the queue and the event stream
#   dnsmasq                MX records for 10 demo domains, one null-MX
#                          domain (nomail.test), one that does not exist
#   sinks                  127.0.2.1 and .2: accept everything (volley-sink
#                          when it is built and starts, else smtp-sink);
#                          127.0.2.3: smtp-sink rejecting RCPT with 550
#                          (hard bounces); 127.0.2.4: smtp-sink answering
#                          RCPT with 451 (deferrals that run out of time)
# then injects ~3000 messages with `volley inject`, a few addresses on the
# suppression list, runs `volley run --drain` (it shows a live progress line
# when stderr is a terminal and a summary at exit), and prints a summary
# of the event stream. Environment: DEMO_N (default 3000), KEEP=1.
. "$(dirname "$0")/lib.sh"

N=${DEMO_N:-3000}
[ -x "$VOLLEY" ] || { echo "demo: $VOLLEY is not built (run make)" >&2; exit 1; }

say() { printf '\033[1m==> %s\033[0m\n' "$*" 2>/dev/null || echo "==> $*"; }
[ -t 1 ] || say() { echo "==> $*"; }

GOOD="acme.test globex.test initech.test umbrella.test hooli.test stark.test wayne.test wonka.test"
BOUNCE=tyrell.test
DEFER=cyberdyne.test

say "starting redis, dnsmasq and the sinks (loopback only) in $T"
start_redis || { echo "demo: redis did not start" >&2; exit 1; }
{
	k=0
	for d in $GOOD; do
		dns_domain "$d" "127.0.2.$((k % 2 + 1))"
		k=$((k + 1))
	done
	dns_domain "$BOUNCE" 127.0.2.3
	dns_domain "$DEFER" 127.0.2.4
	echo "mx-host=nomail.test,.,0"
} >"$T/dns.lines"
start_dns <"$T/dns.lines" || { echo "demo: dnsmasq did not start" >&2; exit 1; }
SINK_PORT=$(free_port)

sink_kind=smtp-sink
if [ -x "$SINK" ] && start_volley_sink --nocapture 127.0.2.1 "$SINK_PORT" --quiet 2>/dev/null &&
	start_volley_sink --nocapture 127.0.2.2 "$SINK_PORT" --quiet 2>/dev/null; then
	sink_kind=volley-sink
else
	stop_sink 127.0.2.1
	stop_sink 127.0.2.2
	start_smtp_sink --nodump 127.0.2.1 "$SINK_PORT" || exit 1
	start_smtp_sink --nodump 127.0.2.2 "$SINK_PORT" || exit 1
fi
start_smtp_sink --nodump 127.0.2.3 "$SINK_PORT" -f RCPT \
	-B "550 5.1.1 The email account that you tried to reach does not exist" || exit 1
start_smtp_sink --nodump 127.0.2.4 "$SINK_PORT" -r RCPT \
	-b "451 4.7.1 Greylisted, please try again later" || exit 1
echo "    redis 127.0.0.1:$REDIS_PORT  dns 127.0.0.1:$DNS_PORT  sinks 127.0.2.1-4:$SINK_PORT ($sink_kind for the accepting ones)"

CFG_INSTANCE=demo CFG_RETRY='[2s, 3s]' CFG_MAX_AGE=12s write_config "$T/volley.conf"

# A newsletter as a marketing platform would hand it over.
cat >"$T/newsletter.eml" <<'EOF'
From: "Acme Weekly" <news@acme-mail.test>
Reply-To: support@acme-mail.test
To: subscriber@list.acme-mail.test
Subject: =?UTF-8?Q?Your_weekly_digest_=E2=80=94_spring_deals_inside?=
Date: Mon, 02 Mar 2026 09:00:00 +0000
Message-ID: <digest-2026-10@acme-mail.test>
MIME-Version: 1.0
List-Unsubscribe: <mailto:unsub@acme-mail.test?subject=unsubscribe>, <https://acme-mail.test/u/abc123>
List-Unsubscribe-Post: List-Unsubscribe=One-Click
Precedence: bulk
Content-Type: multipart/alternative; boundary="=_digest_42"

--=_digest_42
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: quoted-printable

Hello,

This week at Acme: spring deals on rockets, anvils and giant magnets.

* Rocket skates: 20% off until Sunday
* Anvils: buy two, get a third one dropped for free
* Giant magnets: now with a safety switch

Read online: https://acme-mail.test/w/2026-10

You get this mail because you subscribed at acme-mail.test.
Unsubscribe: https://acme-mail.test/u/abc123

--=_digest_42
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: quoted-printable

<!DOCTYPE html>
<html><head><meta charset=3D"utf-8"><title>Acme Weekly</title></head>
<body style=3D"font-family:Helvetica,Arial,sans-serif;background:#f4f4f4">
<table width=3D"600" align=3D"center" style=3D"background:#ffffff">
<tr><td style=3D"padding:24px"><h1>Spring deals</h1>
<p>This week at Acme: spring deals on rockets, anvils and giant magnets.</p>
<ul><li><b>Rocket skates</b>: 20% off until Sunday</li>
<li><b>Anvils</b>: buy two, get a third one dropped for free</li>
<li><b>Giant magnets</b>: now with a safety switch</li></ul>
<p><a href=3D"https://acme-mail.test/w/2026-10">Read online</a></p>
<p style=3D"font-size:11px;color:#888">You get this mail because you
subscribed at acme-mail.test. <a href=3D"https://acme-mail.test/u/abc123">=
Unsubscribe</a>.</p></td></tr></table>
</body></html>

--=_digest_42--
EOF

# Recipients: mostly good domains; ~3% at the bouncing one, ~3% at the
# deferring one, a handful at the null-MX and the nonexistent domain.
"$PY" - "$N" "$GOOD" "$BOUNCE" "$DEFER" >"$T/rcpts" <<'EOF'
import random, sys
n, good, bounce, defer = int(sys.argv[1]), sys.argv[2].split(), sys.argv[3], sys.argv[4]
random.seed(7)
first = ["ann", "bob", "carla", "dmitri", "eve", "farid", "gita", "hugo", "ines", "jon"]
for i in range(n):
    r = random.random()
    if i % 300 == 7:
        dom = "nomail.test"
    elif i % 300 == 11:
        dom = "gone.test"
    elif r < 0.03:
        dom = bounce
    elif r < 0.06:
        dom = defer
    else:
        dom = good[i % len(good)]
    print("%s.%d@%s" % (first[i % len(first)], i, dom))
EOF
# three subscribers unsubscribed earlier: never sent, event `suppressed`
redis_cli SADD volley:suppressed $(sed -n '3,5p' "$T/rcpts" | tr 'A-Z' 'a-z') >/dev/null

say "injecting $(wc -l <"$T/rcpts") messages (campaign spring-digest)"
"$VOLLEY" inject -c "$T/volley.conf" --from bounces@acme-mail.test \
	--msg "$T/newsletter.eml" --campaign spring-digest --rcpts "$T/rcpts" ||
	{ echo "demo: inject failed" >&2; exit 1; }

say "volley run --drain (retries every 2-3 s, deferred mail expires after 12 s)"
t0=$(now_ms)
# per-job log lines would drown the progress line: warnings only
VOLLEY_LOG=${VOLLEY_LOG:-warn} timeout -k 5 120 "$VOLLEY" run -c "$T/volley.conf" --drain </dev/null
rc=$?
ms=$(($(now_ms) - t0))
[ $rc -eq 0 ] || echo "demo: volley run exited $rc" >&2

say "events (stream volley:events) after $((ms / 1000)).$((ms % 1000 / 100)) s"
events summary
echo
echo "    pending in volley:jobs: $(xpending_count)   suppression list: $(redis_cli SCARD volley:suppressed) addresses"
say "cleaning up"
exit $rc
