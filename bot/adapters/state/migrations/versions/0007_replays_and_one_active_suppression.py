"""Slack-side hardening (#11): the replay ledger shared by restarts and replicas, and at most one
active suppression per (detection, scope, patterns).

* `replay_keys`: the digest of every correctly signed Slack request let through, until it
  expires; a replay (after a restart, or to another replica) finds its key and is not run again.
* `suppressions.active_key`: the digest of what a suppression hides (bot.core.suppressions
  .same_events_key) while it is active, NULL once removed or expired; a unique index on it makes
  two concurrent submissions of the same suppression one. Active suppressions made before this
  revision get their key here (the oldest keeps it when two already hide the same events).

Revision ID: 0007
"""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

from bot.adapters.state.types import Doc, Id, Str, UtcTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replay_keys",
        sa.Column("key", Str, primary_key=True),
        sa.Column("expires_at", UtcTime, nullable=False),
    )
    op.create_index("replay_keys_expires", "replay_keys", ["expires_at"])
    op.add_column("suppressions", sa.Column("active_key", Str))
    _key_active_suppressions()
    op.create_index("suppressions_active_key", "suppressions", ["active_key"], unique=True)


def _key_active_suppressions() -> None:
    from bot.core.suppressions import Scope, Suppression, same_events_key

    table = sa.table(
        "suppressions",
        sa.column("id", Id), sa.column("detection", Str), sa.column("scope", Doc), sa.column("match", Doc),
        sa.column("expires_at", UtcTime), sa.column("removed_at", UtcTime), sa.column("active_key", Str),
    )
    bind = op.get_bind()
    now = datetime.now(timezone.utc)
    rows = bind.execute(
        sa.select(table.c.id, table.c.detection, table.c.scope, table.c.match, table.c.expires_at)
        .where(table.c.removed_at.is_(None)).order_by(table.c.id)
    ).all()
    taken: set[str] = set()
    for row in rows:
        if row.expires_at is not None and row.expires_at <= now:
            continue
        draft = Suppression(id="", detection=row.detection, scope=Scope.from_json(row.scope or {}),
                            match={k: tuple(v) for k, v in (row.match or {}).items()}, reason="", created_by="")
        key = same_events_key(draft)
        if key in taken:
            continue
        taken.add(key)
        bind.execute(sa.update(table).where(table.c.id == row.id).values(active_key=key))


def downgrade() -> None:
    op.drop_index("suppressions_active_key", "suppressions")
    with op.batch_alter_table("suppressions") as batch:
        batch.drop_column("active_key")
    op.drop_index("replay_keys_expires", "replay_keys")
    op.drop_table("replay_keys")
