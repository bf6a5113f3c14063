"""Several workspaces, one bot: which Databricks workspace an event belongs to, and which Slack
channel a finding goes to.

The audit system table covers every workspace of the account, so the bot reads it once; what
differs per workspace is the API it enriches and acts through, and where findings are posted.
The file (ESM_WORKSPACES_FILE) is YAML:

    workspaces:
      - id: "1234567890123456"        # workspace_id as in system.access.audit
        name: prod
        host: https://dbc-prod.cloud.databricks.com
        profile: prod                 # optional: a Databricks config profile, or
        token_env: PROD_DATABRICKS_TOKEN   # optional: the variable holding a token
        channel: C0PRODSEC            # optional: this workspace's findings channel
    routes:                           # optional, first match wins, before the workspace channel
      - min_severity: critical
        channel: C0PAGER
      - workspace: "1234567890123456"
        min_severity: high
        channel: C0PRODHIGH
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.core.findings import Finding, Severity

_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class WorkspacesError(ValueError):
    """The workspaces file is malformed; the message names the entry and the field."""


@dataclass(frozen=True)
class WorkspaceConfig:
    id: str
    name: str
    host: str
    profile: str | None = None
    token_env: str | None = None
    channel: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.id})"


@dataclass(frozen=True)
class Route:
    channel: str
    workspace: str | None = None  # None: any workspace
    min_severity: Severity = Severity.INFO

    def matches(self, finding: Finding) -> bool:
        in_workspace = self.workspace is None or self.workspace == finding.first_event.workspace_id
        return in_workspace and finding.detection.severity >= self.min_severity


@dataclass(frozen=True)
class Workspaces:
    by_id: Mapping[str, WorkspaceConfig]
    routes: tuple[Route, ...] = ()

    def channel_for(self, finding: Finding, default: str) -> str:
        """The first matching route, else the workspace's channel, else the default channel."""
        for route in self.routes:
            if route.matches(finding):
                return route.channel
        workspace = self.by_id.get(finding.first_event.workspace_id)
        return workspace.channel if workspace is not None and workspace.channel else default

    def name_of(self, workspace_id: str) -> str | None:
        workspace = self.by_id.get(workspace_id)
        return workspace.name if workspace is not None else None


NO_WORKSPACES = Workspaces(by_id={})


def parse_workspaces(data: Any, source: str = "workspaces file") -> Workspaces:
    if not isinstance(data, Mapping):
        raise WorkspacesError(f"{source}: must be a mapping with 'workspaces' (and optionally 'routes')")
    unknown = set(data) - {"workspaces", "routes"}
    if unknown:
        raise WorkspacesError(f"{source}: unknown key(s) {sorted(unknown)}")
    workspaces = [_workspace(entry, i, source) for i, entry in enumerate(_list(data, "workspaces", source))]
    by_id: dict[str, WorkspaceConfig] = {}
    for workspace in workspaces:
        if workspace.id in by_id:
            raise WorkspacesError(f"{source}: workspace id {workspace.id} is listed twice")
        by_id[workspace.id] = workspace
    routes = tuple(_route(entry, i, source) for i, entry in enumerate(_list(data, "routes", source, required=False)))
    return Workspaces(by_id=by_id, routes=routes)


def _list(data: Mapping[str, Any], key: str, source: str, required: bool = True) -> Sequence[Any]:
    value = data.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise WorkspacesError(f"{source}: '{key}' must be a non-empty list")
    return value


def _workspace(entry: Any, index: int, source: str) -> WorkspaceConfig:
    where = f"{source}: workspaces[{index}]"
    if not isinstance(entry, Mapping):
        raise WorkspacesError(f"{where} must be a mapping")
    unknown = set(entry) - {"id", "name", "host", "profile", "token_env", "channel"}
    if unknown:
        raise WorkspacesError(f"{where}: unknown field(s) {sorted(unknown)}")
    workspace_id = str(entry.get("id", "")).strip()
    if not workspace_id.isdigit():
        raise WorkspacesError(f"{where}: 'id' must be the numeric workspace id")
    host = str(entry.get("host", "")).strip().rstrip("/")
    if not re.match(r"^https?://[^\s/]+$", host):
        raise WorkspacesError(f"{where}: 'host' must be the workspace URL, e.g. https://dbc-….cloud.databricks.com")
    token_env = entry.get("token_env")
    if token_env is not None and not _ENV_NAME.match(str(token_env)):
        raise WorkspacesError(f"{where}: 'token_env' must name an environment variable")
    return WorkspaceConfig(
        id=workspace_id,
        name=str(entry.get("name") or workspace_id),
        host=host,
        profile=entry.get("profile"),
        token_env=token_env,
        channel=_channel(entry.get("channel"), where, required=False),
    )


def _route(entry: Any, index: int, source: str) -> Route:
    where = f"{source}: routes[{index}]"
    if not isinstance(entry, Mapping):
        raise WorkspacesError(f"{where} must be a mapping")
    unknown = set(entry) - {"channel", "workspace", "min_severity"}
    if unknown:
        raise WorkspacesError(f"{where}: unknown field(s) {sorted(unknown)}")
    try:
        severity = Severity.parse(str(entry.get("min_severity", "info")))
    except ValueError as exc:
        raise WorkspacesError(f"{where}: {exc}") from None
    workspace = entry.get("workspace")
    return Route(
        channel=_channel(entry.get("channel"), where, required=True),  # type: ignore[arg-type]
        workspace=None if workspace is None else str(workspace),
        min_severity=severity,
    )


def _channel(value: Any, where: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _CHANNEL.match(value):
        raise WorkspacesError(f"{where}: 'channel' must be a Slack channel id (C…/G…)")
    return value
