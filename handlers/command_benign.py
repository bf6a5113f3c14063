"""/esm benign list | remove <id>: the active benign suppressions, and taking one away."""
from __future__ import annotations

import logging
from typing import Any

from bot.core.suppressions import describe
from bot.render.blocks import clip, escape
from handlers.command_types import Answer, CommandContext, UsageError, Verb

log = logging.getLogger(__name__)

MAX_LISTED = 40  # one section each, under Slack's 50 blocks


def _service(ctx: CommandContext) -> Any:
    service = (ctx.runtime.dispatcher.extras or {}).get("benign")
    if service is None:
        raise RuntimeError("benign suppressions are not configured in this runtime")
    return service


async def run(ctx: CommandContext) -> Answer:
    sub = ctx.args[0].lower() if ctx.args else "list"
    if sub == "list" and len(ctx.args) <= 1:
        return await _list(ctx)
    if sub == "remove":
        if len(ctx.args) != 2:
            raise UsageError("`/esm benign remove` takes exactly one suppression id")
        return await _remove(ctx, ctx.args[1])
    raise UsageError(f"unknown `/esm benign` sub-command `{clip(escape(sub), 40)}`")


async def _list(ctx: CommandContext) -> Answer:
    await ctx.require_suppression_reader("/esm benign list")  # the patterns say how to hide a command (#11)
    listed = await _service(ctx).listing()
    if not listed:
        return "No active benign suppressions.", None
    lines = [f"• {clip(escape(describe(s, count)), 2900)}" for s, count in listed[:MAX_LISTED]]
    more = len(listed) - MAX_LISTED
    header = f"*Active benign suppressions* ({len(listed)})"
    text = "\n".join([header, *lines] + ([f"… and {more} more"] if more > 0 else []))
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": header}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": line}} for line in lines]
    if more > 0:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"… and {more} more"}]})
    return clip(text, 3000), blocks


async def _remove(ctx: CommandContext, suppression_id: str) -> Answer:
    try:
        await ctx.require_responder()
    except PermissionError as exc:  # recorded on the suppression's finding, answered as "Refused: …"
        await _service(ctx).refused(suppression_id, ctx.user_id, str(exc))
        raise
    answer = await _service(ctx).remove(suppression_id, ctx.user_id)
    log.info("/esm benign remove %s by %s: %s", suppression_id[:80], ctx.user_id, answer)
    return answer, None


VERBS = [Verb("benign", "`/esm benign list` · `/esm benign remove <id>` — benign suppressions", run)]
