"""The state store's part of the playbook (#12), on SQLite and PostgreSQL: the audit record's
before/after, the state an undo reads, and the parent's containment lines, written together."""
from __future__ import annotations

from bot.core.state import ActionRecord, ActionState, NewOutboxItem, NotePayload, NoteButton
from tests.contract.test_state_store import T0, finding, path, store  # noqa: F401  (fixtures)

QUARANTINE = "esm.quarantine_cluster"
BEFORE = [{"kind": "user_name", "name": "dana@example.com", "level": "CAN_MANAGE"}]
AFTER = [{"kind": "group_name", "name": "security-team", "level": "CAN_MANAGE"}]


async def test_an_action_record_keeps_before_after_state_and_the_parents_line(store):
    await store.record_sync([], [finding()], [], T0)
    note = NotePayload("quarantined", button=NoteButton("esm.undo_quarantine", "Undo quarantine", '{"v":1}'))
    record = ActionRecord(before=BEFORE, after=AFTER, mark=(QUARANTINE, "Quarantined"),
                          state=(QUARANTINE, ActionState("c-1", BEFORE, AFTER)))

    await store.record_action("f-1", QUARANTINE, "U1", "done", "quarantined", dry_run=False,
                              outbox=[NewOutboxItem("f-1", note)], record=record)

    [audit] = await store.actions_for("f-1")
    assert (audit["before"], audit["after"]) == (BEFORE, AFTER)
    state = await store.action_state("f-1", QUARANTINE)
    assert (state.target, state.before, state.after, state.user_id) == ("c-1", BEFORE, AFTER, "U1")
    [mark] = (await store.finding("f-1")).marks
    assert (mark.action, mark.text, mark.by) == (QUARANTINE, "Quarantined", "U1")
    [queued] = await store.due_outbox()
    assert queued.payload.button == note.button, "the undo button survives the outbox"


async def test_a_sync_never_overwrites_the_containment_lines_and_an_undo_clears_them(store):
    await store.record_sync([], [finding()], [], T0)
    record = ActionRecord(mark=(QUARANTINE, "Quarantined"), state=(QUARANTINE, ActionState("c-1", BEFORE, AFTER)))
    await store.record_action("f-1", QUARANTINE, "U1", "done", "q", dry_run=False, record=record)

    await store.record_sync([], [finding(count=5)], [], T0)  # a repeat updates the finding
    assert [m.text for m in (await store.finding("f-1")).marks] == ["Quarantined"]

    undo = ActionRecord(mark=(QUARANTINE, None), state=(QUARANTINE, None))
    await store.record_action("f-1", "esm.undo_quarantine", "U2", "done", "undone", dry_run=False, record=undo)
    assert (await store.finding("f-1")).marks == ()
    assert await store.action_state("f-1", QUARANTINE) is None
    assert [a["action"] for a in await store.actions_for("f-1")] == [QUARANTINE, "esm.undo_quarantine"]
