"""Acknowledge: a responder has seen the finding and owns it now."""
from __future__ import annotations

from bot.core.actions import ActionContext, ActionSpec, Outcome, OutcomeStatus
from bot.core.findings import FindingStatus
from bot.core.ids import ActionId


class Acknowledge:
    spec = ActionSpec(id=ActionId.ACKNOWLEDGE, label="Acknowledge", order=10, style="primary")

    async def preflight(self, ctx: ActionContext) -> Outcome | None:
        finding = ctx.finding
        if finding.status == FindingStatus.ACKNOWLEDGED:
            return Outcome(OutcomeStatus.ALREADY, f"already acknowledged by <@{finding.status_by}>", private=True)
        return None

    async def run(self, ctx: ActionContext) -> Outcome:
        return Outcome(OutcomeStatus.DONE, f"<@{ctx.user_id}> acknowledged this finding",
                       finding_status=FindingStatus.ACKNOWLEDGED)


ACTION = Acknowledge()
