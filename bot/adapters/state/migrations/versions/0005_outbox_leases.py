"""The replicas' leases on outbox threads: which replica sends a thread's items, until when.
Used on PostgreSQL (SQLite has one process); a PostgreSQL store from before the migrations were
shared has the table already.

Revision ID: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.adapters.state.types import Str, UtcTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_leases",
        sa.Column("finding_key", Str, primary_key=True),
        sa.Column("replica", Str, nullable=False),
        sa.Column("lease_until", UtcTime, nullable=False),
        if_not_exists=True,
    )
    op.create_index("outbox_leases_replica", "outbox_leases", ["replica"], if_not_exists=True)


def downgrade() -> None:
    op.drop_table("outbox_leases")
