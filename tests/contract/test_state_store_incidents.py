"""The state store's side of storm roll-ups and of an outbox that scales (#14), on a real SQLite
file and a real PostgreSQL server: incidents and their members survive a restart, updates and
digests are folded when written (never into an item already attempted), and the next-due read
keeps parent posts first, threads in order, and leaves out threads waiting for a retry."""
from __future__ import annotations

import time
from dataclasses import replace

import pytest

from bot.core.findings import FindingStatus
from bot.core.incidents import Incident
from bot.core.state import DigestPayload, IncidentPayload, NewOutboxItem, OutboxKind, UpdatePayload
from tests.contract.test_state_store import DETECTION, T0, finding, item
from tests.state_stores import KINDS, open_store, reopen_store


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "state.sqlite3")


@pytest.fixture(params=KINDS)
async def store(request, path):
    store = await open_store(request.param, request, path)
    yield store
    await store.close()


def incident(key: str = "inc-1", channel: str = "C1") -> Incident:
    return Incident(key, channel, DETECTION, opened_at=T0, last_joined_at=T0)


async def test_incidents_and_members_survive_a_restart_in_join_order(store):
    members = [finding(f"f-{n}", group=f"g{n}") for n in (3, 1, 2)]
    await store.record_sync([], members, [NewOutboxItem("inc-1", IncidentPayload(OutboxKind.INCIDENT), priority=13)],
                            None, incidents=[incident()], members=[(f.key, "inc-1") for f in members])
    store = await reopen_store(store)
    [open_one] = await store.open_incidents()
    assert open_one.key == "inc-1" and open_one.channel == "C1" and open_one.detection == DETECTION
    assert [f.key for f in await store.incident_members("inc-1")] == ["f-3", "f-1", "f-2"]
    assert await store.incidents_of(["f-1", "f-9"]) == {"f-1": "inc-1"}
    [due] = await store.due_outbox()
    assert due.kind is OutboxKind.INCIDENT
    await store.incident_posted(due.id, "inc-1", "111.222")
    await store.incident_listed("inc-1", 3)
    await store.incident_listed("inc-1", 2)  # never moves back
    store = await reopen_store(store)
    stored = await store.incident("inc-1")
    assert stored is not None and stored.ts == "111.222" and stored.listed == 3
    assert await store.due_outbox() == []
    await store.close()


async def test_a_closed_incident_is_no_longer_open(store):
    await store.record_sync([], [], [], None, incidents=[incident("inc-1"), incident("inc-2")])
    await store.record_sync([], [], [], None, close_incidents=["inc-1"])
    assert [i.key for i in await store.open_incidents()] == ["inc-2"]
    closed = await store.incident("inc-1")
    assert closed is not None and closed.closed_at is not None


async def test_updates_and_digests_fold_into_the_pending_one_when_written(store):
    f = finding("f-1")
    await store.record_sync([], [f], [item("f-1", "update", {}), NewOutboxItem("f-1", DigestPayload.of(3, {"i-1"}))],
                            None)
    await store.record_sync([], [f], [item("f-1", "update", {}), NewOutboxItem("f-1", DigestPayload.of(4, {"i-2"})),
                                      NewOutboxItem("f-1", DigestPayload.of(1, {"i-1"}))], None)
    pending = await store.due_outbox()
    assert [i.kind for i in pending] == [OutboxKind.UPDATE, OutboxKind.DIGEST]  # one of each, not three
    digest = pending[1].payload
    assert isinstance(digest, DigestPayload) and digest.events == 8 and set(digest.hosts) == {"i-1", "i-2"}


async def test_a_digest_is_never_folded_into_once_attempted(store):
    f = finding("f-1")
    await store.record_sync([], [f], [NewOutboxItem("f-1", DigestPayload.of(3, {"i-1"}))], None)
    [first] = await store.due_outbox()
    sent_as = await store.outbox_attempt(first.id)  # what the worker sends: the payload as of its attempt
    await store.record_sync([], [f], [NewOutboxItem("f-1", DigestPayload.of(5, {"i-2"}))], None)
    assert isinstance(sent_as, DigestPayload) and sent_as.events == 3
    await store.outbox_sent(first.id)
    [second] = await store.due_outbox()
    assert second.id != first.id and isinstance(second.payload, DigestPayload) and second.payload.events == 5


async def test_an_update_behind_a_pending_post_is_not_queued(store):
    f = finding("f-1")
    await store.record_sync([], [f], [item("f-1", "post", {})], None)
    await store.record_sync([], [f], [NewOutboxItem("f-1", UpdatePayload())], None)
    assert [i.kind for i in await store.due_outbox()] == [OutboxKind.POST]


async def test_due_leaves_out_threads_waiting_for_a_retry_and_threads_asked_to_skip(store):
    a, b, c = finding("f-a", group="ga"), finding("f-b", group="gb"), finding("f-c", group="gc")
    await store.record_sync([], [a, b, c], [item("f-a", "post", {}), item("f-a", "reply", {"n": 1}),
                                            item("f-b", "post", {}), item("f-c", "post", {})], None)
    first = (await store.due_outbox())[0]
    await store.outbox_retry(first.id, "slack 503", time.time() + 60)
    due = await store.due_outbox(skip=["f-b"])
    assert {i.finding_key for i in due} == {"f-c"}


async def test_the_next_due_read_stays_fast_with_many_pending(store):
    """Timing goals live in the benchmark; here only that 20,000 pending rows are read in order."""
    findings = [replace(finding(f"f-{n}", group=f"g{n}")) for n in range(2000)]
    outbox = [entry for f in findings for entry in (item(f.key, "post", {}),
                                                     *(item(f.key, "reply", {"n": k}) for k in range(9)))]
    await store.record_sync([], findings, outbox, None)
    due = await store.due_outbox()
    assert len(due) == 100 and all(i.kind is OutboxKind.POST for i in due)
    assert [i.id for i in due] == sorted(i.id for i in due)


async def test_the_incident_summary_counts_in_the_store_what_the_message_shows(store):
    members = [replace(finding(f"f-{n}", group=f"{ws}|Kernel Module Loaded|cluster:c-{n}"), count=n + 1,
                       cluster_id=f"c-{n}", hosts=frozenset({f"i-{n}", "i-shared"}))
               for n, ws in enumerate(["111", "111", "222"])]
    members[2] = replace(members[2], status=FindingStatus.TERMINATED)
    await store.record_sync([], members, [], None, incidents=[incident()], members=[(f.key, "inc-1") for f in members])
    summary = await store.incident_summary("inc-1", top=2)
    assert summary is not None
    assert (summary.events, summary.findings, summary.clusters, summary.hosts, summary.workspaces) == (6, 3, 3, 4, 2)
    assert summary.open_clusters == 2 and summary.terminate_count == 2
    assert [r.finding_key for r in summary.rows] == ["f-2", "f-1"]  # the top ones by events
    assert [f.key for f in await store.incident_members("inc-1", offset=1)] == ["f-1", "f-2"]
    assert await store.incident_summary("inc-none") is None
