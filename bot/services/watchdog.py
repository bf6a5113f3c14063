"""The watchdog: tells the findings channel when the bot is degraded, and when it recovers.

It reads bot.core.degraded (in memory: it works while the state store is the broken part) every
few seconds and posts straight to Slack, not through the outbox, which lives in the store. A
post that fails (Slack itself may be the broken part) is logged and tried again on the next tick.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from bot.observability import metrics
from bot.core.degraded import Degradation, degraded_text, recovered_text
from bot.core.ports import Chat, ChatError
from bot.render.blocks import clip, escape, plain_section

log = logging.getLogger(__name__)

TICK_SECONDS = 5.0


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _plain(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Plain text only: a reason quoted from an error can never become a mention or a link."""
    return escape(clip(text, 2900)), [plain_section(clip(text, 2900) or "-")]


class Watchdog:
    def __init__(self, degradation: Degradation, chat: Chat, channel: str | None,
                 clock: Callable[[], datetime] = _utcnow, tick: float = TICK_SECONDS):
        self.degradation = degradation
        self.chat = chat
        self.channel = channel
        self.clock = clock
        self.tick_seconds = tick
        self._post_failing = False

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # the watchdog itself must never stop
                log.exception("watchdog tick failed")
            await asyncio.sleep(self.tick_seconds)

    async def tick(self) -> None:
        now = self.clock()
        problems, recovered = self.degradation.to_announce(now)
        metrics.DEGRADED.set(len(self.degradation.degraded(now)))
        for problem in problems:
            log.error("esm-bot is degraded: %s", problem.line(),
                      extra={"part": problem.part, "failing_since": problem.since.isoformat()})
            if await self._say(degraded_text(problem)):
                self.degradation.announced_at([problem], now)
        for part in recovered:
            log.warning("esm-bot recovered: %s works again", part, extra={"part": part})
            if await self._say(recovered_text(part, now)):
                self.degradation.recovered([part])

    async def _say(self, text: str) -> bool:
        if not self.channel:
            return True  # nowhere to post: the log line and /readyz say it
        fallback, blocks = _plain(text)
        try:
            await self.chat.post(self.channel, fallback, blocks)
        except ChatError as exc:
            if not self._post_failing:
                log.error("could not tell the channel: %s", exc)
            self._post_failing = True
            return False
        self._post_failing = False
        return True

