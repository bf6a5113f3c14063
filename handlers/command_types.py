"""What a `/esm` verb is made of: its context, its answer, and the error for wrong words.

The command (handlers/commands.py) imports the verb modules (handlers/command_*.py); they take
these types from here, so no verb module imports the command back.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.runtime import Runtime

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


@dataclass(frozen=True)
class Verb:
    name: str
    usage: str  # one line, shown in /esm help
    run: Callable[[CommandContext], Awaitable[Answer]]
