"""ESM_PAGE_SEVERITY (#12): a new finding at or above it pages on-call as soon as it is posted,
through the same dispatcher path as the button (dry run, once per finding, audit record, thread
note, the parent's status line), acting as the bot itself."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from bot.core.findings import Finding
from bot.core.ids import ActionId, ButtonValue
from bot.core.playbook import Playbook, pages_automatically
from bot.services.dispatch import Dispatcher

log = logging.getLogger(__name__)
BOT_ACTOR = "esm-bot"  # who the audit record names for an automatic page


@dataclass
class _BotInteraction:
    user_id: str = BOT_ACTOR

    async def reply_private(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        return None  # no one clicked: the thread note is the answer

    async def open_modal(self, view: dict[str, Any]) -> Any:
        raise RuntimeError("an automatic page opens no modal")


@dataclass
class AutoPager:
    dispatcher: Dispatcher
    playbook: Playbook
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def on_posted(self, finding: Finding) -> None:
        """Called by the outbox once a finding's parent message is posted (never blocks it)."""
        if not pages_automatically(self.playbook, finding):
            return
        task = asyncio.get_running_loop().create_task(self.page(finding))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def page(self, finding: Finding) -> None:
        action = self.dispatcher.actions.get(ActionId.PAGE_ONCALL)
        if action is None:
            return
        value = ButtonValue(finding.key, finding.first_event.instance_id, finding.cluster_id)
        ctx = self.dispatcher.context(finding, value, _BotInteraction())
        try:
            outcome = await self.dispatcher.run_checked(action, ctx)
        except Exception:
            log.exception("automatic page of %s failed", finding.key)
            return
        log.info("automatic page of %s: %s", finding.key, outcome.status.value)
