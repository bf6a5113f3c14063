"""Rows of the Databricks system tables as JSON-ready dicts: what `DuckDBSource.insert_rows`
(and `esm-bot load-events`, and the warehouse emulator's `load`) take for `system.access.audit`,
and what `insert_node_timeline` / `insert_clusters` take for `system.compute.*`.

The one builder of test and sample data: `esm-bot sample-events` and the demo (bot/cli/samples.py),
the end-to-end tests, the reliability suite and the benchmarks all build their rows here."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from bot.core.events import CAPSULE8_SERVICE

WORKSPACE_ID = 1234567890123456
NOTEBOOK_SERVICE = "notebook"
RUN_COMMAND = "runCommand"


def minutes_ago(minutes: float, now: datetime | None = None) -> datetime:
    """`minutes` before `now` (default: the current UTC time)."""
    return (now or datetime.now(timezone.utc)) - timedelta(minutes=minutes)


def capsule8_row(event_id: str, detection: str, instance: str, at: datetime, /, *,
                 workspace_id: int = WORKSPACE_ID, **params: Any) -> dict[str, Any]:
    """A Capsule8 detection (`action_name`) on `instance` at `at`; `params` are further
    request_params (containerId, processLineage, commandLine, filePath, ...)."""
    return {
        "event_id": event_id,
        "event_time": at.isoformat(),
        "workspace_id": workspace_id,
        "service_name": CAPSULE8_SERVICE,
        "action_name": detection,
        "request_params": {"instanceId": instance, **params},
        "response": {"status_code": 200},
        "user_identity": {"email": None, "subject_name": None},
    }


def notebook_command_row(event_id: str, cluster_id: str, at: datetime, user: str, text: str, /, *,
                         notebook_id: str = "nb-42", workspace_id: int = WORKSPACE_ID,
                         **params: Any) -> dict[str, Any]:
    """A notebook command (`runCommand`) `text` run by `user` on `cluster_id` at `at`; `params`
    are further request_params (executionTime, ...)."""
    return {
        "event_id": event_id,
        "event_time": at.isoformat(),
        "workspace_id": workspace_id,
        "service_name": NOTEBOOK_SERVICE,
        "action_name": RUN_COMMAND,
        "request_params": {"clusterId": cluster_id, "notebookId": notebook_id, "commandText": text, **params},
        "response": {"status_code": 200},
        "user_identity": {"email": user, "subject_name": None},
    }


def account_row(event_id: str, action: str, user: str, at: datetime, /, *, source_ip: str = "203.0.113.7",
                workspace_id: int = WORKSPACE_ID, **params: Any) -> dict[str, Any]:
    """An `accounts` event of `user` at `at`: a login (`login`, `tokenLogin`, …) or a personal
    access token creation (`generateDbToken`)."""
    return {
        "event_id": event_id,
        "event_time": at.isoformat(),
        "workspace_id": workspace_id,
        "service_name": "accounts",
        "action_name": action,
        "request_params": {"user": user, **params},
        "response": {"status_code": 200},
        "user_identity": {"email": user, "subject_name": None},
        "source_ip_address": source_ip,
    }


def node_timeline_row(cluster_id: str, instance_id: str, start: datetime, end: datetime | None, /, *,
                      driver: bool = True, node_type: str = "i3.xlarge", workspace_id: int | str = WORKSPACE_ID,
                      **columns: Any) -> dict[str, Any]:
    """One `system.compute.node_timeline` record: `instance_id` belonged to `cluster_id` from
    `start` to `end` (None: still running); `columns` are further columns (account_id, ...)."""
    return {**columns, "workspace_id": str(workspace_id), "cluster_id": cluster_id, "instance_id": instance_id,
            "start_time": start, "end_time": end, "driver": driver, "node_type": node_type}


def cluster_row(cluster_id: str, name: str, owner: str, created: datetime, changed: datetime, /, *,
                dbr_version: str = "14.3.x-scala2.12", data_security_mode: str = "NONE",
                policy_id: str | None = None, deleted: datetime | None = None,
                workspace_id: int | str = WORKSPACE_ID) -> dict[str, Any]:
    """One `system.compute.clusters` record (a cluster's state as of `changed`)."""
    return {"workspace_id": str(workspace_id), "cluster_id": cluster_id, "cluster_name": name,
            "owned_by": owner, "change_time": changed, "dbr_version": dbr_version,
            "data_security_mode": data_security_mode, "policy_id": policy_id, "delete_time": deleted,
            "create_time": created}
