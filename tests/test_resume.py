"""Where a partition resumes on assignment (``ingest.resume``): DuckDB's offsets first, also when behind."""

from __future__ import annotations

import pytest

from ingest.resume import Claim, Resume, resume_position


@pytest.mark.parametrize("grouped", [True, False])
def test_a_history_at_or_ahead_of_kafka_resumes_at_its_own_offset(grouped: bool) -> None:
    assert resume_position(0, 120, 100, grouped=grouped) == Resume(0, 120, "stored")
    assert resume_position(0, 120, 120, grouped=grouped) == Resume(0, 120, "stored")
    assert resume_position(0, 120, None, grouped=grouped) == Resume(0, 120, "stored")


@pytest.mark.parametrize("grouped", [True, False])
def test_a_history_behind_kafka_rereads_what_it_lost(grouped: bool) -> None:
    # A restored backup or a lost WAL: Kafka was committed past what DuckDB holds now.
    assert resume_position(3, 100, 12_142, grouped=grouped) == Resume(3, 100, "reread", 12_042)


def test_a_partition_handed_over_in_a_rebalance_resumes_where_the_group_got() -> None:
    assert resume_position(1, 100, 250, handed_over=100) == Resume(1, 250, "committed")


def test_a_handover_older_than_the_stored_offset_does_not_hide_a_loss() -> None:
    # Handed over at 80, taken back and stored to 100, then 100..250 lost: re-read them.
    assert resume_position(1, 100, 250, handed_over=80) == Resume(1, 100, "reread", 150)


def test_without_a_stored_offset_a_group_member_resumes_at_the_groups_offset() -> None:
    assert resume_position(2, None, 500, grouped=True) == Resume(2, 500, "committed")


def test_without_a_stored_offset_a_static_shard_rereads_from_auto_offset_reset() -> None:
    # Nobody else reads a static shard's partitions: a committed offset without stored rows is a loss.
    assert resume_position(2, None, 500, grouped=False) == Resume(2, None, "reread")


@pytest.mark.parametrize("grouped", [True, False])
def test_a_new_history_without_any_offset_reads_from_auto_offset_reset(grouped: bool) -> None:
    assert resume_position(0, None, None, grouped=grouped) == Resume(0, None, "reset")


@pytest.mark.parametrize("grouped", [True, False])
def test_a_claimed_partition_that_lost_every_batch_rereads_from_where_it_was_claimed(grouped: bool) -> None:
    # Claimed at the group's offset 40, batches stored up to 300, all of them lost (a backup taken before
    # the first batch, a WAL cut before it): the group's 300 is not this history's.
    assert resume_position(2, None, 300, grouped=grouped, claim=Claim(40)) == Resume(2, 40, "reread", 260)


@pytest.mark.parametrize("grouped", [True, False])
def test_a_partition_claimed_from_auto_offset_reset_rereads_from_it(grouped: bool) -> None:
    assert resume_position(2, None, 300, grouped=grouped, claim=Claim(None)) == Resume(2, None, "reread")
    assert resume_position(2, None, None, grouped=grouped, claim=Claim(None)) == Resume(2, None, "reset")


def test_a_claim_never_outranks_stored_offsets() -> None:
    assert resume_position(2, 500, 300, claim=Claim(40)) == Resume(2, 500, "stored")
    assert resume_position(2, None, 40, claim=Claim(40)) == Resume(2, 40, "stored")
