"""AMQPS with pika against the warren binary: certificates made with openssl as the README shows, TLS
with PLAIN (no client certificate), TLS with a client certificate and EXTERNAL, an authentication failure,
the management API over HTTPS, and a SIGHUP certificate reload that keeps open connections.

Usage: pika_tls.py WARREN_BIN
"""

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

import pika
from pika.credentials import ExternalCredentials, PlainCredentials


def sh(cmd, cwd):
    subprocess.run(cmd, cwd=cwd, shell=True, check=True, capture_output=True)


def make_pki(d, ca_name="test-ca"):
    sh(f"openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN={ca_name} -keyout ca.key -out ca.pem", d)
    sh("openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr", d)
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    sh("openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
       "-extfile san.ext -out server.pem", d)
    sh("openssl req -newkey rsa:2048 -nodes -subj /CN=guest -keyout client.key -out client.csr", d)
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    sh("openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
       "-extfile client.ext -out client.pem", d)


def start(warren, d):
    cfg = os.path.join(d, "warren.toml")
    with open(cfg, "w") as f:
        f.write(f"""
bind = "127.0.0.1"
port = 0
ephemeral = true
auth_mechanisms = ["PLAIN", "AMQPLAIN", "EXTERNAL"]
[tls]
port = 0
cert = "{d}/server.pem"
key = "{d}/server.key"
ca = "{d}/ca.pem"
verify_peer = true
fail_if_no_peer_cert = false
[management]
port = 0
tls = true
[prometheus]
enabled = false
""")
    p = subprocess.Popen([warren, "--config", cfg], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ports = {}
    while "management" not in ports:
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"warren exited before listening (status {p.poll()})")
        parts = line.split()
        if parts and parts[0] == "LISTENING":
            kind = parts[1] if len(parts) == 3 else "amqp"
            ports[kind] = int(parts[-1].split("=")[1])
    return p, ports


def context(d, client_cert):
    ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))
    if client_cert:
        ctx.load_cert_chain(os.path.join(d, "client.pem"), os.path.join(d, "client.key"))
    return ctx


def params(port, d, credentials, client_cert=False):
    return pika.ConnectionParameters(
        host="localhost", port=port, credentials=credentials,
        ssl_options=pika.SSLOptions(context(d, client_cert), "localhost"),
        connection_attempts=1, socket_timeout=5)


def round_trip(conn, body):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, body)
    for _ in range(100):
        m = ch.basic_get(q, auto_ack=True)
        if m[0] is not None:
            assert m[2] == body, m
            return
        time.sleep(0.01)
    raise AssertionError("message did not come back")


def main():
    # Every run left its certificates behind in the temp dir.
    made = []
    try:
        run(sys.argv[1], made)
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


def run(warren, made):
    d = tempfile.mkdtemp(prefix="warren-tls-")
    made.append(d)
    make_pki(d)
    p, ports = start(warren, d)
    try:
        amqps = ports["amqps"]
        plain = pika.BlockingConnection(params(amqps, d, PlainCredentials("guest", "guest")))
        round_trip(plain, b"plain over tls")
        print("ok: PLAIN over TLS without a client certificate")

        ext = pika.BlockingConnection(params(amqps, d, ExternalCredentials(), client_cert=True))
        round_trip(ext, b"external")
        print("ok: EXTERNAL with a client certificate (CN=guest)")

        try:
            pika.BlockingConnection(params(amqps, d, PlainCredentials("guest", "wrong")))
            raise AssertionError("a wrong password was accepted")
        except pika.exceptions.ProbableAuthenticationError as e:
            assert "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN" in str(e), e
        print("ok: wrong password refused with 403 ACCESS_REFUSED")

        req = urllib.request.Request(f"https://localhost:{ports['management']}/api/overview")
        req.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
        with urllib.request.urlopen(req, context=context(d, False), timeout=5) as r:
            overview = json.load(r)
        assert overview["product_name"] == "RabbitMQ", overview
        conns = urllib.request.Request(f"https://localhost:{ports['management']}/api/connections")
        conns.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
        with urllib.request.urlopen(conns, context=context(d, False), timeout=5) as r:
            listed = json.load(r)
        assert len(listed) == 2 and all(c["ssl"] for c in listed), listed
        print("ok: management API over HTTPS; connections listed with ssl=true")

        # New certificates from a new CA; SIGHUP; new clients need the new CA, old connections live on.
        old = tempfile.mkdtemp(prefix="warren-tls-old-")
        made.append(old)
        for f in ("ca.pem", "client.pem", "client.key"):
            os.replace(os.path.join(d, f), os.path.join(old, f))
        make_pki(d, ca_name="second-ca")
        p.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while True:
            try:
                fresh = pika.BlockingConnection(params(amqps, d, PlainCredentials("guest", "guest")))
                break
            except (pika.exceptions.AMQPConnectionError, ssl.SSLError):
                assert time.time() < deadline, "the new certificate was not served after SIGHUP"
                time.sleep(0.1)
        round_trip(fresh, b"after reload")
        round_trip(plain, b"still up")
        round_trip(ext, b"still up")
        try:
            pika.BlockingConnection(params(amqps, old, PlainCredentials("guest", "guest")))
            raise AssertionError("the old certificate is still served")
        except (pika.exceptions.AMQPConnectionError, ssl.SSLError):
            pass
        print("ok: SIGHUP reloaded the certificates; open connections kept")
        for c in (plain, ext, fresh):
            c.close()
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            raise SystemExit("warren did not stop on SIGTERM")
    assert p.returncode == 0, p.returncode
    print("ok: stopped on SIGTERM")


if __name__ == "__main__":
    main()
