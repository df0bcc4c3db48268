"""Fixtures of the fault suite: a broker per worker, fresh topics, daemons as real processes.

Scenarios that must not disturb other tests start a broker of their own: the paused one an
``EmbeddedBroker``, the outage a ``GatedBroker`` (tests/faults/servers.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest.admin import create_topic
from orbitwatch.broker import EmbeddedBroker
from tests.integration.daemons import DaemonProcess

TopicFactory = Callable[[int], str]
Daemons = Callable[..., DaemonProcess]
"""``daemons(bootstrap, topic, name, **settings)``: a ``DaemonProcess`` killed at the end of the test."""


@pytest.fixture(scope="session")
def fault_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of this worker's broker, shared by the scenarios that do not stop it."""
    with EmbeddedBroker(log_path=tmp_path_factory.mktemp("fault-broker") / "tansu.log") as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def make_topic(fault_bootstrap: str) -> TopicFactory:
    """Create a fresh topic of N partitions on the shared broker; returns its name."""

    def make(partitions: int) -> str:
        name = f"faults-{uuid.uuid4().hex[:10]}"
        create_topic(fault_bootstrap, name, partitions)
        return name

    return make


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    """Make daemons under this test's directory; every one still running is SIGKILLed at the end."""
    made: list[DaemonProcess] = []

    def make(bootstrap: str, topic: str, name: str = "d0", **settings: str) -> DaemonProcess:
        daemon = DaemonProcess(bootstrap, topic, tmp_path / name, **settings)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.kill()
