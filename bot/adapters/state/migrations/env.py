"""Alembic's entry point: migrations run on the connection the state store hands over
(bot.adapters.state.migrate), inside its transaction; there is no separate configuration file."""
from __future__ import annotations

from alembic import context

from bot.adapters.state.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
