#!/usr/bin/env python3
"""Real-client smoke test with pika (Python): the everyday publish/confirm/return/consume path.

usage: pika_smoke.py AMQP_URL        e.g. amqp://guest:guest@127.0.0.1:5672/

Scenario (each assertion is one counted check):
  declare a durable direct exchange + durable queue (unique names), bind;
  confirm.select; publish 100 persistent messages with rich properties, each confirmed;
  a mandatory publish with an unroutable routing key -> basic.return 312 NO_ROUTE, then ack
    (pika's BlockingChannel raises UnroutableError; the on_return callback also fires);
  basic.qos(prefetch 10) + basic.consume with manual ack: prefetch honoured, all 100 bodies in order,
    delivery fields and every property/header round-tripped exactly;
  basic.get on the empty queue -> None;
  redeclare a queue with a different durable flag -> channel closed 406 PRECONDITION_FAILED;
  the first channel survives that; delete queue and exchange; close.

Prints "pika: N passed, M failed" last and exits non-zero on any failure.
Validated against RabbitMQ 3.10.8 (Debian).
"""

import logging
import os
import signal
import sys
import time
import uuid

import pika
import pika.exceptions

N = 100
PREFETCH = 10
WATCHDOG_SECONDS = int(os.environ.get("SMOKE_TIMEOUT", "120"))

passed = 0
failed = 0


def check(name, ok, detail=""):
    """Count one check; print failures (and passes when SMOKE_VERBOSE is set)."""
    global passed, failed
    if ok:
        passed += 1
        if os.environ.get("SMOKE_VERBOSE"):
            print(f"ok    {name}")
    else:
        failed += 1
        print(f"FAIL  {name}" + (f": {detail}" if detail else ""), flush=True)
    return ok


def finish():
    print(f"pika: {passed} passed, {failed} failed", flush=True)
    sys.exit(0 if failed == 0 and passed > 0 else 1)


def on_watchdog(_signum, _frame):
    check("watchdog", False, f"scenario did not finish within {WATCHDOG_SECONDS}s (broker hang?)")
    finish()


def expected_headers(i):
    # Field-table value types exercised: longstr, signed int (32 and 64 bit), bool, array, nested table.
    return {
        "str": "héllo-%d" % i,
        "int": i,
        "neg": -i - 1,
        "big": 2**40 + i,
        "bool": i % 2 == 0,
        "list": [1, "two", True, {"in": "list"}],
        "nested": {"a": 1, "b": "x", "c": {"deep": False, "n": i}},
    }


def make_props(i, ts):
    return pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers=expected_headers(i),
        delivery_mode=2,
        priority=0,
        correlation_id="corr-%d" % i,
        reply_to="reply-queue",
        message_id="msg-%d" % i,
        timestamp=ts + i,
        type="smoke",
        app_id="pika_smoke",
    )


PROP_FIELDS = ("content_type", "content_encoding", "headers", "delivery_mode", "priority",
               "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
               "user_id", "app_id", "cluster_id")


def typed(v):
    """Value with its type at every level: in Python True == 1, but a bool must come back as a bool."""
    if isinstance(v, dict):
        return ("dict", sorted((k, typed(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return ("list", [typed(x) for x in v])
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, int):  # pika decodes 64-bit 'l' values to pika.compat.long, an int subclass
        return ("int", int(v))
    return (type(v).__name__, v)


def props_diff(got, want):
    diffs = []
    for f in PROP_FIELDS:
        g, w = getattr(got, f), getattr(want, f)
        if typed(g) != typed(w):
            diffs.append(f"{f}: got {g!r} want {w!r}")
    return diffs


def body_of(i):
    return ('{"seq": %d, "pad": "%s"}' % (i, "x" * (i * 7))).encode()


def main():
    if len(sys.argv) != 2:
        print("usage: pika_smoke.py AMQP_URL", file=sys.stderr)
        sys.exit(2)
    url = sys.argv[1]
    if not os.environ.get("SMOKE_VERBOSE"):
        # pika logs a WARNING for every returned message and channel close we provoke on purpose.
        logging.getLogger("pika").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGALRM, on_watchdog)
    signal.alarm(WATCHDOG_SECONDS)

    tag = uuid.uuid4().hex[:12]
    xname = f"smoke.pika.x.{tag}"
    qname = f"smoke.pika.q.{tag}"
    q2name = f"smoke.pika.q2.{tag}"
    rk = "smoke-rk"
    conn = None
    try:
        params = pika.URLParameters(url)
        params.socket_timeout = 10
        params.blocked_connection_timeout = 30
        conn = pika.BlockingConnection(params)
        check("connection open", conn.is_open)
        ch = conn.channel()
        check("channel open", ch.is_open)

        # --- topology -------------------------------------------------------------------------
        r = ch.exchange_declare(exchange=xname, exchange_type="direct", durable=True)
        check("exchange.declare-ok", isinstance(r.method, pika.spec.Exchange.DeclareOk), repr(r.method))
        r = ch.queue_declare(queue=qname, durable=True)
        check("queue.declare-ok name", r.method.queue == qname, repr(r.method))
        check("queue.declare-ok counts", (r.method.message_count, r.method.consumer_count) == (0, 0),
              repr(r.method))
        r = ch.queue_bind(queue=qname, exchange=xname, routing_key=rk)
        check("queue.bind-ok", isinstance(r.method, pika.spec.Queue.BindOk), repr(r.method))

        # --- publisher confirms ---------------------------------------------------------------
        ch.confirm_delivery()
        check("confirm.select", True)
        ts = int(time.time())
        for i in range(N):
            try:
                ch.basic_publish(exchange=xname, routing_key=rk, body=body_of(i),
                                 properties=make_props(i, ts), mandatory=True)
                check(f"confirm #{i + 1} ack", True)
            except pika.exceptions.NackError as e:
                check(f"confirm #{i + 1} ack", False, f"nacked: {e!r}")
            except pika.exceptions.UnroutableError as e:
                check(f"confirm #{i + 1} ack", False, f"returned: {e!r}")

        # --- mandatory + unroutable -> basic.return, then ack -------------------------------------
        returned_cb = []
        ch.add_on_return_callback(lambda _c, m, p, b: returned_cb.append((m, p, b)))
        unroutable_rk = f"nowhere-{tag}"
        try:
            ch.basic_publish(exchange=xname, routing_key=unroutable_rk, body=b"unroutable",
                             properties=pika.BasicProperties(message_id="lost-1"), mandatory=True)
            check("mandatory unroutable raises UnroutableError", False, "publish returned normally")
        except pika.exceptions.UnroutableError as e:
            check("mandatory unroutable raises UnroutableError (acked, not nacked)", True)
            msgs = e.messages
            check("exactly one returned message", len(msgs) == 1, repr(msgs))
            if msgs:
                m = msgs[0].method
                check("basic.return reply_code 312", m.reply_code == 312, repr(m))
                check("basic.return reply_text NO_ROUTE", m.reply_text == "NO_ROUTE", repr(m))
                check("basic.return exchange/routing_key", (m.exchange, m.routing_key) == (xname, unroutable_rk),
                      repr(m))
                check("returned body", msgs[0].body == b"unroutable", repr(msgs[0].body))
                check("returned properties", msgs[0].properties.message_id == "lost-1",
                      repr(msgs[0].properties))
        except pika.exceptions.NackError as e:
            check("mandatory unroutable raises UnroutableError", False, f"nacked instead: {e!r}")
        # The user callback is queued as a pending event: let the connection dispatch it.
        deadline = time.monotonic() + 5
        while not returned_cb and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.1)
        check("on_return callback fired once", len(returned_cb) == 1, repr(returned_cb))
        if returned_cb:
            m, _p, b = returned_cb[0]
            check("on_return callback: 312 NO_ROUTE",
                  (m.reply_code, m.reply_text, b) == (312, "NO_ROUTE", b"unroutable"), repr(m))

        r = ch.queue_declare(queue=qname, durable=True, passive=True)
        check(f"queue holds {N} messages after confirms", r.method.message_count == N, repr(r.method))

        # --- consume with prefetch + manual ack -----------------------------------------------
        ch.basic_qos(prefetch_count=PREFETCH)
        got = []  # (method, properties, body)
        ack_in_callback = [False]

        def on_message(c, method, properties, body):
            got.append((method, properties, body))
            if ack_in_callback[0]:
                c.basic_ack(delivery_tag=method.delivery_tag)

        ctag = ch.basic_consume(queue=qname, on_message_callback=on_message, auto_ack=False)
        check("basic.consume-ok tag", bool(ctag), repr(ctag))
        deadline = time.monotonic() + 10
        while len(got) < PREFETCH and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.1)
        conn.process_data_events(time_limit=0.5)  # give a prefetch-ignoring broker time to overrun
        check(f"prefetch {PREFETCH} honoured (no acks yet)", len(got) == PREFETCH, f"received {len(got)}")
        for (m, _p, _b) in list(got):
            ch.basic_ack(delivery_tag=m.delivery_tag)
        ack_in_callback[0] = True
        deadline = time.monotonic() + 30
        while len(got) < N and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.1)
        conn.process_data_events(time_limit=0.2)
        check(f"received exactly {N} deliveries", len(got) == N, f"received {len(got)}")
        for i, (m, p, b) in enumerate(got[:N]):
            problems = []
            if b != body_of(i):
                problems.append(f"body {b[:40]!r}")
            if (m.exchange, m.routing_key, m.redelivered, m.delivery_tag, m.consumer_tag) != (
                    xname, rk, False, i + 1, ctag):
                problems.append(f"deliver {m!r}")
            problems += props_diff(p, make_props(i, ts))
            check(f"message #{i} in order, properties and headers intact", not problems, "; ".join(problems))
        r = ch.basic_cancel(consumer_tag=ctag)
        check("basic.cancel", ctag not in ch.consumer_tags, repr(r))

        # --- basic.get on an empty queue ----------------------------------------------------
        m, p, b = ch.basic_get(queue=qname, auto_ack=False)
        check("basic.get on empty queue -> get-empty (None)", m is None, repr((m, p, b)))
        r = ch.queue_declare(queue=qname, durable=True, passive=True)
        check("queue empty, no consumers", (r.method.message_count, r.method.consumer_count) == (0, 0),
              repr(r.method))

        # --- channel error: inequivalent redeclare -----------------------------------------
        ch2 = conn.channel()
        ch2.queue_declare(queue=q2name, durable=True)
        try:
            ch2.queue_declare(queue=q2name, durable=False)
            check("inequivalent redeclare raises ChannelClosedByBroker", False, "declare succeeded")
        except pika.exceptions.ChannelClosedByBroker as e:
            check("inequivalent redeclare raises ChannelClosedByBroker", True)
            check("channel.close reply_code 406", e.reply_code == 406, repr(e))
            check("reply_text starts PRECONDITION_FAILED - inequivalent arg 'durable'",
                  e.reply_text.startswith("PRECONDITION_FAILED - inequivalent arg 'durable'"), repr(e.reply_text))
            want = (f"PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q2name}' in vhost '/': "
                    "received 'false' but current is 'true'")
            check("reply_text exact (RabbitMQ wording)", e.reply_text == want, repr(e.reply_text))
        check("errored channel is closed", ch2.is_closed)
        check("connection survives a channel error", conn.is_open)
        check("other channel survives a channel error", ch.is_open)
        ch3 = conn.channel()
        r = ch3.queue_delete(queue=q2name)
        check("queue.delete of the durable queue", r.method.message_count == 0, repr(r.method))
        ch3.close()

        # --- cleanup ------------------------------------------------------------------------
        r = ch.queue_delete(queue=qname)
        check("queue.delete-ok message_count 0", r.method.message_count == 0, repr(r.method))
        r = ch.exchange_delete(exchange=xname)
        check("exchange.delete-ok", isinstance(r.method, pika.spec.Exchange.DeleteOk), repr(r.method))
        ch4 = conn.channel()
        try:
            ch4.queue_declare(queue=qname, passive=True)
            check("deleted queue is gone (passive declare -> 404)", False, "queue still exists")
        except pika.exceptions.ChannelClosedByBroker as e:
            check("deleted queue is gone (passive declare -> 404)", e.reply_code == 404, repr(e))
        ch.close()
        check("channel.close", ch.is_closed)
        conn.close()
        check("connection.close", conn.is_closed)
        conn = None
    except Exception as e:  # noqa: BLE001 - any unexpected error is a failed check, not a crash
        check("scenario ran without unexpected exception", False, f"{type(e).__name__}: {e!r}")
    finally:
        signal.alarm(0)
        if conn is not None:
            # Best effort: do not leave durable entities behind after a failure.
            try:
                if conn.is_open:
                    c = conn.channel()
                    c.queue_delete(queue=qname)
                    c.queue_delete(queue=q2name)
                    c.exchange_delete(exchange=xname)
                    conn.close()
            except Exception:  # noqa: BLE001
                pass
    finish()


if __name__ == "__main__":
    main()
