"""The alerting tables' DDL as migrations 3 and 7 of ``storage.schema`` ran it: frozen text, never edited.

``storage`` owns every table of the history and imports nothing from ``alerting``. The tables' current
shapes (what ``alerting`` reads and writes, and its polars schemas) are declared once, in
``storage.tables`` (``ALERT_STATE``, ``ALERT_OUTBOX``, ``ALERT_AUDIT``); a migration keeps the text it ran,
so a later change to a declaration cannot change what an old migration creates (``storage.table``), and
``tests/test_table_declarations.py`` checks that the migrated tables equal the declarations.
"""

from __future__ import annotations

STATE_DDL = """CREATE TABLE alert_state (
    fingerprint VARCHAR PRIMARY KEY,
    rule VARCHAR NOT NULL,
    status VARCHAR NOT NULL CHECK (status IN ('pending', 'firing')),
    severity VARCHAR NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    labels VARCHAR NOT NULL,
    "group" VARCHAR NOT NULL,
    summary VARCHAR NOT NULL,
    annotations VARCHAR NOT NULL,
    value DOUBLE,
    started_at TIMESTAMPTZ NOT NULL,
    fired_at TIMESTAMPTZ,
    last_held_at TIMESTAMPTZ NOT NULL,
    last_info_at TIMESTAMPTZ,
    last_warning_at TIMESTAMPTZ,
    last_critical_at TIMESTAMPTZ,
    event_at TIMESTAMPTZ,
    learned_at TIMESTAMPTZ,
    playback BOOLEAN,
    notified BOOLEAN NOT NULL,
    acked_until TIMESTAMPTZ,
    shelved_until TIMESTAMPTZ
)"""
"""Migration 3's ``alert_state`` (columns: ``storage.tables.ALERT_STATE``)."""


OUTBOX_DDL: tuple[str, ...] = (
    "CREATE SEQUENCE alert_outbox_id START 1",
    """CREATE TABLE alert_outbox (
                id BIGINT NOT NULL DEFAULT nextval('alert_outbox_id'),
                hook VARCHAR NOT NULL,
                group_key VARCHAR NOT NULL,
                status VARCHAR NOT NULL CHECK (status IN ('firing', 'resolved')),
                fingerprints VARCHAR[] NOT NULL,
                body BLOB NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                state VARCHAR NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
                attempts INTEGER NOT NULL CHECK (attempts >= 0),
                next_attempt_at TIMESTAMPTZ,
                delivered_at TIMESTAMPTZ,
                last_error VARCHAR,
                PRIMARY KEY (id))""",
)
"""Migration 3's ``alert_outbox`` and its id sequence (columns: ``storage.tables.ALERT_OUTBOX``). No secondary
index on purpose: an indexed column is updated as a delete plus an insert, and the worker updates ``state``
often; the pending rows are found by a scan."""

AUDIT_DDL = """CREATE TABLE alert_audit (
    requested_at TIMESTAMPTZ NOT NULL,
    requested_by VARCHAR NOT NULL,
    via VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    until TIMESTAMPTZ,
    outcome VARCHAR NOT NULL CHECK (outcome IN ('applied', 'rejected')),
    fingerprints VARCHAR[] NOT NULL,
    reason VARCHAR,
    applied_at TIMESTAMPTZ NOT NULL)"""
"""Migration 7's ``alert_audit`` (columns: ``storage.tables.ALERT_AUDIT``)."""
