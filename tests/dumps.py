#!/usr/bin/python3
"""tests/dumps.py - read what Postfix's smtp-sink captured (-d DIR/%M.).

Each dump file holds one transaction: smtp-sink's own header lines
(X-Client-Addr, X-Client-Proto, X-Helo-Args, X-Mail-Args, one X-Rcpt-Args
per RCPT) ending with a three-line Received: header, then the message as
received (dot-unstuffed, CRLF turned into LF), then one empty line.

Usage: dumps.py COMMAND [options] DIR...
  count DIR...                     number of messages
  rcpts DIR...                     "count<TAB>recipient", one per recipient
  check-rcpts --expect FILE [--at-least-once] DIR...
                                   every address in FILE reached the sinks
                                   exactly once (or at least once) and no
                                   other address did; prints "duplicates N"
  check-body --eml FILE DIR...     every message's body is byte-identical to
                                   FILE's body (line ends normalised), FILE's
                                   headers are all present, and the message
                                   carries an X-Volley-Id header
  ids DIR...                       "recipient<TAB>X-Volley-Id" (sorted)
  show RCPT DIR...                 print the dump(s) for that recipient
  field NAME DIR...                values of one sink header (e.g.
                                   X-Client-Addr, X-Helo-Args), counted
Exit 0 on success, 1 when a check fails.
"""
import os
import sys
from collections import Counter


def files(dirs):
    for d in dirs:
        for root, _, names in os.walk(d):
            for n in sorted(names):
                yield os.path.join(root, n)


def strip_addr(arg):
    """'<a@b.test> NOTIFY=NEVER' -> 'a@b.test' (lower-cased domain kept as is)."""
    arg = arg.strip()
    if arg.startswith("<"):
        end = arg.find(">")
        return arg[1:end] if end > 0 else arg[1:]
    return arg.split(" ", 1)[0]


def parse(path):
    """-> (sink_headers dict of lists, message bytes) or None if truncated."""
    data = open(path, "rb").read()
    lines = data.split(b"\n")
    sink = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(b"Received: "):
            i += 1
            while i < len(lines) and lines[i].startswith(b"\t"):
                i += 1
            break
        if b":" in line:
            k, v = line.split(b":", 1)
            sink.setdefault(k.decode("latin-1"), []).append(v.strip().decode("latin-1"))
        i += 1
    msg = b"\n".join(lines[i:])
    # smtp-sink ends each dump with one empty line
    if msg.endswith(b"\n\n"):
        msg = msg[:-1]
    return sink, msg


def split_msg(msg):
    pos = msg.find(b"\n\n")
    if pos < 0:
        return msg, b""
    return msg[:pos + 1], msg[pos + 2:]


def header_lines(head):
    """Unfolded header fields as bytes lines."""
    out = []
    for line in head.split(b"\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += b"\n" + line
        else:
            out.append(line)
    return out


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "count":
        print(sum(1 for _ in files(args)))
        return 0
    if cmd == "rcpts":
        c = Counter()
        for p in files(args):
            sink, _ = parse(p)
            for r in sink.get("X-Rcpt-Args", []):
                c[strip_addr(r)] += 1
        for r, n in sorted(c.items()):
            print("%d\t%s" % (n, r))
        return 0
    if cmd == "field":
        name, dirs = args[0], args[1:]
        c = Counter()
        for p in files(dirs):
            sink, _ = parse(p)
            for v in sink.get(name, []):
                c[v] += 1
        for v, n in c.most_common():
            print("%d\t%s" % (n, v))
        return 0
    if cmd == "check-rcpts":
        expect, at_least, dirs = None, False, []
        while args:
            a = args.pop(0)
            if a == "--expect":
                expect = args.pop(0)
            elif a == "--at-least-once":
                at_least = True
            else:
                dirs.append(a)
        want = [l.strip() for l in open(expect) if l.strip()]
        c = Counter()
        for p in files(dirs):
            sink, _ = parse(p)
            for r in sink.get("X-Rcpt-Args", []):
                c[strip_addr(r).lower()] += 1
        wantset = {w.lower() for w in want}
        missing = [w for w in want if c[w.lower()] == 0]
        dups = [r for r, n in c.items() if n > 1 and r in wantset]
        extra = [r for r in c if r not in wantset]
        problems = []
        if missing:
            problems.append("%d of %d recipients never reached a sink, e.g. %s"
                            % (len(missing), len(want), ", ".join(missing[:3])))
        if dups and not at_least:
            problems.append("%d recipients received more than once, e.g. %s"
                            % (len(dups), ", ".join(dups[:3])))
        if extra:
            problems.append("%d unexpected recipients, e.g. %s"
                            % (len(extra), ", ".join(extra[:3])))
        print("messages %d, distinct recipients %d of %d, duplicates %d"
              % (sum(c.values()), len(wantset) - len(missing), len(wantset), len(dups)))
        for p in problems:
            print(p)
        return 1 if problems else 0
    if cmd == "check-body":
        eml, dirs = None, []
        while args:
            a = args.pop(0)
            if a == "--eml":
                eml = args.pop(0)
            else:
                dirs.append(a)
        raw = open(eml, "rb").read().replace(b"\r\n", b"\n")
        if not raw.endswith(b"\n"):
            raw += b"\n"
        ohead, obody = split_msg(raw)
        oheaders = header_lines(ohead)
        n, bad = 0, []
        for p in files(dirs):
            n += 1
            _, msg = parse(p)
            head, body = split_msg(msg)
            hl = header_lines(head)
            why = []
            if body != obody:
                # find the first differing line, for the report
                a, b = body.split(b"\n"), obody.split(b"\n")
                k = next((j for j in range(min(len(a), len(b))) if a[j] != b[j]),
                         min(len(a), len(b)))
                why.append("body differs at line %d: got %r want %r" % (
                    k + 1, a[k] if k < len(a) else b"<eof>", b[k] if k < len(b) else b"<eof>"))
            for h in oheaders:
                if h not in hl:
                    why.append("header missing: %r" % h[:60])
                    break
            if not any(h.lower().startswith(b"x-volley-id:") and h[12:].strip() for h in hl):
                why.append("no X-Volley-Id header")
            if why:
                bad.append("%s: %s" % (os.path.basename(p), "; ".join(why)))
        print("checked %d messages, %d bad" % (n, len(bad)))
        for b in bad[:5]:
            print(b)
        return 1 if bad or n == 0 else 0
    if cmd == "ids":
        rows = []
        for p in files(args):
            sink, msg = parse(p)
            head, _ = split_msg(msg)
            vid = ""
            for h in header_lines(head):
                if h.lower().startswith(b"x-volley-id:"):
                    vid = h[12:].strip().decode("latin-1")
            for r in sink.get("X-Rcpt-Args", []):
                rows.append("%s\t%s" % (strip_addr(r), vid))
        for row in sorted(rows):
            print(row)
        return 0
    if cmd == "show":
        rcpt, dirs = args[0].lower(), args[1:]
        for p in files(dirs):
            sink, _ = parse(p)
            if any(strip_addr(r).lower() == rcpt for r in sink.get("X-Rcpt-Args", [])):
                sys.stdout.write("==> %s\n" % p)
                sys.stdout.write(open(p, "rb").read().decode("latin-1"))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:
        sys.exit(0)      # the reader (head, grep -q) had enough
