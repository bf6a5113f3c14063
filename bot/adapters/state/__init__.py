"""The bot's own state (bot.core.ports), on SQLite or PostgreSQL: one implementation."""
from bot.adapters.state.store import DEFAULT_LEASE, StateStore, is_postgres_url
from bot.adapters.state.urls import StateStoreError, redact_url

__all__ = ["DEFAULT_LEASE", "StateStore", "StateStoreError", "is_postgres_url", "redact_url"]
