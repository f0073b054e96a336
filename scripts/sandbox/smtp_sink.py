#!/usr/bin/env python3
"""SMTP sink for the aengine sandbox and specs (Debian package python3-aiosmtpd).

A real SMTP server that accepts mail instead of relaying it, so the notifier
(and anything else that sends email) can be pointed at it with
SMTP_HOST/SMTP_PORT. Every accepted message is stored in DIR as <n>.eml (the
DATA bytes) and then <n>.json ({"n", "mail_from", "rcpt_tos", "refused",
"auth", "tls", "size", "subject", "at"}); the .json is written last (atomic
rename) so a reader that sees it can read the .eml.

Usage:
  smtp_sink.py [--dir DIR] [--host 127.0.0.1] [--port 0] [--tls-port 0|-1]
               [--http-port 0|-1] [--user USER] [--password PW] [--require-auth]
               [--watch-parent]

Prints one JSON line on stdout when ready:
  {"pid", "host", "port", "tls_port", "http_port", "dir", "ca"}
  port       plain SMTP; AUTH PLAIN/LOGIN offered (credentials --user/--password),
             required only with --require-auth
  tls_port   STARTTLS required (self-signed certificate DIR/cert.pem = "ca"); -1 = off
  http_port  HTTP listing of the caught mail; -1 = off:
               GET    /messages        JSON list of the .json records, oldest first
               GET    /messages/<n>    the raw message (message/rfc822)
               DELETE /messages        forget every message
Port 0 = a free port. Recipients whose local part starts with "refuse" are
refused with 550; a sender whose local part starts with "reject" gets 554 at
DATA (error injection for tests). Wrong credentials get 535.
Exits on SIGTERM/SIGINT, or when its parent process goes away (--watch-parent).
"""
import argparse
import email
import email.header
import email.policy
import glob
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

LOCK = threading.Lock()


def subject_of(raw):
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        return str(msg.get("Subject", ""))
    except Exception:  # a malformed message is still stored
        return ""


class Sink:
    def __init__(self, directory):
        self.dir = directory
        existing = [int(os.path.basename(p)[:-5]) for p in glob.glob(os.path.join(directory, "*.json"))
                    if os.path.basename(p)[:-5].isdigit()]
        self.counter = max(existing, default=0)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].startswith("refuse"):
            if not hasattr(envelope, "refused"):
                envelope.refused = []
            envelope.refused.append(address)
            return "550 5.1.1 <%s>: Recipient address rejected: no such user" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if (envelope.mail_from or "").split("@")[0].startswith("reject"):
            return "554 5.7.1 Message rejected: sender is blacklisted"
        raw = envelope.original_content or b""
        with LOCK:
            self.counter += 1
            n = self.counter
        base = os.path.join(self.dir, "%d" % n)
        with open(base + ".eml", "wb") as f:
            f.write(raw)
        meta = {
            "n": n, "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
            "refused": getattr(envelope, "refused", []),
            "auth": session.auth_data.login.decode() if session.auth_data else None,
            "tls": session.ssl is not None, "size": len(raw), "subject": subject_of(raw), "at": time.time(),
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 OK: queued as %d" % n


def make_authenticator(user, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == user.encode() and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False, auth_data=auth_data)
    return authenticator


def free_port(host):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listing(directory):
    out = []
    for p in glob.glob(os.path.join(directory, "*.json")):
        try:
            with open(p) as f:
                out.append(json.load(f))
        except (OSError, ValueError):
            continue
    out.sort(key=lambda m: m.get("n", 0))
    return out


def http_handler(directory):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send(self, code, body, ctype="application/json"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?")[0].rstrip("/")
            if path == "/messages":
                return self.send(200, json.dumps(listing(directory)).encode())
            if path.startswith("/messages/") and path[10:].isdigit():
                p = os.path.join(directory, path[10:] + ".eml")
                if os.path.exists(p + "") and os.path.exists(p[:-4] + ".json"):
                    with open(p, "rb") as f:
                        return self.send(200, f.read(), "message/rfc822")
            return self.send(404, b'{"error": "not found"}')

        def do_DELETE(self):
            if self.path.split("?")[0].rstrip("/") != "/messages":
                return self.send(404, b'{"error": "not found"}')
            with LOCK:
                for p in glob.glob(os.path.join(directory, "*.json")) + glob.glob(os.path.join(directory, "*.eml")):
                    os.remove(p)
            return self.send(200, b'{"ok": true}')
    return Handler


def main():
    ap = argparse.ArgumentParser(description="SMTP sink: accepts mail and stores it as files")
    ap.add_argument("--dir", default=None, help="where messages are stored (default: a new temp dir)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="plain SMTP port (0 = free port)")
    ap.add_argument("--tls-port", type=int, default=0, help="STARTTLS-required port (0 = free, -1 = off)")
    ap.add_argument("--http-port", type=int, default=0, help="HTTP listing port (0 = free, -1 = off)")
    ap.add_argument("--user", default="user")
    ap.add_argument("--password", default="secret")
    ap.add_argument("--require-auth", action="store_true", help="refuse MAIL before AUTH on the plain port")
    ap.add_argument("--watch-parent", action="store_true", help="exit when the parent process exits")
    # backwards compatible with spec/helpers/smtp_sink.py: a positional DIR
    ap.add_argument("positional_dir", nargs="?")
    args = ap.parse_args()

    d = args.dir or args.positional_dir or tempfile.mkdtemp(prefix="smtp-sink-")
    os.makedirs(d, exist_ok=True)
    sink = Sink(d)
    auth = make_authenticator(args.user, args.password)
    port = args.port or free_port(args.host)
    plain = Controller(sink, hostname=args.host, port=port, authenticator=auth, auth_require_tls=False,
                       auth_required=args.require_auth)
    plain.start()
    cert = None
    tls_port = None
    tls = None
    if args.tls_port >= 0:
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        tls_port = args.tls_port or free_port(args.host)
        tls = Controller(sink, hostname=args.host, port=tls_port, tls_context=ctx, require_starttls=True,
                         authenticator=auth)
        tls.start()
    http_port = None
    if args.http_port >= 0:
        httpd = ThreadingHTTPServer((args.host, args.http_port), http_handler(d))
        http_port = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, daemon=True).start()

    print(json.dumps({"pid": os.getpid(), "host": args.host, "port": port, "tls_port": tls_port,
                      "http_port": http_port, "dir": d, "ca": cert}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    parent = os.getppid()
    while True:
        time.sleep(0.3)
        if args.watch_parent and os.getppid() != parent:
            break
    plain.stop()
    if tls:
        tls.stop()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
