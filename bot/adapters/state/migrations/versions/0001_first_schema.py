"""The first schema: sync metadata, events seen, findings, the Slack outbox.

Revision ID: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.adapters.state.types import Doc, Id, RawJson, Str, UtcTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("meta", sa.Column("key", Str, primary_key=True), sa.Column("value", Str, nullable=False))
    op.create_table(
        "events",
        sa.Column("event_id", Str, primary_key=True),
        sa.Column("event_time", UtcTime, nullable=False),
        sa.Column("detection", Str, nullable=False),
        sa.Column("disposition", Str, nullable=False),
        sa.Column("finding_key", Str),
        sa.Column("workspace_id", Str),
        sa.Column("instance_id", Str),
        sa.Column("cluster_id", Str),
        sa.Column("stored_at", UtcTime, nullable=False),
    )
    op.create_index("events_time", "events", ["event_time"])
    op.create_table(
        "findings",
        sa.Column("key", Str, primary_key=True),
        sa.Column("grp", Str, nullable=False),
        sa.Column("detection", Doc, nullable=False),
        sa.Column("first_event", RawJson, nullable=False),
        sa.Column("first_seen", UtcTime, nullable=False),
        sa.Column("last_seen", UtcTime, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("hosts", Doc, nullable=False),
        sa.Column("context", Doc, nullable=False),
        sa.Column("cluster_id", Str),
        sa.Column("status", Str, nullable=False),
        sa.Column("status_by", Str),
        sa.Column("status_note", Str),
        sa.Column("suppressed_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("channel", Str),
        sa.Column("ts", Str),
    )
    op.create_index("findings_group", "findings", ["grp", "first_seen"])
    op.create_table(
        "outbox",
        sa.Column("id", Id, sa.Identity(always=True), primary_key=True),
        sa.Column("finding_key", Str, nullable=False),
        sa.Column("kind", Str, nullable=False),
        sa.Column("payload", RawJson, nullable=False),
        sa.Column("state", Str, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("not_before", sa.Float, nullable=False, server_default="0"),
        sa.Column("last_error", Str),
        sa.Column("created_at", UtcTime, nullable=False),
        sa.Column("sent_at", UtcTime),
        sqlite_autoincrement=True,
    )
    op.create_index("outbox_pending", "outbox", ["state", "id"])


def downgrade() -> None:
    for table in ("outbox", "findings", "events", "meta"):
        op.drop_table(table)
