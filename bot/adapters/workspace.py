"""Workspace over the synchronous databricks-sdk `WorkspaceClient`.

Every SDK call runs in `asyncio.to_thread` (the SDK blocks, and its list methods page lazily, so
iteration happens in the thread too). Authentication is the SDK's unified config: host/token
may be None and the SDK then reads its own environment or profile. Every failure becomes a
`WorkspaceError` naming the operation, never carrying the token.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import DatabricksError, NotFound
from databricks.sdk.service.compute import (
    ClusterAccessControlRequest, ClusterDetails, ClusterPermissionLevel, GetEventsOrder, ListClustersFilterBy, State,
)
from databricks.sdk.service.iam import Patch, PatchOp, PatchSchema
from databricks.sdk.service.jobs import BaseRun

from bot.core.containment import KINDS, Grant
from bot.core.findings import ClusterContext
from bot.core.ports import WorkspaceError

T = TypeVar("T")

# Clusters that can still own instances; terminated ones report no driver/executors, and a
# workspace keeps them listed for 30 days, so filtering them out keeps the scan short.
LIVE_STATES = [State.PENDING, State.RUNNING, State.RESTARTING, State.RESIZING, State.TERMINATING,
               State.ERROR, State.UNKNOWN]
RUNS_PAGE = 25  # the jobs API's maximum page size
MAX_RUNS_SCANNED = 500  # bound the pre-flight on a busy workspace
EVENTS_PAGE = 50  # clusters.events page (the API allows 500); the SDK follows next_page


class DatabricksWorkspace:
    def __init__(self, client: WorkspaceClient):
        self._client = client
        self.host: str = (client.config.host or "").rstrip("/")

    @classmethod
    async def connect(
        cls, host: str | None = None, token: str | None = None, timeout_seconds: float = 10, profile: str | None = None
    ) -> "DatabricksWorkspace":
        """Build the client off the loop: construction already probes the host over HTTP."""
        try:
            client = await asyncio.to_thread(_build_client, host, token, timeout_seconds, profile)
        except Exception as err:  # the SDK raises ValueError for config/auth problems
            raise WorkspaceError(_redact(f"connect to {host or 'the configured workspace'} failed: {err}",
                                         token)) from None
        return cls(client)

    # ---- Workspace protocol -----------------------------------------------------------------

    async def cluster_for_instance(self, instance_id: str) -> ClusterContext | None:
        return (await self.instance_index()).get(instance_id)

    async def instance_index(self) -> dict[str, ClusterContext]:
        """Every live instance id -> its cluster, from one paged clusters.list: the enricher
        caches this whole map, so a storm over many hosts costs one listing per TTL."""
        clusters = await self._call("clusters.list", self._live_clusters)
        return {instance: _context(cluster, node_role=role) for cluster in clusters for instance, role in _nodes(cluster)}

    async def get_cluster(self, cluster_id: str) -> ClusterContext | None:
        try:
            cluster = await self._call("clusters.get", self._client.clusters.get, cluster_id)
        except _Missing:
            return None
        return _context(cluster)

    # ---- response actions -------------------------------------------------------------------

    async def terminate_cluster(self, cluster_id: str) -> None:
        """clusters.delete TERMINATES (reversible). Its waiter is dropped on purpose: the caller
        reports "termination requested" and never blocks on the cluster stopping."""
        await self._call("clusters.delete", self._request_termination, cluster_id)

    async def active_runs_on_cluster(self, cluster_id: str) -> list[dict[str, Any]]:
        """Active job runs using this cluster, for a terminate pre-flight. Best effort: notebook
        sessions are not jobs and are not seen; at most MAX_RUNS_SCANNED active runs are read."""
        runs = await self._call("jobs.list_runs", self._active_runs)
        return [_run_summary(r) for r in runs if cluster_id in _run_cluster_ids(r)]

    # ---- containment and investigation (#12) ---------------------------------------------------

    async def whoami(self) -> str:
        user = await self._call("current_user.me", self._client.current_user.me)
        return user.user_name or ""

    async def cluster_grants(self, cluster_id: str) -> tuple[list[Grant], list[Grant]]:
        acl = await self._call("clusters.get_permissions", self._client.clusters.get_permissions, cluster_id)
        direct: set[Grant] = set()
        inherited: set[Grant] = set()
        for entry in acl.access_control_list or ():
            kind, name = _principal_of(entry)
            for permission in entry.all_permissions or ():
                grant = Grant(kind, name, _value(permission.permission_level) or "")
                (inherited if permission.inherited else direct).add(grant)
        return sorted(direct), sorted(inherited)

    async def replace_cluster_grants(self, cluster_id: str, grants: Sequence[Grant]) -> None:
        """PUT: the direct grants become exactly these (SDK set_permissions)."""
        acl = [ClusterAccessControlRequest(permission_level=ClusterPermissionLevel(g.level), **{g.kind: g.name})
               for g in grants]
        await self._call("clusters.set_permissions", self._set_permissions, cluster_id, acl)

    async def find_user(self, user_name: str) -> dict[str, Any] | None:
        users = await self._call("scim users.list", self._users_named, user_name)
        if not users:
            return None
        user = users[0]
        return {"id": user.id, "user_name": user.user_name, "active": bool(user.active),
                "groups": sorted(g.display for g in user.groups or () if g.display)}

    async def set_user_active(self, user_id: str, active: bool) -> None:
        # iam.Patch.as_dict() drops a falsy value, so `path="active", value=False` would reach the
        # server without a value: the path-less form carries it in an object that survives.
        patch = Patch(op=PatchOp.REPLACE, value={"active": active})
        await self._call("scim users.patch", self._patch_user, user_id, patch)

    async def user_tokens(self, user_name: str) -> list[dict[str, Any]]:
        infos = await self._call("token_management.list", self._tokens_of, user_name)
        return [{"token_id": t.token_id, "comment": t.comment or "", "created": _ms(t.creation_time),
                 "last_used": _ms(t.last_used_day), "expires": _ms(t.expiry_time)} for t in infos]

    async def delete_token(self, token_id: str) -> None:
        await self._call("token_management.delete", self._client.token_management.delete, token_id)

    async def cluster_events(self, cluster_id: str, start: datetime, end: datetime, limit: int) -> list[dict[str, Any]]:
        events = await self._call("clusters.events", self._events, cluster_id, start, end, limit)
        return [{"time": _ms(e.timestamp), "type": _value(e.type) or "", "details": _event_details(e)} for e in events]

    async def runs_on_cluster(self, cluster_id: str, start: datetime, end: datetime, limit: int) -> list[dict[str, Any]]:
        runs = await self._call("jobs.list_runs", self._runs_between, start, end, limit)
        return [{**_run_summary(r), "start": _ms(r.start_time)} for r in runs if cluster_id in _run_cluster_ids(r)]

    def _set_permissions(self, cluster_id: str, acl: list[ClusterAccessControlRequest]) -> None:
        self._client.clusters.set_permissions(cluster_id, access_control_list=acl)

    def _users_named(self, user_name: str) -> list[Any]:
        quoted = user_name.replace("\\", "\\\\").replace('"', '\\"')
        return _take(self._client.users.list(filter=f'userName eq "{quoted}"', count=10), 10)

    def _patch_user(self, user_id: str, patch: Patch) -> None:
        self._client.users.patch(user_id, operations=[patch], schemas=[PatchSchema.URN_IETF_PARAMS_SCIM_API_MESSAGES_2_0_PATCH_OP])

    def _tokens_of(self, user_name: str) -> list[Any]:
        return list(self._client.token_management.list(created_by_username=user_name))

    def _events(self, cluster_id: str, start: datetime, end: datetime, limit: int) -> list[Any]:
        events = self._client.clusters.events(cluster_id, start_time=_to_ms(start), end_time=_to_ms(end),
                                              order=GetEventsOrder.ASC, limit=EVENTS_PAGE)
        return _take(events, limit)  # the SDK follows next_page itself

    def _runs_between(self, start: datetime, end: datetime, limit: int) -> list[BaseRun]:
        runs = self._client.jobs.list_runs(start_time_from=_to_ms(start), start_time_to=_to_ms(end),
                                           expand_tasks=True, limit=RUNS_PAGE)
        return _take(runs, limit)

    # ---- internals --------------------------------------------------------------------------

    def _live_clusters(self) -> list[ClusterDetails]:
        return list(self._client.clusters.list(filter_by=ListClustersFilterBy(cluster_states=LIVE_STATES)))

    def _request_termination(self, cluster_id: str) -> None:
        self._client.clusters.delete(cluster_id=cluster_id)  # returns a waiter: never .result()

    def _active_runs(self) -> list[BaseRun]:
        runs = self._client.jobs.list_runs(active_only=True, expand_tasks=True, limit=RUNS_PAGE)
        return _take(runs, MAX_RUNS_SCANNED)

    async def _call(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(_in_thread, fn, *args)
        except NotFound as err:
            raise _Missing(self._describe(operation, err)) from err
        except Exception as err:
            raise WorkspaceError(self._describe(operation, err)) from err

    def _describe(self, operation: str, err: Exception) -> str:
        return _redact(f"Databricks {operation} failed: {_reason(err, self.host)}", self._client.config.token)


class _RetryDeadline(Exception):
    """The SDK's retry budget ran out. asyncio re-creates a TimeoutError that crosses a thread
    future and drops its cause (the last HTTP error), so it is re-raised as this in the thread."""


def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    except TimeoutError as err:
        raise _RetryDeadline(str(err)) from err.__cause__


class _Missing(WorkspaceError):
    """The API said the object does not exist (404, or the remapped legacy 400)."""


def _build_client(
    host: str | None, token: str | None, timeout_seconds: float, profile: str | None = None
) -> WorkspaceClient:
    # retry_timeout bounds the whole retry loop (default 300 s); http_timeout bounds one request
    # (WorkspaceClient's own keywords do not include the timeouts, so they go through a Config;
    # None values are skipped by Config, which then falls back to env/profile as usual)
    config = Config(
        host=host,
        token=token,
        profile=profile,
        retry_timeout_seconds=max(1, int(timeout_seconds)),
        http_timeout_seconds=timeout_seconds,
    )
    return WorkspaceClient(config=config)


def _reason(err: BaseException, host: str) -> str:
    if isinstance(err, DatabricksError):
        code = err.error_code or type(err).__name__
        return f"{code}: {err}"
    if isinstance(err, _RetryDeadline):
        last = f"; last error: {_reason(err.__cause__, host)}" if err.__cause__ is not None else ""
        return f"no usable answer from {host} before the retry deadline ({err}){last}"
    return f"{type(err).__name__}: {str(err)[:300]}"


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _nodes(cluster: ClusterDetails) -> Iterable[tuple[str, str]]:
    if cluster.driver is not None and cluster.driver.instance_id:
        yield cluster.driver.instance_id, "driver"
    for node in cluster.executors or ():
        if node.instance_id:
            yield node.instance_id, "executor"


def _context(cluster: ClusterDetails, node_role: str | None = None) -> ClusterContext:
    return ClusterContext(
        cluster_id=cluster.cluster_id or "",
        name=cluster.cluster_name,
        owner=cluster.creator_user_name,
        single_user=cluster.single_user_name,
        access_mode=_value(cluster.data_security_mode),
        policy_id=cluster.policy_id,
        state=_value(cluster.state),
        runtime=cluster.spark_version,
        node_role=node_role,
        source="api",
    )


def _value(enum_member: Any) -> str | None:
    return None if enum_member is None else str(getattr(enum_member, "value", enum_member))


def _principal_of(entry: Any) -> tuple[str, str]:
    for kind in KINDS:
        name = getattr(entry, kind, None)
        if name:
            return kind, str(name)
    return "group_name", str(getattr(entry, "display_name", "") or "")


def _ms(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value) / 1000, timezone.utc) if value else None


def _to_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _event_details(event: Any) -> str:
    details = event.details.as_dict() if event.details is not None else {}
    return ", ".join(f"{k}={v}" for k, v in sorted(details.items()))[:300]


def _take(items: Iterable[T], limit: int) -> list[T]:
    taken: list[T] = []
    for item in items:
        taken.append(item)
        if len(taken) >= limit:
            break
    return taken


def _run_cluster_ids(run: BaseRun) -> set[str]:
    """A run names its cluster at run level and per task (cluster_instance, existing_cluster_id)."""
    ids = {run.cluster_instance.cluster_id if run.cluster_instance else None,
           run.cluster_spec.existing_cluster_id if run.cluster_spec else None}
    for task in run.tasks or ():
        ids.add(task.cluster_instance.cluster_id if task.cluster_instance else None)
        ids.add(task.existing_cluster_id)
    ids.discard(None)
    return ids  # type: ignore[return-value]


def _run_summary(run: BaseRun) -> dict[str, Any]:
    state = run.state.life_cycle_state if run.state else None
    return {
        "run_id": run.run_id,
        "job_id": run.job_id,
        "run_name": run.run_name,
        "state": _value(state),
        "creator": run.creator_user_name,
        "url": run.run_page_url,
    }
