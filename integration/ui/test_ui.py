"""Browser tests of Warren's web management UI (Playwright + Debian's chromium).

Run through run.sh, which starts the broker and sets WARREN_MGMT_PORT / WARREN_AMQP_PORT."""
import json
import threading
import time
import urllib.error
import uuid
from urllib.parse import quote

import pika
import pytest
from playwright.sync_api import expect

from conftest import BASE, amqp, api


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def enc(s):
    return quote(s, safe="")


def declare(name, messages=0, durable=False):
    conn = amqp()
    ch = conn.channel()
    ch.queue_declare(name, durable=durable)
    for i in range(messages):
        ch.basic_publish("", name, f"m{i}".encode())
    conn.close()


def wait_api(fn, timeout=10.0):
    """Poll the API until fn() is truthy (broker-side effects of UI actions)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.1)


def fill_form(page, form_sel, fields):
    """Fill a UI form's named inputs ({name: value}); returns the form locator."""
    f = page.p.locator(form_sel)
    for name, value in fields.items():
        f.locator(f"[name='{name}']").fill(value)
    return f


# ---------------------------------------------------------------------------------------------

def test_login_refused_then_accepted_and_logout(page):
    page.allowed_statuses.add(401)
    p = page.p
    p.goto(BASE)
    p.fill("#login-user", "guest")
    p.fill("#login-pass", "wrong")
    p.click("form.login button[type=submit]")
    expect(p.locator("#login-error")).to_contain_text("Login failed")
    expect(p.locator("#top")).to_be_hidden()
    # The right password, typed and submitted with the keyboard only.
    p.fill("#login-pass", "")
    p.focus("#login-user")
    p.keyboard.press("Control+A")
    p.keyboard.type("guest")
    p.keyboard.press("Tab")
    p.keyboard.type("guest")
    p.keyboard.press("Enter")
    expect(p.locator("#nav a[aria-current=page]")).to_have_text("Overview")
    expect(p.locator("#whoami")).to_contain_text("guest")
    # Remembered for the browser session: a reload stays logged in.
    p.reload()
    expect(p.locator("main h1")).to_have_text("Overview")
    assert p.evaluate("JSON.parse(sessionStorage.getItem('warren.auth')).user") == "guest"
    p.click("#logout")
    expect(p.locator("form.login")).to_be_visible()
    assert p.evaluate("sessionStorage.getItem('warren.auth')") is None


def test_queue_from_amqp_shows_counts_and_page(page):
    q = uniq("ui-counts")
    declare(q, messages=3)
    page.login()
    page.go("queues", ".list-panel tbody tr")
    page.p.fill(".list-panel input.filter", q)
    row = page.p.locator(".list-panel tbody tr", has_text=q)
    expect(row).to_have_count(1)
    cells = row.locator("td")
    headers = page.p.locator(".list-panel thead th").all_inner_texts()
    values = dict(zip([h.strip(" ▲▼") for h in headers], cells.all_inner_texts()))
    assert values["Ready"] == "3" and values["Total"] == "3" and values["Unacked"] == "0", values
    row.get_by_role("link", name=q).click()
    expect(page.p.locator("main h1")).to_contain_text(q)
    assert f"#/queues/%2F/{q}" in page.p.url
    expect(page.p.locator("#q-ready")).to_have_text("3")
    expect(page.p.locator("#q-total")).to_have_text("3")


def test_publish_and_get_message_through_ui(page):
    q = uniq("ui-pubget")
    declare(q)
    page.login()
    page.go(f"queues/%2F/{q}", "#q-total")
    p = page.p
    p.click("summary:has-text('Publish message')")
    payload = 'hello <b id="injected">ui</b> ✓'
    pub = p.locator("form.publish")
    pub.locator("textarea[name=payload]").fill(payload)
    pub.locator("select[name=delivery_mode]").select_option("2")
    pub.locator(".kv[data-name=headers] .kv-key").first.fill("x-test")
    pub.locator(".kv[data-name=headers] .kv-val").first.fill("yes")
    pub.locator("button[type=submit]").click()
    expect(pub.locator(".result")).to_have_text("Message published.")
    expect(p.locator("#q-total")).to_have_text("1")
    assert api("GET", f"/queues/%2F/{q}")["messages"] == 1

    p.click("summary:has-text('Get messages')")
    g = p.locator("form.get-messages")
    g.locator("select[name=ackmode]").select_option("ack_requeue_false")
    g.locator("button[type=submit]").click()
    msg = p.locator("article.message")
    expect(msg).to_have_count(1)
    expect(msg.locator("pre.payload")).to_have_text(payload)
    expect(msg).to_contain_text("x-test: yes")
    expect(msg).to_contain_text("delivery_mode: 2")
    assert p.locator("#injected").count() == 0  # the payload is text, never markup
    expect(p.locator("#q-total")).to_have_text("0")
    assert api("GET", f"/queues/%2F/{q}")["messages"] == 0


def test_purge_through_ui(page):
    q = uniq("ui-purge")
    declare(q, messages=5)
    page.login()
    page.go(f"queues/%2F/{q}", "#q-ready")
    expect(page.p.locator("#q-ready")).to_have_text("5")
    page.p.click("summary:has-text('Purge')")
    page.p.click("#purge")
    dlg = page.p.locator("dialog.confirm[open]")
    expect(dlg).to_contain_text(q)
    dlg.get_by_role("button", name="Purge").click()
    expect(page.p.locator("#q-ready")).to_have_text("0")
    assert api("GET", f"/queues/%2F/{q}")["messages"] == 0


def test_hostile_queue_name_is_shown_as_text(page):
    q = uniq('<img src=x onerror="window.__xss=1"> a/b#c%20d')
    declare(q, messages=1)
    page.login()
    page.go("queues", ".list-panel tbody tr")
    page.p.fill(".list-panel input.filter", q)
    expect(page.p.locator(".list-panel tbody tr", has_text=q)).to_have_count(1)
    page.p.get_by_role("link", name=q).click()
    expect(page.p.locator("main h1")).to_contain_text(q)
    expect(page.p.locator("#q-total")).to_have_text("1")  # the page found the queue by its encoded name
    assert page.p.evaluate("window.__xss") is None
    assert page.p.locator("main img[src=x]").count() == 0


def test_bindings_and_publish_on_exchange_page(page):
    x = uniq("ui-ex")
    q = uniq("ui-bound")
    api("PUT", f"/exchanges/%2F/{x}", {"type": "direct", "durable": False})
    declare(q)
    page.login()
    page.go(f"exchanges/%2F/{x}", "form.bind")
    p = page.p
    bind = p.locator("form.bind").first
    bind.locator("select[name=dtype]").select_option("q")
    bind.locator("input[name=destination]").fill(q)
    bind.locator("input[name=routing_key]").fill("rk.1")
    bind.locator("button[type=submit]").click()
    row = p.locator("table.bindings").first.locator("tbody tr", has_text=q)
    expect(row).to_have_count(1)
    assert [b["routing_key"] for b in api("GET", f"/exchanges/%2F/{x}/bindings/source")] == ["rk.1"]

    p.click("summary:has-text('Publish message')")
    pub = p.locator("form.publish")
    pub.locator("input[name=routing_key]").fill("rk.1")
    pub.locator("textarea[name=payload]").fill("via exchange")
    pub.locator("button[type=submit]").click()
    expect(pub.locator(".result")).to_have_text("Message published.")
    assert wait_api(lambda: api("GET", f"/queues/%2F/{q}").get("messages") == 1)

    row.get_by_role("button", name="Unbind").click()
    p.locator("dialog.confirm[open]").get_by_role("button", name="Unbind").click()
    expect(p.locator("table.bindings").first.locator("tbody tr", has_text=q)).to_have_count(0)
    assert api("GET", f"/exchanges/%2F/{x}/bindings/source") == []


def test_add_user_and_policy(page):
    user = uniq("ui-user")
    pol = uniq("ui-policy")
    page.login()
    page.go("users", "form.add-user")
    f = fill_form(page, "form.add-user", {"name": user, "password": "s3cret"})
    f.get_by_role("button", name="monitoring").click()
    f.get_by_role("button", name="Add user").click()
    expect(page.p.locator(".list-panel tbody tr", has_text=user)).to_contain_text("monitoring")
    u = api("GET", f"/users/{user}")
    assert u["tags"] == ["monitoring"]
    # The new user can authenticate with the password set in the form.
    assert api("GET", "/whoami", user=user, password="s3cret")["name"] == user

    page.go("policies", "form.add-policy")
    f = fill_form(page, "form.add-policy", {"name": pol, "pattern": "^ui-capped", "priority": "3"})
    f.locator("select[name=apply-to]").select_option("queues")
    f.get_by_role("button", name="max-length", exact=True).click()
    f.locator(".kv[data-name=definition] .kv-val").first.fill("10")
    f.get_by_role("button", name="Add / update policy").click()
    row = page.p.locator("[data-list=policies] tbody tr", has_text=pol)
    expect(row).to_contain_text("max-length: 10")
    got = api("GET", f"/policies/%2F/{pol}")
    assert got["definition"] == {"max-length": 10} and got["apply-to"] == "queues" and got["priority"] == 3
    assert got["pattern"] == "^ui-capped"


def test_vhost_permissions_and_limits(page):
    vh = uniq("ui-vh")
    user = uniq("ui-perm")
    api("PUT", f"/users/{user}", {"password": "pw", "tags": ""})
    page.login()
    page.go("vhosts", "form.add-vhost")
    f = fill_form(page, "form.add-vhost", {"name": vh, "description": "made by the UI test"})
    f.get_by_role("button", name="Add virtual host").click()
    expect(page.p.locator(".list-panel tbody tr", has_text=vh)).to_have_count(1)
    expect(page.p.locator(f"#vhost-select option[value='{vh}']")).to_have_count(1)  # the header chooser knows it
    assert api("GET", f"/vhosts/{vh}")["description"] == "made by the UI test"

    page.p.locator(".list-panel tbody tr", has_text=vh).get_by_role("link", name=vh).click()
    f = fill_form(page, "form.set-permission", {"user": user, "write": "^w"})
    f.get_by_role("button", name="Set permission").click()
    expect(page.p.locator("table.permissions tbody tr", has_text=user)).to_contain_text("^w")
    assert api("GET", f"/permissions/{vh}/{user}")["write"] == "^w"
    f = page.p.locator("form.set-topic-permission")
    f.locator("input[name=user]").fill(user)
    f.get_by_role("button", name="Set topic permission").click()
    expect(page.p.locator("table.topic-permissions tbody tr", has_text=user)).to_contain_text("amq.topic")

    page.go(f"users/{user}", "main dl.facts")
    page.p.click("summary:has-text('Update this user')")
    f = page.p.locator("form.update-user")
    expect(f.locator("input[name=tags]")).to_have_value("")
    f.get_by_role("button", name="management").click()
    f.get_by_role("button", name="Update user").click()
    expect(page.p.locator("main dl.facts")).to_contain_text("management")
    # The password is kept when the form leaves it empty.
    assert api("GET", "/whoami", user=user, password="pw")["tags"] == ["management"]

    page.go("limits", "form.set-vhost-limit")
    f = page.p.locator("form.set-vhost-limit")
    f.locator("select[name=vhost]").select_option(vh)
    f.locator("select[name=name]").select_option("max-queues")
    f.locator("input[name=value]").fill("7")
    f.get_by_role("button", name="Set limit").click()
    expect(page.p.locator("table.vhost-limits tbody tr", has_text=vh)).to_contain_text("7")
    assert {"vhost": vh, "value": {"max-queues": 7}} in api("GET", "/vhost-limits")
    page.p.locator("table.vhost-limits tbody tr", has_text=vh).get_by_role("button", name="Delete").click()
    page.p.locator("dialog.confirm[open]").get_by_role("button", name="Delete").click()
    expect(page.p.locator("table.vhost-limits tbody tr", has_text=vh)).to_have_count(0)


def test_management_user_sees_own_vhost_without_admin_pages(page):
    user = uniq("ui-mgmt")
    api("PUT", f"/users/{user}", {"password": "pw", "tags": "management"})
    api("PUT", f"/permissions/%2F/{user}", {"configure": ".*", "write": ".*", "read": ".*"})
    page.login(user, "pw")
    expect(page.p.locator("#overview-data .cards")).to_be_visible()
    for section in ["users", "vhosts", "policies", "limits"]:
        expect(page.p.locator(f"#nav a[data-section={section}]")).to_be_hidden()
    expect(page.p.locator("#export-defs")).to_have_count(0)
    page.go("queues", ".list-panel tbody tr")
    page.go("connections", ".list-panel")


def test_invalid_policy_shows_api_error(page):
    page.allowed_statuses.add(400)
    page.login()
    page.go("policies", "form.add-policy")
    f = fill_form(page, "form.add-policy", {"name": uniq("ui-bad"), "pattern": "("})
    f.locator(".kv[data-name=definition] .kv-key").first.fill("max-length")
    f.locator(".kv[data-name=definition] select").first.select_option("number")
    f.locator(".kv[data-name=definition] .kv-val").first.fill("5")
    f.get_by_role("button", name="Add / update policy").click()
    expect(page.p.locator(".toast.error")).to_be_visible()


def test_export_definitions(page):
    q = uniq("ui-export")
    declare(q, durable=True)
    page.login()
    page.go("", "#export-defs")
    with page.p.expect_download() as dl:
        page.p.click("#export-defs")
    d = dl.value
    assert d.suggested_filename.endswith(".json")
    defs = json.loads(open(d.path(), encoding="utf-8").read())
    assert q in [x["name"] for x in defs["queues"]]
    assert "guest" in [u["name"] for u in defs["users"]]
    assert "/" in [v["name"] for v in defs["vhosts"]]


def test_import_definitions(page, tmp_path):
    q = uniq("ui-import")
    f = tmp_path / "defs.json"
    f.write_text(json.dumps({"queues": [{"name": q, "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}]}))
    page.login()
    page.go("", "#import-defs")
    page.p.set_input_files("#import-file", str(f))
    page.p.click("#import-defs button[type=submit]")
    expect(page.p.locator(".toast.ok")).to_contain_text("imported")
    assert api("GET", f"/queues/%2F/{q}")["durable"] is True


def test_close_connection_with_reason(page):
    tag = uniq("ui-close")
    conn = amqp(tag)
    try:
        name = wait_api(lambda: next((c["name"] for c in api("GET", "/connections") if c.get("user_provided_name") == tag), None))
        assert name, "connection not listed"
        page.login()
        page.go("connections", ".list-panel tbody tr")
        page.p.fill(".list-panel input.filter", name.split(" ")[0])
        page.p.locator(".list-panel tbody tr", has_text=tag).get_by_role("link").first.click()
        expect(page.p.locator("main h1")).to_contain_text(name)
        reason = "maintenance by ui-test"
        page.p.fill("#close-reason", reason)
        page.p.click("form.close-connection button[type=submit]")
        page.p.locator("dialog.confirm[open]").get_by_role("button", name="Close").click()
        expect(page.p.locator("main h1")).to_have_text("Connections")
        deadline = time.monotonic() + 10
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            while time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.2)
        assert closed.value.reply_code == 320
        assert closed.value.reply_text == f"CONNECTION_FORCED - {reason}"
    finally:
        if conn.is_open:
            conn.close()


def _traffic(stop, queue):
    """Publish with confirms and consume with acks until stopped, so rates and charts have data."""
    conn = amqp("ui-traffic")
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.confirm_delivery()
    got = []
    ch.basic_consume(queue, lambda c, m, p, b: (c.basic_ack(m.delivery_tag), got.append(1)))
    while not stop.is_set():
        for _ in range(20):
            ch.basic_publish("", queue, b"tick")
        conn.process_data_events(time_limit=0.05)
    conn.close()


def test_overview_with_traffic_and_screenshots(page):
    """Overview totals, node facts and charts with live traffic; the README screenshots."""
    q = "orders"
    stop = threading.Event()
    t = threading.Thread(target=_traffic, args=(stop, q), daemon=True)
    t.start()
    try:
        declare("invoices", messages=42, durable=True)
        page.login()
        page.go("", "#overview-data .cards")
        p = page.p
        expect(p.locator("#alarms")).to_contain_text("No alarms")
        expect(p.locator("dl.facts")).to_contain_text("Uptime")
        expect(p.locator("#listeners")).to_contain_text("amqp")
        # Totals follow the broker: at least the traffic connection.
        card = p.locator(".card", has_text="Connections").locator(".card-value")
        expect(card).not_to_have_text("0", timeout=15_000)
        # Rates are charted once two samples exist (the sample interval is 5 s; the page refreshes itself).
        expect(p.locator("figure.chart[aria-label='Message rates'] svg path").first).to_be_attached(timeout=30_000)
        expect(p.locator("figure.chart .legend", has_text="Publish")).not_to_contain_text("Publish: 0.0/s", timeout=15_000)
        page.shot("overview")
        page.go("queues", ".list-panel tbody tr")
        row = p.locator(".list-panel tbody tr", has_text=q)
        expect(row).to_have_count(1)
        # The list refreshes itself and shows the live incoming rate.
        expect(row.locator("td").nth(-3)).not_to_have_text("0.0/s", timeout=15_000)
        page.shot("queues")
        page.go(f"queues/%2F/{q}", "#q-total")
        expect(p.locator("#queue-info figure.chart[aria-label='Message rates'] svg path").first).to_be_attached(timeout=30_000)
        p.click("summary:has-text('Publish message')")
        page.shot("queue")
    finally:
        stop.set()
        t.join(10)


def test_every_page_renders_without_console_errors(page):
    q = uniq("ui-all")
    declare(q, messages=1)
    conn = amqp(uniq("ui-pages"))
    ch = conn.channel()
    ch.basic_consume(q, lambda *a: None)
    try:
        c = wait_api(lambda: api("GET", "/connections") and api("GET", "/channels"))
        cname = api("GET", "/connections")[0]["name"]
        chname = c[0]["name"]
        page.login()
        p = page.p
        routes = {
            "": "Overview", "connections": "Connections", "channels": "Channels", "exchanges": "Exchanges",
            "queues": "Queues", "consumers": "Consumers", "users": "Users", "vhosts": "Virtual hosts",
            "policies": "Policies", "limits": "Limits",
            f"queues/%2F/{enc(q)}": q, "exchanges/%2F/amq.direct": "amq.direct", "exchanges/%2F/amq.default": "(AMQP default)",
            f"connections/{enc(cname)}": cname, f"channels/{enc(chname)}": chname,
            "users/guest": "guest", "vhosts/%2F": "Virtual host /",
        }
        for path, title in routes.items():
            page.go(path, "main h1")
            expect(p.locator("main h1")).to_contain_text(title)
            expect(p.locator("main .error")).to_have_count(0)
            expect(p.locator("main [aria-busy=true]")).to_have_count(0)
            page.shot("page-" + (path.split("/")[0] or "overview") + ("-one" if "/" in path else ""))
        page.go("", "#overview-data .cards")
        with p.expect_request(lambda r: "/api/overview?" in r.url and "msg_rates_age=60&" in r.url):
            p.select_option("select.range", "60")
        page.go("nonsense/route", "main h1")
        expect(p.locator("main h1")).to_have_text("Not found")
        # Lists paginate, sort and choose columns with the keyboard.
        page.go("exchanges", ".list-panel tbody tr")
        p.locator("th button.sort", has_text="Name").focus()
        p.keyboard.press("Enter")
        expect(p.locator("th[aria-sort=ascending]")).to_have_count(1)
        p.keyboard.press("Enter")
        expect(p.locator("th[aria-sort=descending]")).to_have_count(1)
        p.click(".columns-chooser summary")
        p.locator(".columns-chooser label", has_text="Type").locator("input").uncheck()
        expect(p.locator(".list-panel thead th", has_text="Type")).to_have_count(0)
        p.reload()
        p.wait_for_selector(".list-panel tbody tr")
        expect(p.locator(".list-panel thead th", has_text="Type")).to_have_count(0)  # remembered
        # Auto refresh can be paused and its interval chosen.
        p.select_option("#refresh-select", "10")
        p.click("#pause")
        expect(p.locator("#pause")).to_have_attribute("aria-pressed", "true")
    finally:
        conn.close()


def test_phone_width_has_no_horizontal_overflow(phone):
    q = uniq("ui-phone-with-a-rather-long-queue-name-that-must-wrap")
    declare(q, messages=2)
    phone.login()
    for path, ready in [("", "#overview-data .cards"), ("queues", ".list-panel tbody tr"), (f"queues/%2F/{q}", "#q-total"),
                        ("connections", ".list-panel"), ("users", ".list-panel tbody tr"), ("policies", "form.add-policy")]:
        phone.go(path, ready)
        widths = phone.p.evaluate("""() => ({
            doc: document.documentElement.scrollWidth, view: document.documentElement.clientWidth,
            main: document.querySelector('main').scrollWidth, mainBox: document.querySelector('main').clientWidth})""")
        assert widths["doc"] <= widths["view"], (path, widths)
        assert widths["main"] <= widths["mainBox"], (path, widths)
        if path == "":
            phone.shot("phone-overview")
        if path.startswith("queues/"):
            phone.shot("phone-queue")


def test_refresh_flags_stale_data_when_object_disappears(page):
    page.allowed_statuses.add(404)
    q = uniq("ui-gone")
    declare(q, messages=2)
    page.login()
    page.go(f"queues/%2F/{q}", "#q-total")
    api("DELETE", f"/queues/%2F/{q}")
    # The next automatic refresh (every 5 s by default) fails and says so above the old data.
    expect(page.p.locator("#refresh-error")).to_contain_text("Not refreshed", timeout=15_000)
    expect(page.p.locator("#q-total")).to_have_text("2")

def test_ten_thousand_queues_first_page_is_fast(page):
    """10,000 queues (declared by a definitions import): the list shows one page of rows quickly."""
    vhost = "bulk"
    n = 10_000
    defs = {
        "vhosts": [{"name": vhost}],
        "permissions": [{"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}],
        "queues": [{"name": f"bulk-{i:05d}", "vhost": vhost, "durable": False, "auto_delete": False, "arguments": {}} for i in range(n)],
    }
    api("POST", "/definitions", defs)
    assert api("GET", f"/queues/{vhost}?page=1&page_size=1")["total_count"] == n
    page.login()
    p = page.p
    p.select_option("#vhost-select", vhost)
    p.wait_for_selector(".list-panel, main h1")
    t0 = time.monotonic()
    p.goto(BASE + "#/queues")
    p.wait_for_selector(".list-panel tbody tr >> text=bulk-00000")
    elapsed = time.monotonic() - t0
    print(f"first page of {n} queues shown in {elapsed:.2f}s")
    assert elapsed < 2.5, f"first page took {elapsed:.2f}s"
    rows = p.locator(".list-panel tbody tr")
    page_size = int(p.locator(".list-panel .toolbar select[aria-label='Rows per page']").input_value())
    expect(rows).to_have_count(page_size)
    assert page_size < n
    expect(p.locator(".list-panel .count")).to_have_text("10,000 items")
    # Next page, server-side sort and regex filter.
    p.click(".pager button:has-text('Next')")
    expect(rows.first).to_contain_text(f"bulk-{page_size:05d}")
    p.click("th button.sort:has-text('Name')")
    p.click("th button.sort:has-text('Name')")
    expect(rows.first).to_contain_text("bulk-09999")
    p.check(".list-panel .toolbar input[type=checkbox]")
    p.fill(".list-panel input.filter", "^bulk-0000[0-4]$")
    expect(rows).to_have_count(5)
    expect(p.locator(".list-panel .count")).to_have_text("5 of 10,000 match")
    page.shot("queues-10k")
    api("DELETE", f"/vhosts/{vhost}")

