"""Start and stop a Warren broker process."""

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import List, Optional

STARTUP_TIMEOUT = 10.0


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

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{self.password}@{self.host}:{self.port}/%2F"

    @property
    def pid(self) -> int:
        return self.process.pid

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
    deadline = time.monotonic() + STARTUP_TIMEOUT
    port = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("LISTENING port="):
            port = int(line.split("=", 1)[1].split()[0])
            break
    if port is None:
        proc.kill()
        proc.wait()
        raise WarrenError(f"warren did not start: {' | '.join(log[-10:])}")
    return WarrenBroker(host="127.0.0.1", port=port, process=proc, log=log)
