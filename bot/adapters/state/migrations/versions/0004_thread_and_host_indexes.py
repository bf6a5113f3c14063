"""A thread's pending items found by finding (thread order, coalescing), and events by host.

Revision ID: 0004
"""
from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("outbox_thread", "outbox", ["finding_key", "state", "id"])
    op.create_index("events_instance", "events", ["instance_id"])


def downgrade() -> None:
    op.drop_index("events_instance", "events")
    op.drop_index("outbox_thread", "outbox")
