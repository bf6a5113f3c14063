"""The sync: fetch new Capsule8 rows -> decide -> enrich new findings -> store with the outbox.

Triggers (webhooks, the poller, the CLI) coalesce: one sync runs, at most one more is queued.
The watermark moves only in the same transaction that stores the events it covers, so a crash
or an outage never skips an event; the overlap window re-reads late rows and the seen-set
drops the ones already handled.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from bot import correlation, metrics
from bot.core.state import (
    DigestPayload,
    EventRecord,
    NewOutboxItem,
    PostPayload,
    ReplyPayload,
    UpdatePayload,
    with_correlation,
)
from bot.core.catalogue import Catalogue
from bot.core.decide import BatchPlan, Classified, FindingChange, plan_batch
from bot.core.events import AuditRow, detection_name
from bot.core.findings import ClusterContext
from bot.core.ports import AuditSource, SuppressionStore, SyncLedger
from bot.core.suppressions import Suppression, first_match
from bot.enrich import Enricher

log = logging.getLogger(__name__)

Resolved = tuple[ClusterContext | None, str | None]  # the cluster, or why it is unknown

PAGE_SIZE = 5000
ENRICH_CONCURRENCY = 8


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class SyncReport:
    fetched: int = 0
    new_events: int = 0
    new_findings: int = 0
    repeats: int = 0
    ignored: int = 0
    suppressed: int = 0
    seconds: float = 0.0
    error: str | None = None
    skipped: str | None = None  # why this sync did nothing itself (another replica was syncing)


PageHook = Callable[[list[AuditRow], "BatchPlan | None"], None]


@dataclass(frozen=True)
class SyncOptions:
    """One sync's options: the default is a live sync from the watermark that posts to Slack."""

    since: datetime | None = None  # a backfill's start instead of the watermark
    post: bool = True  # False: store events and findings but queue no Slack messages
    on_page: PageHook | None = None  # called with each page's rows and plan (None: all seen)


@dataclass(frozen=True)
class SyncSettings:
    initial_lookback: timedelta
    overlap: timedelta
    group_window: timedelta
    thread_replies: int


class Pipeline:
    def __init__(
        self,
        source: AuditSource,
        store: SyncLedger,
        suppressions: SuppressionStore,
        enricher: Enricher,
        catalogue: Catalogue,
        settings: SyncSettings,
        *,
        on_outbox: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
        benign_rules: Sequence[Suppression] = (),
    ):
        self.source = source
        self.store = store
        self.suppressions = suppressions
        self.enricher = enricher
        self.catalogue = catalogue
        self.settings = settings
        self.on_outbox = on_outbox
        self.clock = clock
        self.benign_rules = tuple(benign_rules)  # enabled rules/benign.yml entries
        self._suppressions: list[Suppression] = []  # loaded once per sync
        self._hits: dict[str, Suppression] = {}  # event id -> the suppression that hid it
        self._now = clock()
        self.last_report: SyncReport | None = None
        self.last_sync_at: datetime | None = None
        self.runs = 0
        self._options = SyncOptions()

    async def sync(
        self, since: datetime | None = None, *, post: bool = True, on_page: PageHook | None = None
    ) -> SyncReport:
        """Process every Capsule8 row newer than the watermark (minus the overlap), or newer than
        `since` (a backfill: the watermark never moves back). `post=False` queues no Slack
        messages; `on_page` sees each page as it is processed (progress, digests)."""
        started = time.perf_counter()
        self.runs += 1
        self._options = SyncOptions(since, post, on_page)
        report = SyncReport()
        try:
            await self._sync_exclusive(report)
        except Exception as exc:  # the source or store failed: nothing past the last page moved
            report.error = str(exc)
            log.error("sync failed: %s", exc)
        report.seconds = time.perf_counter() - started
        self.last_report, self.last_sync_at = report, self.clock()
        _observe(report)
        log.info("sync done: %s", report)
        return report

    async def _sync_exclusive(self, report: SyncReport) -> None:
        """One sync at a time across replicas (the store's sync lock). A sync that finds another
        replica syncing leaves it a request and is done: the holder syncs once more after it
        lets go, so no trigger is lost. A backfill (`since`) waits for its turn instead."""
        asked = False
        while True:
            async with self.store.sync_lock() as held:
                if held:
                    await self.store.take_sync_request()  # this sync covers every earlier request
                    await self._sync_pages(report)
            if held:
                if not await self.store.take_sync_request():  # none came in while we synced
                    return
                asked = False
            elif self._options.since is not None:
                await asyncio.sleep(0.5)
            elif asked:  # still held after our request: the holder will see it
                report.skipped = "another replica is syncing"
                return
            else:
                await self.store.request_sync()  # then try once more: the holder may be done
                asked = True

    async def _sync_pages(self, report: SyncReport) -> None:
        await self._load_suppressions()
        since, after_id = self._options.since or await self._start(), ""
        while True:
            rows = await self.source.capsule8_since(since, PAGE_SIZE, after_id)
            report.fetched += len(rows)
            if rows:
                plan = await self._process(rows, report)
                if self._options.on_page is not None:
                    self._options.on_page(rows, plan)
                since, after_id = rows[-1].event_time, rows[-1].event_id
            if len(rows) < PAGE_SIZE:
                return

    async def _start(self) -> datetime:
        watermark = await self.store.watermark()
        if watermark is None:
            return self.clock() - self.settings.initial_lookback
        return watermark - self.settings.overlap

    async def _process(self, rows: list[AuditRow], report: SyncReport) -> BatchPlan | None:
        seen = await self.store.seen([r.event_id for r in rows])
        new_rows = [r for r in rows if r.event_id not in seen]
        report.new_events += len(new_rows)
        if new_rows:
            plan, clusters = await self._plan(new_rows)
            await self._enrich_new(plan, clusters)
            await self._store(plan, max(r.event_time for r in rows))
            _count(plan, report)
            self.on_outbox()
            return plan
        await self.store.record_sync([], [], [], max(r.event_time for r in rows))
        return None

    async def _plan(self, rows: list[AuditRow]) -> tuple[BatchPlan, dict[tuple[str | None, str | None], Resolved]]:
        clusters = await self._clusters(rows)
        items = [
            Classified(row, self.catalogue.lookup(detection_name(row)), _cluster_id(clusters[_host(row)]))
            for row in rows
        ]
        open_findings = await self.store.latest_findings(item.group_key for item in items)
        return plan_batch(items, open_findings, self.settings.group_window, self._suppressor()), clusters

    async def _load_suppressions(self) -> None:
        """Slack-made ones first (their counts show on the finding they came from), then rules."""
        self._now = self.clock()
        self._suppressions = await self.suppressions.active_suppressions(self._now)
        self._suppressions += [s for s in self.benign_rules if s.active(self._now)]

    def _suppressor(self) -> Callable[[Classified], bool]:
        self._hits = {}

        def is_suppressed(item: Classified) -> bool:
            found = first_match(self._suppressions, item, self._now) if self._suppressions else None
            if found is not None:
                self._hits[item.row.event_id] = found
            return found is not None

        return is_suppressed

    async def _clusters(self, rows: list[AuditRow]) -> dict[tuple[str | None, str | None], Resolved]:
        """Resolve each distinct host once, a few at a time."""
        hosts = {_host(row): row for row in rows}
        limit = asyncio.Semaphore(ENRICH_CONCURRENCY)

        async def resolve(row: AuditRow) -> Resolved:
            async with limit:
                return await self.enricher.cluster_of(row)

        found = await asyncio.gather(*(resolve(row) for row in hosts.values()))
        return dict(zip(hosts, found))

    async def _enrich_new(self, plan: BatchPlan, clusters: dict[tuple[str | None, str | None], Resolved]) -> None:
        limit = asyncio.Semaphore(ENRICH_CONCURRENCY)
        new = [c for c in plan.changes.values() if c.is_new]
        batch = self.enricher.command_batch(
            (c.finding.cluster_id, c.finding.first_seen) for c in new if c.finding.cluster_id
        )

        async def enrich(change: FindingChange) -> None:
            async with limit:
                known, problem = clusters[_host(change.finding.first_event)]
                context = await self.enricher.context_for(change.finding, known, problem, batch)
                change.finding = replace(change.finding, context=context)

        await asyncio.gather(*(enrich(c) for c in new))

    async def _store(self, plan: BatchPlan, watermark: datetime) -> None:
        hits = [(item.row.event_id, self._hits[item.row.event_id]) for item, d, _ in plan.dispositions if d == "suppressed"]
        origin = {event_id: s.finding_key for event_id, s in hits}  # a suppressed event files under its origin
        events = [
            _event_record(item, disposition, key or origin.get(item.row.event_id))
            for item, disposition, key in plan.dispositions
        ]
        findings = [c.finding for c in plan.changes.values()]
        outbox = [entry for c in plan.changes.values() for entry in self._outbox_for(c)]
        outbox += _tagged(_suppressed_updates(hits, plan))
        if not self._options.post:
            outbox = []
        suppressed = [(s.id, s.finding_key) for _, s in hits]
        await self.store.record_sync(events, findings, outbox, watermark, suppressed=suppressed)

    def _outbox_for(self, change: FindingChange) -> list[NewOutboxItem]:
        """A parent post (or update); a finding's first few repeats ever as replies, every later
        one counted in a digest (the outbox folds pending digests and updates into one each)."""
        key = change.finding.key
        items: list[NewOutboxItem] = [NewOutboxItem(key, PostPayload() if change.is_new else UpdatePayload())]
        repeats_before = change.finding.count - len(change.repeats) - 1
        budget = max(0, self.settings.thread_replies - repeats_before)
        shown = change.repeats if len(change.repeats) <= budget + 1 else change.repeats[:budget]  # no digest of one
        items += [NewOutboxItem(key, ReplyPayload(row.to_json())) for row in shown]
        rest = change.repeats[len(shown) :]
        if rest:
            items.append(NewOutboxItem(key, DigestPayload.of(len(rest), {r.instance_id for r in rest if r.instance_id})))
        return _tagged(items)


def _tagged(items: list[NewOutboxItem]) -> list[NewOutboxItem]:
    """Outbox payloads carry the sync's correlation id, so the send log lines show it."""
    cid = correlation.current()
    return [NewOutboxItem(i.finding_key, with_correlation(i.payload, cid)) for i in items]


def _observe(report: SyncReport) -> None:
    metrics.SYNCS.inc(result="error" if report.error else "ok")
    metrics.SYNC_SECONDS.observe(report.seconds)
    metrics.EVENTS_FETCHED.inc(report.fetched)
    metrics.SUPPRESSED.inc(report.suppressed)
    counts = (("new_finding", report.new_findings), ("repeat", report.repeats),
              ("ignored", report.ignored), ("suppressed", report.suppressed))
    for disposition, count in counts:
        if count:
            metrics.EVENTS.inc(count, disposition=disposition)


def _suppressed_updates(hits: list[tuple[str, Suppression]], plan: BatchPlan) -> list[NewOutboxItem]:
    """One parent update per originating finding per sync, so its suppressed count shows;
    none when this batch already updates (or posts) that finding."""
    keys = dict.fromkeys(s.finding_key for _, s in hits if s.finding_key and s.finding_key not in plan.changes)
    return [NewOutboxItem(key, UpdatePayload()) for key in keys]


def _host(row: AuditRow) -> tuple[str | None, str | None]:
    return (row.cluster_id, row.instance_id)


def _cluster_id(found: Resolved) -> str | None:
    return found[0].cluster_id if found[0] is not None else None


def _event_record(item: Classified, disposition: str, key: str | None) -> EventRecord:
    row = item.row
    return EventRecord(
        event_id=row.event_id,
        event_time=row.event_time,
        detection=item.detection.name,
        disposition=disposition,
        finding_key=key,
        workspace_id=row.workspace_id,
        instance_id=row.instance_id,
        cluster_id=item.cluster_id,
    )


def _count(plan: BatchPlan, report: SyncReport) -> None:
    for _, disposition, _ in plan.dispositions:
        if disposition == "new_finding":
            report.new_findings += 1
        elif disposition == "repeat":
            report.repeats += 1
        elif disposition == "ignored":
            report.ignored += 1
        elif disposition == "suppressed":
            report.suppressed += 1


class Coalescer:
    """Run a job on demand: one run at a time, and at most one more queued behind it."""

    def __init__(self, job: Callable[[], Awaitable[Any]], gap: float = 0.25):
        self._job = job
        self._gap = gap  # a queued run waits this long, so a burst of triggers becomes one run
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._next_id: str | None = None  # the correlation id of the queued run's trigger

    def trigger(self) -> str:
        if self._task is not None and not self._task.done():
            self._again = True
            self._next_id = correlation.current()
            return "queued"
        self._next_id = correlation.current()
        self._task = asyncio.get_running_loop().create_task(self._run())
        return "started"

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while True:
            self._again = False
            correlation.set_id(self._next_id)  # this task's own context: the trigger's id
            try:
                await self._job()
            except Exception:  # a failed run must not stop later triggers
                log.exception("sync run failed")
            if not self._again:
                return
            await asyncio.sleep(self._gap)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
