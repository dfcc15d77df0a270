#!/usr/bin/python3
"""tests/dnsq.py - a tiny DNS client for the test lab (no dnspython needed).

Usage: dnsq.py SERVER PORT NAME [A|MX]
Prints the rcode name, then one answer per line ("10 mx.d0.test" for MX,
an address for A). Exit 0 when the server answered at all (any rcode),
1 on timeout or garbage.
"""
import random
import socket
import struct
import sys

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN",
          4: "NOTIMP", 5: "REFUSED"}
TYPES = {"A": 1, "MX": 15, "AAAA": 28, "TXT": 16}


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def read_name(buf, off):
    labels, jumped, end = [], False, off
    for _ in range(128):
        n = buf[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            ptr = struct.unpack("!H", buf[off:off + 2])[0] & 0x3FFF
            if not jumped:
                end = off + 2
            jumped, off = True, ptr
            continue
        labels.append(buf[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    return ".".join(labels) or ".", (end if jumped else off)


def main():
    server, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    qtype = TYPES[(sys.argv[4] if len(sys.argv) > 4 else "A").upper()]
    qid = random.randint(0, 65535)
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + encode_name(name) \
        + struct.pack("!HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    try:
        s.sendto(q, (server, port))
        buf, _ = s.recvfrom(4096)
    except OSError:
        return 1
    rid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", buf[:12])
    if rid != qid:
        return 1
    print(RCODES.get(flags & 15, str(flags & 15)))
    off = 12
    for _ in range(qd):
        _, off = read_name(buf, off)
        off += 4
    for _ in range(an):
        _, off = read_name(buf, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", buf[off:off + 10])
        off += 10
        rd = buf[off:off + rdlen]
        if rtype == 1:
            print(socket.inet_ntoa(rd))
        elif rtype == 15:
            pref = struct.unpack("!H", rd[:2])[0]
            host, _ = read_name(buf, off + 2)
            print(pref, host)
        off += rdlen
    return 0


if __name__ == "__main__":
    sys.exit(main())
