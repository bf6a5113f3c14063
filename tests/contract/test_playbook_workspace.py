"""The playbook's Databricks calls (#12) through DatabricksWorkspace and the real databricks-sdk,
against the Databricks emulator; the PagerDuty adapter against the Events API v2 stand-in."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service import iam

from bot.adapters.pagerduty import PagerDuty
from bot.adapters.workspace import DatabricksWorkspace
from bot.core.containment import Grant
from bot.core.ports import PagerError, WorkspaceError
from emulators.databricks import DatabricksEmulator
from emulators.pagerduty import TEST_ROUTING_KEY, PagerDutyEmulator

TOKEN = "dapi-contract-playbook-0123456789"
CLUSTER = "0101-aaaa"


@pytest.fixture
async def emu():
    async with DatabricksEmulator(token=TOKEN) as emulator:
        emulator.add_cluster(CLUSTER, name="shared", creator="bob@example.com", driver_instance_id="i-d1")
        emulator.user_groups.append("admins")
        yield emulator


@pytest.fixture
async def workspace(emu):
    return await DatabricksWorkspace.connect(host=emu.host, token=TOKEN, timeout_seconds=5)


def sdk(emu) -> WorkspaceClient:
    return WorkspaceClient(host=emu.host, token=TOKEN)


# ---- cluster permissions ---------------------------------------------------------------------


async def test_grants_are_replaced_exactly_and_inherited_ones_stay(emu, workspace):
    emu.groups.add("security-team")
    before, inherited = await workspace.cluster_grants(CLUSTER)
    new = [Grant("group_name", "security-team", "CAN_MANAGE"), Grant("user_name", "esm-bot@example.com", "CAN_MANAGE")]

    await workspace.replace_cluster_grants(CLUSTER, new)

    assert before == [Grant("user_name", "bob@example.com", "CAN_MANAGE")]
    assert inherited == [Grant("group_name", "admins", "CAN_MANAGE")]
    assert await workspace.cluster_grants(CLUSTER) == (sorted(new), inherited)
    [put] = emu.calls_to(f"/api/2.0/permissions/clusters/{CLUSTER}", "PUT")
    assert {"group_name": "security-team", "permission_level": "CAN_MANAGE"} in put.data["access_control_list"]


async def test_the_emulator_refuses_what_the_permissions_api_refuses(emu, workspace):
    with pytest.raises(WorkspaceError, match=r"Principal: GroupName\(no-such-group\) does not exist"):
        await workspace.replace_cluster_grants(CLUSTER, [Grant("group_name", "no-such-group", "CAN_MANAGE")])
    client = await asyncio.to_thread(sdk, emu)  # building a client probes the host: off the loop
    for entry, problem in (({"user_name": "bob@example.com", "permission_level": "CAN_OWN"}, "Invalid value 'CAN_OWN'"),
                           ({"user_name": "bob@example.com", "group_name": "users", "permission_level": "CAN_MANAGE"},
                            "exactly one of")):
        with pytest.raises(DatabricksError, match=problem):
            await asyncio.to_thread(client.api_client.do, "PUT", f"/api/2.0/permissions/clusters/{CLUSTER}",
                                    body={"access_control_list": [entry]})
    emu.permissions_read_only = True
    with pytest.raises(WorkspaceError, match="PERMISSION_DENIED"):
        await workspace.replace_cluster_grants(CLUSTER, [])
    assert emu.acl(CLUSTER)[0]["user_name"] == "bob@example.com", "nothing changed"


# ---- SCIM users ------------------------------------------------------------------------------


async def test_a_user_is_found_deactivated_and_reactivated(emu, workspace):
    emu.add_user("alice@example.com", groups=("data-eng",))
    found = await workspace.find_user("alice@example.com")
    assert found is not None and found["active"] and found["groups"] == ["data-eng"]

    await workspace.set_user_active(found["id"], False)
    assert (await workspace.find_user("alice@example.com"))["active"] is False
    await workspace.set_user_active(found["id"], True)
    assert emu.user_by_name("alice@example.com")["active"] is True
    assert await workspace.find_user("nobody@example.com") is None


async def test_the_sdk_trap_a_falsy_patch_value_is_dropped_and_the_emulator_refuses_it(emu):
    user = emu.add_user("alice@example.com")
    patch = iam.Patch(op=iam.PatchOp.REPLACE, path="active", value=False)  # as_dict() drops value=False

    with pytest.raises(DatabricksError, match="replace requires a value"):
        client = await asyncio.to_thread(sdk, emu)
        await asyncio.to_thread(client.users.patch, user["id"], operations=[patch],
                                schemas=[iam.PatchSchema.URN_IETF_PARAMS_SCIM_API_MESSAGES_2_0_PATCH_OP])
    assert user["active"] is True


async def test_only_a_workspace_admin_may_deactivate_users_or_manage_tokens(emu, workspace):
    user = emu.add_user("alice@example.com")
    emu.add_token("alice@example.com", comment="ci")
    emu.user_groups.remove("admins")

    with pytest.raises(WorkspaceError, match="PERMISSION_DENIED"):
        await workspace.set_user_active(user["id"], False)
    with pytest.raises(WorkspaceError, match="PERMISSION_DENIED"):
        await workspace.user_tokens("alice@example.com")
    assert user["active"] is True and len(emu.tokens) == 1


# ---- token management --------------------------------------------------------------------------


async def test_a_users_tokens_are_listed_with_their_use_and_deleted(emu, workspace):
    used = int(time.time() * 1000) - 3_600_000
    mine = emu.add_token("alice@example.com", comment="laptop", last_used_ms=used)
    emu.add_token("bob@example.com", comment="bob's")

    [token] = await workspace.user_tokens("alice@example.com")
    assert (token["token_id"], token["comment"]) == (mine["token_id"], "laptop")
    assert token["last_used"] == datetime.fromtimestamp(used / 1000, timezone.utc)

    await workspace.delete_token(token["token_id"])
    assert await workspace.user_tokens("alice@example.com") == []
    with pytest.raises(WorkspaceError, match="RESOURCE_DOES_NOT_EXIST"):
        await workspace.delete_token(token["token_id"])
    assert [t["comment"] for t in emu.tokens.values()] == ["bob's"]


# ---- cluster events and job runs --------------------------------------------------------------


async def test_cluster_events_are_read_across_pages_oldest_first(emu, workspace):
    now = datetime.now(timezone.utc)
    for i in range(120):
        emu.add_event(CLUSTER, "RESIZING", {"target_num_workers": i}, timestamp_ms=int((now.timestamp() - 600 + i) * 1000))

    events = await workspace.cluster_events(CLUSTER, now - timedelta(minutes=11), now, limit=1000)

    resizes = [e for e in events if e["type"] == "RESIZING"]
    assert len(resizes) == 120 and [e["time"] for e in events] == sorted(e["time"] for e in events)
    assert len(emu.calls_to("/api/2.1/clusters/events")) == 3  # 50 a page


async def test_job_runs_on_the_cluster_in_the_window_only(emu, workspace):
    now_ms = int(time.time() * 1000)
    emu.add_cluster("0202-other", name="other", driver_instance_id="i-d2")
    emu.add_run(1, CLUSTER, run_name="in", start_ms=now_ms - 10 * 60_000)
    emu.add_run(2, CLUSTER, run_name="too-old", start_ms=now_ms - 5 * 3_600_000)
    emu.add_run(3, "0202-other", run_name="elsewhere", start_ms=now_ms - 10 * 60_000)
    now = datetime.now(timezone.utc)

    runs = await workspace.runs_on_cluster(CLUSTER, now - timedelta(hours=2), now, limit=100)

    assert [r["run_name"] for r in runs] == ["in"]


# ---- PagerDuty ---------------------------------------------------------------------------------


@pytest.fixture
async def pagerduty():
    async with PagerDutyEmulator() as emulator:
        yield emulator


async def test_trigger_acknowledge_resolve_share_the_dedup_key(pagerduty):
    pager = PagerDuty(TEST_ROUTING_KEY, pagerduty.url, backoff=0.01)
    try:
        key = await pager.send("trigger", "finding-1", summary="x" * 2000, severity="critical", source="i-1",
                               links=[("Slack", "https://example.slack.com/archives/C1/p1")])
        await pager.send("acknowledge", "finding-1")
        await pager.send("resolve", "finding-1")
    finally:
        await pager.close()
    assert key == "finding-1"
    assert [(e["event_action"], e["dedup_key"]) for e in pagerduty.events] == [
        ("trigger", "finding-1"), ("acknowledge", "finding-1"), ("resolve", "finding-1")]
    assert len(pagerduty.events[0]["payload"]["summary"]) == 1024
    assert pagerduty.incidents["finding-1"].status == "resolved"


async def test_rate_limits_are_retried_and_refusals_explained_without_the_key(pagerduty):
    pager = PagerDuty(TEST_ROUTING_KEY, pagerduty.url, backoff=0.01)
    pagerduty.fail(429, times=2)
    try:
        await pager.send("trigger", "finding-2", summary="s", severity="error")
        assert len(pagerduty.events) == 1
        pagerduty.routing_key = "Y" * 32
        with pytest.raises(PagerError) as caught:
            await pager.send("trigger", "finding-3", summary="s", severity="error")
    finally:
        await pager.close()
    assert "Invalid routing key" in str(caught.value) and TEST_ROUTING_KEY not in str(caught.value)


async def test_the_stand_in_validates_events_as_the_events_api_does(pagerduty):
    cases = [
        ({"routing_key": "short", "event_action": "trigger"}, "routing_key"),
        ({"routing_key": TEST_ROUTING_KEY, "event_action": "escalate"}, "event_action"),
        ({"routing_key": TEST_ROUTING_KEY, "event_action": "acknowledge"}, "dedup_key"),
        ({"routing_key": TEST_ROUTING_KEY, "event_action": "trigger",
          "payload": {"summary": "s", "source": "h", "severity": "fatal"}}, "severity"),
        ({"routing_key": TEST_ROUTING_KEY, "event_action": "trigger",
          "payload": {"summary": "s" * 1025, "source": "h", "severity": "info"}}, "summary"),
    ]
    async with aiohttp.ClientSession() as session:
        for body, field in cases:
            async with session.post(pagerduty.url, json=body) as response:
                answer = await response.json()
                assert response.status == 400 and answer["status"] == "invalid event"
                assert any(field in error for error in answer["errors"]), (field, answer)
        ok = {"routing_key": TEST_ROUTING_KEY, "event_action": "trigger",
              "payload": {"summary": "s", "source": "h", "severity": "info"}}
        async with session.post(pagerduty.url, json=ok) as response:
            answer = await response.json()
            assert response.status == 202 and answer["status"] == "success" and answer["dedup_key"]
