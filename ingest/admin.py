"""Kafka topic administration: the one place outside the source and sink that talks to Kafka's admin API."""

from __future__ import annotations

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ingest.errors import SourceError


def create_topic(bootstrap_servers: str, topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` partitions unless it exists.

    ``SourceError`` naming the servers when Kafka cannot be reached.
    """
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), client_id="orbitwatch-admin")
    except KafkaError as exc:
        raise SourceError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
