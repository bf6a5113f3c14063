"""Storm incidents (#14): the budget rule, the summary of an incident's findings, and its Block Kit
(message, thread listing, confirmation modal) within Slack's limits for any input, escaped."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.core.events import parse_audit_row
from bot.core.findings import ClusterContext, Context, Detection, Finding, FindingStatus, Severity
from bot.core.incidents import Incident, incident_key, is_incident_key, storming, summarise
from bot.render.blocks import limit_violations
from bot.render.incident import (
    MAX_OPTIONS,
    QUARANTINE_COPY,
    bulk_modal,
    incident_message,
    list_messages,
    terminate_all_modal,
)
from emulators.block_kit import message_problems, view_problems

T0 = datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)
DETECTION = Detection("Kernel Module Loaded", "Kernel", Severity.HIGH, "A module was loaded.", "Check it.")


def member(n: int, *, name: str | None = None, count: int = 2, status: FindingStatus = FindingStatus.OPEN,
           workspace: str = "111") -> Finding:
    row = parse_audit_row({"event_id": f"e{n}", "event_time": T0 + timedelta(seconds=n), "workspace_id": workspace,
                           "service_name": "capsule8-alerts-dataplane", "action_name": DETECTION.name,
                           "request_params": {"instanceId": f"i-{n}"}, "response": {}, "user_identity": {}})
    cluster = ClusterContext(f"c-{n}", name=name if name is not None else f"cluster-{n}", owner=f"o{n}@x.com",
                             access_mode="USER_ISOLATION")
    return Finding(key=f"f{n}", group=f"g{n}", detection=DETECTION, first_event=row, first_seen=row.event_time,
                   last_seen=row.event_time + timedelta(minutes=n), hosts=frozenset({f"i-{n}", f"i-{n}b"}),
                   count=count, context=Context(cluster=cluster), cluster_id=f"c-{n}", status=status)


INCIDENT = Incident(incident_key("C1", DETECTION.name, "f0"), "C1", DETECTION, T0, T0)


def test_a_sync_storms_when_its_posts_outrun_the_budget_at_the_channels_pace():
    assert storming(61, 1.0, 60.0) and not storming(60, 1.0, 60.0)
    assert not storming(10_000, 0.0, 60.0)  # no pace (tests, a local stand-in): never a storm
    assert not storming(1, 1.0, 0.0)  # one message is never rolled up


def test_incident_keys_are_stable_and_recognisable():
    assert incident_key("C1", "X", "f1") == incident_key("C1", "X", "f1") != incident_key("C2", "X", "f1")
    assert is_incident_key(incident_key("C1", "X", "f1")) and not is_incident_key("f1")


def test_the_summary_counts_events_clusters_hosts_and_workspaces():
    members = [member(1, count=5), member(2, count=1, workspace="222"), member(3, count=9, status=FindingStatus.TERMINATED)]
    summary = summarise(members)
    assert (summary.events, summary.findings, summary.clusters, summary.hosts, summary.workspaces) == (15, 3, 3, 6, 2)
    assert [r.finding_key for r in summary.rows] == ["f3", "f1", "f2"]  # most events first
    assert [r.finding_key for r in summary.terminable] == ["f1", "f2"]  # a terminated one is not offered again
    assert summary.first_seen == members[0].first_seen and summary.last_seen == members[2].last_seen


def test_the_incident_message_names_counts_and_top_clusters_and_offers_the_menu_and_bulk_button():
    summary = summarise([member(n) for n in range(150)])
    text, blocks = incident_message(INCIDENT, summary)
    assert limit_violations(blocks, text) == [] and message_problems(blocks) == []
    shown = str(blocks)
    assert "300* events" in shown and "150* clusters" in shown and "300* hosts" in shown
    [actions] = [b for b in blocks if b["type"] == "actions"]
    menu, button = actions["elements"]
    assert len(menu["options"]) == MAX_OPTIONS  # Slack's limit; the thread lists all of them
    assert button["text"]["text"] == "Terminate all 150 clusters…"
    _, without = incident_message(INCIDENT, summary, terminate=False)
    assert "Terminate" not in str(without)


def test_outside_values_are_escaped_and_never_break_a_limit():
    hostile = "<!channel> <@U0VICTIM> `x` *b* " + "é" * 5000
    summary = summarise([member(n, name=hostile) for n in range(3)])
    text, blocks = incident_message(INCIDENT, summary)
    assert limit_violations(blocks, text) == [] and message_problems(blocks) == []
    assert "<!channel>" not in str(blocks) and "<@U0VICTIM>" not in str(blocks)
    for _, list_text, list_blocks in list_messages(INCIDENT, summary.rows, 0):
        assert limit_violations(list_blocks, list_text) == []
        assert "<!channel>" not in str(list_blocks)
    view = terminate_all_modal(INCIDENT, summary.rows, dry_run=False)
    assert view_problems(view) == [] and "<@U0VICTIM>" not in str(view)


def test_the_thread_lists_every_cluster_once_in_messages_within_slacks_limits():
    rows = summarise([member(n) for n in range(1000)]).rows
    messages = list_messages(INCIDENT, rows, 0)
    assert messages[-1][0] == 1000
    listed = "\n".join(str(b) for _, _, blocks in messages for b in blocks)
    for n in range(1000):
        assert listed.count(f"`c-{n}`") == 1
    for _, text, blocks in messages:
        assert len(blocks) <= 50 and limit_violations(blocks, text) == []
        assert message_problems(blocks) == []
    later = list_messages(INCIDENT, rows[:5], 1000)  # members that joined later continue the count
    assert later[0][0] == 1005 and "1001–1005" in later[0][1]


def test_the_confirmation_names_every_cluster_and_says_dry_run():
    rows = summarise([member(n) for n in range(40)]).rows
    view = terminate_all_modal(INCIDENT, rows, dry_run=True)
    assert view_problems(view) == [] and view["private_metadata"] == INCIDENT.key
    body = str(view["blocks"])
    assert all(f"c-{n}" in body for n in range(40)) and "Dry run" in body


def test_quarantine_all_is_offered_before_terminate_when_quarantine_is_enabled_and_its_modal_fits():
    summary = summarise([member(n, name="<@U0VICTIM> " + "x" * 300) for n in range(1000)])
    text, blocks = incident_message(INCIDENT, summary, quarantine=True)
    assert limit_violations(blocks, text) == [] and message_problems(blocks) == []
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [e["text"]["text"] for e in actions["elements"][1:]] == ["Quarantine all 1000 clusters…",
                                                                  "Terminate all 1000 clusters…"]
    view = bulk_modal(QUARANTINE_COPY, INCIDENT, summary.terminable, dry_run=False)
    assert view_problems(view) == [] and view["callback_id"] == "esm_incident.quarantine_all.confirm"
    assert "<@U0VICTIM>" not in str(view) and "c-999" in str(view["blocks"])
    assert view["submit"]["text"] == "Quarantine all"
