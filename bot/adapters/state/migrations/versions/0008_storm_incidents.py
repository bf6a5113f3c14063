"""Storm incidents and an outbox that scales (#14).

* `incidents`: one row per storm incident (channel, detection, when it opened, its Slack message,
  how many members its thread lists); `incident_members`: the findings rolled up into each, in
  the order they joined (a member is never posted on its own).
* `outbox.priority`: parent posts 10 + severity, thread items 0, written with the item, so the
  next-due query reads the `outbox_due` index in order instead of joining findings and sorting
  every pending row; `outbox_held` finds the threads waiting for a retry without a correlated
  subquery. Pending parent posts queued before this revision get priority 10.

Revision ID: 0008
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.adapters.state.types import Doc, Id, Str, UtcTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("key", Str, primary_key=True),
        sa.Column("channel", Str, nullable=False),
        sa.Column("detection", Doc, nullable=False),
        sa.Column("opened_at", UtcTime, nullable=False),
        sa.Column("last_joined_at", UtcTime, nullable=False),
        sa.Column("closed_at", UtcTime),
        sa.Column("ts", Str),
        sa.Column("listed", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("incidents_open", "incidents", ["channel", "closed_at"])
    op.create_table(
        "incident_members",
        sa.Column("id", Id, sa.Identity(always=True), primary_key=True),
        sa.Column("incident_key", Str, nullable=False),
        sa.Column("finding_key", Str, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("incident_members_finding", "incident_members", ["finding_key"], unique=True)
    op.create_index("incident_members_incident", "incident_members", ["incident_key", "id"])
    op.add_column("outbox", sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
    outbox = sa.table("outbox", sa.column("kind", Str), sa.column("state", Str), sa.column("priority", sa.Integer))
    op.execute(sa.update(outbox).where(outbox.c.kind == "post", outbox.c.state == "pending").values(priority=10))
    op.create_index("outbox_due", "outbox", ["state", sa.text("priority DESC"), "id"])
    op.create_index("outbox_held", "outbox", ["state", "not_before"])


def downgrade() -> None:
    op.drop_index("outbox_held", "outbox")
    op.drop_index("outbox_due", "outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("priority")
    op.drop_index("incident_members_incident", "incident_members")
    op.drop_index("incident_members_finding", "incident_members")
    op.drop_table("incident_members")
    op.drop_index("incidents_open", "incidents")
    op.drop_table("incidents")
