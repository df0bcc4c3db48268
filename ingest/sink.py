"""The Kafka sink: one producer that sends a keyed message and blocks until the brokers acknowledged it.

The alert hooks deliver through it (``ingest`` is the only package that imports ``kafka``). Every send
waits for ``acks="all"`` (idempotent producer, kafka-python's default with ``acks="all"``), so a send
that returns is on every in-sync replica. The producer is created on the first send, not at
construction: a Kafka that is down at start-up delays alerts (the caller retries) instead of stopping
the daemon, while the settings are still checked at construction.

Delivery is at least once: a send that times out may still be delivered later by the producer, and the
caller's retry then sends a second copy.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from pydantic import SecretStr

from ingest.errors import SourceError
from ingest.settings import KafkaSettings
from ingest.source import consumer_config
from orbitwatch.errors import ConfigError

log = logging.getLogger(__name__)

# Settings of the producer the sink relies on; the caller may change any other KafkaProducer setting.
_FIXED = frozenset({"acks", "key_serializer", "value_serializer", "transactional_id"})
_DEFAULTS: dict[str, Any] = {
    "client_id": "orbitwatch-sink",
    "linger_ms": 0,
    # A topic name with a typo must fail, not create a topic nobody reads.
    "allow_auto_create_topics": False,
    # send() blocks at most this long for the topic's metadata (kafka-python's default is 60 s).
    "max_block_ms": 5_000,
    "request_timeout_ms": 10_000,
}


class KafkaSink:
    """Sends keyed messages to one topic, each send blocking until acknowledged by all in-sync replicas.

    ``config`` takes any other kafka-python ``KafkaProducer`` keyword (``security_protocol``,
    ``sasl_mechanism``, ``sasl_plain_username``, ``sasl_plain_password``, ``ssl_cafile``, ...); secrets may
    be ``SecretStr``. Unknown keywords, and those the sink fixes (``acks``, serializers,
    ``transactional_id``), raise ``ConfigError``. Thread-safe.
    """

    def __init__(self, bootstrap_servers: str, topic: str, **config: Any) -> None:
        servers = [s.strip() for s in bootstrap_servers.split(",") if s.strip()]
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"Kafka sink: bootstrap server {server!r} is not host:port")
        if not servers:
            raise ConfigError("Kafka sink: bootstrap_servers is empty")
        if not topic:
            raise ConfigError("Kafka sink: topic is empty")
        unknown = sorted(set(config) - set(KafkaProducer.DEFAULT_CONFIG))
        if unknown:
            raise ConfigError(f"Kafka sink: unknown producer settings {unknown}")
        fixed = sorted(set(config) & _FIXED)
        if fixed:
            raise ConfigError(f"Kafka sink: {fixed} cannot be changed (acks are always 'all', values are bytes)")
        self.bootstrap_servers = ",".join(servers)
        self.topic = topic
        self._config: dict[str, Any] = {**_DEFAULTS, **config, "bootstrap_servers": servers, "acks": "all"}
        self._producer: Any = None
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: KafkaSettings, topic: str, **config: Any) -> KafkaSink:
        """A sink on the cluster and with the credentials of the ingest ``settings`` (``config`` wins)."""
        inherited = {k: v for k, v in consumer_config(settings).items() if k in KafkaProducer.DEFAULT_CONFIG}
        inherited.pop("bootstrap_servers", None)
        inherited["client_id"] = f"{settings.client_id}-sink"  # tells the producer from the consumer on the broker
        return cls(settings.bootstrap_servers, topic, **{**inherited, **config})

    def __repr__(self) -> str:
        return f"KafkaSink({self.bootstrap_servers!r}, {self.topic!r})"

    def _connect(self, timeout_s: float) -> Any:
        """The producer, created on first use; a failed creation is cleaned up and retried on the next send."""
        with self._lock:
            if self._closed:
                raise SourceError(f"Kafka sink for topic {self.topic} is closed")
            if self._producer is not None:
                return self._producer
            config = {k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in self._config.items()}
            bootstrap_ms = min(config.get("bootstrap_timeout_ms", 30_000), timeout_s * 1000)
            config["bootstrap_timeout_ms"] = max(1, int(bootstrap_ms))
            # kafka-python 3.0.12 does not close its network client when the constructor fails (for instance
            # when no broker answers): keep a handle on it and close it. (The sockets of its failed connection
            # attempts are not closed by kafka-python either; the garbage collector closes those.)
            clients: list[Any] = []
            make_client = config.get("kafka_client", KafkaProducer.DEFAULT_CONFIG["kafka_client"])

            def tracked_client(**kwargs: Any) -> Any:
                client = make_client(**kwargs)
                clients.append(client)
                return client

            config["kafka_client"] = tracked_client
            try:
                self._producer = KafkaProducer(**config)
            except KafkaError as exc:
                for client in clients:
                    client.close()
                raise SourceError(f"cannot connect to Kafka at {self.bootstrap_servers}: {exc}") from exc
            except (ValueError, TypeError) as exc:  # a setting kafka-python rejects
                for client in clients:
                    client.close()
                raise ConfigError(f"Kafka sink: invalid producer settings: {exc}") from exc
            log.info("Kafka sink connected to %s for topic %s", self.bootstrap_servers, self.topic)
            return self._producer

    def send(self, key: bytes, value: bytes, timeout_s: float) -> None:
        """Send one message and wait until all in-sync replicas have it; ``SourceError`` otherwise.

        Waits at most ``timeout_s`` in all (connecting on first use, the topic's metadata, the ack), except
        that a topic's metadata is awaited for up to ``max_block_ms`` (5 s by default) even past it.
        """
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        deadline = time.monotonic() + timeout_s
        producer = self._connect(timeout_s)
        where = f"Kafka topic {self.topic} at {self.bootstrap_servers}"
        try:
            future = producer.send(self.topic, key=key, value=value)
        except KafkaTimeoutError as exc:
            raise SourceError(
                f"cannot send to {where}: no metadata for the topic within {self._config['max_block_ms']} ms "
                f"(does the topic exist? is the broker reachable?): {exc}"
            ) from exc
        except KafkaError as exc:
            raise SourceError(f"cannot send to {where}: {exc}") from exc
        try:
            future.get(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaTimeoutError as exc:
            raise SourceError(f"no acknowledgement from {where} within {timeout_s:g} s") from exc
        except KafkaError as exc:
            raise SourceError(f"{where} refused the message: {exc}") from exc

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush what is still queued (for at most ``timeout_s``) and close the producer."""
        with self._lock:
            self._closed = True
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=timeout_s)

    def __enter__(self) -> KafkaSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
