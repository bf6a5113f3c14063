"""Open the state store under test, SQLite or PostgreSQL, and reopen it as a restart would."""
from __future__ import annotations

from typing import Any

import pytest

from bot.adapters.state import StateStore

KINDS = ["sqlite", "postgres"]


async def open_store(kind: str, request: pytest.FixtureRequest, path: str, **options: Any) -> StateStore:
    target = path if kind == "sqlite" else request.getfixturevalue("pg_url")
    return await StateStore.open(target, **options)


async def reopen_store(store: StateStore) -> StateStore:
    """Close and open again on the same file or database (a restart)."""
    await store.close()
    return await StateStore.open(store.target)
