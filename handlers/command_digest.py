"""/esm digest — the daily digest (yesterday's events, open findings, suppressions), to the caller only."""
from __future__ import annotations

from handlers.command_types import Answer, CommandContext, Verb


async def run(ctx: CommandContext) -> Answer:
    await ctx.require_event_reader("/esm digest")  # ESM_READERS set: readers and responders only (#11)
    service = ctx.runtime.digest_service()
    return await service.message_now()


VERBS = [Verb("digest", "`/esm digest` — yesterday's events, open findings and suppressions, to you only", run)]
