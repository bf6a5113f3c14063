"""StateStore on PostgreSQL (psycopg 3, async): the SQLite store's contract, shared by replicas.

`ESM_STATE_URL=postgresql://…` (for example a Lakebase database) lets two or more `esm-bot serve`
processes run at once. On top of the SQLite store's contract (each public method one
transaction; a sync's events, findings, outbox items and watermark land together or not at all)
this store coordinates the replicas:

* **One sync at a time.** `sync_lock()` takes a session-level advisory lock on a connection of
  its own (`pg_try_advisory_lock`); a replica that finds it taken skips its sync and leaves a
  request (`request_sync`) that the holder honours once it lets go, so no trigger is lost. A
  replica that dies loses the lock with its connection. `record_sync` checks the lock's
  connection is still alive before it commits, so a replica that lost the lock stores nothing.
* **Each outbox item sent by one replica.** The unit of a claim is the thread (finding key):
  `due_outbox` leases threads in `outbox_leases` (INSERT … ON CONFLICT DO UPDATE only where the
  lease is free, expired or already ours) and returns due items of the threads it holds, so a
  thread's parent post and replies all go out from one replica, in order. A heartbeat renews
  this replica's leases and drops those with nothing pending; a replica that dies stops renewing
  and its threads are claimable again once the lease (ESM_OUTBOX_LEASE) runs out. An item that
  was sent to Slack just before the replica died has `attempts > 0` (the worker records an
  attempt before sending), so the next owner looks for it in Slack before sending it again.
* **Versioned migrations** in `schema_version`, applied at start-up under an advisory lock, so
  replicas starting together migrate once.

Timestamps are `timestamptz`; the bot's own documents `jsonb`, raw audit rows `json` (verbatim). PostgreSQL text cannot hold NUL characters,
which SQLite can: they are stored as U+FFFD (the same mapping on write and lookup).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row

from bot.core.codec import (
    context_from_json,
    context_to_json,
    detection_from_json,
    detection_to_json,
)
from bot.core.events import parse_audit_row
from bot.core.findings import Finding, FindingStatus
from bot.core.state import EventRecord, OutboxItem
from bot.core.suppressions import Scope, Suppression

try:  # psycopg[pool]; without it a small fixed set of connections does
    from psycopg_pool import AsyncConnectionPool
except ImportError:  # pragma: no cover - the dependency ships it
    AsyncConnectionPool = None  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

# advisory lock classes (the first key); the second key is derived from the schema, so two
# deployments sharing one database in different schemas never block each other
LOCK_MIGRATE = 0x45534D01
LOCK_SYNC = 0x45534D02

DEFAULT_LEASE = 30.0  # seconds an outbox thread stays claimed without a heartbeat
THREADS_PER_CLAIM = 100

MIGRATIONS: list[str] = [
    # 1: the first schema (SQLite's 1, in PostgreSQL types)
    """
    CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
    CREATE TABLE events (
        event_id text PRIMARY KEY,
        event_time timestamptz NOT NULL,
        detection text NOT NULL,
        disposition text NOT NULL,
        finding_key text,
        workspace_id text,
        instance_id text,
        cluster_id text,
        stored_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX events_time ON events (event_time);
    CREATE TABLE findings (
        key text PRIMARY KEY,
        grp text NOT NULL,
        detection jsonb NOT NULL,
        first_event json NOT NULL,  -- the raw audit row, verbatim (key order kept)
        first_seen timestamptz NOT NULL,
        last_seen timestamptz NOT NULL,
        count integer NOT NULL,
        hosts jsonb NOT NULL,
        context jsonb NOT NULL,
        cluster_id text,
        status text NOT NULL,
        status_by text,
        status_note text,
        suppressed_count integer NOT NULL DEFAULT 0,
        channel text,
        ts text
    );
    CREATE INDEX findings_group ON findings (grp, first_seen);
    CREATE TABLE outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        finding_key text NOT NULL,
        kind text NOT NULL,
        payload json NOT NULL,  -- replies carry raw audit rows, verbatim
        state text NOT NULL DEFAULT 'pending',
        attempts integer NOT NULL DEFAULT 0,
        not_before double precision NOT NULL DEFAULT 0,
        last_error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        sent_at timestamptz
    );
    CREATE INDEX outbox_pending ON outbox (state, id);
    """,
    # 2: response actions: the audit trail, and the claims that make an action run once
    """
    CREATE TABLE actions (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        finding_key text NOT NULL,
        action text NOT NULL,
        user_id text NOT NULL,
        outcome text NOT NULL,
        message text NOT NULL,
        dry_run boolean NOT NULL DEFAULT false,
        at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX actions_finding ON actions (finding_key, id);
    CREATE TABLE action_claims (
        finding_key text NOT NULL,
        action text NOT NULL,
        user_id text NOT NULL,
        at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (finding_key, action)
    );
    """,
    # 3: benign suppressions made in Slack (soft-removed), and match counts for every suppression
    """
    CREATE TABLE suppressions (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        detection text NOT NULL,
        scope jsonb NOT NULL,
        match jsonb NOT NULL,
        reason text NOT NULL,
        created_by text NOT NULL,
        created_at timestamptz NOT NULL,
        expires_at timestamptz,
        finding_key text,
        removed_by text,
        removed_at timestamptz
    );
    CREATE TABLE suppression_hits (
        suppression_id text PRIMARY KEY,
        matched integer NOT NULL DEFAULT 0,
        last_matched_at timestamptz
    );
    """,
    # 4: replicas: which replica sends each thread's outbox items, until when
    """
    CREATE TABLE outbox_leases (
        finding_key text PRIMARY KEY,
        replica text NOT NULL,
        lease_until timestamptz NOT NULL
    );
    CREATE INDEX outbox_leases_replica ON outbox_leases (replica);
    CREATE INDEX outbox_thread ON outbox (finding_key, state);
    CREATE INDEX events_instance ON events (instance_id);
    """,
]


class StateStoreError(RuntimeError):
    """The PostgreSQL state store cannot go on safely; the message says why."""


def redact_url(url: str) -> str:
    """The URL with its password (and any password= query parameter) shown as ****."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://****"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:****@{host}" if ":" in userinfo else f"{user}@{host}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1****", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def default_replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class PostgresStore:
    """Open with `await PostgresStore.connect(url)`; close with `await store.close()`."""

    def __init__(self, url: str, pool: Any, *, replica: str, lease: float, schema: str):
        self._url = url
        self._pool = pool
        self.replica = replica
        self.lease = lease
        self.schema = schema
        self._schema_key = _lock_key(schema)
        self._lock_conn: psycopg.AsyncConnection[Any] | None = None
        self._sync_held = False
        self._heartbeat: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self._url)!r}, replica={self.replica!r})"

    @property
    def url(self) -> str:
        return self._url

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        replica: str | None = None,
        lease: float = DEFAULT_LEASE,
        heartbeat: bool = True,
        pool_size: int = 4,
        timeout: float = 30.0,
    ) -> "PostgresStore":
        """Connect, migrate (once across replicas), and start the lease heartbeat."""
        pool = await _open_pool(url, pool_size, timeout)
        try:
            async with pool.connection() as conn:
                schema = (await (await conn.execute("SELECT current_schema()")).fetchone())["current_schema"]
                if schema is None:
                    raise StateStoreError("the PostgreSQL state store has no schema to create its tables in "
                                          "(search_path names no existing schema)")
            store = cls(url, pool, replica=replica or default_replica_id(), lease=lease, schema=schema)
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        if heartbeat:
            store._heartbeat = asyncio.get_running_loop().create_task(store._beat())
        log.info("state store: %r (schema %s)", store, schema)
        return store

    # -- plumbing ----------------------------------------------------------------------

    async def _migrate(self) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_MIGRATE, self._schema_key))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            row = await (await conn.execute("SELECT coalesce(max(version), 0) AS v FROM schema_version")).fetchone()
            version = row["v"]
            if version > len(MIGRATIONS):
                log.warning("state schema version %s is newer than this esm-bot's %s", version, len(MIGRATIONS))
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                await conn.execute(script)  # type: ignore[arg-type]  # several statements, no parameters
                await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
                log.info("state store migrated to schema version %s", number)

    async def schema_version(self) -> int:
        row = await self._one("SELECT coalesce(max(version), 0) AS v FROM schema_version")
        return row["v"]

    async def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        async with self._pool.connection() as conn:
            return await (await conn.execute(sql, params)).fetchone()  # type: ignore[arg-type]

    async def _all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            return await (await conn.execute(sql, params)).fetchall()  # type: ignore[arg-type]

    async def _run(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        async with self._pool.connection() as conn:
            return (await conn.execute(sql, params)).rowcount  # type: ignore[arg-type]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        try:  # hand this replica's threads over now rather than when the lease runs out
            await self._run("DELETE FROM outbox_leases WHERE replica = %s", (self.replica,))
        except Exception as exc:
            log.warning("could not release outbox leases: %s", exc)
        if self._lock_conn is not None:
            await self._lock_conn.close()
            self._lock_conn = None
        await self._pool.close()

    # -- replica coordination ----------------------------------------------------------

    @asynccontextmanager
    async def sync_lock(self) -> AsyncIterator[bool]:
        """True while this replica holds the one sync lock; False if another sync runs (here or
        on another replica): the caller skips its sync (see request_sync)."""
        if self._sync_held:  # session locks nest: a second local sync must not pass
            yield False
            return
        conn = await self._lock_connection()
        row = await (await conn.execute("SELECT pg_try_advisory_lock(%s, %s) AS got",
                                        (LOCK_SYNC, self._schema_key))).fetchone()
        if not row["got"]:
            yield False
            return
        self._sync_held = True
        try:
            yield True
        finally:
            self._sync_held = False
            try:
                await conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_SYNC, self._schema_key))
            except Exception:  # the session ends, and the lock with it
                await self._drop_lock_connection()

    async def _lock_connection(self) -> psycopg.AsyncConnection[Any]:
        if self._lock_conn is None or self._lock_conn.closed or self._lock_conn.broken:
            await self._drop_lock_connection()
            self._lock_conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, row_factory=dict_row, **_connect_timeout(self._url)
            )
            await self._lock_conn.execute("SET application_name = 'esm-bot sync lock'")
        return self._lock_conn

    async def _drop_lock_connection(self) -> None:
        if self._lock_conn is not None:
            try:
                await self._lock_conn.close()
            except Exception:
                pass
            self._lock_conn = None

    async def _check_sync_lock(self) -> None:
        """Inside a sync: the lock's session must still be alive, or another replica may be
        syncing the same rows; refuse to store rather than post a finding twice."""
        if not self._sync_held:
            return
        conn = self._lock_conn
        try:
            if conn is None:
                raise psycopg.OperationalError("no lock connection")
            await conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise StateStoreError(f"lost the sync lock's connection, not storing this sync: {exc}") from exc

    async def request_sync(self) -> None:
        """Another replica holds the sync lock: ask it for one more sync when it is done."""
        await self.set_meta("sync_requested", datetime.now(timezone.utc).isoformat())

    async def take_sync_request(self) -> bool:
        """True, once, if a sync was requested since the last take."""
        return await self._run("DELETE FROM meta WHERE key = 'sync_requested'") == 1

    async def renew_leases(self) -> None:
        """The heartbeat: drop this replica's leases on threads with nothing pending (other
        replicas may take them), and extend the rest."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM outbox_leases l WHERE l.replica = %s AND NOT EXISTS ("
                "SELECT 1 FROM outbox o WHERE o.finding_key = l.finding_key AND o.state = 'pending')",
                (self.replica,),
            )
            await conn.execute(
                "UPDATE outbox_leases SET lease_until = now() + make_interval(secs => %s) WHERE replica = %s",
                (self.lease, self.replica),
            )

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(max(0.2, self.lease / 3))
            try:
                await self.renew_leases()
            except Exception as exc:  # the database is away: leases may lapse, never double-claim
                log.warning("outbox lease heartbeat failed: %s", exc)

    # -- sync state --------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        row = await self._one("SELECT value FROM meta WHERE key = %s", (_t(key),))
        return None if row is None else row["value"]

    async def watermark(self) -> datetime | None:
        row = await self._one("SELECT value::timestamptz AS at FROM meta WHERE key = 'watermark'")
        return None if row is None else _utc(row["at"])

    async def set_meta(self, key: str, value: str) -> None:
        await self._run(
            "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_t(key), _t(value)),
        )

    async def seen(self, event_ids: Sequence[str]) -> set[str]:
        wanted = {_t(e): e for e in event_ids}
        if not wanted:
            return set()
        rows = await self._all("SELECT event_id FROM events WHERE event_id = ANY(%s)", (list(wanted),))
        return {wanted[r["event_id"]] for r in rows}

    async def clusters_of_instances(self, instance_ids: Iterable[str]) -> dict[str, str]:
        """instance id -> the cluster resolved for it at ingest (the latest event's), for the
        instances the bot has stored events of; instances it never resolved are absent."""
        wanted = {_t(i): i for i in instance_ids if i}
        if not wanted:
            return {}
        rows = await self._all(
            "SELECT DISTINCT ON (instance_id) instance_id, cluster_id FROM events "
            "WHERE instance_id = ANY(%s) AND cluster_id IS NOT NULL AND cluster_id <> '' "
            "ORDER BY instance_id, event_time DESC",
            (list(wanted),),
        )
        return {wanted[r["instance_id"]]: r["cluster_id"] for r in rows}

    async def latest_findings(self, groups: Iterable[str]) -> dict[str, Finding]:
        """The newest finding of each group key, the one a new event may join."""
        wanted = {_t(g): g for g in groups}
        if not wanted:
            return {}
        rows = await self._all(
            "SELECT DISTINCT ON (grp) * FROM findings WHERE grp = ANY(%s) ORDER BY grp, first_seen DESC",
            (list(wanted),),
        )
        return {wanted[r["grp"]]: _finding_from_row(r) for r in rows}

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
        # every value is converted first: a row that cannot be stored fails before any write
        event_rows = [_event_values(e) for e in events]
        finding_rows = [_finding_values(f) for f in findings]
        outbox_rows = [(_t(key), _t(kind), _j(payload)) for key, kind, payload in outbox]
        mark = None if watermark is None else watermark.astimezone(timezone.utc).isoformat()
        await self._check_sync_lock()
        async with self._pool.connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                if event_rows:
                    await cur.executemany(
                        "INSERT INTO events (event_id, event_time, detection, disposition, finding_key, "
                        "workspace_id, instance_id, cluster_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (event_id) DO NOTHING",
                        event_rows,
                    )
                if finding_rows:
                    await cur.executemany(_UPSERT_FINDING, finding_rows)
                await _count_suppressed(cur, suppressed)  # after the upserts, which write suppressed_count
                if outbox_rows:
                    await cur.executemany(
                        "INSERT INTO outbox (finding_key, kind, payload) VALUES (%s, %s, %s::json)", outbox_rows
                    )
                if mark is not None:
                    await cur.execute(
                        "INSERT INTO meta (key, value) VALUES ('watermark', %s) ON CONFLICT (key) DO UPDATE SET "
                        "value = CASE WHEN excluded.value::timestamptz > meta.value::timestamptz "
                        "THEN excluded.value ELSE meta.value END",
                        (mark,),
                    )

    # -- findings ----------------------------------------------------------------------

    async def finding(self, key: str) -> Finding | None:
        row = await self._one("SELECT * FROM findings WHERE key = %s", (_t(key),))
        return None if row is None else _finding_from_row(row)

    async def message_of(self, key: str) -> tuple[str, str] | None:
        row = await self._one("SELECT channel, ts FROM findings WHERE key = %s", (_t(key),))
        return None if row is None or row["ts"] is None else (row["channel"], row["ts"])

    async def counts(self) -> dict[str, int]:
        rows = await self._all("SELECT disposition, count(*) AS n FROM events GROUP BY disposition")
        counts = {r["disposition"]: r["n"] for r in rows}
        row = await self._one("SELECT count(*) AS findings, count(ts) AS posted FROM findings")
        counts["findings"], counts["posted"] = row["findings"], row["posted"]
        return counts

    async def set_finding_status(self, key: str, status: FindingStatus, by: str, note: str | None) -> None:
        await self._run(
            "UPDATE findings SET status = %s, status_by = %s, status_note = %s WHERE key = %s",
            (status.value, _t(by), _t(note), _t(key)),
        )

    # -- response actions --------------------------------------------------------------

    async def claim_action(self, key: str, action: str, user_id: str) -> bool:
        return await self._run(
            "INSERT INTO action_claims (finding_key, action, user_id) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (_t(key), _t(action), _t(user_id)),
        ) == 1

    async def release_claim(self, key: str, action: str) -> None:
        await self._run("DELETE FROM action_claims WHERE finding_key = %s AND action = %s", (_t(key), _t(action)))

    async def record_action(
        self, key: str, action: str, user_id: str, outcome: str, message: str, *, dry_run: bool,
        outbox: Sequence[tuple[str, dict[str, Any]]] = (),
    ) -> None:
        """The audit record and the Slack updates it causes, in one transaction."""
        items = [(_t(key), _t(kind), _j(payload)) for kind, payload in outbox]
        async with self._pool.connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                await cur.execute(
                    "INSERT INTO actions (finding_key, action, user_id, outcome, message, dry_run) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (_t(key), _t(action), _t(user_id), _t(outcome), _t(message), bool(dry_run)),
                )
                if items:
                    await cur.executemany(
                        "INSERT INTO outbox (finding_key, kind, payload) VALUES (%s, %s, %s::json)", items
                    )

    async def actions_for(self, key: str) -> list[dict[str, Any]]:
        rows = await self._all("SELECT * FROM actions WHERE finding_key = %s ORDER BY id", (_t(key),))
        return [{**r, "dry_run": int(r["dry_run"]), "at": _utc(r["at"]).isoformat()} for r in rows]

    # -- benign suppressions -----------------------------------------------------------

    async def add_suppression(self, s: Suppression) -> Suppression:
        """Store a Slack-made suppression; returns it with its id ("b<n>")."""
        row = await self._one(
            "INSERT INTO suppressions (detection, scope, match, reason, created_by, created_at, expires_at, "
            "finding_key) VALUES (%s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s) RETURNING id",
            (
                _t(s.detection), _j(s.scope.to_json()), _j({k: list(v) for k, v in s.match.items()}),
                _t(s.reason), _t(s.created_by), s.created_at or datetime.now(timezone.utc), s.expires_at,
                _t(s.finding_key),
            ),
        )
        return await self.suppression(f"b{row['id']}")  # type: ignore[index,return-value]

    async def suppression(self, suppression_id: str) -> Suppression | None:
        """A Slack-made suppression by id, removed or expired ones included."""
        number = _suppression_number(suppression_id)
        if number is None:
            return None
        row = await self._one("SELECT * FROM suppressions WHERE id = %s", (number,))
        return None if row is None else _suppression_from_row(row)

    async def active_suppressions(self, now: datetime) -> list[Suppression]:
        """Slack-made suppressions not removed and not expired at `now`, oldest first."""
        rows = await self._all("SELECT * FROM suppressions WHERE removed_at IS NULL ORDER BY id")
        return [s for s in map(_suppression_from_row, rows) if s.active(now)]

    async def remove_suppression(self, suppression_id: str, by: str) -> bool:
        """Soft removal: kept for the audit trail, never matches again. False if unknown or gone."""
        number = _suppression_number(suppression_id)
        if number is None:
            return False
        return await self._run(
            "UPDATE suppressions SET removed_by = %s, removed_at = now() WHERE id = %s AND removed_at IS NULL",
            (_t(by), number),
        ) == 1

    async def suppression_counts(self) -> dict[str, int]:
        """suppression id -> events it has hidden (Slack-made and rules alike)."""
        rows = await self._all("SELECT suppression_id, matched FROM suppression_hits")
        return {r["suppression_id"]: r["matched"] for r in rows}

    async def count_suppressed(self, suppression_id: str, finding_key: str | None, events: int = 1) -> None:
        """Count matches outside a sync (the sync counts inside record_sync)."""
        async with self._pool.connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                await _count_suppressed(cur, [(suppression_id, finding_key)] * events)

    # -- outbox ------------------------------------------------------------------------

    async def due_outbox(self, limit: int = 100) -> list[OutboxItem]:
        """Due items of the threads this replica holds, claiming free ones (and those whose
        lease ran out) first. Order as on SQLite: new findings' parent posts first, the most
        severe first; everything else in the order it was written, which keeps threads in order."""
        now = time.time()
        async with self._pool.connection() as conn:
            async with conn.transaction():
                claimed = await (await conn.execute(_CLAIM, {
                    "me": self.replica, "lease": self.lease, "now": now, "threads": THREADS_PER_CLAIM,
                })).fetchall()
            keys = [r["finding_key"] for r in claimed]
            if not keys:
                return []
            rows = await (await conn.execute(_DUE, {"keys": keys, "now": now, "limit": limit})).fetchall()
        return [OutboxItem(r["id"], r["finding_key"], r["kind"], r["payload"], r["attempts"]) for r in rows]

    async def pending_items(self, key: str, kind: str) -> list[OutboxItem]:
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT id, finding_key, kind, payload, attempts FROM outbox "
                "WHERE finding_key = %s AND kind = %s AND state = 'pending' ORDER BY id",
                (_t(key), _t(kind)),
            )).fetchall()
        return [OutboxItem(r["id"], r["finding_key"], r["kind"], r["payload"], r["attempts"]) for r in rows]

    async def outbox_depth(self) -> int:
        row = await self._one("SELECT count(*) AS n FROM outbox WHERE state = 'pending'")
        return row["n"]

    async def outbox_sent(self, item_id: int) -> None:
        await self._run("UPDATE outbox SET state = 'sent', sent_at = now() WHERE id = %s", (item_id,))

    async def outbox_retry(self, item_id: int, error: str, not_before: float) -> None:
        await self._run(
            "UPDATE outbox SET last_error = %s, not_before = %s WHERE id = %s",  # the try was counted
            (_t(error[:500]), not_before, item_id),
        )

    async def outbox_dead(self, item_id: int, error: str) -> None:
        """Slack refused for good (bad channel, bad auth): kept, visible, not retried."""
        await self._run(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = %s WHERE id = %s",
            (_t(error[:500]), item_id),
        )

    async def outbox_attempt(self, item_id: int) -> None:
        """Committed before the item goes to Slack: whoever sends it next checks Slack first."""
        await self._run("UPDATE outbox SET attempts = attempts + 1 WHERE id = %s", (item_id,))

    async def outbox_dead_for_finding(self, key: str, error: str) -> None:
        await self._run(
            "UPDATE outbox SET state = 'dead', last_error = %s WHERE finding_key = %s AND state = 'pending'",
            (_t(error[:500]), _t(key)),
        )

    async def posted_with_message(self, item_id: int, key: str, channel: str, ts: str) -> None:
        """Record Slack's ts and the sent item together, so a restart never posts it again."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("UPDATE findings SET channel = %s, ts = %s WHERE key = %s", (_t(channel), _t(ts), _t(key)))
            await conn.execute("UPDATE outbox SET state = 'sent', sent_at = now() WHERE id = %s", (item_id,))


# Claim threads with due items that no other replica holds a live lease on. Rows are inserted in
# key order, so two replicas claiming overlapping threads wait for each other, never deadlock.
_CLAIM = """
INSERT INTO outbox_leases (finding_key, replica, lease_until)
SELECT due.finding_key, %(me)s, now() + make_interval(secs => %(lease)s) FROM (
    SELECT o.finding_key, min(o.id) AS first_id FROM outbox o
    WHERE o.state = 'pending' AND o.not_before <= %(now)s
      AND NOT EXISTS (SELECT 1 FROM outbox_leases l WHERE l.finding_key = o.finding_key
                      AND l.replica <> %(me)s AND l.lease_until >= now())
    GROUP BY o.finding_key
    ORDER BY first_id
    LIMIT %(threads)s
) due
ORDER BY due.finding_key
ON CONFLICT (finding_key) DO UPDATE SET replica = excluded.replica, lease_until = excluded.lease_until
    WHERE outbox_leases.replica = excluded.replica OR outbox_leases.lease_until < now()
RETURNING finding_key
"""

_SEVERITY_RANK = (
    "CASE findings.detection->>'severity' WHEN 'critical' THEN 4 WHEN 'high' THEN 3 "
    "WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END"
)

_DUE = (
    """
SELECT outbox.id, outbox.finding_key, outbox.kind, outbox.payload, outbox.attempts
FROM outbox LEFT JOIN findings ON findings.key = outbox.finding_key
WHERE outbox.state = 'pending' AND outbox.not_before <= %(now)s AND outbox.finding_key = ANY(%(keys)s)
  AND NOT EXISTS (SELECT 1 FROM outbox earlier WHERE earlier.finding_key = outbox.finding_key
                  AND earlier.state = 'pending' AND earlier.id < outbox.id AND earlier.not_before > %(now)s)
ORDER BY outbox.kind = 'post' DESC,
         CASE WHEN outbox.kind = 'post' THEN """
    + _SEVERITY_RANK
    + """ ELSE 0 END DESC,
         outbox.id
LIMIT %(limit)s
"""
)

_UPSERT_FINDING = """
INSERT INTO findings (key, grp, detection, first_event, first_seen, last_seen, count, hosts,
                      context, cluster_id, status, status_by, status_note, suppressed_count)
VALUES (%s, %s, %s::jsonb, %s::json, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s)
ON CONFLICT (key) DO UPDATE SET
    first_seen = excluded.first_seen, last_seen = excluded.last_seen,
    count = excluded.count, hosts = excluded.hosts, context = excluded.context,
    status = excluded.status, status_by = excluded.status_by,
    status_note = excluded.status_note, suppressed_count = excluded.suppressed_count
"""


async def _open_pool(url: str, size: int, timeout: float) -> Any:
    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("SET TIME ZONE 'UTC'")
        await conn.execute("SET application_name = 'esm-bot'")

    kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row, **_connect_timeout(url)}
    try:  # one plain connection first: a wrong URL or a server away fails now, in one line
        probe = await psycopg.AsyncConnection.connect(url, **kwargs)
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        raise StateStoreError(f"cannot connect to the PostgreSQL state store {redact_url(url)}: {reason}") from None
    await probe.close()
    if AsyncConnectionPool is not None:
        pool = AsyncConnectionPool(
            url, min_size=1, max_size=max(2, size), kwargs=kwargs, configure=configure, open=False,
            check=AsyncConnectionPool.check_connection, timeout=timeout, name="esm-state",
        )
        try:
            await pool.open(wait=True, timeout=timeout)
        except Exception as exc:
            await pool.close()
            raise StateStoreError(f"cannot connect to the PostgreSQL state store {redact_url(url)}: {exc}") from None
        return pool
    return await _SmallPool.open(url, size, kwargs, configure)  # pragma: no cover


class _SmallPool:  # pragma: no cover - used only without psycopg_pool
    """A fixed set of connections handed out one caller at a time; a broken one is replaced."""

    def __init__(self, url: str, kwargs: dict[str, Any], configure: Any):
        self._url, self._kwargs, self._configure = url, kwargs, configure
        self._free: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
        self._all: list[psycopg.AsyncConnection[Any]] = []

    @classmethod
    async def open(cls, url: str, size: int, kwargs: dict[str, Any], configure: Any) -> "_SmallPool":
        pool = cls(url, kwargs, configure)
        for _ in range(max(2, size)):
            pool._free.put_nowait(await pool._new())
        return pool

    async def _new(self) -> psycopg.AsyncConnection[Any]:
        try:
            conn = await psycopg.AsyncConnection.connect(self._url, **self._kwargs)
        except psycopg.Error as exc:
            raise StateStoreError(f"cannot connect to the PostgreSQL state store {redact_url(self._url)}: {exc}") from None
        await self._configure(conn)
        self._all.append(conn)
        return conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        conn = await self._free.get()
        if conn.closed or conn.broken:
            self._all.remove(conn)
            conn = await self._new()
        try:
            yield conn
        finally:
            self._free.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()


# -- values ------------------------------------------------------------------------------

_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _t(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL: the same replacement on every write and lookup."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def _j(value: Any) -> str:
    """JSON text for a jsonb column (raises TypeError on what json cannot encode, like SQLite's
    store); an escaped NUL, which jsonb refuses, becomes U+FFFD."""
    text = json.dumps(value)
    return _NUL_ESCAPE.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def _connect_timeout(url: str) -> dict[str, Any]:
    """10 s unless the URL says otherwise (libpq's default is to wait for ever)."""
    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return {"connect_timeout": 10}
    return {} if "connect_timeout" in given else {"connect_timeout": 10}


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


def _lock_key(schema: str) -> int:
    return int.from_bytes(hashlib.sha256(schema.encode()).digest()[:4], "big", signed=True)


def _event_values(e: EventRecord) -> tuple[Any, ...]:
    return (
        _t(e.event_id), e.event_time, _t(e.detection), _t(e.disposition), _t(e.finding_key),
        _t(e.workspace_id), _t(e.instance_id), _t(e.cluster_id),
    )


def _finding_values(f: Finding) -> tuple[Any, ...]:
    return (
        _t(f.key), _t(f.group), _j(detection_to_json(f.detection)), _j(f.first_event.to_json()),
        f.first_seen, f.last_seen, f.count, _j(sorted(f.hosts)), _j(context_to_json(f.context)),
        _t(f.cluster_id), f.status.value, _t(f.status_by), _t(f.status_note), f.suppressed_count,
    )


def _finding_from_row(row: dict[str, Any]) -> Finding:
    return Finding(
        key=row["key"],
        group=row["grp"],
        detection=detection_from_json(row["detection"]),
        first_event=parse_audit_row(row["first_event"]),
        first_seen=_utc(row["first_seen"]),
        last_seen=_utc(row["last_seen"]),
        count=row["count"],
        hosts=frozenset(row["hosts"]),
        context=context_from_json(row["context"]),
        cluster_id=row["cluster_id"],
        status=FindingStatus(row["status"]),
        status_by=row["status_by"],
        status_note=row["status_note"],
        suppressed_count=row["suppressed_count"],
    )


async def _count_suppressed(cur: psycopg.AsyncCursor[Any], hits: Sequence[tuple[str, str | None]]) -> None:
    if not hits:
        return
    await cur.executemany(
        "INSERT INTO suppression_hits (suppression_id, matched, last_matched_at) VALUES (%s, 1, now()) "
        "ON CONFLICT (suppression_id) DO UPDATE SET matched = suppression_hits.matched + 1, "
        "last_matched_at = excluded.last_matched_at",
        [(_t(suppression_id),) for suppression_id, _ in hits],
    )
    keyed = [(_t(key),) for _, key in hits if key]
    if keyed:
        await cur.executemany("UPDATE findings SET suppressed_count = suppressed_count + 1 WHERE key = %s", keyed)


def _suppression_number(suppression_id: str) -> int | None:
    text = (suppression_id or "").strip().lower()
    if not text.startswith("b") or not text[1:].isdigit() or len(text) > 19:
        return None
    return int(text[1:])


def _suppression_from_row(row: dict[str, Any]) -> Suppression:
    return Suppression(
        id=f"b{row['id']}",
        detection=row["detection"],
        scope=Scope.from_json(row["scope"]),
        match={k: tuple(v) for k, v in row["match"].items()},
        reason=row["reason"],
        created_by=row["created_by"],
        created_at=_utc(row["created_at"]),
        expires_at=None if row["expires_at"] is None else _utc(row["expires_at"]),
        finding_key=row["finding_key"],
        source="slack",
    )
