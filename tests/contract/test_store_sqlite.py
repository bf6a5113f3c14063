"""The state store contract on a real SQLite file and on a real PostgreSQL server (each test
runs on both, `[sqlite]` and `[postgres]`): schema, atomic syncs, watermark, findings, outbox."""
from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from bot.adapters.store_sqlite import MIGRATIONS, EventRecord, SQLiteStore
from bot.core.events import parse_audit_row
from tests.state_stores import KINDS, open_store, reopen_store
from bot.core.findings import (
    ClusterContext,
    Context,
    Detection,
    Finding,
    FindingStatus,
    NotebookCommand,
    Severity,
)

T0 = datetime(2025, 3, 4, 10, 0, tzinfo=timezone.utc)
DETECTION = Detection(
    name="Kernel Module Loaded",
    category="Kernel Related Events",
    severity=Severity.HIGH,
    description="A kernel module was loaded.",
    guidance="Check who loaded it.",
)


def row(event_id: str = "evt-1", minutes: float = 0, **params):
    return parse_audit_row(
        {
            "event_id": event_id,
            "event_time": T0 + timedelta(minutes=minutes),
            "workspace_id": "111",
            "service_name": "capsule8-alerts-dataplane",
            "action_name": DETECTION.name,
            "request_params": {"instanceId": "i-1", **params},
            "response": {"status_code": 200},
            "user_identity": {"email": None},
            "source_ip_address": "10.0.0.9",
        }
    )


def unserialisable_row():
    """An AuditRow holding a value json cannot encode: storing it must fail."""
    return replace(row("evt-bad"), request_params={"bad": object()})


def finding(key: str = "f-1", group: str = "111|Kernel Module Loaded|cluster:c-1", minutes: float = 0, **changes) -> Finding:
    first = row(f"evt-{key}", minutes)
    base = Finding(
        key=key,
        detection=DETECTION,
        first_event=first,
        first_seen=first.event_time,
        last_seen=first.event_time,
        hosts=frozenset({"i-1"}),
        cluster_id="c-1",
        group=group,
    )
    return replace(base, **changes)


def event(event_id: str, finding_key: str | None = "f-1", disposition: str = "new_finding") -> EventRecord:
    return EventRecord(
        event_id=event_id, event_time=T0, detection=DETECTION.name, disposition=disposition,
        finding_key=finding_key, workspace_id="111", instance_id="i-1", cluster_id="c-1",
    )


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "state.sqlite3")


@pytest.fixture(params=KINDS)
async def store(request, path):
    store = await open_store(request.param, request, path)
    yield store
    await store.close()


async def reopen(store):
    return await reopen_store(store)


# ---------------------------------------------------------------- schema


def test_migrations_create_the_schema(path):
    SQLiteStore(path)
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = db.execute("PRAGMA user_version").fetchone()[0]
    assert {"meta", "events", "findings", "outbox"} <= tables
    assert version == len(MIGRATIONS)


async def test_reopening_is_idempotent_and_keeps_data(store):
    await store.record_sync([event("e-1")], [finding()], [("f-1", "post", {"n": 1})], T0)
    for _ in range(2):
        store = await reopen(store)
    assert await store.seen(["e-1"]) == {"e-1"}
    assert (await store.finding("f-1")).key == "f-1"
    assert await store.outbox_depth() == 1
    assert await store.watermark() == T0
    await store.close()


# ---------------------------------------------------------------- record_sync


async def test_record_sync_stores_everything_together(store):
    await store.record_sync(
        [event("e-1"), event("e-2", disposition="repeat")],
        [finding()],
        [("f-1", "post", {"text": "new finding"}), ("f-1", "reply", {"text": "repeat"})],
        T0 + timedelta(minutes=5),
    )
    assert await store.seen(["e-1", "e-2", "e-3"]) == {"e-1", "e-2"}
    assert await store.finding("f-1") == finding()
    due = await store.due_outbox()
    assert [(i.finding_key, i.kind, i.payload) for i in due] == [
        ("f-1", "post", {"text": "new finding"}),
        ("f-1", "reply", {"text": "repeat"}),
    ]
    assert await store.watermark() == T0 + timedelta(minutes=5)
    counts = await store.counts()
    assert (counts["new_finding"], counts["repeat"], counts["findings"], counts["posted"]) == (1, 1, 1, 0)


async def test_a_failing_finding_rolls_back_the_whole_batch(store):
    await store.record_sync([event("e-0")], [finding("f-0")], [("f-0", "post", {})], T0)
    unserialisable = finding("f-bad", first_event=unserialisable_row())
    with pytest.raises(TypeError):
        await store.record_sync(
            [event("e-1"), event("e-2")],
            [finding("f-1"), unserialisable],
            [("f-1", "post", {"x": 1})],
            T0 + timedelta(hours=1),
        )
    assert await store.seen(["e-1", "e-2"]) == set()
    assert await store.finding("f-1") is None
    assert await store.finding("f-bad") is None
    assert [i.finding_key for i in await store.due_outbox()] == ["f-0"]
    assert await store.watermark() == T0
    # the store is still usable after the rollback
    await store.record_sync([event("e-1")], [finding("f-1")], [], T0 + timedelta(hours=1))
    assert await store.seen(["e-1"]) == {"e-1"}


async def test_a_failing_outbox_payload_rolls_back_the_whole_batch(store):
    with pytest.raises(TypeError):
        await store.record_sync([event("e-1")], [finding("f-1")], [("f-1", "post", {"bad": {1, 2}})], T0)
    assert await store.seen(["e-1"]) == set()
    assert await store.finding("f-1") is None
    assert await store.watermark() is None


async def test_a_failed_batch_is_not_visible_after_reopening(store):
    with pytest.raises(TypeError):
        await store.record_sync([event("e-1")], [finding("f-1", first_event=unserialisable_row())], [], T0)
    store = await reopen(store)
    assert await store.seen(["e-1"]) == set()
    assert await store.watermark() is None
    await store.close()


async def test_watermark_never_moves_backwards(store):
    await store.record_sync([], [], [], T0 + timedelta(hours=2))
    await store.record_sync([], [], [], T0)
    assert await store.watermark() == T0 + timedelta(hours=2)
    await store.record_sync([], [], [], None)
    assert await store.watermark() == T0 + timedelta(hours=2)
    await store.record_sync([], [], [], T0 + timedelta(hours=2, microseconds=500))
    assert await store.watermark() == T0 + timedelta(hours=2, microseconds=500)


async def test_watermark_in_another_timezone_is_compared_as_an_instant(store):
    await store.record_sync([], [], [], T0)
    await store.record_sync([], [], [], (T0 - timedelta(minutes=30)).astimezone(timezone(timedelta(hours=5))))
    assert await store.watermark() == T0
    await store.record_sync([], [], [], (T0 + timedelta(minutes=30)).astimezone(timezone(timedelta(hours=-8))))
    assert await store.watermark() == T0 + timedelta(minutes=30)


async def test_no_watermark_before_the_first_sync(store):
    assert await store.watermark() is None


async def test_an_event_id_recorded_twice_keeps_its_first_record(store):
    await store.record_sync([event("e-1", disposition="new_finding")], [], [], None)
    await store.record_sync([event("e-1", disposition="repeat")], [], [], None)
    counts = await store.counts()
    assert counts.get("new_finding") == 1 and "repeat" not in counts


# ---------------------------------------------------------------- seen / findings


async def test_seen_works_for_more_than_500_ids(store):
    stored = [f"e-{i:04d}" for i in range(1200)]
    await store.record_sync([event(e, None, "ignored") for e in stored], [], [], None)
    asked = stored[::3] + [f"missing-{i}" for i in range(700)]
    assert await store.seen(asked) == set(stored[::3])
    assert await store.seen([]) == set()


async def test_latest_findings_returns_the_newest_per_group(store):
    g1, g2 = "111|KML|cluster:c-1", "111|KML|cluster:c-2"
    await store.record_sync(
        [],
        [finding("old", g1, 0), finding("new", g1, 90), finding("mid", g1, 45), finding("other", g2, 10)],
        [],
        None,
    )
    latest = await store.latest_findings([g1, g2, g1, "no-such-group"])
    assert {g: f.key for g, f in latest.items()} == {g1: "new", g2: "other"}


async def test_finding_round_trips_with_context_detection_and_first_event(store):
    context = Context(
        cluster=ClusterContext(cluster_id="c-1", name="etl", owner="a@example.com", access_mode="USER_ISOLATION",
                               runtime="14.3", node_role="driver", source="system tables"),
        commands=(
            NotebookCommand(event_time=T0 - timedelta(minutes=2), user="a@example.com", notebook_id="nb-1",
                            command_text="%sh insmod evil.ko", status="200"),
            NotebookCommand(event_time=T0 - timedelta(minutes=9), user=None, notebook_id=None, command_text=None),
        ),
        problems=("clusters API timed out",),
    )
    original = finding(
        context=context, count=4, hosts=frozenset({"i-1", "i-2"}), status=FindingStatus.ACKNOWLEDGED,
        status_by="U012ABCDE", status_note="looking", suppressed_count=2, last_seen=T0 + timedelta(minutes=7),
        first_event=row("evt-f-1", containerId="3f4e9c2a1b7d", processLineage="bash > insmod"),
    )
    await store.record_sync([], [original], [], None)
    loaded = await store.finding("f-1")
    assert loaded == original
    assert loaded.context.cluster.name == "etl"
    assert loaded.context.commands[0].command_text == "%sh insmod evil.ko"
    assert loaded.context.problems == ("clusters API timed out",)
    assert loaded.detection.severity is Severity.HIGH
    assert loaded.first_event.request_params["processLineage"] == "bash > insmod"
    store = await reopen(store)
    assert await store.finding("f-1") == original
    await store.close()


async def test_recording_a_finding_again_updates_it(store):
    await store.record_sync([], [finding()], [], None)
    await store.record_sync([], [finding(count=5, last_seen=T0 + timedelta(minutes=30), status=FindingStatus.BENIGN)], [], None)
    loaded = await store.finding("f-1")
    assert (loaded.count, loaded.last_seen, loaded.status) == (5, T0 + timedelta(minutes=30), FindingStatus.BENIGN)


async def test_unknown_finding_is_none(store):
    assert await store.finding("nope") is None
    assert await store.message_of("nope") is None


# ---------------------------------------------------------------- outbox


async def enqueue(store: SQLiteStore, *kinds: str, key: str = "f-1") -> list[int]:
    await store.record_sync([], [finding(key)], [(key, kind, {"kind": kind}) for kind in kinds], None)
    return [i.id for i in await store.due_outbox() if i.finding_key == key]


async def test_due_outbox_is_in_id_order_and_honours_limit(store):
    ids = await enqueue(store, "post", "reply", "reply", "update")
    assert ids == sorted(ids)
    assert [i.kind for i in await store.due_outbox()] == ["post", "reply", "reply", "update"]
    assert [i.id for i in await store.due_outbox(limit=2)] == ids[:2]


async def test_sent_items_are_not_due(store):
    first, second = await enqueue(store, "post", "reply")
    await store.outbox_sent(first)
    assert [i.id for i in await store.due_outbox()] == [second]
    assert await store.outbox_depth() == 1


async def test_retry_defers_until_not_before_and_counts_attempts(store):
    first, second = await enqueue(store, "post", "reply")
    await store.outbox_attempt(first)  # the worker counts each try before it calls Slack
    await store.outbox_retry(first, "ratelimited", time.time() + 3600)
    assert await store.due_outbox() == [], "the reply waits behind its deferred parent"
    assert await store.outbox_depth() == 2  # deferred items are still pending
    await store.outbox_attempt(first)
    await store.outbox_retry(first, "ratelimited", time.time() - 1)
    due = await store.due_outbox()
    assert [(i.id, i.attempts) for i in due] == [(first, 2), (second, 0)]


async def test_dead_items_stop_delivery(store):
    first, second = await enqueue(store, "post", "reply")
    await store.outbox_dead(first, "channel_not_found")
    assert [i.id for i in await store.due_outbox()] == [second]
    assert await store.outbox_depth() == 1


async def test_dead_for_finding_stops_only_that_findings_pending_items(store):
    await enqueue(store, "post", "reply", key="f-1")
    (other,) = await enqueue(store, "post", key="f-2")
    await store.outbox_dead_for_finding("f-1", "message deleted")
    assert [i.id for i in await store.due_outbox()] == [other]
    assert await store.outbox_depth() == 1


async def test_posted_with_message_records_ts_and_sent_together(store):
    (post,) = await enqueue(store, "post")
    await store.posted_with_message(post, "f-1", "C0123ABCD", "1741082400.000100")
    assert await store.message_of("f-1") == ("C0123ABCD", "1741082400.000100")
    assert await store.due_outbox() == []
    assert (await store.counts())["posted"] == 1
    store = await reopen(store)
    assert await store.message_of("f-1") == ("C0123ABCD", "1741082400.000100")
    assert await store.due_outbox() == []
    await store.close()


async def test_outbox_depth_counts_pending_items(store):
    assert await store.outbox_depth() == 0
    ids = await enqueue(store, "post", "reply", "reply")
    assert await store.outbox_depth() == 3
    await store.outbox_sent(ids[0])
    await store.outbox_dead(ids[1], "x")
    assert await store.outbox_depth() == 1


async def test_pending_outbox_survives_reopening(store):
    ids = await enqueue(store, "post", "reply")
    await store.outbox_sent(ids[0])
    store = await reopen(store)
    due = await store.due_outbox()
    assert [(i.id, i.kind, i.payload) for i in due] == [(ids[1], "reply", {"kind": "reply"})]
    await store.close()


async def test_meta_values_survive_reopening(store):
    await store.set_meta("bot_user", "U0BOT")
    await store.set_meta("bot_user", "U0BOT2")
    store = await reopen(store)
    assert await store.get_meta("bot_user") == "U0BOT2"
    assert await store.get_meta("missing") is None
    await store.close()


async def test_new_findings_posts_go_first_most_severe_first_and_threads_keep_their_order(store):
    routine = finding("f-routine", group="g1")
    critical = finding("f-critical", group="g2", detection=replace(DETECTION, severity=Severity.CRITICAL))
    medium = finding("f-medium", group="g3", detection=replace(DETECTION, severity=Severity.MEDIUM))
    await store.record_sync([], [routine], [("f-routine", "post", {}), ("f-routine", "reply", {"n": 1}),
                                            ("f-routine", "reply", {"n": 2})], None)
    await store.record_sync([], [medium, critical], [("f-medium", "post", {}), ("f-critical", "post", {})], None)

    due = [(item.finding_key, item.kind, item.payload.get("n")) for item in await store.due_outbox()]
    assert due == [
        ("f-critical", "post", None),
        ("f-routine", "post", None),
        ("f-medium", "post", None),
        ("f-routine", "reply", 1),
        ("f-routine", "reply", 2),
    ]


async def test_a_deferred_item_holds_back_the_rest_of_its_thread_only(store):
    await store.record_sync([], [finding("f-1", group="g1"), finding("f-2", group="g2")],
                            [("f-1", "reply", {"n": 1}), ("f-1", "reply", {"n": 2}), ("f-2", "reply", {"n": 3})], None)
    [first, *_] = await store.due_outbox()
    await store.outbox_retry(first.id, "slack 503", time.time() + 60)

    due = [item.payload["n"] for item in await store.due_outbox()]
    assert due == [3], "reply 2 must not overtake reply 1 of the same thread"
