"""`esm-bot deploy` for real: bot.cli.main -> databricks-sdk -> HTTP -> the local Databricks emulator.

The emulator answers on this test's event loop, so the (synchronous) CLI runs in a worker
thread through asyncio.to_thread. It checks every body against the SDK's own dataclasses and
enums, rejects a display name a live object already has and a non-HTTPS webhook, as the real
service does; the default workspace has AlertsV2 (`/api/2.0/alerts`).
"""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import yaml

from bot.cli.main import main
from bot.config import RULES_DIR
from emulators.databricks_jobs import JobsEmulator

TOKEN = "dapi-deploy-test-token-0123456789"
PASSWORD = "webhook-pass-Zq81"
PUBLIC_URL = "https://esm-bot.example.com"
SECTIONS = ["Container Security", "Host Security Changes", "Kernel Related Events", "Other Suspicious Activity",
            "ClamAV Infections", "Uncategorised Capsule8 Detections"]
TOTAL = 1 + len(SECTIONS)  # the destination and one v2 alert per section
LEGACY_TOTAL = 1 + 3 * len(SECTIONS)  # the destination and a query, an alert and a job per section
WEBHOOK_NAME = "[esm-bot] Webhook → esm-bot.example.com/webhooks/dbsql"


@pytest.fixture
async def emu():
    async with JobsEmulator(token=TOKEN) as emulator:
        yield emulator


@pytest.fixture
def rules(tmp_path) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(RULES_DIR, folder)
    return folder


def env(emu, rules: Path, **extra: str) -> dict[str, str]:
    return {"DATABRICKS_HOST": emu.host, "DATABRICKS_TOKEN": TOKEN, "ESM_WAREHOUSE_ID": "wh-0123456789",
            "ESM_PUBLIC_URL": PUBLIC_URL, "ESM_WEBHOOK_USER": "databricks", "ESM_WEBHOOK_PASSWORD": PASSWORD,
            "ESM_RULES_DIR": str(rules), "ESM_DATABRICKS_TIMEOUT": "5", **extra}


async def deploy(capsys, emu, rules, *args: str, **extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["deploy", *args], env(emu, rules, **extra))
    out, err = capsys.readouterr()
    return code, out, err


def writes(emu) -> list:
    return [c for c in emu.calls if c.method in ("POST", "PATCH", "PUT", "DELETE")]


def ours(store: dict, key: str = "display_name") -> dict[str, dict]:
    return {o[key]: o for o in store.values() if o.get(key, "").startswith("[esm-bot] ")
            and o.get("lifecycle_state", "ACTIVE") == "ACTIVE"}


def live_queries(emu) -> dict[str, dict]:
    return ours(emu.queries)


def live_jobs(emu) -> dict[str, dict]:
    return {j["settings"]["name"]: j for j in emu.jobs.values()}


# ---- AlertsV2: the default ------------------------------------------------------------------------

async def test_first_run_creates_only_v2_alerts_with_schedule_and_subscription_and_the_destination(capsys, emu, rules):
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 0, err
    assert "using AlertsV2 (/api/2.0/alerts)" in err
    assert f"Plan: {TOTAL} to create" in out
    assert f"[1/{TOTAL}] create destination {WEBHOOK_NAME} … ok" in out
    assert f"[{TOTAL}/{TOTAL}] create alert [esm-bot] Uncategorised Capsule8 Detections … ok" in out
    assert PASSWORD not in out + err
    assert not emu.queries and not emu.alerts and not emu.jobs  # nothing legacy, no job
    assert {c.path for c in writes(emu)} == {"/api/2.0/alerts", "/api/2.0/notification-destinations"}

    alerts = ours(emu.v2_alerts)
    assert sorted(alerts) == sorted(f"[esm-bot] {s}" for s in SECTIONS)
    (dest,) = emu.destinations.values()
    assert dest["config"]["generic_webhook"] == {"url": f"{PUBLIC_URL}/webhooks/dbsql", "username": "databricks",
                                                 "password": PASSWORD}
    kernel = alerts["[esm-bot] Kernel Related Events"]
    assert "'kernel module loaded'" in kernel["query_text"] and kernel["warehouse_id"] == "wh-0123456789"
    evaluation = kernel["evaluation"]
    assert (evaluation["source"], evaluation["comparison_operator"], evaluation["empty_result_state"]) == (
        {"name": "matching_events"}, "GREATER_THAN", "OK")
    assert evaluation["notification"] == {"notify_on_ok": False, "retrigger_seconds": 600,
                                          "subscriptions": [{"destination_id": dest["id"]}]}
    assert kernel["schedule"] == {"quartz_cron_schedule": "0 0/10 * * * ?", "timezone_id": "UTC",
                                  "pause_status": "UNPAUSED"}


async def test_second_run_is_unchanged_and_writes_nothing(capsys, emu, rules):
    assert (await deploy(capsys, emu, rules))[0] == 0
    before = len(writes(emu))
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 0, err
    assert f"Nothing to change: all {TOTAL} objects are up to date." in out
    assert "Done: nothing changed." in out
    assert out.count("  unchanged ") == TOTAL
    assert len(writes(emu)) == before


async def test_alert_schedule_comes_from_esm_alert_schedule(capsys, emu, rules):
    assert (await deploy(capsys, emu, rules, ESM_ALERT_SCHEDULE="5m"))[0] == 0
    alert = ours(emu.v2_alerts)["[esm-bot] Container Security"]
    assert alert["schedule"]["quartz_cron_schedule"] == "0 0/5 * * * ?"
    assert alert["evaluation"]["notification"]["retrigger_seconds"] == 300
    code, out, err = await deploy(capsys, emu, rules, ESM_ALERT_SCHEDULE="15m")  # drift: every alert updated
    assert code == 0, err
    assert f"Plan: {len(SECTIONS)} to update, 1 unchanged" in out
    assert "(changed: evaluation.notification.retrigger_seconds, schedule.quartz_cron_schedule)" in out


async def test_drift_made_in_the_ui_is_repaired(capsys, emu, rules):
    assert (await deploy(capsys, emu, rules))[0] == 0
    alert = ours(emu.v2_alerts)["[esm-bot] Host Security Changes"]
    alert["schedule"]["pause_status"] = "PAUSED"
    alert["evaluation"]["notification"]["subscriptions"] = []
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 0, err
    assert "[1/1] update alert [esm-bot] Host Security Changes … ok" in out
    assert "evaluation.notification.subscriptions" in out and "schedule.pause_status" in out
    repaired = ours(emu.v2_alerts)["[esm-bot] Host Security Changes"]
    assert repaired["schedule"]["pause_status"] == "UNPAUSED" and repaired["id"] == alert["id"]
    assert repaired["evaluation"]["notification"]["subscriptions"] != []


async def test_a_changed_catalogue_updates_exactly_the_affected_alerts(capsys, emu, rules):
    assert (await deploy(capsys, emu, rules))[0] == 0
    detections = yaml.safe_load((rules / "detections.yml").read_text())
    entry = next(e for e in detections if e["name"] == "Kernel Module Loaded")
    entry["name"] = "Kernel Module Loaded (renamed)"
    for example in entry["examples"]:
        example["row"]["action_name"] = entry["name"]
    (rules / "detections.yml").write_text(yaml.safe_dump(detections, sort_keys=False))
    before = len(writes(emu))

    code, out, err = await deploy(capsys, emu, rules)
    assert code == 0, err
    assert "[1/2] update alert [esm-bot] Kernel Related Events … ok" in out
    assert "[2/2] update alert [esm-bot] Uncategorised Capsule8 Detections … ok" in out  # its NOT IN list
    new = writes(emu)[before:]
    assert [(c.method, c.path.rsplit("/", 1)[0]) for c in new] == [("PATCH", "/api/2.0/alerts")] * 2
    assert "kernel module loaded (renamed)" in ours(emu.v2_alerts)["[esm-bot] Kernel Related Events"]["query_text"]


async def test_enabling_a_sql_expressible_benign_rule_updates_its_category_alert(capsys, emu, rules):
    assert (await deploy(capsys, emu, rules))[0] == 0
    benign = yaml.safe_load((rules / "benign.yml").read_text()) or []
    benign.append({"id": "lab-workspace-bpf", "enabled": True, "detection": "BPF Program Executed",
                   "scope": {"workspace_id": "5555"}, "match": {}, "expires": None, "reason": "lab workspace",
                   "examples": [{"matches": True, "row": _bpf_row(5555)}, {"matches": False, "row": _bpf_row(6666)}]})
    (rules / "benign.yml").write_text(yaml.safe_dump(benign, sort_keys=False))
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 0, err
    assert "[1/1] update alert [esm-bot] Kernel Related Events … ok" in out
    assert "workspace_id = 5555" in ours(emu.v2_alerts)["[esm-bot] Kernel Related Events"]["query_text"]


def _bpf_row(workspace_id: int) -> dict:
    return {"event_id": f"bpf-{workspace_id}", "event_time": "2025-03-04T10:00:00Z", "workspace_id": workspace_id,
            "service_name": "capsule8-alerts-dataplane", "action_name": "BPF Program Executed",
            "request_params": {"instanceId": "i-0123456789abcdef0"}}


async def test_dry_run_prints_the_plan_and_sends_nothing_that_writes(capsys, emu, rules):
    code, out, err = await deploy(capsys, emu, rules, "--dry-run", ESM_WEBHOOK_PASSWORD="")
    assert code == 0, err
    assert f"Plan: {TOTAL} to create" in out and "Dry run: nothing was changed." in out
    assert "  create    alert        [esm-bot] Container Security\n" in out
    assert writes(emu) == [] and not emu.v2_alerts and not emu.destinations and not emu.jobs

    assert (await deploy(capsys, emu, rules))[0] == 0
    before = len(writes(emu))
    code, out, _ = await deploy(capsys, emu, rules, "--dry-run", "--public-url", "https://new.example.com")
    assert code == 0
    assert "  create    destination  [esm-bot] Webhook → new.example.com/webhooks/dbsql\n" in out
    assert f"  delete    destination  {WEBHOOK_NAME}  (replaced: the public URL changed)" in out
    assert out.count("  update    alert ") == len(SECTIONS)  # each subscription re-pointed
    assert len(writes(emu)) == before


async def test_a_new_public_url_repoints_every_subscription_then_deletes_the_old_destination(capsys, emu, rules):
    assert (await deploy(capsys, emu, rules))[0] == 0
    code, out, err = await deploy(capsys, emu, rules, "--public-url", "https://new.example.com")
    assert code == 0, err
    (dest,) = emu.destinations.values()
    assert dest["display_name"] == "[esm-bot] Webhook → new.example.com/webhooks/dbsql"
    assert {a["evaluation"]["notification"]["subscriptions"][0]["destination_id"]
            for a in ours(emu.v2_alerts).values()} == {dest["id"]}
    assert out.rstrip().splitlines()[-2].startswith(f"[{2 + len(SECTIONS)}/{2 + len(SECTIONS)}] delete destination")


async def test_remove_deletes_only_ours(capsys, emu, rules):
    assert (await deploy(capsys, emu, rules))[0] == 0
    # someone else's objects, including one that merely mentions esm-bot
    foreign_query = await asyncio.to_thread(_seed_foreign, emu)
    code, out, err = await deploy(capsys, emu, rules, "--remove")
    assert code == 0, err
    assert f"Plan (remove): {TOTAL} to delete" in out
    assert ours(emu.v2_alerts) == {} and live_jobs(emu).keys() == {"Team nightly"}
    assert [d["display_name"] for d in emu.destinations.values()] == ["PagerDuty (team)"]
    assert emu.queries[foreign_query]["lifecycle_state"] == "ACTIVE"
    assert [a["display_name"] for a in emu.alerts.values() if a["lifecycle_state"] == "ACTIVE"] == ["Team alert"]
    assert [a["display_name"] for a in emu.v2_alerts.values() if a["lifecycle_state"] == "ACTIVE"] == ["Team v2 alert"]

    code, out, _ = await deploy(capsys, emu, rules, "--remove")
    assert code == 0 and "Plan (remove): Nothing to do." in out


def _seed_foreign(emu) -> str:
    query = {"id": "q-team", "display_name": "Team query about [esm-bot]", "query_text": "SELECT 1",
             "lifecycle_state": "ACTIVE"}
    emu.queries[query["id"]] = query
    emu.alerts["a-team"] = {"id": "a-team", "display_name": "Team alert", "query_id": "q-team",
                            "condition": {}, "lifecycle_state": "ACTIVE"}
    emu.v2_alerts["v2-team"] = {"id": "v2-team", "display_name": "Team v2 alert", "query_text": "SELECT 1",
                                "warehouse_id": "wh-team", "lifecycle_state": "ACTIVE",
                                "evaluation": {"source": {"name": "n"}, "comparison_operator": "EQUAL"},
                                "schedule": {"quartz_cron_schedule": "0 0 * * * ?", "timezone_id": "UTC"}}
    emu.destinations["d-team"] = {"id": "d-team", "display_name": "PagerDuty (team)", "destination_type": "PAGERDUTY",
                                  "config": {"pagerduty": {"integration_key": "k"}}}
    emu.add_job({"name": "Team nightly", "tasks": []})
    return "q-team"


async def test_an_api_failure_names_the_object_and_reason_and_the_rest_is_still_applied(capsys, emu, rules):
    emu.fail_method("POST", "/api/2.0/alerts", status=400)  # the first alert create only
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 1
    line = "create alert '[esm-bot] Container Security' failed: INVALID_PARAMETER_VALUE: emulated rejection (HTTP 400)"
    assert line in err and "1 object(s) failed" in err
    assert f"[2/{TOTAL}] create alert [esm-bot] Container Security … FAILED" in out
    assert len(ours(emu.v2_alerts)) == len(SECTIONS) - 1

    code, out, err = await deploy(capsys, emu, rules)  # the next run finishes the job
    assert code == 0, err
    assert "[1/1] create alert [esm-bot] Container Security … ok" in out


async def test_a_failed_destination_skips_the_alerts_that_subscribe_to_it(capsys, emu, rules):
    emu.fail_method("POST", "/api/2.0/notification-destinations", status=400)
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 1
    assert f"create alert '[esm-bot] Container Security' skipped: it needs destination {WEBHOOK_NAME}" in err
    assert not emu.v2_alerts


async def test_an_unreadable_workspace_fails_before_any_write(capsys, emu, rules):
    emu.fail("/api/2.0/sql/queries", status=403, times=None)
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 1 and "list queries failed" in err
    assert writes(emu) == []


async def test_missing_or_wrong_settings_are_named(capsys, emu, rules):
    code, _, err = await deploy(capsys, emu, rules, ESM_WAREHOUSE_ID="")
    assert code == 2 and "ESM_WAREHOUSE_ID" in err
    code, _, err = await deploy(capsys, emu, rules, ESM_PUBLIC_URL="")
    assert code == 2 and "ESM_PUBLIC_URL" in err
    code, _, err = await deploy(capsys, emu, rules, ESM_WEBHOOK_PASSWORD="")
    assert code == 2 and "ESM_WEBHOOK_PASSWORD" in err
    code, _, err = await deploy(capsys, emu, rules, ESM_PUBLIC_URL="http://esm-bot.example.com")
    assert code == 2 and "ESM_PUBLIC_URL: http://esm-bot.example.com is not https" in err
    code, _, err = await deploy(capsys, emu, rules, ESM_ALERT_SCHEDULE="7m")
    assert code == 2 and "ESM_ALERT_SCHEDULE" in err
    assert writes(emu) == []


async def test_rotate_webhook_secret_resends_the_credentials_only(capsys, emu, rules):
    assert (await deploy(capsys, emu, rules))[0] == 0
    before = len(writes(emu))
    code, out, err = await deploy(capsys, emu, rules, "--rotate-webhook-secret", ESM_WEBHOOK_PASSWORD="rotated-pw-77")
    assert code == 0, err
    new = writes(emu)[before:]
    assert [(c.method, c.path.split("/")[3]) for c in new] == [("PATCH", "notification-destinations")]
    (dest,) = emu.destinations.values()
    assert dest["config"]["generic_webhook"]["password"] == "rotated-pw-77"
    assert "rotated-pw-77" not in out + err


# ---- migration: a workspace deployed by an earlier esm-bot (legacy queries, alerts, jobs) ----------

async def legacy_deploy(capsys, emu, rules) -> dict[str, set[str]]:
    code, out, err = await deploy(capsys, emu, rules, "--api", "legacy")
    assert code == 0, err
    return {"queries": set(emu.queries), "alerts": set(emu.alerts), "jobs": set(emu.jobs)}


async def test_migration_plan_lists_the_legacy_objects_it_replaces_and_dry_run_writes_nothing(capsys, emu, rules):
    await legacy_deploy(capsys, emu, rules)
    before = len(writes(emu))
    code, out, err = await deploy(capsys, emu, rules, "--dry-run")
    assert code == 0, err
    assert f"Plan: {len(SECTIONS)} to create, 1 unchanged, {3 * len(SECTIONS)} to delete" in out
    assert (f"Migration: replaces {len(SECTIONS)} queries, {len(SECTIONS)} legacy alerts, {len(SECTIONS)} jobs "
            "of an earlier esm-bot deploy with v2 alerts") in out
    for kind in ("job", "legacy alert", "query"):
        assert f"  delete    {kind:<12} [esm-bot] Kernel Related Events  (legacy: replaced by the v2 alert)" in out
    assert len(writes(emu)) == before


async def test_migration_creates_the_v2_alerts_first_then_removes_the_legacy_objects_and_nothing_else(capsys, emu, rules):
    await legacy_deploy(capsys, emu, rules)
    await asyncio.to_thread(_seed_foreign, emu)
    foreign = {"queries": {"q-team"}, "alerts": {"a-team"}, "v2": {"v2-team"},
               "jobs": {j for j, job in emu.jobs.items() if job["settings"]["name"] == "Team nightly"}}
    before = len(writes(emu))
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 0, err
    assert "Done." in out
    new = [(c.method, c.path) for c in writes(emu)[before:]]
    creates = [i for i, (m, p) in enumerate(new) if m == "POST" and p == "/api/2.0/alerts"]
    deletes = [i for i, (m, p) in enumerate(new) if m == "DELETE" or p.endswith("/jobs/delete")]
    assert len(creates) == len(SECTIONS) and len(deletes) == 3 * len(SECTIONS) and max(creates) < min(deletes)

    assert sorted(ours(emu.v2_alerts)) == sorted(f"[esm-bot] {s}" for s in SECTIONS)
    assert live_queries(emu) == {} and ours(emu.alerts) == {}
    assert set(live_jobs(emu)) == {"Team nightly"}
    assert all(emu.queries[q]["lifecycle_state"] == "ACTIVE" for q in foreign["queries"])
    assert all(emu.alerts[a]["lifecycle_state"] == "ACTIVE" for a in foreign["alerts"])
    assert emu.v2_alerts["v2-team"]["lifecycle_state"] == "ACTIVE" and foreign["jobs"] <= set(emu.jobs)
    assert len(emu.destinations) == 2  # ours, kept (it was already right), and the team's

    code, out, err = await deploy(capsys, emu, rules)
    assert code == 0 and f"Nothing to change: all {TOTAL} objects are up to date." in out


async def test_migration_keeps_a_sections_legacy_objects_while_its_v2_alert_cannot_be_created(capsys, emu, rules):
    await legacy_deploy(capsys, emu, rules)
    emu.fail_method("POST", "/api/2.0/alerts", status=400)  # Container Security's v2 alert
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 1
    assert ("delete job '[esm-bot] Container Security' skipped: the alert replacing it, "
            "'[esm-bot] Container Security', does not exist") in err
    assert set(live_jobs(emu)) == {"[esm-bot] Container Security"}
    assert set(live_queries(emu)) == set(ours(emu.alerts)) == {"[esm-bot] Container Security"}

    code, out, err = await deploy(capsys, emu, rules)  # the next run finishes the migration
    assert code == 0, err
    assert not live_jobs(emu) and not live_queries(emu) and len(ours(emu.v2_alerts)) == len(SECTIONS)


# ---- a workspace without AlertsV2: the legacy path, said in one line --------------------------------

@pytest.mark.parametrize("mode, answer", [("missing", "ENDPOINT_NOT_FOUND"), ("disabled", "FEATURE_DISABLED")])
async def test_without_alerts_v2_deploy_says_so_and_falls_back_to_legacy(capsys, rules, mode, answer):
    async with JobsEmulator(token=TOKEN, alerts_v2_api=mode) as emu:
        code, out, err = await deploy(capsys, emu, rules)
        assert code == 0, err
        line = next(line for line in err.splitlines() if "has no AlertsV2" in line)
        assert line.startswith(f"esm-bot deploy: this workspace has no AlertsV2 (GET /api/2.0/alerts: {answer}")
        assert "falling back to the legacy SQL alerts API" in line and "--api legacy" in line
        assert f"Plan: {LEGACY_TOTAL} to create" in out
        assert len(live_queries(emu)) == len(ours(emu.alerts)) == len(live_jobs(emu)) == len(SECTIONS)

        code, out, err = await deploy(capsys, emu, rules, "--api", "v2")
        assert code == 1 and f"--api v2, but this workspace has no AlertsV2 (GET /api/2.0/alerts: {answer}" in err


async def test_legacy_path_wires_query_alert_and_job(capsys, emu, rules):
    code, out, err = await deploy(capsys, emu, rules, "--api", "legacy")
    assert code == 0, err
    assert "using the legacy SQL alerts API (--api legacy)" in err
    assert f"Plan: {LEGACY_TOTAL} to create" in out
    assert f"[{LEGACY_TOTAL}/{LEGACY_TOTAL}] create job [esm-bot] Uncategorised Capsule8 Detections … ok" in out
    queries, alerts, jobs = live_queries(emu), ours(emu.alerts), live_jobs(emu)
    assert sorted(queries) == sorted(alerts) == sorted(jobs) == sorted(f"[esm-bot] {s}" for s in SECTIONS)
    (dest,) = emu.destinations.values()
    kernel = queries["[esm-bot] Kernel Related Events"]
    alert = alerts["[esm-bot] Kernel Related Events"]
    assert alert["query_id"] == kernel["id"] and alert["condition"]["empty_result_state"] == "OK"
    task = jobs["[esm-bot] Kernel Related Events"]["settings"]["tasks"][0]["sql_task"]
    assert task["alert"] == {"alert_id": alert["id"], "subscriptions": [{"destination_id": dest["id"]}]}
    assert task["warehouse_id"] == "wh-0123456789"
    assert jobs["[esm-bot] Kernel Related Events"]["settings"]["schedule"]["quartz_cron_expression"] == "0 0/10 * * * ?"

    code, out, _ = await deploy(capsys, emu, rules, "--api", "legacy")
    assert code == 0 and f"Nothing to change: all {LEGACY_TOTAL} objects are up to date." in out


async def test_forcing_legacy_over_v2_alerts_replaces_them_once_the_jobs_exist(capsys, emu, rules):
    assert (await deploy(capsys, emu, rules))[0] == 0
    code, out, err = await deploy(capsys, emu, rules, "--api", "legacy")
    assert code == 0, err
    assert "(replaced by the legacy alert and its job)" in out
    assert ours(emu.v2_alerts) == {} and len(live_jobs(emu)) == len(SECTIONS)


async def test_legacy_a_failed_query_skips_what_depends_on_it(capsys, emu, rules):
    emu.fail_method("POST", "/api/2.0/sql/queries", status=400)  # the first query create only
    code, out, err = await deploy(capsys, emu, rules, "--api", "legacy")
    assert code == 1
    assert ("create query '[esm-bot] Container Security' failed: INVALID_PARAMETER_VALUE: "
            "emulated rejection (HTTP 400)") in err
    assert ("create legacy alert '[esm-bot] Container Security' skipped: "
            "it needs query [esm-bot] Container Security") in err
    assert "create job '[esm-bot] Container Security' skipped: it needs legacy alert [esm-bot] Container Security" in err
    assert len(live_jobs(emu)) == len(SECTIONS) - 1
