"""Property: random fleets delivered in any order, any batching and with duplicates produce exactly the
windows of the all-at-once computation.

Each example is a small random fleet (1-3 racks, 1-3 GPUs per rack in 1-2 nodes, 3-12 minutes of
1-second frames) with lost frames (short holes, and sometimes one longer than the counter horizon of
``processing.counters``), reboots (``boot_epoch + 1``, ``frame_seq`` from 0, counters from 0) at any
second, cumulative counters (``ecc_sbe``, ``ecc_dbe``, ``nvlink_errors``, rack ``seu_count``) that
mostly hold, sometimes rise, rarely reset without a reboot and are sometimes unreadable (a negative
reading, stored as NULL by ``processing.quality``), tenants changing mid-minute, XIDs, GPUs off the bus
for a while, hot GPUs, throttling, hot radiators and SEU storms (so health changes).

Reference: every frame in sampled order, in one batch, received live, into database A. Subject: the same
frames in order or shuffled (a random permutation, reversed, minute blocks shuffled, or a share held back and sent
last), about 10% of them again (some copies from another ground station) at random places, cut into
random batches received hours late, into database B. Both go through the daemon's path (decode,
``prepare_batch``, ``assemble.to_store``, ``HistoryWriter`` with ``DerivedTables`` on a DuckDB file).
The subject either writes every touched window in every batch, or holds each in-order rack's open minute
in memory (``storage.open_windows``) and at the end writes it, or loses it in a "crash" (closed without
writing it; a new writer recomputes it from the raw rows). The derived tables and their views must be
equal; only bookkeeping columns (when a row was computed, which copy's receive time) are dropped, as in
``tests/integration/test_late_data.py``. The "now" tables (``rack_health_now``, ``rack_health_log``,
``rack_link``) follow the ground's clock and are not compared.
"""

from __future__ import annotations

import itertools
import random
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from ingest.codec import FrameDecoder
from orbitwatch import assemble
from processing.rows import prepare_batch
from storage.database import open_database
from storage.derived import DerivedTables
from storage.writer import HistoryWriter
from tests.helpers.frames import DEFAULT_SAMPLED_AT, encode_message, gpu_sample, rack_frame, raw_batch, registry

T0 = DEFAULT_SAMPLED_AT
HOUR_MS = 3_600_000
UNREADABLE = -1  # an impossible counter reading: stored as NULL (processing.quality.flag_invalid)
TENANTS = [None, "acme", "globex", "initech"]
XIDS = [13, 31, 48, 79, 94]
THROTTLE_BITS = [0x08, 0x20, 0x40, 0x80]

# Table or view, columns that legitimately differ (when a row was computed, which copy's receive time), key.
TABLES = [
    ("gpu_windows_1m", ["computed_at"], ["rack_id", "node", "gpu", "window_start"]),
    ("rack_windows_1m", ["computed_at", "last_frame_at"], ["rack_id", "window_start"]),
    ("tenant_minutes", [], ["rack_id", "window_start", "tenant"]),
    ("open_gaps", ["detected_at"], ["rack_id", "boot_epoch", "first_missing"]),
    ("seq_bounds", [], ["rack_id", "boot_epoch"]),
    ("gpu_rollups_1m", [], ["rack_id", "node", "gpu", "window_start"]),
    ("rack_rollups_1m", ["last_frame_at"], ["rack_id", "window_start"]),
    ("node_health_1m", [], ["rack_id", "node", "window_start"]),
    ("rack_health_history", ["computed_at"], ["rack_id", "window_start"]),
]
# Views that sum floats in DuckDB, in an order of DuckDB's own: compared to 1e-9, as test_late_data does.
SUMMED_VIEWS = [
    ("rack_rollups_1h", ["last_frame_at"], ["rack_id", "window_start"]),
    ("tenant_usage_hourly", [], ["tenant", "hour"]),
    ("fleet_utilization_1m", [], ["window_start"]),
]


# -- the fleet ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One encoded frame and where it lies in history."""

    rack_id: str
    boot_epoch: int
    frame_seq: int
    sampled_at: datetime
    value: bytes
    other_station: bytes  # the same frame as another ground station received it


@dataclass(frozen=True, slots=True)
class Interval:
    start: int
    length: int

    def __contains__(self, tick: int) -> bool:
        return self.start <= tick < self.start + self.length


@dataclass(frozen=True, slots=True)
class GpuPlan:
    node: int
    gpu: int
    hot: Interval | None  # core temperature at or above the degraded/critical thresholds
    off_bus: Interval | None  # missing from the rack's frames


@dataclass(frozen=True, slots=True)
class RackPlan:
    rack_id: str
    gpus: list[GpuPlan]
    start_s: int  # first tick's offset from T0 (so minutes start anywhere in a rack's timeline)
    ticks: int  # seconds of the timeline, lost ones included
    boot_epoch: int
    first_seq: int  # 0: booted at the first tick; >= EPOCH_START_SEQS: booted long before
    reboots: list[int]  # ticks at which the rack controller rebooted
    holes: list[Interval]  # lost frames
    storm: Interval | None  # an SEU storm
    hot_radiator: Interval | None
    seed: int  # the per-second noise

    def lost(self, tick: int) -> bool:
        return any(tick in hole for hole in self.holes)


@dataclass(slots=True)
class Counter:
    """A cumulative counter since boot: mostly holds, sometimes rises, rarely resets, sometimes unreadable."""

    rise: float
    value: int = 0

    def tick(self, rng: random.Random, burst: bool = False) -> int:
        roll = rng.random()
        if burst:
            self.value += rng.randint(3, 9)
        elif roll < self.rise:
            self.value += rng.randint(1, 3)
        elif roll < self.rise + 0.004:
            self.value = rng.randint(0, self.value // 2)  # reset without a reboot
        return UNREADABLE if rng.random() < 0.02 else self.value


def interval(ticks: int, shortest: int, longest: int) -> st.SearchStrategy[Interval]:
    return st.builds(Interval, st.integers(0, max(0, ticks - 1)), st.integers(shortest, longest))


@st.composite
def rack_plans(draw: st.DrawFn, rack_id: str) -> RackPlan:
    nodes = draw(st.integers(1, 2))
    count = draw(st.integers(nodes, 3))
    gpu_ids = draw(st.lists(st.integers(0, 7), min_size=count, max_size=count, unique=True))
    present = draw(st.integers(180, 720))  # 3-12 minutes of frames
    holes = draw(st.lists(interval(present, 1, 8), max_size=4))
    long_hole = draw(st.none() | interval(present, 540, 900))  # > 10 minutes lost, or almost
    ticks = present + (long_hole.length if long_hole is not None else 0)
    gpus = [
        GpuPlan(
            k % nodes,
            gpu_ids[k],
            draw(st.none() | interval(ticks, 5, 90)),
            draw(st.none() | st.none() | interval(ticks, 5, 120)),
        )
        for k in range(count)
    ]
    return RackPlan(
        rack_id=rack_id,
        gpus=gpus,
        start_s=draw(st.integers(0, 119)),
        ticks=ticks,
        boot_epoch=draw(st.integers(0, 3)),
        first_seq=draw(st.sampled_from([0, 0, 250, 5_000])),
        reboots=sorted(draw(st.lists(st.integers(1, ticks - 1), max_size=2, unique=True))),
        holes=[*holes, *([long_hole] if long_hole is not None else [])],
        storm=draw(st.none() | interval(ticks, 60, 240)),
        hot_radiator=draw(st.none() | st.none() | interval(ticks, 30, 120)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


RACK_IDS = ["sat-0001/rack-1", "sat-0001/rack-2", "sat-0002/rack-1"]


@st.composite
def fleets(draw: st.DrawFn) -> list[RackPlan]:
    racks = draw(st.integers(1, 3))
    return [draw(rack_plans(rack_id)) for rack_id in RACK_IDS[:racks]]


def rack_frames_of(plan: RackPlan) -> list[Frame]:
    """Every frame the rack sent that the ground received (its lost ticks skipped)."""
    rng = random.Random(plan.seed)
    epoch, epoch_tick, seq0 = plan.boot_epoch, 0, plan.first_seq
    booted_long_ago = plan.first_seq > 0
    counters = {
        (g.node, g.gpu): {
            "ecc_sbe": Counter(0.02, rng.randint(0, 500) if booted_long_ago else 0),
            "ecc_dbe": Counter(0.002),
            "nvlink_errors": Counter(0.02, rng.randint(0, 50) if booted_long_ago else 0),
        }
        for g in plan.gpus
    }
    seu = Counter(0.1, rng.randint(0, 10_000) if booted_long_ago else 0)
    tenants = {(g.node, g.gpu): rng.choice(TENANTS) for g in plan.gpus}
    stored = False
    frames = []
    for tick in range(plan.ticks):
        if tick in plan.reboots:
            epoch, epoch_tick, seq0 = epoch + 1, tick, 0
            for kinds in counters.values():
                for counter in kinds.values():
                    counter.value = 0
            seu.value = 0
        seq = seq0 + tick - epoch_tick
        sampled_at = T0 + timedelta(seconds=plan.start_s + tick)
        if tick % 60 == 0:
            stored = rng.random() < 0.2  # a stretch of playback
        samples = []
        for g in plan.gpus:
            key = (g.node, g.gpu)
            c = counters[key]
            burst = rng.random() < 0.01
            if rng.random() < 0.01:
                tenants[key] = rng.choice(TENANTS)
            hot = g.hot is not None and tick in g.hot
            sample = gpu_sample(
                g.node,
                g.gpu,
                util_pct=rng.uniform(0.0, 100.0),
                mem_used_mib=rng.randint(0, 81_920),
                power_w=rng.uniform(50.0, 700.0),
                temp_c=rng.uniform(84.0, 93.0) if hot else rng.uniform(40.0, 75.0),
                hbm_temp_c=rng.uniform(88.0, 97.0) if hot and rng.random() < 0.5 else rng.uniform(40.0, 80.0),
                sm_clock_mhz=rng.randint(200, 1_980),
                ecc_sbe=c["ecc_sbe"].tick(rng, burst),
                ecc_dbe=c["ecc_dbe"].tick(rng),
                nvlink_errors=c["nvlink_errors"].tick(rng),
                xid=rng.choice(XIDS) if rng.random() < 0.01 else None,
                throttle_reasons=rng.choice(THROTTLE_BITS) if rng.random() < (0.5 if hot else 0.02) else 0,
                row_remap_pending=rng.random() < 0.001,
                tenant=tenants[key],
            )
            if g.off_bus is None or tick not in g.off_bus:
                samples.append(sample)
        storm = plan.storm is not None and tick in plan.storm
        seu_count = seu.tick(rng, burst=storm)
        if plan.lost(tick):
            continue
        radiator = rng.uniform(31.0, 50.0) if plan.hot_radiator is not None and tick in plan.hot_radiator else None
        content: dict[str, Any] = {
            "rack_id": plan.rack_id,
            "boot_epoch": epoch,
            "frame_seq": seq,
            "sampled_at": sampled_at,
            "gpus": samples,
            "stored": stored,
            "power": {
                "bus_w": rng.uniform(8_000.0, 14_000.0),
                "solar_w": rng.uniform(0.0, 16_000.0),
                "battery_soc": rng.uniform(0.2, 1.0),
                "in_eclipse": (plan.start_s + tick) // 60 % 3 == 0,
            },
            "thermal": {
                "radiator_c": radiator if radiator is not None else rng.uniform(-20.0, 15.0),
                "coolant_inlet_c": rng.uniform(15.0, 20.0),
                "coolant_outlet_c": rng.uniform(25.0, 38.0),
            },
            "radiation": {"seu_count": seu_count, "dose_rate_mrad_h": rng.uniform(0.5, 3.0)},
        }
        frames.append(
            Frame(
                plan.rack_id,
                epoch,
                seq,
                sampled_at,
                encode_message(rack_frame(**content), 2),
                encode_message(rack_frame(**content, ground_station="gs-troll"), 2),
            )
        )
    return frames


# -- the delivery ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    order: str
    duplicates: float
    batches: int
    seed: int
    open_minutes: str
    """``write``: every touched window written every batch; ``flush``: the open minutes held in memory
    (``storage.open_windows``) until written at the end; ``crash``: held and never written, the process
    gone, and a new writer recovering them from the raw rows."""


deliveries = st.builds(
    Delivery,
    order=st.sampled_from(["in_order", "shuffled", "reversed", "minutes", "held_back"]),
    duplicates=st.sampled_from([0.0, 0.05, 0.1, 0.1, 0.2]),
    batches=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    open_minutes=st.sampled_from(["crash", "flush", "write"]),
)


def deliver(frames: list[Frame], delivery: Delivery) -> list[list[bytes]]:
    """The frames reordered, some sent twice, cut into batches (each a list of Kafka values)."""
    rng = random.Random(delivery.seed)
    order = list(frames)
    if delivery.order == "in_order":  # the live case: only the duplicates and the batching differ
        pass
    elif delivery.order == "shuffled":
        rng.shuffle(order)
    elif delivery.order == "reversed":
        order.reverse()
    elif delivery.order == "minutes":  # whole minutes of a rack out of order, some of them backwards
        blocks: dict[tuple[str, datetime], list[Frame]] = {}
        for f in order:
            blocks.setdefault((f.rack_id, f.sampled_at.replace(second=0)), []).append(f)
        groups = list(blocks.values())
        rng.shuffle(groups)
        order = [f for g in groups for f in (reversed(g) if rng.random() < 0.3 else g)]
    else:  # a third held back and sent last, shuffled
        held = [rng.random() < 1 / 3 for _ in order]
        late = [f for f, h in zip(order, held, strict=True) if h]
        rng.shuffle(late)
        order = [f for f, h in zip(order, held, strict=True) if not h] + late
    values = [f.value for f in order]
    for copy in rng.sample(frames, round(len(frames) * delivery.duplicates)):
        values.insert(rng.randint(0, len(values)), copy.other_station if rng.random() < 0.3 else copy.value)
    cuts = sorted(rng.sample(range(1, len(values)), min(delivery.batches, len(values)) - 1))
    bounds = [0, *cuts, len(values)]
    return [values[lo:hi] for lo, hi in itertools.pairwise(bounds)]


# -- the stores --------------------------------------------------------------------------------------


class Store:
    """A database with derived tables and a writer that stores encoded frames as the daemon does."""

    def __init__(self, path: Path, hold: timedelta | None = None) -> None:
        self.path = path
        self.con = open_database(path)
        self.writer = HistoryWriter(self.con, DerivedTables(self.con, hold=hold))
        self.decoder = FrameDecoder(registry())
        self.offset = 0

    def finish(self, open_minutes: str) -> None:
        """Write the held open minutes (``flush``), or lose them (``crash``): close without writing them and
        start a new writer, which recovers them from the raw rows."""
        if open_minutes == "flush":
            self.writer.flush_held()
        elif open_minutes == "crash":
            self.con.close()
            self.con = open_database(self.path)
            self.writer = HistoryWriter(self.con, DerivedTables(self.con))

    def store(self, values: list[bytes], received_ms: list[int]) -> None:
        raw = raw_batch(list(values), first_offset=self.offset, timestamps_ms=received_ms)
        self.offset += len(values)
        decoded = self.decoder.decode(raw)
        assert not decoded.dead_letters
        prepared = prepare_batch(decoded.frames)
        assert prepared.rejected.is_empty()
        self.writer.write(assemble.to_store(raw, decoded, prepared))

    def table(self, name: str, drop: list[str], key: list[str]) -> pl.DataFrame:
        frame: pl.DataFrame = self.con.sql(f"SELECT * FROM {name}").pl()
        return frame.drop(drop).sort(key)


def same(name: str, actual: pl.DataFrame, expected: pl.DataFrame, **tolerance: Any) -> None:
    """``assert_frame_equal``, naming the table; an empty reference would prove nothing."""
    assert expected.height > 0 or name == "open_gaps", f"{name} is empty"
    try:
        assert_frame_equal(actual, expected, **tolerance)
    except AssertionError as exc:
        raise AssertionError(f"{name} differs: {exc}") from exc


def millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def describe(plans: list[RackPlan], frames: list[Frame]) -> None:
    """Label the example (``--hypothesis-show-statistics``), to see that the features are generated."""
    event(f"{len(plans)} rack(s)")
    if any(p.reboots for p in plans):
        event("reboot")
    if any(h.length > 8 for p in plans for h in p.holes):
        event("hole longer than the horizon, or nearly")
    if any(p.first_seq >= 600 for p in plans):
        event("booted long before")
    event(f"{len(frames) // 500 * 500}+ frames")


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plans=fleets(), delivery=deliveries)
def test_any_order_batching_and_duplicates_give_the_windows_of_the_all_at_once_computation(
    plans: list[RackPlan], delivery: Delivery
) -> None:
    frames = sorted((f for p in plans for f in rack_frames_of(p)), key=lambda f: (f.sampled_at, f.rack_id))
    describe(plans, frames)
    batches = deliver(frames, delivery)
    newest = max(f.sampled_at for f in frames)
    with tempfile.TemporaryDirectory() as tmp:
        hold = None if delivery.open_minutes == "write" else timedelta(days=1)
        reference, subject = Store(Path(tmp) / "in-order.duckdb"), Store(Path(tmp) / "late.duckdb", hold)
        try:
            reference.store([f.value for f in frames], [millis(f.sampled_at) + 1_500 for f in frames])
            for i, batch in enumerate(batches):  # each batch received hours after the newest frame
                subject.store(batch, [millis(newest) + 2 * HOUR_MS + i * 60_000] * len(batch))
            if subject.writer.derived is not None and subject.writer.derived.held.count:
                event(f"open minutes held, then {delivery.open_minutes}")
            subject.finish(delivery.open_minutes)
            assert_same_history(subject, reference, len(frames))
        finally:
            reference.con.close()
            subject.con.close()


def assert_same_history(subject: Store, reference: Store, frames: int) -> None:
    """The same frames stored, and the same derived tables and views."""
    stored = ["rack_id", "boot_epoch", "frame_seq"]
    expected_frames = reference.table("rack_frames", [], stored).select(stored)
    assert expected_frames.height == frames
    assert_frame_equal(subject.table("rack_frames", [], stored).select(stored), expected_frames)
    for name, drop, key in TABLES:
        same(name, subject.table(name, drop, key), reference.table(name, drop, key), check_exact=True)
    for name, drop, key in SUMMED_VIEWS:
        same(name, subject.table(name, drop, key), reference.table(name, drop, key), rel_tol=1e-9)


@pytest.mark.parametrize("open_minutes", ["flush", "crash"])
def test_held_open_minutes_written_or_recovered_give_the_windows_of_the_all_at_once_computation(
    open_minutes: str,
) -> None:
    """Two racks streaming in order in 12 batches: their open minutes are held (the window tables lag
    behind the raw rows), then written, or lost with the process and recomputed by the next writer."""
    gpus = [GpuPlan(0, 0, None, None), GpuPlan(0, 1, Interval(70, 30), None), GpuPlan(1, 0, None, Interval(20, 9))]
    plans = [
        RackPlan("rack-a", gpus, 17, 230, 3, 0, [], [Interval(100, 4)], None, None, 7),
        RackPlan("rack-b", gpus[:2], 41, 200, 1, 900, [150], [], Interval(30, 40), None, 8),
    ]
    frames = sorted((f for p in plans for f in rack_frames_of(p)), key=lambda f: (f.sampled_at, f.rack_id))
    batches = deliver(frames, Delivery("in_order", 0.0, 12, 5, open_minutes))
    newest = max(f.sampled_at for f in frames)
    with tempfile.TemporaryDirectory() as tmp:
        reference, subject = Store(Path(tmp) / "ref.duckdb"), Store(Path(tmp) / "held.duckdb", timedelta(days=1))
        try:
            reference.store([f.value for f in frames], [millis(f.sampled_at) + 1_500 for f in frames])
            for i, batch in enumerate(batches):
                subject.store(batch, [millis(newest) + 2 * HOUR_MS + i * 60_000] * len(batch))
            assert subject.writer.derived is not None
            assert subject.writer.derived.held.count == 2  # a minute per rack
            windows = "SELECT count(*) FROM rack_windows_1m"
            held, written = subject.con.execute(windows).fetchall(), reference.con.execute(windows).fetchall()
            assert held[0][0] == written[0][0] - 2
            subject.finish(open_minutes)
            assert_same_history(subject, reference, len(frames))
        finally:
            reference.con.close()
            subject.con.close()
