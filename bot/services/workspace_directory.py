"""The Databricks workspaces one bot serves: the default one (DATABRICKS_HOST) and any listed in
ESM_WORKSPACES_FILE, each with its own client, links and findings channel."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from bot.config import Settings
from bot.core.findings import Finding
from bot.core.ports import WorkspaceApi
from bot.core.workspaces import WorkspaceConfig, Workspaces
from bot.render.blocks import Links

log = logging.getLogger(__name__)


@dataclass
class WorkspaceDirectory:
    default: WorkspaceApi | None
    listed: Mapping[str, WorkspaceApi | None]
    config: Workspaces
    default_channel: str
    default_url: str | None

    def workspace(self, workspace_id: str) -> WorkspaceApi | None:
        """The client for an event's workspace; unlisted workspaces use the default one."""
        if workspace_id in self.listed:
            return self.listed[workspace_id]
        return self.default

    def channel_for(self, finding: Finding) -> str:
        return self.config.channel_for(finding, self.default_channel)

    def links_for(self, finding: Finding) -> Links:
        workspace_id = finding.first_event.workspace_id
        listed = self.config.by_id.get(workspace_id)
        url = listed.host if listed is not None else self.default_url
        return Links(workspace_url=url, workspace_name=self.config.name_of(workspace_id))

    @classmethod
    async def connect(cls, settings: Settings) -> "WorkspaceDirectory":
        configs = list(settings.workspaces.by_id.values())
        default, *listed = await asyncio.gather(
            _connect_default(settings), *(_connect_listed(settings, c) for c in configs)
        )
        default_url = settings.workspace_url or (default.host if default is not None else None)
        return cls(
            default=default,
            listed={c.id: client for c, client in zip(configs, listed)},
            config=settings.workspaces,
            default_channel=settings.slack_channel or "",
            default_url=default_url,
        )


async def _connect_default(settings: Settings) -> WorkspaceApi | None:
    """Only with DATABRICKS_HOST set; the SDK's unified auth finds the credentials itself."""
    if not settings.databricks_host:
        return None
    token = settings.databricks_token.reveal() if settings.databricks_token else None
    return await _connect(settings.databricks_host, token, None, settings.databricks_timeout)


async def _connect_listed(settings: Settings, config: WorkspaceConfig) -> WorkspaceApi | None:
    token = settings.workspace_tokens.get(config.id)
    return await _connect(config.host, token.reveal() if token else None, config.profile, settings.databricks_timeout)


async def _connect(host: str, token: str | None, profile: str | None, timeout: float) -> WorkspaceApi | None:
    from bot.adapters.workspace import DatabricksWorkspace

    try:
        return await DatabricksWorkspace.connect(host, token, timeout_seconds=timeout, profile=profile)
    except Exception as exc:  # findings still post; their context says why it is missing
        log.error("Databricks workspace %s unavailable, cluster context will come from system tables: %s", host, exc)
        return None
