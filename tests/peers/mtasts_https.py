#!/usr/bin/python3
"""mtasts_https.py - an MTA-STS policy server for t_engine_mtasts.sh.

Usage: mtasts_https.py ADDR PORT CERT KEY DIR LOG

HTTPS (TLS 1.2+) on ADDR:PORT. GET /.well-known/mta-sts.txt with Host
mta-sts.DOMAIN answers DIR/DOMAIN.txt as text/plain (404 without it).
Special files: DIR/DOMAIN.redirect (its content a URL) answers 301 to it;
DIR/DOMAIN.ctype (its content a media type) replaces text/plain. Each
request is logged to LOG as "HOST PATH STATUS".
"""
import http.server
import os
import ssl
import sys

addr, port, cert, key, root, log = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], \
    sys.argv[5], sys.argv[6]


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def note(self, status):
        with open(log, "a") as f:
            f.write("%s %s %d\n" % (self.headers.get("Host", "-"), self.path, status))

    def do_GET(self):
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        dom = host[len("mta-sts."):] if host.startswith("mta-sts.") else ""
        base = os.path.join(root, dom)
        if not dom or "/" in dom or self.path != "/.well-known/mta-sts.txt":
            body, status, ctype = b"not found\n", 404, "text/plain"
        elif os.path.exists(base + ".redirect"):
            self.send_response(301)
            self.send_header("Location", open(base + ".redirect").read().strip())
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.note(301)
            return
        elif os.path.exists(base + ".txt"):
            body, status = open(base + ".txt", "rb").read(), 200
            ctype = "text/plain; charset=utf-8"
            if os.path.exists(base + ".ctype"):
                ctype = open(base + ".ctype").read().strip()
        else:
            body, status, ctype = b"not found\n", 404, "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.note(status)


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
ctx.load_cert_chain(cert, key)
srv = http.server.ThreadingHTTPServer((addr, port), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
