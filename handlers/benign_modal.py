"""The Mark benign modal's traffic: its submission, and the in-modal changes that re-count the
preview. The button that opens it is handlers/actions/mark_benign.py."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.actions import Outcome, OutcomeStatus
from bot.core.benign_modal import B_REASON, default_state, draft_for
from bot.core.findings import FindingStatus
from bot.core.ids import ActionId, ButtonValue
from bot.core.suppressions import Suppression, SuppressionExists
from bot.render.benign_modal import CALLBACK_ID, MODAL_ACTIONS, PREVIEW_COMPUTING, build_view, read_state
from bot.render.blocks import actor, inert
from handlers.actions.mark_benign import preview_text
from handlers.interactions import BoltModal
from bot.services.dispatch import Dispatcher

log = logging.getLogger(__name__)

MODAL_ACTION_PATTERN = re.compile("^(" + "|".join(re.escape(a) for a in MODAL_ACTIONS) + ")$")


@dataclass
class ModalInteraction:
    """The Interaction port for a modal: there is no response_url, so private answers go as an
    ephemeral message in the finding's channel when it is known."""

    user_id: str
    client: AsyncWebClient
    channel: str | None = None

    async def reply_private(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        if self.channel:
            await self.client.chat_postEphemeral(channel=self.channel, user=self.user_id, text=text, blocks=blocks)

    async def open_modal(self, view: dict[str, Any]) -> NoReturn:
        raise RuntimeError("a modal submission cannot open another modal here")


def _user(body: dict[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or "")


def register(app: AsyncApp, dispatcher: Dispatcher) -> None:
    @app.view(CALLBACK_ID)
    async def on_submit(ack, body: dict[str, Any], view: dict[str, Any], client) -> None:
        await submit(dispatcher, ack, _user(body), view, client)

    @app.action(MODAL_ACTION_PATTERN)
    async def on_modal_change(ack, body: dict[str, Any], client) -> None:
        await ack()
        await refresh(dispatcher, _user(body), body.get("view") or {}, client)


async def submit(dispatcher: Dispatcher, ack: Any, user_id: str, view: dict[str, Any], client: AsyncWebClient) -> None:
    """Authorise (again: the form may be forged or the user removed since), validate, create
    the suppression, close the finding as benign; field errors keep the modal open."""
    action = dispatcher.actions[ActionId.MARK_BENIGN]
    key = str(view.get("private_metadata") or "")
    message = await dispatcher.store.message_of(key)
    interaction = ModalInteraction(user_id, client, message[0] if message else None)
    # the same chain as the click: the finding, still open to this action, the user authorised
    ctx, refusal = await dispatcher.gate(action, ButtonValue(key, None, None), interaction)
    if ctx is None or refusal is not None:
        text = refusal.message if refusal is not None else "This finding is no longer known to esm-bot."
        await ack(response_action="errors", errors={B_REASON: inert(text)})
        return
    finding = ctx.finding
    state = read_state((view.get("state") or {}).get("values"), default_state(finding))
    draft, errors = draft_for(finding, state, user_id, datetime.now(timezone.utc))
    if draft is None:
        await ack(response_action="errors", errors=errors)
        return
    try:
        created = await ctx.extras["benign"].create(draft)
    except SuppressionExists as exc:  # another responder (or this one) made it first: one, not two (#11)
        existing = exc.existing
        told = (f"Suppression {existing.id} already hides these events (made by {existing.created_by}, "
                f"{_until(existing)}): nothing new was created.")
        await ack(response_action="errors", errors={B_REASON: told})
        await dispatcher.complete(action, ctx, Outcome(OutcomeStatus.ALREADY, told, private=True))
        return
    await ack()  # closes the modal
    await dispatcher.complete(action, ctx, _outcome(created, user_id))


def _until(s: Suppression) -> str:
    return "never expires" if s.expires_at is None else f"until {s.expires_at.strftime('%Y-%m-%d %H:%M UTC')}"


def _outcome(s: Suppression, user_id: str) -> Outcome:
    """The thread note. Every value from outside (the detection name and the instance id come from
    audit data, the reason from the form) is inert, so no mention in it comes alive when the note
    is sent; the patterns are not shown in the channel, as they tell how to hide a command:
    `/esm benign list` shows them to responders and readers (#11)."""
    patterns = "its patterns" if s.match else "any event"
    message = (
        f"{actor(user_id)} marked this finding benign: {inert(s.reason)}\n"
        f"Suppression `{s.id}`: {inert(s.detection)} · {inert(s.scope.describe())} · {patterns} · {_until(s)}. "
        "Matching events are stored and counted here, not posted. `/esm benign list` shows its details to "
        f"responders and readers; `/esm benign remove {s.id}` undoes it."
    )
    return Outcome(OutcomeStatus.DONE, message, finding_status=FindingStatus.BENIGN, note=s.reason)


async def refresh(dispatcher: Dispatcher, user_id: str, view: dict[str, Any], client: AsyncWebClient) -> None:
    """Scope or expiry changed, or Refresh pressed: re-count the preview and update the modal."""
    allowed, _ = await dispatcher.authorizer.allows(user_id)
    finding = await dispatcher.store.finding(str(view.get("private_metadata") or "")) if allowed else None
    if finding is None or view.get("callback_id") != CALLBACK_ID:
        return  # fail closed: nothing is shown to someone who may not see it
    state = read_state((view.get("state") or {}).get("values"), default_state(finding))
    modal = BoltModal(client, str(view.get("id") or ""), view.get("hash"))
    # at once "computing…", then the count; a newer change of the user's wins (hash_conflict)
    if await modal.update(build_view(finding, state, PREVIEW_COMPUTING)):
        text = await preview_text((dispatcher.extras or {}).get("benign"), finding, state)
        await modal.update(build_view(finding, state, text))
