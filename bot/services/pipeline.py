"""The sync: fetch new Capsule8 rows -> decide -> enrich new findings -> store with the outbox.

Triggers (webhooks, the poller, the CLI) coalesce: one sync runs, at most one more is queued.
The watermark moves only in the same transaction that stores the events it covers, so a crash
or an outage never skips an event; the overlap window re-reads late rows and the seen-set
drops the ones already handled. The watermark never moves past the bot's clock (less the skew
allowance), so a host whose clock is ahead cannot blind the bot, and a sweep re-reads a longer
window behind it (ESM_LATE_WINDOW) for rows that landed after newer ones were read.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from bot.observability import correlation, metrics
from bot.core.state import (
    DigestPayload,
    EventRecord,
    IncidentPayload,
    NewOutboxItem,
    OutboxKind,
    PostPayload,
    ReplyPayload,
    UpdatePayload,
    with_correlation,
)
from bot.core.catalogue import Catalogue
from bot.core.decide import BatchPlan, Classified, FindingChange, plan_batch
from bot.core.events import AuditRow, detection_name, parse_audit_row
from bot.core.findings import ClusterContext, Finding
from bot.core.incidents import Incident, incident_key, storming
from bot.core.degraded import AUDIT_SOURCE, STATE_STORE, Degradation
from bot.core.ports import AuditSource, SourceError, SuppressionStore, SyncLedger
from bot.core.suppressions import Suppression, first_match
from bot.core.timing import HEARTBEAT, SENSOR_SILENT, capped_watermark, silence_row, timing_note
from bot.services.enrich import Enricher, LookupFailed

log = logging.getLogger(__name__)

Resolved = tuple[ClusterContext | None, str | None]  # the cluster, or why it is unknown

PAGE_SIZE = 5000
SENSOR_CHECK_EVERY = timedelta(minutes=1)  # silent sensors are looked for at most this often
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
    sweep: "SweepReport | None" = field(default=None, repr=False)  # the late-arrival sweep, if it ran (logged apart)

    def to_json(self) -> dict[str, Any]:
        return {**vars(self), "sweep": None if self.sweep is None else self.sweep.to_json()}


@dataclass
class SweepReport:
    """What one late-arrival sweep cost and found."""

    window_start: datetime
    window_end: datetime
    ids_read: int = 0  # step 1: the window's ids
    rows_read: int = 0  # step 2: whole rows of the ids not seen before
    late_rows: int = 0  # of those, stored now (a late row)
    seconds: float = 0.0
    truncated: bool = False  # the window held more ids than one sweep reads

    @property
    def read(self) -> int:
        return self.ids_read + self.rows_read

    def to_json(self) -> dict[str, Any]:
        return {"window_start": self.window_start.isoformat(), "window_end": self.window_end.isoformat(),
                "ids_read": self.ids_read, "rows_read": self.rows_read, "late_rows": self.late_rows,
                "seconds": round(self.seconds, 3), "truncated": self.truncated}


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
    clock_skew: timedelta = timedelta(minutes=2)  # rows dated later than now + this: the host's clock is ahead
    late_window: timedelta = timedelta(hours=24)  # how far back the sweep looks for late rows
    late_sweep_interval: timedelta = timedelta(minutes=15)  # at most one sweep this often (0: every sync)
    sweep_max_ids: int = 500_000  # ids one sweep reads at most; more is said, and read next time
    heartbeat_gap: timedelta = timedelta(minutes=30)  # a running host's heartbeats stopped this long: a finding
    storm_budget: float = 60.0  # seconds a sync's posts may take per channel before they roll up (#14)
    post_interval: float = 1.0  # the outbox's pace per channel (ESM_SLACK_POST_INTERVAL)
    details_reply: bool = True  # a new finding's parent is followed by its details reply (compact style)


POSTED_KINDS = (OutboxKind.POST, OutboxKind.REPLY, OutboxKind.DIGEST)  # what chat.postMessage sends
UPDATE_PRIORITY = 5  # incident updates: after parent posts (10 + severity), before thread items (0)


@dataclass
class _Storm:
    """One sync's storm state: channels that storm in it, and the incidents open per (channel, detection)."""

    channels: set[str] = field(default_factory=set)
    open: dict[tuple[str, str], Incident] = field(default_factory=dict)


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
        health: Degradation | None = None,
        channel_for: Callable[[Finding], str] | None = None,
    ):
        self.source = source
        self.channel_for = channel_for  # the outbox's routing; None: no storm roll-ups (#14)
        self._storm = _Storm()
        self.store = store
        self.suppressions = suppressions
        self.enricher = enricher
        self.catalogue = catalogue
        self.settings = settings
        self.on_outbox = on_outbox
        self.clock = clock
        self.benign_rules = tuple(benign_rules)  # enabled rules/benign.yml entries
        self.health = health  # told which part failed (or worked): degraded is loud
        self._suppressions: list[Suppression] = []  # loaded once per sync
        self._hits: dict[str, Suppression] = {}  # event id -> the suppression that hid it
        self._now = clock()
        self.last_report: SyncReport | None = None
        self.last_sync_at: datetime | None = None
        self.last_success_at: datetime | None = None
        self.last_sweep: SweepReport | None = None
        self._last_sweep_at: datetime | None = None
        self._last_sensor_check: datetime | None = None
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
            part = AUDIT_SOURCE if isinstance(exc, SourceError) else STATE_STORE
            report.error = f"{part}: {exc}"
            log.error("sync failed: %s", report.error, extra={"part": part})
            if self.health is not None:
                self.health.failure(part, str(exc) or type(exc).__name__, self.clock())
        report.seconds = time.perf_counter() - started
        self.last_report, self.last_sync_at = report, self.clock()
        if report.error is None:
            self.last_success_at = self.last_sync_at
            if self.health is not None:
                for part in (AUDIT_SOURCE, STATE_STORE):
                    self.health.success(part, self.last_sync_at)
        _observe(report)
        log.info("sync done: %s", report, extra={
            "fetched": report.fetched, "new_events": report.new_events, "new_findings": report.new_findings,
            "repeats": report.repeats, "suppressed": report.suppressed, "seconds": round(report.seconds, 3),
            "sync_error": report.error, "late_rows": report.sweep.late_rows if report.sweep else None,
        })
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
        await self._load_storm()
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
                break
        if self._options.since is None and self._sweep_due():
            await self._sweep(report)
        if self._options.since is None and self._sensor_check_due():
            await self._silent_sensors(report)

    async def _start(self) -> datetime:
        watermark = await self.store.watermark()
        if watermark is None:
            return self.clock() - self.settings.initial_lookback
        return min(watermark, self.clock()) - self.settings.overlap

    # -- the late-arrival sweep ----------------------------------------------------------

    def _sweep_due(self) -> bool:
        last = self._last_sweep_at
        return last is None or self.clock() - last >= self.settings.late_sweep_interval

    async def _sweep(self, report: SyncReport) -> None:
        """Re-read the window behind the incremental read: ids first (cheap), then whole rows
        only for ids the bot has not stored. What it finds is processed like any page, marked
        late, and never moves the watermark."""
        started, now = time.perf_counter(), self.clock()
        watermark = await self.store.watermark()
        end = min(watermark, now) - self.settings.overlap if watermark is not None else now
        sweep = SweepReport(window_start=now - self.settings.late_window, window_end=end)
        report.sweep = sweep
        if end > sweep.window_start:
            ids = await self.source.capsule8_ids_between(sweep.window_start, end, self.settings.sweep_max_ids)
            sweep.ids_read = len(ids)
            sweep.truncated = len(ids) >= self.settings.sweep_max_ids
            unseen = sorted(set(ids) - await self.store.seen(ids))  # the store chunks the lookup
            if unseen:
                rows = await self.source.capsule8_by_ids(unseen, sweep.window_start)
                sweep.rows_read = len(rows)
                for start in range(0, len(rows), PAGE_SIZE):
                    page = rows[start : start + PAGE_SIZE]
                    before = report.new_events
                    await self._process(page, report, late=True)
                    sweep.late_rows += report.new_events - before
        sweep.seconds = time.perf_counter() - started
        self._last_sweep_at, self.last_sweep = now, sweep
        if sweep.truncated:
            log.warning("late-arrival sweep read its limit of %s ids; the rest of the window waits for the next sweep",
                        self.settings.sweep_max_ids)
        log.info("late-arrival sweep: %s", sweep, extra={
            "ids_read": sweep.ids_read, "rows_read": sweep.rows_read, "late_rows": sweep.late_rows,
            "sweep_seconds": round(sweep.seconds, 3), "truncated": sweep.truncated})
        if sweep.late_rows:
            log.warning("late-arrival sweep found %s rows that landed after newer rows were read", sweep.late_rows)
        _observe_sweep(sweep)

    # -- sensors that went silent --------------------------------------------------------

    def _sensor_check_due(self) -> bool:
        """Silence is measured in tens of minutes: once a minute is often enough, however many
        syncs a storm of webhooks starts (the check reads a day of stored events)."""
        if self.settings.heartbeat_gap <= timedelta(0):
            return False
        last = self._last_sensor_check
        return last is None or self.clock() - last >= SENSOR_CHECK_EVERY

    async def _silent_sensors(self, report: SyncReport) -> None:
        """A host that sent heartbeats and stopped for longer than the gap while its cluster still
        runs is a finding ("ESM sensor silent"): stopping the agent is an attacker's first move.
        A host whose cluster terminated is not; one the bot cannot check is posted, saying so."""
        now, gap = self.clock(), self.settings.heartbeat_gap
        self._last_sensor_check = now
        hosts = await self.store.last_heartbeats(HEARTBEAT, now - max(self.settings.late_window, gap * 2), SENSOR_SILENT)
        rows = []
        for host in hosts:
            if now - host.last_at <= gap:
                continue
            try:
                if await self.enricher.running_cluster_of(host.workspace_id, host.instance_id) is None:
                    continue  # no live cluster has this host: it was terminated, not silenced
            except LookupFailed as exc:
                log.warning("sensor of %s silent, cluster state unknown: %s", host.instance_id, exc,
                            extra={"instance_id": host.instance_id, "cluster_id": host.cluster_id})
            rows.append(parse_audit_row(silence_row(host.instance_id, host.workspace_id, host.cluster_id,
                                                    host.last_at, gap, now)))
        if rows:
            before = report.new_events
            await self._process(rows, report, synthetic=True)
            if report.new_events > before:
                log.warning("%s host sensor(s) silent for more than %s", report.new_events - before, gap)

    async def _process(
        self, rows: list[AuditRow], report: SyncReport, *, late: bool = False, synthetic: bool = False
    ) -> BatchPlan | None:
        seen = await self.store.seen([r.event_id for r in rows])
        new_rows = [r for r in rows if r.event_id not in seen]
        report.new_events += len(new_rows)
        now = self.clock()
        # a late page (or the bot's own rows) never moves the watermark; a live one never past the bot's clock
        watermark = (None if late or synthetic
                     else capped_watermark(max(r.event_time for r in rows), now, self.settings.clock_skew))
        if new_rows:
            plan, clusters = await self._plan(new_rows)
            await self._enrich_new(plan, clusters)
            if not synthetic:
                self._note_timing(plan, now, late)
            await self._store(plan, watermark)
            _count(plan, report)
            self.on_outbox()
            return plan
        await self.store.record_sync([], [], [], watermark)
        return None

    def _note_timing(self, plan: BatchPlan, now: datetime, late: bool) -> None:
        """A new finding whose event is dated ahead of the bot's clock, or landed late, says so."""
        for change in plan.changes.values():
            if not change.is_new:
                continue
            note = timing_note(change.finding.first_event.event_time, now, self.settings.clock_skew, late=late)
            if note is not None:
                change.finding = replace(change.finding, context=replace(change.finding.context, timing=note))

    async def _plan(self, rows: list[AuditRow]) -> tuple[BatchPlan, dict[tuple[str | None, str | None], Resolved]]:
        clusters = await self._clusters(rows)
        items = [
            Classified(row, self.catalogue.lookup(detection_name(row)), _cluster_id(clusters[_host(row)]))
            for row in rows
        ]
        open_findings = await self.store.latest_findings(item.group_key for item in items)
        # pure and CPU-bound over a whole page: in a thread, so the event loop keeps answering (#14)
        plan = await asyncio.to_thread(plan_batch, items, open_findings, self.settings.group_window, self._suppressor())
        return plan, clusters

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

    async def _store(self, plan: BatchPlan, watermark: datetime | None) -> None:
        hits = [(item.row.event_id, self._hits[item.row.event_id]) for item, d, _ in plan.dispositions if d == "suppressed"]
        origin = {event_id: s.finding_key for event_id, s in hits}  # a suppressed event files under its origin
        events = [
            _event_record(item, disposition, key or origin.get(item.row.event_id))
            for item, disposition, key in plan.dispositions
        ]
        findings = [c.finding for c in plan.changes.values()]
        rollup = await self._roll_up(plan) if self._options.post else _RollUp()
        outbox = [entry for c in plan.changes.values() if c.finding.key not in rollup.quiet
                  for entry in self._outbox_for(c)]
        outbox += _tagged(rollup.outbox)
        outbox += _tagged(_suppressed_updates(hits, plan))
        if not self._options.post:
            outbox = []
        suppressed = [(s.id, s.finding_key) for _, s in hits]
        await self.store.record_sync(events, findings, outbox, watermark, suppressed=suppressed,
                                     incidents=list(rollup.incidents.values()), members=rollup.members,
                                     close_incidents=sorted(rollup.closed))

    # -- storm roll-ups (#14) --------------------------------------------------------------

    async def _load_storm(self) -> None:
        self._storm = _Storm()
        if self.channel_for is None or not self._options.post:
            return
        now = self.clock()
        for incident in await self.store.open_incidents():
            if incident.open_for(now, self.settings.group_window):
                self._storm.open[(incident.channel, incident.detection.name)] = incident

    async def _roll_up(self, plan: BatchPlan) -> "_RollUp":
        """Which of this page's findings are rolled up into incidents, and the incident items.
        A channel storms when the posts this page would queue for it take longer than the budget
        at its pace (or it stormed earlier in this sync); a channel with new findings that fit
        the budget is calm again: they post individually and its open incidents close."""
        out = _RollUp()
        if self.channel_for is None:
            return out
        members = await self.store.incidents_of([k for k, c in plan.changes.items() if not c.is_new])
        posts: dict[str, int] = {}
        channel_of: dict[str, str] = {}
        for key, change in plan.changes.items():
            if key in members:
                continue
            channel = channel_of[key] = self.channel_for(change.finding)
            posts[channel] = posts.get(channel, 0) + self._posts_of(change)
        budget, pace = self.settings.storm_budget, self.settings.post_interval
        for channel, n in posts.items():
            if storming(n, pace, budget):
                self._storm.channels.add(channel)
        now = self.clock()
        new = sorted((c for c in plan.changes.values() if c.is_new and c.finding.key not in members),
                     key=lambda c: (-c.finding.detection.severity, c.finding.first_seen, c.finding.key))
        for change in new:
            channel = channel_of[change.finding.key]
            if channel in self._storm.channels:
                self._join(change.finding, channel, now, out)
        for channel in set(channel_of.values()) - self._storm.channels:
            if any(c.is_new for k, c in plan.changes.items() if channel_of.get(k) == channel):
                for (ch, name), incident in list(self._storm.open.items()):  # the storm is over here
                    if ch == channel:
                        out.closed.add(incident.key)
                        out.update(incident.key)  # it says the storm is over
                        del self._storm.open[(ch, name)]
        for key, incident_key_ in members.items():  # later repeats count on their incident
            out.quiet.add(key)
            out.update(incident_key_)
        return out

    def _posts_of(self, change: FindingChange) -> int:
        """The chat.postMessage calls a finding's items cost: its parent (and, compact, the
        details reply posted with it), its replies and its digest."""
        posts = sum(1 for i in self._outbox_for(change) if i.kind in POSTED_KINDS)
        return posts + (1 if change.is_new and self.settings.details_reply else 0)

    def _join(self, finding: Finding, channel: str, now: datetime, out: "_RollUp") -> None:
        slot = (channel, finding.detection.name)
        incident = self._storm.open.get(slot)
        if incident is None:
            incident = Incident(incident_key(channel, finding.detection.name, finding.key), channel,
                                finding.detection, opened_at=now, last_joined_at=now)
            out.outbox.append(NewOutboxItem(incident.key, IncidentPayload(OutboxKind.INCIDENT),
                                            priority=10 + int(finding.detection.severity)))
        else:
            incident = replace(incident, last_joined_at=now)
            out.update(incident.key)
        self._storm.open[slot] = incident
        out.incidents[incident.key] = incident
        out.members.append((finding.key, incident.key))
        out.quiet.add(finding.key)
        out.listed(incident.key)

    def _outbox_for(self, change: FindingChange) -> list[NewOutboxItem]:
        """A parent post (or update); a finding's first few repeats ever as replies, every later
        one counted in a digest (the outbox folds pending digests and updates into one each)."""
        key = change.finding.key
        parent = (NewOutboxItem(key, PostPayload(), priority=10 + int(change.finding.detection.severity))
                  if change.is_new else NewOutboxItem(key, UpdatePayload()))
        items: list[NewOutboxItem] = [parent]
        repeats_before = change.finding.count - len(change.repeats) - 1
        budget = max(0, self.settings.thread_replies - repeats_before)
        # no digest of one while replies are left; once they are spent, every repeat is counted in
        # the thread's digest (folded into the pending one when written, across pages and syncs)
        shown = change.repeats if budget and len(change.repeats) <= budget + 1 else change.repeats[:budget]
        items += [NewOutboxItem(key, ReplyPayload(row.to_json())) for row in shown]
        rest = change.repeats[len(shown) :]
        if rest:
            items.append(NewOutboxItem(key, DigestPayload.of(len(rest), {r.instance_id for r in rest if r.instance_id})))
        return _tagged(items)


@dataclass
class _RollUp:
    """What a page's roll-up decided: findings not posted alone, incidents new or joined, their
    members, incidents whose storm is over, and the incidents' outbox items."""

    quiet: set[str] = field(default_factory=set)
    incidents: dict[str, Incident] = field(default_factory=dict)
    members: list[tuple[str, str]] = field(default_factory=list)
    closed: set[str] = field(default_factory=set)
    outbox: list[NewOutboxItem] = field(default_factory=list)
    _queued: set[tuple[str, OutboxKind]] = field(default_factory=set)

    def _once(self, key: str, kind: OutboxKind) -> None:
        if (key, kind) not in self._queued:
            self._queued.add((key, kind))
            # an update (chat.update, not paced like posts) goes before the thread's listings
            priority = UPDATE_PRIORITY if kind is OutboxKind.INCIDENT_UPDATE else 0
            self.outbox.append(NewOutboxItem(key, IncidentPayload(kind), priority=priority))

    def update(self, key: str) -> None:
        if (key, OutboxKind.INCIDENT) not in {(i.finding_key, i.kind) for i in self.outbox}:
            self._once(key, OutboxKind.INCIDENT_UPDATE)

    def listed(self, key: str) -> None:
        self._once(key, OutboxKind.INCIDENT_LIST)


def _tagged(items: list[NewOutboxItem]) -> list[NewOutboxItem]:
    """Outbox payloads carry the sync's correlation id, so the send log lines show it."""
    cid = correlation.current()
    return [replace(i, payload=with_correlation(i.payload, cid)) for i in items]


def _observe_sweep(sweep: SweepReport) -> None:
    metrics.SWEEPS.inc()
    metrics.SWEEP_ROWS.inc(sweep.read)
    metrics.SWEEP_SECONDS.observe(sweep.seconds)
    if sweep.late_rows:
        metrics.LATE_ROWS.inc(sweep.late_rows)


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
