"""Fixtures for the UI browser tests: the broker started by run.sh (ports in env), one chromium for
the session, a fresh page per test that fails the test on any console error or page error."""
import base64
import json
import os
import urllib.error
import urllib.request

import pika
import pytest
from playwright.sync_api import sync_playwright

MGMT = int(os.environ.get("WARREN_MGMT_PORT", "15672"))
AMQP = int(os.environ.get("WARREN_AMQP_PORT", "5672"))
BASE = f"http://127.0.0.1:{MGMT}/"
SHOTS = os.environ.get("UI_SCREENSHOTS", os.path.join(os.path.dirname(__file__), "screenshots"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def api(method, path, body=None, user="guest", password="guest", headers=None):
    """Call the management API directly (test setup and checks). Returns parsed JSON or None."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(BASE + "api" + path, data=data, method=method)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    req.add_header("Authorization", f"Basic {auth}")
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read()
        return json.loads(text) if text else None


def amqp(name="ui-test"):
    params = pika.ConnectionParameters(
        host="127.0.0.1", port=AMQP, credentials=pika.PlainCredentials("guest", "guest"),
        client_properties={"connection_name": name}, heartbeat=0)
    return pika.BlockingConnection(params)


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A browser page plus the console errors seen on it."""

    def __init__(self, page):
        self.p = page
        self.errors = []
        # Chromium logs every 4xx/5xx response as a console error; a test that provokes one on
        # purpose (a wrong password, an invalid policy) names its status here.
        self.allowed_statuses = set()
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def unexpected_errors(self):
        allowed = tuple(f"status of {s} " for s in self.allowed_statuses)
        return [e for e in self.errors if not (e.startswith("console.error: Failed to load resource") and any(a in e for a in allowed))]

    def login(self, user="guest", password="guest"):
        self.p.goto(BASE)
        self.p.fill("#login-user", user)
        self.p.fill("#login-pass", password)
        self.p.click("form.login button[type=submit]")
        self.p.wait_for_selector("#nav a[aria-current=page]")

    def go(self, hash_path, ready="main h1"):
        self.p.goto(BASE + "#/" + hash_path)
        self.p.wait_for_selector(ready)

    def shot(self, name):
        os.makedirs(SHOTS, exist_ok=True)
        self.p.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def _new_page(browser, **kw):
    ctx = browser.new_context(accept_downloads=True, **kw)
    page = ctx.new_page()
    page.set_default_timeout(10_000)
    return ctx, Page(page)


@pytest.fixture
def page(browser, request):
    ctx, pg = _new_page(browser, viewport={"width": 1280, "height": 900})
    yield pg
    try:
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            pg.shot(f"FAILED-{request.node.name}")
    finally:
        ctx.close()
    assert pg.unexpected_errors() == [], f"console errors: {pg.errors}"


@pytest.fixture
def phone(browser):
    ctx, pg = _new_page(browser, viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    yield pg
    ctx.close()
    assert pg.unexpected_errors() == [], f"console errors: {pg.errors}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


__all__ = ["api", "amqp", "BASE", "urllib"]
