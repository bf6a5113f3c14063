"""`esm-bot doctor` against the Slack, Databricks and Thrift SQL emulators."""
from __future__ import annotations

import asyncio
import io
import logging
import re

import pytest

from bot.cli.main import main
from bot.config import load_settings
from bot.cli.doctor import run_doctor
from emulators.thrift_sql import ThriftSQLEmulator
from tests.e2e.conftest import CHANNEL, DBX_TOKEN, SIGNING_SECRET, SLACK_TOKEN, WEBHOOK_PASSWORD, Bot

DS_CLUSTER = "0101-000000-ds0001"
LINE = re.compile(r"^(ok|FAIL|skip)\s{2,}(\S.*?)\s{2,}(\S.*)$")


@pytest.fixture
def env(tmp_path, slack, dbx) -> dict[str, str]:
    bot = Bot(tmp_path, slack, dbx)  # the same environment the e2e bot runs with
    dbx.grant(DS_CLUSTER, "CAN_RESTART", user=dbx.user_name)
    dbx.user_groups.append("admins")  # a workspace admin: the playbook's SCIM and token checks pass (#12)
    return dict(bot.env)


async def doctor(env: dict[str, str]) -> tuple[int, dict[str, tuple[str, str]], str]:
    out = io.StringIO()
    code = await run_doctor(load_settings(env), out)
    text = out.getvalue()
    checks = {}
    for line in text.splitlines():
        found = LINE.match(line)
        if found:
            checks[found.group(2).strip()] = (found.group(1), found.group(3))
    return code, checks, text


async def test_everything_passes_against_the_emulators(env, dbx):
    code, checks, text = await doctor(env)
    assert code == 0, text
    for name in ("configuration", "settings for serve", "state store", "slack auth", "slack scopes", "slack channel",
                 "databricks auth", "read system.access.audit", "read system.compute.node_timeline",
                 "read system.compute.clusters", "terminate permission", "disable / re-enable user",
                 "revoke tokens"):
        assert checks[name][0] == "ok", (name, text)
    assert checks["warehouse"][0] == "skip"  # the embedded store
    assert checks["slack socket mode"][0] == "skip"
    assert "CAN_RESTART" in checks["terminate permission"][1] and "best effort" in checks["terminate permission"][1]
    assert text.rstrip().endswith("0 failed")
    for secret in (SLACK_TOKEN, DBX_TOKEN, WEBHOOK_PASSWORD, SIGNING_SECRET):
        assert secret not in text


async def test_failures_say_what_to_fix_and_exit_1(env, slack, dbx):
    dbx.user_groups.remove("admins")
    slack.scopes = [s for s in slack.scopes if s != "usergroups:read"]
    slack.not_member.add(CHANNEL)
    dbx.cluster_acls.clear()
    dbx.grant(DS_CLUSTER, "CAN_ATTACH_TO", user=dbx.user_name)
    env.pop("ESM_WEBHOOK_PASSWORD")
    code, checks, text = await doctor(env)
    assert code == 1
    assert checks["settings for serve"] == ("FAIL", "missing: ESM_WEBHOOK_PASSWORD")
    assert checks["slack scopes"][0] == "FAIL" and "usergroups:read (usergroups.users.list)" in checks["slack scopes"][1]
    assert checks["slack channel"] == ("FAIL", f"the bot is not a member of #{CHANNEL.lower()} ({CHANNEL})")
    assert "fix: invite it: /invite @esm-bot" in text
    assert checks["terminate permission"][0] == "FAIL" and "CAN_ATTACH_TO" in checks["terminate permission"][1]
    assert "fix: grant esm-bot@example.com CAN_RESTART" in text
    assert checks["disable / re-enable user"][0] == "FAIL" and checks["revoke tokens"][0] == "FAIL"  # no admin
    assert text.count("fix:") == 6


async def test_the_slack_workspace_is_suggested_when_unset_and_a_mismatch_fails(env, slack):
    """ESM_SLACK_TEAM_ID / ESM_SLACK_ENTERPRISE_ID (#11) against auth.test's team and org."""
    code, checks, text = await doctor(env)
    assert code == 0, text
    status, detail = checks["slack workspace"]
    assert status == "skip" and "set ESM_SLACK_TEAM_ID=T0ESM" in detail
    assert "slack enterprise" not in checks, "no Enterprise Grid org: nothing to say"

    code, checks, text = await doctor({**env, "ESM_SLACK_TEAM_ID": "T0ESM"})
    assert code == 0 and checks["slack workspace"][0] == "ok", text

    code, checks, text = await doctor({**env, "ESM_SLACK_TEAM_ID": "T0ELSEWHERE"})
    assert code == 1 and checks["slack workspace"][0] == "FAIL"
    assert "belongs to team T0ESM" in checks["slack workspace"][1] and "fix: set ESM_SLACK_TEAM_ID=T0ESM" in text

    slack.bot["enterprise_id"] = "E0ESMORG"
    code, checks, text = await doctor(env)
    assert code == 0 and checks["slack enterprise"][0] == "skip"
    assert "set ESM_SLACK_ENTERPRISE_ID=E0ESMORG" in checks["slack enterprise"][1]
    code, checks, text = await doctor({**env, "ESM_SLACK_ENTERPRISE_ID": "E0OTHERORG"})
    assert code == 1 and checks["slack enterprise"][0] == "FAIL" and "fix: set ESM_SLACK_ENTERPRISE_ID=E0ESMORG" in text
    slack.bot["team_id"] = "<!channel>"  # never printed: not a team id
    code, checks, text = await doctor(env)
    assert "<!channel>" not in text and checks["slack workspace"] == ("skip", "auth.test names no team id")


async def test_bad_credentials(env, slack, dbx):
    env["SLACK_BOT_TOKEN"] = "xoxb-wrong-token-123"
    env["DATABRICKS_TOKEN"] = "dapi-wrong-token-123"
    env["ESM_DATABRICKS_TIMEOUT"] = "1"
    code, checks, text = await doctor(env)
    assert code == 1
    assert checks["slack auth"] == ("FAIL", "auth.test: invalid_auth")
    assert "reinstall the app" in text
    assert checks["slack channel"][0] == "skip"
    assert checks["databricks auth"][0] == "FAIL"
    assert checks["terminate permission"][0] == "skip"
    assert "xoxb-wrong-token-123" not in text and "dapi-wrong-token-123" not in text


async def test_unreadable_permissions_are_explained_not_failed(env, dbx):
    dbx.permissions_forbidden = True
    code, checks, text = await doctor(env)
    assert code == 0, text
    status, detail = checks["terminate permission"]
    assert status == "skip" and "CAN_MANAGE" in detail


async def test_the_warehouse_and_system_tables_through_the_sql_source(env, tmp_path):
    with ThriftSQLEmulator(tmp_path / "audit.duckdb", token=DBX_TOKEN) as warehouse:
        env.update(ESM_AUDIT_SOURCE="databricks", ESM_WAREHOUSE_URI=warehouse.uri,
                   ESM_WAREHOUSE_HTTP_PATH=warehouse.http_path, ESM_WAREHOUSE_TIMEOUT="10")
        code, checks, text = await doctor(env)
        assert code == 0, text
        assert checks["warehouse"][0] == "ok" and warehouse.http_path in checks["warehouse"][1]
        assert any(sql.strip() == "SELECT 1 AS ok" for sql, _ in warehouse.statements)
        for table in ("system.access.audit", "system.compute.node_timeline", "system.compute.clusters"):
            assert checks[f"read {table}"][0] == "ok"

        warehouse.fail_next(1, "[WAREHOUSE_STOPPED] The SQL warehouse is stopped.")
        code, checks, text = await doctor(env)
        assert code == 1
        assert checks["warehouse"][0] == "FAIL" and "stopped" in checks["warehouse"][1]
        assert checks["read system.access.audit"] == ("skip", "warehouse unreachable")


async def test_socket_mode_token_is_checked(env, slack):
    env["SLACK_APP_TOKEN"] = "xapp-1-doctor-test"
    del env["SLACK_SIGNING_SECRET"]  # not needed over Socket Mode
    code, checks, text = await doctor(env)
    assert code == 0, text
    assert checks["slack socket mode"] == ("ok", "apps.connections.open issued a ws URL")
    assert "Socket Mode" in checks["configuration"][1]

    env["SLACK_APP_TOKEN"] = "xoxb-not-an-app-token"
    code, checks, text = await doctor(env)
    assert code == 1
    assert checks["slack socket mode"][0] == "FAIL" and "not_allowed_token_type" in checks["slack socket mode"][1]


async def test_the_cli_exit_codes(env, tmp_path, capsys):
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        assert await asyncio.to_thread(main, ["doctor"], env) == 0
        assert "0 failed" in capsys.readouterr().out
        assert await asyncio.to_thread(main, ["doctor"], {**env, "ESM_THREAD_REPLIES": "many"}) == 1
        out = capsys.readouterr().out
        assert out.startswith("FAIL  configuration") and "ESM_THREAD_REPLIES" in out
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


async def test_the_playbook_permissions_each_enabled_action_needs(env, dbx):
    from emulators.pagerduty import TEST_ROUTING_KEY

    env.update(ESM_QUARANTINE_PRINCIPALS="group:security-team", ESM_PAGERDUTY_ROUTING_KEY=TEST_ROUTING_KEY,
               ESM_PAGE_SEVERITY="critical")
    dbx.user_groups.remove("admins")
    code, checks, text = await doctor(env)  # the principal holds CAN_RESTART and is no admin

    assert code == 1
    assert checks["quarantine permission"][0] == "FAIL" and "needs CAN_MANAGE" in checks["quarantine permission"][1]
    assert checks["disable / re-enable user"][0] == "FAIL" and "not a workspace admin" in text
    assert checks["revoke tokens"][0] == "FAIL" and "token management refuses" in text
    assert checks["page on-call"][0] == "ok" and "critical" in checks["page on-call"][1]
    assert TEST_ROUTING_KEY not in text

    dbx.grant(DS_CLUSTER, "CAN_MANAGE", user=dbx.user_name)
    code, checks, text = await doctor(env)
    assert checks["quarantine permission"][0] == "ok" and "CAN_MANAGE" in checks["quarantine permission"][1]

    dbx.user_groups.append("admins")
    code, checks, text = await doctor(env)
    assert code == 0, text


async def test_the_playbook_actions_left_unconfigured_are_skipped_and_say_so(env, dbx):
    code, checks, text = await doctor(env)
    assert checks["quarantine permission"][0] == "skip" and "ESM_QUARANTINE_PRINCIPALS is unset" in text
    assert checks["page on-call"][0] == "skip" and "ESM_PAGERDUTY_ROUTING_KEY is unset" in text
