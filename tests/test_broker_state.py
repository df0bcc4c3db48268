"""The broker's reachability as events (``ingest.broker_state``): one line per outage start and end."""

from __future__ import annotations

import logging

import pytest

from ingest.broker_state import BrokerState, QuietDuringOutage


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_logged_once_when_it_begins_and_once_with_its_length_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    state = BrokerState("127.0.0.1:9092", clock)
    with caplog.at_level(logging.INFO, logger="ingest.broker_state"):
        state.succeeded()  # no outage yet: nothing to say
        state.failed("offset commit", "KafkaTimeoutError")
        clock.now += 30
        assert state.status().outage_s == pytest.approx(30)
        state.failed("end offsets", "KafkaTimeoutError")  # the same outage
        assert not state.reachable
        clock.now += 150
        state.succeeded()
        state.succeeded()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "unreachable at 127.0.0.1:9092 (offset commit: KafkaTimeoutError)" in lines[0]
    assert caplog.records[0].levelno == logging.WARNING
    assert "reachable again at 127.0.0.1:9092 after a 180 s outage" in lines[1]
    status = state.status()
    assert status.reachable
    assert status.outage_s == pytest.approx(180)
    assert status.outages == 1
    assert status.since is not None


def test_each_outage_is_counted() -> None:
    state = BrokerState("b:9092", FakeClock())
    for _ in range(3):
        state.failed("poll", "down")
        state.succeeded()
    assert state.status().outages == 3


def test_kafka_pythons_own_lines_are_thinned_during_an_outage_only() -> None:
    clock = FakeClock()
    state = BrokerState("b:9092", clock)
    quiet = QuietDuringOutage(state, every_s=60, clock=clock)

    def record(name: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, "Connection failed", None, None)

    assert all(quiet.filter(record("kafka.net.connection")) for _ in range(5))  # reachable: all pass
    state.failed("poll", "ECONNREFUSED")
    passed = []
    for _ in range(100):  # 100 records over 50 s, then 100 more over the next 50 s
        passed.append(quiet.filter(record("kafka.net.connection")))
        clock.now += 1.0
    assert sum(passed) == 2  # the first, and the first after 60 s
    assert quiet.filter(record("orbitwatch.daemon"))  # orbitwatch's own lines always pass
    state.succeeded()
    assert quiet.filter(record("kafka.net.connection"))
