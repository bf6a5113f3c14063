"""Schema migrations, written once for both databases (Alembic, in ./migrations), run at start-up.

A state file or database made before the migrations were shared has no `alembic_version` table:
SQLite kept its version in `PRAGMA user_version`, PostgreSQL in a `schema_version` table, both
numbered as the revisions here are. Such a store is stamped with its version and upgraded in
place; nothing is copied. On PostgreSQL the whole upgrade runs under an advisory lock, so
replicas starting together migrate once.
"""
from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LOCK_MIGRATE = 0x45534D01  # the advisory lock class of migrations (PostgreSQL)


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head() or ""


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def legacy_version(connection: Connection) -> int:
    """The schema version a store from before the shared migrations records (0: none)."""
    if connection.dialect.name == "sqlite":
        return int(connection.exec_driver_sql("PRAGMA user_version").scalar() or 0)
    if inspect(connection).has_table("schema_version"):
        return int(connection.execute(text("SELECT coalesce(max(version), 0) FROM schema_version")).scalar() or 0)
    return 0


def upgrade(connection: Connection, lock_key: int = 0) -> tuple[str | None, str]:
    """Bring the schema to the newest revision in the caller's transaction; returns (before, after)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": LOCK_MIGRATE, "b": lock_key})
    config = _config(connection)
    before = current(connection)
    if before is None:
        legacy = legacy_version(connection)
        if legacy:
            stamp = f"{legacy:04d}"
            command.stamp(config, stamp)
            log.info("state store from an earlier release (schema version %s): upgrading it in place", legacy)
            before = stamp
    known = {rev.revision for rev in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}
    if before is not None and before not in known:
        raise RuntimeError(
            f"the state store's schema ({before}) is newer than this esm-bot knows ({head()}): upgrade esm-bot"
        )
    command.upgrade(config, "head")
    after = current(connection) or ""
    if after != before:
        log.info("state store schema migrated from %s to %s", before or "nothing", after)
    return before, after
