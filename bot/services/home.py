"""The App Home tab: built from the state store and published with views.publish when a user
opens it (app_home_opened) and, for everyone who opened it lately, after each sync.

Slack's limits: views.publish is rate-limited per app (Tier 4, about 100 a minute) and a user's
Home needs no more than a refresh every few seconds, so publishes go one at a time, at most one
per PUBLISH_GAP seconds, and at most one per user per USER_INTERVAL (a later request for the same
user waits, coalesced). The chart is rendered in a worker thread (matplotlib, never on the event
loop) and uploaded once per distinct 7 days of counts (files_upload_v2), then reused.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from bot.core.degraded import Degradation
from bot.render.chart import days_ending, events_chart_png, series
from bot.render.home import HomeData, home_view

log = logging.getLogger(__name__)

PUBLISH_GAP = 0.7  # seconds between two views.publish calls: under 100 a minute
USER_INTERVAL = 5.0  # seconds between two publishes of one user's Home
VIEWERS_KEPT = 500  # users refreshed after a sync: those who opened the Home most recently
VIEWER_TTL = 7 * 24 * 3600.0  # …within the last week
AFTER_SYNC_DELAY = 1.0


class HomeService:
    def __init__(self, store: Any, chat: Any, pipeline: Any, health: Degradation | None, *,
                 publish_gap: float = PUBLISH_GAP, user_interval: float = USER_INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        self.store, self.chat, self.pipeline, self.health = store, chat, pipeline, health
        self.publish_gap, self.user_interval, self.clock = publish_gap, user_interval, clock
        self._viewers: OrderedDict[str, float] = OrderedDict()  # user -> when they last opened it
        self._published: dict[str, float] = {}  # user -> when their Home was last published
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._chart: tuple[str, str] | None = None  # (hash of the counts, uploaded file id)
        self.publishes = 0  # views.publish calls made (for tests and the benchmark)

    def opened(self, user_id: str) -> None:
        """app_home_opened: publish this user's Home (soon, within the limits)."""
        self._viewers[user_id] = self.clock()
        self._viewers.move_to_end(user_id)
        while len(self._viewers) > VIEWERS_KEPT:
            self._viewers.popitem(last=False)
        self._request({user_id})

    def after_sync(self) -> None:
        """A sync finished: refresh the Home of everyone who opened it lately."""
        now = self.clock()
        users = {u for u, at in self._viewers.items() if now - at < VIEWER_TTL}
        # a moment later: the outbox is posting the sync's findings, whose links the Home shows
        asyncio.get_running_loop().call_later(AFTER_SYNC_DELAY, self._request, users)

    def _request(self, users: set[str]) -> None:
        if not users:
            return
        self._pending |= users
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until nothing is pending or being published (tests, the demo)."""
        deadline = self.clock() + timeout
        while (self._pending or (self._task is not None and not self._task.done() and self._wake.is_set())) \
                and self.clock() < deadline:
            await asyncio.sleep(0.05)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                now = self.clock()
                due = sorted(u for u in self._pending if now - self._published.get(u, -1e9) >= self.user_interval)
                if not due:  # everyone asked for was published moments ago: wait for the first to be due
                    soonest = min(self._published[u] + self.user_interval for u in self._pending)
                    await asyncio.sleep(max(0.05, soonest - now))
                    continue
                try:
                    view = await self.view()
                except Exception as exc:  # the store is down: try again on the next request
                    log.warning("App Home not built: %s", exc)
                    self._pending.clear()
                    break
                for user in due:
                    self._pending.discard(user)
                    await self._publish(user, view)
                    await asyncio.sleep(self.publish_gap)
            if self._pending:
                self._wake.set()

    async def _publish(self, user: str, view: dict[str, Any]) -> None:
        self._published[user] = self.clock()
        try:
            await self.chat.publish_home(user, view)
            self.publishes += 1
        except Exception as exc:  # one user's failure does not stop the others
            log.warning("App Home not published for %s: %s", user, exc)

    async def view(self) -> dict[str, Any]:
        return home_view(await self.data())

    async def data(self) -> HomeData:
        now = datetime.now(timezone.utc)
        findings = await self.store.open_findings()
        suppressions = await self.store.active_suppressions(now)
        hits = await self.store.suppression_counts()
        links: dict[str, str] = {}
        for finding in findings[:60]:  # only the ones shown are linked
            message = await self.store.message_of(finding.key)
            if message is not None:
                try:
                    links[finding.key] = await self.chat.permalink(*message)
                except Exception as exc:
                    log.info("no permalink for finding %s: %s", finding.key, exc)
        file_id, note = await self.chart(now)
        report = getattr(self.pipeline, "last_report", None)
        return HomeData(
            findings=findings, suppressions=suppressions, links=links, hits=hits,
            last_sync=getattr(self.pipeline, "last_sync_at", None),
            last_success=getattr(self.pipeline, "last_success_at", None),
            sync_error=getattr(report, "error", None) if report else None,
            problems=[p.line() for p in self.health.failing()] if self.health is not None else [],
            chart_file_id=file_id, chart_note=note, now=now,
        )

    async def chart(self, now: datetime) -> tuple[str | None, str | None]:
        """The chart's file id (uploaded when the counts changed), or (None, why not)."""
        days = days_ending(now.date())
        rows = await self.store.events_by_day(datetime.fromisoformat(days[0]).replace(tzinfo=timezone.utc))
        counts = series(rows, days)
        digest = hashlib.sha256(repr((days, sorted(counts.items()))).encode()).hexdigest()
        if self._chart is not None and self._chart[0] == digest:
            return self._chart[1], None
        try:
            png = await asyncio.to_thread(events_chart_png, days, counts)  # CPU work: off the event loop
            file_id = await self.chat.upload_file(
                None, "esm-events-7d.png", png, title="Events per detection, last 7 days",
                alt_txt="Events per detection over the last 7 days")
        except Exception as exc:  # e.g. files:write not granted: the Home shows without its chart
            log.warning("App Home chart not uploaded: %s", exc)
            return None, f"The chart could not be uploaded: {exc}"[:300]
        self._chart = (digest, file_id)
        return file_id, None


