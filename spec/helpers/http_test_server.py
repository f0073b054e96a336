#!/usr/bin/env python3
"""Local HTTP/HTTPS test server for spec/http_client_spec.lua.

Usage: http_test_server.py DIR
Creates a CA, a server certificate (localhost, 127.0.0.1) and a client
certificate with openssl in DIR, starts three servers on free loopback ports
(plain HTTP, HTTPS, HTTPS that requires a client certificate, and HTTPS on
127.0.0.2, a name the certificate does not list) and prints one JSON line:
{"pid", "http", "https", "mtls", "https_other", "closed", "ca", "server_cert", "client_cert",
"client_key"}. Exits when its parent process goes away (or on SIGTERM).

Endpoints (all servers):
  /ok                      200 "hello"
  /echo                    JSON: method, path, query, args, headers, body, peer_port
  /status/<code>           <code> with a JSON body {"error": "status <code>"}
  /redirect/<n>            302 to /redirect/<n-1>; /redirect/0 -> 200 "redirected"
  /slow?delay=s&group=g    waits s seconds, then 200 "slow"
  /large?size=n            n bytes of "0123456789abcdef" repeated
  /trickle?n=k&interval=s  k bytes, one every s seconds (Content-Length k)
  /cookies/set?a=1&b=2     Set-Cookie a=1, b=2 (Path=/), 200
  /cookies                 JSON of the cookies received
  /auth                    200 if Basic auth is user / "p@ss w0rd", else 401
  /stats?group=g           highest number of /slow requests of group g handled at once
"""
import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GROUPS = {}


def group(args):
    name = args.get("group", [""])[0]
    with LOCK:
        return GROUPS.setdefault(name, {"active": 0, "max_active": 0})

LOCK = threading.Lock()
PATTERN = b"0123456789abcdef"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, code, body, ctype="text/plain", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_any(self):
        self.route()

    def route(self):
        u = urllib.parse.urlsplit(self.path)
        args = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        body = self.read_body()
        p = u.path
        if p == "/ok":
            return self.send(200, "hello")
        if p == "/echo":
            return self.send(200, json.dumps({
                "method": self.command, "path": p, "query": u.query, "args": args,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"), "peer_port": self.client_address[1],
            }), "application/json")
        if p.startswith("/status/"):
            code = int(p.split("/")[2])
            return self.send(code, json.dumps({"error": "status %d" % code}), "application/json")
        if p.startswith("/redirect/"):
            n = int(p.split("/")[2])
            if n <= 0:
                return self.send(200, "redirected")
            return self.send(302, "", headers=[("Location", "/redirect/%d" % (n - 1))])
        if p == "/slow":
            st = group(args)
            with LOCK:
                st["active"] += 1
                st["max_active"] = max(st["max_active"], st["active"])
            try:
                time.sleep(float(args.get("delay", ["1"])[0]))
            finally:
                with LOCK:
                    st["active"] -= 1
            return self.send(200, "slow")
        if p == "/large":
            n = int(args.get("size", ["10485760"])[0])
            data = (PATTERN * (n // len(PATTERN) + 1))[:n]
            return self.send(200, data, "application/octet-stream")
        if p == "/trickle":
            n = int(args.get("n", ["10"])[0])
            interval = float(args.get("interval", ["0.1"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            self.wfile.flush()
            try:
                for _ in range(n):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(interval)
            except OSError:
                self.close_connection = True
            return None
        if p == "/cookies/set":
            hdrs = [("Set-Cookie", "%s=%s; Path=/" % (k, v[0])) for k, v in sorted(args.items())]
            return self.send(200, "set", headers=hdrs)
        if p == "/cookies":
            jar = {}
            for part in (self.headers.get("Cookie") or "").split(";"):
                if "=" in part:
                    k, v = part.strip().split("=", 1)
                    jar[k] = v
            return self.send(200, json.dumps(jar), "application/json")
        if p == "/auth":
            want = "Basic " + base64.b64encode(b"user:p@ss w0rd").decode()
            if self.headers.get("Authorization") == want:
                return self.send(200, "welcome")
            return self.send(401, "unauthorized", headers=[("WWW-Authenticate", 'Basic realm="t"')])
        if p == "/stats":
            return self.send(200, json.dumps(group(args)), "application/json")
        return self.send(404, "not found: " + p)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # clients that time out and hang up are part of the tests


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(d):
    ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
            "-subj", "/CN=aengine test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    out = {"ca": ca}
    for name, cn, ext in (("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                           "extendedKeyUsage=serverAuth\n"),
                          ("client", "aengine test client", "extendedKeyUsage=clientAuth\n")):
        key, csr, crt = (os.path.join(d, name + s) for s in (".key", ".csr", ".pem"))
        extfile = os.path.join(d, name + ".ext")
        with open(extfile, "w") as f:
            f.write(ext)
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
                "-days", "2", "-extfile", extfile)
        out[name + "_cert"], out[name + "_key"] = crt, key
    return out


def serve(ctx=None, host="127.0.0.1"):
    srv = Server((host, 0), Handler)
    if ctx:
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    certs = make_certs(d)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certs["server_cert"], certs["server_key"])
    mtls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    mtls.load_cert_chain(certs["server_cert"], certs["server_key"])
    mtls.load_verify_locations(certs["ca"])
    mtls.verify_mode = ssl.CERT_REQUIRED
    info = {"pid": os.getpid(), "http": serve(), "https": serve(tls), "mtls": serve(mtls),
            "https_other": serve(tls, "127.0.0.2"),
            "ca": certs["ca"], "server_cert": certs["server_cert"],
            "client_cert": certs["client_cert"], "client_key": certs["client_key"]}
    # a port nobody listens on, for "connection refused"
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    info["closed"] = s.getsockname()[1]
    s.close()
    print(json.dumps(info), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.3)
    os._exit(0)


if __name__ == "__main__":
    main()
