"""StateStore on SQLite: watermark, seen events, findings and their Slack messages, the outbox.

Every statement is a local file operation of well under a millisecond in WAL mode, so it runs
on the event loop's thread; that also keeps writes serial without a lock. Each public method
is one transaction: a sync's events, findings, outbox items and watermark land together or not
at all, which is what makes a restart safe.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timezone
from typing import Any

from bot.core.codec import (
    context_from_json,
    context_to_json,
    detection_from_json,
    detection_to_json,
)
from bot.core.events import parse_audit_row, parse_time
from bot.core.findings import Finding, FindingStatus
from bot.core.state import EventRecord, OutboxItem
from bot.core.suppressions import Scope, Suppression

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE events (
        event_id TEXT PRIMARY KEY,
        event_time TEXT NOT NULL,
        detection TEXT NOT NULL,
        disposition TEXT NOT NULL,
        finding_key TEXT,
        workspace_id TEXT,
        instance_id TEXT,
        cluster_id TEXT,
        stored_at TEXT NOT NULL
    );
    CREATE INDEX events_time ON events (event_time);
    CREATE TABLE findings (
        key TEXT PRIMARY KEY,
        grp TEXT NOT NULL,
        detection TEXT NOT NULL,
        first_event TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        count INTEGER NOT NULL,
        hosts TEXT NOT NULL,
        context TEXT NOT NULL,
        cluster_id TEXT,
        status TEXT NOT NULL,
        status_by TEXT,
        status_note TEXT,
        suppressed_count INTEGER NOT NULL DEFAULT 0,
        channel TEXT,
        ts TEXT
    );
    CREATE INDEX findings_group ON findings (grp, first_seen);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        finding_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        not_before REAL NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE INDEX outbox_pending ON outbox (state, id);
    """,
    # 2: response actions: the audit trail, and the claims that make an action run once
    """
    CREATE TABLE actions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        finding_key TEXT NOT NULL,
        action TEXT NOT NULL,
        user_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        message TEXT NOT NULL,
        dry_run INTEGER NOT NULL DEFAULT 0,
        at TEXT NOT NULL
    );
    CREATE INDEX actions_finding ON actions (finding_key, id);
    CREATE TABLE action_claims (
        finding_key TEXT NOT NULL,
        action TEXT NOT NULL,
        user_id TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (finding_key, action)
    );
    """,
    # 3: benign suppressions made in Slack (soft-removed), and match counts for every
    # suppression, Slack-made ("b<n>") or from rules/benign.yml (its slug)
    """
    CREATE TABLE suppressions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        detection TEXT NOT NULL,
        scope TEXT NOT NULL,
        match TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT,
        finding_key TEXT,
        removed_by TEXT,
        removed_at TEXT
    );
    CREATE TABLE suppression_hits (
        suppression_id TEXT PRIMARY KEY,
        matched INTEGER NOT NULL DEFAULT 0,
        last_matched_at TEXT
    );
    """,
    # 4: a thread's pending items found by finding (thread order, coalescing), and events by host
    """
    CREATE INDEX outbox_thread ON outbox (finding_key, state, id);
    CREATE INDEX events_instance ON events (instance_id);
    """,
]


def _now_text() -> str:
    return datetime.now(timezone.utc).isoformat()


class SQLiteStore:
    def __init__(self, path: str):
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    # -- plumbing ----------------------------------------------------------------------

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._transaction():
                for statement in filter(str.strip, script.split(";")):
                    self._db.execute(statement)
                # PRAGMA takes no bound parameters; the value is this module's own migration number
                self._db.execute("PRAGMA user_version = " + str(int(number)))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    async def close(self) -> None:
        self._db.close()

    # -- replica coordination: one process owns a SQLite file, so there is nothing to share --

    @asynccontextmanager
    async def sync_lock(self) -> AsyncIterator[bool]:
        yield True  # the Coalescer already runs one sync at a time in this process

    async def request_sync(self) -> None:
        return None

    async def take_sync_request(self) -> bool:
        return False

    # -- sync state --------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["value"]

    async def watermark(self) -> datetime | None:
        text = await self.get_meta("watermark")
        return None if text is None else parse_time(text)

    async def set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def seen(self, event_ids: Sequence[str]) -> set[str]:
        # the ids travel as one bound JSON array: no SQL text is built from the list
        rows = self._db.execute(
            "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(event_ids)),),
        )
        return {r["event_id"] for r in rows}

    async def clusters_of_instances(self, instance_ids: Iterable[str]) -> dict[str, str]:
        """instance id -> the cluster resolved for it at ingest (the latest event's), for the
        instances the bot has stored events of; instances it never resolved are absent."""
        rows = self._db.execute(
            "SELECT instance_id, cluster_id FROM events WHERE instance_id IN (SELECT value FROM json_each(?)) "
            "AND cluster_id IS NOT NULL AND cluster_id <> '' ORDER BY event_time",
            (json.dumps(sorted({i for i in instance_ids if i})),),
        )
        return {r["instance_id"]: r["cluster_id"] for r in rows}  # ordered by time: the latest wins

    async def latest_findings(self, groups: Iterable[str]) -> dict[str, Finding]:
        """The newest finding of each group key, the one a new event may join."""
        # one query for the whole page; with max(), SQLite fills the bare columns from that row
        rows = self._db.execute(
            "SELECT *, max(first_seen) FROM findings WHERE grp IN (SELECT value FROM json_each(?)) GROUP BY grp",
            (json.dumps(sorted(set(groups))),),
        )
        return {row["grp"]: _finding_from_row(row) for row in rows}

    async def record_sync(
        self,
        events: Sequence[EventRecord],
        findings: Sequence[Finding],
        outbox: Sequence[tuple[str, str, dict[str, Any]]],
        watermark: datetime | None,
        suppressed: Sequence[tuple[str, str | None]] = (),
    ) -> None:
        """Store one sync's results atomically: events, findings, outbox items, watermark, and
        for each suppressed event (suppression id, originating finding key) the counts."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_event_values(e) for e in events],
            )
            for finding in findings:
                _upsert_finding(db, finding)
            _count_suppressed(db, suppressed)  # after the upserts, which write suppressed_count
            db.executemany(
                "INSERT INTO outbox (finding_key, kind, payload, created_at) VALUES (?, ?, ?, ?)",
                [(key, kind, json.dumps(payload), _now_text()) for key, kind, payload in outbox],
            )
            if watermark is not None:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('watermark', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
                    (watermark.astimezone(timezone.utc).isoformat(),),
                )

    # -- findings ----------------------------------------------------------------------

    async def finding(self, key: str) -> Finding | None:
        row = self._db.execute("SELECT * FROM findings WHERE key = ?", (key,)).fetchone()
        return None if row is None else _finding_from_row(row)

    async def message_of(self, key: str) -> tuple[str, str] | None:
        row = self._db.execute("SELECT channel, ts FROM findings WHERE key = ?", (key,)).fetchone()
        return None if row is None or row["ts"] is None else (row["channel"], row["ts"])

    async def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT disposition, count(*) AS n FROM events GROUP BY disposition")
        counts = {r["disposition"]: r["n"] for r in rows}
        counts["findings"] = self._db.execute("SELECT count(*) FROM findings").fetchone()[0]
        counts["posted"] = self._db.execute("SELECT count(*) FROM findings WHERE ts IS NOT NULL").fetchone()[0]
        return counts

    async def set_finding_status(self, key: str, status: FindingStatus, by: str, note: str | None) -> None:
        self._db.execute(
            "UPDATE findings SET status = ?, status_by = ?, status_note = ? WHERE key = ?",
            (status.value, by, note, key),
        )

    # -- response actions --------------------------------------------------------------

    async def claim_action(self, key: str, action: str, user_id: str) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO action_claims (finding_key, action, user_id, at) VALUES (?, ?, ?, ?)",
            (key, action, user_id, _now_text()),
        )
        return cursor.rowcount == 1

    async def release_claim(self, key: str, action: str) -> None:
        self._db.execute("DELETE FROM action_claims WHERE finding_key = ? AND action = ?", (key, action))

    async def record_action(
        self, key: str, action: str, user_id: str, outcome: str, message: str, *, dry_run: bool,
        outbox: Sequence[tuple[str, dict[str, Any]]] = (),
    ) -> None:
        """The audit record and the Slack updates it causes, in one transaction."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO actions (finding_key, action, user_id, outcome, message, dry_run, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, action, user_id, outcome, message, int(dry_run), _now_text()),
            )
            db.executemany(
                "INSERT INTO outbox (finding_key, kind, payload, created_at) VALUES (?, ?, ?, ?)",
                [(key, kind, json.dumps(payload), _now_text()) for kind, payload in outbox],
            )

    async def actions_for(self, key: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM actions WHERE finding_key = ? ORDER BY id", (key,))
        return [dict(row) for row in rows]

    # -- benign suppressions -----------------------------------------------------------

    async def add_suppression(self, s: Suppression) -> Suppression:
        """Store a Slack-made suppression; returns it with its id ("b<n>")."""
        cursor = self._db.execute(
            "INSERT INTO suppressions (detection, scope, match, reason, created_by, created_at, expires_at, "
            "finding_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                s.detection, json.dumps(s.scope.to_json()), json.dumps({k: list(v) for k, v in s.match.items()}),
                s.reason, s.created_by, (s.created_at or datetime.now(timezone.utc)).isoformat(),
                None if s.expires_at is None else s.expires_at.astimezone(timezone.utc).isoformat(), s.finding_key,
            ),
        )
        return await self.suppression(f"b{cursor.lastrowid}")  # type: ignore[return-value]

    async def suppression(self, suppression_id: str) -> Suppression | None:
        """A Slack-made suppression by id, removed or expired ones included."""
        number = _suppression_number(suppression_id)
        if number is None:
            return None
        row = self._db.execute("SELECT * FROM suppressions WHERE id = ?", (number,)).fetchone()
        return None if row is None else _suppression_from_row(row)

    async def active_suppressions(self, now: datetime) -> list[Suppression]:
        """Slack-made suppressions not removed and not expired at `now`, oldest first."""
        rows = self._db.execute("SELECT * FROM suppressions WHERE removed_at IS NULL ORDER BY id")
        return [s for s in map(_suppression_from_row, rows) if s.active(now)]

    async def remove_suppression(self, suppression_id: str, by: str) -> bool:
        """Soft removal: kept for the audit trail, never matches again. False if unknown or gone."""
        number = _suppression_number(suppression_id)
        if number is None:
            return False
        cursor = self._db.execute(
            "UPDATE suppressions SET removed_by = ?, removed_at = ? WHERE id = ? AND removed_at IS NULL",
            (by, _now_text(), number),
        )
        return cursor.rowcount == 1

    async def suppression_counts(self) -> dict[str, int]:
        """suppression id -> events it has hidden (Slack-made and rules alike)."""
        rows = self._db.execute("SELECT suppression_id, matched FROM suppression_hits")
        return {r["suppression_id"]: r["matched"] for r in rows}

    async def count_suppressed(self, suppression_id: str, finding_key: str | None, events: int = 1) -> None:
        """Count matches outside a sync (the sync counts inside record_sync)."""
        with self._transaction() as db:
            _count_suppressed(db, [(suppression_id, finding_key)] * events)

    # -- outbox ------------------------------------------------------------------------

    async def due_outbox(self, limit: int = 100) -> list[OutboxItem]:
        # New findings' parent posts go first, the most severe first; everything else (thread
        # replies, updates) in the order it was written, which keeps each thread in order.
        rows = self._db.execute(
            """
            SELECT outbox.* FROM outbox LEFT JOIN findings ON findings.key = outbox.finding_key
            WHERE outbox.state = 'pending' AND outbox.not_before <= :now
              AND NOT EXISTS (  -- an earlier item of the thread waits for a retry: so does the rest
                  SELECT 1 FROM outbox earlier WHERE earlier.finding_key = outbox.finding_key
                  AND earlier.state = 'pending' AND earlier.id < outbox.id AND earlier.not_before > :now)
            ORDER BY outbox.kind = 'post' DESC,
                     CASE WHEN outbox.kind = 'post' THEN """ + _SEVERITY_RANK + """ ELSE 0 END DESC,
                     outbox.id
            LIMIT :limit
            """,
            {"now": time.time(), "limit": limit},
        )
        return [OutboxItem(r["id"], r["finding_key"], r["kind"], json.loads(r["payload"]), r["attempts"]) for r in rows]

    async def pending_items(self, key: str, kind: str) -> list[OutboxItem]:
        rows = self._db.execute(
            "SELECT * FROM outbox WHERE finding_key = ? AND kind = ? AND state = 'pending' ORDER BY id", (key, kind)
        )
        return [OutboxItem(r["id"], r["finding_key"], r["kind"], json.loads(r["payload"]), r["attempts"]) for r in rows]

    async def outbox_depth(self) -> int:
        return self._db.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0]

    async def outbox_sent(self, item_id: int) -> None:
        self._db.execute("UPDATE outbox SET state = 'sent', sent_at = ? WHERE id = ?", (_now_text(), item_id))

    async def outbox_retry(self, item_id: int, error: str, not_before: float) -> None:
        self._db.execute(
            "UPDATE outbox SET last_error = ?, not_before = ? WHERE id = ?",  # the try was counted
            (error[:500], not_before, item_id),
        )

    async def outbox_dead(self, item_id: int, error: str) -> None:
        """Slack refused for good (bad channel, bad auth): kept, visible, not retried."""
        self._db.execute(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ? WHERE id = ?",
            (error[:500], item_id),
        )

    async def outbox_attempt(self, item_id: int) -> None:
        self._db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (item_id,))

    async def outbox_dead_for_finding(self, key: str, error: str) -> None:
        self._db.execute(
            "UPDATE outbox SET state = 'dead', last_error = ? WHERE finding_key = ? AND state = 'pending'",
            (error[:500], key),
        )

    async def posted_with_message(self, item_id: int, key: str, channel: str, ts: str) -> None:
        """Record Slack's ts and the sent item together, so a restart never posts it again."""
        with self._transaction() as db:
            db.execute("UPDATE findings SET channel = ?, ts = ? WHERE key = ?", (channel, ts, key))
            db.execute("UPDATE outbox SET state = 'sent', sent_at = ? WHERE id = ?", (_now_text(), item_id))


_SEVERITY_RANK = (
    "CASE json_extract(findings.detection, '$.severity') WHEN 'critical' THEN 4 WHEN 'high' THEN 3 "
    "WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END"
)


def _event_values(e: EventRecord) -> tuple[Any, ...]:
    return (
        e.event_id, e.event_time.isoformat(), e.detection, e.disposition, e.finding_key,
        e.workspace_id, e.instance_id, e.cluster_id, _now_text(),
    )


def _upsert_finding(db: sqlite3.Connection, f: Finding) -> None:
    db.execute(
        """
        INSERT INTO findings (key, grp, detection, first_event, first_seen, last_seen, count, hosts,
                              context, cluster_id, status, status_by, status_note, suppressed_count)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(key) DO UPDATE SET
            first_seen = excluded.first_seen, last_seen = excluded.last_seen,
            count = excluded.count, hosts = excluded.hosts, context = excluded.context,
            status = excluded.status, status_by = excluded.status_by,
            status_note = excluded.status_note, suppressed_count = excluded.suppressed_count
        """,
        (
            f.key, f.group, json.dumps(detection_to_json(f.detection)),
            json.dumps(f.first_event.to_json()), f.first_seen.isoformat(), f.last_seen.isoformat(),
            f.count, json.dumps(sorted(f.hosts)), json.dumps(context_to_json(f.context)),
            f.cluster_id, f.status.value, f.status_by, f.status_note, f.suppressed_count,
        ),
    )


def _finding_from_row(row: sqlite3.Row) -> Finding:
    return Finding(
        key=row["key"],
        group=row["grp"],
        detection=detection_from_json(json.loads(row["detection"])),
        first_event=parse_audit_row(json.loads(row["first_event"])),
        first_seen=parse_time(row["first_seen"]),
        last_seen=parse_time(row["last_seen"]),
        count=row["count"],
        hosts=frozenset(json.loads(row["hosts"])),
        context=context_from_json(json.loads(row["context"])),
        cluster_id=row["cluster_id"],
        status=FindingStatus(row["status"]),
        status_by=row["status_by"],
        status_note=row["status_note"],
        suppressed_count=row["suppressed_count"],
    )


def _count_suppressed(db: sqlite3.Connection, hits: Sequence[tuple[str, str | None]]) -> None:
    at = _now_text()
    for suppression_id, finding_key in hits:
        db.execute(
            "INSERT INTO suppression_hits (suppression_id, matched, last_matched_at) VALUES (?, 1, ?) "
            "ON CONFLICT(suppression_id) DO UPDATE SET matched = matched + 1, last_matched_at = excluded.last_matched_at",
            (suppression_id, at),
        )
        if finding_key:
            db.execute("UPDATE findings SET suppressed_count = suppressed_count + 1 WHERE key = ?", (finding_key,))


def _suppression_number(suppression_id: str) -> int | None:
    text = (suppression_id or "").strip().lower()
    if not text.startswith("b") or not text[1:].isdigit() or len(text) > 19:
        return None
    return int(text[1:])


def _suppression_from_row(row: sqlite3.Row) -> Suppression:
    return Suppression(
        id=f"b{row['id']}",
        detection=row["detection"],
        scope=Scope.from_json(json.loads(row["scope"])),
        match={k: tuple(v) for k, v in json.loads(row["match"]).items()},
        reason=row["reason"],
        created_by=row["created_by"],
        created_at=parse_time(row["created_at"], "created_at"),
        expires_at=None if row["expires_at"] is None else parse_time(row["expires_at"], "expires_at"),
        finding_key=row["finding_key"],
        source="slack",
    )
