#!/usr/bin/python3
"""early_tls.py - a hostile SMTP peer for t_engine_early.sh.

Usage: early_tls.py ADDR PORT CERT KEY LOG

Offers STARTTLS and PIPELINING; after the 354 it reads one chunk of the
body, stops reading (so the client's send stays in flight), answers the
dot with 250 before the body has arrived, then reads the rest and counts
what it gets. Before the fix, the client took that early reply as the end
of the transaction, started the next message and freed the first one's
header and body while its TLS send still read from them.
"""
import socket
import ssl
import sys
import threading
import time

addr, port, cert, key, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((addr, port))
ls.listen(16)
lock = threading.Lock()


def log(s):
    with lock, open(out, "a") as f:
        f.write(s + "\n")


def serve(c):
    try:
        c.sendall(b"220 early.test ESMTP\r\n")
        f = c.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:8].upper()
            if verb.startswith(b"EHLO"):
                c.sendall(b"250-early.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
            elif verb.startswith(b"STARTTLS"):
                c.sendall(b"220 go ahead\r\n")
                break
            else:
                c.sendall(b"503 STARTTLS first\r\n")
        s = ctx.wrap_socket(c, server_side=True)
        f = s.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                s.sendall(b"250-early.test\r\n250-PIPELINING\r\n250-SIZE 200000000\r\n250 8BITMIME\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET"):
                s.sendall(b"250 ok\r\n")
            elif verb == b"DATA":
                s.sendall(b"354 go\r\n")
                f.read1(65536)
                time.sleep(1.0)
                s.sendall(b"250 2.0.0 accepted before the end of the data\r\n")
                log("early reply sent")
                n = 0
                while True:
                    d = f.read1(65536)
                    if not d:
                        break
                    n += len(d)
                log("read %d more bytes" % n)
                return
            elif verb == b"QUIT":
                s.sendall(b"221 bye\r\n")
                return
            else:
                s.sendall(b"500 what\r\n")
    except (OSError, ssl.SSLError) as e:
        log("session error %s" % e)
    finally:
        c.close()


while True:
    conn, _ = ls.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
