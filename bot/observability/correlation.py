"""A correlation id that follows one trigger (a webhook, a poll, a CLI sync) through the sync it
starts to the Slack posts that sync queues.

It lives in a contextvar: asyncio tasks copy the context they are created in, so the sync task a
webhook starts carries the webhook's id without any parameter passing. Outbox items record the id
in their payload (the outbox worker is one long-lived task, so it sets the id per item it sends).
Every log record gets it as `record.correlation_id` (see bot/observability/logs.py).
"""
from __future__ import annotations

import contextvars
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

_CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("esm_correlation_id", default=None)
_SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def new_id(prefix: str = "") -> str:
    return f"{prefix}{secrets.token_hex(6)}"


def current() -> str | None:
    return _CURRENT.get()


def set_id(value: str | None) -> contextvars.Token[str | None]:
    return _CURRENT.set(value)


def reset(token: contextvars.Token[str | None]) -> None:
    _CURRENT.reset(token)


def from_header(value: str | None, prefix: str = "wh-") -> str:
    """A caller's X-Request-Id when it is a short plain token (never echo arbitrary text into
    logs), otherwise a fresh id."""
    if value and _SAFE.match(value):
        return value
    return new_id(prefix)


@contextmanager
def bound(value: str | None) -> Iterator[None]:
    token = _CURRENT.set(value)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class CorrelationFilter(logging.Filter):
    """Adds `correlation_id` (or "-") to every record passing through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "correlation_id", None):
            record.correlation_id = _CURRENT.get() or "-"
        return True
