"""Finding buttons: one generic listener for every `esm.*` action id; the actions themselves
are the files in handlers/actions/."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.actions import OutcomeStatus
from bot.services.dispatch import Dispatcher

log = logging.getLogger(__name__)

ACTION_PATTERN = re.compile(r"^esm\.")


@dataclass
class BoltModal:
    """A modal opened with views.open; updated by id, guarded by the hash Slack gave it."""

    client: AsyncWebClient
    view_id: str
    hash: str | None

    async def update(self, view: dict[str, Any]) -> bool:
        try:
            answer = await self.client.views_update(view_id=self.view_id, hash=self.hash, view=view)
        except SlackApiError as exc:  # hash_conflict: the user changed it, and that change re-renders it
            log.info("modal %s not updated: %s", self.view_id, exc.response.get("error"))
            return False
        self.hash = (answer.get("view") or {}).get("hash") or self.hash
        return True


@dataclass
class BoltInteraction:
    """The Interaction port over one Bolt request."""

    user_id: str
    respond: Any
    client: AsyncWebClient
    trigger_id: str | None

    async def reply_private(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        await self.respond(response_type="ephemeral", replace_original=False, text=text, blocks=blocks)

    async def open_modal(self, view: dict[str, Any]) -> BoltModal:
        if not self.trigger_id:
            raise RuntimeError("this interaction carries no trigger_id to open a modal with")
        opened = (await self.client.views_open(trigger_id=self.trigger_id, view=view)).get("view") or {}
        return BoltModal(self.client, str(opened.get("id") or ""), opened.get("hash"))


def register(app: AsyncApp, dispatcher: Dispatcher) -> None:
    @app.action(ACTION_PATTERN)
    async def on_finding_button(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        await ack()  # within Slack's 3 s, before any slow work
        interaction = BoltInteraction(
            user_id=str((body.get("user") or {}).get("id") or ""),
            respond=respond,
            client=client,
            trigger_id=body.get("trigger_id"),
        )
        action_id = str(action.get("action_id") or "")
        outcome = await dispatcher.click(action_id, action.get("value"), interaction)
        known = dispatcher.actions.get(action_id)
        if known is not None and known.spec.undoes is not None and outcome.status is OutcomeStatus.DONE:
            await retire_undo(client, body, interaction.user_id)  # the state it restores no longer applies


async def retire_undo(client: AsyncWebClient, body: dict[str, Any], user_id: str) -> None:
    """Take the undo button off the thread note it was on, once done: an undo is offered only
    while the state it restores still applies. The note's text stays,
    with who undid it. Best effort: a stale button is refused anyway."""
    message = body.get("message") or {}
    channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or "")
    ts = str((body.get("container") or {}).get("message_ts") or message.get("ts") or "")
    if not channel or not ts or not isinstance(message.get("blocks"), list):
        return
    kept = [b for b in message["blocks"] if isinstance(b, dict) and b.get("type") != "actions"]
    kept.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Undone by <@{user_id}>."}]})
    try:
        await client.chat_update(channel=channel, ts=ts, text=str(message.get("text") or "Undone"), blocks=kept)
    except SlackApiError as exc:
        log.warning("undo button left on %s in %s: %s", ts, channel, exc.response.get("error"))
