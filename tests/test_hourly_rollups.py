"""The hourly rollups through the real writer: ``rising-ecc`` and ``tenant-usage`` answer exactly what the
minute windows answer.

Random racks (ECC counters rising at random, tenants coming and going, a reboot) are delivered mostly in
order, with batches played back one to three hours late and duplicates, over hour boundaries, with and
without open minutes held in memory. After every batch each saved query (hourly rows for the covered hours,
minute windows for the rest) is compared with its definition over the minute windows alone
(``RISING_ECC_FROM_MINUTES``, ``TENANT_USAGE_FROM_MINUTES``), and each covered bucket's rows of
``gpu_ecc_hours``, ``gpu_ecc_slices`` and ``tenant_hours`` are checked against the windows they sum.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.derived import DerivedTables
from storage.hourly import HOUR, HOUR_OF_WINDOW, SLICE_OF_WINDOW, floor_to
from storage.query import run_query
from storage.saved_queries import RISING_ECC_FROM_MINUTES, TENANT_USAGE_FROM_MINUTES, run_saved
from storage.writer import HistoryWriter
from tests.helpers.frames import encode_message, gpu_sample, rack_frame
from tests.test_derived import Store

START = datetime(2026, 3, 1, 21, 40, tzinfo=UTC)
STEP_S = 30
PARAMS = [{"hours": hours, "min_single_bit": least, "limit": 10_000} for hours in (1, 2, 3, 24) for least in (0, 1, 4)]
TENANT_PARAMS = [{"hours": hours, "tenant": tenant} for hours in (1, 2, 3, 24) for tenant in ("", "tenant-a")]
TENANTS = (None, "tenant-a", "tenant-b", "tenant-c")


def covered_vs_summed(rollup: str, hourly: str, windows: str, bucket: str = "hour") -> str:
    """SQL: the rows where ``rollup``'s sums per key and ``bucket`` (``hourly``) and the source windows'
    (``windows``) differ, over the buckets ``rollup_marks`` says it covers (none: the two agree)."""
    return f"""
    WITH hourly AS ({hourly}),
    windows AS ({windows}),
    marks AS (SELECT covered_from, complete_before FROM rollup_marks WHERE name = '{rollup}'),
    covered AS (SELECT w.* FROM windows w, marks WHERE {bucket} >= covered_from AND {bucket} < complete_before),
    summed AS (SELECT h.* FROM hourly h, marks WHERE {bucket} >= covered_from AND {bucket} < complete_before)
    (SELECT * FROM covered EXCEPT ALL SELECT * FROM summed)
    UNION ALL
    (SELECT * FROM summed EXCEPT ALL SELECT * FROM covered)"""


def ecc_vs_minutes(table: str, bucket: str, bucket_sql: str) -> str:
    """``covered_vs_summed`` for a GPU ECC rollup ``table`` with buckets ``bucket`` (``bucket_sql`` of a window)."""
    return covered_vs_summed(
        table,
        f"""SELECT rack_id, node, gpu, {bucket}, sum(minutes) AS minutes, sum(samples) AS samples,
            sum(ecc_sbe_inc) AS sbe, sum(ecc_sbe_minutes) AS sbe_n, sum(ecc_dbe_inc) AS dbe,
            sum(ecc_dbe_minutes) AS dbe_n, max(last_minute) AS last_minute
        FROM {table} GROUP BY ALL""",
        f"""SELECT rack_id, node, gpu, {bucket_sql} AS {bucket}, count(*) AS minutes,
            sum(samples) AS samples, coalesce(sum(ecc_sbe_inc), 0) AS sbe, count(ecc_sbe_inc) AS sbe_n,
            coalesce(sum(ecc_dbe_inc), 0) AS dbe, count(ecc_dbe_inc) AS dbe_n, max(window_start) AS last_minute
        FROM gpu_windows_1m GROUP BY ALL""",
        bucket,
    )


ECC_HOURS_VS_MINUTES = ecc_vs_minutes("gpu_ecc_hours", "hour", HOUR_OF_WINDOW)
ECC_SLICES_VS_MINUTES = ecc_vs_minutes("gpu_ecc_slices", "slice", SLICE_OF_WINDOW)
TENANT_HOURS_VS_MINUTES = covered_vs_summed(
    "tenant_hours",
    """SELECT tenant, rack_id, hour, sum(minutes) AS minutes, sum(gpu_seconds) AS gpu_seconds
    FROM tenant_hours GROUP BY ALL HAVING sum(minutes) != 0 OR sum(gpu_seconds) != 0""",
    f"""SELECT tenant, rack_id, {HOUR_OF_WINDOW} AS hour, count(*) AS minutes, sum(gpu_seconds) AS gpu_seconds
    FROM tenant_minutes GROUP BY ALL""",
)


def fleet(seed: int, racks: int = 3, hours: float = 4.0) -> list[tuple[datetime, bytes]]:
    """``racks`` racks of 2 nodes x 2 GPUs, a frame every ``STEP_S`` for ``hours``: ECC counters rising at
    random, each GPU's tenant changing now and then (or none), one rack rebooting (a new epoch resets its
    counters; a window without a reading before it in its epoch has NULL increments)."""
    rng = random.Random(seed)
    frames = []
    counters = {(r, n, g): [0, 0] for r in range(racks) for n in range(2) for g in range(2)}
    tenants = {key: rng.choice(TENANTS) for key in counters}
    for i in range(int(hours * 3600 / STEP_S)):
        at = START + timedelta(seconds=STEP_S * i)
        for r in range(racks):
            epoch = 1 if r == 0 and i >= 200 else 0
            gpus = []
            for node in range(2):
                for g in range(2):
                    counter = counters[(r, node, g)]
                    if r == 0 and i == 200:
                        counter[:] = [0, 0]
                    counter[0] += rng.choice((0, 0, 0, 0, 1, 3)) if g == 0 else 0
                    counter[1] += 1 if rng.random() < 0.01 else 0
                    if rng.random() < 0.005:
                        tenants[(r, node, g)] = rng.choice(TENANTS)
                    gpus.append(
                        gpu_sample(
                            node,
                            g,
                            ecc_sbe=counter[0],
                            ecc_dbe=counter[1],
                            xid=None,
                            throttle_reasons=0,
                            tenant=tenants[(r, node, g)],
                        )
                    )
            frame = rack_frame(
                rack_id=f"sat-0001/rack-{r + 1}", boot_epoch=epoch, frame_seq=i, sampled_at=at, gpus=gpus
            )
            frames.append((at, encode_message(frame, 2)))
    return frames


def deliveries(frames: list[tuple[datetime, bytes]], seed: int) -> list[list[tuple[datetime, bytes]]]:
    """Batches mostly in order; a tenth of the frames held back and played back one to three hours later;
    duplicates of earlier frames now and then."""
    rng = random.Random(seed)
    live: list[tuple[datetime, bytes]] = []
    late: list[tuple[datetime, bytes]] = []
    for item in frames:
        (late if rng.random() < 0.1 else live).append(item)
    batches: list[list[tuple[datetime, bytes]]] = []
    while live:
        size = rng.randint(20, 120)
        batch, live = live[:size], live[size:]
        newest = batch[-1][0]
        due = [x for x in late if x[0] <= newest - timedelta(hours=rng.uniform(1, 3))]
        if due and rng.random() < 0.5:
            late = [x for x in late if x not in due]
            batch = batch + due
        if rng.random() < 0.2:
            batch = batch + rng.sample(frames[: len(frames) - len(live)], 5)  # duplicates
        batches.append(batch)
    batches.append(late)
    return [b for b in batches if b]


def first_hour_subtracted(store: Store, hours: int) -> bool:
    """Whether ``rising-ecc`` over ``hours`` reads its first, partial hour as the rolled hour less the minutes
    before the span (the hour rolled, the span starting in its first half)."""
    newest = store.rows("SELECT max(window_start) FROM rack_windows_1m")[0][0]
    marks = store.rows(
        "SELECT covered_from, complete_before FROM rollup_marks WHERE name = 'gpu_ecc_hours' AND covered_from NOTNULL"
    )
    if newest is None or not marks:
        return False
    after = newest - timedelta(hours=hours)
    lead = floor_to(after, HOUR)
    return bool(marks[0][0] <= lead and marks[0][1] > lead and after < lead + timedelta(minutes=30))


def slices_read(store: Store) -> bool:
    """Whether ``rising-ecc`` reads 10-minute slices after the covered hours (``gpu_ecc_slices`` covers one)."""
    marks = dict(store.rows("SELECT name, complete_before FROM rollup_marks WHERE covered_from NOTNULL"))
    slices_from = store.rows("SELECT covered_from FROM rollup_marks WHERE name = 'gpu_ecc_slices'")[0][0]
    if "gpu_ecc_hours" not in marks or "gpu_ecc_slices" not in marks:
        return False
    return bool(max(marks["gpu_ecc_hours"], slices_from) < marks["gpu_ecc_slices"])


def answers_match(store: Store) -> tuple[int, int]:
    """Compare every saved query with its minute definition; returns how many rising-ecc spans subtracted
    and whether slices were read."""
    subtracted = 0
    for params in PARAMS:
        subtracted += first_hour_subtracted(store, params["hours"])
        given = {k: str(v) for k, v in params.items()}
        expected = run_query(store.con, RISING_ECC_FROM_MINUTES, parameters=dict(params))
        saved = run_saved(store.con, "rising-ecc", given)
        assert saved.table.schema == expected.table.schema
        assert saved.rows == expected.rows, params
    for tenant_params in TENANT_PARAMS:
        expected = run_query(store.con, TENANT_USAGE_FROM_MINUTES, parameters=dict(tenant_params))
        saved = run_saved(store.con, "tenant-usage", {k: str(v) for k, v in tenant_params.items()})
        assert saved.table.schema == expected.table.schema
        assert saved.rows == expected.rows, tenant_params
    assert store.rows(ECC_HOURS_VS_MINUTES) == []
    assert store.rows(ECC_SLICES_VS_MINUTES) == []
    assert store.rows(TENANT_HOURS_VS_MINUTES) == []
    return subtracted, slices_read(store)


@pytest.mark.parametrize(("seed", "hold"), [(1, None), (2, timedelta(minutes=1)), (3, timedelta(seconds=30))])
def test_saved_queries_answer_what_the_minute_windows_answer(tmp_path: Path, seed: int, hold: timedelta | None) -> None:
    store = Store(tmp_path / "history.duckdb")
    store.writer = HistoryWriter(store.con, DerivedTables(store.con, hold=hold))
    subtracted = with_slices = 0
    try:
        for batch in deliveries(fleet(seed), seed):
            received = max(at for at, _ in batch) + timedelta(seconds=30)
            store.store([m for _, m in batch], received_ms=int(received.timestamp() * 1000))
            subtracted_now, sliced = answers_match(store)
            subtracted += subtracted_now
            with_slices += sliced
        assert subtracted > 10  # the first hour was read both ways
        assert with_slices > 10  # and the open hour from slices
        marks = dict(store.rows("SELECT name, complete_before - covered_from FROM rollup_marks"))
        assert marks["gpu_ecc_hours"] == marks["tenant_hours"] >= timedelta(hours=2)  # the hourly rows were read
        assert marks["gpu_ecc_slices"] == timedelta(hours=2)  # the slices kept
        older = """SELECT count(*) FROM gpu_ecc_slices, rollup_marks
            WHERE name = 'gpu_ecc_slices' AND slice < covered_from"""
        assert store.rows(older) == [(0,)]  # and no older ones
        tables = (("gpu_ecc_hours", "hour"), ("gpu_ecc_slices", "slice"), ("tenant_hours", "hour"))
        for table, bucket in tables:
            key = "tenant, rack_id" if table == "tenant_hours" else "rack_id, node, gpu"
            accounted = f"SELECT count(*) FROM (SELECT 1 FROM {table} GROUP BY {key}, {bucket} HAVING count(*) > 1)"
            assert store.rows(accounted)[0][0] > 0, table  # late windows of rolled buckets were accounted
        assert run_saved(store.con, "rising-ecc", {"hours": "24"}).rows  # something to compare
        assert len(run_saved(store.con, "tenant-usage", {"hours": "24"}).rows) == 3
    finally:
        store.con.close()


def test_a_history_written_before_the_table_is_covered_by_its_first_roll(tmp_path: Path) -> None:
    """An upgraded history has windows but no hours: the first roll covers all of it at once."""
    store = Store(tmp_path / "history.duckdb")
    try:
        frames = fleet(4, racks=2, hours=3)
        halves = frames[: len(frames) // 2], frames[len(frames) // 2 :]
        received = [int((half[-1][0] + timedelta(seconds=30)).timestamp() * 1000) for half in halves]
        store.store([m for _, m in halves[0]], received_ms=received[0])
        assert store.rows("SELECT count(*) FROM gpu_ecc_hours")[0][0] > 0
        assert store.rows("SELECT count(*) FROM tenant_hours")[0][0] > 0
        for table in ("gpu_ecc_hours", "gpu_ecc_slices", "tenant_hours"):
            store.con.execute(f"DELETE FROM {table}")
        store.con.execute("UPDATE rollup_marks SET covered_from = NULL, complete_before = NULL")
        store.writer = HistoryWriter(store.con, DerivedTables(store.con))  # a daemon started on it
        store.store([m for _, m in halves[1]], received_ms=received[1])
        marks = dict(store.rows("SELECT name, covered_from FROM rollup_marks"))
        assert marks["gpu_ecc_hours"] == marks["tenant_hours"] == START.replace(minute=0)
        slices = dict(store.rows("SELECT name, complete_before - covered_from FROM rollup_marks"))["gpu_ecc_slices"]
        assert slices == timedelta(hours=2)  # the slices' first roll starts two hours back, not at the oldest
        answers_match(store)
    finally:
        store.con.close()
