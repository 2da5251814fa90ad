"""pytest fixtures for Warren, an AMQP 0-9-1 broker compatible with RabbitMQ."""

from .broker import WarrenBroker, WarrenError, find_binary, start_broker

__all__ = ["WarrenBroker", "WarrenError", "find_binary", "start_broker"]
