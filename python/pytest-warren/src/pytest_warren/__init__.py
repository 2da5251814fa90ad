"""pytest fixtures for Warren, an AMQP 0-9-1 broker compatible with RabbitMQ."""

from .broker import (
    WarrenBroker,
    WarrenError,
    duration_ms,
    find_binary,
    format_event,
    idle_failure,
    start_broker,
    wait_for_failure,
)

__all__ = [
    "WarrenBroker",
    "WarrenError",
    "duration_ms",
    "find_binary",
    "format_event",
    "idle_failure",
    "start_broker",
    "wait_for_failure",
]
