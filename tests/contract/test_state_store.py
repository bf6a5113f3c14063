"""The state store contract on a real SQLite file and on a real PostgreSQL server (each test
runs on both, `[sqlite]` and `[postgres]`): schema, atomic syncs, watermark, findings, outbox,
and stores made by earlier releases upgraded in place."""
from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from bot.adapters.state import StateStore
from bot.adapters.state.migrate import head
from bot.core.state import (
    DigestPayload,
    EventRecord,
    NewOutboxItem,
    NotePayload,
    Payload,
    PostPayload,
    ReplyPayload,
    UpdatePayload,
)
from bot.core.events import parse_audit_row
from bot.core.suppressions import Scope, Suppression, SuppressionExists
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


def item(key: str, kind: str, body: dict) -> NewOutboxItem:
    """An outbox item of that kind; a reply carries `body` as its row, a note its "text"."""
    payload: Payload = {
        "post": PostPayload(), "update": UpdatePayload(), "reply": ReplyPayload(body),
        "digest": DigestPayload(int(body.get("events", 1))), "note": NotePayload(str(body.get("text", ""))),
    }[kind]
    return NewOutboxItem(key, payload)


def n_of(queued) -> int | None:
    return queued.payload.row.get("n") if isinstance(queued.payload, ReplyPayload) else None


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


async def test_migrations_create_the_schema(store):
    assert await store.schema_revision() == head()


async def test_reopening_is_idempotent_and_keeps_data(store):
    await store.record_sync([event("e-1")], [finding()], [item("f-1", "post", {"n": 1})], T0)
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
        [item("f-1", "post", {"text": "new finding"}), item("f-1", "reply", {"text": "repeat"})],
        T0 + timedelta(minutes=5),
    )
    assert await store.seen(["e-1", "e-2", "e-3"]) == {"e-1", "e-2"}
    assert await store.finding("f-1") == finding()
    due = await store.due_outbox()
    assert [NewOutboxItem(i.finding_key, i.payload) for i in due] == [
        item("f-1", "post", {"text": "new finding"}),
        item("f-1", "reply", {"text": "repeat"}),
    ]
    assert await store.watermark() == T0 + timedelta(minutes=5)
    counts = await store.counts()
    assert (counts["new_finding"], counts["repeat"], counts["findings"], counts["posted"]) == (1, 1, 1, 0)


async def test_a_failing_finding_rolls_back_the_whole_batch(store):
    await store.record_sync([event("e-0")], [finding("f-0")], [item("f-0", "post", {})], T0)
    unserialisable = finding("f-bad", first_event=unserialisable_row())
    with pytest.raises(TypeError):
        await store.record_sync(
            [event("e-1"), event("e-2")],
            [finding("f-1"), unserialisable],
            [item("f-1", "post", {"x": 1})],
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
        await store.record_sync([event("e-1")], [finding("f-1")], [item("f-1", "reply", {"bad": {1, 2}})], T0)
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


async def enqueue(store: StateStore, *kinds: str, key: str = "f-1") -> list[int]:
    await store.record_sync([], [finding(key)], [item(key, kind, {"kind": kind}) for kind in kinds], None)
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
    assert [(i.id, i.kind, i.payload) for i in due] == [(ids[1], "reply", ReplyPayload({"kind": "reply"}))]
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
    await store.record_sync([], [routine], [item("f-routine", "post", {}), item("f-routine", "reply", {"n": 1}),
                                            item("f-routine", "reply", {"n": 2})], None)
    await store.record_sync([], [medium, critical], [item("f-medium", "post", {}), item("f-critical", "post", {})], None)

    due = [(queued.finding_key, queued.kind, n_of(queued)) for queued in await store.due_outbox()]
    assert due == [
        ("f-critical", "post", None),
        ("f-routine", "post", None),
        ("f-medium", "post", None),
        ("f-routine", "reply", 1),
        ("f-routine", "reply", 2),
    ]


async def test_a_deferred_item_holds_back_the_rest_of_its_thread_only(store):
    await store.record_sync([], [finding("f-1", group="g1"), finding("f-2", group="g2")],
                            [item("f-1", "reply", {"n": 1}), item("f-1", "reply", {"n": 2}), item("f-2", "reply", {"n": 3})], None)
    [first, *_] = await store.due_outbox()
    await store.outbox_retry(first.id, "slack 503", time.time() + 60)

    due = [n_of(queued) for queued in await store.due_outbox()]
    assert due == [3], "reply 2 must not overtake reply 1 of the same thread"


# ---------------------------------------------------------------- response actions


async def test_a_destructive_action_is_claimed_once_until_released(store):
    claims = await asyncio.gather(*(store.claim_action("f-1", "esm.terminate_cluster", f"U0R{n}") for n in range(4)))
    assert sorted(claims) == [False, False, False, True]
    assert await store.claim_action("f-1", "esm.acknowledge", "U0R0"), "another action has its own claim"
    await store.release_claim("f-1", "esm.terminate_cluster")
    assert await store.claim_action("f-1", "esm.terminate_cluster", "U0R1")


# ---------------------------------------------------------------- replays (#11)


def in_seconds(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


async def test_the_replay_ledger_lets_a_key_through_once_until_it_expires(store):
    assert await store.first_seen("slack:a", in_seconds(900)) is True
    assert await store.first_seen("slack:a", in_seconds(900)) is False
    assert await store.first_seen("slack:b", in_seconds(900)) is True, "another key is another request"
    assert await store.first_seen("slack:short", in_seconds(-1)) is True
    assert await store.first_seen("slack:short", in_seconds(900)) is True, "an expired key is free again"
    assert await store.first_seen("slack:short", in_seconds(900)) is False


async def test_the_replay_ledger_survives_a_restart(store):
    assert await store.first_seen("slack:restart", in_seconds(900)) is True
    store = await reopen(store)
    assert await store.first_seen("slack:restart", in_seconds(900)) is False
    await store.close()


async def test_concurrent_callers_of_one_key_one_wins(store):
    answers = await asyncio.gather(*(store.first_seen("slack:race", in_seconds(900)) for _ in range(8)))
    assert sorted(answers) == [False] * 7 + [True]


async def test_expired_replay_keys_are_pruned(store):
    for n in range(5):
        await store.first_seen(f"slack:old-{n}", in_seconds(-60))
    store._next_replay_prune = 0.0  # the next write prunes
    await store.first_seen("slack:new", in_seconds(900))
    await store.flush_replay_keys()  # SQLite writes new keys a moment later
    assert await store.replay_keys_stored() == 1


async def test_a_replay_guard_on_the_store_catches_a_replay_after_a_restart(store):
    """Two guards on one store stand for two processes (a restart, or two replicas)."""
    from emulators.slack_signing import signed_headers
    from handlers.replay_guard import ReplayGuard

    body = b"command=%2Fesm&text=status&user_id=U0RESPONDER"
    headers = signed_headers("secret", body)
    assert await ReplayGuard("secret", ledger=store).is_replay(body, headers) is False
    store = await reopen(store)
    assert await ReplayGuard("secret", ledger=store).is_replay(body, headers) is True
    await store.close()


async def test_a_locked_store_never_holds_a_slack_request_past_the_guards_bound(store, caplog):
    """Someone else holds the store's lock. PostgreSQL (the replay ledger's table locked): the
    guard waits no longer than its bound, this process's memory decides, and the log says so.
    SQLite (the file locked): stored keys are read on the readers, which a writer's lock never
    holds, so the store still decides; the new key is written once the lock is gone."""
    from emulators.slack_signing import signed_headers
    from handlers.replay_guard import ReplayGuard

    await store.first_seen("slack:warm-up", in_seconds(900))  # the table exists
    await store.flush_replay_keys()
    guard = ReplayGuard("secret", ledger=store, ledger_timeout=0.5)
    body = b"command=%2Fesm&text=help"
    headers = signed_headers("secret", body)
    with locked(store):
        started = time.monotonic()
        assert await guard.is_replay(body, headers) is False
        assert time.monotonic() - started < 2.0
        assert await guard.is_replay(body, headers) is True, "this process still remembers it"
    if store.dialect == "postgresql":
        assert guard.ledger_failures == 1 and "replay ledger unavailable" in caplog.text
    else:
        assert guard.ledger_failures == 0
        await store.flush_replay_keys()
        assert await store.replay_keys_stored() == 2
        store = await reopen(store)
        assert await ReplayGuard("secret", ledger=store).is_replay(body, headers) is True
        await store.close()


@contextmanager
def locked(store):
    """Another connection holds the replay ledger's table (PostgreSQL) or the whole file (SQLite)."""
    if store.dialect == "sqlite":
        import sqlite3

        other = sqlite3.connect(store.target, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
    else:
        import psycopg

        with psycopg.connect(store.target) as other:
            other.execute("LOCK TABLE replay_keys IN ACCESS EXCLUSIVE MODE")
            yield
            other.rollback()


# ---------------------------------------------------------------- one active suppression (#11)


def suppression(scope: Scope | None = None, match: dict | None = None, **changes) -> Suppression:
    base = Suppression(
        id="", detection=DETECTION.name, scope=scope or Scope(workspace_id="111", instance_id="i-1"),
        match=match if match is not None else {"origin": ("container",), "file_path": ("/etc/ssl/*", "/usr/*")},
        reason="lab", created_by="U0ALICE", created_at=T0, expires_at=in_seconds(3600), finding_key="f-1",
    )
    return replace(base, **changes)


async def test_one_active_suppression_per_detection_scope_and_patterns(store):
    first = await store.add_suppression(suppression())
    same = suppression(match={"file_path": ("/usr/*", "/etc/ssl/*"), "origin": ("container",)},
                       detection=DETECTION.name.upper(), reason="other words", created_by="U0BOB",
                       expires_at=None)
    with pytest.raises(SuppressionExists) as caught:
        await store.add_suppression(same)
    assert caught.value.existing.id == first.id and caught.value.existing.created_by == "U0ALICE"
    # another scope, other patterns, another detection: other events, other suppressions
    await store.add_suppression(suppression(scope=Scope(workspace_id="111", cluster_id="c-1")))
    await store.add_suppression(suppression(match={"origin": ("host",)}))
    await store.add_suppression(suppression(detection="Boot Files Modified"))
    assert len(await store.active_suppressions(T0)) == 4
    # once removed, or expired, the same one may be made again
    assert await store.remove_suppression(first.id, "U0BOB")
    again = await store.add_suppression(suppression())
    expiring = await store.add_suppression(suppression(match={}, expires_at=in_seconds(0.5)))
    await asyncio.sleep(0.6)
    renewed = await store.add_suppression(suppression(match={}))
    assert len({first.id, again.id, expiring.id, renewed.id}) == 4


async def test_concurrent_identical_suppressions_make_one(store):
    results = await asyncio.gather(*(store.add_suppression(suppression(created_by=f"U0R{n}")) for n in range(6)),
                                   return_exceptions=True)
    made = [r for r in results if isinstance(r, Suppression)]
    refused = [r for r in results if isinstance(r, SuppressionExists)]
    assert len(made) == 1 and len(refused) == 5, results
    assert {r.existing.id for r in refused} == {made[0].id}
    assert [s.id for s in await store.active_suppressions(T0)] == [made[0].id]


# ---------------------------------------------------------------- stores of earlier releases


def _legacy_rows(finding_: Finding) -> dict[str, tuple]:
    """One row per table, as the release before the shared migrations wrote them."""
    import json

    from bot.core.codec import context_to_json, detection_to_json

    return {
        "meta": ("watermark", T0.isoformat()),
        "events": ("e-old", T0.isoformat(), DETECTION.name, "new_finding", finding_.key, "111", "i-1", "c-1",
                   T0.isoformat()),
        "findings": (finding_.key, finding_.group, json.dumps(detection_to_json(DETECTION)),
                     json.dumps(finding_.first_event.to_json()), T0.isoformat(), T0.isoformat(), 1, json.dumps(["i-1"]),
                     json.dumps(context_to_json(finding_.context)), "c-1", "open", None, None, 0, None, None),
        "outbox": (finding_.key, "reply", json.dumps({"row": {"n": 7}, "cid": "wh-old"}), T0.isoformat()),
        "suppressions": ("Kernel Module Loaded", json.dumps({"cluster_id": "c-1"}),
                         json.dumps({"cmdline": ["insmod x"]}), "lab", "U0ALICE", T0.isoformat()),
    }


def _make_legacy_sqlite(path: str, finding_: Finding) -> None:
    import sqlite3

    from tests.contract.legacy_schema import SQLITE_V4

    rows = _legacy_rows(finding_)
    db = sqlite3.connect(path)
    for script in SQLITE_V4:
        db.executescript(script)
    db.execute("INSERT INTO meta VALUES (?, ?)", rows["meta"])
    db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows["events"])
    db.execute("INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows["findings"])
    db.execute("INSERT INTO outbox (finding_key, kind, payload, created_at) VALUES (?, ?, ?, ?)", rows["outbox"])
    db.execute("INSERT INTO suppressions (detection, scope, match, reason, created_by, created_at) "
               "VALUES (?, ?, ?, ?, ?, ?)", rows["suppressions"])
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()


def _make_legacy_postgres(url: str, finding_: Finding) -> None:
    import psycopg

    from tests.contract.legacy_schema import POSTGRES_V4

    rows = _legacy_rows(finding_)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        for number, script in enumerate(POSTGRES_V4, start=1):
            conn.execute(script)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
        conn.execute("INSERT INTO meta VALUES (%s, %s)", rows["meta"])
        conn.execute("INSERT INTO events VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows["events"])
        conn.execute("INSERT INTO findings VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                     rows["findings"])
        conn.execute("INSERT INTO outbox (finding_key, kind, payload, created_at) VALUES (%s, %s, %s, %s)",
                     rows["outbox"])
        conn.execute("INSERT INTO suppressions (detection, scope, match, reason, created_by, created_at) "
                     "VALUES (%s, %s, %s, %s, %s, %s)", rows["suppressions"])


@pytest.mark.parametrize("kind", KINDS)
async def test_a_store_of_the_previous_release_is_upgraded_in_place(kind, request, path):
    old = finding()
    if kind == "sqlite":
        _make_legacy_sqlite(path, old)
        target = path
    else:
        target = request.getfixturevalue("pg_url")
        _make_legacy_postgres(target, old)
    store = await StateStore.open(target)
    try:
        assert await store.schema_revision() == head()
        assert await store.watermark() == T0
        assert await store.seen(["e-old", "e-new"]) == {"e-old"}
        assert await store.finding(old.key) == old
        [pending] = await store.due_outbox()
        assert (pending.kind, pending.payload) == ("reply", ReplyPayload({"n": 7}, "wh-old")), \
            "an item queued before the upgrade is still sent after it, with its correlation id"
        [kept] = await store.active_suppressions(T0)
        assert (kept.id, kept.created_by) == ("b1", "U0ALICE")
        with pytest.raises(SuppressionExists):  # the upgrade keyed it: the same one is not made twice
            await store.add_suppression(replace(kept, id="", created_by="U0BOB"))
        # and it goes on working: a new sync lands next to the old rows
        await store.record_sync([event("e-new")], [finding("f-2", group="g-2")], [item("f-2", "post", {})],
                                T0 + timedelta(minutes=1))
        assert await store.seen(["e-old", "e-new"]) == {"e-old", "e-new"}
        assert (await store.counts())["findings"] == 2
    finally:
        await store.close()
    store = await StateStore.open(target)  # opening again migrates nothing
    assert await store.schema_revision() == head()
    await store.close()


async def test_a_state_file_in_a_missing_folder_is_one_clear_error(tmp_path):
    from bot.adapters.state import StateStoreError

    with pytest.raises(StateStoreError, match="does not exist"):
        await StateStore.open(str(tmp_path / "nowhere" / "state.sqlite3"))


# ---------------------------------------------------------------- the daily digest (#16)


async def test_a_day_s_digest_is_claimed_once_and_a_dead_claim_is_taken_over(store):
    now = datetime(2026, 12, 5, 8, tzinfo=timezone.utc)
    again = await reopen(store)  # another process on the same store: a restart, or a replica
    try:
        assert await store.claim_digest("2026-12-05", now)
        assert not await again.claim_digest("2026-12-05", now)
        assert not await again.claim_digest("2026-12-05", now + timedelta(seconds=599))
        assert await again.claim_digest("2026-12-05", now + timedelta(seconds=601))  # its claimer died
        await again.digest_posted("2026-12-05", "1700000000.000100")
        assert not await store.claim_digest("2026-12-05", now + timedelta(days=1))
        assert (await store.digest_of("2026-12-05"))[1] == "1700000000.000100"
        assert await store.claim_digest("2026-12-06", now + timedelta(days=1))
    finally:
        await again.close()
