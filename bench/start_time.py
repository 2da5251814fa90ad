#!/usr/bin/env python3
"""Measure a broker's start time: from exec to the first accepted TCP connection on its AMQP port.

usage: start_time.py WARREN_BINARY [RUNS]       Warren, ephemeral, port 0 (port read from its stdout)
       start_time.py --rabbitmq [RUNS]          RabbitMQ via ../shared/tools/rabbitmq.sh (slow: seconds each)
Prints each run and the median in milliseconds, plus the idle RSS after start.
"""
import os
import socket
import statistics
import subprocess
import sys
import time


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_accept(port, deadline):
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.0005)
    return False


def warren_once(binary):
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "--port", "0", "--bind", "127.0.0.1", "--ephemeral", "--log-level", "warn"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    port = int(line.strip().split("=", 1)[1])
    ok = wait_accept(port, t0 + 10)
    ms = (time.monotonic() - t0) * 1000
    time.sleep(0.2)
    rss = rss_kib(p.pid)
    p.terminate()
    p.wait()
    if not ok:
        raise SystemExit("warren did not accept connections")
    return ms, rss


def rabbit_once(script, port=5694):
    t0 = time.monotonic()
    subprocess.run([script, "start", str(port)], check=True, stdout=subprocess.DEVNULL)
    ok = wait_accept(port, t0 + 120)
    ms = (time.monotonic() - t0) * 1000
    time.sleep(1)
    pid = open(f"/tmp/rabbitmq-ref-{port}/rabbit.pid").read().strip()
    # The Erlang VM's RSS (beam.smp), not the shell wrapper's.
    rss = rss_kib(int(pid))
    subprocess.run([script, "stop", str(port)], check=True)
    if not ok:
        raise SystemExit("rabbitmq did not accept connections")
    return ms, rss


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    if args[0] == "--rabbitmq":
        runs = int(args[1]) if len(args) > 1 else 3
        script = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "tools", "rabbitmq.sh")
        results = [rabbit_once(script) for _ in range(runs)]
        name = "rabbitmq"
    else:
        runs = int(args[1]) if len(args) > 1 else 20
        results = [warren_once(args[0]) for _ in range(runs)]
        name = "warren"
    times = [r[0] for r in results]
    rss = [r[1] for r in results]
    print(f"{name}: start to accepting connections, {runs} runs: " + " ".join(f"{t:.1f}" for t in times) + " ms")
    print(f"{name}: median start {statistics.median(times):.1f} ms, idle RSS {statistics.median(rss) / 1024:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
