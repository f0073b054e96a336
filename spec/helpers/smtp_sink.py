#!/usr/bin/env python3
"""SMTP sink for the specs (Debian package python3-aiosmtpd).

Usage: smtp_sink.py DIR
Starts two SMTP servers on free loopback ports and prints one JSON line
{"pid", "port", "tls_port", "dir", "ca"}:
  port      plain SMTP; AUTH PLAIN/LOGIN offered (user "user", password
            "secret"), not required
  tls_port  STARTTLS required (self-signed certificate DIR/cert.pem)
Every accepted message is stored as DIR/<n>.eml (the DATA bytes) and then
DIR/<n>.json ({"mail_from", "rcpt_tos", "auth"}), so a spec can wait for the
.json and read the .eml. Recipients whose local part starts with "refuse" are
refused with 550; a sender starting with "reject" gets 554 at DATA.
Exits when its parent process goes away (or on SIGTERM).
"""
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

LOCK = threading.Lock()
COUNTER = [0]


class Sink:
    def __init__(self, directory):
        self.dir = directory

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].startswith("refuse"):
            return "550 5.1.1 <%s>: Recipient address rejected: no such user" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if envelope.mail_from.startswith("reject"):
            return "554 5.7.1 Message rejected: sender is blacklisted"
        with LOCK:
            COUNTER[0] += 1
            n = COUNTER[0]
        base = os.path.join(self.dir, "%d" % n)
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content or b"")
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                "auth": session.auth_data.login.decode() if session.auth_data else None}
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 OK: queued as %d" % n


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"user" and auth_data.password == b"secret"
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    sink = Sink(d)
    plain = Controller(sink, hostname="127.0.0.1", port=free_port(), authenticator=authenticator,
                       auth_require_tls=False)
    plain.start()
    tls = Controller(sink, hostname="127.0.0.1", port=free_port(), tls_context=ctx, require_starttls=True,
                     authenticator=authenticator)
    tls.start()
    print(json.dumps({"pid": os.getpid(), "port": plain.port, "tls_port": tls.port, "dir": d, "ca": cert}),
          flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.3)
    os._exit(0)


if __name__ == "__main__":
    main()
