"""The daemon's batch loop in process on a ``LocalBroker`` and a real DuckDB file: the order of its commits.

Offsets go to the broker last, only after DuckDB committed the batch that reached them; a batch whose
DuckDB transaction fails moves no committed offset, and a restart then stores every message exactly once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from ingest.errors import SourceError
from ingest.local_source import LocalBroker
from orbitwatch.daemon import Daemon
from orbitwatch.settings import Settings, load_settings
from simulator.config import SimulationConfig
from simulator.messages import SimMessage, generate
from storage.errors import StorageError
from storage.writer import BatchToStore, StoredBatch

TOPIC, GROUP, PARTITIONS = "rack-telemetry", "orbitwatch-test", 3
FLEET = SimulationConfig(
    satellites=1, racks_per_satellite=3, duration_s=120, contact="continuous", seed=7, duplicate_rate=0.0
)


def settings(tmp_path: Path, batch: int = 50) -> Settings:
    """A daemon with no background service, small batches and short polls."""
    return load_settings(
        None,
        kafka={"topic": TOPIC, "group_id": GROUP},
        storage={"path": str(tmp_path / "history.duckdb")},
        daemon={"metrics_port": None, "liveness_file": None, "poll_timeout_ms": 20, "max_batch_messages": batch},
        query={"enabled": False},
        retention={"enabled": False},
    )


@pytest.fixture(scope="module")
def fleet() -> list[SimMessage]:
    """The simulated fleet's messages (same bytes every run)."""
    messages, _ = generate(FLEET)
    return list(messages)


@pytest.fixture
def broker() -> LocalBroker:
    """A local broker with the telemetry topic."""
    local = LocalBroker()
    local.create_topic(TOPIC, PARTITIONS)
    return local


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons to close at the end of the test (each closed once)."""
    made: list[Daemon] = []
    yield made
    for daemon in made:
        daemon.close()


def send(broker: LocalBroker, messages: list[SimMessage]) -> None:
    """Produce keyed by rack, as the simulator does."""
    for m in messages:
        broker.produce(TOPIC, m.value, key=m.key, timestamp_ms=m.timestamp_ms)


def start(broker: LocalBroker, tmp_path: Path, made: list[Daemon], batch: int = 50) -> Daemon:
    """A daemon on ``broker`` through the ``source`` seam."""
    daemon = Daemon(settings(tmp_path, batch), source=broker.consumer)
    made.append(daemon)
    return daemon


def drive(daemon: Daemon, messages: int) -> int:
    """Run batches until ``messages`` were committed (DuckDB, then the broker); returns those committed."""
    consumed = 0
    for _ in range(500):
        result = daemon.run_batch()
        consumed += result.messages if result is not None else 0
        if consumed >= messages:
            break
    last = daemon.commit_finished()
    return consumed + (last.messages if last is not None else 0)


def stop(daemon: Daemon, made: list[Daemon]) -> None:
    """Close ``daemon`` now (a restart follows)."""
    made.remove(daemon)
    daemon.close()


def written(broker: LocalBroker) -> dict[int, int]:
    """The end offsets of the partitions that hold messages (the racks' keys may leave one empty)."""
    return {p: end for p, end in broker.end_offsets(TOPIC).items() if end}


def history(db: Path) -> tuple[int, int, int, int, int]:
    """Frames stored, and the sums of kafka_offsets' messages, frames_stored, duplicates, dead letters."""
    with duckdb.connect(str(db), read_only=True) as con:
        frames = con.execute("SELECT count(*) FROM rack_frames").fetchall()[0][0]
        sums = con.execute(
            "SELECT sum(messages), sum(frames_stored), sum(duplicates_dropped), sum(dead_letters) FROM kafka_offsets"
        ).fetchall()[0]
    messages, stored, duplicates, dead = (int(s) for s in sums)
    return int(frames), messages, stored, duplicates, dead


def test_offsets_reach_the_broker_last_and_only_after_duckdb_committed_them(
    broker: LocalBroker, fleet: list[SimMessage], tmp_path: Path, daemons: list[Daemon]
) -> None:
    send(broker, fleet)
    daemon = start(broker, tmp_path, daemons)
    events: list[tuple[str, dict[int, int]]] = []
    write = daemon.writer.write

    def recorded_write(batch: BatchToStore, *args: object, **kwargs: object) -> StoredBatch:
        stored = write(batch, *args, **kwargs)  # type: ignore[arg-type]
        events.append(("duckdb", {p: progress.next_offset for p, progress in batch.progress.items()}))
        return stored

    broker_commit = broker.commit

    def checked_commit(group: str, topic: str, offsets: dict[int, int]) -> None:
        assert not daemon.in_flight.busy  # the batch's write has been taken: DuckDB committed it
        in_duckdb = daemon.writer.stored_offsets(TOPIC)
        assert all(in_duckdb[p] >= o for p, o in offsets.items()), (offsets, in_duckdb)
        events.append(("kafka", dict(offsets)))
        broker_commit(group, topic, offsets)

    daemon.writer.write = recorded_write  # type: ignore[method-assign]
    broker.commit = checked_commit  # type: ignore[method-assign]
    assert drive(daemon, len(fleet)) == len(fleet)

    assert len(events) >= 2 * (len(fleet) // 50)
    kinds = [kind for kind, _ in events]
    assert kinds == ["duckdb", "kafka"] * (len(events) // 2)  # each batch: DuckDB, then the broker
    for (_, in_duckdb), (_, in_broker) in zip(events[::2], events[1::2], strict=True):
        assert in_broker == in_duckdb
    assert broker.committed(GROUP, TOPIC) == written(broker)
    stop(daemon, daemons)
    frames, messages, stored, duplicates, dead = history(tmp_path / "history.duckdb")
    assert (messages, stored + duplicates + dead, frames) == (len(fleet), len(fleet), stored)


def test_a_failed_duckdb_transaction_moves_no_committed_offset_and_a_restart_stores_every_message_once(
    broker: LocalBroker, fleet: list[SimMessage], tmp_path: Path, daemons: list[Daemon]
) -> None:
    half = len(fleet) // 2
    send(broker, fleet[:half])
    daemon = start(broker, tmp_path, daemons)
    assert drive(daemon, half) == half
    before = broker.committed(GROUP, TOPIC)
    assert before == written(broker)

    # A real DuckDB failure inside the batch's transaction: another transaction holds the offsets' rows,
    # so the batch's offset update is a write-write conflict and the whole batch rolls back.
    blocker = daemon._con.cursor()
    blocker.execute("BEGIN TRANSACTION")
    blocker.execute("UPDATE kafka_offsets SET updated_at = now()")
    send(broker, fleet[half:])
    with pytest.raises(StorageError, match="rolled back"):
        drive(daemon, len(fleet) - half)
    blocker.execute("ROLLBACK")
    blocker.close()
    assert broker.committed(GROUP, TOPIC) == before  # nothing committed past what DuckDB holds
    assert daemon.writer.stored_offsets(TOPIC) == before
    stop(daemon, daemons)
    assert broker.committed(GROUP, TOPIC) == before  # leaving the group committed nothing either

    restarted = start(broker, tmp_path, daemons)
    assert drive(restarted, len(fleet) - half) == len(fleet) - half
    assert broker.committed(GROUP, TOPIC) == written(broker)
    stop(restarted, daemons)
    frames, messages, stored, duplicates, dead = history(tmp_path / "history.duckdb")
    assert messages == len(fleet)  # every message counted once: none lost, none read twice
    assert (duplicates, stored + dead, frames) == (0, len(fleet), stored)


def test_a_restart_after_the_broker_missed_commits_resumes_at_duckdb_s_offsets(
    broker: LocalBroker, fleet: list[SimMessage], tmp_path: Path, daemons: list[Daemon]
) -> None:
    third = len(fleet) // 3
    send(broker, fleet[:third])
    daemon = start(broker, tmp_path, daemons)
    assert drive(daemon, third) == third
    before = broker.committed(GROUP, TOPIC)
    broker_commit = broker.commit

    def failing_commit(group: str, topic: str, offsets: dict[int, int]) -> None:
        raise SourceError("simulated: the group coordinator is away")

    broker.commit = failing_commit  # type: ignore[method-assign]
    send(broker, fleet[third : 2 * third])
    assert drive(daemon, third) == third  # DuckDB commits go on; the broker's fail and are carried
    assert broker.committed(GROUP, TOPIC) == before
    stop(daemon, daemons)  # its commit on leaving fails too: a crash between the two commits, in effect
    broker.commit = broker_commit  # type: ignore[method-assign]
    assert broker.committed(GROUP, TOPIC) == before

    send(broker, fleet[2 * third :])
    restarted = start(broker, tmp_path, daemons)
    assert drive(restarted, len(fleet) - 2 * third) == len(fleet) - 2 * third
    assert broker.committed(GROUP, TOPIC) == written(broker)
    stop(restarted, daemons)
    _, messages, _, duplicates, _ = history(tmp_path / "history.duckdb")
    assert (messages, duplicates) == (len(fleet), 0)  # nothing read again: DuckDB was ahead of the broker


def test_offsets_carried_through_an_outage_are_committed_once_the_broker_answers(
    broker: LocalBroker, fleet: list[SimMessage], tmp_path: Path, daemons: list[Daemon]
) -> None:
    send(broker, fleet[:100])
    daemon = start(broker, tmp_path, daemons)
    assert daemon.run_batch() is None  # batch 1 polled, its write in flight
    broker.reachable = False
    finished = daemon.run_batch()  # polls nothing; batch 1 is in DuckDB, its broker commit fails
    assert finished is not None
    assert finished.messages == 50
    assert broker.committed(GROUP, TOPIC) == {}
    assert not daemon.broker.reachable
    stored = daemon.writer.stored_offsets(TOPIC)
    assert sum(stored.values()) == 50
    daemon.update_lag(every_s=0, outage_every_s=0)  # still away: nothing tried
    assert broker.committed(GROUP, TOPIC) == {}
    broker.reachable = True
    daemon.update_lag(every_s=0, outage_every_s=0)  # the broker answers: the carried offsets go
    assert daemon.broker.reachable
    assert broker.committed(GROUP, TOPIC) == stored


def test_run_ingests_everything_on_the_local_broker_and_stops_when_idle(
    broker: LocalBroker, fleet: list[SimMessage], tmp_path: Path, daemons: list[Daemon]
) -> None:
    send(broker, fleet)
    daemon = start(broker, tmp_path, daemons, batch=200)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert daemon.run(exit_when_idle_s=0.3) == len(fleet)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert broker.committed(GROUP, TOPIC) == written(broker)
    assert daemon.status()["messages_committed"] == len(fleet)
