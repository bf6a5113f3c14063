"""Recent on this host: the last 24 hours of Capsule8 events on the finding's instance, grouped,
answered to the clicker only. Read-only, so anyone in the channel may use it, unless ESM_READERS
is set: then, as /esm recent, only readers and responders."""
from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.core.actions import ALWAYS, ActionContext, ActionSpec, Needs, Outcome, OutcomeStatus
from bot.core.ids import ActionId
from bot.core.ports import SourceError
from bot.render.blocks import escape

WINDOW = timedelta(hours=24)
TIMEOUT_SECONDS = 60.0


class RecentOnHost:
    spec = ActionSpec(
        id=ActionId.RECENT_ON_HOST,
        label="Recent on this host",
        order=40,
        needs=frozenset({Needs.INSTANCE}),
        offered_while=ALWAYS,
        responders_only=False,
        readers_only=True,
    )

    async def preflight(self, ctx: ActionContext) -> Outcome | None:
        if not ctx.value.instance_id:
            return Outcome.refused("This finding names no host to look up.")
        if ctx.extras.get("recent") is None:
            return Outcome(OutcomeStatus.FAILED, "Recent events are not available in this deployment.", private=True)
        return None

    async def run(self, ctx: ActionContext) -> Outcome:
        service = ctx.extras["recent"]
        try:
            text, blocks = await asyncio.wait_for(service.on_host(ctx.value.instance_id, WINDOW), TIMEOUT_SECONDS)
        except SourceError as exc:
            return _failed(f"the audit source failed: {str(exc)[:500]}")
        except asyncio.TimeoutError:
            return _failed(f"the audit source did not answer within {TIMEOUT_SECONDS:.0f}s; try again")
        return Outcome(OutcomeStatus.DONE, text, private=True, blocks=tuple(blocks))


def _failed(why: str) -> Outcome:
    return Outcome(OutcomeStatus.FAILED, escape(f"Recent on this host failed: {why}"), private=True)


ACTION = RecentOnHost()
