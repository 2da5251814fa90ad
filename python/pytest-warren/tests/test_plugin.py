"""The plugin's own tests: real brokers, driven with pika."""

import pika
import pytest

from pytest_warren import WarrenError, find_binary

pytest_plugins = ["pytester"]


def connect(url):
    return pika.BlockingConnection(pika.URLParameters(url))


def test_fresh_broker_round_trip(warren):
    conn = connect(warren.url)
    ch = conn.channel()
    ch.queue_declare("jobs")
    ch.basic_publish("", "jobs", b"hello", pika.BasicProperties(headers={"n": 1}))
    method, props, body = ch.basic_get("jobs", auto_ack=True)
    assert body == b"hello"
    assert props.headers == {"n": 1}
    conn.close()


def test_every_test_gets_a_clean_broker(pytester):
    pytester.makepyfile(
        """
        import pika

        def declare_and_count(url):
            conn = pika.BlockingConnection(pika.URLParameters(url))
            ch = conn.channel()
            ok = ch.queue_declare("shared-name", durable=True)
            ch.basic_publish("", "shared-name", b"x")
            conn.close()
            return ok.method.message_count

        def test_one(warren):
            assert declare_and_count(warren.url) == 0

        def test_two(warren):
            assert declare_and_count(warren.url) == 0
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)


def test_session_broker_is_shared(warren_session, pytestconfig):
    conn = connect(warren_session.url)
    assert conn.is_open
    conn.close()


def test_amqp_url_fixture(amqp_url):
    assert amqp_url.startswith("amqp://guest:guest@127.0.0.1:")
    connect(amqp_url).close()


def test_missing_binary_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("WARREN_BIN", str(tmp_path / "nope"))
    with pytest.raises(WarrenError, match="not an executable"):
        find_binary()


def test_stop_closes_connections(warren):
    conn = connect(warren.url)
    warren.stop()
    with pytest.raises(Exception):
        for _ in range(50):
            conn.process_data_events(time_limit=0.1)


def test_management_api_and_prometheus_are_reachable(warren):
    import base64
    import json
    import urllib.request

    conn = connect(warren.url)
    conn.channel().queue_declare("seen-by-the-api")
    req = urllib.request.Request(f"{warren.management_url}/api/queues/%2F/seen-by-the-api")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.load(r)["name"] == "seen-by-the-api"
    with urllib.request.urlopen(f"{warren.prometheus_url}/metrics", timeout=10) as r:
        assert b"rabbitmq_queues 1" in r.read()
    conn.close()


def test_no_management_listener_is_reported(pytester, tmp_path):
    config = tmp_path / "warren.toml"
    config.write_text("[management]\nenabled = false\n")
    pytester.makepyfile(
        f"""
        import pytest
        from pytest_warren import WarrenError

        def test_it(warren):
            with pytest.raises(WarrenError):
                warren.management_url
            assert warren.prometheus_url.startswith("http://127.0.0.1:")
        """
    )
    result = pytester.runpytest_subprocess("--warren-arg=--config", f"--warren-arg={config}")
    result.assert_outcomes(passed=1)


def test_virtual_clock_dead_letters_an_hour_ttl_on_an_hours_advance():
    from pytest_warren import start_broker

    b = start_broker(args=["--clock", "virtual"])
    try:
        conn = connect(b.url)
        ch = conn.channel()
        ch.queue_declare("dlq")
        ch.queue_declare("waiting", arguments={
            "x-message-ttl": 3_600_000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "dlq",
        })
        ch.basic_publish("", "waiting", b"later")
        start = b.broker_time_ms
        # A minute short of the hour: still waiting.
        b.advance_clock(seconds=3540)
        assert ch.queue_declare("dlq", passive=True).method.message_count == 0
        assert ch.queue_declare("waiting", passive=True).method.message_count == 1
        now = b.advance_clock(seconds=60)
        assert now - start >= 3_600_000
        method, props, body = ch.basic_get("dlq", auto_ack=True)
        assert body == b"later"
        death = props.headers["x-death"][0]
        assert death["reason"] == "expired"
        # x-death's time is broker time (seconds), an hour on from the start.
        assert int(death["time"].timestamp()) >= (start + 3_600_000) // 1000
        conn.close()
    finally:
        b.stop()


def test_advancing_a_real_clock_is_refused(warren):
    with pytest.raises(WarrenError, match="real clock"):
        warren.advance_clock(seconds=1)
