"""Seed the fuzz corpora from real client traffic.

Starts the warren binary, puts a recording TCP proxy in front of it, runs real clients through the proxy
(pika_smoke.py and the lapin examples), and cuts what the clients sent into seeds for each target:
whole sessions (connection, lifecycle), frame streams (frames), basic.publish payloads (publish) and
content headers (content_header). Then it publishes persistent messages and declares topology on a
broker with a data directory and takes its message segments and definitions log as seeds for
store_recovery and definitions_replay.

Usage: python3 fuzz/tools/seed.py   (from the repository root, after cargo build --release --examples)
"""

import glob
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release", "warren")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
HEADER = b"AMQP\x00\x00\x09\x01"


def start_warren(args):
    p = subprocess.Popen([BIN, "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, env={**os.environ, "WARREN_LOG_LEVEL": "error"})
    line = p.stdout.readline()
    return p, int(line.strip().split("=")[1])


class Recorder:
    """A TCP proxy that keeps what each client sent."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.sessions = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.upstream))
            rec = bytearray()
            self.sessions.append(rec)
            threading.Thread(target=self.pump, args=(c, u, rec), daemon=True).start()
            threading.Thread(target=self.pump, args=(u, c, None), daemon=True).start()

    @staticmethod
    def pump(src, dst, rec):
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                if rec is not None:
                    rec.extend(b)
                dst.sendall(b)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def frames(stream):
    """(type, channel, payload) of each complete frame after the protocol header."""
    i = len(HEADER) if stream.startswith(HEADER) else 0
    out = []
    while i + 7 <= len(stream):
        kind, ch, size = struct.unpack(">BHI", stream[i:i + 7])
        if i + 8 + size > len(stream):
            break
        out.append((kind, ch, bytes(stream[i + 7:i + 7 + size])))
        i += 8 + size
    return out


def put(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def seed_traffic():
    p, port = start_warren(["--ephemeral"])
    rec = Recorder(port)
    url = f"amqp://guest:guest@127.0.0.1:{rec.port}/%2f"
    clients = [
        [sys.executable, os.path.join(ROOT, "integration", "clients", "pika_smoke.py"), url],
        [os.path.join(ROOT, "target", "release", "examples", "publish"), url],
        [os.path.join(ROOT, "target", "release", "examples", "consume"), url],
        [os.path.join(ROOT, "target", "release", "examples", "topic"), url],
        [os.path.join(ROOT, "target", "release", "examples", "retry_dead_letter"), url],
    ]
    for c in clients:
        if os.path.exists(c[0]) or c[0] == sys.executable:
            subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=15)
    sessions = [bytes(s) for s in rec.sessions if s.startswith(HEADER)]
    for s in sessions:
        # Big sessions are cut to their first 16 KiB: the fuzzer mutates small inputs faster.
        s = s[:16384]
        put("lifecycle", s)
        put("connection", s[len(HEADER):])
        put("frames", struct.pack(">I", 131072) + s[len(HEADER):])
        for kind, _, payload in frames(s):
            if kind == 1 and payload[:4] == b"\x00\x3c\x00\x28":
                put("publish", payload)
            if kind == 2:
                put("content_header", payload)
    return len(sessions)


def seed_storage():
    d = tempfile.mkdtemp(prefix="warren-seed-")
    p, port = start_warren(["--data-dir", d])
    import pika
    conn = pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{port}/%2f"))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("seed-x", "topic", durable=True)
    ch.queue_declare("seed-q", durable=True, arguments={"x-max-length": 100, "x-message-ttl": 60000})
    ch.queue_bind("seed-q", "seed-x", "a.#")
    ch.queue_declare("seed-dl", durable=True, arguments={"x-dead-letter-exchange": "seed-x"})
    for i in range(20):
        ch.basic_publish("seed-x", f"a.{i}", b"m" * (i * 7),
                         pika.BasicProperties(delivery_mode=2, headers={"i": i}, priority=i % 3))
    for _ in range(5):
        m = ch.basic_get("seed-q")
        ch.basic_ack(m[0].delivery_tag)
    conn.close()
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=15)
    for seg in glob.glob(os.path.join(d, "**", "*.seg"), recursive=True):
        with open(seg, "rb") as f:
            body = f.read()[16:65536]
        put("store_recovery", (b"\x01" if os.path.basename(seg).startswith("ack") else b"\x00") + body)
    for log in glob.glob(os.path.join(d, "**", "*.log"), recursive=True):
        with open(log, "rb") as f:
            put("definitions_replay", f.read()[:65536])
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    n = seed_traffic()
    seed_storage()
    for t in sorted(os.listdir(CORPUS)):
        print(t, len(os.listdir(os.path.join(CORPUS, t))))
    print("sessions recorded:", n)
