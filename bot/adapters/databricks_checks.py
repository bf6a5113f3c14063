"""Read-only Databricks probes for `/readyz` and `esm-bot doctor`, over the SDK's unified auth:
who am I (SCIM Me), can I list clusters, and what does a cluster's access control list say
about me. Every call runs off the event loop with the SDK's retry budget bounded by `timeout`.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError, PermissionDenied

from bot.adapters.workspace import _build_client, _redact

T = TypeVar("T")
TERMINATE_LEVELS = {"CAN_RESTART", "CAN_MANAGE"}  # clusters.delete (terminate) needs one of these
MANAGE_LEVELS = {"CAN_MANAGE"}  # changing a cluster's permissions (Quarantine, #12) needs this
ADMINS_GROUP = "admins"  # workspace admins: SCIM user changes and other users' tokens (#12)


class DatabricksProbeError(RuntimeError):
    def __init__(self, message: str, forbidden: bool = False):
        super().__init__(message)
        self.forbidden = forbidden


@dataclass(frozen=True)
class Identity:
    user_name: str
    groups: frozenset[str]


@dataclass(frozen=True)
class ClusterAccess:
    cluster_id: str
    levels: frozenset[str]  # the levels this identity holds, directly or through its groups


class DatabricksProbe:
    def __init__(self, host: str | None, token: str | None, timeout: float = 5.0):
        self.host = host
        self._token = token
        self._timeout = timeout
        self._client: WorkspaceClient | None = None

    async def me(self) -> Identity:
        user = await self._call("current_user.me", lambda c: c.current_user.me())
        groups = frozenset(g.display for g in user.groups or () if g.display)
        return Identity(user.user_name or "", groups)

    async def clusters(self, limit: int = 5) -> list[tuple[str, str]]:
        """Up to `limit` (cluster id, name) pairs from clusters.list."""
        def first(client: WorkspaceClient) -> list[tuple[str, str]]:
            found = []
            for cluster in client.clusters.list(page_size=limit):
                found.append((cluster.cluster_id or "", cluster.cluster_name or ""))
                if len(found) >= limit:
                    break
            return found

        return await self._call("clusters.list", first)

    async def cluster_access(self, cluster_id: str, who: Identity) -> ClusterAccess:
        perms = await self._call("permissions/clusters", lambda c: c.clusters.get_permissions(cluster_id))
        levels: set[str] = set()
        for entry in perms.access_control_list or ():
            principal = entry.user_name or entry.service_principal_name
            if principal == who.user_name or (entry.group_name and entry.group_name in who.groups):
                levels.update(_level(p.permission_level) for p in entry.all_permissions or ())
        return ClusterAccess(cluster_id, frozenset(levels))

    async def tokens_readable(self) -> int:
        """How many tokens token management lists (only workspace admins may list them)."""
        def count(client: WorkspaceClient) -> int:
            return sum(1 for _ in client.token_management.list())
        return await self._call("token-management/tokens", count)

    async def _call(self, operation: str, fn: Callable[[WorkspaceClient], T]) -> T:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._run, fn), self._timeout + 2)
        except asyncio.TimeoutError:
            raise DatabricksProbeError(f"{operation}: no answer within {self._timeout:g}s") from None
        except PermissionDenied as exc:
            raise DatabricksProbeError(self._text(f"{operation}: {exc.error_code or 'PERMISSION_DENIED'}: {exc}"),
                                       forbidden=True) from None
        except DatabricksError as exc:
            raise DatabricksProbeError(self._text(f"{operation}: {exc.error_code or type(exc).__name__}: {exc}"),
                                       forbidden=getattr(exc, "error_code", "") in ("PERMISSION_DENIED", "UNAUTHORIZED")) from None
        except Exception as exc:  # config errors (ValueError), connection errors, retry deadline
            raise DatabricksProbeError(self._text(f"{operation}: {type(exc).__name__}: {str(exc)[:300]}")) from None

    def _run(self, fn: Callable[[WorkspaceClient], T]) -> T:
        if self._client is None:  # building a client probes the host: off the loop, once
            self._client = _build_client(self.host, self._token, self._timeout)
        return fn(self._client)

    def _text(self, text: str) -> str:
        return _redact(text, self._token)


def _level(value: Any) -> str:
    return str(getattr(value, "value", value) or "")
