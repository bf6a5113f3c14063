"""Mark benign: open a form for a scoped, expiring suppression with a preview of what it hides.

The click only opens the modal; its submission (handlers/benign_modal.py) creates the
suppression and closes the finding as benign through the Dispatcher, so it is recorded and
reported like every other action.

Slack's trigger_id dies 3 s after the click, and counting the preview reads the audit source,
which can take longer. So the modal opens at once, its preview "computing…", while the count
runs; when the count arrives the modal is updated (views.update needs no trigger_id). If the
user changed the form meanwhile, that change re-counts and this late update is dropped.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.core.actions import UNTIL_CLOSED, ActionContext, ActionSpec, Outcome, OutcomeStatus
from bot.core.benign_modal import FormState, default_state, preview_draft
from bot.core.findings import Finding, FindingStatus
from bot.core.ids import ActionId
from bot.render.benign_modal import PREVIEW_COMPUTING, PREVIEW_PENDING, build_view
from bot.render.blocks import actor

log = logging.getLogger(__name__)

# How long a preview may count before the modal says it could not: the modal is open by then,
# so this is the user's patience, not Slack's 3 s.
PREVIEW_TIMEOUT = 10.0


async def preview_text(service: Any, finding: Finding, state: FormState, timeout: float = PREVIEW_TIMEOUT) -> str:
    """"Would match N events of the last 7 days", or why there is no number."""
    draft, problem = preview_draft(finding, state)
    if draft is None:
        return problem or PREVIEW_PENDING
    if service is None:
        return "No preview: the benign service is not configured."
    try:
        preview = await asyncio.wait_for(service.preview(draft), timeout)
    except asyncio.TimeoutError:
        return PREVIEW_PENDING
    except Exception as exc:  # the source failed: the form still opens, and says so
        log.warning("benign preview failed: %s", exc)
        return f"No preview: the audit source failed ({type(exc).__name__})."
    return preview.text()


class MarkBenign:
    spec = ActionSpec(
        id=ActionId.MARK_BENIGN, label="Mark benign", order=20, offered_while=UNTIL_CLOSED, responders_only=True
    )

    async def preflight(self, ctx: ActionContext) -> Outcome | None:
        finding = ctx.finding
        if finding.status == FindingStatus.BENIGN:
            return Outcome(OutcomeStatus.ALREADY, f"already marked benign by {actor(finding.status_by)}", private=True)
        return None

    async def run(self, ctx: ActionContext) -> Outcome:
        state = default_state(ctx.finding)
        counting = asyncio.create_task(preview_text(ctx.extras.get("benign"), ctx.finding, state))
        try:
            modal = await ctx.interaction.open_modal(build_view(ctx.finding, state, PREVIEW_COMPUTING))
        except BaseException:
            counting.cancel()
            raise
        await modal.update(build_view(ctx.finding, state, await counting))
        return Outcome(OutcomeStatus.DONE, "Opened the benign form", private=True)


ACTION = MarkBenign()
