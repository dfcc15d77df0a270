#!/usr/bin/python3
"""dkim_check.py - verify DKIM signatures with an independent verifier.

Usage: dkim_check.py DIR

DIR holds dns.txt ("SELECTOR._domainkey.DOMAIN<TAB>TXT record" per line)
and *.eml files (messages as a receiver sees them). Every DKIM-Signature
field of every message is verified with Debian's python3-dkim (dkimpy),
its key looked up in dns.txt instead of the DNS. Then, per message, three
controls show the verifier is not vacuous and that the per-job header is
outside the signature:
  - a changed body byte must fail the first signature;
  - a changed signed header (Subject, or the From display name) must fail;
  - a different X-Volley-Id value must still verify.
Prints one TAP-like line per check ("ok - ..." / "not ok - ..."); exits 1
if any failed, 2 if DIR has no messages.
"""
import os
import re
import sys

import dkim


def load_dns(path):
    records = {}
    with open(path, encoding="ascii") as f:
        for line in f:
            name, txt = line.rstrip("\n").split("\t", 1)
            records[name.lower().rstrip(".")] = txt.encode("ascii")
    return records


def main():
    d = sys.argv[1]
    records = load_dns(os.path.join(d, "dns.txt"))

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        return records.get(name.lower().rstrip("."))

    files = sorted(f for f in os.listdir(d) if f.endswith(".eml"))
    if not files:
        print("not ok - no messages in " + d)
        return 2
    failed = 0

    def report(good, what):
        nonlocal failed
        print(("ok - " if good else "not ok - ") + what)
        if not good:
            failed += 1

    def verify(msg, idx, quiet=False):
        try:
            return dkim.DKIM(msg, minkey=1024).verify(idx=idx, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            if not quiet:
                print("#   " + str(e))
            return False

    for name in files:
        with open(os.path.join(d, name), "rb") as f:
            msg = f.read()
        sigs = re.findall(rb"^DKIM-Signature:.*?(?=\r\n[^ \t])", msg, re.M | re.S | re.I)
        if not sigs:
            report(False, "%s: no DKIM-Signature" % name)
            continue
        for i, s in enumerate(sigs):
            a = re.search(rb"a=([a-z0-9-]+)", s).group(1).decode()
            c = re.search(rb"c=([a-z/]+)", s).group(1).decode()
            dom = re.search(rb"d=([^;]+)", s).group(1).decode()
            report(verify(msg, i), "%s: signature %d (%s, %s, d=%s) verifies" % (name, i, a, c, dom))

        head, sep, body = msg.partition(b"\r\n\r\n")
        if sep:
            bad = head + sep + (body[:-3] + b"X" + body[-3:] if len(body) > 3 else body + b"X\r\n")
        else:
            bad = msg + b"\r\nX\r\n"
        report(not verify(bad, 0, True), "%s: a changed body fails" % name)
        if re.search(rb"^Subject:", msg, re.M):
            bad = re.sub(rb"^Subject:", b"Subject: Re:", msg, count=1, flags=re.M)
        else:
            bad = re.sub(rb"^From:", b"From: X", msg, count=1, flags=re.M)
        report(not verify(bad, 0, True), "%s: a changed signed header fails" % name)
        other = re.sub(rb"^X-Volley-Id: [^\r]*", b"X-Volley-Id: another-job", msg, count=1,
                       flags=re.M)
        report(other != msg and verify(other, 0),
               "%s: another job id header still verifies (not signed)" % name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
