"""DatabricksWorkspace over the real databricks-sdk, against the local REST emulator over HTTP.

The emulator answers on this test's event loop, so every direct SDK call goes through
asyncio.to_thread (a blocking call on the loop would deadlock against its own server).
"""
from __future__ import annotations

import asyncio
import socket
import time

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import settings, sql

from bot.adapters.workspace import DatabricksWorkspace
from bot.core.findings import ClusterContext
from bot.core.ports import WorkspaceError
from emulators.databricks import DatabricksEmulator

TOKEN = "dapi-contract-test-token-0123456789"


@pytest.fixture
async def emu():
    async with DatabricksEmulator(token=TOKEN) as emulator:
        emulator.add_cluster(
            "0101-aaaa", name="etl", creator="alice@example.com", single_user="alice@example.com",
            data_security_mode="SINGLE_USER", policy_id="POL1", spark_version="15.4.x-scala2.12",
            driver_instance_id="i-driver1", executor_instance_ids=["i-exec1", "i-exec2"],
        )
        emulator.add_cluster("0202-bbbb", name="shared", creator="bob@example.com",
                             driver_instance_id="i-driver2")
        yield emulator


@pytest.fixture
async def workspace(emu: DatabricksEmulator) -> DatabricksWorkspace:
    return await DatabricksWorkspace.connect(host=emu.host, token=TOKEN, timeout_seconds=5)


@pytest.fixture
async def sdk(emu: DatabricksEmulator) -> WorkspaceClient:
    return await asyncio.to_thread(WorkspaceClient, host=emu.host, token=TOKEN)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- construction ----------------------------------------------------------------------------

async def test_connect_probes_host_metadata_and_keeps_host(emu, workspace):
    assert workspace.host == emu.host
    assert emu.calls_to("/.well-known/databricks-config", "GET")


async def test_connect_tolerates_a_workspace_without_host_metadata(emu):
    emu.serve_host_metadata = False
    workspace = await DatabricksWorkspace.connect(host=emu.host, token=TOKEN, timeout_seconds=5)
    assert (await workspace.get_cluster("0101-aaaa")).name == "etl"


async def test_connect_leaves_auth_to_the_sdk_environment(emu, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", emu.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    workspace = await DatabricksWorkspace.connect(timeout_seconds=5)
    assert workspace.host == emu.host
    assert (await workspace.get_cluster("0202-bbbb")).owner == "bob@example.com"


async def test_connect_without_any_configuration_is_a_workspace_error():
    with pytest.raises(WorkspaceError, match="connect"):
        await DatabricksWorkspace.connect(timeout_seconds=2)


# ---- instance -> cluster -----------------------------------------------------------------------

async def test_driver_instance_maps_to_its_cluster(workspace):
    context = await workspace.cluster_for_instance("i-driver1")
    assert context == ClusterContext(
        cluster_id="0101-aaaa", name="etl", owner="alice@example.com", single_user="alice@example.com",
        access_mode="SINGLE_USER", policy_id="POL1", state="RUNNING", runtime="15.4.x-scala2.12",
        node_role="driver", source="api",
    )


async def test_executor_instance_maps_to_its_cluster(workspace):
    context = await workspace.cluster_for_instance("i-exec2")
    assert (context.cluster_id, context.node_role) == ("0101-aaaa", "executor")


async def test_unknown_instance_is_none(workspace):
    assert await workspace.cluster_for_instance("i-nowhere") is None


async def test_instance_scan_follows_pagination(emu, workspace):
    emu.page_size = 2
    for n in range(3):
        emu.add_cluster(f"0303-{n}", driver_instance_id=f"i-late{n}")
    context = await workspace.cluster_for_instance("i-late2")
    assert context.cluster_id == "0303-2"
    assert len(emu.calls_to("/api/2.1/clusters/list")) == 3


async def test_instance_scan_asks_only_for_live_clusters(emu, workspace):
    await workspace.cluster_for_instance("i-driver2")
    states = emu.calls_to("/api/2.1/clusters/list")[0].data["filter_by.cluster_states"]
    assert "RUNNING" in states and "TERMINATED" not in states


# ---- get_cluster -------------------------------------------------------------------------------

async def test_get_cluster_reads_details(workspace):
    context = await workspace.get_cluster("0202-bbbb")
    assert (context.name, context.access_mode, context.node_role) == ("shared", "USER_ISOLATION", None)


async def test_missing_cluster_is_none(workspace):
    assert await workspace.get_cluster("nope") is None


async def test_missing_cluster_is_none_with_the_legacy_400_shape(emu, workspace):
    emu.legacy_not_found = True
    assert await workspace.get_cluster("nope") is None


# ---- terminate ---------------------------------------------------------------------------------

async def test_terminate_posts_delete_once_and_cluster_is_terminated(emu, workspace):
    await workspace.terminate_cluster("0101-aaaa")
    deletes = emu.calls_to("/api/2.1/clusters/delete")
    assert deletes == [("POST", "/api/2.1/clusters/delete", {"cluster_id": "0101-aaaa"})]
    assert not emu.calls_to("permanent-delete")
    assert (await workspace.get_cluster("0101-aaaa")).state == "TERMINATED"
    assert await workspace.cluster_for_instance("i-driver1") is None  # nodes are gone


async def test_terminate_does_not_wait_for_termination(emu, workspace):
    emu.termination_seconds = 60
    await asyncio.wait_for(workspace.terminate_cluster("0202-bbbb"), timeout=5)
    assert (await workspace.get_cluster("0202-bbbb")).state == "TERMINATING"
    assert len(emu.calls_to("/api/2.1/clusters/get")) == 1  # only ours: no waiter polling


async def test_terminate_on_terminated_cluster_is_a_quiet_no_op(emu, workspace):
    emu.add_cluster("0404-dead", state="TERMINATED")
    await workspace.terminate_cluster("0404-dead")
    assert emu.clusters["0404-dead"]["state"] == "TERMINATED"
    assert not emu.calls_to("permanent-delete")


async def test_terminate_missing_cluster_is_a_workspace_error(workspace):
    with pytest.raises(WorkspaceError, match="clusters.delete"):
        await workspace.terminate_cluster("nope")


async def test_termination_is_visible_in_cluster_events(emu, workspace, sdk):
    await workspace.terminate_cluster("0101-aaaa")
    events = await asyncio.to_thread(lambda: list(sdk.clusters.events("0101-aaaa", limit=1)))
    # newest first; limit=1 makes the SDK follow `next_page` twice
    assert [e.type.value for e in events] == ["TERMINATING", "RUNNING", "CREATING"]
    assert len(emu.calls_to("/api/2.1/clusters/events")) == 3


# ---- active runs -------------------------------------------------------------------------------

async def test_active_runs_on_cluster_lists_only_live_runs_there(emu, workspace):
    emu.add_run(1, "0101-aaaa", run_name="nightly")
    emu.add_run(2, "0101-aaaa", state="TERMINATED")
    emu.add_run(3, "0202-bbbb")
    runs = await workspace.active_runs_on_cluster("0101-aaaa")
    assert [(r["run_id"], r["run_name"], r["state"]) for r in runs] == [(1, "nightly", "RUNNING")]
    assert emu.calls_to("/jobs/runs/list")[0].data["active_only"] == "true"


# ---- failures ----------------------------------------------------------------------------------

async def test_server_error_names_operation_and_hides_token(emu, workspace):
    emu.fail("/api/2.1/clusters/list", status=500)
    with pytest.raises(WorkspaceError) as caught:
        await workspace.cluster_for_instance("i-driver1")
    message = str(caught.value)
    assert "clusters.list" in message and "INTERNAL_ERROR" in message
    assert TOKEN not in message


async def test_throttling_is_retried_by_the_sdk(emu, workspace):
    emu.fail("/api/2.1/clusters/get", status=429, times=1, retry_after=0)
    assert (await workspace.get_cluster("0101-aaaa")).name == "etl"
    assert len(emu.calls_to("/api/2.1/clusters/get")) == 2


async def test_persistent_unavailability_reports_the_last_api_error(emu):
    workspace = await DatabricksWorkspace.connect(host=emu.host, token=TOKEN, timeout_seconds=1)
    emu.fail("/api/2.1/clusters/get", status=503, times=100, retry_after=0)
    with pytest.raises(WorkspaceError, match="clusters.get.*TEMPORARILY_UNAVAILABLE"):
        await workspace.get_cluster("0101-aaaa")


async def test_wrong_token_is_a_workspace_error_without_the_token(emu):
    workspace = await DatabricksWorkspace.connect(host=emu.host, token="dapi-wrong-secret", timeout_seconds=5)
    with pytest.raises(WorkspaceError) as caught:
        await workspace.get_cluster("0101-aaaa")
    assert "clusters.get" in str(caught.value) and "dapi-wrong-secret" not in str(caught.value)


async def test_unreachable_host_fails_within_seconds():
    started = time.monotonic()
    with pytest.raises(WorkspaceError) as caught:
        workspace = await DatabricksWorkspace.connect(
            host=f"http://127.0.0.1:{closed_port()}", token=TOKEN, timeout_seconds=1)
        await workspace.cluster_for_instance("i-driver1")
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "clusters.list" in message and "ConnectionError" in message and TOKEN not in message


async def test_slow_answer_hits_the_http_timeout(emu):
    emu.delay("/api/2.1/clusters/get", 3)
    workspace = await DatabricksWorkspace.connect(host=emu.host, token=TOKEN, timeout_seconds=1)
    started = time.monotonic()
    with pytest.raises(WorkspaceError, match="clusters.get"):
        await workspace.get_cluster("0101-aaaa")
    assert time.monotonic() - started < 8


# ---- SQL objects through the real SDK (for `esm-bot deploy`) -----------------------------------

async def test_queries_round_trip(emu, sdk):
    def scenario():
        created = sdk.queries.create(query=sql.CreateQueryRequestQuery(
            display_name="esm: container", query_text="SELECT 1", warehouse_id="wh1"))
        assert sdk.queries.get(created.id).query_text == "SELECT 1"
        sdk.queries.update(created.id, update_mask="query_text",
                           query=sql.UpdateQueryRequestQuery(query_text="SELECT 2"))
        fetched = sdk.queries.get(created.id)
        listed = [q.id for q in sdk.queries.list()]
        sdk.queries.delete(created.id)
        return fetched, listed, [q.id for q in sdk.queries.list()], sdk.queries.get(created.id)

    fetched, listed, after, trashed = await asyncio.to_thread(scenario)
    assert (fetched.display_name, fetched.query_text, fetched.warehouse_id) == ("esm: container", "SELECT 2", "wh1")
    assert listed == [fetched.id] and after == []
    assert trashed.lifecycle_state == sql.LifecycleState.TRASHED


async def test_alerts_round_trip(emu, sdk):
    condition = sql.AlertCondition(
        op=sql.AlertOperator.GREATER_THAN,
        operand=sql.AlertConditionOperand(column=sql.AlertOperandColumn(name="n")),
        threshold=sql.AlertConditionThreshold(value=sql.AlertOperandValue(double_value=0)))

    def scenario():
        query = sdk.queries.create(query=sql.CreateQueryRequestQuery(display_name="q", query_text="SELECT 1 AS n"))
        alert = sdk.alerts.create(alert=sql.CreateAlertRequestAlert(
            display_name="esm: container", query_id=query.id, condition=condition, seconds_to_retrigger=0))
        sdk.alerts.update(alert.id, update_mask="display_name",
                          alert=sql.UpdateAlertRequestAlert(display_name="esm: container v2"))
        fetched = sdk.alerts.get(alert.id)
        listed = [a.display_name for a in sdk.alerts.list()]
        sdk.alerts.delete(alert.id)
        return fetched, listed, list(sdk.alerts.list())

    fetched, listed, after = await asyncio.to_thread(scenario)
    assert fetched.display_name == "esm: container v2"
    assert fetched.condition.op == sql.AlertOperator.GREATER_THAN
    assert listed == ["esm: container v2"] and after == []


async def test_notification_destinations_round_trip_and_hide_secrets(emu, sdk):
    webhook = settings.GenericWebhookConfig(url="https://bot.example.com/webhooks/dbsql",
                                            username="esm", password="s3cret")

    def scenario():
        created = sdk.notification_destinations.create(
            display_name="esm-bot", config=settings.Config(generic_webhook=webhook))
        sdk.notification_destinations.update(created.id, display_name="esm-bot (prod)")
        fetched = sdk.notification_destinations.get(created.id)
        listed = list(sdk.notification_destinations.list())
        sdk.notification_destinations.delete(created.id)
        return fetched, listed, list(sdk.notification_destinations.list())

    fetched, listed, after = await asyncio.to_thread(scenario)
    assert fetched.display_name == "esm-bot (prod)"
    assert fetched.destination_type == settings.DestinationType.WEBHOOK
    assert fetched.config.generic_webhook.password is None and fetched.config.generic_webhook.password_set
    assert [d.display_name for d in listed] == ["esm-bot (prod)"] and after == []


async def test_sql_lists_follow_pagination(emu, sdk):
    emu.page_size = 2

    def scenario():
        for n in range(5):
            sdk.queries.create(query=sql.CreateQueryRequestQuery(display_name=f"q{n}"))
        return [q.display_name for q in sdk.queries.list()]

    assert await asyncio.to_thread(scenario) == [f"q{n}" for n in range(5)]
    assert len(emu.calls_to("/api/2.0/sql/queries", "GET")) == 3
