"""Enrichment: instance id -> cluster, cluster details, notebook commands before the event.

Every lookup is cached per key with a TTL and bounded by a timeout; whatever fails becomes a
line in `Context.problems`, so a finding is always posted, with what is missing said plainly.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypeVar

from bot.observability import metrics
from bot.services.cache import TTLCache
from bot.core.events import AuditRow
from bot.core.findings import ClusterContext, Context, Finding, NotebookCommand
from bot.core.ports import AuditSource, Workspace

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_COMMANDS = 10
MAX_BATCH_COMMANDS = 500  # one cluster's commands over a whole page's window


class Enricher:
    def __init__(
        self,
        source: AuditSource,
        workspace_of: Callable[[str], Workspace | None],
        *,
        ttl: timedelta,
        commands_window: timedelta,
        timeout: float,
    ):
        self.source = source
        self.workspace_of = workspace_of  # an event's workspace id -> its API client, if any
        self.commands_window = commands_window
        self.timeout = timeout
        seconds = ttl.total_seconds()
        self._live_index: TTLCache[dict[str, ClusterContext]] = TTLCache(seconds)
        self._timeline: TTLCache[tuple[str, bool] | None] = TTLCache(seconds)
        self._clusters: TTLCache[ClusterContext | None] = TTLCache(seconds)

    async def _bounded(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        metrics.DATABRICKS_LOOKUPS.inc(lookup=what)
        try:
            return await asyncio.wait_for(call(), self.timeout)
        except asyncio.TimeoutError:
            metrics.DATABRICKS_ERRORS.inc(lookup=what)
            raise LookupFailed(f"{what} timed out after {self.timeout:g}s") from None
        except LookupFailed:
            raise
        except Exception as exc:  # adapters raise SourceError/WorkspaceError with the reason
            metrics.DATABRICKS_ERRORS.inc(lookup=what)
            raise LookupFailed(f"{what} failed: {exc}") from exc

    # -- instance -> cluster -----------------------------------------------------------

    async def cluster_of(self, row: AuditRow) -> tuple[ClusterContext | None, str | None]:
        """The cluster an event's host belongs to, and the reason when it cannot be told."""
        if row.cluster_id:
            return ClusterContext(cluster_id=row.cluster_id, source="event"), None
        instance = row.instance_id
        if not instance:
            return None, "the event has no instance id"
        problems = []
        for lookup in (self._from_live_clusters, self._from_node_timeline):
            try:
                found = await lookup(row, instance)
            except LookupFailed as exc:
                problems.append(str(exc))
                continue
            if found is not None:
                return found, None
        return None, "; ".join(problems) or f"no cluster found for instance {instance}"

    async def running_cluster_of(self, workspace_id: str, instance: str) -> ClusterContext | None:
        """The live cluster that host belongs to, or None when no live cluster has it (the
        cluster terminated, or the host was replaced). Raises LookupFailed when it cannot be told."""
        workspace = self.workspace_of(workspace_id)
        if workspace is None:
            raise LookupFailed(f"no Databricks client for workspace {workspace_id}")
        index = await self._live_index.get(
            f"{workspace_id}:all", lambda: self._bounded("cluster list", workspace.instance_index)
        )
        return index.get(instance)

    async def _from_live_clusters(self, row: AuditRow, instance: str) -> ClusterContext | None:
        workspace = self.workspace_of(row.workspace_id)
        if workspace is None:
            return None
        index = await self._live_index.get(
            f"{row.workspace_id}:all", lambda: self._bounded("cluster list", workspace.instance_index)
        )
        return index.get(instance)

    async def _from_node_timeline(self, row: AuditRow, instance: str) -> ClusterContext | None:
        found = await self._timeline.get(
            instance,
            lambda: self._bounded(
                "node timeline lookup", lambda: self.source.cluster_for_instance(instance, row.event_time)
            ),
        )
        if found is None:
            return None
        cluster_id, is_driver = found
        return ClusterContext(cluster_id=cluster_id, node_role="driver" if is_driver else "executor", source="system tables")

    # -- the context of a new finding --------------------------------------------------

    async def context_for(
        self, finding: Finding, known: ClusterContext | None, problem: str | None, batch: "CommandBatch | None" = None
    ) -> Context:
        problems = [f"cluster: {problem}"] if problem else []
        workspace_id = finding.first_event.workspace_id
        cluster = await self._cluster_details(workspace_id, known, problems) if known else None
        commands = await self._commands(finding, cluster, problems, batch)
        return Context(cluster=cluster, commands=tuple(commands), problems=tuple(problems))

    def command_batch(self, findings: Iterable[tuple[str, datetime]]) -> "CommandBatch":
        """One notebook-command query per cluster for a page of new findings (cluster id, time),
        instead of one per finding: a storm's findings share few clusters."""
        spans: dict[str, tuple[datetime, datetime]] = {}
        for cluster_id, at in findings:
            start, end = at - self.commands_window, at
            low, high = spans.get(cluster_id, (start, end))
            spans[cluster_id] = (min(low, start), max(high, end))
        return CommandBatch(self, spans)

    async def _cluster_details(self, workspace_id: str, known: ClusterContext, problems: list[str]) -> ClusterContext:
        if known.name is not None:  # the live cluster list already had the details
            return known
        try:
            details = await self._clusters.get(
                f"{workspace_id}:{known.cluster_id}", lambda: self._details(workspace_id, known.cluster_id)
            )
        except LookupFailed as exc:
            problems.append(f"cluster details: {exc}")
            return known
        if details is None:
            problems.append(f"cluster details: cluster {known.cluster_id} not found")
            return known
        return replace(details, node_role=known.node_role or details.node_role)

    async def _details(self, workspace_id: str, cluster_id: str) -> ClusterContext | None:
        workspace = self.workspace_of(workspace_id)
        if workspace is not None:
            found = await self._bounded("cluster get", lambda: workspace.get_cluster(cluster_id))
            if found is not None:
                return found
        return await self._bounded("cluster record lookup", lambda: self.source.cluster_record(cluster_id))

    async def _commands(
        self, finding: Finding, cluster: ClusterContext | None, problems: list[str], batch: "CommandBatch | None"
    ) -> list[NotebookCommand]:
        if cluster is None:
            problems.append("notebook commands: unknown without a cluster")
            return []
        end = finding.first_seen
        start = end - self.commands_window
        try:
            if batch is not None:
                found = await batch.commands(cluster.cluster_id, start, end)
                if found is not None:
                    return found
            return await self._bounded(
                "notebook command lookup",
                lambda: self.source.notebook_commands(cluster.cluster_id, start, end, MAX_COMMANDS),
            )
        except LookupFailed as exc:
            problems.append(f"notebook commands: {exc}")
            return []


class LookupFailed(RuntimeError):
    """An enrichment lookup failed or timed out; the message is shown on the finding."""


class CommandBatch:
    """The notebook commands of a page's clusters, each fetched once, sliced per finding."""

    def __init__(self, enricher: Enricher, spans: dict[str, tuple[datetime, datetime]]):
        self._enricher = enricher
        self._spans = spans
        self._fetches: dict[str, asyncio.Task[list[NotebookCommand]]] = {}

    async def commands(self, cluster_id: str, start: datetime, end: datetime) -> list[NotebookCommand] | None:
        """The finding's commands, newest first; None when the batch cannot answer for sure
        (not in the batch, or the cluster's window was cut by the row limit before `start`)."""
        if cluster_id not in self._spans:
            return None
        rows = await self._fetch(cluster_id)
        if len(rows) >= MAX_BATCH_COMMANDS and rows[-1].event_time > start:
            return None
        return [c for c in rows if start <= c.event_time <= end][:MAX_COMMANDS]

    def _fetch(self, cluster_id: str) -> asyncio.Task[list[NotebookCommand]]:
        if cluster_id not in self._fetches:
            low, high = self._spans[cluster_id]
            source = self._enricher.source
            self._fetches[cluster_id] = asyncio.ensure_future(self._enricher._bounded(
                "notebook command lookup",
                lambda: source.notebook_commands(cluster_id, low, high, MAX_BATCH_COMMANDS),
            ))
        return self._fetches[cluster_id]
