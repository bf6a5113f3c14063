"""Column types that mean the same on SQLite and PostgreSQL, so the schema is written once.

* `UtcTime`: an instant. PostgreSQL `timestamptz`; SQLite ISO-8601 text in UTC (the form every
  earlier release wrote, which sorts as time does). Always read back as an aware UTC datetime.
* `Doc` / `RawJson`: JSON documents. PostgreSQL `jsonb` for the bot's own documents and `json` for
  raw audit rows (kept verbatim, key order included); SQLite JSON text for both.
* `Str`: text. PostgreSQL text cannot hold NUL characters, which SQLite can: on PostgreSQL they
  are stored as U+FFFD, on every write and every lookup alike (`nul_safe`).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from bot.core.events import parse_time


def nul_safe(value: Any, dialect_name: str) -> Any:
    """The form a text value takes in the database (PostgreSQL: NUL as U+FFFD)."""
    if dialect_name == "postgresql" and isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    return value


class Str(TypeDecorator[str]):
    impl = Text
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name != "postgresql":
            return None  # SQLite keeps text as it is: no per-value call at all (a storm binds millions)
        return super().bind_processor(dialect)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return nul_safe(value, dialect.name)


class UtcTime(TypeDecorator[datetime]):
    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TIMESTAMP(timezone=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"an instant with a time zone is required, not {value!r}")
        value = value.astimezone(timezone.utc)
        return value if dialect.name == "postgresql" else value.isoformat()

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return parse_time(value)
        return value.astimezone(timezone.utc)


Doc = JSON().with_variant(JSONB(), "postgresql")
RawJson = JSON()
Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite: INTEGER PRIMARY KEY is the rowid
