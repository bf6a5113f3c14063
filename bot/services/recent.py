"""The service behind `/esm recent` and the "Recent on this host" button: run the aggregate
query on the audit source, map hosts to clusters from the bot's own events table, group, render.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from bot.core.catalogue import Catalogue
from bot.core.ports import AuditSource
from bot.core.recent import (
    DEFAULT_WINDOW,
    ROW_LIMIT,
    RecentQuery,
    parse_recent,
    summarise,
)
from bot.render.recent import render_recent

Answer = tuple[str, list[dict[str, Any]]]


class ClusterIndex(Protocol):
    async def clusters_of_instances(self, instance_ids: Iterable[str]) -> dict[str, str]: ...


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class RecentService:
    def __init__(
        self,
        source: AuditSource,
        clusters: ClusterIndex,
        catalogue: Catalogue,
        *,
        now: Callable[[], datetime] = _utc_now,
        row_limit: int = ROW_LIMIT,
    ):
        self.source = source
        self.clusters = clusters
        self.catalogue = catalogue
        self.now = now
        self.row_limit = row_limit

    def parse(self, words: Sequence[str]) -> RecentQuery:
        """RecentArgumentError naming the wrong word."""
        return parse_recent(words, self.catalogue)

    async def answer(self, query: RecentQuery) -> Answer:
        rows = await self.source.recent_summary(
            self.now() - query.window,
            instance_id=query.instance_id,
            detection=query.detection,
            workspace_id=query.workspace_id,
            limit=self.row_limit,
        )
        cluster_of = await self.clusters.clusters_of_instances(r.instance_id for r in rows if r.instance_id)
        summary = summarise(rows, query, self.catalogue, cluster_of, row_limit=self.row_limit)
        return render_recent(summary, query)

    async def on_host(self, instance_id: str, window: timedelta = DEFAULT_WINDOW) -> Answer:
        return await self.answer(RecentQuery(window=window, instance_id=instance_id))
