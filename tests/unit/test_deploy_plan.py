"""bot.core.deploy_plan: the desired Databricks objects and the diff against what exists."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlglot
from sqlglot import exp

from bot.config import RULES_DIR
from bot.core.catalogue import load_catalogue, parse_catalogue
from bot.core.deploy_plan import (
    COUNT_COLUMN,
    MARKER,
    Action,
    Api,
    Existing,
    Kind,
    Ref,
    Schedule,
    Webhook,
    desired_objects,
    diff,
    differences,
    removal,
    resolve,
    summary,
)
from bot.core.suppressions import Scope, Suppression

NOW = datetime(2025, 3, 4, 12, 0, tzinfo=timezone.utc)
WEBHOOK = Webhook("https://esm-bot.example.com", "databricks", "s3cret-pw")
CATEGORIES = ["Container Security", "Host Security Changes", "Kernel Related Events", "Other Suspicious Activity"]


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(RULES_DIR / "detections.yml")


def plan(catalogue, suppressions=(), webhook=WEBHOOK, schedule=Schedule(), api=Api.LEGACY):
    """The legacy objects by default: most tests here read the SQL off the legacy queries."""
    return desired_objects(catalogue, warehouse_id="wh-123", webhook=webhook, suppressions=suppressions,
                           schedule=schedule, now=NOW, api=api)


def plan_v2(catalogue, **kwargs):
    return plan(catalogue, api=Api.V2, **kwargs)


def by(objects, kind, title):
    return next(o for o in objects if o.kind == kind and o.name == MARKER + title)


def in_list(sql: str) -> list[str]:
    """The action_name IN (...) literals, as the Databricks parser reads them."""
    tree = sqlglot.parse_one(sql, read="databricks")
    found = [node for node in tree.find_all(exp.In) if not isinstance(node.parent, exp.Not)]
    return [lit.this for lit in found[0].expressions]


def existing_from(objects, ids=None):
    """What the API would return after creating `objects` (refs resolved)."""
    ids = ids or {(o.kind, o.name): f"id-{i}" for i, o in enumerate(objects)}
    return [Existing(o.kind, o.name, ids[(o.kind, o.name)], resolve(o.body, ids)) for o in objects]


# ---- desired objects ----------------------------------------------------------------------------

def test_one_query_alert_and_job_per_category_plus_clamav_uncategorised_and_one_destination(catalogue):
    objects = plan(catalogue)
    titles = CATEGORIES + ["ClamAV Infections", "Uncategorised Capsule8 Detections"]
    for kind in (Kind.QUERY, Kind.ALERT, Kind.JOB):
        assert [o.name for o in objects if o.kind == kind] == [MARKER + t for t in titles]
    destinations = [o for o in objects if o.kind == Kind.DESTINATION]
    assert len(destinations) == 1 and len(objects) == 1 + 3 * len(titles)
    assert [o.kind for o in objects] == sorted((o.kind for o in objects), key=[Kind.DESTINATION, Kind.QUERY, Kind.ALERT, Kind.JOB].index)
    assert all(o.name.startswith(MARKER) for o in objects)


def test_each_category_query_names_its_detections_including_also_in(catalogue):
    objects = plan(catalogue)
    for category in CATEGORIES:
        names = [n.lower() for n in catalogue.names_in(category)]
        assert in_list(by(objects, Kind.QUERY, category).body["query_text"]) == names
    other = in_list(by(objects, Kind.QUERY, "Other Suspicious Activity").body["query_text"])
    assert "new file executed in container" in other and "privileged container launched" in other
    assert "heartbeat" not in [n for c in CATEGORIES for n in in_list(by(objects, Kind.QUERY, c).body["query_text"])]


def test_query_shape_service_lookback_columns_and_marker(catalogue):
    query = by(plan(catalogue), Kind.QUERY, "Kernel Related Events").body
    sql = query["query_text"]
    assert "FROM system.access.audit" in sql
    assert "service_name = 'capsule8-alerts-dataplane'" in sql
    assert "INTERVAL 60 MINUTES" in sql and "event_date >=" in sql
    assert "request_params['instanceId'] AS instance_id" in sql and f"AS {COUNT_COLUMN}" in sql
    assert query["warehouse_id"] == "wh-123" and query["tags"] == ["esm-bot"]
    assert "esm-bot deploy" in query["description"]
    sqlglot.parse_one(sql, read="databricks")  # valid Databricks SQL


def test_clamav_query_reports_infected_files_only(catalogue):
    sql = by(plan(catalogue), Kind.QUERY, "ClamAV Infections").body["query_text"]
    assert "service_name = 'clamAVScanService-dataplane'" in sql
    assert "Infected files: [1-9]" in sql and "FOUND" in sql
    sqlglot.parse_one(sql, read="databricks")


def test_uncategorised_query_excludes_every_catalogue_name_including_ignored(catalogue):
    sql = by(plan(catalogue), Kind.QUERY, "Uncategorised Capsule8 Detections").body["query_text"]
    tree = sqlglot.parse_one(sql, read="databricks")
    negated = [n for n in tree.find_all(exp.In) if isinstance(n.parent, exp.Not)]
    assert {lit.this for lit in negated[0].expressions} == {n.lower() for n in catalogue.entries}


def test_alert_condition_schedule_and_destination_subscription(catalogue):
    objects = plan(catalogue, schedule=Schedule(every_minutes=15, lookback=timedelta(hours=2)))
    alert = by(objects, Kind.ALERT, "Host Security Changes").body
    assert alert["query_id"] == Ref(Kind.QUERY, MARKER + "Host Security Changes")
    assert alert["condition"] == {"op": "GREATER_THAN", "operand": {"column": {"name": COUNT_COLUMN}},
                                  "threshold": {"value": {"double_value": 0}}, "empty_result_state": "OK"}
    assert alert["notify_on_ok"] is False and alert["seconds_to_retrigger"] == 900
    job = by(objects, Kind.JOB, "Host Security Changes").body
    assert job["schedule"] == {"quartz_cron_expression": "0 0/15 * * * ?", "timezone_id": "UTC", "pause_status": "UNPAUSED"}
    task = job["tasks"][0]["sql_task"]
    assert task["warehouse_id"] == "wh-123"
    assert task["alert"]["alert_id"] == Ref(Kind.ALERT, MARKER + "Host Security Changes")
    assert task["alert"]["subscriptions"] == [{"destination_id": Ref(Kind.DESTINATION, WEBHOOK.display_name)}]
    assert job["tags"] == {"esm-bot": "managed"}
    assert "INTERVAL 120 MINUTES" in by(objects, Kind.QUERY, "Host Security Changes").body["query_text"]


def test_schedule_rejects_intervals_cron_cannot_express():
    with pytest.raises(ValueError):
        Schedule(every_minutes=7)
    with pytest.raises(ValueError):
        Schedule(every_minutes=10, lookback=timedelta(minutes=5))


def test_destination_points_at_the_webhook_with_basic_auth_and_keeps_no_secret_in_its_name(catalogue):
    dest = next(o for o in plan(catalogue) if o.kind == Kind.DESTINATION)
    assert dest.body["config"] == {"generic_webhook": {
        "url": "https://esm-bot.example.com/webhooks/dbsql", "username": "databricks", "password": "s3cret-pw"}}
    assert dest.name == "[esm-bot] Webhook → esm-bot.example.com/webhooks/dbsql"
    assert "s3cret" not in dest.name and "databricks" not in dest.name
    planning_only = next(o for o in plan(catalogue, webhook=Webhook("https://x.example", "u")) if o.kind == Kind.DESTINATION)
    assert "password" not in planning_only.body["config"]["generic_webhook"]


# ---- hostile names ------------------------------------------------------------------------------

HOSTILE = ["It's a trap", "back\\slash\\' OR 1=1 --", "new\nline; DROP TABLE x", "$widget {{param}} :named"]


def hostile_catalogue():
    entries = []
    for i, name in enumerate(HOSTILE):
        row = {"event_id": f"e{i}", "event_time": "2025-03-04T10:00:00Z", "workspace_id": 1,
               "service_name": "capsule8-alerts-dataplane", "action_name": name,
               "request_params": {"instanceId": "i-0123456789abcdef0"}}
        entries.append({"name": name, "category": "Weird ' Category", "severity": "high", "description": "d",
                        "guidance": ["g"], "examples": [{"row": row, "expect": {
                            "category": "Weird ' Category", "severity": "high", "ignored": False}}]})
    return parse_catalogue(entries)


def test_hostile_names_are_quoted_so_the_databricks_parser_reads_them_back_exactly():
    objects = plan(hostile_catalogue())
    query = by(objects, Kind.QUERY, "Weird ' Category")
    sql = query.body["query_text"]
    expected = [" ".join(n.split()).lower() for n in HOSTILE]
    assert in_list(sql) == expected
    assert "'new line; drop table x'" in sql  # whitespace normalised as the catalogue compares names
    assert "\\'" in sql and "''" not in sql  # quotes are backslash-escaped, never doubled
    tree = sqlglot.parse_one(sql, read="databricks")
    assert isinstance(tree, exp.Select)  # one statement, nothing injected after it


# ---- suppressions -------------------------------------------------------------------------------

def suppression(detection, scope=Scope(), match=None, expires=None, id="rule-1"):
    return Suppression(id=id, detection=detection, scope=scope, match=match or {}, reason="r",
                       created_by="rules", expires_at=expires, source="rules")


def test_sql_expressible_suppressions_are_excluded_in_their_category_only(catalogue):
    rules = [
        suppression("root certificate store modified", Scope(workspace_id="1234567890123456"), id="ca-ws"),
        suppression("Kernel Module Loaded", id="kmod-everywhere",
                    expires=NOW + timedelta(days=1)),
        suppression("BPF Program Executed", Scope(cluster_id="0101-abc"), id="cluster-scoped"),  # not in SQL
        suppression("Kernel Exploit", match={"origin": ("container",)}, id="globbed"),  # not in SQL
        suppression("Boot Files Modified", expires=NOW - timedelta(minutes=1), id="expired"),
    ]
    objects = plan(catalogue, rules)
    host = by(objects, Kind.QUERY, "Host Security Changes").body["query_text"]
    kernel = by(objects, Kind.QUERY, "Kernel Related Events").body["query_text"]
    assert "NOT (lower(trim(action_name)) = 'root certificate store modified' AND workspace_id = 1234567890123456)" in host
    assert "benign: ca-ws" in host and "expired" not in host and "boot files modified" in host
    assert "NOT (lower(trim(action_name)) = 'kernel module loaded' AND current_timestamp() < TIMESTAMP '2025-03-05 12:00:00 UTC')" in kernel
    assert "cluster-scoped" not in kernel and "globbed" not in kernel
    assert "benign" not in by(objects, Kind.QUERY, "Container Security").body["query_text"]
    sqlglot.parse_one(host, read="databricks")
    sqlglot.parse_one(kernel, read="databricks")


# ---- diff ---------------------------------------------------------------------------------------

def test_nothing_exists_everything_is_created(catalogue):
    objects = plan(catalogue)
    steps = diff(objects, [])
    assert [s.action for s in steps] == [Action.CREATE] * len(objects)
    assert summary(steps) == f"{len(objects)} to create"


def test_what_was_created_is_unchanged_on_the_next_run(catalogue):
    objects = plan(catalogue)
    steps = diff(objects, existing_from(objects))
    assert {s.action for s in steps} == {Action.UNCHANGED}
    assert summary(steps).startswith("Nothing to change")


def test_api_defaults_and_masked_secrets_do_not_count_as_changes(catalogue):
    objects = plan(catalogue)
    existing = existing_from(objects)
    padded = []
    for obj in existing:
        body = dict(obj.body)
        if obj.kind == Kind.DESTINATION:
            body = {"id": obj.id, "display_name": obj.name, "destination_type": "WEBHOOK"}  # list summary
        else:
            body.update({"owner_user_name": "me", "lifecycle_state": "ACTIVE"})
        if obj.kind == Kind.QUERY:
            body["tags"] = list(reversed(body["tags"]))
        if obj.kind == Kind.ALERT:
            body["condition"] = {**body["condition"], "threshold": {"value": {"double_value": 0.0}}}
            body.pop("notify_on_ok")  # the API omits false
        padded.append(Existing(obj.kind, obj.name, obj.id, body))
    assert {s.action for s in diff(objects, padded)} == {Action.UNCHANGED}


def test_a_changed_catalogue_updates_exactly_that_query(catalogue):
    objects = plan(catalogue)
    existing = existing_from(objects)
    stale = [Existing(o.kind, o.name, o.id, {**o.body, "query_text": "SELECT 1"})
             if o.name == MARKER + "Kernel Related Events" and o.kind == Kind.QUERY else o for o in existing]
    steps = diff(objects, stale)
    changed = [s for s in steps if s.action != Action.UNCHANGED]
    assert [(s.action, s.kind, s.name) for s in changed] == [(Action.UPDATE, Kind.QUERY, MARKER + "Kernel Related Events")]
    assert "query_text" in changed[0].reason and changed[0].existing_id


def test_a_recreated_query_repoints_its_alert(catalogue):
    objects = plan(catalogue)
    existing = [o for o in existing_from(objects) if not (o.kind == Kind.QUERY and o.name == MARKER + "Container Security")]
    changed = [(s.action, s.kind) for s in diff(objects, existing) if s.action != Action.UNCHANGED]
    assert changed == [(Action.CREATE, Kind.QUERY), (Action.UPDATE, Kind.ALERT)]


def test_managed_objects_no_longer_wanted_are_deleted_dependants_first_and_foreign_ones_ignored(catalogue):
    objects = plan(catalogue)
    existing = existing_from(objects) + [
        Existing(Kind.QUERY, MARKER + "Retired Category", "q-old", {}),
        Existing(Kind.JOB, MARKER + "Retired Category", "j-old", {}),
        Existing(Kind.QUERY, "Team query", "q-team", {}),
        Existing(Kind.DESTINATION, "PagerDuty", "d-team", {}),
    ]
    deletes = [s for s in diff(objects, existing) if s.action == Action.DELETE]
    assert [(s.kind, s.existing_id) for s in deletes] == [(Kind.JOB, "j-old"), (Kind.QUERY, "q-old")]


def test_a_new_public_url_replaces_the_destination_and_repoints_the_jobs(catalogue):
    old = plan(catalogue)
    new = plan(catalogue, webhook=Webhook("https://bot2.example.com", "databricks", "s3cret-pw"))
    steps = diff(new, existing_from(old))
    changed = {(s.action, s.kind) for s in steps if s.action != Action.UNCHANGED}
    assert changed == {(Action.CREATE, Kind.DESTINATION), (Action.UPDATE, Kind.JOB), (Action.DELETE, Kind.DESTINATION)}
    assert [s.reason for s in steps if s.action == Action.DELETE] == ["replaced: the public URL changed"]


def test_forcing_the_destination_updates_only_it(catalogue):
    objects = plan(catalogue)
    steps = diff(objects, existing_from(objects), force=[Kind.DESTINATION])
    assert [(s.action, s.kind) for s in steps if s.action != Action.UNCHANGED] == [(Action.UPDATE, Kind.DESTINATION)]


def test_duplicates_of_ours_are_deleted(catalogue):
    objects = plan(catalogue)
    existing = existing_from(objects)
    twin = next(o for o in existing if o.kind == Kind.ALERT)
    steps = diff(objects, existing + [Existing(twin.kind, twin.name, "dup-id", twin.body)])
    assert [(s.action, s.existing_id, s.reason) for s in steps if s.action == Action.DELETE] == [(Action.DELETE, "dup-id", "duplicate")]


def test_removal_lists_only_ours_dependants_first():
    existing = [Existing(Kind.DESTINATION, MARKER + "Webhook", "d", {}), Existing(Kind.QUERY, MARKER + "Q", "q", {}),
                Existing(Kind.JOB, MARKER + "Q", "j", {}), Existing(Kind.ALERT, MARKER + "Q", "a", {}),
                Existing(Kind.QUERY, "Someone else's [esm-bot] query", "x", {})]
    assert [s.existing_id for s in removal(existing)] == ["j", "a", "q", "d"]


def test_differences_paths():
    assert differences({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 2, "c": [2, 1]}, "z": 0}) == ["a.b"]
    assert differences({"t": [{"k": "x"}]}, {"t": []}) == ["t"]
    assert differences({"s": "x"}, {}, skip=("s",)) == []


# ---- AlertsV2 (#13) -----------------------------------------------------------------------------

TITLES = CATEGORIES + ["ClamAV Infections", "Uncategorised Capsule8 Detections"]


def test_v2_one_alert_per_section_and_the_destination_no_queries_or_jobs(catalogue):
    objects = plan_v2(catalogue)
    assert [o.kind for o in objects] == [Kind.DESTINATION] + [Kind.ALERT_V2] * len(TITLES)
    assert [o.name for o in objects[1:]] == [MARKER + t for t in TITLES]


def test_v2_alert_carries_the_legacy_querys_sql_its_evaluation_subscription_and_schedule(catalogue):
    schedule = Schedule(every_minutes=15, lookback=timedelta(hours=2))
    alert = by(plan_v2(catalogue, schedule=schedule), Kind.ALERT_V2, "Host Security Changes").body
    legacy_query = by(plan(catalogue, schedule=schedule), Kind.QUERY, "Host Security Changes").body
    assert alert["query_text"] == legacy_query["query_text"] and alert["warehouse_id"] == "wh-123"
    assert alert["evaluation"] == {
        "source": {"name": COUNT_COLUMN}, "comparison_operator": "GREATER_THAN",
        "threshold": {"value": {"double_value": 0}}, "empty_result_state": "OK",
        "notification": {"notify_on_ok": False, "retrigger_seconds": 900,
                         "subscriptions": [{"destination_id": Ref(Kind.DESTINATION, WEBHOOK.display_name)}]}}
    assert alert["schedule"] == {"quartz_cron_schedule": "0 0/15 * * * ?", "timezone_id": "UTC",
                                 "pause_status": "UNPAUSED"}
    assert "esm-bot deploy" in alert["custom_description"]


def test_v2_alert_bodies_are_the_sdks_own_alertv2_fields():
    from databricks.sdk.service import sql

    catalogue = load_catalogue(RULES_DIR / "detections.yml")
    objects = plan_v2(catalogue)
    ids = {(o.kind, o.name): f"id-{i}" for i, o in enumerate(objects)}
    for obj in objects[1:]:
        body = resolve(obj.body, ids)
        assert sql.AlertV2.from_dict(body).as_dict() == body  # every field known, every enum value valid


def test_schedule_every_interval_and_an_hour():
    assert Schedule.every(timedelta(minutes=5)).quartz_cron == "0 0/5 * * * ?"
    hourly = Schedule.every(timedelta(hours=1))
    assert hourly.quartz_cron == "0 0 * * * ?" and hourly.retrigger_seconds == 3600
    for bad in (timedelta(seconds=90), timedelta(minutes=7), timedelta(hours=2)):
        with pytest.raises(ValueError):
            Schedule.every(bad)


def test_v2_what_was_created_is_unchanged_even_with_api_defaults(catalogue):
    objects = plan_v2(catalogue)
    existing = []
    for obj in existing_from(objects):
        body = dict(obj.body)
        if obj.kind == Kind.ALERT_V2:
            notification = {k: v for k, v in body["evaluation"]["notification"].items() if k != "notify_on_ok"}
            body["evaluation"] = {**body["evaluation"], "notification": notification, "state": "OK",
                                  "threshold": {"value": {"double_value": 0.0}}}
            body.update(lifecycle_state="ACTIVE", owner_user_name="me", create_time="2025-03-04T12:00:00Z")
        existing.append(Existing(obj.kind, obj.name, obj.id, body))
    assert {s.action for s in diff(objects, existing)} == {Action.UNCHANGED}


def test_migration_creates_the_v2_alerts_first_then_deletes_the_legacy_objects_it_replaces(catalogue):
    legacy = existing_from(plan(catalogue))
    foreign = [Existing(Kind.QUERY, "Team query", "q-team", {}), Existing(Kind.JOB, "Team nightly", "j-team", {})]
    steps = diff(plan_v2(catalogue), legacy + foreign)
    assert [(s.action, s.kind) for s in steps[:1 + len(TITLES)]] == (
        [(Action.UNCHANGED, Kind.DESTINATION)] + [(Action.CREATE, Kind.ALERT_V2)] * len(TITLES))
    deletes = steps[1 + len(TITLES):]
    assert [s.kind for s in deletes] == [Kind.JOB] * 6 + [Kind.ALERT] * 6 + [Kind.QUERY] * 6
    assert all(s.action == Action.DELETE and s.reason == "legacy: replaced by the v2 alert"
               and s.replaced_by == (Kind.ALERT_V2, s.name) for s in deletes)
    assert not {"q-team", "j-team"} & {s.existing_id for s in steps}


def test_forcing_legacy_replaces_v2_alerts_once_their_jobs_exist(catalogue):
    v2 = existing_from(plan_v2(catalogue))
    steps = diff(plan(catalogue), v2)
    deletes = [s for s in steps if s.action == Action.DELETE]
    assert [s.kind for s in deletes] == [Kind.ALERT_V2] * len(TITLES)
    assert all(s.replaced_by == (Kind.JOB, s.name) for s in deletes)
    assert steps.index(deletes[0]) > max(i for i, s in enumerate(steps) if s.action == Action.CREATE)


def test_a_new_public_url_repoints_the_v2_subscriptions(catalogue):
    old = plan_v2(catalogue)
    new = plan_v2(catalogue, webhook=Webhook("https://bot2.example.com", "databricks", "s3cret-pw"))
    steps = diff(new, existing_from(old))
    updates = [s for s in steps if s.action == Action.UPDATE]
    assert {s.kind for s in updates} == {Kind.ALERT_V2} and len(updates) == len(TITLES)
    assert all(s.reason == "changed: evaluation.notification.subscriptions[0].destination_id" for s in updates)


def test_removal_covers_both_apis():
    existing = [Existing(Kind.ALERT_V2, MARKER + "Q", "v2", {}), Existing(Kind.JOB, MARKER + "Q", "j", {}),
                Existing(Kind.DESTINATION, MARKER + "Webhook", "d", {})]
    assert [s.existing_id for s in removal(existing)] == ["v2", "j", "d"]
