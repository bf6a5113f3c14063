"""The bot's state, on SQLite (one process) or PostgreSQL (any number of replicas), written once.

SQLAlchemy Core 2 with its async engines (aiosqlite, psycopg): no database call runs on the
event loop's thread. Each public method is one transaction; a sync's events, findings, outbox
items and watermark land together or not at all, which is what makes a restart safe.

What differs between the two databases is in three places only: the column types
(bot.adapters.state.types), the engines below (SQLite: one writer connection, `BEGIN IMMEDIATE`,
WAL; PostgreSQL: a pool), and replica coordination (bot.adapters.state.replicas: advisory locks
and outbox leases on PostgreSQL, nothing to share on SQLite).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Text, any_, bindparam, case, event, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.adapters.state import migrate
from bot.adapters.state.replicas import Coordination, LocalCoordination, PostgresCoordination, lock_key
from bot.adapters.state import schema as t
from bot.adapters.state.types import nul_safe
from bot.adapters.state.urls import StateStoreError, connect_timeout, redact_url
from bot.core.codec import context_from_json, context_to_json, detection_from_json, detection_to_json
from bot.core.events import parse_audit_row, parse_time
from bot.core.findings import Finding, FindingStatus
from bot.core.incidents import Incident, IncidentSummary, cluster_row
from bot.core.state import (
    FOLDED_KINDS,
    DigestPayload,
    EventRecord,
    HeartbeatSeen,
    NewOutboxItem,
    OutboxItem,
    OutboxKind,
    Payload,
    PayloadError,
    payload_from_json,
    payload_to_json,
)
from bot.core.suppressions import Scope, Suppression, SuppressionExists, same_events_key

log = logging.getLogger(__name__)

DEFAULT_LEASE = 30.0  # seconds an outbox thread stays claimed without a heartbeat (PostgreSQL)
BUSY_TIMEOUT_MS = 1000  # SQLite: how long a write waits for another process's lock (a click queued behind a
# sync waits at most twice this, and is answered within Slack's 3 s)
ID_CHUNK = 5000  # ids per IN (...) list
PG_ID_CHUNK = 50_000  # ids per = ANY(array) on PostgreSQL
PENDING, SENT, DEAD = "pending", "sent", "dead"
REPLAY_PRUNE_INTERVAL = 60.0  # seconds between prunes of expired replay keys (#11)
REPLAY_PRUNE_BATCH = 5000  # expired replay keys deleted per prune at most
REPLAY_BUSY_TIMEOUT_MS = 250  # SQLite: how long a replay key's write waits for the file's lock
REPLAY_FLUSH_RETRY = 5.0  # SQLite: seconds before writing replay keys is tried again after a failure
REPLAY_PENDING_MAX = 200_000  # SQLite: keys remembered in the process (and waiting to be written), at most

_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _pg_json(value: Any) -> str:
    """JSON text for PostgreSQL, which refuses an escaped NUL in jsonb: it becomes U+FFFD."""
    text = json.dumps(value)
    return _NUL_ESCAPE.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


class StateStore:
    """Open with `await StateStore.open(target)`; close with `await store.close()`."""

    def __init__(self, target: str, writer: AsyncEngine, reader: AsyncEngine, coordination: Coordination):
        self.target = target  # the SQLite path or the PostgreSQL URL (never shown: see __repr__)
        self._writer = writer
        self._reader = reader
        self._coord = coordination
        self.dialect = writer.dialect.name
        self._url = target if self.dialect == "postgresql" else None  # its password is masked in every error
        self._closed = False
        self._next_replay_prune = 0.0  # monotonic: when first_seen next prunes expired keys
        self._replay_here: dict[str, datetime] = {}  # SQLite: keys this process let through, until they expire
        self._replay_pending: dict[str, datetime] = {}  # SQLite: those not written yet
        self._replay_flusher: asyncio.Task[None] | None = None
        self._ledger_writer: AsyncEngine | None = None  # SQLite: the replay ledger's own connection

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        target: str,
        *,
        replica: str | None = None,
        lease: float = DEFAULT_LEASE,
        heartbeat: bool = True,
        pool_size: int = 4,
        timeout: float = 30.0,
        credentials: Credentials | None = None,
    ) -> "StateStore":
        """`target` is a PostgreSQL URL (`postgresql://…`) or a SQLite file path. Connects,
        migrates (once across replicas), and on PostgreSQL starts the lease heartbeat.
        `credentials` (PostgreSQL only) gives each new connection its password, e.g. a Lakebase
        OAuth token (bot.adapters.state.lakebase); pooled connections are recycled within its lifetime."""
        if is_postgres_url(target):
            writer = await _postgres_engine(target, pool_size, timeout, credentials)
            reader = writer
        else:
            writer, reader = _sqlite_engines(target)
        try:
            schema_key = await _migrate(writer, target)
            if writer.dialect.name == "postgresql":
                coordination: Coordination = PostgresCoordination(
                    writer, schema_key, replica=replica, lease=lease, heartbeat=heartbeat
                )
            else:
                coordination = LocalCoordination()
            store = cls(target, writer, reader, coordination)
            await coordination.start()
        except BaseException:
            await writer.dispose()
            if reader is not writer:
                await reader.dispose()
            raise
        log.info("state store: %r", store)
        return store

    @property
    def replica(self) -> str:
        return self._coord.replica

    def __repr__(self) -> str:
        shown = redact_url(self.target) if self.dialect == "postgresql" else self.target
        return f"StateStore({self.dialect}: {shown!r}, replica={self.replica!r})"

    async def schema_revision(self) -> str | None:
        async with self._reader.connect() as conn:
            return await conn.run_sync(migrate.current)

    async def close(self) -> None:
        if self._closed:
            return
        if self._replay_pending:  # a restart must still know them
            try:
                await asyncio.wait_for(self.flush_replay_keys(), REPLAY_FLUSH_RETRY)
            except (StateStoreError, asyncio.TimeoutError) as exc:
                log.warning("%d replay keys not written before closing: %s", len(self._replay_pending), exc)
        self._closed = True
        if self._replay_flusher is not None:
            self._replay_flusher.cancel()
            await asyncio.gather(self._replay_flusher, return_exceptions=True)
        await self._coord.stop()
        if self._ledger_writer is not None:
            await self._ledger_writer.dispose()
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()

    # -- plumbing --------------------------------------------------------------------------

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with _store_errors("read", self._url):
            async with self._reader.connect() as conn:
                yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        with _store_errors("write", self._url):
            async with self._writer.begin() as conn:
                yield conn

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT, which has ON CONFLICT on both (same API)."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def _stored(self, value: str) -> str:
        """A text value as the database holds it (for mapping lookups back to the caller's)."""
        return str(nul_safe(value, self.dialect))

    # -- replica coordination ----------------------------------------------------------------

    def sync_lock(self) -> AbstractAsyncContextManager[bool]:
        """`async with store.sync_lock() as held:` held is False while another sync runs."""
        return self._coord.sync_lock()

    async def request_sync(self) -> None:
        """Ask whoever holds the sync lock for one more sync after theirs."""
        if self._coord.shared:
            await self.set_meta("sync_requested", _now().isoformat())

    async def take_sync_request(self) -> bool:
        """True, once, if a sync was requested since the last take."""
        if not self._coord.shared:
            return False
        async with self._write() as conn:
            result = await conn.execute(t.meta.delete().where(t.meta.c.key == "sync_requested"))
        return result.rowcount == 1

    async def renew_leases(self) -> None:
        await self._coord.renew()

    # -- sync state --------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async with self._read() as conn:
            return (await conn.execute(select(t.meta.c.value).where(t.meta.c.key == key))).scalar()

    async def set_meta(self, key: str, value: str) -> None:
        stmt = self._insert(t.meta).values(key=key, value=value)
        async with self._write() as conn:
            await conn.execute(stmt.on_conflict_do_update(index_elements=[t.meta.c.key], set_={"value": value}))

    async def watermark(self) -> datetime | None:
        text = await self.get_meta("watermark")
        return None if text is None else parse_time(text)

    async def seen(self, event_ids: Sequence[str]) -> set[str]:
        wanted = {self._stored(e): e for e in event_ids}
        found: set[str] = set()
        async with self._read() as conn:
            for chunk in _chunks(list(wanted), PG_ID_CHUNK if self.dialect == "postgresql" else ID_CHUNK):
                rows = await conn.execute(select(t.events.c.event_id).where(self._one_of(t.events.c.event_id, chunk)))
                found.update(wanted[r[0]] for r in rows)
        return found

    def _one_of(self, column: Any, values: list[str]) -> Any:
        """column IN values, every value bound: on PostgreSQL one array parameter (= ANY), on
        SQLite one parameter per value (its limit is far above a chunk)."""
        if self.dialect == "postgresql":
            return column == any_(bindparam("values", values, type_=postgresql.ARRAY(Text)))
        return column.in_(values)

    async def last_heartbeats(self, detection: str, since: datetime, exclude: str = "") -> list[HeartbeatSeen]:
        """The hosts that sent an event of that (heartbeat) detection at or after `since`, each with
        its newest event of any detection but `exclude` (a host that still reports is alive)."""
        beating = select(t.events.c.instance_id).where(
            t.events.c.detection == detection, t.events.c.event_time >= since,
            t.events.c.instance_id.is_not(None), t.events.c.instance_id != "",
        )
        newest = _newest_of_each(
            (t.events.c.instance_id, t.events.c.workspace_id, t.events.c.cluster_id, t.events.c.event_time),
            t.events.c.instance_id, t.events.c.event_time,
            t.events.c.instance_id.in_(beating), t.events.c.event_time >= since, t.events.c.detection != exclude,
        )
        async with self._read() as conn:
            rows = await conn.execute(newest.order_by(newest.selected_columns.instance_id))
            return [HeartbeatSeen(r.instance_id, r.workspace_id or "", r.cluster_id or None, r.event_time) for r in rows]

    async def clusters_of_instances(self, instance_ids: Iterable[str]) -> dict[str, str]:
        """instance id -> the cluster resolved for it at ingest (the latest event's), for the
        instances the bot has stored events of; instances it never resolved are absent."""
        wanted = {self._stored(i): i for i in instance_ids if i}
        if not wanted:
            return {}
        newest = _newest_of_each(
            (t.events.c.instance_id, t.events.c.cluster_id), t.events.c.instance_id, t.events.c.event_time,
            t.events.c.instance_id.in_(list(wanted)), t.events.c.cluster_id.is_not(None), t.events.c.cluster_id != "",
        )
        async with self._read() as conn:
            rows = await conn.execute(newest)
            return {wanted[r.instance_id]: r.cluster_id for r in rows}

    async def latest_findings(self, groups: Iterable[str]) -> dict[str, Finding]:
        """The newest finding of each group key, the one a new event may join."""
        wanted = {self._stored(g): g for g in groups}
        if not wanted:
            return {}
        newest = _newest_of_each(tuple(t.findings.c), t.findings.c.grp, t.findings.c.first_seen,
                                 t.findings.c.grp.in_(list(wanted)))
        async with self._read() as conn:
            rows = await conn.execute(newest)
            return {wanted[r.grp]: _finding_from_row(r) for r in rows}

    async def record_sync(
        self,
        events: Sequence[EventRecord],
        findings: Sequence[Finding],
        outbox: Sequence[NewOutboxItem],
        watermark: datetime | None,
        suppressed: Sequence[tuple[str, str | None]] = (),
        *,
        incidents: Sequence[Incident] = (),
        members: Sequence[tuple[str, str]] = (),
        close_incidents: Sequence[str] = (),
    ) -> None:
        """Store one sync's results atomically: events, findings, outbox items, watermark, and
        for each suppressed event (suppression id, originating finding key) the counts; storm
        incidents (new or joined), their new members (finding key, incident key), and the
        incidents whose storm is over. The watermark never moves back. Updates, digests and
        incident updates are folded into the thread's pending one when there is one (#14)."""
        at = _now()
        # every value is converted first: a row that cannot be stored fails before any write
        event_rows = [_event_values(e, at) for e in events]
        finding_rows = [_finding_values(f) for f in findings]
        severity = {f.key: int(f.detection.severity) for f in findings}
        outbox_rows = [_outbox_values(item, at, severity.get(item.finding_key, 0)) for item in outbox]
        for row in outbox_rows:
            json.dumps(row["payload"])  # what json cannot encode fails here, before the transaction
        incident_rows = [_incident_values(i) for i in incidents]
        await self._coord.check_sync_lock()
        async with self._write() as conn:
            # in batches: SQLAlchemy prepares each batch's parameters on the event loop, and between
            # batches the loop serves other requests (/healthz, Slack clicks) (#14)
            for batch in _batches(event_rows):
                await conn.execute(self._insert(t.events).on_conflict_do_nothing(index_elements=[t.events.c.event_id]),
                                   batch)
            for batch in _batches(finding_rows):
                await conn.execute(self._upsert_finding(), batch)
            await self._count_suppressed(conn, suppressed)  # after the upserts, which write suppressed_count
            if incident_rows:
                stmt = self._insert(t.incidents)
                await conn.execute(stmt.on_conflict_do_update(index_elements=[t.incidents.c.key], set_={
                    "last_joined_at": stmt.excluded.last_joined_at, "closed_at": stmt.excluded.closed_at}),
                    incident_rows)
            if members:
                await conn.execute(
                    self._insert(t.incident_members).on_conflict_do_nothing(
                        index_elements=[t.incident_members.c.finding_key]),
                    [{"finding_key": f, "incident_key": i} for f, i in members])
            if close_incidents:
                await conn.execute(update(t.incidents).where(
                    t.incidents.c.key.in_(list(close_incidents)), t.incidents.c.closed_at.is_(None)
                ).values(closed_at=at))
            if outbox_rows:
                outbox_rows = await self._fold(conn, outbox_rows)
            for batch in _batches(outbox_rows):
                await conn.execute(t.outbox.insert(), batch)
            if watermark is not None:
                await self._advance_watermark(conn, watermark)

    async def _fold(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows still to insert once updates, digests and incident updates are folded into the
        pending, unattempted item of their thread and kind (in this batch or stored): an update
        renders the message as it is when sent, digests add up. An update behind a pending parent
        post is dropped: the post shows the finding as it is then. A stored item is only changed
        while unattempted; once the worker has attempted it, a new row is written."""
        folded = [r for r in rows if r["kind"] in {k.value for k in FOLDED_KINDS}]
        if not folded:
            return rows
        keys = list({r["finding_key"] for r in folded})
        stored: dict[tuple[str, str], Any] = {}
        for chunk in _chunks(keys):
            found = await conn.execute(
                select(t.outbox.c.id, t.outbox.c.finding_key, t.outbox.c.kind, t.outbox.c.payload)
                .where(t.outbox.c.finding_key.in_(chunk), t.outbox.c.state == PENDING, t.outbox.c.attempts == 0,
                       t.outbox.c.kind.in_([k.value for k in (*FOLDED_KINDS, OutboxKind.POST, OutboxKind.INCIDENT)]))
                .order_by(t.outbox.c.id)
            )
            for r in found:
                stored.setdefault((r.finding_key, r.kind), r)
        keep: list[dict[str, Any]] = []
        batch: dict[tuple[str, str], dict[str, Any]] = {}
        merged: dict[int, dict[str, Any]] = {}  # stored id -> its new payload
        template: dict[int, dict[str, Any]] = {}  # stored id -> a row of this batch for its thread
        for row in rows:
            key = (row["finding_key"], row["kind"])
            if row["kind"] not in {k.value for k in FOLDED_KINDS}:
                keep.append(row)
                continue
            if row["kind"] == OutboxKind.UPDATE.value and (row["finding_key"], OutboxKind.POST.value) in stored:
                continue
            if (row["kind"] == OutboxKind.INCIDENT_UPDATE.value
                    and (row["finding_key"], OutboxKind.INCIDENT.value) in stored):
                continue
            if row["kind"] != OutboxKind.DIGEST.value:
                if key in stored or key in batch:
                    continue
                batch[key] = row
                keep.append(row)
                continue
            if key in batch:
                batch[key]["payload"] = _merge_digest(batch[key]["payload"], row["payload"])
            elif key in stored:
                old = stored[key]
                merged[old.id] = _merge_digest(merged.get(old.id, old.payload), row["payload"])
                template.setdefault(old.id, row)
            else:
                batch[key] = row
                keep.append(row)
        for item_id, payload in merged.items():
            done = (await conn.execute(
                update(t.outbox).where(t.outbox.c.id == item_id, t.outbox.c.state == PENDING, t.outbox.c.attempts == 0)
                .values(payload=payload).returning(t.outbox.c.id)
            )).first()
            if done is None:  # attempted meanwhile (another replica): a row of its own
                old_payload = next(r.payload for r in stored.values() if r.id == item_id)
                keep.append({**template[item_id], "payload": _unmerged(payload, old_payload)})
        return keep

    def _upsert_finding(self) -> Any:
        stmt = self._insert(t.findings)
        keep = ("first_seen", "last_seen", "count", "hosts", "context", "status", "status_by", "status_note",
                "suppressed_count")
        return stmt.on_conflict_do_update(
            index_elements=[t.findings.c.key], set_={name: stmt.excluded[name] for name in keep}
        )

    async def _advance_watermark(self, conn: AsyncConnection, watermark: datetime) -> None:
        current = (
            await conn.execute(select(t.meta.c.value).where(t.meta.c.key == "watermark").with_for_update())
        ).scalar()
        if current is not None and parse_time(current) >= watermark:
            return
        value = watermark.astimezone(timezone.utc).isoformat()
        stmt = self._insert(t.meta).values(key="watermark", value=value)
        await conn.execute(stmt.on_conflict_do_update(index_elements=[t.meta.c.key], set_={"value": value}))

    async def _count_suppressed(self, conn: AsyncConnection, hits: Sequence[tuple[str, str | None]]) -> None:
        if not hits:
            return
        at = _now()
        for suppression_id, n in Counter(s for s, _ in hits).items():
            stmt = self._insert(t.suppression_hits).values(suppression_id=suppression_id, matched=n, last_matched_at=at)
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=[t.suppression_hits.c.suppression_id],
                set_={"matched": t.suppression_hits.c.matched + n, "last_matched_at": at},
            ))
        for key, n in Counter(k for _, k in hits if k).items():
            await conn.execute(
                update(t.findings).where(t.findings.c.key == key).values(suppressed_count=t.findings.c.suppressed_count + n)
            )

    # -- findings ----------------------------------------------------------------------------

    async def finding(self, key: str) -> Finding | None:
        async with self._read() as conn:
            row = (await conn.execute(select(t.findings).where(t.findings.c.key == key))).first()
        return None if row is None else _finding_from_row(row)

    async def open_findings(self, limit: int = 200) -> list[Finding]:
        """Findings nobody closed (open or acknowledged), newest activity first."""
        closed = [FindingStatus.BENIGN.value, FindingStatus.TERMINATED.value]
        query = (select(t.findings).where(t.findings.c.status.not_in(closed))
                 .order_by(t.findings.c.last_seen.desc()).limit(limit))
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [_finding_from_row(row) for row in rows]

    async def events_by_day(self, since: datetime) -> list[tuple[str, str, int]]:
        """(UTC day as YYYY-MM-DD, detection, events) for events at or after `since`, ignored ones left out."""
        query = (select(t.events.c.event_time, t.events.c.detection)
                 .where(t.events.c.event_time >= since, t.events.c.disposition != "ignored"))
        counts: dict[tuple[str, str], int] = {}
        async with self._read() as conn:
            for row in (await conn.execute(query)).all():
                day = row.event_time.astimezone(timezone.utc).strftime("%Y-%m-%d")
                counts[(day, row.detection)] = counts.get((day, row.detection), 0) + 1
        return sorted((day, detection, n) for (day, detection), n in counts.items())

    async def events_between(self, start: datetime, end: datetime) -> list[tuple[str, str, str, int]]:
        """(detection, cluster or "instance <id>", disposition, events) for events in [start, end)."""
        e = t.events
        query = (select(e.c.detection, e.c.cluster_id, e.c.instance_id, e.c.disposition, func.count())
                 .where(e.c.event_time >= start, e.c.event_time < end)
                 .group_by(e.c.detection, e.c.cluster_id, e.c.instance_id, e.c.disposition))
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [(r[0], r[1] or (f"instance {r[2]}" if r[2] else "unknown host"), r[3], int(r[4])) for r in rows]

    async def suppressions_matched_between(self, start: datetime, end: datetime) -> dict[str, int]:
        """suppression id -> events it has hidden in all, for those that last matched in [start, end)."""
        h = t.suppression_hits
        query = select(h.c.suppression_id, h.c.matched).where(h.c.last_matched_at >= start, h.c.last_matched_at < end)
        async with self._read() as conn:
            return {r[0]: int(r[1]) for r in (await conn.execute(query)).all()}

    async def claim_digest(self, day: str, now: datetime, stale_after: float = 600.0) -> bool:
        """True for the one caller (process or replica) that may post this day's digest: the first
        to claim it, or a later one when the claim was not marked posted within `stale_after` s."""
        d = t.digests
        async with self._write() as conn:
            inserted = (await conn.execute(
                self._insert(d).values(day=day, claimed_by=self.replica, claimed_at=now)
                .on_conflict_do_nothing(index_elements=[d.c.day]).returning(d.c.day)
            )).first() is not None
            if inserted:
                return True
            taken = (await conn.execute(
                d.update().where(d.c.day == day, d.c.posted_ts.is_(None),
                                 d.c.claimed_at < now - timedelta(seconds=stale_after))
                .values(claimed_by=self.replica, claimed_at=now).returning(d.c.day)
            )).first()
        return taken is not None

    async def digest_posted(self, day: str, ts: str) -> None:
        async with self._write() as conn:
            await conn.execute(t.digests.update().where(t.digests.c.day == day).values(posted_ts=ts))

    async def digest_of(self, day: str) -> tuple[str, str | None] | None:
        """(claimed_by, posted ts) of a day's digest, or None."""
        async with self._read() as conn:
            row = (await conn.execute(select(t.digests.c.claimed_by, t.digests.c.posted_ts)
                                      .where(t.digests.c.day == day))).first()
        return None if row is None else (row[0], row[1])

    async def message_of(self, key: str) -> tuple[str, str] | None:
        async with self._read() as conn:
            row = (await conn.execute(select(t.findings.c.channel, t.findings.c.ts).where(t.findings.c.key == key))).first()
        return None if row is None or row.ts is None else (row.channel, row.ts)

    async def counts(self) -> dict[str, int]:
        async with self._read() as conn:
            rows = await conn.execute(select(t.events.c.disposition, func.count()).group_by(t.events.c.disposition))
            counts = {r[0]: r[1] for r in rows}
            row = (await conn.execute(select(func.count(), func.count(t.findings.c.ts)))).one()
        counts["findings"], counts["posted"] = row[0], row[1]
        return counts

    async def set_finding_status(self, key: str, status: FindingStatus, by: str, note: str | None) -> None:
        async with self._write() as conn:
            await conn.execute(
                update(t.findings).where(t.findings.c.key == key)
                .values(status=status.value, status_by=by, status_note=note)
            )

    # -- response actions --------------------------------------------------------------------

    async def claim_action(self, key: str, action: str, user_id: str) -> bool:
        """True for the first caller only: a double click or two responders run it once."""
        stmt = self._insert(t.action_claims).values(finding_key=key, action=action, user_id=user_id, at=_now())
        async with self._write() as conn:  # RETURNING, not rowcount: psycopg (SQLAlchemy 2.1) counts no INSERT
            claimed = (await conn.execute(stmt.on_conflict_do_nothing().returning(t.action_claims.c.user_id))).first()
        return claimed is not None

    async def release_claim(self, key: str, action: str) -> None:
        async with self._write() as conn:
            await conn.execute(
                t.action_claims.delete().where(t.action_claims.c.finding_key == key, t.action_claims.c.action == action)
            )

    async def record_action(
        self, key: str, action: str, user_id: str, outcome: str, message: str, *, dry_run: bool,
        outbox: Sequence[NewOutboxItem] = (),
    ) -> None:
        """The audit record and the Slack updates it causes, in one transaction."""
        at = _now()
        async with self._write() as conn:
            await conn.execute(t.actions.insert().values(
                finding_key=key, action=action, user_id=user_id, outcome=outcome, message=message,
                dry_run=bool(dry_run), at=at,
            ))
            if outbox:
                await conn.execute(t.outbox.insert(), [_outbox_values(item, at) for item in outbox])

    async def actions_for(self, key: str) -> list[dict[str, Any]]:
        async with self._read() as conn:
            rows = await conn.execute(select(t.actions).where(t.actions.c.finding_key == key).order_by(t.actions.c.id))
            return [{**r._asdict(), "dry_run": int(bool(r.dry_run)), "at": r.at.isoformat()} for r in rows]

    # -- benign suppressions -----------------------------------------------------------------

    async def add_suppression(self, s: Suppression) -> Suppression:
        """Store a Slack-made suppression; returns it with its id ("b<n>"). One transaction keeps
        one active suppression per (detection, scope, patterns): when another already hides the
        same events (two responders submitting at once, or twice), SuppressionExists names it."""
        now = _now()
        key = same_events_key(s)
        values = {
            "detection": s.detection, "scope": s.scope.to_json(), "match": {k: list(v) for k, v in s.match.items()},
            "reason": s.reason, "created_by": s.created_by, "created_at": s.created_at or now,
            "expires_at": s.expires_at, "finding_key": s.finding_key, "active_key": key,
        }
        if s.expires_at is not None and s.expires_at <= now:
            values["active_key"] = None  # expired on arrival: it hides nothing, so it holds no key
        insert = self._insert(t.suppressions).values(**values)
        async with self._write() as conn:
            # one that expired no longer holds the key: the new one may take it
            await conn.execute(update(t.suppressions).where(
                t.suppressions.c.active_key == key, t.suppressions.c.expires_at.is_not(None),
                t.suppressions.c.expires_at <= now,
            ).values(active_key=None))
            row = (await conn.execute(
                insert.on_conflict_do_nothing(index_elements=[t.suppressions.c.active_key]).returning(t.suppressions)
            )).first()
            existing = None if row is not None else (await conn.execute(
                select(t.suppressions).where(t.suppressions.c.active_key == key))).first()
        if row is not None:
            return _suppression_from_row(row)
        if existing is None:  # the other one was removed in between: nothing holds the key now
            raise StateStoreError("state store write failed: the suppression changed meanwhile; submit it again")
        raise SuppressionExists(_suppression_from_row(existing))

    async def suppression(self, suppression_id: str) -> Suppression | None:
        """A Slack-made suppression by id, removed or expired ones included."""
        number = _suppression_number(suppression_id)
        if number is None:
            return None
        async with self._read() as conn:
            row = (await conn.execute(select(t.suppressions).where(t.suppressions.c.id == number))).first()
        return None if row is None else _suppression_from_row(row)

    async def active_suppressions(self, now: datetime) -> list[Suppression]:
        """Slack-made suppressions not removed and not expired at `now`, oldest first."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(t.suppressions).where(t.suppressions.c.removed_at.is_(None)).order_by(t.suppressions.c.id)
            )
            found = [_suppression_from_row(r) for r in rows]
        return [s for s in found if s.active(now)]

    async def remove_suppression(self, suppression_id: str, by: str) -> bool:
        """Soft removal: kept for the audit trail, never matches again. False if unknown or gone."""
        number = _suppression_number(suppression_id)
        if number is None:
            return False
        async with self._write() as conn:
            result = await conn.execute(
                update(t.suppressions).where(t.suppressions.c.id == number, t.suppressions.c.removed_at.is_(None))
                .values(removed_by=by, removed_at=_now(), active_key=None)
            )
        return result.rowcount == 1

    async def suppression_counts(self) -> dict[str, int]:
        """suppression id -> events it has hidden (Slack-made and rules alike)."""
        async with self._read() as conn:
            rows = await conn.execute(select(t.suppression_hits.c.suppression_id, t.suppression_hits.c.matched))
            return {r[0]: r[1] for r in rows}

    async def count_suppressed(self, suppression_id: str, finding_key: str | None, events: int = 1) -> None:
        """Count matches outside a sync (the sync counts inside record_sync)."""
        async with self._write() as conn:
            await self._count_suppressed(conn, [(suppression_id, finding_key)] * events)

    # -- replays (#11) -------------------------------------------------------------------------

    async def first_seen(self, key: str, expires_at: datetime) -> bool:
        """True for the first caller with this key until it expires, across restarts and
        replicas; False for every later one. Every key is written with INSERT … ON CONFLICT DO
        NOTHING; expired keys are free again, and pruned now and then.

        PostgreSQL (replicas): that INSERT decides, in the caller's time. SQLite (one process per
        file): the keys stored before (a restart) are read on the readers, which never wait for the
        writer; within the process the pending keys decide; and the new key is written at once in
        the background, on the ledger's own connection, which waits at most 250 ms for the file's
        lock and is tried again later: the store's single writer is never held up ahead of the
        request's own writes (a locked file must not stall a click: tests/e2e/test_never_blind)."""
        if self.dialect == "sqlite":
            return await self._first_seen_here(key, expires_at)
        keys = t.replay_keys
        async with self._write() as conn:
            await conn.execute(keys.delete().where(keys.c.key == key, keys.c.expires_at <= _now()))
            inserted = (await conn.execute(  # RETURNING, not rowcount: psycopg may not count an INSERT
                self._insert(keys).values(key=key, expires_at=expires_at).on_conflict_do_nothing(
                    index_elements=[keys.c.key]).returning(keys.c.key)
            )).first() is not None
            await self._prune_replay_keys(conn)
        return inserted

    async def _first_seen_here(self, key: str, expires_at: datetime) -> bool:
        keys = t.replay_keys
        stored = self._stored(key)
        async with self._read() as conn:
            before = (await conn.execute(
                select(keys.c.key).where(keys.c.key == stored, keys.c.expires_at > _now()))).first()
        here = self._replay_here.get(key)
        if before is not None or (here is not None and here > _now()):
            return False
        self._replay_here[key] = self._replay_pending[key] = expires_at  # no await since the check: the first
        for remembered in (self._replay_here, self._replay_pending):
            while len(remembered) > REPLAY_PENDING_MAX:
                remembered.pop(next(iter(remembered)))
        if self._replay_flusher is None or self._replay_flusher.done():
            self._replay_flusher = asyncio.get_running_loop().create_task(self._flush_replay_keys_later())
        return True

    async def _flush_replay_keys_later(self) -> None:
        while self._replay_pending and not self._closed:
            try:
                await self.flush_replay_keys()
            except Exception as exc:  # kept, and tried again: this process remembers them meanwhile
                log.warning("replay keys not written yet (%s); trying again in %gs", exc, REPLAY_FLUSH_RETRY)
                await asyncio.sleep(REPLAY_FLUSH_RETRY)

    async def flush_replay_keys(self) -> None:
        """Write the keys this process let through and has not written yet (SQLite), in one
        transaction on the ledger's own connection; a key that cannot be written stays pending."""
        batch = dict(self._replay_pending)
        if not batch or self.dialect != "sqlite":
            return
        if self._ledger_writer is None:
            self._ledger_writer = _sqlite_ledger_engine(self.target)
        keys, now = t.replay_keys, _now()
        rows = [{"key": k, "expires_at": until} for k, until in batch.items() if until > now]
        with _store_errors("write"):
            async with self._ledger_writer.begin() as conn:
                if rows:
                    await conn.execute(keys.delete().where(keys.c.key.in_([r["key"] for r in rows]),
                                                           keys.c.expires_at <= now))
                    await conn.execute(self._insert(keys).on_conflict_do_nothing(index_elements=[keys.c.key]), rows)
                await self._prune_replay_keys(conn)
        for k in batch:
            if self._replay_pending.get(k) == batch[k]:
                del self._replay_pending[k]
        while self._replay_here:  # in the order let through, which is (nearly) the order they expire in
            oldest, until = next(iter(self._replay_here.items()))
            if until > now:
                break
            del self._replay_here[oldest]

    async def _prune_replay_keys(self, conn: AsyncConnection) -> None:
        if time.monotonic() < self._next_replay_prune:
            return
        self._next_replay_prune = time.monotonic() + REPLAY_PRUNE_INTERVAL
        keys = t.replay_keys
        expired = select(keys.c.key).where(keys.c.expires_at <= _now()).limit(REPLAY_PRUNE_BATCH)
        await conn.execute(keys.delete().where(keys.c.key.in_(expired.scalar_subquery())))

    async def replay_keys_stored(self) -> int:
        async with self._read() as conn:
            return int((await conn.execute(select(func.count()).select_from(t.replay_keys))).scalar() or 0)

    # -- outbox ------------------------------------------------------------------------------

    async def due_outbox(self, limit: int = 100, skip: Sequence[str] = ()) -> list[OutboxItem]:
        """Due items: parent posts (findings' and incidents') first, the most severe first;
        everything else in the order it was written, which keeps each thread in order. A thread
        with an item waiting for a retry waits as a whole; `skip` leaves out threads (those of a
        channel waiting for its pace). On PostgreSQL only the items of threads this replica holds
        (claiming free ones first). Both reads use an index in order (#14): no join, no sort of
        every pending row."""
        now = time.time()
        keys = await self._coord.claim_threads(now)
        if keys is not None and not keys:
            return []
        async with self._read() as conn:
            held = {r[0] for r in await conn.execute(
                select(t.outbox.c.finding_key).where(t.outbox.c.state == PENDING, t.outbox.c.not_before > now)
                .distinct())}
            held.update(skip)
            stmt = (  # an item not due yet holds its thread: `held` leaves it out with its thread
                select(t.outbox.c.id, t.outbox.c.finding_key, t.outbox.c.kind, t.outbox.c.payload, t.outbox.c.attempts)
                .where(t.outbox.c.state == PENDING)
                .order_by(t.outbox.c.priority.desc(), t.outbox.c.id)
                .limit(limit)
            )
            if keys is not None:
                stmt = stmt.where(t.outbox.c.finding_key.in_(keys))
            if held:
                stmt = stmt.where(t.outbox.c.finding_key.not_in(list(held)))
            rows = (await conn.execute(stmt)).all()
        return _outbox_items(rows)

    async def pending_items(self, key: str, kind: OutboxKind) -> list[OutboxItem]:
        """A finding's pending items of one kind, oldest first (for coalescing)."""
        stmt = (
            select(t.outbox.c.id, t.outbox.c.finding_key, t.outbox.c.kind, t.outbox.c.payload, t.outbox.c.attempts)
            .where(t.outbox.c.finding_key == key, t.outbox.c.kind == kind.value, t.outbox.c.state == PENDING)
            .order_by(t.outbox.c.id)
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return _outbox_items(rows)

    async def outbox_depth(self) -> int:
        async with self._read() as conn:
            return int((await conn.execute(select(func.count()).where(t.outbox.c.state == PENDING))).scalar() or 0)

    async def _outbox_update(self, where: ColumnElement[bool], **values: Any) -> None:
        async with self._write() as conn:
            await conn.execute(update(t.outbox).where(where).values(**values))

    async def outbox_sent(self, item_id: int) -> None:
        await self._outbox_update(t.outbox.c.id == item_id, state=SENT, sent_at=_now())

    async def outbox_retry(self, item_id: int, error: str, not_before: float) -> None:
        # the try was counted by outbox_attempt
        await self._outbox_update(t.outbox.c.id == item_id, last_error=error[:500], not_before=not_before)

    async def outbox_dead(self, item_id: int, error: str) -> None:
        """Slack refused for good (bad channel, bad auth): kept, visible, not retried."""
        await self._outbox_update(t.outbox.c.id == item_id, state=DEAD, attempts=t.outbox.c.attempts + 1,
                                  last_error=error[:500])

    async def outbox_attempt(self, item_id: int) -> Payload | None:
        """Committed before an item goes to Slack, so whoever sends it next checks Slack first.
        Returns the payload as of this attempt (a digest may have been folded into meanwhile;
        from now on it never is), None if the item is no longer pending."""
        async with self._write() as conn:
            row = (await conn.execute(
                update(t.outbox).where(t.outbox.c.id == item_id).values(attempts=t.outbox.c.attempts + 1)
                .returning(t.outbox.c.kind, t.outbox.c.payload, t.outbox.c.state)
            )).first()
        if row is None or row.state != PENDING:
            return None
        try:
            return payload_from_json(row.kind, row.payload)
        except PayloadError:
            return None

    # -- storm incidents (#14) ----------------------------------------------------------------

    async def open_incidents(self) -> list[Incident]:
        async with self._read() as conn:
            rows = await conn.execute(select(t.incidents).where(t.incidents.c.closed_at.is_(None)))
            return [_incident_from_row(r) for r in rows]

    async def incident(self, key: str) -> Incident | None:
        async with self._read() as conn:
            row = (await conn.execute(select(t.incidents).where(t.incidents.c.key == key))).first()
        return None if row is None else _incident_from_row(row)

    async def incidents_of(self, finding_keys: Iterable[str]) -> dict[str, str]:
        """finding key -> the incident it was rolled up into, for those that were."""
        wanted = {self._stored(k): k for k in finding_keys}
        found: dict[str, str] = {}
        async with self._read() as conn:
            for chunk in _chunks(list(wanted)):
                rows = await conn.execute(select(t.incident_members.c.finding_key, t.incident_members.c.incident_key)
                                          .where(t.incident_members.c.finding_key.in_(chunk)))
                found.update({wanted[r[0]]: r[1] for r in rows})
        return found

    async def incident_members(self, key: str, offset: int = 0) -> list[Finding]:
        """The incident's findings in the order they joined (from the `offset`-th on)."""
        m = t.incident_members
        stmt = (select(t.findings).select_from(m.join(t.findings, t.findings.c.key == m.c.finding_key))
                .where(m.c.incident_key == key).order_by(m.c.id).offset(offset))
        async with self._read() as conn:
            return [_finding_from_row(r) for r in await conn.execute(stmt)]

    async def incident_summary(self, key: str, top: int = 100) -> IncidentSummary | None:
        """What the incident message shows, without reading every member whole: the counts in
        SQL (hosts from the members' host lists), the `top` members by events as rows."""
        m, f = t.incident_members, t.findings
        joined = m.join(f, f.c.key == m.c.finding_key)
        offered = f.c.status.in_([FindingStatus.OPEN.value, FindingStatus.ACKNOWLEDGED.value])
        totals = (select(func.count(), func.coalesce(func.sum(f.c.count), 0), func.min(f.c.first_seen),
                         func.max(f.c.last_seen),
                         func.count(func.distinct(case((offered, f.c.cluster_id), else_=None))))
                  .select_from(joined).where(m.c.incident_key == key))
        spread = select(f.c.key, f.c.cluster_id, f.c.grp, f.c.hosts).select_from(joined).where(m.c.incident_key == key)
        best = (select(t.findings).select_from(joined).where(m.c.incident_key == key)
                .order_by(f.c.count.desc(), f.c.key).limit(top))
        async with self._read() as conn:
            n, events, first, last, open_clusters = (await conn.execute(totals)).one()
            if not n:
                return None
            hosts: set[str] = set()
            clusters, workspaces = set(), set()
            for r in await conn.execute(spread):
                hosts.update(r.hosts or ())
                clusters.add(r.cluster_id or r.key)
                workspaces.add(str(r.grp).split("|", 1)[0])  # a group key starts with its workspace id
            rows = [cluster_row(_finding_from_row(r)) for r in await conn.execute(best)]
        rows.sort(key=lambda r: (-r.events, r.name or "", r.finding_key))
        return IncidentSummary(events=int(events), findings=int(n), clusters=len(clusters), hosts=len(hosts),
                               workspaces=len(workspaces), first_seen=first, last_seen=last, rows=tuple(rows),
                               open_clusters=int(open_clusters))

    async def incident_posted(self, item_id: int, key: str, ts: str) -> None:
        """The incident's Slack ts and its sent item together (a restart never posts it again)."""
        async with self._write() as conn:
            await conn.execute(update(t.incidents).where(t.incidents.c.key == key).values(ts=ts))
            await conn.execute(update(t.outbox).where(t.outbox.c.id == item_id).values(state=SENT, sent_at=_now()))

    async def incident_listed(self, key: str, listed: int) -> None:
        """How many members its thread lists now (after each listing message)."""
        async with self._write() as conn:
            await conn.execute(update(t.incidents).where(t.incidents.c.key == key, t.incidents.c.listed < listed)
                               .values(listed=listed))

    async def outbox_dead_for_finding(self, key: str, error: str) -> None:
        await self._outbox_update((t.outbox.c.finding_key == key) & (t.outbox.c.state == PENDING), state=DEAD,
                                  last_error=error[:500])

    async def posted_with_message(self, item_id: int, key: str, channel: str, ts: str) -> None:
        """Record Slack's ts and the sent item together, so a restart never posts it again."""
        async with self._write() as conn:
            await conn.execute(update(t.findings).where(t.findings.c.key == key).values(channel=channel, ts=ts))
            await conn.execute(update(t.outbox).where(t.outbox.c.id == item_id).values(state=SENT, sent_at=_now()))


@contextmanager
def _store_errors(what: str, url: str | None = None) -> Iterator[None]:
    """A database failure as one StateStoreError naming the cause (never the statement or its
    values, never the password of `url`); anything else (a value json cannot encode, a bug)
    passes through as it is."""
    try:
        yield
    except SQLAlchemyError as exc:
        reason = " ".join(redact_url(str(getattr(exc, "orig", None) or exc), url=url).split())[:300]
        raise StateStoreError(f"state store {what} failed: {reason}") from exc
    except OSError as exc:
        raise StateStoreError(f"state store {what} failed: {redact_url(str(exc), url=url)}") from exc


# -- engines ---------------------------------------------------------------------------------


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def _sqlite_engines(path: str) -> tuple[AsyncEngine, AsyncEngine]:
    """One writer connection (writes queue in this process instead of fighting over the file's
    lock; `BEGIN IMMEDIATE` takes the lock up front) and a small pool of readers (WAL: readers
    never wait for the writer)."""
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise StateStoreError(f"cannot open the SQLite state store {path}: folder {parent} does not exist")
    writer = _sqlite_engine(path, "BEGIN IMMEDIATE", pool_size=1, max_overflow=0, pool_timeout=60)
    reader = _sqlite_engine(path, "BEGIN", pool_size=4, max_overflow=4)
    return writer, reader


def _sqlite_ledger_engine(path: str) -> AsyncEngine:
    """SQLite: the replay ledger's own writer connection (#11). Its writes are a few rows and
    wait at most REPLAY_BUSY_TIMEOUT_MS for the file's lock, so they never queue on, nor hold up,
    the store's writer: a Slack request's own writes go first."""
    return _sqlite_engine(path, "BEGIN IMMEDIATE", REPLAY_BUSY_TIMEOUT_MS, pool_size=1, max_overflow=0,
                          pool_timeout=60)


def _sqlite_engine(path: str, begin: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS, **pool: Any) -> AsyncEngine:
    """An engine on the SQLite file whose transactions start with `begin`; a statement waits at most
    `busy_timeout_ms` for another connection's lock (sqlite3's own `timeout`), in WAL mode."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": busy_timeout_ms / 1000},
                                 **pool)

    @event.listens_for(engine.sync_engine, "connect")
    def connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own BEGIN is off: ours follows
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def start(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


class Credentials(Protocol):
    """Where a PostgreSQL connection's password comes from when it changes (Lakebase tokens)."""

    async def password(self) -> str: ...

    def pool_recycle(self) -> int: ...


async def _postgres_engine(url: str, pool_size: int, timeout: float, credentials: Credentials | None = None
                           ) -> AsyncEngine:
    import psycopg
    from psycopg.types.json import set_json_dumps

    options = connect_timeout(url)

    async def connect() -> Any:
        extra: dict[str, Any] = {"password": await credentials.password()} if credentials is not None else {}
        conn = await psycopg.AsyncConnection.connect(url, **options, **extra)
        set_json_dumps(_pg_json, conn)  # JSON goes out through psycopg's adapters: NUL-safe there
        return conn

    try:  # one plain connection first: a wrong URL or a server away fails now, in one line
        probe = await connect()
    except (psycopg.Error, ValueError, OSError) as exc:
        reason = " ".join(redact_url(str(exc), url=url).split())
        raise StateStoreError(f"cannot connect to the PostgreSQL state store {redact_url(url)}: {reason}") from None
    await probe.close()
    recycle = {"pool_recycle": credentials.pool_recycle()} if credentials is not None else {}
    engine = create_async_engine(
        "postgresql+psycopg://", async_creator=connect, pool_size=max(2, pool_size), max_overflow=2,
        pool_timeout=timeout, pool_pre_ping=True, **recycle,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET TIME ZONE 'UTC'")
        cursor.execute("SET application_name = 'esm-bot'")
        cursor.close()
        dbapi_connection.commit()

    return engine


async def inspect_postgres(url: str, credentials: Credentials | None = None, timeout: float = 10.0
                           ) -> tuple[str, str | None]:
    """Read-only (for `esm-bot doctor`): the server's version and the schema revision of the
    state tables (None: none there yet). Errors are StateStoreErrors with the password masked."""
    engine = await _postgres_engine(url, 1, timeout, credentials)
    try:
        async with engine.connect() as conn:
            version = str((await conn.exec_driver_sql("SHOW server_version")).scalar() or "?")
            revision = await conn.run_sync(migrate.current)
        return version.split(" ")[0], revision
    except SQLAlchemyError as exc:
        reason = " ".join(redact_url(str(getattr(exc, "orig", None) or exc), url=url).split())[:300]
        raise StateStoreError(f"cannot read the state store {redact_url(url)}: {reason}") from None
    finally:
        await engine.dispose()


async def _migrate(engine: AsyncEngine, target: str) -> int:
    """Migrate under the schema's lock; returns the lock key of the schema the tables live in."""
    try:
        async with engine.begin() as conn:
            key = 0
            if engine.dialect.name == "postgresql":
                schema = (await conn.exec_driver_sql("SELECT current_schema()")).scalar()
                if schema is None:
                    raise StateStoreError("the PostgreSQL state store has no schema to create its tables in "
                                          "(search_path names no existing schema)")
                key = lock_key(schema)
            await conn.run_sync(migrate.upgrade, key)
            return key
    except SQLAlchemyError as exc:
        where = redact_url(target) if is_postgres_url(target) else target
        secret_url = target if is_postgres_url(target) else None
        reason = " ".join(redact_url(str(getattr(exc, "orig", None) or exc), url=secret_url).split())
        raise StateStoreError(f"cannot open the state store {where}: {reason}") from None


# -- rows ------------------------------------------------------------------------------------


WRITE_BATCH = 500  # rows per executemany in record_sync


def _batches(rows: list[dict[str, Any]], size: int = WRITE_BATCH) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _chunks(values: list[str], size: int = ID_CHUNK) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _newest_of_each(columns: tuple[Any, ...], each: Any, by: Any, *where: Any) -> Any:
    """SELECT columns of the newest row (by `by`) of each `each`, among the rows `where` picks:
    one window function, the same on SQLite and PostgreSQL."""
    ranked = (
        select(*columns, func.row_number().over(partition_by=each, order_by=by.desc()).label("rank"))
        .where(*where)
        .subquery()
    )
    return select(*(ranked.c[c.name] for c in columns)).where(ranked.c.rank == 1)


def _event_values(e: EventRecord, at: datetime) -> dict[str, Any]:
    return {
        "event_id": e.event_id, "event_time": e.event_time, "detection": e.detection,
        "disposition": e.disposition, "finding_key": e.finding_key, "workspace_id": e.workspace_id,
        "instance_id": e.instance_id, "cluster_id": e.cluster_id, "stored_at": at,
    }


def _finding_values(f: Finding) -> dict[str, Any]:
    values = {
        "key": f.key, "grp": f.group, "detection": detection_to_json(f.detection),
        "first_event": f.first_event.to_json(), "first_seen": f.first_seen, "last_seen": f.last_seen,
        "count": f.count, "hosts": sorted(f.hosts), "context": context_to_json(f.context),
        "cluster_id": f.cluster_id, "status": f.status.value, "status_by": f.status_by,
        "status_note": f.status_note, "suppressed_count": f.suppressed_count,
    }
    for name in ("detection", "first_event", "hosts", "context"):
        json.dumps(values[name])  # raises TypeError on what json cannot encode, before any write
    return values


def _outbox_values(item: NewOutboxItem, at: datetime, severity: int = 0) -> dict[str, Any]:
    """A parent post goes before thread items, the most severe first: its priority is 10 + the
    severity of its finding (or what the writer gave it, e.g. an incident's)."""
    priority = item.priority or (10 + severity if item.kind is OutboxKind.POST else 0)
    return {"finding_key": item.finding_key, "kind": item.kind.value, "payload": payload_to_json(item.payload),
            "state": PENDING, "attempts": 0, "not_before": 0.0, "created_at": at, "priority": priority}


def _merge_digest(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """Two stored digest payloads as one: events add up, hosts are a union (as DigestPayload.merged)."""
    a, b = payload_from_json(OutboxKind.DIGEST.value, into), payload_from_json(OutboxKind.DIGEST.value, more)
    assert isinstance(a, DigestPayload) and isinstance(b, DigestPayload)
    return payload_to_json(a.merged([b]))


def _unmerged(merged: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """What this batch added to a stored digest (its events; hosts as a union)."""
    body = dict(merged)
    body["events"] = int(merged.get("events", 0)) - int(stored.get("events", 0))
    return body


def _incident_values(i: Incident) -> dict[str, Any]:
    return {"key": i.key, "channel": i.channel, "detection": detection_to_json(i.detection), "opened_at": i.opened_at,
            "last_joined_at": i.last_joined_at, "closed_at": i.closed_at, "ts": i.ts, "listed": i.listed}


def _incident_from_row(row: Any) -> Incident:
    return Incident(key=row.key, channel=row.channel, detection=detection_from_json(row.detection),
                    opened_at=row.opened_at, last_joined_at=row.last_joined_at, closed_at=row.closed_at,
                    ts=row.ts, listed=row.listed)


def _outbox_items(rows: Sequence[Any]) -> list[OutboxItem]:
    items = []
    for r in rows:
        try:
            payload = payload_from_json(r.kind, r.payload)
        except PayloadError as exc:  # written by something else: visible in the log, never sent
            log.error("outbox item %s cannot be read and is skipped: %s", r.id, exc)
            continue
        items.append(OutboxItem(r.id, r.finding_key, payload, r.attempts))
    return items


def _finding_from_row(row: Any) -> Finding:
    return Finding(
        key=row.key,
        group=row.grp,
        detection=detection_from_json(row.detection),
        first_event=parse_audit_row(row.first_event),
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        count=row.count,
        hosts=frozenset(row.hosts),
        context=context_from_json(row.context),
        cluster_id=row.cluster_id,
        status=FindingStatus(row.status),
        status_by=row.status_by,
        status_note=row.status_note,
        suppressed_count=row.suppressed_count,
    )


def _suppression_number(suppression_id: str) -> int | None:
    text = (suppression_id or "").strip().lower()
    if not text.startswith("b") or not text[1:].isdigit() or len(text) > 19:
        return None
    return int(text[1:])


def _suppression_from_row(row: Any) -> Suppression:
    return Suppression(
        id=f"b{row.id}",
        detection=row.detection,
        scope=Scope.from_json(row.scope),
        match={k: tuple(v) for k, v in row.match.items()},
        reason=row.reason,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        finding_key=row.finding_key,
        source="slack",
    )


