"""The responder's playbook (#12): what an action changed, so it can be undone exactly, and the
audit record's before and after.

* `action_state`: per finding and action, the state an action replaced (a cluster's ACL, a
  user's `active` flag, a paged incident) and the state it left, while it still applies; the
  undo reads it, restores `before` exactly and deletes the row.
* `actions.before` / `actions.after`: the audit record says what was there and what was left.
* `findings.marks`: the containment lines on the parent message ("Quarantined by … at …"),
  which do not close the finding; a sync never overwrites them.

Revision ID: 0009
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.adapters.state.types import Doc, Str, UtcTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "action_state",
        sa.Column("finding_key", Str, primary_key=True),
        sa.Column("action", Str, primary_key=True),
        sa.Column("target", Str, nullable=False),
        sa.Column("before", Doc),
        sa.Column("after", Doc),
        sa.Column("user_id", Str, nullable=False),
        sa.Column("at", UtcTime, nullable=False),
    )
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("before", Doc))
        batch.add_column(sa.Column("after", Doc))
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("marks", Doc))


def downgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("marks")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("after")
        batch.drop_column("before")
    op.drop_table("action_state")
