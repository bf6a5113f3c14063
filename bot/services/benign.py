"""Benign suppressions as a service: preview, create, list, remove.

Shared by the Mark benign action and modal (through ActionContext.extras["benign"]) and by
`/esm benign`. The pipeline applies the same suppressions itself (bot/services/pipeline.py).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from bot.core.decide import Classified
from bot.core.findings import Detection, Severity
from bot.core.ports import AuditSource, BenignStore
from bot.core.state import NewOutboxItem, NotePayload
from bot.core.suppressions import Suppression, matches
from bot.render.blocks import actor, escape, inert

PREVIEW_WINDOW = timedelta(days=7)
REMOVE_ACTION = "esm.benign_remove"  # the audit record's action name for /esm benign remove
PREVIEW_LIMIT = 5000  # rows of one detection read for a preview; more reads "at least N"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Preview:
    matched: int
    scanned: int
    truncated: bool  # the source had more rows than PREVIEW_LIMIT: matched is a lower bound

    def text(self) -> str:
        bound = "at least " if self.truncated else ""
        noun = "event" if self.matched == 1 else "events"
        return f"Would match {bound}{self.matched} {noun} of the last 7 days ({self.scanned} of this detection seen)."


@dataclass
class BenignService:
    store: BenignStore
    source: AuditSource
    rules: Sequence[Suppression] = ()  # enabled rules/benign.yml entries
    clock: Callable[[], datetime] = utcnow
    on_outbox: Callable[[], None] = lambda: None

    async def preview(self, draft: Suppression) -> Preview:
        """How many Capsule8 events of the last 7 days `draft` would have hidden."""
        now = self.clock()
        rows = await self.source.capsule8_detection_since(draft.detection, now - PREVIEW_WINDOW, PREVIEW_LIMIT)
        clusters = await self.store.clusters_of_instances(r.instance_id for r in rows if r.instance_id)
        detection = Detection(draft.detection, "", Severity.INFO, "", "")
        timeless = replace(draft, expires_at=None)  # the question is what it matches, not until when
        matched = sum(
            matches(timeless, Classified(row, detection, clusters.get(row.instance_id or "") or row.cluster_id), now)
            for row in rows
        )
        return Preview(matched, len(rows), len(rows) >= PREVIEW_LIMIT)

    async def create(self, draft: Suppression) -> Suppression:
        """Raises SuppressionExists when an active one already hides the same events (#11)."""
        return await self.store.add_suppression(draft)

    async def active(self) -> list[Suppression]:
        now = self.clock()
        return await self.store.active_suppressions(now) + [s for s in self.rules if s.active(now)]

    async def listing(self) -> list[tuple[Suppression, int]]:
        counts = await self.store.suppression_counts()
        return [(s, counts.get(s.id, 0)) for s in await self.active()]

    async def remove(self, suppression_id: str, by: str) -> str:
        """A one-line answer (mrkdwn, every outside value escaped): removed, unknown, already gone,
        or defined in rules/benign.yml. A removal (or a refusal) of a Slack-made one is recorded on
        its finding and its thread (the note is escaped when it is sent, and a mention in the
        detection name stays inert)."""
        wanted = suppression_id.strip()
        if any(rule.id == wanted for rule in self.rules):
            return f"`{escape(wanted[:80])}` is defined in rules/benign.yml: disable it there (enabled: false)."
        found = await self.store.suppression(wanted)
        if found is None:
            return f"No benign suppression `{escape(wanted[:80])}`. `/esm benign list` shows the active ones."
        if not await self.store.remove_suppression(found.id, by):
            return f"Suppression `{found.id}` was already removed."
        message = (f"{actor(by)} removed benign suppression `{found.id}` ({inert(found.detection)}): "
                   "matching events are posted again.")
        await self._record(found, by, "done", message, in_thread=True)
        return f"Removed suppression `{found.id}` ({escape(found.detection)}): matching events will be posted again."

    async def refused(self, suppression_id: str, by: str, why: str) -> None:
        found = await self.store.suppression(suppression_id.strip())
        if found is not None:
            await self._record(found, by, "refused", f"remove {found.id}: {why}", in_thread=False)

    async def _record(self, s: Suppression, by: str, outcome: str, message: str, *, in_thread: bool) -> None:
        if not s.finding_key:
            return
        outbox = [NewOutboxItem(s.finding_key, NotePayload(message))] if in_thread else []
        await self.store.record_action(s.finding_key, REMOVE_ACTION, by, outcome, message, dry_run=False, outbox=outbox)
        if outbox:
            self.on_outbox()
