"""Grouping new audit rows into findings (bot.core.decide.plan_batch) with the real catalogue."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.core.catalogue import load_catalogue
from bot.core.decide import Classified, Disposition, group_key, plan_batch
from bot.core.events import parse_audit_row
from bot.core.findings import UNCATEGORISED

RULES = Path(__file__).resolve().parents[2] / "rules" / "detections.yml"
T0 = datetime(2025, 3, 4, 10, 0, tzinfo=timezone.utc)
HOUR = timedelta(minutes=60)
KMOD = "Kernel Module Loaded"
SHELL = "Suspicious Interactive Shell"


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(RULES)


@pytest.fixture
def item(catalogue):
    counter = iter(range(1, 10_000))

    def make(action=KMOD, minutes=0.0, cluster="0304-100000-aaaa", instance="i-1", workspace="111", event_id=None):
        params = {"instanceId": instance} if instance else {}
        row = parse_audit_row(
            {
                "event_id": event_id or f"evt-{next(counter):04d}",
                "event_time": T0 + timedelta(minutes=minutes),
                "workspace_id": workspace,
                "service_name": "capsule8-alerts-dataplane",
                "action_name": action,
                "request_params": params,
            }
        )
        return Classified(row, catalogue.lookup(action), cluster)

    return make


def dispositions(plan):
    return [d for _, d, _ in plan.dispositions]


def test_repeats_of_one_detection_on_one_cluster_make_one_finding(item):
    plan = plan_batch([item(minutes=0, instance="i-1"), item(minutes=5, instance="i-2"), item(minutes=20, instance="i-1")], {}, HOUR)
    assert len(plan.new_findings) == 1
    finding = plan.new_findings[0]
    assert finding.count == 3
    assert finding.hosts == {"i-1", "i-2"}
    assert finding.first_seen == T0
    assert finding.last_seen == T0 + timedelta(minutes=20)
    assert finding.cluster_id == "0304-100000-aaaa"
    assert dispositions(plan) == [Disposition.NEW_FINDING, Disposition.REPEAT, Disposition.REPEAT]
    assert {key for _, _, key in plan.dispositions} == {finding.key}


def test_repeats_of_a_new_finding_are_listed_for_its_thread(item):
    first, second = item(minutes=0), item(minutes=1)
    change = next(iter(plan_batch([first, second], {}, HOUR).changes.values()))
    assert change.is_new
    assert change.finding.first_event == first.row
    assert change.repeats == [second.row]


def test_a_different_cluster_is_a_separate_finding(item):
    plan = plan_batch([item(cluster="c-a"), item(minutes=1, cluster="c-b")], {}, HOUR)
    assert sorted(f.cluster_id for f in plan.new_findings) == ["c-a", "c-b"]
    assert all(f.count == 1 for f in plan.new_findings)


def test_a_different_detection_is_a_separate_finding(item):
    plan = plan_batch([item(action=KMOD), item(action=SHELL, minutes=1)], {}, HOUR)
    assert sorted(f.detection.name for f in plan.new_findings) == [KMOD, SHELL]


def test_a_different_workspace_is_a_separate_finding(item):
    plan = plan_batch([item(workspace="111"), item(workspace="222", minutes=1)], {}, HOUR)
    assert len(plan.new_findings) == 2


def test_without_a_cluster_events_group_by_instance(item):
    plan = plan_batch(
        [item(cluster=None, instance="i-1"), item(cluster=None, instance="i-1", minutes=2), item(cluster=None, instance="i-2", minutes=3)],
        {},
        HOUR,
    )
    by_hosts = sorted((sorted(f.hosts), f.count) for f in plan.new_findings)
    assert by_hosts == [(["i-1"], 2), (["i-2"], 1)]
    assert all(f.cluster_id is None for f in plan.new_findings)


def test_group_key_names_cluster_or_instance(item):
    with_cluster = item(cluster="c-a", instance="i-9")
    without = item(cluster=None, instance="i-9")
    nothing = item(cluster=None, instance=None)
    assert "c-a" in with_cluster.group_key and "i-9" not in with_cluster.group_key
    assert "i-9" in without.group_key
    assert with_cluster.group_key != without.group_key
    assert nothing.group_key == group_key(nothing.row, nothing.detection, None)
    assert nothing.group_key != without.group_key


def test_an_event_past_the_window_starts_a_new_finding(item):
    plan = plan_batch([item(minutes=0), item(minutes=59), item(minutes=60)], {}, HOUR)
    findings = sorted(plan.new_findings, key=lambda f: f.first_seen)
    assert [(f.first_seen, f.count) for f in findings] == [(T0, 2), (T0 + HOUR, 1)]
    assert dispositions(plan) == [Disposition.NEW_FINDING, Disposition.REPEAT, Disposition.NEW_FINDING]


def test_window_runs_from_the_first_event_not_the_latest(item):
    plan = plan_batch([item(minutes=0), item(minutes=40), item(minutes=80)], {}, HOUR)
    assert sorted(f.count for f in plan.new_findings) == [1, 2]


def test_window_length_is_the_one_passed_in(item):
    plan = plan_batch([item(minutes=0), item(minutes=11)], {}, timedelta(minutes=10))
    assert len(plan.new_findings) == 2


def test_an_open_finding_is_joined_by_a_later_event(item):
    earlier = plan_batch([item(minutes=0, instance="i-1")], {}, HOUR).new_findings[0]
    late = item(minutes=30, instance="i-2")
    plan = plan_batch([late], {late.group_key: earlier}, HOUR)
    assert plan.new_findings == []
    change = plan.changes[earlier.key]
    assert change.is_new is False
    assert change.repeats == [late.row]
    assert change.new_hosts == {"i-2"}
    assert change.finding.count == 2
    assert change.finding.hosts == {"i-1", "i-2"}
    assert change.finding.last_seen == late.row.event_time
    assert plan.dispositions[0][1:] == (Disposition.REPEAT, earlier.key)


def test_a_known_host_joining_is_not_reported_as_new(item):
    earlier = plan_batch([item(minutes=0, instance="i-1")], {}, HOUR).new_findings[0]
    again = item(minutes=5, instance="i-1")
    change = plan_batch([again], {again.group_key: earlier}, HOUR).changes[earlier.key]
    assert change.new_hosts == set()


def test_an_open_finding_past_its_window_is_not_joined(item):
    earlier = plan_batch([item(minutes=0)], {}, HOUR).new_findings[0]
    late = item(minutes=61)
    plan = plan_batch([late], {late.group_key: earlier}, HOUR)
    assert earlier.key not in plan.changes
    assert [f.first_event for f in plan.new_findings] == [late.row]


def test_heartbeat_is_ignored_and_makes_no_finding(item):
    plan = plan_batch([item(action="Heartbeat"), item(action="Heartbeat", minutes=1)], {}, HOUR)
    assert plan.changes == {}
    assert dispositions(plan) == [Disposition.IGNORED, Disposition.IGNORED]
    assert all(key is None for _, _, key in plan.dispositions)


def test_suppressed_events_make_no_finding(item):
    benign, real = item(action="Root Certificate Store Modified"), item(action=KMOD, minutes=1)
    plan = plan_batch([benign, real], {}, HOUR, is_suppressed=lambda c: c.detection.name == "Root Certificate Store Modified")
    assert [f.detection.name for f in plan.new_findings] == [KMOD]
    assert plan.dispositions[0][1:] == (Disposition.SUPPRESSED, None)
    assert plan.dispositions[1][1] == Disposition.NEW_FINDING


def test_ignored_events_are_not_offered_to_suppression(item):
    offered = []
    plan_batch([item(action="Heartbeat")], {}, HOUR, is_suppressed=lambda c: offered.append(c) or False)
    assert offered == []


def test_unknown_detection_still_makes_an_uncategorised_finding(item):
    plan = plan_batch([item(action="Userfaultfd Usage Totally New")], {}, HOUR)
    assert [f.detection.category for f in plan.new_findings] == [UNCATEGORISED]


def test_out_of_order_events_are_grouped_in_time_order(item):
    a, b, c = item(minutes=0), item(minutes=50), item(minutes=70)
    plan = plan_batch([c, a, b], {}, HOUR)
    findings = sorted(plan.new_findings, key=lambda f: f.first_seen)
    assert [(f.first_event, f.count) for f in findings] == [(a.row, 2), (c.row, 1)]
    assert [cl.row for cl, _, _ in plan.dispositions] == [a.row, b.row, c.row]


def test_finding_keys_are_stable_for_the_same_input(item):
    items = [item(minutes=m, cluster=cl) for m, cl in [(0, "c-a"), (3, "c-a"), (5, "c-b"), (90, "c-a")]]
    first = sorted(plan_batch(items, {}, HOUR).changes)
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    assert sorted(plan_batch(shuffled, {}, HOUR).changes) == first
    assert sorted(plan_batch(list(items), {}, HOUR).changes) == first
    assert len(first) == 3


def test_different_first_events_give_different_keys(item):
    one = plan_batch([item(event_id="evt-a")], {}, HOUR).new_findings[0]
    two = plan_batch([item(event_id="evt-b")], {}, HOUR).new_findings[0]
    assert one.key != two.key
    assert one.group == two.group



def test_a_late_event_shortly_before_an_open_finding_joins_it(item):
    open_finding = plan_batch([item(minutes=0, event_id="evt-first")], {}, HOUR).new_findings[0]
    late = item(minutes=-50, event_id="evt-late")
    change = plan_batch([late], {late.group_key: open_finding}, HOUR).changes[open_finding.key]
    # the window's anchor stays put, so later grouping never depends on batch boundaries
    assert (change.is_new, change.finding.count, change.finding.first_seen) == (False, 2, open_finding.first_seen)
    assert change.finding.first_event.event_id == "evt-first"

def test_late_earlier_event_does_not_change_which_later_events_join(item):
    open_finding = plan_batch([item(minutes=0, event_id="evt-first")], {}, HOUR).new_findings[0]
    late, later = item(minutes=-50, event_id="evt-late"), item(minutes=30, event_id="evt-later")
    together = plan_batch([late, later], {late.group_key: open_finding}, HOUR)
    assert together.new_findings == []
    assert together.changes[open_finding.key].finding.count == 3
