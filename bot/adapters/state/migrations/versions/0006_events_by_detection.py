"""Events by detection and time: each host's newest heartbeat (sensor silence) without a scan.

Revision ID: 0006
"""
from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("events_detection_time", "events", ["detection", "event_time"])


def downgrade() -> None:
    op.drop_index("events_detection_time", "events")
