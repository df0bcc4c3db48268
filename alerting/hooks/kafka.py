"""The ``kafka`` hook: produces the JSON to a topic keyed by the group key (``ingest.sink.KafkaSink``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import Field, SecretStr

from alerting.errors import AlertingError, DeliveryError
from alerting.hooks.base import HookSettings
from alerting.payload import Notification
from ingest.errors import IngestError
from orbitwatch.errors import ConfigError

if TYPE_CHECKING:
    from ingest.settings import KafkaSettings


class MessageSink(Protocol):
    """What the Kafka hook sends through (``ingest.sink.KafkaSink``)."""

    def send(self, key: bytes, value: bytes, timeout_s: float) -> None:
        """Send one keyed message, blocking until acknowledged; raises an ``IngestError``."""
        ...

    def close(self) -> None:
        """Release the producer."""
        ...


class KafkaHook:
    """Produces the JSON to the sink's topic keyed by the group key (one group stays on one partition)."""

    def __init__(self, sink: MessageSink, timeout_s: float = 10.0, *, name: str = "kafka") -> None:
        self.name = name
        if timeout_s <= 0:
            raise DeliveryError(name, f"Kafka timeout_s must be positive, got {timeout_s}", attempts=0)
        self.sink = sink
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"KafkaHook({self.name!r}, {self.sink!r})"

    def deliver(self, body: bytes, notification: Notification) -> None:
        """Send once and wait for the acks; DeliveryError with the sink's reason."""
        try:
            self.sink.send(notification.group_key.encode(), body, self.timeout_s)
        except (ConfigError, IngestError) as exc:  # ConfigError: a producer setting kafka-python rejects on connect
            raise DeliveryError(self.name, str(exc)) from exc

    def close(self) -> None:
        """Close the sink's producer."""
        self.sink.close()


class KafkaHookSettings(HookSettings):
    """Settings of a ``kafka`` hook; security fields are named as in ``[kafka]``.

    Without ``bootstrap_servers`` the hook uses the ingest ``[kafka]`` cluster and credentials (when
    ``build_hook`` is given them), writing to ``topic``.
    """

    bootstrap_servers: str | None = None
    topic: str = Field(min_length=1)
    timeout_s: float = Field(10.0, gt=0)
    client_id: str = "orbitwatch-alerts"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None
    producer: dict[str, Any] = Field(default_factory=dict, description="other kafka-python KafkaProducer settings")

    def producer_config(self) -> dict[str, Any]:
        """kafka-python keyword arguments (secrets stay ``SecretStr`` until the producer is created)."""
        config: dict[str, Any] = {"client_id": self.client_id, "security_protocol": self.security_protocol}
        renamed = {"sasl_username": "sasl_plain_username", "sasl_password": "sasl_plain_password"}
        for name in ("sasl_mechanism", "sasl_username", "sasl_password", "ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                config[renamed.get(name, name)] = value
        if self.ssl_password is not None:
            config["ssl_password"] = self.ssl_password
        return {**config, **self.producer}


def kafka_hook(settings: KafkaHookSettings, name: str, kafka: KafkaSettings | None) -> KafkaHook:
    """The Kafka hook ``name``: its own cluster if ``settings`` name one, else the ingest ``kafka`` one.

    AlertingError when neither is given; DeliveryError (``attempts=0``) when the producer cannot be made
    (``KafkaSink`` refuses its settings with a ``ConfigError``, or fails with an ``IngestError``).
    """
    from ingest.sink import KafkaSink  # imports kafka: only when a Kafka hook is configured

    try:
        if settings.bootstrap_servers is not None:
            sink = KafkaSink(settings.bootstrap_servers, settings.topic, **settings.producer_config())
        elif kafka is not None:
            sink = KafkaSink.from_settings(kafka, settings.topic, **settings.producer)
        else:
            raise AlertingError("missing field 'bootstrap_servers' (and no [kafka] settings to default to)")
    except (ConfigError, IngestError) as exc:
        raise DeliveryError(name, str(exc), attempts=0) from exc
    return KafkaHook(sink, settings.timeout_s, name=name)
