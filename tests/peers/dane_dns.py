#!/usr/bin/python3
"""dane_dns.py - a tiny DNS responder for t_engine_dane.sh.

Usage: dane_dns.py ADDR PORT ZONE.json LOG

dnsmasq cannot set the AD bit on its own data, so this one plays the
validating resolver: it answers from ZONE.json and sets AD on an answer
exactly when the zone says so. ZONE.json maps lower-case names to:

    {"ad": true,                          AD on every answer for this name
     "MX": [[10, "mx.a.test"]],
     "A": ["127.0.1.1"], "AAAA": [],
     "TLSA": [[3, 1, 1, "hex data"]],
     "servfail": ["TLSA"]}                 answer SERVFAIL for these types

A name that is not in the zone is NXDOMAIN (with AD when the zone's
top-level "nx_ad" is true: an authenticated denial). A type the name has
no records of is NODATA. Every query is logged to LOG as
"NAME TYPE ad=QUERY_AD_BIT" (one line each, flushed at once), so a test
can tell which names were asked about and whether the client asked for
authenticated data.

UDP only, one datagram per answer (the answers here are small).
"""
import json
import socket
import struct
import sys

TYPES = {1: "A", 28: "AAAA", 15: "MX", 52: "TLSA", 6: "SOA"}


def read_name(msg, off):
    labels = []
    while True:
        n = msg[off]
        if n == 0:
            return ".".join(labels), off + 1
        if n & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n


def name_wire(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def rr(qname_ptr, rtype, rdata, ttl=300):
    return qname_ptr + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def answer(zone, msg):
    qid, flags, qd = struct.unpack("!HHH", msg[:6])
    if qd != 1:
        return None, None
    qname, off = read_name(msg, 12)
    qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
    question = msg[12:off + 4]
    q_ad = 1 if flags & 0x0020 else 0
    rd = flags & 0x0100
    name = qname.lower().rstrip(".")
    tname = TYPES.get(qtype, str(qtype))
    ent = zone.get(name)
    ptr = b"\xc0\x0c"
    answers = []
    rcode = 0
    ad = False
    if ent is None:
        rcode = 3
        ad = bool(zone.get("nx_ad"))
    else:
        ad = bool(ent.get("ad"))
        if tname in ent.get("servfail", []):
            rcode = 2
            ad = False
        elif tname == "MX":
            for pref, host in ent.get("MX", []):
                answers.append(rr(ptr, 15, struct.pack("!H", pref) + name_wire(host)))
        elif tname == "A":
            for a in ent.get("A", []):
                answers.append(rr(ptr, 1, socket.inet_pton(socket.AF_INET, a)))
        elif tname == "AAAA":
            for a in ent.get("AAAA", []):
                answers.append(rr(ptr, 28, socket.inet_pton(socket.AF_INET6, a)))
        elif tname == "TLSA":
            for u, s, m, data in ent.get("TLSA", []):
                answers.append(rr(ptr, 52, bytes([u, s, m]) + bytes.fromhex(data)))
    rflags = 0x8000 | rd | 0x0080 | rcode  # QR, RD copied, RA
    if ad:
        rflags |= 0x0020
    hdr = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 0)
    return hdr + question + b"".join(answers), "%s %s ad=%d" % (name, tname, q_ad)


def main():
    addr, port, zpath, log = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    zone = {k.lower(): v for k, v in json.load(open(zpath)).items()}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    with open(log, "a", buffering=1) as lf:
        while True:
            msg, peer = s.recvfrom(4096)
            try:
                out, line = answer(zone, msg)
            except (ValueError, IndexError, struct.error):
                continue
            if out is None:
                continue
            lf.write(line + "\n")
            s.sendto(out, peer)


if __name__ == "__main__":
    main()
