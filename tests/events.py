#!/usr/bin/python3
"""tests/events.py - read volley's event stream and answer questions about it.

Talks RESP to Redis directly (a socket, no redis-py), reads the whole
`PREFIX events` stream with XRANGE in pages, and groups it per job id.

Usage: events.py [--port P] [--host H] [--prefix volley:] COMMAND ...
  json                      every event as one JSON object per line
  count [k=v ...]           number of events whose fields match all filters
  jobs [k=v ...]            number of distinct ids with a final event
                            matching the filters
  final ID                  status of the job's first final event, or "none"
  history ID                statuses in order, comma-separated ("deferred,expired")
  field ID FIELD [STATUS]   FIELD of the job's first event with STATUS
                            (default: its first final event)
  ids [k=v ...]             "to<TAB>id" of matching events (sorted)
  check-final [--expect N] [--at-least-one] [--ids FILE]
                            every id has exactly one final event (or at
                            least one); --expect: that many ids seen;
                            --ids: these ids (one a line) all have one.
                            Prints a one-line verdict, details on failure,
                            and "duplicates N" (ids with >1 final event).
  check-keys FILE [k=v ...] every stream entry ID in FILE (one a line, the
                            events' `key` field) has exactly one final
                            event, and that event matches the filters
                            (e.g. instance=mta-b); prints a verdict
  summary                   status counts, then per recipient domain
  redis CMD ARGS...         run one Redis command and print the reply

Filters: k=v (equal), k~v (v is a substring), k!=v. Exit status 0 on
success/true, 1 when a check fails, 2 on usage or connection errors.
"""
import json
import socket
import sys
from collections import Counter, OrderedDict, defaultdict

FINAL = {"delivered", "bounced", "expired", "suppressed", "failed"}


class Redis:
    """Just enough RESP2 for XRANGE and a few commands."""

    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), timeout=10)
        self.f = self.s.makefile("rb")

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))
        return self.read()

    def read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read() for _ in range(n)]
        raise RuntimeError("bad reply %r" % line)


def load(r, stream):
    events, start = [], "-"
    while True:
        page = r.cmd("XRANGE", stream, start, "+", "COUNT", "10000")
        if not page:
            break
        for eid, kv in page:
            ev = OrderedDict()
            ev["_id"] = eid
            for i in range(0, len(kv) - 1, 2):
                ev[kv[i]] = kv[i + 1]
            events.append(ev)
        start = "(" + page[-1][0]
        if len(page) < 10000:
            break
    return events


def match(ev, filters):
    for f in filters:
        if "!=" in f:
            k, v = f.split("!=", 1)
            if ev.get(k, "") == v:
                return False
        elif "=" in f:
            k, v = f.split("=", 1)
            if ev.get(k, "") != v:
                return False
        elif "~" in f:
            k, v = f.split("~", 1)
            if v not in ev.get(k, ""):
                return False
        else:
            raise SystemExit("bad filter %r" % f)
    return True


def by_job(events):
    jobs = defaultdict(list)
    for ev in events:
        jobs[ev.get("id", "")].append(ev)
    return jobs


def is_final(ev):
    """A final status, except an asynchronous bounce (a DSN that came back
    after the delivery: the delivery stays the job's final outcome)."""
    return ev.get("status") in FINAL and ev.get("async", "") != "1"


def first_final(evs):
    for ev in evs:
        if is_final(ev):
            return ev
    return None


def final_count(evs):
    return sum(1 for ev in evs if is_final(ev))


def exactly_one_final(groups, want=None):
    """Problems (a list of strings, empty when all is well) with the promise
    "every job has exactly one final event": groups maps a job (id or key)
    to its events in stream order; want, when given, lists the jobs that
    must be there. `deferred`, `complained` and `bounced` with async=1 are
    not final."""
    problems = []
    keys = list(want) if want is not None else list(groups)
    none = [k for k in keys if final_count(groups.get(k, [])) == 0]
    dups = [k for k in keys if final_count(groups.get(k, [])) > 1]
    hist = lambda k: ",".join(e.get("status", "?") for e in groups.get(k, [])) or "no events"
    if none:
        problems.append("%d of %d jobs without a final event, e.g. %s (%s)" % (
            len(none), len(keys), none[0], hist(none[0])))
    if dups:
        problems.append("%d of %d jobs with more than one final event, e.g. %s (%s)" % (
            len(dups), len(keys), dups[0], hist(dups[0])))
    return problems


def domain_of(addr):
    return addr.rsplit("@", 1)[-1].lower() if "@" in addr else "(none)"


def main(argv):
    host, port, prefix = "127.0.0.1", 6379, "volley:"
    while argv and argv[0].startswith("--"):
        opt = argv.pop(0)
        if opt == "--port":
            port = int(argv.pop(0))
        elif opt == "--host":
            host = argv.pop(0)
        elif opt == "--prefix":
            prefix = argv.pop(0)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        r = Redis(host, port)
    except OSError as e:
        print("events.py: cannot connect to redis %s:%d: %s" % (host, port, e),
              file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "redis":
        print(json.dumps(r.cmd(*args)))
        return 0
    events = load(r, prefix + "events")
    jobs = by_job(events)

    if cmd == "json":
        for ev in events:
            print(json.dumps(ev))
        return 0
    if cmd == "count":
        print(sum(1 for ev in events if match(ev, args)))
        return 0
    if cmd == "jobs":
        n = 0
        for evs in jobs.values():
            f = first_final(evs)
            if f is not None and match(f, args):
                n += 1
        print(n)
        return 0
    if cmd == "final":
        f = first_final(jobs.get(args[0], []))
        print(f["status"] if f else "none")
        return 0
    if cmd == "history":
        print(",".join(ev.get("status", "?") for ev in jobs.get(args[0], [])))
        return 0
    if cmd == "field":
        evs = jobs.get(args[0], [])
        if len(args) > 2:
            ev = next((e for e in evs if e.get("status") == args[2]), None)
        else:
            ev = first_final(evs)
        if ev is None:
            print("")
            return 1
        print(ev.get(args[1], ""))
        return 0
    if cmd == "ids":
        rows = sorted("%s\t%s" % (ev.get("to", ""), ev.get("id", ""))
                      for ev in events if match(ev, args))
        for row in rows:
            print(row)
        return 0
    if cmd == "check-final":
        expect, at_least, idfile = None, False, None
        while args:
            a = args.pop(0)
            if a == "--expect":
                expect = int(args.pop(0))
            elif a == "--at-least-one":
                at_least = True
            elif a == "--ids":
                idfile = args.pop(0)
            else:
                raise SystemExit("bad option %r" % a)
        dups = [jid for jid, evs in jobs.items() if final_count(evs) > 1]
        problems = [p for p in exactly_one_final(jobs)
                    if not (at_least and "more than one" in p)]
        if expect is not None and len(jobs) != expect:
            problems.append("%d distinct ids in events, expected %d" % (len(jobs), expect))
        if idfile:
            want = [l.strip() for l in open(idfile) if l.strip()]
            missing = [i for i in want if first_final(jobs.get(i, [])) is None]
            if missing:
                problems.append("%d of %d expected ids have no final event, e.g. %s" % (
                    len(missing), len(want), missing[0]))
        print("ids %d, events %d, duplicates %d" % (len(jobs), len(events), len(dups)))
        for p in problems:
            print(p)
        return 1 if problems else 0
    if cmd == "check-keys":
        if not args:
            print(__doc__, file=sys.stderr)
            return 2
        want = [l.strip() for l in open(args[0]) if l.strip()]
        filters = args[1:]
        bykey = defaultdict(list)
        for ev in events:
            bykey[ev.get("key", "")].append(ev)
        problems = exactly_one_final(bykey, want)
        bad = [k for k in want if first_final(bykey.get(k, [])) is not None
               and not match(first_final(bykey[k]), filters)]
        if bad:
            f = first_final(bykey[bad[0]])
            problems.append("%d of %d final events do not match %s, e.g. key %s: %s" % (
                len(bad), len(want), " ".join(filters), bad[0],
                json.dumps({k: f.get(k, "") for k in ("status", "instance", "id")})))
        print("keys %d, final events matching %s: %d" % (
            len(want), " ".join(filters) or "(any)", len(want) - len(bad)))
        for p in problems:
            print(p)
        return 1 if problems else 0
    if cmd == "summary":
        status = Counter(ev.get("status", "?") for ev in events)
        print("events: %d   jobs: %d" % (len(events), len(jobs)))
        order = ["delivered", "deferred", "bounced", "expired", "suppressed",
                 "failed", "complained"]
        cols = order + sorted(k for k in status if k not in order)
        print("  ".join("%s=%d" % (k, status[k]) for k in cols if status[k]))
        per = defaultdict(Counter)
        for evs in jobs.values():
            last = first_final(evs) or evs[-1]
            dom = domain_of(last.get("to", ""))
            per[dom][last.get("status", "?")] += 1
            per[dom]["deferred"] += sum(1 for e in evs if e.get("status") == "deferred")
        hdr = ["domain", "delivered", "deferred", "bounced", "expired",
               "suppressed", "failed"]
        w = max([len(d) for d in per] + [6])
        print("%-*s %9s %9s %9s %9s %10s %7s" % (w, *hdr))
        for dom in sorted(per):
            c = per[dom]
            print("%-*s %9d %9d %9d %9d %10d %7d" % (
                w, dom, c["delivered"], c["deferred"], c["bounced"],
                c["expired"], c["suppressed"], c["failed"]))
        print("(per domain: final status of each job; 'deferred' counts "
              "deferral events)")
        classes = Counter(ev.get("class") for ev in events
                          if ev.get("status") in ("bounced", "deferred") and ev.get("class"))
        if classes:
            print("classes: " + "  ".join("%s=%d" % kv for kv in classes.most_common()))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:
        sys.exit(0)      # the reader (grep -q, head) had enough
    except (ConnectionError, OSError, RuntimeError) as e:
        print("events.py: %s" % e, file=sys.stderr)
        sys.exit(2)
