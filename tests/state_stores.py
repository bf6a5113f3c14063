"""Open the state store under test, SQLite or PostgreSQL, and reopen it as a restart would."""
from __future__ import annotations

from typing import Any

import pytest

from bot.adapters.store_sqlite import SQLiteStore

KINDS = ["sqlite", "postgres"]


async def open_store(kind: str, request: pytest.FixtureRequest, path: str, **options: Any) -> Any:
    if kind == "sqlite":
        return SQLiteStore(path)
    from bot.adapters.store_postgres import PostgresStore

    return await PostgresStore.connect(request.getfixturevalue("pg_url"), **options)


async def reopen_store(store: Any) -> Any:
    """Close and open again on the same file or database (a restart)."""
    await store.close()
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path)
    from bot.adapters.store_postgres import PostgresStore

    return await PostgresStore.connect(store.url)
