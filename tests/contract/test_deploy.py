"""`esm-bot deploy` for real: bot.cli.main -> databricks-sdk -> HTTP -> the local Databricks emulator.

The emulator answers on this test's event loop, so the (synchronous) CLI runs in a worker
thread through asyncio.to_thread.
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
TOTAL = 1 + 3 * len(SECTIONS)


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


async def test_first_run_creates_everything_with_progress_and_wires_it_together(capsys, emu, rules):
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 0, err
    assert f"Plan: {TOTAL} to create" in out
    assert f"[1/{TOTAL}] create destination [esm-bot] Webhook → esm-bot.example.com/webhooks/dbsql … ok" in out
    assert f"[{TOTAL}/{TOTAL}] create job [esm-bot] Uncategorised Capsule8 Detections … ok" in out
    assert PASSWORD not in out + err

    queries, alerts, jobs = live_queries(emu), ours(emu.alerts), live_jobs(emu)
    assert sorted(queries) == sorted(alerts) == sorted(jobs) == sorted(f"[esm-bot] {s}" for s in SECTIONS)
    (dest,) = emu.destinations.values()
    assert dest["config"]["generic_webhook"] == {"url": f"{PUBLIC_URL}/webhooks/dbsql", "username": "databricks",
                                                 "password": PASSWORD}
    kernel = queries["[esm-bot] Kernel Related Events"]
    assert "'kernel module loaded'" in kernel["query_text"] and kernel["warehouse_id"] == "wh-0123456789"
    alert = alerts["[esm-bot] Kernel Related Events"]
    assert alert["query_id"] == kernel["id"] and alert["condition"]["empty_result_state"] == "OK"
    task = jobs["[esm-bot] Kernel Related Events"]["settings"]["tasks"][0]["sql_task"]
    assert task["alert"] == {"alert_id": alert["id"], "subscriptions": [{"destination_id": dest["id"]}]}
    assert jobs["[esm-bot] Kernel Related Events"]["settings"]["schedule"]["quartz_cron_expression"] == "0 0/10 * * * ?"


async def test_second_run_is_unchanged_and_writes_nothing(capsys, emu, rules):
    assert (await deploy(capsys, emu, rules))[0] == 0
    before = len(writes(emu))
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 0, err
    assert f"Nothing to change: all {TOTAL} objects are up to date." in out
    assert "Done: nothing changed." in out
    assert out.count("  unchanged ") == TOTAL
    assert len(writes(emu)) == before


async def test_a_changed_catalogue_updates_exactly_the_affected_query(capsys, emu, rules):
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
    assert "[1/2] update query [esm-bot] Kernel Related Events … ok" in out
    assert "[2/2] update query [esm-bot] Uncategorised Capsule8 Detections … ok" in out  # its NOT IN list
    new = writes(emu)[before:]
    assert [(c.method, c.path.rsplit("/", 1)[0]) for c in new] == [("PATCH", "/api/2.0/sql/queries")] * 2
    assert "kernel module loaded (renamed)" in live_queries(emu)["[esm-bot] Kernel Related Events"]["query_text"]


async def test_enabling_a_sql_expressible_benign_rule_updates_its_category_query(capsys, emu, rules):
    assert (await deploy(capsys, emu, rules))[0] == 0
    benign = yaml.safe_load((rules / "benign.yml").read_text()) or []
    benign.append({"id": "lab-workspace-bpf", "enabled": True, "detection": "BPF Program Executed",
                   "scope": {"workspace_id": "5555"}, "match": {}, "expires": None, "reason": "lab workspace",
                   "examples": [{"matches": True, "row": _bpf_row(5555)}, {"matches": False, "row": _bpf_row(6666)}]})
    (rules / "benign.yml").write_text(yaml.safe_dump(benign, sort_keys=False))
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 0, err
    assert "[1/1] update query [esm-bot] Kernel Related Events … ok" in out
    assert "workspace_id = 5555" in live_queries(emu)["[esm-bot] Kernel Related Events"]["query_text"]


def _bpf_row(workspace_id: int) -> dict:
    return {"event_id": f"bpf-{workspace_id}", "event_time": "2025-03-04T10:00:00Z", "workspace_id": workspace_id,
            "service_name": "capsule8-alerts-dataplane", "action_name": "BPF Program Executed",
            "request_params": {"instanceId": "i-0123456789abcdef0"}}


async def test_dry_run_prints_the_plan_and_sends_nothing_that_writes(capsys, emu, rules):
    code, out, err = await deploy(capsys, emu, rules, "--dry-run", ESM_WEBHOOK_PASSWORD="")
    assert code == 0, err
    assert f"Plan: {TOTAL} to create" in out and "Dry run: nothing was changed." in out
    assert "  create    query       [esm-bot] Container Security\n" in out
    assert writes(emu) == [] and not emu.queries and not emu.destinations and not emu.jobs

    assert (await deploy(capsys, emu, rules))[0] == 0
    before = len(writes(emu))
    code, out, _ = await deploy(capsys, emu, rules, "--dry-run", "--public-url", "https://new.example.com")
    assert code == 0
    assert "  create    destination [esm-bot] Webhook → new.example.com/webhooks/dbsql\n" in out
    assert "  delete    destination [esm-bot] Webhook → esm-bot.example.com/webhooks/dbsql  (replaced: the public URL changed)" in out
    assert len(writes(emu)) == before


async def test_remove_deletes_only_ours(capsys, emu, rules):
    assert (await deploy(capsys, emu, rules))[0] == 0
    # someone else's objects, including one that merely mentions esm-bot
    foreign_query = await asyncio.to_thread(_seed_foreign, emu)
    code, out, err = await deploy(capsys, emu, rules, "--remove")
    assert code == 0, err
    assert f"Plan (remove): {TOTAL} to delete" in out
    assert live_queries(emu) == {} and ours(emu.alerts) == {} and live_jobs(emu).keys() == {"Team nightly"}
    assert [d["display_name"] for d in emu.destinations.values()] == ["PagerDuty (team)"]
    assert emu.queries[foreign_query]["lifecycle_state"] == "ACTIVE"
    assert [a["display_name"] for a in emu.alerts.values() if a["lifecycle_state"] == "ACTIVE"] == ["Team alert"]

    code, out, _ = await deploy(capsys, emu, rules, "--remove")
    assert code == 0 and "Plan (remove): Nothing to do." in out


def _seed_foreign(emu) -> str:
    query = {"id": "q-team", "display_name": "Team query about [esm-bot]", "query_text": "SELECT 1",
             "lifecycle_state": "ACTIVE"}
    emu.queries[query["id"]] = query
    emu.alerts["a-team"] = {"id": "a-team", "display_name": "Team alert", "query_id": "q-team",
                            "condition": {}, "lifecycle_state": "ACTIVE"}
    emu.destinations["d-team"] = {"id": "d-team", "display_name": "PagerDuty (team)", "destination_type": "PAGERDUTY",
                                  "config": {"pagerduty": {"integration_key": "k"}}}
    emu.add_job({"name": "Team nightly", "tasks": []})
    return "q-team"


async def test_an_api_failure_names_the_object_and_reason_and_the_rest_is_still_applied(capsys, emu, rules):
    emu.fail("/api/2.2/jobs/create", status=400, times=1)
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 1
    line = "create job '[esm-bot] Container Security' failed: INTERNAL_ERROR: emulated failure (HTTP 400)"
    assert line in err and "1 object(s) failed" in err
    assert f"[{TOTAL - 5}/{TOTAL}] create job [esm-bot] Container Security … FAILED" in out
    assert len(live_jobs(emu)) == len(SECTIONS) - 1 and len(live_queries(emu)) == len(SECTIONS)

    code, out, err = await deploy(capsys, emu, rules)  # the next run finishes the job
    assert code == 0, err
    assert "[1/1] create job [esm-bot] Container Security … ok" in out


async def test_a_failed_query_skips_what_depends_on_it(capsys, emu, rules):
    emu.fail_method("POST", "/api/2.0/sql/queries", status=400)  # the first query create only
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 1
    assert ("create query '[esm-bot] Container Security' failed: INVALID_PARAMETER_VALUE: "
            "emulated rejection (HTTP 400)") in err
    assert "create alert '[esm-bot] Container Security' skipped: it needs query [esm-bot] Container Security" in err
    assert "create job '[esm-bot] Container Security' skipped: it needs alert [esm-bot] Container Security" in err
    assert len(live_jobs(emu)) == len(SECTIONS) - 1


async def test_an_unreadable_workspace_fails_before_any_write(capsys, emu, rules):
    emu.fail("/api/2.0/sql/queries", status=403, times=None)
    code, out, err = await deploy(capsys, emu, rules)
    assert code == 1 and "list queries failed" in err
    assert writes(emu) == []


async def test_missing_settings_are_named(capsys, emu, rules):
    code, _, err = await deploy(capsys, emu, rules, ESM_WAREHOUSE_ID="")
    assert code == 2 and "ESM_WAREHOUSE_ID" in err
    code, _, err = await deploy(capsys, emu, rules, ESM_PUBLIC_URL="")
    assert code == 2 and "ESM_PUBLIC_URL" in err
    code, _, err = await deploy(capsys, emu, rules, ESM_WEBHOOK_PASSWORD="")
    assert code == 2 and "ESM_WEBHOOK_PASSWORD" in err
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
