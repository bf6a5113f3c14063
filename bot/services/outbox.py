"""The outbox worker: sends stored Slack posts and updates, in order within each thread.

Items were written in the same transaction as the events that caused them, so nothing is lost
when Slack is down or the bot restarts. A parent post carries the finding key in Slack message
metadata; before re-posting an item that was in flight when the bot stopped, the worker looks
for that key in the channel, so a crash between Slack's answer and our commit posts nothing
twice.

A compact parent (ESM_MESSAGE_STYLE=compact) is followed at once by its details reply, the first
in its thread, keyed `<finding>:details`. The parent's item is done only when both are in
Slack: a crash between the two finds the parent in the channel and the reply (or its absence)
in the thread, so the details are posted exactly once, before any other reply of the thread.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from bot.observability import correlation, metrics
from bot.core.incidents import Incident, cluster_row, is_incident_key
from bot.core.state import DigestPayload, NotePayload, OutboxItem, OutboxKind, ReplyPayload
from bot.render import blocks, incident as incident_render
from bot.core.actions import ActionSpec
from bot.core.events import parse_audit_row
from bot.core.findings import Finding
from bot.core.ids import ActionId
from bot.core.degraded import SLACK, STATE_STORE, Degradation
from bot.core.ports import Chat, ChatError, OutboxQueue, StoreError

log = logging.getLogger(__name__)

METADATA_EVENT = "esm_finding"
THREAD_METADATA_EVENT = "esm_thread_item"
MAX_BACKOFF = 300.0
HISTORY_MARGIN = 200  # channel messages looked through beyond the ones this worker posted


@dataclass(frozen=True)
class OutboxSettings:
    channel_for: Callable[[Finding], str]  # routing by workspace and severity
    links_for: Callable[[Finding], blocks.Links]
    post_interval: float = 1.0  # Slack allows about one message per second per channel
    actions: tuple[ActionSpec, ...] = ()  # the buttons every finding message carries
    style: blocks.MessageStyle = "compact"  # compact parent + details reply, or one full message
    incident_terminate: bool = True  # incident messages carry "Terminate all N clusters…" (and
    # "Quarantine all N clusters…" when the findings offer Quarantine cluster: ESM_QUARANTINE_PRINCIPALS)


class _Paced(Exception):
    """The item's channel may not take a message yet (its pace, or Slack's Retry-After)."""

    def __init__(self, channel: str, until: float):
        super().__init__(channel)
        self.channel = channel
        self.until = until


class OutboxWorker:
    def __init__(self, store: OutboxQueue, chat: Chat, settings: OutboxSettings, health: Degradation | None = None):
        self.store = store
        self.chat = chat
        self.settings = settings
        self.health = health  # told when Slack or the store fails (or works): degraded is loud
        self._wake = asyncio.Event()
        self._next_post: dict[str, float] = {}  # channel -> when it may take its next message (monotonic)
        self._paused: dict[str, float] = {}  # channel -> end of Slack's Retry-After for it
        self._channel: str | None = None  # the channel of the item being sent (for a 429)
        self._list_tries: set[tuple[str, int]] = set()  # incident listings attempted here, not confirmed
        self._attempted: set[int] = set()  # listing items this process attempted (their later chunks need no look-up)
        self.sent = 0
        self.retries = 0
        # Parent messages this worker posted, and that count at each post's latest attempt: a
        # message posted by a lost attempt lies at most this many messages back (+ a margin).
        self._parents = 0
        self._parents_at_attempt: dict[int, int] = {}
        self._covered: set[int] = set()  # items of the current batch folded into one already sent
        self.on_posted: Callable[[Finding], None] | None = None  # told once a finding's parent is posted (#12)

    def kick(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Drain forever; wake on a kick or every second for retries that came due."""
        while True:
            try:
                await self.drain()  # (a success here proves reads only: the next sync's writes clear it)
            except StoreError as exc:  # the store is away: say so, keep going
                log.error("outbox drain failed: %s", exc)
                self._health(STATE_STORE, str(exc))
            except Exception:  # a bug must not end the worker either
                log.exception("outbox drain failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def drain(self) -> int:
        """Send every due item once, in id order; a blocked thread waits for its parent. Pacing
        is per channel (#14): a channel that may not post yet is skipped, its threads left out of
        the next read, and the worker goes on with other channels' items; when only waiting
        channels are left, it sleeps until the first of them may post."""
        sent = 0
        busy: dict[str, float] = {}  # channel -> when it may post again
        waiting: dict[str, set[str]] = {}  # channel -> threads skipped for it
        while True:
            now = time.monotonic()
            for channel in [c for c, until in busy.items() if until <= now]:
                del busy[channel]
                waiting.pop(channel, None)
            skip = sorted(set().union(*waiting.values())) if waiting else []
            items = await self.store.due_outbox(skip=skip)
            blocked: set[str] = set()
            progress = False
            self._covered.clear()
            for item in items:
                if item.id in self._covered:  # folded into an update or digest already sent
                    continue
                if item.finding_key in blocked:
                    continue
                try:
                    delivered = await self._send(item)
                except _Paced as paced:
                    busy[paced.channel] = max(busy.get(paced.channel, 0.0), paced.until)
                    waiting.setdefault(paced.channel, set()).add(item.finding_key)
                    blocked.add(item.finding_key)
                    continue
                if delivered:
                    sent += 1
                    progress = True
                else:
                    blocked.add(item.finding_key)
            if progress:
                continue
            if not busy:
                return sent
            await asyncio.sleep(max(0.0, min(busy.values()) - time.monotonic()))

    async def _send(self, item: OutboxItem) -> bool:
        """Send one item under the correlation id of the sync (or action) that queued it."""
        with correlation.bound(item.payload.correlation):
            return await self._send_item(item)

    async def _send_item(self, item: OutboxItem) -> bool:
        if is_incident_key(item.finding_key):
            return await self._send_incident_item(item)
        finding = await self.store.finding(item.finding_key)
        if finding is None:
            await self.store.outbox_dead(item.id, "finding no longer in the store")
            return False
        try:
            delivered = await self._deliver(item, finding)
        except ChatError as exc:
            await self._failed(item, exc)
            return False
        self.sent += delivered
        self._health(SLACK, None)
        if delivered:
            metrics.SLACK_MESSAGES.inc(kind=item.kind)
            if item.kind is OutboxKind.POST:
                metrics.FINDINGS_POSTED.inc()
                if self.on_posted is not None:
                    self.on_posted(finding)
            log.info("outbox item %s (%s) sent for finding %s", item.id, item.kind, item.finding_key,
                     extra=_fields(item, finding))
        return delivered

    async def _deliver(self, item: OutboxItem, finding: Any) -> bool:
        if item.kind is OutboxKind.POST:
            await self._post_parent(item, finding)
            return True
        message = await self.store.message_of(finding.key)
        if message is None:
            incident = await self._incident_of(finding.key)
            if incident is not None:  # rolled up into a storm incident: its message speaks for it
                return await self._member_item(item, finding, incident)
            return False  # the parent is not posted yet: the thread waits, in order
        channel, ts = message
        item, covered = await self._coalesce(item)
        if item.kind is OutboxKind.UPDATE:
            self._pace(channel, post=False)
            await self.store.outbox_attempt(item.id)  # every try counts; an update written after it is kept
            finding = await self.store.finding(finding.key) or finding  # rendered as it is now, after the attempt
            text, body = self._parent(finding)
            metadata = {"event_type": METADATA_EVENT, "event_payload": {"key": finding.key, "events": finding.count}}
            await self.chat.update(channel, ts, text, body, metadata=metadata)
        else:
            await self._post_in_thread(item, finding, channel, ts)
        for item_id in covered:
            await self.store.outbox_sent(item_id)
        self._covered.update(covered)
        return True

    async def _coalesce(self, item: OutboxItem) -> tuple[OutboxItem, list[int]]:
        """One parent update stands for all pending ones of a finding: it renders the finding as
        it is now. Digests are folded when written (the store keeps one pending digest per
        thread), and the one sent is read as of its attempt (see _post_in_thread)."""
        if item.kind is not OutboxKind.UPDATE or item.attempts > 0:
            return item, [item.id]
        pending = [p for p in await self.store.pending_items(item.finding_key, item.kind) if p.attempts == 0]
        return item, [item.id, *(p.id for p in pending if p.id != item.id)]

    async def _post_in_thread(self, item: OutboxItem, finding: Any, channel: str, thread_ts: str) -> None:
        """Thread items carry their outbox id in metadata: a retry after an interrupted attempt
        first looks for it in the thread, so a reply is never posted twice."""
        key = f"{finding.key}:{item.id}"
        if item.attempts > 0 and await self._already_replied(channel, thread_ts, key):
            return
        self._pace(channel)
        attempted = await self.store.outbox_attempt(item.id)  # a digest as it is now: never folded into again
        if attempted is not None:
            item = replace(item, payload=attempted)
        text, body = self._reply(item, finding)
        metadata = {"event_type": THREAD_METADATA_EVENT, "event_payload": {"key": key}}
        await self.chat.post(channel, text, body, thread_ts=thread_ts, metadata=metadata)

    async def _already_replied(self, channel: str, thread_ts: str, key: str) -> bool:
        return await self.chat.find_reply(channel, thread_ts, THREAD_METADATA_EVENT, key) is not None

    def _reply(self, item: OutboxItem, finding: Any) -> tuple[str, list[dict[str, Any]]]:
        payload = item.payload
        if isinstance(payload, DigestPayload):
            return blocks.digest_message(finding, payload.events, len(payload.hosts))
        if isinstance(payload, NotePayload):
            return blocks.note_message(payload.text, payload.button)
        if isinstance(payload, ReplyPayload):
            return blocks.reply_message(parse_audit_row(payload.row), finding)
        raise ValueError(f"{item.kind} is not a thread item")

    async def _post_parent(self, item: OutboxItem, finding: Any) -> None:
        channel = self.settings.channel_for(finding)
        existing = await self.store.message_of(finding.key)
        if existing is None and item.attempts > 0:
            existing = await self._already_posted(channel, finding.key, item.id)
        if existing is not None:
            self._parents_at_attempt.pop(item.id, None)
            if item.attempts > 0:  # an interrupted attempt may have posted the parent and not its details
                await self._post_details(finding, *existing, retried=True)
            await self.store.posted_with_message(item.id, finding.key, *existing)
            return
        self._pace(channel)
        await self.store.outbox_attempt(item.id)  # from here on, a restart checks Slack first
        # The post shows the finding as it is now (read after the attempt: an update written
        # later is kept, #14), so the updates queued so far need not be sent after it.
        updates = [u.id for u in await self.store.pending_items(finding.key, OutboxKind.UPDATE) if u.attempts == 0]
        finding = await self.store.finding(finding.key) or finding
        text, body = self._parent(finding)
        metadata = {"event_type": METADATA_EVENT, "event_payload": {"key": finding.key, "events": finding.count}}
        self._parents_at_attempt[item.id] = self._parents
        ts = await self.chat.post(channel, text, body, metadata=metadata)
        self._parents += 1
        # a failure of the details reply retries this item: it finds the parent by its
        # metadata, looking back past every parent posted since this attempt
        await self._post_details(finding, channel, ts, retried=False)
        self._parents_at_attempt.pop(item.id, None)
        await self.store.posted_with_message(item.id, finding.key, channel, ts)
        for update_id in updates:
            await self.store.outbox_sent(update_id)
        self._covered.update(updates)

    def _parent(self, finding: Finding) -> tuple[str, list[dict[str, Any]]]:
        return blocks.finding_message(finding, self.settings.links_for(finding), self.settings.actions,
                                      self.settings.style)

    async def _post_details(self, finding: Finding, channel: str, thread_ts: str, *, retried: bool) -> None:
        """The first reply under a compact parent: everything the parent leaves out. Keyed in
        metadata like every thread item; after an interrupted attempt, looked for first."""
        if not blocks.has_details_reply(self.settings.style):
            return
        key = f"{finding.key}:details"
        if retried and await self._already_replied(channel, thread_ts, key):
            return
        text, body = blocks.finding_details(finding, self.settings.links_for(finding))
        metadata = {"event_type": THREAD_METADATA_EVENT, "event_payload": {"key": key}}
        await self._pace_wait(channel)  # the parent is in Slack: its details follow in the next slot
        try:
            await self.chat.post(channel, text, body, thread_ts=thread_ts, metadata=metadata)
        except ChatError as exc:
            if not exc.permanent:
                raise  # the parent's item retries, and finds the parent already posted
            # refused for good (counted in esm_slack_errors_total by the client): the parent
            # stands, its thread goes on without the details, and the log says so
            log.error("details reply of finding %s refused by Slack: %s", finding.key, exc,
                      extra={"finding": finding.key, "kind": "details"})

    async def _already_posted(self, channel: str, key: str, item_id: int) -> tuple[str, str] | None:
        """After a failed or interrupted attempt, Slack may have the message already. Every
        parent posted since that attempt is newer than it, so look back past all of them (an
        attempt made before this process started: past all this process posted), plus a margin
        for other messages in the channel. A fixed window missed it when hundreds of findings
        were posted while it waited for its retry, and the finding was posted twice."""
        since = self._parents - self._parents_at_attempt.get(item_id, 0)
        ts = await self.chat.find_posted(channel, METADATA_EVENT, key, limit=HISTORY_MARGIN + since)
        return None if ts is None else (channel, ts)

    def _ready(self, channel: str) -> None:
        """Raise _Paced if the channel may not take a message now (claims nothing)."""
        until = max(self._paused.get(channel, 0.0), self._next_post.get(channel, 0.0))
        if until > time.monotonic():
            raise _Paced(channel, until)

    async def _pace_wait(self, channel: str) -> None:
        """Wait for the channel's next slot and claim it (a reply that must follow its parent)."""
        while True:
            try:
                self._pace(channel)
                return
            except _Paced as paced:
                await asyncio.sleep(max(0.0, paced.until - time.monotonic()))

    def _pace(self, channel: str, *, post: bool = True) -> None:
        """Claim the channel's next slot, or raise _Paced: at most one message per post_interval
        per channel (Slack's pace), and nothing while Slack's Retry-After for it runs. Updates
        (post=False) only wait for a Retry-After."""
        now = time.monotonic()
        until = max(self._paused.get(channel, 0.0), self._next_post.get(channel, 0.0) if post else 0.0)
        if until > now:
            raise _Paced(channel, until)
        self._channel = channel
        if post:
            self._next_post[channel] = now + self.settings.post_interval

    # -- storm incidents (#14) -------------------------------------------------------------

    async def _incident_of(self, finding_key: str) -> Incident | None:
        key = (await self.store.incidents_of([finding_key])).get(finding_key)
        return None if key is None else await self.store.incident(key)

    async def _member_item(self, item: OutboxItem, finding: Finding, incident: Incident) -> bool:
        """An item of a rolled-up finding: an update re-renders its incident (the finding's status
        and counts are the incident's counts), anything else goes into the incident's thread."""
        if incident.ts is None:
            return False  # the incident is not posted yet: wait for it
        if item.kind is OutboxKind.UPDATE:
            await self._update_incident(incident, item)
            await self.store.outbox_sent(item.id)
            return True
        await self._post_in_thread(item, finding, incident.channel, incident.ts)
        await self.store.outbox_sent(item.id)
        return True

    async def _send_incident_item(self, item: OutboxItem) -> bool:
        incident = await self.store.incident(item.finding_key)
        if incident is None:
            await self.store.outbox_dead(item.id, "incident no longer in the store")
            return False
        try:
            if item.kind is OutboxKind.INCIDENT:
                await self._post_incident(incident, item)
            elif incident.ts is None:
                return False  # its thread waits for the incident message
            elif item.kind is OutboxKind.INCIDENT_UPDATE:
                await self._update_incident(incident, item)
                await self.store.outbox_sent(item.id)
            elif item.kind is OutboxKind.INCIDENT_LIST:
                await self._list_members(incident, item)
            elif isinstance(item.payload, NotePayload):
                await self._post_incident_note(incident, item)
            else:
                await self.store.outbox_dead(item.id, f"{item.kind} is not an incident item")
                return False
        except ChatError as exc:
            await self._failed(item, exc)
            return False
        self._health(SLACK, None)
        metrics.SLACK_MESSAGES.inc(kind=item.kind)
        log.info("outbox item %s (%s) sent for incident %s", item.id, item.kind, incident.key,
                 extra={"finding": incident.key, "outbox_item": item.id, "kind": item.kind.value})
        return True

    async def _incident_body(self, incident: Incident) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
        summary = await self.store.incident_summary(incident.key)
        if summary is None:
            raise ChatError(f"incident {incident.key} has no members", permanent=True)
        quarantine = any(spec.id == ActionId.QUARANTINE_CLUSTER for spec in self.settings.actions)
        text, body = incident_render.incident_message(incident, summary, terminate=self.settings.incident_terminate,
                                                      quarantine=quarantine)
        metadata = {"event_type": incident_render.METADATA_EVENT,
                    "event_payload": {"key": incident.key, "events": summary.events, "findings": summary.findings}}
        return text, body, metadata

    async def _post_incident(self, incident: Incident, item: OutboxItem) -> None:
        channel = incident.channel
        if incident.ts is None and item.attempts > 0:
            ts = await self.chat.find_posted(channel, incident_render.METADATA_EVENT, incident.key,
                                             limit=HISTORY_MARGIN + self._parents)
            if ts is not None:
                await self.store.incident_posted(item.id, incident.key, ts)
                return
        if incident.ts is not None:
            await self.store.outbox_sent(item.id)
            return
        self._pace(channel)
        await self.store.outbox_attempt(item.id)  # before reading the counts: an update written later is kept
        updates = [u.id for u in await self.store.pending_items(incident.key, OutboxKind.INCIDENT_UPDATE)
                   if u.attempts == 0]
        text, body, metadata = await self._incident_body(incident)
        ts = await self.chat.post(channel, text, body, metadata=metadata)
        self._parents += 1
        await self.store.incident_posted(item.id, incident.key, ts)
        for update_id in updates:  # the post shows the incident as it is now
            await self.store.outbox_sent(update_id)
        self._covered.update(updates)
        await self._incident_posted(incident)

    async def _incident_posted(self, incident: Incident) -> None:
        """A storm pages like a finding (ESM_PAGE_SEVERITY, #12): once per incident, on the
        member with the most events (its page note and status line go to the incident's thread)."""
        if self.on_posted is None:
            return
        summary = await self.store.incident_summary(incident.key, top=1)
        top = await self.store.finding(summary.rows[0].finding_key) if summary and summary.rows else None
        if top is not None:
            self.on_posted(top)

    async def _update_incident(self, incident: Incident, item: OutboxItem) -> None:
        assert incident.ts is not None
        self._pace(incident.channel, post=False)
        await self.store.outbox_attempt(item.id)  # before reading the counts: an update written later is kept
        text, body, metadata = await self._incident_body(incident)
        await self.chat.update(incident.channel, incident.ts, text, body, metadata=metadata)

    async def _list_members(self, incident: Incident, item: OutboxItem) -> None:
        """List the members not listed yet, a few hundred per message, resuming after a restart
        where the thread left off (each listing message carries its offset in metadata)."""
        assert incident.ts is not None
        self._ready(incident.channel)  # before reading every member: the channel may not post yet
        retried_item = item.attempts > 0 and item.id not in self._attempted  # interrupted before this process
        self._attempted.add(item.id)
        await self.store.outbox_attempt(item.id)  # before reading the members: a listing written later is kept
        listed = incident.listed
        rows = [cluster_row(f) for f in await self.store.incident_members(incident.key, offset=listed)]
        for upto, text, body in incident_render.list_messages(incident, rows, listed):
            tag = f"{incident.key}:list:{listed}"
            retried = (incident.key, listed) in self._list_tries or retried_item
            if not (retried and await self._already_replied(incident.channel, incident.ts, tag)):
                self._pace(incident.channel)
                self._list_tries.add((incident.key, listed))
                metadata = {"event_type": THREAD_METADATA_EVENT, "event_payload": {"key": tag}}
                await self.chat.post(incident.channel, text, body, thread_ts=incident.ts, metadata=metadata)
            self._list_tries.discard((incident.key, listed))
            await self.store.incident_listed(incident.key, upto)
            listed = upto
        await self.store.outbox_sent(item.id)

    async def _post_incident_note(self, incident: Incident, item: OutboxItem) -> None:
        assert incident.ts is not None and isinstance(item.payload, NotePayload)
        key = f"{incident.key}:{item.id}"
        if item.attempts > 0 and await self._already_replied(incident.channel, incident.ts, key):
            await self.store.outbox_sent(item.id)
            return
        self._pace(incident.channel)
        await self.store.outbox_attempt(item.id)
        text, body = blocks.note_message(item.payload.text, item.payload.button)
        metadata = {"event_type": THREAD_METADATA_EVENT, "event_payload": {"key": key}}
        await self.chat.post(incident.channel, text, body, thread_ts=incident.ts, metadata=metadata)
        await self.store.outbox_sent(item.id)

    def _health(self, part: str, failure: str | None) -> None:
        if self.health is None:
            return
        now = datetime.now(timezone.utc)
        if failure is None:
            self.health.success(part, now)
        else:
            self.health.failure(part, failure, now)

    async def _failed(self, item: OutboxItem, exc: ChatError) -> None:
        self._health(SLACK, str(exc))
        if exc.permanent:
            log.error("outbox item %s (%s) refused by Slack: %s", item.id, item.kind, exc, extra=_fields(item))
            await self.store.outbox_dead(item.id, str(exc))
            if item.kind in (OutboxKind.POST, OutboxKind.INCIDENT):  # its thread can never be posted: keep it visible
                await self.store.outbox_dead_for_finding(item.finding_key, f"parent message failed: {exc}")
            return
        self.retries += 1
        metrics.SLACK_RETRIES.inc()
        delay = exc.retry_after if exc.retry_after is not None else _backoff(item.attempts)
        if exc.retry_after is not None and self._channel is not None:  # rate limits apply to the channel
            self._paused[self._channel] = time.monotonic() + exc.retry_after
        log.warning("outbox item %s (%s) will retry in %.1fs: %s", item.id, item.kind, delay, exc,
                    extra={**_fields(item), "retry_in": round(delay, 1)})
        await self.store.outbox_retry(item.id, str(exc), time.time() + delay)


def _backoff(attempts: int) -> float:
    """Exponential backoff with jitter: 1, 2, 4 … seconds, capped, each ±50%."""
    base = min(MAX_BACKOFF, 2.0 ** attempts)
    return base * random.uniform(0.5, 1.5)


def _fields(item: OutboxItem, finding: Finding | None = None) -> dict[str, Any]:
    """The structured fields of a log line about an outbox item (ESM_LOG_FORMAT=json keys)."""
    fields: dict[str, Any] = {"finding": item.finding_key, "outbox_item": item.id, "kind": item.kind.value}
    if finding is not None:
        fields.update(detection=finding.detection.name, cluster_id=finding.cluster_id,
                      instance_id=finding.first_event.instance_id, workspace_id=finding.first_event.workspace_id)
    return fields
