"""The open minute of each rack on the fast path, held in memory and written when it closes.

A rack streaming in order (``storage.derived``: its new frames all follow its stored ones, its tips in
memory) adds a few seconds to its newest minute with each batch. Writing that minute's windows back
every batch (a DELETE of its GPU, rack and tenant rows, then an INSERT) rewrote about one
``gpu_windows_1m`` row per GPU sample in a wide fleet, and cost about 40% of the daemon's time
(``tests.bench.fleet_shape``, 5,000 racks). So the windows of each such rack's newest minute are
**held** here, folded into by the next batches, and written:

- when the rack's next minute begins (the held minute is closed: written once, with an INSERT only
  when no version of it is stored);
- when a batch takes the rack off the fast path (late or out-of-order frames, or the rack left the
  tips): before that batch reads anything, so the exact recompute sees every window;
- every ``hold`` of wall-clock time, all of them (queries see the open minute at most that late), and
  when the daemon goes idle or stops (``HistoryWriter.flush_held``).

A crash loses nothing: the raw rows are committed with their offsets, and only each rack's newest
minute can be missing or stale in the window tables; ``DerivedTables.recover_open_minutes`` recomputes
those from their raw rows when the next writer starts.

``HeldWindows`` is immutable: a batch builds the next one, kept only if its transaction commits.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from processing.windows import WINDOW_KEY
from storage.tables import GPU_WINDOWS_1M, RACK_WINDOWS_1M, TENANT_MINUTES

KEY_SCHEMA: dict[str, pl.DataType] = {
    "rack_id": pl.String(),
    "window_start": pl.Datetime("us", "UTC"),
    "stored": pl.Boolean(),
}
"""A held window's key, and whether a version of it is stored (so that writing it replaces that one)."""


def _unstamped(schema: dict[str, pl.DataType]) -> dict[str, pl.DataType]:
    return {name: dtype for name, dtype in schema.items() if name != "computed_at"}


GPU_SCHEMA = _unstamped(GPU_WINDOWS_1M.polars_schema)
RACK_SCHEMA = _unstamped(RACK_WINDOWS_1M.polars_schema)
TENANT_SCHEMA = _unstamped(TENANT_MINUTES.polars_schema)


@dataclass(frozen=True, slots=True)
class HeldWindows:
    """Window rows held in memory (as the window tables store them, without ``computed_at``), by key."""

    gpu: pl.DataFrame
    rack: pl.DataFrame
    tenants: pl.DataFrame
    keys: pl.DataFrame
    """``KEY_SCHEMA``: one row per held window."""

    @classmethod
    def empty(cls) -> HeldWindows:
        """Nothing held."""
        return cls(
            pl.DataFrame(schema=GPU_SCHEMA),
            pl.DataFrame(schema=RACK_SCHEMA),
            pl.DataFrame(schema=TENANT_SCHEMA),
            pl.DataFrame(schema=KEY_SCHEMA),
        )

    @classmethod
    def of(cls, gpu: pl.DataFrame, rack: pl.DataFrame, tenants: pl.DataFrame, keys: pl.DataFrame) -> HeldWindows:
        """Hold computed window rows (cast to the tables' shapes) under ``keys`` (``KEY_SCHEMA``)."""
        return cls(
            gpu.select(list(GPU_SCHEMA)).cast(GPU_SCHEMA),  # type: ignore[arg-type]
            rack.select(list(RACK_SCHEMA)).cast(RACK_SCHEMA),  # type: ignore[arg-type]
            tenants.select(list(TENANT_SCHEMA)).cast(TENANT_SCHEMA),  # type: ignore[arg-type]
            keys.select(list(KEY_SCHEMA)).cast(KEY_SCHEMA),  # type: ignore[arg-type]
        )

    @property
    def count(self) -> int:
        """How many windows are held."""
        return self.keys.height

    def _where(self, other: pl.DataFrame, on: list[str], how: str) -> HeldWindows:
        def pick(frame: pl.DataFrame) -> pl.DataFrame:
            return frame.join(other.select(on), on=on, how=how)  # type: ignore[arg-type]

        return HeldWindows(pick(self.gpu), pick(self.rack), pick(self.tenants), pick(self.keys))

    def of_racks(self, racks: pl.DataFrame) -> HeldWindows:
        """The held windows of ``racks`` (``rack_id``)."""
        return self._where(racks.unique("rack_id"), ["rack_id"], "semi")

    def without_racks(self, racks: pl.DataFrame) -> HeldWindows:
        """Everything held except ``racks``' windows."""
        return self._where(racks.unique("rack_id"), ["rack_id"], "anti")

    def of_windows(self, windows: pl.DataFrame) -> HeldWindows:
        """The held windows among ``windows`` (``rack_id``, ``window_start``)."""
        return self._where(windows.unique(WINDOW_KEY), WINDOW_KEY, "semi")

    def without_windows(self, windows: pl.DataFrame) -> HeldWindows:
        """Everything held except ``windows``."""
        return self._where(windows.unique(WINDOW_KEY), WINDOW_KEY, "anti")

    def plus(self, other: HeldWindows) -> HeldWindows:
        """These windows and ``other``'s (the caller keeps their keys apart)."""
        if not other.count:
            return self
        if not self.count:
            return other
        return HeldWindows(
            pl.concat([self.gpu, other.gpu]),
            pl.concat([self.rack, other.rack]),
            pl.concat([self.tenants, other.tenants]),
            pl.concat([self.keys, other.keys]),
        )
