"""Start and stop a Warren broker process."""

import base64
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Dict, List, Optional

STARTUP_TIMEOUT = 10.0
# The HTTP listeners' LISTENING lines follow the AMQP one immediately; this only bounds the wait when a
# config file turned them off.
HTTP_LINES_TIMEOUT = 2.0


class WarrenError(RuntimeError):
    pass


def find_binary(explicit: Optional[str] = None) -> str:
    """The warren executable: an explicit path, $WARREN_BIN, or `warren` on PATH."""
    for candidate in (explicit, os.environ.get("WARREN_BIN")):
        if candidate:
            if os.access(candidate, os.X_OK):
                return candidate
            raise WarrenError(f"warren binary {candidate!r} is not an executable file")
    found = shutil.which("warren")
    if found:
        return found
    raise WarrenError(
        "cannot find the warren binary: set WARREN_BIN, pass --warren-bin, or put warren on PATH"
    )


@dataclass
class WarrenBroker:
    host: str
    port: int
    process: subprocess.Popen
    user: str = "guest"
    password: str = "guest"
    log: List[str] = field(default_factory=list)
    _ports: Dict[str, int] = field(default_factory=dict)
    _http_lines: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{self.password}@{self.host}:{self.port}/%2F"

    def _http_port(self, what: str) -> int:
        self._http_lines.wait(HTTP_LINES_TIMEOUT)
        port = self._ports.get(what)
        if port is None:
            raise WarrenError(f"this broker has no {what} listener")
        return port

    @property
    def management_port(self) -> int:
        return self._http_port("management")

    @property
    def management_url(self) -> str:
        """Base URL of RabbitMQ's management HTTP API, e.g. http://127.0.0.1:PORT (the API is under /api)."""
        return f"http://{self.host}:{self.management_port}"

    @property
    def prometheus_url(self) -> str:
        """Base URL of the Prometheus listener (scrape {prometheus_url}/metrics)."""
        return f"http://{self.host}:{self._http_port('prometheus')}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def _api(self, method: str, path: str, body: Optional[dict] = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.management_url}/api/{path}", data=data, method=method)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise WarrenError(f"{method} /api/{path}: {e.code} {e.read().decode(errors='replace')}") from e

    def advance_clock(self, seconds: float = 0.0, ms: Optional[int] = None) -> int:
        """Move a virtual broker clock forward (start the broker with `--clock virtual`, e.g. via
        `--warren-arg=--clock=virtual`), firing every TTL expiry, dead-lettering, queue expiry and consumer
        timeout that falls due, in time order. Returns the broker time afterwards, in Unix milliseconds."""
        step = ms if ms is not None else int(round(seconds * 1000))
        return int(self._api("POST", "warren/clock/advance", {"ms": step})["now"])

    @property
    def broker_time_ms(self) -> int:
        """The broker's time (virtual or real), in Unix milliseconds."""
        return int(self._api("GET", "warren/clock")["now"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_broker(binary: Optional[str] = None, args: Optional[List[str]] = None) -> WarrenBroker:
    """Start an ephemeral broker on a free loopback port and wait until it accepts connections."""
    exe = find_binary(binary)
    cmd = [exe, "--port", "0", "--bind", "127.0.0.1", "--ephemeral", *(args or [])]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    log: List[str] = []

    def drain_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line.rstrip("\n"))

    threading.Thread(target=drain_stderr, daemon=True).start()
    assert proc.stdout is not None
    ports: Dict[str, int] = {}
    amqp_ready = threading.Event()
    http_lines = threading.Event()

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "LISTENING":
                what = "amqp" if fields[1].startswith("port=") else fields[1]
                port = next((f.split("=", 1)[1] for f in fields[1:] if f.startswith("port=")), None)
                if port is not None and port.isdigit():
                    ports[what] = int(port)
                if what == "amqp":
                    amqp_ready.set()
                if what == "prometheus":
                    http_lines.set()
        amqp_ready.set()
        http_lines.set()

    threading.Thread(target=read_stdout, daemon=True).start()
    amqp_ready.wait(STARTUP_TIMEOUT)
    port = ports.get("amqp")
    if port is None:
        proc.kill()
        proc.wait()
        raise WarrenError(f"warren did not start: {' | '.join(log[-10:])}")
    return WarrenBroker(
        host="127.0.0.1", port=port, process=proc, log=log, _ports=ports, _http_lines=http_lines
    )
