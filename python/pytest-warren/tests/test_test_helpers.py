"""wait_idle, journal, wait_for and the warren_args marker, against real brokers driven with pika."""

import datetime
import re
import threading

import pika
import pytest

from pytest_warren import WarrenError, duration_ms, format_event, idle_failure, wait_for_failure

pytest_plugins = ["pytester"]


def channel(broker):
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    return conn, conn.channel()


# --- durations and the readable failure texts (no broker) ---

def test_durations():
    assert duration_ms(1.5) == 1500
    assert duration_ms("90s") == 90_000
    assert duration_ms("1h30m") == 5_400_000
    assert duration_ms("250ms") == 250
    assert duration_ms(datetime.timedelta(days=1)) == 86_400_000
    with pytest.raises(WarrenError):
        duration_ms("soon")


T0 = int(datetime.datetime(2026, 1, 1, 12, 0, 0, 1000, tzinfo=datetime.timezone.utc).timestamp() * 1000)
RELATED = [
    {"seq": 1, "time": T0, "event": "published", "vhost": "/", "message_id": "m1", "correlation_id": None,
     "exchange": "x", "routing_key": "k", "queue": None, "properties": {}},
    {"seq": 2, "time": T0, "event": "routed", "vhost": "/", "message_id": "m1", "correlation_id": None,
     "exchange": "x", "routing_key": "k", "queue": None, "queues": ["q"]},
    {"seq": 3, "time": T0 + 1, "event": "delivered", "vhost": "/", "message_id": "m1", "correlation_id": None,
     "exchange": "x", "routing_key": "k", "queue": "q", "consumer_tag": "ctag-1", "delivery_tag": 1,
     "redelivered": False},
]


def test_wait_for_failure_text_lists_what_did_happen():
    body = {"enabled": True, "evicted": 0, "events": [], "related": RELATED}
    assert wait_for_failure({"message_id": "m1", "event": "dead-lettered"}, 2000, body) == (
        "expected event dead-lettered for message_id=m1 within 2s; journal has: "
        "published 12:00:00.001 exchange=x rk=k, routed 12:00:00.001 exchange=x rk=k to [q], "
        "delivered 12:00:00.002 queue=q consumer=ctag-1"
    )
    assert wait_for_failure({"queue": "q", "event": "expired"}, 500, {"enabled": True, "related": []}) == (
        "expected event expired for queue=q within 500ms; journal has no events for queue=q"
    )
    assert "journal is disabled" in wait_for_failure({"message_id": "m1"}, 1000, {"enabled": False})


def test_format_event_and_idle_failure_text():
    # As the broker sends it: dead_letter_routing_keys (a list) and the queues it went to.
    dl = {"time": T0, "event": "dead-lettered", "vhost": "/", "message_id": "m2", "queue": "work",
          "reason": "expired", "dead_letter_exchange": "", "dead_letter_routing_keys": ["dlq"], "queues": ["dlq"]}
    assert format_event(dl) == (
        'dead-lettered 12:00:00.001 message_id=m2 queue=work reason=expired dlx="" dlrk=dlq to [dlq]'
    )
    # The spec's single dead_letter_routing_key is read too.
    single = {**dl, "dead_letter_routing_key": "k2"}
    del single["dead_letter_routing_keys"], single["queues"]
    assert format_event(single, {"message_id": "m2"}) == (
        'dead-lettered 12:00:00.001 queue=work reason=expired dlx="" dlrk=k2'
    )
    ret = {"time": T0, "event": "returned", "message_id": "m3", "exchange": "x", "routing_key": "k",
           "queue": None, "reply_code": 312, "reply_text": "NO_ROUTE"}
    assert format_event(ret, {"message_id": "m3"}) == "returned 12:00:00.001 exchange=x rk=k 312 NO_ROUTE"
    nack = {"time": T0, "event": "nacked", "message_id": "m4", "queue": "q", "delivery_tag": 1, "requeue": True}
    assert format_event(nack, {"message_id": "m4"}) == "nacked 12:00:00.001 queue=q requeue=true"
    get = {"time": T0, "event": "delivered", "vhost": "v", "queue": "q", "consumer_tag": None, "redelivered": True}
    assert format_event(get) == "delivered 12:00:00.001 vhost=v queue=q by basic.get redelivered"
    assert idle_failure(50, {
        "unacknowledged_deliveries": 1,
        "deliverable_queues": [{"vhost": "/", "name": "a"}, {"vhost": "v", "name": "b"}],
        "timers_due": True,
    }) == ("broker not idle after 50ms; pending: unacknowledged_deliveries=1, "
           "deliverable_queues=[a, b (vhost v)], timers_due=true")


def test_unknown_journal_filter_is_refused(warren):
    with pytest.raises(WarrenError, match="unknown journal filter"):
        warren.journal(messageid="m1")


# --- the virtual clock through the marker ---

@pytest.mark.warren_args("--clock", "virtual")
def test_warren_args_marker_and_string_durations(warren):
    start = warren.broker_time_ms
    assert warren.advance_clock("1h30m") == start + 5_400_000
    assert warren.advance_clock(datetime.timedelta(minutes=1)) == start + 5_460_000
    assert warren.broker_time_ms == start + 5_460_000


# --- wait_idle ---

def test_wait_idle_answers_at_once_on_a_quiet_broker(warren):
    r = warren.wait_idle(timeout=5)
    assert r["idle"] is True
    assert r["waited_ms"] < 1000


def test_wait_idle_waits_for_a_slow_consumer_and_says_what_is_pending(warren):
    conn, ch = channel(warren)
    ch.queue_declare("work")
    ch.basic_qos(prefetch_count=1)
    got = []
    ch.basic_consume("work", lambda c, m, p, b: got.append(m.delivery_tag))
    ch.basic_publish("", "work", b"job")
    while not got:
        conn.process_data_events(time_limit=0.1)

    # The consumer holds the delivery: not idle, and the failure says why.
    with pytest.raises(AssertionError) as e:
        warren.wait_idle(timeout=0.05)
    assert str(e.value) == "broker not idle after 50ms; pending: unacknowledged_deliveries=1"

    # The ack goes out 300 ms later, from this thread (pika is not thread-safe); wait_idle runs in another.
    result = {}

    def waiter():
        try:
            result["idle"] = warren.wait_idle(timeout=10)
        except BaseException as err:  # noqa: BLE001 - reported below
            result["error"] = err
        result["acked_before_return"] = acked.is_set()

    acked = threading.Event()
    t = threading.Thread(target=waiter)
    t.start()
    conn.call_later(0.3, lambda: (acked.set(), ch.basic_ack(got[0])))
    while t.is_alive():
        conn.process_data_events(time_limit=0.05)
    t.join()
    assert "error" not in result, result
    assert result["acked_before_return"] is True, "wait_idle returned before the consumer acked"
    assert result["idle"]["waited_ms"] >= 100
    conn.close()


# --- the journal ---

def test_journal_lists_a_messages_life_and_wait_for_finds_an_event(warren):
    conn, ch = channel(warren)
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"hi", pika.BasicProperties(message_id="m1", correlation_id="c1"))
    routed = warren.wait_for(message_id="m1", event="routed")
    assert len(routed) == 1 and routed[0]["queues"] == ["q"]
    method, _, _ = ch.basic_get("q", auto_ack=True)
    assert method is not None
    warren.wait_for(message_id="m1", event="delivered")

    life = warren.journal(message_id="m1")
    assert [e["event"] for e in life][:3] == ["published", "routed", "delivered"]
    assert (life[0]["exchange"], life[0]["routing_key"], life[0]["correlation_id"]) == ("", "q", "c1")
    assert life[2]["queue"] == "q" and life[2]["consumer_tag"] is None
    assert [e["message_id"] for e in warren.journal(correlation_id="c1", event="published")] == ["m1"]
    assert warren.journal(message_id="nobody") == []
    conn.close()


@pytest.mark.warren_args("--clock", "virtual")
def test_wait_for_waits_for_an_event_that_comes_later(warren):
    conn, ch = channel(warren)
    ch.queue_declare("dlq")
    ch.queue_declare("waiting", arguments={
        "x-message-ttl": 3_600_000, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq",
    })
    ch.basic_publish("", "waiting", b"later", pika.BasicProperties(message_id="m2"))
    warren.wait_for(message_id="m2", event="routed")
    assert warren.journal(message_id="m2", event="dead-lettered") == []

    result = {}
    t = threading.Thread(target=lambda: result.update(
        events=warren.wait_for(timeout=10, message_id="m2", event="dead-lettered")))
    t.start()
    now = warren.advance_clock("1h")
    t.join(15)
    (dl,) = result["events"]
    assert (dl["reason"], dl["queue"], dl["dead_letter_routing_keys"], dl["queues"]) == (
        "expired", "waiting", ["dlq"], ["dlq"])
    assert now - 1 <= dl["time"] <= now
    conn.close()


def test_wait_for_fails_with_what_did_happen_to_the_message(warren):
    conn, ch = channel(warren)
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"hi", pika.BasicProperties(message_id="m1"))
    method, _, _ = ch.basic_get("q", auto_ack=False)
    assert method is not None
    warren.wait_for(message_id="m1", event="delivered")

    with pytest.raises(AssertionError) as e:
        warren.wait_for(timeout=0.3, message_id="m1", event="dead-lettered")
    assert re.fullmatch(
        r"expected event dead-lettered for message_id=m1 within 300ms; journal has: "
        r'published \d\d:\d\d:\d\d\.\d{3} exchange="" rk=q, routed \S+ exchange="" rk=q to \[q\], '
        r"delivered \S+ queue=q by basic\.get",
        str(e.value),
    ), str(e.value)
    conn.close()


def test_wait_for_an_unknown_message_says_the_journal_has_nothing(warren):
    with pytest.raises(AssertionError) as e:
        warren.wait_for(timeout=0.1, message_id="ghost", event="published")
    assert str(e.value) == (
        "expected event published for message_id=ghost within 100ms; journal has no events for message_id=ghost"
    )


def test_an_unroutable_publish_is_in_the_journal(warren):
    conn, ch = channel(warren)
    ch.exchange_declare("nowhere", "direct")
    ch.basic_publish("nowhere", "k", b"lost", pika.BasicProperties(message_id="m3"))
    (e,) = warren.wait_for(exchange="nowhere", event="unroutable")
    assert (e["message_id"], e["routing_key"]) == ("m3", "k")
    conn.close()


def test_wait_for_explains_a_max_length_drop(warren):
    conn, ch = channel(warren)
    ch.queue_declare("short", arguments={"x-max-length": 1})
    ch.basic_publish("", "short", b"1", pika.BasicProperties(message_id="first"))
    ch.basic_publish("", "short", b"2", pika.BasicProperties(message_id="second"))
    (dropped,) = warren.wait_for(message_id="first", event="dropped")
    assert dropped["reason"] == "maxlen"
    with pytest.raises(AssertionError) as e:
        warren.wait_for(timeout=0.1, message_id="first", event="delivered")
    assert re.fullmatch(
        r"expected event delivered for message_id=first within 100ms; journal has: published .*, "
        r"routed .* to \[short\], dropped \S+ queue=short reason=maxlen",
        str(e.value),
    ), str(e.value)
    conn.close()


@pytest.mark.warren_args("--journal", "off")
def test_wait_for_on_a_broker_whose_journal_is_off_says_so(warren):
    with pytest.raises(AssertionError, match=r"^expected event published for message_id=m1 within 50ms; "
                                             r"the journal is disabled"):
        warren.wait_for(timeout=0.05, message_id="m1", event="published")


def test_a_failed_wait_for_reads_well_in_pytest_output(pytester):
    """What a user sees: the assertion text in the failure report."""
    pytester.makepyfile(
        """
        def test_it(warren):
            warren.wait_for(timeout=0.1, message_id="m9", event="acked")
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*AssertionError: expected event acked for message_id=m9 within 100ms; journal has no events*"]
    )
