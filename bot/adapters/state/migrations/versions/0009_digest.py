"""The daily digest (#16): one row per local day whose digest was claimed, so it is posted once
per day across restarts and replicas. A claim not marked posted within a few minutes (its replica
died) may be taken over.

Revision ID: 0009
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.adapters.state.types import Str, UtcTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digests",
        sa.Column("day", Str, primary_key=True),
        sa.Column("claimed_by", Str, nullable=False),
        sa.Column("claimed_at", UtcTime, nullable=False),
        sa.Column("posted_ts", Str),
    )


def downgrade() -> None:
    op.drop_table("digests")
