"""Sequence gaps: hand-computed tables, playback closing gaps, and incremental == batch (property test)."""

from __future__ import annotations

import itertools

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processing.errors import FrameShapeError
from processing.gaps import GAP_SCHEMA, find_gaps, seq_bounds, update_gaps

Key = tuple[str, int, int]


def frames(keys: list[Key]) -> pl.DataFrame:
    return pl.DataFrame(
        keys,
        schema={"rack_id": pl.String, "boot_epoch": pl.Int32, "frame_seq": pl.Int64},
        orient="row",
    )


def rows(gaps: pl.DataFrame) -> list[tuple[str, int, int, int, int]]:
    return [(r, e, f, la, m) for r, e, f, la, m in gaps.iter_rows()]


def fold(batches: list[list[Key]]) -> pl.DataFrame:
    """Apply ``update_gaps`` batch after batch, as the daemon would."""
    gaps = pl.DataFrame(schema=GAP_SCHEMA)
    bounds = seq_bounds(frames([]))
    for batch in batches:
        gaps = update_gaps(gaps, frames(batch), bounds)
        bounds = seq_bounds(frames(batch), bounds)
    return gaps


def test_find_gaps_hand_computed() -> None:
    keys = [("r1", 0, s) for s in (5, 0, 1, 1, 9, 3)] + [("r1", 1, 0), ("r1", 1, 2), ("r2", 0, 7)]
    assert rows(find_gaps(frames(keys))) == [
        ("r1", 0, 2, 2, 1),
        ("r1", 0, 4, 4, 1),
        ("r1", 0, 6, 8, 3),
        ("r1", 1, 1, 1, 1),
    ]


def test_no_frames_no_gaps() -> None:
    assert find_gaps(frames([])).schema == pl.Schema(GAP_SCHEMA)
    assert find_gaps(frames([])).is_empty()


def test_new_seqs_beyond_max_open_a_gap_from_the_old_max() -> None:
    assert rows(fold([[("r", 0, 0), ("r", 0, 1)], [("r", 0, 5), ("r", 0, 6)]])) == [("r", 0, 2, 4, 3)]
    assert fold([[("r", 0, 0), ("r", 0, 1)], [("r", 0, 2)]]).is_empty()


def test_playback_fills_and_closes_the_gap() -> None:
    live = [("r", 0, s) for s in (0, 1, 2, 8, 9)]
    assert rows(fold([live, [("r", 0, 5)]])) == [("r", 0, 3, 4, 2), ("r", 0, 6, 7, 2)]
    assert rows(fold([live, [("r", 0, 3)]])) == [("r", 0, 4, 7, 4)]
    assert rows(fold([live, [("r", 0, 7)]])) == [("r", 0, 3, 6, 4)]
    playback = [("r", 0, s) for s in (3, 4, 5, 6, 7)]
    assert fold([live, playback]).is_empty()


def test_playback_below_the_first_seq_seen_opens_a_gap_below() -> None:
    assert rows(fold([[("r", 0, 5)], [("r", 0, 1)]])) == [("r", 0, 2, 4, 3)]


def test_untouched_racks_pass_through() -> None:
    gaps = fold([[("a", 0, 0), ("a", 0, 4), ("b", 0, 0)], [("b", 0, 1)]])
    assert rows(gaps) == [("a", 0, 1, 3, 3)]


def test_missing_columns_are_reported() -> None:
    with pytest.raises(FrameShapeError, match="frame_seq"):
        find_gaps(pl.DataFrame({"rack_id": ["r"], "boot_epoch": [0]}))


keys_strategy = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 1), st.integers(0, 40)),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(keys=keys_strategy, data=st.data())
def test_folding_any_batches_in_any_order_equals_find_gaps(keys: list[Key], data: st.DataObject) -> None:
    order = data.draw(st.permutations(keys))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(order)), max_size=6)))
    bounds = [0, *cuts, len(order)]
    batches = [list(order[lo:hi]) for lo, hi in itertools.pairwise(bounds)]
    assert rows(fold(batches)) == rows(find_gaps(frames(keys)))
