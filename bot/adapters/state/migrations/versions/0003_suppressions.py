"""Benign suppressions made in Slack (soft-removed), and match counts for every suppression,
Slack-made ("b<n>") or from rules/benign.yml (its slug).

Revision ID: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.adapters.state.types import Doc, Id, Str, UtcTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("id", Id, sa.Identity(always=True), primary_key=True),
        sa.Column("detection", Str, nullable=False),
        sa.Column("scope", Doc, nullable=False),
        sa.Column("match", Doc, nullable=False),
        sa.Column("reason", Str, nullable=False),
        sa.Column("created_by", Str, nullable=False),
        sa.Column("created_at", UtcTime, nullable=False),
        sa.Column("expires_at", UtcTime),
        sa.Column("finding_key", Str),
        sa.Column("removed_by", Str),
        sa.Column("removed_at", UtcTime),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "suppression_hits",
        sa.Column("suppression_id", Str, primary_key=True),
        sa.Column("matched", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_matched_at", UtcTime),
    )


def downgrade() -> None:
    op.drop_table("suppression_hits")
    op.drop_table("suppressions")
