"""Benign suppressions (bot.core.suppressions): matching, input parsing, rules/benign.yml and
every example it carries."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from bot.core.benign_modal import FormState, draft_for, pattern_hint
from bot.core.catalogue import load_catalogue
from bot.core.decide import Classified, Disposition, plan_batch
from bot.core.events import parse_audit_row
from bot.core.findings import Finding
from bot.core.suppressions import (
    Scope,
    Suppression,
    SuppressionError,
    parse_benign_entries,
    parse_benign_rules,
    parse_expiry,
    parse_patterns,
    matches,
    scope_for,
)
from bot.render.benign_modal import read_state

RULES = Path(__file__).resolve().parents[2] / "rules"
NOW = datetime(2025, 3, 4, 12, 0, tzinfo=timezone.utc)
CA = "Root Certificate Store Modified"
CONTAINER = "3f9a1c2b7d4e5f60718293a4b5c6d7e8f9012345678901234567890abcdef12"


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(RULES / "detections.yml")


def event(catalogue, action=CA, instance="i-1", workspace="111", cluster=None, **params):
    row = parse_audit_row({
        "event_id": f"e-{instance}-{sorted(params.items())}", "event_time": NOW, "workspace_id": workspace,
        "service_name": "capsule8-alerts-dataplane", "action_name": action,
        "request_params": {"instanceId": instance, **params},
    })
    return Classified(row, catalogue.lookup(action), cluster)


def suppression(scope=Scope(), match=None, expires=None, detection=CA):
    return Suppression("b1", detection, scope, match or {}, "private CA", "U1", NOW, expires, "k1")


# ----------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    "scope, hit",
    [
        (Scope(), True),
        (Scope(workspace_id="111"), True),
        (Scope(workspace_id="222"), False),
        (Scope(workspace_id="111", cluster_id="c-1"), True),
        (Scope(cluster_id="c-2"), False),
        (Scope(workspace_id="111", instance_id="i-1"), True),
        (Scope(instance_id="i-9"), False),
    ],
)
def test_scope_every_set_id_must_equal_the_events(catalogue, scope, hit):
    assert matches(suppression(scope), event(catalogue, cluster="c-1"), NOW) is hit


def test_cluster_scope_uses_the_resolved_cluster_or_the_rows_own(catalogue):
    s = suppression(Scope(cluster_id="c-1"))
    assert matches(s, event(catalogue, cluster="c-1"), NOW)
    assert matches(s, event(catalogue, clusterId="c-1"), NOW)
    assert not matches(s, event(catalogue), NOW), "an unknown cluster is not this cluster"


def test_scope_kind_and_value_are_the_narrowest_constraint():
    assert (Scope().kind, Scope().value) == ("everywhere", None)
    assert (Scope(workspace_id="1", cluster_id="c").kind, Scope(workspace_id="1", cluster_id="c").value) == ("cluster", "c")
    assert Scope(workspace_id="1", instance_id="i").describe() == "instance i"


def test_detection_must_be_the_same_compared_like_the_catalogue(catalogue):
    assert matches(suppression(detection="root certificate  store modified"), event(catalogue), NOW)
    assert not matches(suppression(detection="Kernel Module Loaded"), event(catalogue), NOW)


def test_globs_all_fields_any_glob_case_sensitive_and_star_crosses_slash(catalogue):
    s = suppression(match={"file_path": ("/etc/ssl/*", "/usr/local/share/ca-certificates/*"), "origin": ("container",)})
    assert matches(s, event(catalogue, containerId=CONTAINER, filePath="/etc/ssl/certs/x/y.pem"), NOW)
    assert matches(s, event(catalogue, containerId=CONTAINER, path="/usr/local/share/ca-certificates/a.crt"), NOW)
    assert not matches(s, event(catalogue, containerId=CONTAINER, filePath="/ETC/ssl/certs/a.pem"), NOW)
    assert not matches(s, event(catalogue, filePath="/etc/ssl/certs/a.pem"), NOW), "origin unknown"
    assert not matches(s, event(catalogue, containerId=CONTAINER), NOW), "a missing field never matches"


def test_a_raw_request_params_key_can_be_matched(catalogue):
    s = suppression(match={"signer": ("corp-*",)})
    assert matches(s, event(catalogue, signer="corp-ca"), NOW)
    assert not matches(s, event(catalogue, signer="evil"), NOW)


def test_an_expired_suppression_stops_matching(catalogue):
    s = suppression(expires=NOW + timedelta(seconds=1))
    assert matches(s, event(catalogue), NOW)
    assert not matches(s, event(catalogue), NOW + timedelta(seconds=1))
    assert matches(suppression(expires=None), event(catalogue), NOW + timedelta(days=3650))


def test_plan_batch_marks_matches_suppressed_and_the_rest_new(catalogue):
    s = suppression(Scope(instance_id="i-1"))
    items = [event(catalogue, instance="i-1"), event(catalogue, instance="i-2")]
    plan = plan_batch(items, {}, timedelta(hours=1), lambda item: matches(s, item, NOW))
    assert [d for _, d, _ in plan.dispositions] == [Disposition.SUPPRESSED, Disposition.NEW_FINDING]


def test_scope_for_a_finding(catalogue):
    item = event(catalogue, instance="i-7", workspace="55")
    finding = Finding(key="k", detection=item.detection, first_event=item.row, first_seen=NOW, last_seen=NOW)
    assert scope_for("instance", finding) == Scope(workspace_id="55", instance_id="i-7")
    assert scope_for("workspace", finding) == Scope(workspace_id="55")
    assert scope_for("everywhere", finding) == Scope()
    with pytest.raises(SuppressionError, match="cluster is not known"):
        scope_for("cluster", finding)


# ----------------------------------------------------------------------- modal input


def test_patterns_one_field_glob_per_line_repeats_mean_any():
    text = "origin=container\n\n# a comment\n file_path = /etc/ssl/* \nfile_path=/usr/lib/jvm/*/cacerts"
    assert parse_patterns(text) == {"origin": ("container",), "file_path": ("/etc/ssl/*", "/usr/lib/jvm/*/cacerts")}
    assert parse_patterns("") == {} and parse_patterns(None) == {}


@pytest.mark.parametrize(
    "text, message",
    [
        ("origin=container\nfile_path", "line 2: expected field=glob"),
        ("origin=container\n\nbad field=x", "line 3: 'bad field' is not a field name"),
        ("file_path=", "line 1: the glob after 'file_path=' is empty"),
        ("=x", "line 1: '' is not a field name"),
        ("a=" + "x" * 501, "line 1: the glob is longer"),
        ("\n".join(f"f{i}=x" for i in range(21)), "at most 20 pattern lines"),
    ],
)
def test_pattern_errors_name_the_line(text, message):
    with pytest.raises(SuppressionError, match=message):
        parse_patterns(text)


@pytest.mark.parametrize("choice, delta", [("1h", timedelta(hours=1)), ("24h", timedelta(days=1)),
                                           ("7d", timedelta(days=7)), ("30d", timedelta(days=30))])
def test_expiry_choices_count_from_now(choice, delta):
    assert parse_expiry(choice, NOW) == NOW + delta


def test_expiry_date_ends_with_that_utc_day_and_is_never_in_the_past():
    assert parse_expiry("date", NOW, on_date="2025-03-10") == datetime(2025, 3, 11, tzinfo=timezone.utc)
    assert parse_expiry("date", NOW, on_date=date(2025, 3, 4)) == datetime(2025, 3, 5, tzinfo=timezone.utc)
    with pytest.raises(SuppressionError, match="in the past"):
        parse_expiry("date", NOW, on_date="2025-03-03")
    with pytest.raises(SuppressionError, match="pick the date"):
        parse_expiry("date", NOW)
    with pytest.raises(SuppressionError, match="not a date"):
        parse_expiry("date", NOW, on_date="next tuesday")
    with pytest.raises(SuppressionError, match="more than a year"):
        parse_expiry("date", NOW, on_date="2027-01-01")
    with pytest.raises(SuppressionError, match="not 'until a date'"):
        parse_expiry("7d", NOW, on_date="2025-03-10")


def test_never_needs_an_explicit_confirmation():
    with pytest.raises(SuppressionError, match="tick the confirmation"):
        parse_expiry("never", NOW)
    assert parse_expiry("never", NOW, confirm_never=True) is None
    with pytest.raises(SuppressionError, match="unknown expiry"):
        parse_expiry("forever", NOW)
    with pytest.raises(SuppressionError, match="unknown expiry"):
        parse_expiry("", NOW)


def test_a_submission_without_reason_or_with_bad_patterns_gets_per_block_errors(catalogue):
    item = event(catalogue, containerId=CONTAINER, filePath="/usr/local/share/ca-certificates/corp.crt")
    finding = Finding(key="k", detection=item.detection, first_event=item.row, first_seen=NOW, last_seen=NOW)
    assert pattern_hint(finding) == "origin=container\nfile_path=/usr/local/share/ca-certificates/*"
    draft, errors = draft_for(finding, FormState(scope="instance", patterns="nope", reason="  "), "U1", NOW)
    assert draft is None and set(errors) == {"patterns", "reason"} and errors["patterns"].startswith("line 1")
    _, errors = draft_for(finding, FormState(scope="cluster", reason="x"), "U1", NOW)
    assert set(errors) == {"scope"}
    _, errors = draft_for(finding, FormState(scope="instance", expiry="never", reason="x"), "U1", NOW)
    assert set(errors) == {"never_confirm"}
    draft, errors = draft_for(finding, FormState(scope="instance", patterns=pattern_hint(finding), reason="CA"), "U1", NOW)
    assert errors == {} and draft.expires_at == NOW + timedelta(days=7) and draft.finding_key == "k"
    assert matches(draft, item, NOW)


def test_read_state_takes_slacks_view_state_shape():
    values = {
        "scope": {"benign.scope": {"type": "radio_buttons", "selected_option": {"value": "workspace"}}},
        "patterns": {"patterns": {"type": "plain_text_input", "value": None}},
        "expiry": {"benign.expiry": {"type": "static_select", "selected_option": {"value": "date"}}},
        "expiry_date": {"date": {"type": "datepicker", "selected_date": "2025-03-09"}},
        "never_confirm": {"never": {"type": "checkboxes", "selected_options": []}},
        "reason": {"reason": {"type": "plain_text_input", "value": "ok"}},
    }
    state = read_state(values, FormState(scope="instance", patterns="hint"))
    assert state == FormState(scope="workspace", patterns="", expiry="date", on_date="2025-03-09",
                              confirm_never=False, reason="ok")
    assert read_state({}, FormState(scope="instance", patterns="hint")).patterns == "hint"


# ------------------------------------------------------------------- rules/benign.yml


def benign_data():
    return yaml.safe_load((RULES / "benign.yml").read_text(encoding="utf-8"))


def test_the_shipped_rules_parse_and_are_all_disabled():
    entries = parse_benign_entries(benign_data())
    assert entries and all(not e.enabled for e in entries)
    assert parse_benign_rules(benign_data()) == []


def _examples():
    for entry in benign_data():
        for index, example in enumerate(entry["examples"]):
            yield pytest.param(entry["id"], index, id=f"{entry['id']}-{index}")


@pytest.mark.parametrize("rule_id, index", list(_examples()))
def test_every_benign_example_matches_as_it_says_when_enabled(catalogue, rule_id, index):
    data = [dict(entry, enabled=True) for entry in benign_data() if entry["id"] == rule_id]
    [rule] = parse_benign_rules(data)
    example = data[0]["examples"][index]
    row = parse_audit_row(example["row"])
    item = Classified(row, catalogue.lookup(row.action_name), row.cluster_id)
    assert matches(rule, item, NOW) is example["matches"]


def entry(**changes):
    base = {
        "id": "x", "enabled": True, "detection": CA, "scope": {}, "match": {"origin": "container"},
        "expires": None, "reason": "because",
        "examples": [
            {"matches": True, "row": {"event_id": "1", "event_time": "2025-03-04T08:00:00Z", "service_name": "s",
                                      "action_name": CA, "request_params": {"containerId": CONTAINER}}},
            {"matches": False, "row": {"event_id": "2", "event_time": "2025-03-04T08:00:00Z", "service_name": "s",
                                       "action_name": CA, "request_params": {}}},
        ],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v != "DROP"}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"id": "Not A Slug"}, "entry 0: field 'id' must be a lowercase slug"),
        ({"enabled": "yes"}, r"entry 0 \('x'\): field 'enabled' must be true or false"),
        ({"detection": "DROP"}, r"field 'detection' is missing"),
        ({"scope": {"cluster": "c"}}, r"field 'scope.cluster' is not a known field"),
        ({"match": {"file_path": []}}, r"field 'match.file_path' must be a glob"),
        ({"expires": "2025-03-04T00:00:00"}, r"field 'expires' must be null or an ISO-8601 timestamp with a zone"),
        ({"reason": ""}, r"field 'reason' must be non-empty text"),
        ({"examples": []}, r"field 'examples' must be a non-empty list"),
        ({"colour": "red"}, r"field 'colour' is not a known field"),
    ],
)
def test_benign_rule_errors_name_the_entry_and_field(changes, message):
    with pytest.raises(SuppressionError, match=message):
        parse_benign_rules([entry(**changes)])


def test_benign_rules_need_a_matching_and_a_non_matching_example_and_unique_ids():
    one_sided = entry()
    one_sided["examples"] = [one_sided["examples"][0]]
    with pytest.raises(SuppressionError, match="needs at least one example that matches and one that does not"):
        parse_benign_rules([one_sided])
    with pytest.raises(SuppressionError, match="entry 1 \\('x'\\): field 'id' is used twice"):
        parse_benign_rules([entry(), entry()])


def test_a_rule_with_an_expiry_stops_applying_by_itself(catalogue):
    [rule] = parse_benign_rules([entry(expires="2025-03-04T12:00:00+00:00")])
    item = event(catalogue, containerId=CONTAINER)
    assert matches(rule, item, NOW - timedelta(seconds=1))
    assert not matches(rule, item, NOW)
    assert rule.source == "rules" and rule.created_by == "rules/benign.yml"


def test_rules_check_reports_an_example_that_does_not_hold():
    from bot.core.suppressions import check_benign_examples

    assert check_benign_examples(parse_benign_entries(benign_data())) == []
    wrong = entry()
    wrong["examples"][1] = dict(wrong["examples"][1], matches=True)
    wrong["examples"].append(dict(entry()["examples"][1]))
    assert check_benign_examples(parse_benign_entries([wrong])) == ["x example 1: expected matches=True"]
