#!/usr/bin/env bash
# tests/deps.sh - install the Debian 12 packages volley's build, tests, demo
# and bench need; only what is missing (`make deps`, called by `make test`,
# `make demo`, `make bench`).
#
# As root: installs the missing packages non-interactively, running
# `apt-get update` only when something is missing. Not root: prints the
# apt-get line to run and exits 1. Exits 0 at once when nothing is missing.
#
# Daemons: redis-server's package would start a system Redis on 6379 and
# postfix could start a master. The tests never use those (they start their
# own servers on free loopback ports), but a policy-rc.d that refuses every
# start is put in place for the duration of the install so a fresh machine
# is not left with stray listeners; dnsmasq-base ships no service at all.
set -euo pipefail

PKGS=(
	build-essential
	liburing-dev libssl-dev libhiredis-dev libc-ares-dev libcmocka-dev libidn2-dev
	pkg-config
	redis-server redis-tools dnsmasq-base postfix swaks libnet-ssleay-perl
	clang libclang-rt-14-dev
	python3 procps iproute2
	python3-dkim
)
# python3-dkim (dkimpy, with python3-nacl for Ed25519) is the independent
# verifier of volley's DKIM signatures (tests/dkim_check.py).
# Not libucl-dev: in Debian that name is an unrelated compression library;
# volley carries its own UCL-subset parser.

missing=()
for p in "${PKGS[@]}"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*" installed") ;;
	*) missing+=("$p") ;;
	esac
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#PKGS[@]} packages present"
	exit 0
fi

line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages: ${missing[*]}" >&2
	echo "deps: as root, run:" >&2
	echo "  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections" >&2
	echo "  apt-get update && DEBIAN_FRONTEND=noninteractive $line" >&2
	exit 1
fi

echo "deps: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

# Refuse service starts while installing (see the header). Only remove the
# policy file if we are the ones who put it there.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	made_policy=1
fi
undo_policy() { [ "$made_policy" = 1 ] && rm -f "$policy"; return 0; }
trap undo_policy EXIT

apt-get update -q
apt-get install -y -q --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
	"${missing[@]}"

# If a system redis/dnsmasq came up anyway (a systemd host ignoring
# policy-rc.d), stop it: nothing of ours needs it and it holds well-known
# ports. Harmless when none runs.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	for s in redis-server dnsmasq; do
		if systemctl is-active --quiet "$s" 2>/dev/null; then
			echo "deps: stopping system service $s (tests run their own)"
			systemctl stop "$s" || true
			systemctl disable "$s" >/dev/null 2>&1 || true
		fi
	done
fi
echo "deps: done"
