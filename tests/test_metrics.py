"""The daemon's metrics as Prometheus reads them: labelled message outcomes, satellite freshness, backlog."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest

from orbitwatch.metrics import DaemonMetrics
from storage.writer import PartitionOutcomes, StoredBatch
from tests.helpers.metrics import metric_total

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def exposed(metrics: DaemonMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_message_outcomes_are_counted_per_topic_partition_and_outcome() -> None:
    metrics = DaemonMetrics()
    batch = StoredBatch(7, 7 * 64, 3, 1, by_partition={0: PartitionOutcomes(5, 0, 1), 2: PartitionOutcomes(2, 3, 0)})
    metrics.observe_batch("telemetry", batch, {}, 0.2)
    metrics.observe_batch("telemetry", batch, {}, 0.3)
    text = exposed(metrics)
    assert metric_total(text, "orbitwatch_messages_total", partition="0", outcome="stored") == 10
    assert metric_total(text, "orbitwatch_messages_total", partition="0", outcome="duplicate") == 0  # a series at 0
    assert metric_total(text, "orbitwatch_messages_total", partition="2", outcome="duplicate") == 6
    assert metric_total(text, "orbitwatch_messages_total", outcome="dead_letter") == 2
    assert metric_total(text, "orbitwatch_messages_total", topic="telemetry") == 2 * (6 + 5)
    assert metric_total(text, "orbitwatch_gpu_samples_stored_total") == 2 * 7 * 64
    assert metric_total(text, "orbitwatch_batch_seconds_count") == 2
    assert metric_total(text, "orbitwatch_last_batch_timestamp_seconds") > 0


def test_freshness_is_the_age_of_the_newest_frame_in_event_time_and_never_goes_back() -> None:
    now = [T0.timestamp() + 600]
    metrics = DaemonMetrics(clock=lambda: now[0])
    freshness = metrics.freshness
    freshness.observe({"sat-0001": T0, "sat-0002": T0.replace(minute=9)})
    freshness.observe({"sat-0001": T0.replace(hour=11)})  # a late playback of older frames: no younger
    text = exposed(metrics)
    name = "orbitwatch_satellite_newest_frame_age_seconds"
    assert metric_total(text, name, satellite="sat-0001") == 600
    assert metric_total(text, name, satellite="sat-0002") == 60
    now[0] += 3600  # silence: the age grows at every scrape
    assert metric_total(exposed(metrics), name, satellite="sat-0001") == 4200


def test_notification_backlog_is_read_at_scrape_time() -> None:
    metrics = DaemonMetrics()
    assert metric_total(exposed(metrics), "orbitwatch_notifications_pending") == 0
    pending = [4]
    metrics.watch_backlog(lambda: pending[0])
    assert metric_total(exposed(metrics), "orbitwatch_notifications_pending") == 4
    pending[0] = 0
    assert metric_total(exposed(metrics), "orbitwatch_notifications_pending") == 0


def test_consumer_lag_is_labelled_by_topic_and_partition() -> None:
    metrics = DaemonMetrics()
    metrics.observe_lag("telemetry", {0: 12, 3: 0})
    text = exposed(metrics)
    assert metric_total(text, "orbitwatch_consumer_lag", topic="telemetry", partition="0") == 12
    assert metric_total(text, "orbitwatch_consumer_lag", partition="3") == 0
