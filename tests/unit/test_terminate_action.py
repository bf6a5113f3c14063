"""The Terminate cluster action's declaration: its button spec and confirmation wording."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from bot.core.actions import Needs
from bot.core.events import AuditRow
from bot.core.findings import ClusterContext, Context, Detection, Finding, Severity
from bot.core.ids import ActionId
from bot.render.blocks import MAX_CONFIRM_TEXT, Links, finding_message, limit_violations
from handlers.actions import discover
from handlers.actions.terminate_cluster import ACTION, cluster_of, confirm

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
DETECTION = Detection("Kernel Module Loaded", "Kernel Related Events", Severity.HIGH, "d", "g")


def finding(cluster: ClusterContext | None = None, cluster_id: str | None = None, **params: str) -> Finding:
    row = AuditRow("e1", T0, "1", "capsule8-alerts-dataplane", DETECTION.name, {"instanceId": "i-0abc", **params})
    return Finding("k1", DETECTION, row, T0, T0, context=Context(cluster=cluster), cluster_id=cluster_id)


def test_spec_is_a_danger_destructive_responder_action_that_needs_a_cluster():
    spec = ACTION.spec
    assert (spec.id, spec.label, spec.order, spec.style) == (ActionId.TERMINATE_CLUSTER, "Terminate cluster", 30, "danger")
    assert spec.needs == frozenset({Needs.CLUSTER})
    assert spec.destructive and spec.responders_only
    assert discover()[ActionId.TERMINATE_CLUSTER] is ACTION


def test_confirm_names_the_cluster_and_says_what_stops_and_that_it_can_restart():
    dialog = confirm(finding(ClusterContext("0501-abc", name="etl-prod"), cluster_id="0501-abc"))
    assert dialog.danger
    assert dialog.text == (
        "Terminate cluster etl-prod (0501-abc)? Running notebooks and jobs on it stop. It can be started again later."
        " If it is shared, esm-bot first offers Quarantine instead."
    )


def test_confirm_without_cluster_details_names_the_finding_cluster_id():
    assert confirm(finding(cluster_id="0501-xyz")).text.startswith("Terminate cluster 0501-xyz? ")
    assert confirm(finding(clusterId="0501-evt")).text.startswith("Terminate cluster 0501-evt? ")


def test_a_long_or_multi_line_cluster_name_keeps_the_warning_within_slacks_limit():
    name = "line one\nline two " + "n" * 1000
    dialog = confirm(finding(ClusterContext("0501-abc", name=name)))
    assert "\n" not in dialog.text and len(dialog.text) <= MAX_CONFIRM_TEXT
    assert dialog.text.endswith("It can be started again later. If it is shared, esm-bot first offers Quarantine instead.")
    _, blocks = finding_message(finding(ClusterContext("0501-abc", name=name)), Links(None), actions=(ACTION.spec,))
    assert limit_violations(blocks) == []


def test_the_cluster_a_finding_may_terminate_comes_from_the_bots_own_state():
    assert cluster_of(finding(cluster_id="0501-a", clusterId="0501-b")) == "0501-a"
    assert cluster_of(finding(ClusterContext("0501-c"))) == "0501-c"
    assert cluster_of(finding(clusterId="0501-d")) == "0501-d"
    assert cluster_of(replace(finding(), cluster_id=" ")) is None
