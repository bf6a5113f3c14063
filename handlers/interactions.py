"""Finding buttons: one generic listener for every `esm.*` action id; the actions themselves
are the files in handlers/actions/."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.services.dispatch import Dispatcher

ACTION_PATTERN = re.compile(r"^esm\.")


@dataclass
class BoltInteraction:
    """The Interaction port over one Bolt request."""

    user_id: str
    respond: Any
    client: AsyncWebClient
    trigger_id: str | None

    async def reply_private(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        await self.respond(response_type="ephemeral", replace_original=False, text=text, blocks=blocks)

    async def open_modal(self, view: dict[str, Any]) -> None:
        if not self.trigger_id:
            raise RuntimeError("this interaction carries no trigger_id to open a modal with")
        await self.client.views_open(trigger_id=self.trigger_id, view=view)


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
        await dispatcher.click(str(action.get("action_id") or ""), action.get("value"), interaction)
