"""The /esm slash command: acknowledged at once, answered through response_url.

Each verb is one function of a `CommandContext` returning (text, blocks); verbs live in their
own modules (handlers/command_*.py), each listing its verbs in VERBS, built from the types in
handlers/command_types.py. Slow verbs (queries) are bounded by a timeout, and every failure
becomes a clear answer to the caller rather than silence.
"""
from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp

from bot.render.blocks import escape
from bot.services.status import status_text
from handlers import command_benign, command_digest, command_recent
from handlers.command_types import Answer, CommandContext, UsageError, Verb

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 60.0


async def _help(ctx: CommandContext) -> Answer:
    return help_text(), None


async def _status(ctx: CommandContext) -> Answer:
    await ctx.require_event_reader("/esm status")  # ESM_READERS set: readers and responders only (#11)
    runtime = ctx.runtime
    return await status_text(runtime.store, runtime.pipeline, runtime.health), None


def _verbs() -> dict[str, Verb]:
    verbs = [
        Verb("help", "`/esm help` — this text", _help),
        Verb("status", "`/esm status` — last sync, watermark, counts, outbox depth", _status),
        *command_recent.VERBS,
        *command_benign.VERBS,
        *command_digest.VERBS,
    ]
    return {verb.name: verb for verb in verbs}


def help_text() -> str:
    lines = ["*esm-bot* — Databricks Enhanced Security Monitoring findings"]
    lines += [f"• {verb.usage}" for verb in _verbs().values()]
    return "\n".join(lines)


def split_words(text: str) -> list[str]:
    try:
        return shlex.split(text or "")
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"cannot read the command: {exc}") from None


def register(app: AsyncApp, runtime_of: Callable[[], "Runtime"]) -> None:
    verbs = _verbs()

    @app.command("/esm")
    async def esm(ack, command: dict[str, Any], respond) -> None:
        try:
            words = split_words(command.get("text") or "")
        except UsageError as exc:
            await ack(response_type="ephemeral", text=f"{exc}\n{help_text()}")
            return
        name = words[0].lower() if words else "help"
        verb = verbs.get(name)
        if verb is None:
            await ack(response_type="ephemeral", text=f"Unknown command `{escape(name[:40])}`.\n{help_text()}")
            return
        await ack()  # within Slack's 3 s even when the warehouse is slow; the answer follows
        ctx = CommandContext(str(command.get("user_id") or ""), str(command.get("channel_id") or ""), words[1:], runtime_of())
        text, blocks = await answer(verb, ctx)
        await respond(response_type="ephemeral", text=text, blocks=blocks)


async def answer(verb: Verb, ctx: CommandContext) -> Answer:
    try:
        return await asyncio.wait_for(verb.run(ctx), COMMAND_TIMEOUT)
    except UsageError as exc:
        return f"{exc}\nUsage: {verb.usage}", None
    except PermissionError as exc:
        return str(exc), None
    except asyncio.TimeoutError:
        return f"`/esm {verb.name}` gave up after {COMMAND_TIMEOUT:.0f}s: the audit source is slow or unreachable. Try again.", None
    except Exception as exc:  # the source or store failed: say so rather than stay silent
        log.error("/esm %s failed: %s", verb.name, exc)
        return f"`/esm {verb.name}` failed: {escape(str(exc)[:500])}", None

