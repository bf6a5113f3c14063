"""/esm recent [DURATION] [FILTERS] — Capsule8 events of the last hours, grouped, to the caller only."""
from __future__ import annotations

from bot.core.recent import RecentArgumentError
from bot.render.blocks import escape
from handlers.command_types import Answer, CommandContext, UsageError, Verb

USAGE = (
    '`/esm recent [24h] [cluster=…] [instance=…] [detection="…"] [category=…] [severity>=high] [workspace=…]`'
    " — events, grouped"
)


async def run(ctx: CommandContext) -> Answer:
    await ctx.require_event_reader("/esm recent")  # ESM_READERS set: readers and responders only (#11)
    service = ctx.runtime.recent
    if service is None:
        raise RuntimeError("the recent-events service is not configured")
    try:
        query = service.parse(ctx.args)
    except RecentArgumentError as exc:
        raise UsageError(escape(str(exc))) from None
    return await service.answer(query)


VERBS = [Verb("recent", USAGE, run)]
