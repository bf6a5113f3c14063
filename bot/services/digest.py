"""The daily digest (ESM_DIGEST_AT): once a day, one message in the findings channel with the
previous local day's counts per detection and cluster, the findings still open, the suppressions
that hid events, those expiring soon, and the 7-day chart; `/esm digest` shows it to the caller.

Exactly once per day across restarts and replicas: the day is claimed in the state store
(`digests`, migration 0010) before the message is posted, and marked posted after; a claim not
marked posted within CLAIM_STALE seconds (its replica died) may be taken over.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from bot.core.digest import DailyAt, DailyDigest
from bot.render.digest import daily_digest_message

log = logging.getLogger(__name__)

CHECK_EVERY = 30.0  # seconds between looks at the clock
CLAIM_STALE = 600.0
EXPIRING_WITHIN = timedelta(days=3)


class DigestService:
    def __init__(self, store: Any, chat: Any, channel: str, at: DailyAt, *, home: Any = None,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.store, self.chat, self.channel, self.at, self.home, self.now = store, chat, channel, at, home, now
        self._posted_day: date | None = None

    async def digest(self, day: date) -> DailyDigest:
        """The digest sent on local `day`: it reports the local day before."""
        start, end = self.at.reported(day)
        by_detection: dict[str, int] = {}
        by_cluster: dict[str, int] = {}
        suppressed = 0
        for detection, place, disposition, count in await self.store.events_between(start, end):
            if disposition == "suppressed":
                suppressed += count
            elif disposition != "ignored":
                by_detection[detection] = by_detection.get(detection, 0) + count
                by_cluster[place] = by_cluster.get(place, 0) + count
        now = self.now()
        active = await self.store.active_suppressions(now)
        details = {s.id: s.detection for s in active}
        hit = await self.store.suppressions_matched_between(start, end)
        suppressions_hit = sorted(((sid, details.get(sid, "(removed or expired since)"), n) for sid, n in hit.items()),
                                  key=lambda item: (-item[2], item[0]))
        expiring = sorted(((s.id, s.detection, s.expires_at) for s in active
                           if s.expires_at is not None and s.expires_at <= now + EXPIRING_WITHIN),
                          key=lambda item: item[2])
        findings = await self.store.open_findings()
        open_findings: list[tuple[str, str, str, int, str | None]] = []
        for finding in sorted(findings, key=lambda f: (-int(f.detection.severity), f.detection.name)):
            link = None
            message = await self.store.message_of(finding.key) if len(open_findings) < 15 else None
            if message is not None:
                try:
                    link = await self.chat.permalink(*message)
                except Exception as exc:
                    log.info("no permalink for finding %s: %s", finding.key, exc)
            where = finding.cluster_id or ", ".join(sorted(finding.hosts)) or "unknown host"
            open_findings.append((finding.detection.severity.name.lower(), finding.detection.name, where,
                                  finding.count, link))
        chart = None
        if self.home is not None:
            chart, _ = await self.home.chart(now)
        return DailyDigest(start, end, self.at.zone, by_detection, by_cluster, suppressed, suppressions_hit,
                           open_findings, expiring, chart)

    async def message_now(self) -> tuple[str, list[dict[str, Any]]]:
        """Today's digest (yesterday's events), for `/esm digest`."""
        today = self.now().astimezone(self.at.tz()).date()
        return daily_digest_message(await self.digest(today))

    async def tick(self) -> str | None:
        """Post today's digest if it is due and no one (this process, a restart, a replica) has:
        the ts posted, or None."""
        now = self.now()
        day = self.at.due_day(now)
        if day is None or day == self._posted_day:
            return None
        if not await self.store.claim_digest(day.isoformat(), now, CLAIM_STALE):
            self._posted_day = day  # another process has it
            return None
        text, blocks = daily_digest_message(await self.digest(day))
        ts = await self.chat.post(self.channel, text, blocks)
        await self.store.digest_posted(day.isoformat(), ts)
        self._posted_day = day
        log.info("daily digest for %s posted to %s", day.isoformat(), self.channel)
        return str(ts)

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # the store or Slack is down: tried again at the next look
                log.warning("daily digest not posted: %s", exc)
            await asyncio.sleep(CHECK_EVERY)
