"""Replica coordination: the one part of the state store that is PostgreSQL's alone.

* **One sync at a time.** `sync_lock()` takes a session-level advisory lock on a connection of
  its own (`pg_try_advisory_lock`); a replica that finds it taken skips its sync and leaves a
  request (the store's `request_sync`) that the holder honours once it lets go, so no trigger is
  lost. A replica that dies loses the lock with its connection. `check_sync_lock` runs before a
  sync commits: a replica that lost the lock stores nothing.
* **Each outbox item sent by one replica.** The unit of a claim is the thread (finding key):
  `claim_threads` leases threads in `outbox_leases` (INSERT … ON CONFLICT DO UPDATE only where the
  lease is free, expired or already ours), and the store returns due items of those threads
  only, so a thread's parent post and replies all go out from one replica, in order. A heartbeat
  renews this replica's leases and drops those with nothing pending; a replica that dies stops
  renewing and its threads are claimable again once the lease (ESM_OUTBOX_LEASE) runs out. An
  item sent to Slack just before the replica died has `attempts > 0` (the worker records an
  attempt before sending), so the next owner looks for it in Slack before sending it again.

SQLite has one process: `LocalCoordination` holds nothing and claims everything.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.adapters.state.urls import StateStoreError

log = logging.getLogger(__name__)

LOCK_SYNC = 0x45534D02  # the advisory lock class of the sync; the second key is the schema's
THREADS_PER_CLAIM = 100


def lock_key(schema: str) -> int:
    """Two deployments sharing one database in different schemas never block each other."""
    return int.from_bytes(hashlib.sha256(schema.encode()).digest()[:4], "big", signed=True)


def default_replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Coordination(Protocol):
    replica: str
    shared: bool  # True where other processes share the store

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def sync_lock(self) -> AbstractAsyncContextManager[bool]: ...
    async def check_sync_lock(self) -> None: ...

    async def claim_threads(self, now: float) -> list[str] | None:
        """The threads whose items this replica may send now; None: all of them."""

    async def renew(self) -> None: ...


class LocalCoordination:
    """One process owns a SQLite file, so there is nothing to share."""

    shared = False

    def __init__(self) -> None:
        self.replica = "local"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    @asynccontextmanager
    async def sync_lock(self) -> AsyncIterator[bool]:
        yield True  # the Coalescer already runs one sync at a time in this process

    async def check_sync_lock(self) -> None:
        return None

    async def claim_threads(self, now: float) -> list[str] | None:
        return None

    async def renew(self) -> None:
        return None


class PostgresCoordination:
    shared = True

    def __init__(self, engine: AsyncEngine, schema_key: int, *, replica: str | None, lease: float, heartbeat: bool):
        self._engine = engine
        self._schema_key = schema_key
        self.replica = replica or default_replica_id()
        self.lease = lease
        self._heartbeat_on = heartbeat
        self._heartbeat: asyncio.Task[None] | None = None
        self._lock_conn: AsyncConnection | None = None
        self._sync_held = False

    async def start(self) -> None:
        if self._heartbeat_on:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        try:  # hand this replica's threads over now rather than when the lease runs out
            async with self._engine.begin() as conn:
                await conn.execute(text("DELETE FROM outbox_leases WHERE replica = :me"), {"me": self.replica})
        except Exception as exc:
            log.warning("could not release outbox leases: %s", exc)
        await self._drop_lock_connection()

    # -- the sync lock ---------------------------------------------------------------------

    @asynccontextmanager
    async def sync_lock(self) -> AsyncIterator[bool]:
        """True while this replica holds the one sync lock; False if another sync runs (here or
        on another replica): the caller skips its sync (and asks for one more)."""
        if self._sync_held:  # session locks nest: a second local sync must not pass
            yield False
            return
        conn = await self._lock_connection()
        got = (await conn.execute(text("SELECT pg_try_advisory_lock(:a, :b)"),
                                  {"a": LOCK_SYNC, "b": self._schema_key})).scalar()
        if not got:
            yield False
            return
        self._sync_held = True
        try:
            yield True
        finally:
            self._sync_held = False
            try:
                await conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"), {"a": LOCK_SYNC, "b": self._schema_key})
            except Exception:  # the session ends, and the lock with it
                await self._drop_lock_connection()

    async def _lock_connection(self) -> AsyncConnection:
        if self._lock_conn is None or self._lock_conn.invalidated or self._lock_conn.closed:
            await self._drop_lock_connection()
            conn = await self._engine.connect()
            self._lock_conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            # which replica holds the lock shows in pg_stat_activity (application_name: 63 bytes at most)
            await self._lock_conn.execute(text("SELECT set_config('application_name', :name, false)"),
                                          {"name": f"esm-bot sync lock {self.replica}"[:63]})
        return self._lock_conn

    async def _drop_lock_connection(self) -> None:
        if self._lock_conn is not None:
            conn, self._lock_conn = self._lock_conn, None
            try:
                await conn.invalidate()  # never back to the pool: the session (and its locks) end
            except Exception:
                pass
            try:
                await conn.close()
            except Exception:
                pass

    async def check_sync_lock(self) -> None:
        """Inside a sync: the lock's session must still be alive, or another replica may be
        syncing the same rows; refuse to store rather than post a finding twice."""
        if not self._sync_held:
            return
        try:
            if self._lock_conn is None:
                raise StateStoreError("no lock connection")
            await self._lock_conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, StateStoreError) as exc:
            reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
            raise StateStoreError(f"lost the sync lock's connection, not storing this sync: {reason}") from None

    # -- outbox leases ----------------------------------------------------------------------

    async def claim_threads(self, now: float) -> list[str] | None:
        async with self._engine.begin() as conn:
            rows = await conn.execute(_CLAIM, {"me": self.replica, "lease": self.lease, "now": now,
                                               "threads": THREADS_PER_CLAIM})
            return [r[0] for r in rows]

    async def renew(self) -> None:
        """The heartbeat: drop this replica's leases on threads with nothing pending (other
        replicas may take them), and extend the rest."""
        async with self._engine.begin() as conn:
            await conn.execute(_DROP_IDLE, {"me": self.replica})
            await conn.execute(_EXTEND, {"me": self.replica, "lease": self.lease})

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(max(0.2, self.lease / 3))
            try:
                await self.renew()
            except Exception as exc:  # the database is away: leases may lapse, never double-claim
                log.warning("outbox lease heartbeat failed: %s", exc)


# Claim threads with due items that no other replica holds a live lease on. Rows are inserted in
# key order, so two replicas claiming overlapping threads wait for each other, never deadlock.
_CLAIM = text("""
INSERT INTO outbox_leases (finding_key, replica, lease_until)
SELECT due.finding_key, :me, now() + make_interval(secs => :lease) FROM (
    SELECT o.finding_key, min(o.id) AS first_id FROM outbox o
    WHERE o.state = 'pending' AND o.not_before <= :now
      AND NOT EXISTS (SELECT 1 FROM outbox_leases l WHERE l.finding_key = o.finding_key
                      AND l.replica <> :me AND l.lease_until >= now())
    GROUP BY o.finding_key
    ORDER BY first_id
    LIMIT :threads
) due
ORDER BY due.finding_key
ON CONFLICT (finding_key) DO UPDATE SET replica = excluded.replica, lease_until = excluded.lease_until
    WHERE outbox_leases.replica = excluded.replica OR outbox_leases.lease_until < now()
RETURNING finding_key
""")

_DROP_IDLE = text(
    "DELETE FROM outbox_leases l WHERE l.replica = :me AND NOT EXISTS ("
    "SELECT 1 FROM outbox o WHERE o.finding_key = l.finding_key AND o.state = 'pending')"
)
_EXTEND = text("UPDATE outbox_leases SET lease_until = now() + make_interval(secs => :lease) WHERE replica = :me")

