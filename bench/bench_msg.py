#!/usr/bin/env python3
"""bench_msg.py - write the benchmarks' ~2 KB message to stdout: plain
headers, text lines, padded to SIZE bytes in all (default 2048), CRLF."""
import sys

size = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
head = ("From: Bench <bench@sender.test>\r\nTo: list@sender.test\r\n"
        "Subject: volley bench message\r\nMessage-ID: <bench@sender.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
line = "The quick brown fox jumps over the lazy dog, again and again. 0123456789\r\n"
body = ""
while len(head) + len(body) + len(line) <= size:
    body += line
body += "x" * max(0, size - len(head) - len(body) - 2) + "\r\n"
sys.stdout.write(head + body)
