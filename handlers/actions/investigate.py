"""Investigate (#12): one reply in the finding's thread with the timeline of its instance and
cluster from 2 hours before the event to 30 minutes after (Capsule8 events, notebook commands,
cluster events, job runs, the user's logins and token creations), plus the whole timeline as a
CSV file and a small chart. Read-only: anyone who can read findings may run it."""
from __future__ import annotations

import asyncio

from bot.core.actions import ALWAYS, ActionContext, ActionSpec, Outcome, OutcomeStatus
from bot.core.ids import ActionId
from bot.core.playbook import playbook_of
from bot.core.ports import ChatError
from handlers.actions._common import cluster_of, private, text

TIMEOUT_SECONDS = 120.0


class Investigate:
    spec = ActionSpec(
        id=ActionId.INVESTIGATE, label="Investigate", order=45, offered_while=ALWAYS, responders_only=False,
        readers_only=True,
    )

    async def preflight(self, ctx: ActionContext) -> Outcome | None:
        if playbook_of(ctx.extras).investigate is None:
            return private(OutcomeStatus.FAILED, "Investigate is not available in this deployment.")
        return None

    async def run(self, ctx: ActionContext) -> Outcome:
        service = playbook_of(ctx.extras).investigate
        try:
            done = await asyncio.wait_for(service.investigate(ctx.finding, cluster_of(ctx.finding), ctx.user_id),
                                          TIMEOUT_SECONDS)
        except ChatError as err:
            return private(OutcomeStatus.FAILED, f"Investigate failed: Slack: {text(str(err), 300)}")
        except asyncio.TimeoutError:
            return private(OutcomeStatus.FAILED, f"Investigate did not finish within {TIMEOUT_SECONDS:.0f}s; try again.")
        missing = f" Not included: {text('; '.join(done.problems), 400)}." if done.problems else ""
        return private(OutcomeStatus.DONE, f"Posted the timeline in the thread: {done.entries} entries, with"
                                           f" {len(done.files)} attached file(s).{missing}")


ACTION = Investigate()
