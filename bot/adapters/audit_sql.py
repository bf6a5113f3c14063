"""The audit queries every SQL audit source runs: the warehouse and the embedded store differ
only in how a statement is executed (`_run`), so the queries and the row shapes live here once."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.core import queries
from bot.core.events import AuditRow, RowError, parse_audit_row
from bot.core.findings import ClusterContext, NotebookCommand
from bot.core.recent import RecentRow

log = logging.getLogger(__name__)


class SqlAuditSource:
    """AuditSource over any engine that runs the Databricks-dialect SQL of bot.core.queries."""

    async def _run(self, databricks_sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def _run_interactive(self, databricks_sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """A statement someone in Slack is waiting for (`/esm recent`, Recent on this host). An
        engine with a bounded pool runs these apart from a sync's reads, so an answer never
        queues behind a sync's enrichment; by default the same as `_run`."""
        return await self._run(databricks_sql, params)

    async def capsule8_since(self, since: datetime, limit: int, after_id: str = "") -> list[AuditRow]:
        params = {**queries.SYNC_PARAMS, "since": since, "after_id": after_id, "limit": limit}
        return rows_to_audit(await self._run(queries.CAPSULE8_SINCE, params))

    async def capsule8_ids_between(self, since: datetime, until: datetime, limit: int) -> list[str]:
        params = {**queries.SYNC_PARAMS, "since": since, "until": until, "limit": limit}
        return [str(r["event_id"]) for r in await self._run(queries.SWEEP_IDS, params)]

    async def capsule8_by_ids(self, event_ids: Sequence[str], since: datetime) -> list[AuditRow]:
        found: list[AuditRow] = []
        ids = list(event_ids)
        for start in range(0, len(ids), queries.SWEEP_CHUNK):
            chunk = ids[start : start + queries.SWEEP_CHUNK]
            params: dict[str, Any] = {**queries.SYNC_PARAMS, "since": since}
            params.update({f"id{i}": event_id for i, event_id in enumerate(chunk)})
            found += rows_to_audit(await self._run(queries.rows_by_id(len(chunk)), params))
        return sorted(found, key=lambda r: (r.event_time, r.event_id))

    async def capsule8_detection_since(self, detection: str, since: datetime, limit: int) -> list[AuditRow]:
        params = {**queries.CAPSULE8_PARAMS, "detection": detection, "since": since, "limit": limit}
        return rows_to_audit(await self._run(queries.CAPSULE8_DETECTION_SINCE, params))

    async def notebook_commands(
        self, cluster_id: str, start: datetime, end: datetime, limit: int
    ) -> list[NotebookCommand]:
        params = {"cluster_id": cluster_id, "start": start, "end": end, "limit": limit}
        return [command_from_row(r) for r in await self._run(queries.NOTEBOOK_COMMANDS, params)]

    async def cluster_for_instance(self, instance_id: str, at: datetime) -> tuple[str, bool] | None:
        params = {"instance_id": instance_id, "at": at, "earliest": at - timedelta(days=2)}
        rows = await self._run(queries.CLUSTER_FOR_INSTANCE, params)
        return (rows[0]["cluster_id"], bool(rows[0]["driver"])) if rows else None

    async def cluster_record(self, cluster_id: str) -> ClusterContext | None:
        rows = await self._run(queries.CLUSTER_RECORD, {"cluster_id": cluster_id})
        return cluster_from_record(rows[0]) if rows else None

    async def recent_summary(
        self,
        since: datetime,
        *,
        instance_id: str | None = None,
        detection: str | None = None,
        workspace_id: int | None = None,
        limit: int = 2000,
    ) -> list[RecentRow]:
        params = {
            **queries.CAPSULE8_PARAMS, "since": since, "instance": instance_id, "detection": detection,
            "workspace": workspace_id, "limit": limit,
        }
        return [recent_row(r) for r in await self._run_interactive(queries.RECENT_EVENTS, params)]


def rows_to_audit(records: list[dict[str, Any]]) -> list[AuditRow]:
    """Parse source rows; a row that cannot be parsed is logged by event id and skipped."""
    parsed = []
    for record in records:
        try:
            parsed.append(parse_audit_row(record))
        except RowError as exc:
            log.error("audit row %s skipped: %s", str(record.get("event_id"))[:80], exc)
    return parsed


def command_from_row(row: dict[str, Any]) -> NotebookCommand:
    status = row.get("status_code")
    return NotebookCommand(
        event_time=row["event_time"],
        user=row.get("user_email"),
        notebook_id=row.get("notebook_id"),
        command_text=row.get("command_text"),
        status=None if status is None else str(status),
    )


def recent_row(row: dict[str, Any]) -> RecentRow:
    instance, workspace = row.get("instance_id"), row.get("workspace_id")
    return RecentRow(
        detection=str(row["action_name"]),
        instance_id=None if instance is None else str(instance),
        workspace_id=None if workspace is None else str(workspace),
        events=int(row["event_count"]),
        first_seen=row["first_time"],
        last_seen=row["last_time"],
    )


def cluster_from_record(row: dict[str, Any]) -> ClusterContext:
    return ClusterContext(
        cluster_id=row["cluster_id"],
        name=row.get("cluster_name"),
        owner=row.get("owned_by"),
        access_mode=row.get("data_security_mode"),
        policy_id=row.get("policy_id"),
        state="DELETED" if row.get("delete_time") else None,
        runtime=row.get("dbr_version"),
        source="system tables",
    )
