"""What the batch writer hands a step that runs inside its transaction, after the derived tables are written.

The writer knows nothing of what the step does; alerting implements it (``alerting.tables.AlertTables``),
so ``storage`` imports nothing from ``alerting``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    import polars as pl

WindowScope = Literal["gpu", "rack", "rack_now"]
"""What a transaction produced: recomputed GPU windows, recomputed rack windows, rack-now judgements."""


class TransactionStep(Protocol):
    """A step in the writer's transaction: it sees what the transaction derived and may write rows of its own."""

    def rate_lookback(self, scope: WindowScope) -> timedelta | None:
        """How many stored windows of ``scope`` before the recomputed ones the step needs as context (None: none)."""
        ...

    def step(
        self,
        frames: dict[WindowScope, pl.DataFrame],
        as_of: datetime,
        now: datetime,
        context: dict[WindowScope, pl.DataFrame] | None = None,
    ) -> int:
        """Act on ``frames`` as of the ground's clock ``as_of``, in the open transaction."""
        ...

    def committed(self) -> None:
        """The transaction committed."""
        ...

    def rolled_back(self) -> None:
        """The transaction rolled back: forget what ``step`` changed."""
        ...
