"""The Databricks emulator rejects what the real service rejects, in the real error shape.

Each example sends, through the real SDK (or raw HTTP where the SDK's own types would refuse to
build the body), a body the emulator used to accept: a legacy alert `op: ">"`, an `sql_task`
without `warehouse_id`, a second alert with the same display name, an `http://` webhook, an
AlertsV2 alert with an unknown enum value or without its schedule.
"""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest, DatabricksError
from databricks.sdk.service import jobs, settings, sql

from emulators.databricks_jobs import JobsEmulator

TOKEN = "dapi-strict-0123"


@pytest.fixture
async def emu():
    async with JobsEmulator(token=TOKEN) as emulator:
        yield emulator


@pytest.fixture
async def sdk(emu):
    return await asyncio.to_thread(WorkspaceClient, host=emu.host, token=TOKEN)


async def raw(emu, method: str, path: str, body: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        async with session.request(method, emu.host + path, json=body) as response:
            return response.status, await response.json()


def v2_alert(name: str = "esm: v2", **overrides) -> dict:
    alert = {
        "display_name": name, "query_text": "SELECT 1 AS n", "warehouse_id": "wh1",
        "evaluation": {"source": {"name": "n"}, "comparison_operator": "GREATER_THAN",
                       "threshold": {"value": {"double_value": 0}}, "empty_result_state": "OK"},
        "schedule": {"quartz_cron_schedule": "0 0/10 * * * ?", "timezone_id": "UTC", "pause_status": "UNPAUSED"},
    }
    alert.update(overrides)
    return alert


async def test_a_legacy_alert_with_op_gt_sign_is_rejected(emu, sdk):
    query = await asyncio.to_thread(sdk.queries.create, query=sql.CreateQueryRequestQuery(display_name="q"))
    status, body = await raw(emu, "POST", "/api/2.0/sql/alerts", {"alert": {
        "display_name": "a", "query_id": query.id,
        "condition": {"op": ">", "operand": {"column": {"name": "n"}}, "threshold": {"value": {"double_value": 0}}}}})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert body["message"].startswith("Invalid value '>' for condition.op: expected one of EQUAL, GREATER_THAN")
    assert set(body) == {"error_code", "message"}


async def test_an_sql_task_without_warehouse_id_is_rejected(emu, sdk):
    task = jobs.Task(task_key="t", sql_task=jobs.SqlTask(warehouse_id=None, alert=jobs.SqlTaskAlert(alert_id="x")))
    with pytest.raises(BadRequest, match="Missing required field: tasks\\[0\\].sql_task.warehouse_id"):
        await asyncio.to_thread(sdk.jobs.create, name="j", tasks=[task])
    assert emu.jobs == {}


async def test_a_job_schedule_with_an_unknown_pause_status_is_rejected(emu):
    status, body = await raw(emu, "POST", "/api/2.2/jobs/create", {"name": "j", "schedule": {
        "quartz_cron_expression": "0 0 * * * ?", "timezone_id": "UTC", "pause_status": "ON"}})
    assert status == 400 and "schedule.pause_status" in body["message"]


async def test_a_second_alert_or_query_with_the_same_display_name_is_rejected(emu, sdk):
    condition = sql.AlertCondition(op=sql.AlertOperator.GREATER_THAN,
                                   operand=sql.AlertConditionOperand(column=sql.AlertOperandColumn(name="n")))

    def scenario():
        query = sdk.queries.create(query=sql.CreateQueryRequestQuery(display_name="q"))
        with pytest.raises(DatabricksError) as twin_query:
            sdk.queries.create(query=sql.CreateQueryRequestQuery(display_name="q"))
        sdk.alerts.create(alert=sql.CreateAlertRequestAlert(display_name="a", query_id=query.id, condition=condition))
        with pytest.raises(DatabricksError) as twin_alert:
            sdk.alerts.create(alert=sql.CreateAlertRequestAlert(display_name="a", query_id=query.id, condition=condition))
        first = sdk.alerts_v2.create_alert(sql.AlertV2.from_dict(v2_alert("v2")))
        with pytest.raises(DatabricksError) as twin_v2:
            sdk.alerts_v2.create_alert(sql.AlertV2.from_dict(v2_alert("v2")))
        sdk.alerts_v2.trash_alert(first.id)  # a name in the trash is free again
        sdk.alerts_v2.create_alert(sql.AlertV2.from_dict(v2_alert("v2")))
        return twin_query.value, twin_alert.value, twin_v2.value

    for error in await asyncio.to_thread(scenario):
        assert error.error_code == "RESOURCE_ALREADY_EXISTS" and "already exists" in str(error)


async def test_an_http_webhook_destination_is_rejected(emu, sdk):
    config = settings.Config(generic_webhook=settings.GenericWebhookConfig(url="http://bot.example.com/webhooks/dbsql"))
    with pytest.raises(BadRequest, match="only HTTPS"):
        await asyncio.to_thread(sdk.notification_destinations.create, display_name="d", config=config)
    assert emu.destinations == {}


@pytest.mark.parametrize("change, words", [
    ({"evaluation": {"source": {"name": "n"}, "comparison_operator": ">"}},
     "Invalid value '>' for evaluation.comparison_operator"),
    ({"schedule": None}, "Missing required field: schedule"),
    ({"schedule": {"quartz_cron_schedule": "0 0 * * * ?"}}, "Missing required field: schedule.timezone_id"),
    ({"evaluation": {"source": {"name": "n"}, "comparison_operator": "EQUAL", "empty_result_state": "FINE"}},
     "evaluation.empty_result_state"),
    ({"evaluation": {"source": {"name": "n"}, "comparison_operator": "EQUAL",
                     "notification": {"subscriptions": [{"destination_id": "nope"}]}}},
     "Notification destination nope does not exist"),
])
async def test_an_alert_v2_the_api_would_refuse_is_refused(emu, change, words):
    status, body = await raw(emu, "POST", "/api/2.0/alerts", v2_alert(**change))
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE" and words in body["message"]
    assert emu.v2_alerts == {}


async def test_alerts_v2_round_trip_through_the_sdk(emu, sdk):
    def scenario():
        created = sdk.alerts_v2.create_alert(sql.AlertV2.from_dict(v2_alert()))
        changed = sql.AlertV2.from_dict(v2_alert(query_text="SELECT 2 AS n"))
        sdk.alerts_v2.update_alert(created.id, changed, "query_text")
        listed = list(sdk.alerts_v2.list_alerts())
        sdk.alerts_v2.trash_alert(created.id)
        return sdk.alerts_v2.get_alert(created.id), listed, list(sdk.alerts_v2.list_alerts())

    fetched, listed, after = await asyncio.to_thread(scenario)
    assert fetched.query_text == "SELECT 2 AS n" and fetched.schedule.timezone_id == "UTC"
    assert fetched.evaluation.comparison_operator == sql.ComparisonOperator.GREATER_THAN
    assert [a.display_name for a in listed] == ["esm: v2"] and after == []
    assert fetched.lifecycle_state == sql.AlertLifecycleState.DELETED


@pytest.mark.parametrize("mode, status, code", [("missing", 404, "ENDPOINT_NOT_FOUND"),
                                                ("disabled", 400, "FEATURE_DISABLED")])
async def test_a_workspace_without_alerts_v2(mode, status, code):
    async with JobsEmulator(token=TOKEN, alerts_v2_api=mode) as emu:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
            async with session.get(emu.host + "/api/2.0/alerts") as response:
                assert response.status == status and (await response.json())["error_code"] == code
