"""The pytest plugin: `warren` (a fresh broker per test), `warren_session` and `amqp_url` fixtures."""

import pytest

from .broker import start_broker


def pytest_addoption(parser):
    group = parser.getgroup("warren", "Warren AMQP broker")
    group.addoption("--warren-bin", default=None, help="path to the warren executable (default: $WARREN_BIN or PATH)")
    group.addoption(
        "--warren-arg", action="append", default=[], help="extra argument for the broker (repeatable)"
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "warren_args(*args): extra broker arguments for this test's `warren` fixture, "
        "e.g. @pytest.mark.warren_args('--clock', 'virtual')",
    )


def _start(config, extra=()):
    return start_broker(config.getoption("--warren-bin"), [*config.getoption("--warren-arg"), *extra])


@pytest.fixture
def warren(request):
    """A broker of this test's own, stopped when the test ends."""
    marker = request.node.get_closest_marker("warren_args")
    broker = _start(request.config, marker.args if marker else ())
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def warren_session(request):
    """One broker for the whole session."""
    broker = _start(request.config)
    yield broker
    broker.stop()


@pytest.fixture
def amqp_url(warren):
    return warren.url
