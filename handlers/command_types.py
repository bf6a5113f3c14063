"""What a `/esm` verb is made of: its context, its answer, and the error for wrong words.

The command (handlers/commands.py) imports the verb modules (handlers/command_*.py); they take
these types from here, so no verb module imports the command back.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

Answer = tuple[str, list[dict[str, Any]] | None]


class UsageError(ValueError):
    """The command's words are wrong; the message names the wrong token."""


@dataclass
class CommandContext:
    user_id: str
    channel_id: str
    args: list[str]
    runtime: "Runtime"

    async def require_responder(self) -> None:
        allowed, why = await self.runtime.dispatcher.authorizer.allows(self.user_id)
        if not allowed:
            raise PermissionError(f"Refused: {why}.")

    async def require_suppression_reader(self, what: str) -> None:
        """Benign suppressions say what to add to a command to hide it: responders and readers only."""
        access = self.runtime.dispatcher.read_access
        allowed, why = await access.suppressions(self.user_id) if access is not None else (False, "not configured")
        self._refuse_unless(allowed, why, what)

    async def require_event_reader(self, what: str) -> None:
        """The audit data: anyone while ESM_READERS is unset, readers and responders once it is set."""
        access = self.runtime.dispatcher.read_access
        allowed, why = await access.events(self.user_id) if access is not None else (False, "not configured")
        self._refuse_unless(allowed, why, what)

    def _refuse_unless(self, allowed: bool, why: str, what: str) -> None:
        if not allowed:
            log.warning("refused %s to %r: %s", what, self.user_id[:40], why)
            raise PermissionError(f"Refused: {why}.")


@dataclass(frozen=True)
class Verb:
    name: str
    usage: str  # one line, shown in /esm help
    run: Callable[[CommandContext], Awaitable[Answer]]
