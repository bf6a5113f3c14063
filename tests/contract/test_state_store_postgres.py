"""The PostgreSQL state store as replicas see it: two or more stores on one real database.

The shared contract runs in test_state_store.py on both databases; these are what only
PostgreSQL has: migrations run once across replicas, one sync lock
across replicas, and outbox threads claimed by exactly one replica until its lease runs out.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace

import psycopg
import pytest

from bot.adapters.state import StateStore, StateStoreError, redact_url
from bot.adapters.state.migrate import head
from bot.core.state import NewOutboxItem, NotePayload
from tests.contract.test_state_store import T0, event, finding, item


@pytest.fixture
async def replicas(pg_url):
    """Open stores on one database; all closed at the end."""
    opened: list[StateStore] = []

    async def open_one(**options) -> StateStore:
        store = await StateStore.open(pg_url, **options)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


async def enqueue(store: StateStore, key: str, *kinds: str) -> None:
    await store.record_sync([], [finding(key, group=f"g-{key}")], [item(key, kind, {"kind": kind}) for kind in kinds], None)


def keys(items) -> set[str]:
    return {i.finding_key for i in items}


# ---------------------------------------------------------------- migrations


async def test_migrations_run_once_and_reopening_applies_none_again(pg_url, replicas):
    store = await replicas()
    assert await store.schema_revision() == head()
    again = await replicas()
    assert await again.schema_revision() == head()
    with psycopg.connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
    assert versions == [head()]
    assert {"meta", "events", "findings", "outbox", "actions", "suppressions", "outbox_leases"} <= tables


async def test_replicas_starting_together_migrate_once(pg_url, replicas):
    stores = await asyncio.gather(*(replicas(heartbeat=False) for _ in range(4)))
    assert [await s.schema_revision() for s in stores] == [head()] * 4
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1


async def test_an_unreachable_server_is_one_error_without_the_password():
    with pytest.raises(StateStoreError) as caught:
        await StateStore.open("postgresql://esm:s3cret-pw@127.0.0.1:1/esm", timeout=2)
    assert "s3cret-pw" not in str(caught.value) and "****" in str(caught.value)


def test_the_password_never_shows_in_repr_or_redacted_urls():
    assert redact_url("postgresql://esm:pw-123@db.example:5432/esm?sslmode=require") == (
        "postgresql://esm:****@db.example:5432/esm?sslmode=require"
    )
    assert "pw-9" not in redact_url("postgresql://db/esm?user=esm&password=pw-9")
    assert redact_url("postgresql://db.example/esm") == "postgresql://db.example/esm"


async def test_repr_masks_the_password(replicas, pg_url):
    store = await replicas()
    password = psycopg.conninfo.conninfo_to_dict(pg_url).get("password")
    assert password and password not in repr(store) and "****" in repr(store)


# ---------------------------------------------------------------- sync lock


async def test_only_one_replica_holds_the_sync_lock(replicas):
    a, b = await replicas(), await replicas()
    async with a.sync_lock() as held_a:
        assert held_a
        async with b.sync_lock() as held_b:
            assert not held_b
        async with a.sync_lock() as nested:  # a second sync in the same replica waits its turn too
            assert not nested
    async with b.sync_lock() as held_b:
        assert held_b


async def test_a_dead_replicas_sync_lock_is_released_with_its_connection(replicas, pg_url):
    a, b = await replicas(), await replicas()
    async with a.sync_lock() as held:
        assert held
        with psycopg.connect(pg_url, autocommit=True) as admin:  # the process died: its session ends
            ended = admin.execute(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (f"esm-bot sync lock {a.replica}"[:63],),
            ).fetchall()
            assert [killed for _, killed in ended] == [True]
            deadline = time.monotonic() + 10  # the server ends the session (and frees its locks) soon after
            while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (ended[0][0],)).fetchone()[0]:
                assert time.monotonic() < deadline, "the terminated session did not end"
                await asyncio.sleep(0.02)
        async with b.sync_lock() as held_b:
            assert held_b
        with pytest.raises(StateStoreError, match="sync lock"):  # and the old holder stores nothing
            await a.record_sync([event("e-1")], [finding()], [item("f-1", "post", {})], T0)
    assert await b.seen(["e-1"]) == set()
    async with a.sync_lock() as again:  # it reconnects for the next sync
        assert again


async def test_a_sync_request_is_taken_once_by_any_replica(replicas):
    a, b = await replicas(), await replicas()
    assert not await a.take_sync_request()
    await b.request_sync()
    await b.request_sync()
    assert await a.take_sync_request()
    assert not await a.take_sync_request() and not await b.take_sync_request()


# ---------------------------------------------------------------- outbox claims


async def test_a_thread_is_claimed_by_one_replica_only(replicas):
    a, b = await replicas(), await replicas()
    await enqueue(a, "f-1", "post", "reply", "reply")
    await enqueue(a, "f-2", "post")
    claimed = await a.due_outbox()
    assert keys(claimed) == {"f-1", "f-2"} and len(claimed) == 4
    assert await b.due_outbox() == []
    await enqueue(b, "f-1", "reply")  # a new item of a claimed thread stays with its holder
    await enqueue(b, "f-3", "post")  # a new thread is free
    assert keys(await b.due_outbox()) == {"f-3"}
    assert len(await a.due_outbox()) == 5


async def test_an_expired_lease_is_claimed_again(replicas):
    dead = await replicas(lease=0.5, heartbeat=False)
    alive = await replicas(lease=0.5, heartbeat=False)
    await enqueue(dead, "f-1", "post", "reply")
    first = await dead.due_outbox()
    await dead.outbox_attempt(first[0].id)  # it was sending the post when it died
    assert await alive.due_outbox() == []
    await asyncio.sleep(0.7)
    taken = await alive.due_outbox()
    assert [(i.kind, i.attempts) for i in taken] == [("post", 1), ("reply", 0)]  # attempts>0: check Slack first
    assert await dead.due_outbox() == []  # back from the dead, it does not take the thread back


async def test_the_heartbeat_keeps_a_live_replicas_threads(replicas):
    a = await replicas(lease=0.6)
    b = await replicas(lease=0.6)
    await enqueue(a, "f-1", "post")
    assert keys(await a.due_outbox()) == {"f-1"}
    await asyncio.sleep(1.5)  # more than twice the lease
    assert await b.due_outbox() == []


async def test_a_finished_thread_is_released_for_any_replica(replicas):
    a, b = await replicas(heartbeat=False), await replicas(heartbeat=False)
    await enqueue(a, "f-1", "post")
    (post,) = await a.due_outbox()
    await a.posted_with_message(post.id, "f-1", "C0123ABCD", "1.000100")
    await a.renew_leases()  # the heartbeat: nothing pending on f-1, so a lets it go
    await enqueue(a, "f-1", "update")
    assert keys(await b.due_outbox()) == {"f-1"}


async def test_closing_hands_threads_over_at_once(replicas):
    a, b = await replicas(), await replicas()
    await enqueue(a, "f-1", "post")
    assert keys(await a.due_outbox()) == {"f-1"}
    await a.close()
    assert keys(await b.due_outbox()) == {"f-1"}


async def test_racing_replicas_never_get_the_same_item(replicas):
    stores = [await replicas(heartbeat=False) for _ in range(3)]
    for n in range(60):
        await stores[0].record_sync([], [finding(f"f-{n}", group=f"g-{n}")],
                                    [item(f"f-{n}", kind, {}) for kind in ("post", "reply", "reply")], None)
    got: dict[int, list[int]] = {}

    async def worker(index: int, store: StateStore) -> None:
        while True:
            items = await store.due_outbox(limit=random.randint(1, 7))
            if not items:
                return
            for queued in items:
                got.setdefault(queued.id, []).append(index)
                await store.outbox_sent(queued.id)
            await asyncio.sleep(0)

    await asyncio.gather(*(worker(i, s) for i, s in enumerate(stores)))
    assert len(got) == 180 and all(len(holders) == 1 for holders in got.values())
    assert await stores[0].outbox_depth() == 0


# ---------------------------------------------------------------- PostgreSQL's text


async def test_nul_characters_are_stored_as_replacement_characters(replicas):
    store = await replicas()
    nul_id = "evt\x00nul"
    record = event(nul_id)
    params = {"instanceId": "i-1", "cmd": "a\x00b", "lit": "\\u0000"}
    odd = finding("f-1", first_event=replace(finding().first_event, request_params=params))
    await store.record_sync([record], [odd], [NewOutboxItem("f-1", NotePayload("x\x00y"))], T0)
    assert await store.seen([nul_id]) == {nul_id}
    loaded = await store.finding("f-1")
    assert loaded.first_event.request_params["cmd"] == "a\ufffdb"
    assert loaded.first_event.request_params["lit"] == "\\u0000"  # a literal backslash-u is kept
    assert (await store.due_outbox())[0].payload == NotePayload("x\ufffdy")
