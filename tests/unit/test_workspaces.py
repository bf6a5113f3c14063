"""Several workspaces: parsing the workspaces file and routing findings to channels."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bot.core.events import parse_audit_row
from bot.core.findings import Detection, Finding, Severity
from bot.core.workspaces import Route, WorkspacesError, parse_workspaces

FILE = {
    "workspaces": [
        {"id": "111", "name": "prod", "host": "https://dbc-prod.cloud.databricks.com/", "channel": "C0PROD",
         "token_env": "PROD_DATABRICKS_TOKEN"},
        {"id": "222", "name": "dev", "host": "https://dbc-dev.cloud.databricks.com", "profile": "dev"},
    ],
    "routes": [
        {"min_severity": "critical", "channel": "C0PAGER"},
        {"workspace": "111", "min_severity": "high", "channel": "C0PRODHIGH"},
    ],
}


def finding(workspace: str, severity: Severity) -> Finding:
    row = parse_audit_row({"event_id": "e", "event_time": "2026-01-01T00:00:00Z", "workspace_id": workspace,
                           "service_name": "capsule8-alerts-dataplane", "action_name": "X"})
    detection = Detection("X", "Kernel Related Events", severity, "d", "g")
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return Finding(key="k", detection=detection, first_event=row, first_seen=at, last_seen=at)


@pytest.mark.parametrize(
    ("workspace", "severity", "channel"),
    [
        ("111", Severity.CRITICAL, "C0PAGER"),  # the first route wins over everything
        ("222", Severity.CRITICAL, "C0PAGER"),
        ("111", Severity.HIGH, "C0PRODHIGH"),
        ("111", Severity.MEDIUM, "C0PROD"),  # no route: the workspace's own channel
        ("222", Severity.HIGH, "C0DEFAULT"),  # no route, no workspace channel: the default
        ("999", Severity.LOW, "C0DEFAULT"),  # a workspace the file does not list
    ],
)
def test_findings_go_to_the_first_matching_route_then_the_workspace_channel_then_the_default(workspace, severity, channel):
    assert parse_workspaces(FILE).channel_for(finding(workspace, severity), "C0DEFAULT") == channel


def test_entries_are_normalised():
    workspaces = parse_workspaces(FILE)
    prod = workspaces.by_id["111"]
    assert (prod.host, prod.token_env, prod.label) == ("https://dbc-prod.cloud.databricks.com", "PROD_DATABRICKS_TOKEN", "prod (111)")
    assert workspaces.name_of("222") == "dev" and workspaces.name_of("999") is None
    assert workspaces.routes[0] == Route(channel="C0PAGER", workspace=None, min_severity=Severity.CRITICAL)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a mapping"),
        ({"workspaces": []}, "'workspaces' must be a non-empty list"),
        ({"workspaces": [{"id": "abc", "host": "https://x"}]}, "workspaces[0]: 'id' must be the numeric"),
        ({"workspaces": [{"id": "1", "host": "dbc-x"}]}, "workspaces[0]: 'host' must be the workspace URL"),
        ({"workspaces": [{"id": "1", "host": "https://x", "channel": "#sec"}]}, "workspaces[0]: 'channel'"),
        ({"workspaces": [{"id": "1", "host": "https://x", "token_env": "not a name"}]}, "'token_env'"),
        ({"workspaces": [{"id": "1", "host": "https://x", "hosts": "typo"}]}, "unknown field(s) ['hosts']"),
        ({"workspaces": [{"id": "1", "host": "https://x"}, {"id": "1", "host": "https://y"}]}, "listed twice"),
        ({"workspaces": [{"id": "1", "host": "https://x"}], "routes": [{"channel": "C0X", "min_severity": "huge"}]},
         "routes[0]: unknown severity"),
        ({"workspaces": [{"id": "1", "host": "https://x"}], "routes": [{"min_severity": "high"}]}, "routes[0]: 'channel'"),
        ({"workspaces": [{"id": "1", "host": "https://x"}], "extra": 1}, "unknown key(s) ['extra']"),
    ],
)
def test_a_malformed_file_names_the_entry_and_the_field(data, message):
    with pytest.raises(WorkspacesError, match=None) as caught:
        parse_workspaces(data)
    assert message in str(caught.value)


def test_settings_read_each_workspaces_token_from_the_variable_it_names(tmp_path):
    from bot.config import ConfigError, load_settings

    path = tmp_path / "workspaces.yml"
    path.write_text("workspaces:\n  - {id: '111', name: prod, host: 'https://dbc-prod.example.com', token_env: PROD_TOKEN}\n")
    settings = load_settings({"ESM_WORKSPACES_FILE": str(path), "PROD_TOKEN": "dapi-prod-secret"})
    assert settings.workspace_tokens["111"].reveal() == "dapi-prod-secret"
    assert "dapi-prod-secret" not in repr(settings)

    with pytest.raises(ConfigError, match="PROD_TOKEN .*prod \\(111\\).* is not set"):
        load_settings({"ESM_WORKSPACES_FILE": str(path)})
    path.write_text("workspaces: nope\n")
    with pytest.raises(ConfigError, match="^ESM_WORKSPACES_FILE: .*'workspaces' must be a non-empty list"):
        load_settings({"ESM_WORKSPACES_FILE": str(path)})
    with pytest.raises(ConfigError, match="^ESM_WORKSPACES_FILE: cannot read"):
        load_settings({"ESM_WORKSPACES_FILE": str(tmp_path / "missing.yml")})
