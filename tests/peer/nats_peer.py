#!/usr/bin/env python3
"""A NATS peer that is not aengine: raw text protocol over a socket (no client
library). Checks wire compatibility both ways with an aengine unit:
  1. sends the original request envelope to SERVE_SUBJECT with a reply inbox
     and checks the reply envelope {request_id, body, status};
  2. serves REQ_SUBJECT: answers aengine's request with a reply envelope
     published to the message's reply subject (= response_topic).
usage: nats_peer.py HOST PORT SERVE_SUBJECT REQ_SUBJECT READY_FILE
Prints OK on success, FAIL: <why> otherwise; exits after 20 s at most."""
import json, socket, sys, time

host, port, serve_subject, req_subject, ready_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
deadline = time.time() + 20
s = socket.create_connection((host, port), timeout=20)
buf = b""

def readline():
    global buf
    while b"\r\n" not in buf:
        if time.time() > deadline:
            raise TimeoutError("no data")
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("closed")
        buf += chunk
    line, buf = buf.split(b"\r\n", 1)
    return line.decode()

def readn(n):
    global buf
    while len(buf) < n + 2:
        buf += s.recv(65536)
    data, buf = buf[:n], buf[n + 2:]
    return data

def next_msg():
    while True:
        line = readline()
        if line.startswith("PING"):
            s.sendall(b"PONG\r\n")
        elif line.startswith("MSG"):
            parts = line.split(" ")
            subject, reply = parts[1], (parts[3] if len(parts) == 5 else "")
            return subject, reply, readn(int(parts[-1]))
        elif line.startswith("-ERR"):
            raise RuntimeError(line)

def fail(why):
    print("FAIL: " + why, flush=True)
    sys.exit(1)

readline()  # INFO
s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"name":"raw-peer"}\r\n')
s.sendall(("SUB %s 1\r\nSUB _INBOX.peer.1 2\r\nPING\r\n" % req_subject).encode())
while readline() != "PONG":
    pass
open(ready_file, "w").write("ready\n")

# 1. request -> aengine serve
req = json.dumps({"request_id": "PeerReq0000000000000001", "body": {"ticket_id": 42}}, separators=(",", ":"))
s.sendall(("PUB %s _INBOX.peer.1 %d\r\n%s\r\n" % (serve_subject, len(req), req)).encode())
served = False
answered = False
while not (served and answered):
    subject, reply, data = next_msg()
    msg = json.loads(data)
    if subject == "_INBOX.peer.1":
        if msg.get("request_id") != "PeerReq0000000000000001" or msg.get("status") != 200:
            fail("bad reply " + data.decode())
        if msg.get("body") != {"ticket_id": 42, "seen_topic": "_INBOX.peer.1"}:
            fail("bad body " + data.decode())
        served = True
    elif subject == req_subject:
        # 2. aengine request -> this peer
        if not reply or "request_id" not in msg:
            fail("bad request from aengine " + data.decode())
        out = json.dumps({"request_id": msg["request_id"], "body": {"peer": "raw", "got": msg.get("body")},
                          "status": 200}, separators=(",", ":"))
        s.sendall(("PUB %s %d\r\n%s\r\n" % (reply, len(out.encode()), out)).encode())
        answered = True
print("OK", flush=True)
