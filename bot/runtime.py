"""Assemble the running bot from Settings: the adapters, the pipeline and the outbox worker."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from bot.adapters.duckdb_source import DuckDBSource
from bot.services.cache import TTLCache
from bot.core.authz import Authorizer, ReadAccess
from handlers import actions
from bot.services.home import HomeService
from bot.services.digest import DigestService
from bot.core.digest import DailyAt
from bot.services.dispatch import Dispatcher
from bot.adapters.slack import SlackChat
from bot.adapters.state import StateStore as SqlStateStore
from bot.adapters.state import StateStoreError
from bot.adapters.state.lakebase import LakebaseCredentials, workspace_client_factory
from bot.config import ConfigError, Settings
from bot.core.catalogue import Catalogue, load_catalogue
from bot.core.ports import AuditSource, StateStore
from bot.services.benign import BenignService
from bot.core.suppressions import load_benign_rules
from bot.services.enrich import Enricher
from bot.services.workspace_directory import WorkspaceDirectory
from bot.services.outbox import OutboxSettings, OutboxWorker
from bot.services.pipeline import Coalescer, Pipeline, SyncSettings
from bot.services.recent import RecentService
from bot.core.degraded import Degradation
from bot.services.watchdog import Watchdog

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    source: AuditSource
    store: StateStore
    workspaces: WorkspaceDirectory
    catalogue: Catalogue
    pipeline: Pipeline
    outbox: OutboxWorker
    chat: SlackChat
    syncs: Coalescer
    dispatcher: Dispatcher
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    recent: RecentService | None = None  # /esm recent and the "Recent on this host" button
    health: Degradation | None = None  # which part is failing, since when (degraded is loud)
    watchdog: Watchdog | None = None
    home: HomeService | None = None  # the App Home tab (views.publish)
    digest: DigestService | None = None  # ESM_DIGEST_AT: the daily digest

    def digest_service(self) -> DigestService:
        """The daily digest's builder: the scheduled one, or one for `/esm digest` (UTC days)."""
        if self.digest is not None:
            return self.digest
        return DigestService(self.store, self.chat, self.settings.slack_channel or "", DailyAt(0, 0), home=self.home)

    def trigger_sync(self, reason: str) -> str:
        log.debug("sync requested by %s", reason)
        return self.syncs.trigger()

    def start_background(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks.append(loop.create_task(self.outbox.run()))
        if self.watchdog is not None:
            self.tasks.append(loop.create_task(self.watchdog.run()))
        if self.digest is not None:
            self.tasks.append(loop.create_task(self.digest.run()))
        if self.settings.poll_interval is not None:
            self.tasks.append(loop.create_task(self._poll(self.settings.poll_interval.total_seconds())))

    async def _poll(self, seconds: float) -> None:
        """Sync on a timer too; it shares the one coalesced sync with the webhooks."""
        from bot.observability import correlation

        while True:
            with correlation.bound(correlation.new_id("poll-")):
                self.trigger_sync("poll")
            await asyncio.sleep(seconds)

    async def close(self) -> None:
        await self.syncs.close()
        if self.home is not None:
            await self.home.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.chat.close()
        await self.source.close()
        await self.store.close()


async def open_state_store(settings: Settings) -> StateStore:
    """ESM_STATE_URL (PostgreSQL, any number of replicas) if set, else the SQLite file ESM_STATE_PATH."""
    if settings.state_url is None:
        try:
            return await SqlStateStore.open(settings.state_path)
        except StateStoreError as exc:
            raise ConfigError(f"ESM_STATE_PATH: {exc}") from None
    if settings.outbox_lease.total_seconds() < 1:
        raise ConfigError("ESM_OUTBOX_LEASE: must be at least 1s")
    try:
        return await SqlStateStore.open(settings.state_url.reveal(), lease=settings.outbox_lease.total_seconds(),
                                        credentials=state_credentials(settings))
    except StateStoreError as exc:  # unreachable or refused: one line, the password masked
        raise ConfigError(f"ESM_STATE_URL: {exc}") from None


def state_credentials(settings: Settings) -> LakebaseCredentials | None:
    """ESM_STATE_LAKEBASE_INSTANCE: each new state-store connection's password is a Lakebase OAuth
    token from the Databricks SDK (DATABRICKS_HOST/DATABRICKS_TOKEN, or the SDK's own auth)."""
    if settings.state_lakebase_instance is None:
        return None
    if settings.state_url is None:
        raise ConfigError("ESM_STATE_LAKEBASE_INSTANCE needs ESM_STATE_URL (postgresql://<identity>@<instance host>/<db>)")
    token = settings.databricks_token.reveal() if settings.databricks_token else None
    client = workspace_client_factory(settings.databricks_host, token, settings.databricks_timeout)
    return LakebaseCredentials(settings.state_lakebase_instance, client)


def open_source(settings: Settings) -> AuditSource:
    path = settings.duckdb_path
    if path is not None:
        return DuckDBSource(path)
    return open_warehouse_source(settings)


def open_warehouse_source(settings: Settings) -> AuditSource:
    """ESM_AUDIT_SOURCE=databricks: the SQL warehouse over databricks-sql-connector. Without
    DATABRICKS_TOKEN the SDK's unified auth (OAuth M2M, Azure, profiles) supplies credentials."""
    from bot.adapters.databricks_sql import DatabricksSQLSource, warehouse_http_path

    if not settings.databricks_host:
        raise ConfigError("DATABRICKS_HOST is required for ESM_AUDIT_SOURCE=databricks but is not set")
    http_path = warehouse_http_path(settings.warehouse_http_path, settings.warehouse_id)
    if http_path is None:
        raise ConfigError(
            "ESM_WAREHOUSE_HTTP_PATH (or ESM_WAREHOUSE_ID) is required for ESM_AUDIT_SOURCE=databricks but is not set"
        )
    return DatabricksSQLSource(
        settings.databricks_host,
        http_path,
        token=settings.databricks_token.reveal() if settings.databricks_token else None,
        timeout=settings.warehouse_timeout,
        connection_uri=settings.warehouse_uri,
    )


async def build_runtime(settings: Settings) -> Runtime:
    settings.require("slack_bot_token", "slack_channel")
    catalogue = load_catalogue(settings.rules_dir / "detections.yml")
    source = open_source(settings)
    store = await open_state_store(settings)
    workspaces = await WorkspaceDirectory.connect(settings)
    enricher = Enricher(
        source,
        workspaces.workspace,
        ttl=settings.context_ttl,
        commands_window=settings.commands_window,
        timeout=settings.databricks_timeout,
    )
    chat = SlackChat(settings.secret("slack_bot_token"), settings.slack_api_url)
    health = Degradation(settings.degraded_after)
    registry = actions.discover()
    benign_rules = load_benign_rules(settings.rules_dir / "benign.yml")  # enabled entries only
    outbox = OutboxWorker(
        store, chat, OutboxSettings(
            workspaces.channel_for, workspaces.links_for, settings.slack_post_interval, actions.specs(registry),
            style=settings.message_style,
        ),
        health=health,
    )
    pipeline = Pipeline(
        source,
        store,
        store,
        enricher,
        catalogue,
        SyncSettings(
            settings.initial_lookback, settings.sync_overlap, settings.group_window, settings.thread_replies,
            clock_skew=settings.clock_skew, late_window=settings.late_window,
            late_sweep_interval=settings.late_sweep_interval, heartbeat_gap=settings.heartbeat_gap,
            storm_budget=settings.storm_budget.total_seconds(), post_interval=settings.slack_post_interval,
            details_reply=settings.message_style == "compact",
        ),
        on_outbox=outbox.kick,
        benign_rules=benign_rules,
        health=health,
        channel_for=workspaces.channel_for,
    )
    groups: TTLCache[set[str]] = TTLCache(ttl=60, error_ttl=10)

    def members_of(group: str) -> Awaitable[set[str]]:
        return groups.get(group, lambda: chat.usergroup_members(group))

    authorizer = Authorizer(settings.responders, members_of)
    read_access = ReadAccess.build(settings.responders, settings.readers, members_of)  # ESM_READERS (#11)
    recent = RecentService(source, store, catalogue)
    benign = BenignService(store, source, benign_rules, on_outbox=outbox.kick)
    dispatcher = Dispatcher(
        registry, store, authorizer, workspaces.workspace, settings.dry_run, outbox.kick,
        extras={"recent": recent, "benign": benign}, read_access=read_access,
    )
    home = HomeService(store, chat, pipeline, health)

    async def sync_then_home() -> Any:
        report = await pipeline.sync()
        home.after_sync()  # the Home of those who opened it lately: open findings, last sync
        return report

    return Runtime(
        settings, source, store, workspaces, catalogue, pipeline, outbox, chat, Coalescer(sync_then_home), dispatcher,
        recent=recent, health=health, watchdog=Watchdog(health, chat, settings.slack_channel), home=home,
        digest=(DigestService(store, chat, settings.slack_channel or "", settings.digest_at, home=home)
                if settings.digest_at is not None else None),
    )
