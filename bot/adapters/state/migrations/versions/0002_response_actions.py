"""Response actions: the audit trail, and the claims that make an action run once.

Revision ID: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.adapters.state.types import Id, Str, UtcTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "actions",
        sa.Column("id", Id, sa.Identity(always=True), primary_key=True),
        sa.Column("finding_key", Str, nullable=False),
        sa.Column("action", Str, nullable=False),
        sa.Column("user_id", Str, nullable=False),
        sa.Column("outcome", Str, nullable=False),
        sa.Column("message", Str, nullable=False),
        sa.Column("dry_run", sa.Boolean(create_constraint=False), nullable=False, server_default=sa.false()),
        sa.Column("at", UtcTime, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("actions_finding", "actions", ["finding_key", "id"])
    op.create_table(
        "action_claims",
        sa.Column("finding_key", Str, primary_key=True),
        sa.Column("action", Str, primary_key=True),
        sa.Column("user_id", Str, nullable=False),
        sa.Column("at", UtcTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("action_claims")
    op.drop_table("actions")
