"""Start and stop a Warren broker process."""

import base64
import datetime
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

STARTUP_TIMEOUT = 10.0
# The HTTP listeners' LISTENING lines follow the AMQP one immediately; this only bounds the wait when a
# config file turned them off.
HTTP_LINES_TIMEOUT = 2.0
# How many of the related journal events a wait_for failure lists (the newest).
RELATED_SHOWN = 20
JOURNAL_FILTERS = (
    "vhost", "message_id", "correlation_id", "queue", "exchange", "event", "since", "until", "limit",
)


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

    def _request(
        self, method: str, path: str, body: Optional[dict] = None, ok: Iterable[int] = (200, 201, 204),
        timeout: float = 30.0,
    ) -> Tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.management_url}/api/{path}", data=data, method=method)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except OSError as e:
            raise WarrenError(f"{method} /api/{path}: {e}") from e
        if status not in ok:
            text = raw.decode(errors="replace")
            if status == 404 and path.startswith("warren/"):
                raise WarrenError(f"{method} /api/{path}: 404 — this warren binary has no such test endpoint (too old?)")
            raise WarrenError(f"{method} /api/{path}: {status} {text}")
        try:
            return status, json.loads(raw or b"{}")
        except ValueError:
            return status, {"raw": raw.decode(errors="replace")}

    def _api(self, method: str, path: str, body: Optional[dict] = None) -> dict:
        return self._request(method, path, body)[1]

    def advance_clock(
        self, seconds: Union[float, str, datetime.timedelta] = 0.0, ms: Optional[int] = None
    ) -> int:
        """Move a virtual broker clock forward (start the broker with `--clock virtual`, e.g. via
        `--warren-arg=--clock=virtual`), firing every TTL expiry, dead-lettering, queue expiry and consumer
        timeout that falls due, in time order. `seconds` may also be a timedelta or a string such as
        "90s", "1h", "1h30m", "250ms". Returns the broker time afterwards, in Unix milliseconds."""
        step = ms if ms is not None else duration_ms(seconds)
        return int(self._api("POST", "warren/clock/advance", {"ms": step})["now"])

    @property
    def broker_time_ms(self) -> int:
        """The broker's time (virtual or real), in Unix milliseconds."""
        return int(self._api("GET", "warren/clock")["now"])

    def wait_idle(self, timeout: float = 10.0) -> dict:
        """Return once nothing is in flight: no ready message a consumer could take, no unacknowledged
        delivery, no pending confirm, no unsent bytes, no due timer. If that takes longer than `timeout`
        seconds, fail with an AssertionError listing what is still pending."""
        ms = duration_ms(timeout)
        status, body = self._request(
            "GET", f"warren/idle?timeout_ms={ms}", ok=(200, 408), timeout=ms / 1000 + 30
        )
        if status == 408:
            raise AssertionError(idle_failure(ms, body.get("pending") or {}))
        return body

    def journal(self, **filters) -> List[dict]:
        """Journal events matching every filter, oldest first. Filters: message_id, correlation_id, queue,
        exchange, event, vhost, since, until (broker Unix ms), limit."""
        query = _journal_query(filters)
        return self._api("GET", f"warren/journal?{urllib.parse.urlencode(query)}")["events"]

    def wait_for(self, timeout: float = 5.0, **filters) -> List[dict]:
        """Wait until the journal has an event matching `filters` (e.g. message_id="m1",
        event="dead-lettered") and return the matching events. If none comes within `timeout` seconds,
        fail with an AssertionError listing what the journal does hold about the same message."""
        query = _journal_query(filters)
        ms = duration_ms(timeout)
        status, body = self._request(
            "GET",
            f"warren/journal?{urllib.parse.urlencode({**query, 'wait_ms': ms})}",
            ok=(200, 408),
            timeout=ms / 1000 + 30,
        )
        if status == 408 or not body.get("events"):
            raise AssertionError(wait_for_failure(query, ms, body))
        return body["events"]

    def clear_journal(self) -> None:
        """Empty the journal."""
        self._request("DELETE", "warren/journal")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(d: Union[float, int, str, datetime.timedelta]) -> int:
    """Milliseconds in a duration: seconds (a number), a timedelta, or a string like "90s", "1h30m", "250ms"."""
    if isinstance(d, datetime.timedelta):
        return int(round(d.total_seconds() * 1000))
    if isinstance(d, str):
        if not re.fullmatch(r"\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+", d):
            raise WarrenError(f"bad duration {d!r}: expected e.g. '90s', '1h30m', '250ms'")
        return int(round(sum(float(n) * _UNIT_MS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", d))))
    if d < 0:
        raise WarrenError(f"bad duration {d}: negative")
    return int(round(d * 1000))


def _journal_query(filters: Dict[str, Any]) -> Dict[str, Any]:
    unknown = sorted(set(filters) - set(JOURNAL_FILTERS))
    if unknown:
        raise WarrenError(f"unknown journal filter(s) {', '.join(unknown)} (known: {', '.join(JOURNAL_FILTERS)})")
    return {k: filters[k] for k in JOURNAL_FILTERS if filters.get(k) is not None}


def _fmt_duration(ms: int) -> str:
    if ms < 1000:
        return f"{ms}ms"
    if ms % 3_600_000 == 0:
        return f"{ms // 3_600_000}h"
    if ms % 60_000 == 0:
        return f"{ms // 60_000}m"
    return f"{ms / 1000:g}s"


def _fmt_time(ms: Any) -> str:
    if not isinstance(ms, (int, float)):
        return str(ms)
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return t.strftime("%H:%M:%S.") + f"{int(ms) % 1000:03d}"


def _quoted(s: str) -> str:
    return '""' if s == "" else s


def format_event(e: dict, filters: Optional[Dict[str, Any]] = None) -> str:
    """One journal event as a short line, e.g. 'published 12:00:00.001 exchange=x rk=k'."""
    filters = filters or {}
    parts = [str(e.get("event")), _fmt_time(e.get("time"))]
    if e.get("vhost") not in (None, "/") and "vhost" not in filters:
        parts.append(f"vhost={e['vhost']}")
    if e.get("message_id") is not None and "message_id" not in filters:
        parts.append(f"message_id={e['message_id']}")
    if e.get("event") in ("published", "unroutable", "returned", "routed"):
        if e.get("exchange") is not None:
            parts.append(f"exchange={_quoted(e['exchange'])}")
        if e.get("routing_key") is not None:
            parts.append(f"rk={_quoted(e['routing_key'])}")
    elif e.get("queue") is not None:
        parts.append(f"queue={e['queue']}")
    if e.get("event") == "delivered":
        parts.append("by basic.get" if e.get("consumer_tag") is None else f"consumer={e['consumer_tag']}")
        if e.get("redelivered"):
            parts.append("redelivered")
    if e.get("event") == "confirmed" and e.get("ack") is False:
        parts.append("nack")
    if e.get("reply_code") is not None:
        parts.append(f"{e['reply_code']} {e.get('reply_text') or ''}".strip())
    if isinstance(e.get("requeue"), bool):
        parts.append(f"requeue={'true' if e['requeue'] else 'false'}")
    if e.get("reason") is not None:
        parts.append(f"reason={e['reason']}")
    if e.get("dead_letter_exchange") is not None:
        parts.append(f"dlx={_quoted(e['dead_letter_exchange'])}")
    dlrk = e.get("dead_letter_routing_keys", e.get("dead_letter_routing_key"))
    if dlrk is not None:
        keys = dlrk if isinstance(dlrk, list) else [dlrk]
        parts.append(f"dlrk={','.join(_quoted(k) for k in keys)}")
    if isinstance(e.get("queues"), list):
        parts.append(f"to [{', '.join(e['queues'])}]")
    if e.get("alternate"):
        parts.append(f"via alternate [{', '.join(e['alternate'])}]")
    return " ".join(parts)


def wait_for_failure(filters: Dict[str, Any], timeout_ms: int, body: dict) -> str:
    """The text of a wait_for that timed out: what was expected, and what the journal holds about the same
    message (the 408 answer's `related` events: those matching every filter but `event`)."""
    what = f"expected event {filters['event']}" if filters.get("event") else "expected a journal event"
    about = " ".join(f"{k}={v}" for k, v in filters.items() if k not in ("event", "limit"))
    msg = f"{what}{' for ' + about if about else ''} within {_fmt_duration(timeout_ms)}; "
    if body.get("enabled") is False:
        return msg + (
            "the journal is disabled (the helper starts it with --journal on; "
            'or PUT /api/warren/journal {"enabled": true})'
        )
    related = body.get("related") or []
    if not related:
        msg += f"journal has no events{' for ' + about if about else ''}"
    else:
        shown = related[-RELATED_SHOWN:]
        msg += "journal has: "
        if len(related) > len(shown):
            msg += f"({len(related) - len(shown)} earlier) "
        msg += ", ".join(format_event(e, filters) for e in shown)
    if body.get("evicted"):
        msg += f" (the journal is full and dropped its {body['evicted']} oldest events)"
    return msg


def idle_failure(timeout_ms: int, pending: Dict[str, Any]) -> str:
    """The text of a wait_idle that timed out: what the broker still has in flight."""
    parts = []
    for k, v in pending.items():
        if k == "deliverable_queues" and isinstance(v, list):
            names = [
                q.get("name", "?") if q.get("vhost") in (None, "/") else f"{q.get('name')} (vhost {q['vhost']})"
                for q in v
            ]
            parts.append(f"{k}=[{', '.join(names)}]")
        elif isinstance(v, bool):
            parts.append(f"{k}={'true' if v else 'false'}")
        elif isinstance(v, (dict, list)):
            parts.append(f"{k}={json.dumps(v)}")
        else:
            parts.append(f"{k}={v}")
    return f"broker not idle after {_fmt_duration(timeout_ms)}; pending: {', '.join(parts) or '(nothing reported)'}"


def start_broker(binary: Optional[str] = None, args: Optional[List[str]] = None) -> WarrenBroker:
    """Start an ephemeral broker on a free loopback port and wait until it accepts connections."""
    exe = find_binary(binary)
    cmd = [exe, "--port", "0", "--bind", "127.0.0.1", "--ephemeral", "--journal", "on", *(args or [])]
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
