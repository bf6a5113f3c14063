"""The outbox worker: sends stored Slack posts and updates, in order within each thread.

Items were written in the same transaction as the events that caused them, so nothing is lost
when Slack is down or the bot restarts. A parent post carries the finding key in Slack message
metadata; before re-posting an item that was in flight when the bot stopped, the worker looks
for that key in the channel, so a crash between Slack's answer and our commit posts nothing
twice.
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
from bot.core.state import DigestPayload, NotePayload, OutboxItem, OutboxKind, ReplyPayload
from bot.render import blocks
from bot.core.actions import ActionSpec
from bot.core.events import parse_audit_row
from bot.core.findings import Finding
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


class OutboxWorker:
    def __init__(self, store: OutboxQueue, chat: Chat, settings: OutboxSettings, health: Degradation | None = None):
        self.store = store
        self.chat = chat
        self.settings = settings
        self.health = health  # told when Slack or the store fails (or works): degraded is loud
        self._wake = asyncio.Event()
        self._paused_until = 0.0
        self._last_post = 0.0
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
        """Send every due item once, in id order; a blocked thread waits for its parent."""
        sent = 0
        while True:
            items = await self.store.due_outbox()
            if not items:
                return sent
            blocked: set[str] = set()
            progress = False
            self._covered.clear()
            for item in items:
                if item.id in self._covered:  # folded into an update or digest already sent
                    continue
                if item.finding_key in blocked or time.monotonic() < self._paused_until:
                    blocked.add(item.finding_key)
                    continue
                if await self._send(item):
                    sent += 1
                    progress = True
                else:
                    blocked.add(item.finding_key)
            if not progress:
                return sent

    async def _send(self, item: OutboxItem) -> bool:
        """Send one item under the correlation id of the sync (or action) that queued it."""
        with correlation.bound(item.payload.correlation):
            return await self._send_item(item)

    async def _send_item(self, item: OutboxItem) -> bool:
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
        if message is None:  # the parent is not posted yet: the thread waits, in order
            return False
        channel, ts = message
        item, covered = await self._coalesce(item)
        if item.kind is OutboxKind.UPDATE:
            text, body = blocks.finding_message(finding, self.settings.links_for(finding), self.settings.actions)
            await self.store.outbox_attempt(item.id)  # every try counts, for the backoff
            await self.chat.update(channel, ts, text, body)
        else:
            await self._post_in_thread(item, finding, channel, ts)
        for item_id in covered:
            await self.store.outbox_sent(item_id)
        self._covered.update(covered)
        return True

    async def _coalesce(self, item: OutboxItem) -> tuple[OutboxItem, list[int]]:
        """One parent update and one digest stand for all pending ones of a finding: an update
        renders the finding as it is now, and digests add up. A retried item goes alone, so what
        a lost answer may already have shown is never widened."""
        if item.kind not in (OutboxKind.UPDATE, OutboxKind.DIGEST) or item.attempts > 0:
            return item, [item.id]
        pending = [p for p in await self.store.pending_items(item.finding_key, item.kind) if p.attempts == 0]
        others = [p for p in pending if p.id != item.id]
        if isinstance(item.payload, DigestPayload) and others:
            digests = [p.payload for p in others if isinstance(p.payload, DigestPayload)]
            item = replace(item, payload=item.payload.merged(digests))
        return item, [item.id, *(p.id for p in others)]

    async def _post_in_thread(self, item: OutboxItem, finding: Any, channel: str, thread_ts: str) -> None:
        """Thread items carry their outbox id in metadata: a retry after an interrupted attempt
        first looks for it in the thread, so a reply is never posted twice."""
        key = f"{finding.key}:{item.id}"
        if item.attempts > 0 and await self._already_replied(channel, thread_ts, key):
            return
        text, body = self._reply(item, finding)
        metadata = {"event_type": THREAD_METADATA_EVENT, "event_payload": {"key": key}}
        await self._pace()
        await self.store.outbox_attempt(item.id)
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
            await self.store.posted_with_message(item.id, finding.key, *existing)
            return
        await self._pace()
        # The post shows the finding as it is now, so the updates queued so far (each written
        # with the finding change it announces) need not be sent after it.
        updates = [u.id for u in await self.store.pending_items(finding.key, OutboxKind.UPDATE) if u.attempts == 0]
        finding = await self.store.finding(finding.key) or finding
        text, body = blocks.finding_message(finding, self.settings.links_for(finding), self.settings.actions)
        metadata = {"event_type": METADATA_EVENT, "event_payload": {"key": finding.key}}
        await self.store.outbox_attempt(item.id)  # from here on, a restart checks Slack first
        self._parents_at_attempt[item.id] = self._parents
        ts = await self.chat.post(channel, text, body, metadata=metadata)
        self._parents += 1
        self._parents_at_attempt.pop(item.id, None)
        await self.store.posted_with_message(item.id, finding.key, channel, ts)
        for update_id in updates:
            await self.store.outbox_sent(update_id)
        self._covered.update(updates)

    async def _already_posted(self, channel: str, key: str, item_id: int) -> tuple[str, str] | None:
        """After a failed or interrupted attempt, Slack may have the message already. Every
        parent posted since that attempt is newer than it, so look back past all of them (an
        attempt made before this process started: past all this process posted), plus a margin
        for other messages in the channel. A fixed window missed it when hundreds of findings
        were posted while it waited for its retry, and the finding was posted twice."""
        since = self._parents - self._parents_at_attempt.get(item_id, 0)
        ts = await self.chat.find_posted(channel, METADATA_EVENT, key, limit=HISTORY_MARGIN + since)
        return None if ts is None else (channel, ts)

    async def _pace(self) -> None:
        wait = self._last_post + self.settings.post_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_post = time.monotonic()

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
            if item.kind is OutboxKind.POST:  # its thread can never be posted: keep it visible, stop waiting
                await self.store.outbox_dead_for_finding(item.finding_key, f"parent message failed: {exc}")
            return
        self.retries += 1
        metrics.SLACK_RETRIES.inc()
        delay = exc.retry_after if exc.retry_after is not None else _backoff(item.attempts)
        if exc.retry_after is not None:  # rate limits apply to the channel, not one message
            self._paused_until = time.monotonic() + exc.retry_after
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
