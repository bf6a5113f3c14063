"""A local Databricks workspace REST emulator for contract tests.

The real `databricks.sdk.WorkspaceClient` talks plain HTTP to it. Paths and JSON shapes follow
what databricks-sdk 0.16x sends and parses (clusters 2.1, jobs 2.2, SQL queries and legacy
alerts 2.0, AlertsV2 `/api/2.0/alerts`, notification destinations 2.0). State lives in memory;
every request is recorded; faults and delays can be injected per path fragment.

As strict as the real service: the bodies of the SQL objects and destinations are checked
against the SDK's own dataclasses and enums (emulators/sdk_schema.py: a missing required field
or an unknown enum value is 400 INVALID_PARAMETER_VALUE), a display name another live object of
the same API already has is 400 RESOURCE_ALREADY_EXISTS (the APIs fail on a conflict unless asked
to resolve it), and a webhook destination's URL must be HTTPS. `alerts_v2_api` reproduces a
workspace without AlertsV2: "missing" answers 404 ENDPOINT_NOT_FOUND, "disabled" 400
FEATURE_DISABLED.

It runs on the caller's event loop: drive the (synchronous) SDK from `asyncio.to_thread`,
otherwise the SDK blocks the loop that is supposed to answer it.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from aiohttp import web
from databricks.sdk.service import compute as sdk_compute, iam as sdk_iam, settings as sdk_settings, sql as sdk_sql

from emulators.sdk_schema import first_problem

Json = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[Json]]

ACTIVE_RUN_STATES = {"QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY"}
# Fields of a notification destination's config that the real API never returns, only `<f>_set`.
SECRET_CONFIG_FIELDS = {"url", "username", "password", "oauth_token", "integration_key", "channel_id",
                        "app_id", "auth_secret"}
DESTINATION_TYPES = {"generic_webhook": "WEBHOOK", "email": "EMAIL", "slack": "SLACK",
                     "microsoft_teams": "MICROSOFT_TEAMS", "pagerduty": "PAGERDUTY"}


class Call(NamedTuple):
    method: str
    path: str
    data: Json  # the query string for GET/DELETE, the JSON body otherwise


@dataclass
class _Fault:
    fragment: str
    status: int
    remaining: int | None  # None: every matching request, until clear_faults()
    retry_after: int | None


@dataclass
class _Delay:
    fragment: str
    seconds: float
    remaining: int | None


class ApiError(Exception):
    """Raised by handlers; rendered as a Databricks error body."""

    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


def _error_response(status: int, error_code: str, message: str, headers: dict | None = None) -> web.Response:
    body = {"error_code": error_code, "message": message}
    return web.json_response(body, status=status, headers=headers)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"{kind} {ident} does not exist.")


def _page(items: list, token: str | None, size: int) -> tuple[list, str | None]:
    """Offset pagination behind an opaque-looking token."""
    start = int(token) if token and token.isdigit() else 0
    chunk = items[start:start + size]
    more = start + size < len(items)
    return chunk, (str(start + size) if more else None)


class DatabricksEmulator:
    """Start with `async with DatabricksEmulator(token="dapi-test") as emu:`; use `emu.host`."""

    def __init__(
        self,
        *,
        token: str | None = None,
        page_size: int = 100,
        workspace_id: int = 1234567890123456,
        user_name: str = "esm-bot@example.com",
        termination_seconds: float = 0.0,
        serve_host_metadata: bool = True,
        legacy_not_found: bool = False,
        alerts_v2_api: str = "enabled",
    ):
        self.token = token  # None: accept any (or no) credentials
        self.page_size = page_size
        self.workspace_id = workspace_id
        self.user_name = user_name
        # 0 -> delete moves a cluster straight to TERMINATED; > 0 -> TERMINATING for that long
        self.termination_seconds = termination_seconds
        self.serve_host_metadata = serve_host_metadata  # False -> 404 like an older workspace
        # The real clusters/get has answered an unknown id with 400 INVALID_PARAMETER_VALUE
        # "Cluster ... does not exist" (the SDK remaps it); True reproduces that shape.
        self.legacy_not_found = legacy_not_found
        if alerts_v2_api not in ("enabled", "missing", "disabled"):
            raise ValueError("alerts_v2_api: enabled, missing or disabled")
        self.alerts_v2_api = alerts_v2_api
        self.clusters: dict[str, Json] = {}
        self.cluster_events: dict[str, list[Json]] = {}
        self.runs: dict[int, Json] = {}
        self.queries: dict[str, Json] = {}
        self.alerts: dict[str, Json] = {}  # legacy: /api/2.0/sql/alerts
        self.v2_alerts: dict[str, Json] = {}  # AlertsV2: /api/2.0/alerts
        self.destinations: dict[str, Json] = {}  # stored unmasked; responses are masked
        self.user_groups: list[str] = ["users"]  # the caller's groups, as SCIM Me lists them
        # cluster id -> access control list; unset: the creator and the admins group hold CAN_MANAGE
        self.cluster_acls: dict[str, list[Json]] = {}
        self.permissions_forbidden = False  # True: reading cluster permissions answers 403
        self.permissions_read_only = False  # True: reading works, changing answers 403
        # SCIM: id -> user; groups and service principals (application ids) that ACLs may name
        self.users: dict[str, Json] = {}
        self.groups: set[str] = {"admins", "users"}
        self.service_principals: set[str] = set()
        self.users_forbidden = False  # True: SCIM Users answers 403 even to read
        self.tokens: dict[str, Json] = {}  # token id -> TokenInfo
        self.tokens_forbidden = False  # True: token management answers 403
        # As the real workspace: patching SCIM users and token management need the caller in the
        # admins group (`user_groups`)
        self.add_user(user_name)
        # Lakebase: database instance names, and the OAuth token POST /api/2.0/database/credentials
        # issues now (change it to rotate) with its lifetime in seconds
        self.database_instances: set[str] = set()
        self.database_token = "lakebase-token-0"
        self.database_token_ttl = 3600.0
        # when set: called for each credential request; its answer is the token issued (a test's
        # Lakebase stand-in rotates the PostgreSQL password there)
        self.issue_database_token: Callable[[], str] | None = None
        self.calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._delays: list[_Delay] = []
        self._ip_counter = itertools.count(10)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> "DatabricksEmulator":
        app = web.Application(middlewares=[self._middleware])
        self._add_routes(app.router)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "DatabricksEmulator":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def host(self) -> str:
        if self.port is None:
            raise RuntimeError("emulator not started")
        return f"http://127.0.0.1:{self.port}"

    # ---- recording and fault injection -----------------------------------------------------

    def calls_to(self, path_fragment: str, method: str | None = None) -> list[Call]:
        return [c for c in self.calls
                if path_fragment in c.path and (method is None or c.method == method.upper())]

    def fail(self, path_fragment: str, status: int = 500, times: int | None = 1, *,
             retry_after: int | None = 1) -> None:
        """The next `times` requests whose path contains the fragment get `status` (all of them
        when times is None, until clear_faults()). 429/503 carry `Retry-After` (the SDK retries
        those); pass retry_after=None to omit it."""
        self._faults.append(_Fault(path_fragment, status, times, retry_after))

    def clear_faults(self) -> None:
        self._faults.clear()
        self._delays.clear()

    def delay(self, path_fragment: str, seconds: float, times: int | None = None) -> None:
        """Hold matching requests for `seconds` before answering (all of them unless `times`)."""
        self._delays.append(_Delay(path_fragment, seconds, times))

    # ---- seeding ----------------------------------------------------------------------------

    def add_cluster(
        self,
        cluster_id: str,
        *,
        name: str | None = None,
        creator: str = "owner@example.com",
        single_user: str | None = None,
        data_security_mode: str = "USER_ISOLATION",
        policy_id: str | None = None,
        state: str = "RUNNING",
        spark_version: str = "15.4.x-scala2.12",
        driver_instance_id: str | None = None,
        executor_instance_ids: list[str] | tuple[str, ...] = (),
        tags: dict[str, str] | None = None,
        node_type_id: str = "i3.xlarge",
    ) -> Json:
        name = name or f"cluster-{cluster_id}"
        started = _now_ms() - 3_600_000
        cluster = {
            "cluster_id": cluster_id,
            "cluster_name": name,
            "spark_version": spark_version,
            "effective_spark_version": spark_version,
            "node_type_id": node_type_id,
            "driver_node_type_id": node_type_id,
            "num_workers": len(executor_instance_ids),
            "autotermination_minutes": 120,
            "enable_elastic_disk": True,
            "enable_local_disk_encryption": False,
            "creator_user_name": creator,
            "data_security_mode": data_security_mode,
            "runtime_engine": "STANDARD",
            "cluster_source": "UI",
            "state": state,
            "state_message": "",
            "start_time": started,
            "last_state_loss_time": 0,
            "last_restarted_time": started,
            "custom_tags": dict(tags or {}),
            "default_tags": {"Vendor": "Databricks", "Creator": creator, "ClusterName": name,
                             "ClusterId": cluster_id},
            "aws_attributes": {"first_on_demand": 1, "availability": "SPOT_WITH_FALLBACK",
                               "zone_id": "us-west-2a", "spot_bid_price_percent": 100},
            "spark_conf": {},
            "spark_env_vars": {},
            "disk_spec": {},
            "init_scripts_safe_mode": False,
            "spark_context_id": 4_000_000_000_000_000_000 + len(self.clusters),
            "jdbc_port": 10000,
            "cluster_memory_mb": 31232 * (1 + len(executor_instance_ids)),
            "cluster_cores": 4.0 * (1 + len(executor_instance_ids)),
        }
        self.add_user(creator)
        if single_user is not None:
            cluster["single_user_name"] = single_user
            self.add_user(single_user)
        if policy_id is not None:
            cluster["policy_id"] = policy_id
        if state not in ("TERMINATED", "TERMINATING") and driver_instance_id:
            cluster["driver"] = self._node(driver_instance_id, started)
        if state not in ("TERMINATED", "TERMINATING") and executor_instance_ids:
            cluster["executors"] = [self._node(i, started) for i in executor_instance_ids]
        self.clusters[cluster_id] = cluster
        self.cluster_events[cluster_id] = [
            self._event(cluster_id, "CREATING", {"user": creator}, started - 300_000),
            self._event(cluster_id, "RUNNING", {"current_num_workers": len(executor_instance_ids)},
                        started),
        ]
        return cluster

    def add_event(self, cluster_id: str, event_type: str, details: Json | None = None,
                  timestamp_ms: int | None = None) -> None:
        event = self._event(cluster_id, event_type, details or {}, timestamp_ms or _now_ms())
        self.cluster_events.setdefault(cluster_id, []).append(event)

    def add_run(
        self,
        run_id: int,
        cluster_id: str,
        *,
        job_id: int = 1,
        run_name: str = "nightly",
        state: str = "RUNNING",
        creator: str = "owner@example.com",
        task_key: str = "main",
        start_ms: int | None = None,
    ) -> Json:
        """A job run whose single task runs on an existing cluster."""
        cluster_instance = {"cluster_id": cluster_id, "spark_context_id": "1234"}
        run_state = {"life_cycle_state": state, "state_message": "", "user_cancelled_or_timedout": False}
        run = {
            "job_id": job_id, "run_id": run_id, "run_name": run_name, "number_in_job": run_id,
            "creator_user_name": creator, "original_attempt_run_id": run_id, "state": run_state,
            "start_time": start_ms or _now_ms() - 60_000, "setup_duration": 0, "run_type": "JOB_RUN",
            "run_page_url": f"{self._base_url()}/?o={self.workspace_id}#job/{job_id}/run/{run_id}",
            "cluster_instance": cluster_instance,
            "cluster_spec": {"existing_cluster_id": cluster_id},
            "tasks": [{"task_key": task_key, "run_id": run_id * 10, "state": run_state,
                       "existing_cluster_id": cluster_id, "cluster_instance": cluster_instance}],
        }
        self.runs[run_id] = run
        return run

    def add_user(self, user_name: str, *, active: bool = True, groups: tuple[str, ...] = ()) -> Json:
        """A workspace user (SCIM); cluster creators and single users are added on their own."""
        for user in self.users.values():
            if user["userName"] == user_name:
                return user
        user_id = str(1000 + len(self.users))
        self.groups.update(groups)
        user = {"id": user_id, "userName": user_name, "displayName": user_name.split("@")[0], "active": active,
                "emails": [{"value": user_name, "type": "work", "primary": True}],
                "groups": [{"display": g, "value": f"g-{g}", "type": "direct"} for g in groups],
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}
        self.users[user_id] = user
        return user

    def user_by_name(self, user_name: str) -> Json | None:
        return next((u for u in self.users.values() if u["userName"] == user_name), None)

    def add_token(self, user_name: str, *, comment: str = "", last_used_ms: int | None = None,
                  created_ms: int | None = None) -> Json:
        """A personal access token `user_name` created (token management lists it)."""
        user = self.add_user(user_name)
        token_id = uuid.uuid4().hex
        created = created_ms or _now_ms() - 86_400_000
        info = {"token_id": token_id, "comment": comment, "created_by_id": int(user["id"]),
                "created_by_username": user_name, "owner_id": int(user["id"]), "creation_time": created,
                "expiry_time": created + 90 * 86_400_000, "workspace_id": self.workspace_id}
        if last_used_ms is not None:
            info["last_used_day"] = last_used_ms
        self.tokens[token_id] = info
        return info

    def acl(self, cluster_id: str) -> list[Json]:
        """The cluster's access control list as GET permissions answers it."""
        cluster = self._cluster_or_404(cluster_id)
        return json.loads(json.dumps(self.cluster_acls.get(cluster_id) or self._default_acl(cluster)))

    def _base_url(self) -> str:
        return self.host if self.port is not None else "http://127.0.0.1"

    def _node(self, instance_id: str, started: int) -> Json:
        n = next(self._ip_counter)
        return {
            "private_ip": f"10.0.{n // 250}.{n % 250}",
            "public_dns": "",
            "node_id": uuid.uuid5(uuid.NAMESPACE_OID, instance_id).hex,
            "instance_id": instance_id,
            "start_timestamp": started,
            "node_aws_attributes": {"is_spot": False},
            "host_private_ip": f"10.1.{n // 250}.{n % 250}",
        }

    @staticmethod
    def _event(cluster_id: str, event_type: str, details: Json, timestamp: int) -> Json:
        return {"cluster_id": cluster_id, "timestamp": timestamp, "type": event_type, "details": details}

    # ---- middleware: record, delay, faults, auth, error rendering ---------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        await self._record(request)
        await self._apply_delay(request.path)
        fault = self._take_fault(request.path)
        if fault is not None:
            return self._fault_response(fault)
        if request.path.startswith("/api/") and not self._authorised(request):
            return _error_response(401, "UNAUTHENTICATED", "Invalid access token.")
        try:
            return await handler(request)
        except ApiError as err:
            return _error_response(err.status, err.error_code, err.message)
        except web.HTTPNotFound:
            return _error_response(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'")
        except web.HTTPMethodNotAllowed:
            return _error_response(405, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'")

    async def _record(self, request: web.Request) -> None:
        if request.method in ("GET", "DELETE", "HEAD"):
            data = {k: (v[0] if len(v) == 1 else v) for k in request.query.keys()
                    for v in [request.query.getall(k)]}
        else:
            raw = await request.read()
            data = json.loads(raw) if raw else {}
        self.calls.append(Call(request.method, request.path, data))

    async def _apply_delay(self, path: str) -> None:
        for delay in self._delays:
            if delay.fragment in path and delay.remaining != 0:
                if delay.remaining is not None:
                    delay.remaining -= 1
                await asyncio.sleep(delay.seconds)
                return

    def _take_fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.fragment in path and (fault.remaining is None or fault.remaining > 0):
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    @staticmethod
    def _fault_response(fault: _Fault) -> web.Response:
        codes = {429: "REQUEST_LIMIT_EXCEEDED", 503: "TEMPORARILY_UNAVAILABLE", 500: "INTERNAL_ERROR"}
        headers = {}
        if fault.status in (429, 503) and fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        # avoid the phrases the SDK treats as transient ("Unexpected error", ...): a 500 must surface
        return _error_response(fault.status, codes.get(fault.status, "INTERNAL_ERROR"),
                               f"emulated failure (HTTP {fault.status})", headers)

    def _authorised(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    # ---- routes -----------------------------------------------------------------------------

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        json_routes: list[tuple[str, str, Handler]] = [
            ("GET", "/api/2.0/preview/scim/v2/Me", self._me),
            ("GET", "/api/2.1/clusters/list", self._clusters_list),
            ("GET", "/api/2.1/clusters/get", self._clusters_get),
            ("GET", "/api/2.0/permissions/clusters/{cluster_id}", self._cluster_permissions),
            ("PUT", "/api/2.0/permissions/clusters/{cluster_id}", self._cluster_permissions_set),
            ("PATCH", "/api/2.0/permissions/clusters/{cluster_id}", self._cluster_permissions_update),
            ("GET", "/api/2.0/preview/scim/v2/Users", self._users_list),
            ("GET", "/api/2.0/preview/scim/v2/Users/{user_id}", self._users_get),
            ("PATCH", "/api/2.0/preview/scim/v2/Users/{user_id}", self._users_patch),
            ("GET", "/api/2.0/token-management/tokens", self._tokens_list),
            ("DELETE", "/api/2.0/token-management/tokens/{token_id}", self._tokens_delete),
            ("POST", "/api/2.1/clusters/delete", self._clusters_delete),
            ("POST", "/api/2.1/clusters/permanent-delete", self._clusters_permanent_delete),
            ("POST", "/api/2.1/clusters/events", self._clusters_events),
            ("GET", "/api/2.2/jobs/runs/list", self._runs_list),
            ("GET", "/api/2.1/jobs/runs/list", self._runs_list),
            ("POST", "/api/2.0/database/credentials", self._database_credentials),
        ]
        json_routes += self._crud_routes("/api/2.0/sql/queries", self.queries, "Query", "query",
                                         self._new_query)
        json_routes += self._crud_routes("/api/2.0/sql/alerts", self.alerts, "Alert", "alert",
                                         self._new_alert)
        json_routes += self._alert_v2_routes()
        json_routes += self._destination_routes()
        for method, path, handler in json_routes:
            router.add_route(method, path, self._as_json(handler))
        router.add_get("/.well-known/databricks-config", self._host_metadata)

    @staticmethod
    def _as_json(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            return web.json_response(await handler(request))
        return wrapped

    async def _host_metadata(self, request: web.Request) -> web.Response:
        # Read by every Config() at construction; a 404 makes the SDK log a warning and fall back.
        if not self.serve_host_metadata:
            return _error_response(404, "ENDPOINT_NOT_FOUND", "No API found for 'GET /.well-known/databricks-config'")
        return web.json_response({"oidc_endpoint": f"{self.host}/oidc",
                                  "workspace_id": str(self.workspace_id), "cloud": "AWS"})

    async def _database_credentials(self, request: web.Request) -> Json:
        """Generate a database credential (Lakebase): {token, expiration_time} for the named
        database instances, as the real API answers; an unknown instance is 404."""
        body = await request.json()
        names = body.get("instance_names") or []
        if not names and not body.get("claims"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "At least one of instance_names or claims must be specified.")
        if not body.get("request_id"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "request_id is required.")
        for name in names:
            if name not in self.database_instances:
                raise _not_found("Database instance", name)
        if self.issue_database_token is not None:
            self.database_token = self.issue_database_token()
        expires = datetime.fromtimestamp(time.time() + self.database_token_ttl, timezone.utc)
        return {"token": self.database_token,
                "expiration_time": expires.isoformat(timespec="milliseconds").replace("+00:00", "Z")}

    async def _me(self, request: web.Request) -> Json:
        me = self.user_by_name(self.user_name) or {"id": "1000"}
        return {"id": me["id"], "userName": self.user_name, "active": True,
                "displayName": self.user_name.split("@")[0],
                "groups": [{"display": g, "value": f"g-{g}", "type": "direct"} for g in self.user_groups]}

    def grant(self, cluster_id: str, level: str, *, user: str | None = None, group: str | None = None) -> None:
        """Add an ACL entry (CAN_ATTACH_TO, CAN_RESTART, CAN_MANAGE) on a cluster."""
        acl = self.cluster_acls.setdefault(cluster_id, self._default_acl(self._cluster_or_404(cluster_id)))
        who = {"user_name": user} if user else {"group_name": group}
        acl.append({**who, "all_permissions": [{"permission_level": level, "inherited": False}]})

    @staticmethod
    def _default_acl(cluster: Json) -> list[Json]:
        return [
            {"user_name": cluster["creator_user_name"],
             "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": False}]},
            {"group_name": "admins",
             "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": True,
                                  "inherited_from_object": ["/clusters/"]}]},
        ]

    async def _cluster_permissions(self, request: web.Request) -> Json:
        cluster = self._cluster_or_404(request.match_info["cluster_id"])
        if self.permissions_forbidden:
            raise ApiError(403, "PERMISSION_DENIED", "User does not have CAN_MANAGE permission on this cluster.")
        acl = self.cluster_acls.get(cluster["cluster_id"]) or self._default_acl(cluster)
        return {"object_id": f"/clusters/{cluster['cluster_id']}", "object_type": "cluster",
                "access_control_list": acl}

    async def _cluster_permissions_set(self, request: web.Request) -> Json:
        """PUT replaces every direct grant; inherited ones (the admins group) stay."""
        cluster, entries = await self._acl_change(request)
        inherited = [e for e in self.acl(cluster["cluster_id"]) if _inherited_only(e)]
        self.cluster_acls[cluster["cluster_id"]] = inherited + entries
        return await self._cluster_permissions(request)

    async def _cluster_permissions_update(self, request: web.Request) -> Json:
        """PATCH adds grants to the list (an existing principal gains the level)."""
        cluster, entries = await self._acl_change(request)
        self.cluster_acls[cluster["cluster_id"]] = self.acl(cluster["cluster_id"]) + entries
        return await self._cluster_permissions(request)

    async def _acl_change(self, request: web.Request) -> tuple[Json, list[Json]]:
        cluster = self._cluster_or_404(request.match_info["cluster_id"])
        if self.permissions_forbidden or self.permissions_read_only:
            raise ApiError(403, "PERMISSION_DENIED", "User does not have CAN_MANAGE permission on this cluster.")
        body = await request.json()
        requested = body.get("access_control_list")
        if requested is None:
            requested = []
        if not isinstance(requested, list):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "access_control_list: expected an array")
        return cluster, [self._acl_entry(entry, i) for i, entry in enumerate(requested)]

    def _acl_entry(self, entry: Any, index: int) -> Json:
        problem = first_problem(sdk_compute.ClusterAccessControlRequest, entry)
        if problem:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"access_control_list[{index}]: {problem}")
        named = [k for k in ("user_name", "group_name", "service_principal_name") if entry.get(k)]
        if len(named) != 1:
            raise ApiError(400, "INVALID_PARAMETER_VALUE",
                           f"access_control_list[{index}]: exactly one of user_name, group_name, service_principal_name")
        if not entry.get("permission_level"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"access_control_list[{index}]: permission_level is required")
        kind, name = named[0], entry[named[0]]
        known = {"user_name": lambda n: self.user_by_name(n) is not None, "group_name": self.groups.__contains__,
                 "service_principal_name": self.service_principals.__contains__}[kind]
        if not known(name):
            label = {"user_name": "UserName", "group_name": "GroupName", "service_principal_name": "ServicePrincipal"}[kind]
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Principal: {label}({name}) does not exist")
        return {kind: name, "all_permissions": [{"permission_level": entry["permission_level"], "inherited": False}]}

    # ---- SCIM users ---------------------------------------------------------------------------

    def _users_allowed(self) -> None:
        if self.users_forbidden:
            raise ApiError(403, "PERMISSION_DENIED", "Only workspace admins can access SCIM Users.")

    def _user_or_404(self, user_id: str) -> Json:
        self._users_allowed()
        user = self.users.get(user_id)
        if user is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"User {user_id} does not exist.")
        return user

    async def _users_get(self, request: web.Request) -> Json:
        return self._user_or_404(request.match_info["user_id"])

    async def _users_list(self, request: web.Request) -> Json:
        """SCIM list: `filter` (only `userName eq "…"`, as the bot sends), 1-based startIndex, count."""
        self._users_allowed()
        q = request.query
        users = sorted(self.users.values(), key=lambda u: int(u["id"]))
        wanted = q.get("filter")
        if wanted:
            name = _scim_eq(wanted, "userName")
            users = [u for u in users if u["userName"].lower() == name.lower()]
        start = max(1, int(q.get("startIndex") or 1))
        count = max(0, min(int(q.get("count") or 100), self.page_size))
        page = users[start - 1:start - 1 + count]
        return {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": len(users),
                "startIndex": start, "itemsPerPage": len(page), "Resources": page}

    async def _users_patch(self, request: web.Request) -> Json:
        """SCIM PatchOp. A `replace` without a value is refused (what iam.Patch.as_dict makes of
        value=False); `active` is set by path or by a path-less value object."""
        user = self._user_or_404(request.match_info["user_id"])
        if "admins" not in self.user_groups:
            raise ApiError(403, "PERMISSION_DENIED", "Only workspace admins can update users.")
        body = await request.json()
        if body.get("schemas") != ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "schemas must be [urn:ietf:params:scim:api:messages:2.0:PatchOp]")
        operations = body.get("Operations")
        if not isinstance(operations, list) or not operations:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Operations must be a non-empty array")
        changes: Json = {}
        for i, operation in enumerate(operations):
            problem = first_problem(sdk_iam.Patch, operation)
            if problem:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Operations[{i}]: {problem}")
            if operation.get("op") not in ("add", "replace"):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Operations[{i}]: unsupported op {operation.get('op')!r}")
            if "value" not in operation:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Operations[{i}]: {operation['op']} requires a value")
            path, value = operation.get("path"), operation["value"]
            update = {path: value} if path else value
            if not isinstance(update, dict) or set(update) - {"active", "displayName"}:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Operations[{i}]: only active and displayName may change here")
            if "active" in update and not isinstance(update["active"], bool):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Operations[{i}]: active must be a boolean")
            changes.update(update)
        user.update(changes)
        return {}

    # ---- token management -------------------------------------------------------------------

    def _tokens_allowed(self) -> None:
        if self.tokens_forbidden or "admins" not in self.user_groups:
            raise ApiError(403, "PERMISSION_DENIED", "Only workspace admins can manage other users' tokens.")

    async def _tokens_list(self, request: web.Request) -> Json:
        self._tokens_allowed()
        q = request.query
        infos = [t for t in self.tokens.values()
                 if (not q.get("created_by_id") or str(t["created_by_id"]) == q["created_by_id"])
                 and (not q.get("created_by_username") or t["created_by_username"] == q["created_by_username"])]
        return {"token_infos": sorted(infos, key=lambda t: t["creation_time"])}

    async def _tokens_delete(self, request: web.Request) -> Json:
        self._tokens_allowed()
        token_id = request.match_info["token_id"]
        if self.tokens.pop(token_id, None) is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Token {token_id} does not exist.")
        return {}

    # ---- clusters ---------------------------------------------------------------------------

    def _cluster_or_404(self, cluster_id: str | None) -> Json:
        cluster = self.clusters.get(cluster_id or "")
        if cluster is not None:
            return cluster
        if self.legacy_not_found:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Cluster {cluster_id} does not exist")
        raise _not_found("Cluster", str(cluster_id))

    async def _clusters_list(self, request: web.Request) -> Json:
        states = set(request.query.getall("filter_by.cluster_states", []))
        policy = request.query.get("filter_by.policy_id")
        items = [c for c in self.clusters.values()
                 if (not states or c["state"] in states) and (not policy or c.get("policy_id") == policy)]
        size = int(request.query.get("page_size") or self.page_size)
        chunk, token = _page(items, request.query.get("page_token"), min(size, self.page_size))
        body: Json = {"clusters": chunk}
        if token:
            body["next_page_token"] = token
        return body

    async def _clusters_get(self, request: web.Request) -> Json:
        return self._cluster_or_404(request.query.get("cluster_id"))

    async def _clusters_delete(self, request: web.Request) -> Json:
        cluster = self._cluster_or_404((await request.json()).get("cluster_id"))
        # Documented: "If the cluster is already in a TERMINATING or TERMINATED state, nothing
        # will happen." (ClustersAPI.delete docstring) -- success, no change.
        if cluster["state"] not in ("TERMINATING", "TERMINATED"):
            self._begin_termination(cluster)
        return {}

    async def _clusters_permanent_delete(self, request: web.Request) -> Json:
        cluster = self._cluster_or_404((await request.json()).get("cluster_id"))
        del self.clusters[cluster["cluster_id"]]
        return {}

    def _begin_termination(self, cluster: Json) -> None:
        cluster["state"] = "TERMINATING"
        cluster["state_message"] = "Terminating cluster"
        self.add_event(cluster["cluster_id"], "TERMINATING",
                       {"reason": {"code": "USER_REQUEST", "type": "SUCCESS",
                                   "parameters": {"username": self.user_name}}})
        if self.termination_seconds <= 0:
            self._finish_termination(cluster)
        else:
            asyncio.get_running_loop().call_later(self.termination_seconds, self._finish_termination, cluster)

    def _finish_termination(self, cluster: Json) -> None:
        cluster["state"] = "TERMINATED"
        cluster["state_message"] = ""
        cluster["terminated_time"] = _now_ms()
        cluster["termination_reason"] = {"code": "USER_REQUEST", "type": "SUCCESS",
                                         "parameters": {"username": self.user_name}}
        # a terminated cluster has no nodes any more, so instance ids stop matching
        cluster.pop("driver", None)
        cluster.pop("executors", None)

    async def _clusters_events(self, request: web.Request) -> Json:
        body = await request.json()
        cluster_id = body.get("cluster_id")
        self._cluster_or_404(cluster_id)
        events = self._filtered_events(cluster_id, body)
        offset, limit = int(body.get("offset", 0)), int(body.get("limit") or body.get("page_size") or 50)
        page = events[offset:offset + limit]
        result: Json = {"events": page, "total_count": len(events)}
        if offset + limit < len(events):
            result["next_page"] = {**body, "offset": offset + limit, "limit": limit}
        return result

    def _filtered_events(self, cluster_id: str, body: Json) -> list[Json]:
        types = set(body.get("event_types") or [])
        start, end = body.get("start_time"), body.get("end_time")
        events = [e for e in self.cluster_events.get(cluster_id, [])
                  if (not types or e["type"] in types)
                  and (start is None or e["timestamp"] >= start)
                  and (end is None or e["timestamp"] <= end)]
        # the API's default order is DESC (newest first)
        return sorted(events, key=lambda e: e["timestamp"], reverse=body.get("order", "DESC") != "ASC")

    # ---- jobs runs --------------------------------------------------------------------------

    async def _runs_list(self, request: web.Request) -> Json:
        q = request.query
        runs = [r for r in self.runs.values() if self._run_matches(r, q)]
        runs.sort(key=lambda r: r["start_time"], reverse=True)
        limit = min(int(q.get("limit") or 20), 25)
        chunk, token = _page(runs, q.get("page_token") or q.get("offset"), limit)
        if q.get("expand_tasks") != "true":
            chunk = [{k: v for k, v in r.items() if k != "tasks"} for r in chunk]
        body: Json = {"runs": chunk, "has_more": token is not None}
        if token:
            body["next_page_token"] = token
        return body

    @staticmethod
    def _run_matches(run: Json, q: Any) -> bool:
        active = run["state"]["life_cycle_state"] in ACTIVE_RUN_STATES
        if q.get("active_only") == "true" and not active:
            return False
        if q.get("completed_only") == "true" and active:
            return False
        if q.get("start_time_from") and run["start_time"] < int(q["start_time_from"]):
            return False
        if q.get("start_time_to") and run["start_time"] > int(q["start_time_to"]):
            return False
        return not q.get("job_id") or str(run["job_id"]) == q.get("job_id")

    # ---- SQL queries and alerts (generic CRUD with update_mask and trash on delete) ---------

    def _crud_routes(self, base: str, store: dict[str, Json], kind: str, key: str,
                     build: Callable[[Json], Json]) -> list[tuple[str, str, Handler]]:
        async def create(request: web.Request) -> Json:
            fields = (await request.json()).get(key) or {}
            obj = {**build(fields), "id": str(uuid.uuid4()), "lifecycle_state": "ACTIVE",
                   "owner_user_name": self.user_name, "create_time": _iso_now(), "update_time": _iso_now()}
            self._check_name_free(store, obj, kind)
            store[obj["id"]] = obj
            return obj

        def existing(request: web.Request) -> Json:
            obj = store.get(request.match_info["id"])
            if obj is None:
                raise _not_found(kind, request.match_info["id"])
            return obj

        async def get(request: web.Request) -> Json:
            return existing(request)

        async def update(request: web.Request) -> Json:
            obj, body = existing(request), await request.json()
            changed = dict(obj)
            self._apply_update_mask(changed, body.get(key) or {}, body.get("update_mask"))
            build(changed)  # re-validate the result
            self._check_name_free(store, changed, kind)
            obj.clear()
            obj.update(changed, update_time=_iso_now())
            return obj

        async def delete(request: web.Request) -> Json:
            # the real API moves queries/alerts to the trash: gone from list, still readable
            existing(request)["lifecycle_state"] = "TRASHED"
            return {}

        async def list_(request: web.Request) -> Json:
            live = [o for o in store.values() if o["lifecycle_state"] == "ACTIVE"]
            return self._results_page(request, live)

        item = base + "/{id}"
        return [("POST", base, create), ("GET", base, list_), ("GET", item, get),
                ("PATCH", item, update), ("DELETE", item, delete)]

    @staticmethod
    def _apply_update_mask(obj: Json, fields: Json, mask: str | None) -> None:
        if not mask:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "update_mask is required")
        names = fields.keys() if mask.strip() == "*" else [m.strip() for m in mask.split(",")]
        for name in names:
            if name in fields:
                obj[name] = fields[name]
            else:
                obj.pop(name, None)  # a masked field that is absent is cleared, as in the API

    def _results_page(self, request: web.Request, items: list[Json]) -> Json:
        size = min(int(request.query.get("page_size") or self.page_size), self.page_size)
        chunk, token = _page(items, request.query.get("page_token"), size)
        body: Json = {"results": chunk}
        if token:
            body["next_page_token"] = token
        return body

    @staticmethod
    def _require(fields: Json, *names: str) -> None:
        missing = [n for n in names if not fields.get(n)]
        if missing:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Missing required field(s): {', '.join(missing)}")

    @staticmethod
    def _check_schema(cls: type, fields: Json) -> None:
        """The SDK's dataclass for this body: required fields present, enum values known."""
        problem = first_problem(cls, fields)
        if problem:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", problem)

    def _home(self) -> str:
        return f"/Users/{self.user_name}"

    def _check_name_free(self, store: dict[str, Json], obj: Json, kind: str) -> None:
        """A live object of the same API, in the same folder, with the same display name: the API
        fails the request (unless asked to auto-resolve, which esm-bot never does)."""
        folder = obj.get("parent_path") or self._home()
        for other in store.values():
            if (other.get("id") != obj.get("id") and other.get("lifecycle_state") == "ACTIVE"
                    and other.get("display_name") == obj.get("display_name")
                    and (other.get("parent_path") or self._home()) == folder):
                raise ApiError(400, "RESOURCE_ALREADY_EXISTS",
                               f"{kind} with name '{obj.get('display_name')}' already exists in {folder}.")

    def _new_query(self, fields: Json) -> Json:
        self._require(fields, "display_name")
        self._check_schema(sdk_sql.CreateQueryRequestQuery, fields)
        return {"query_text": "", "apply_auto_limit": True, "run_as_mode": "OWNER",
                "last_modifier_user_name": self.user_name, **fields}

    def _new_alert(self, fields: Json) -> Json:
        self._require(fields, "display_name", "query_id", "condition")
        self._check_schema(sdk_sql.CreateAlertRequestAlert, fields)
        self._require(fields["condition"], "op", "operand")
        query = self.queries.get(fields["query_id"])
        if query is None or query["lifecycle_state"] != "ACTIVE":
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Query {fields['query_id']} does not exist")
        return {"state": "UNKNOWN", "notify_on_ok": False, "seconds_to_retrigger": 0, **fields}

    # ---- AlertsV2: /api/2.0/alerts (the body is the AlertV2 itself; update_mask in the query) -

    def _alert_v2_routes(self) -> list[tuple[str, str, Handler]]:
        if self.alerts_v2_api == "missing":
            return []  # an older workspace: no such endpoint (404 ENDPOINT_NOT_FOUND)
        base, item = "/api/2.0/alerts", "/api/2.0/alerts/{id}"
        return [("POST", base, self._alert_v2_create), ("GET", base, self._alert_v2_list),
                ("GET", item, self._alert_v2_get), ("PATCH", item, self._alert_v2_update),
                ("DELETE", item, self._alert_v2_trash)]

    def _alerts_v2_enabled(self) -> None:
        if self.alerts_v2_api == "disabled":
            raise ApiError(400, "FEATURE_DISABLED", "Alerts V2 is not enabled for this workspace.")

    def _checked_alert_v2(self, fields: Json) -> Json:
        self._check_schema(sdk_sql.AlertV2, fields)
        notification = (fields.get("evaluation") or {}).get("notification") or {}
        for sub in notification.get("subscriptions") or []:
            if sub.get("destination_id") and sub["destination_id"] not in self.destinations:
                raise ApiError(400, "INVALID_PARAMETER_VALUE",
                               f"Notification destination {sub['destination_id']} does not exist")
            if not sub.get("destination_id") and not sub.get("user_email"):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "A subscription needs destination_id or user_email")
        return fields

    async def _alert_v2_create(self, request: web.Request) -> Json:
        self._alerts_v2_enabled()
        fields = self._checked_alert_v2(await request.json())
        output_only = ("id", "create_time", "update_time", "lifecycle_state", "owner_user_name", "effective_run_as")
        alert = {k: v for k, v in fields.items() if k not in output_only}
        alert.update(id=str(uuid.uuid4()), lifecycle_state="ACTIVE", owner_user_name=self.user_name,
                     create_time=_iso_now(), update_time=_iso_now(), parent_path=fields.get("parent_path") or self._home())
        alert["evaluation"] = {**alert["evaluation"], "state": "UNKNOWN"}
        self._check_name_free(self.v2_alerts, alert, "Alert")
        self.v2_alerts[alert["id"]] = alert
        return alert

    def _alert_v2_or_404(self, request: web.Request) -> Json:
        self._alerts_v2_enabled()
        alert = self.v2_alerts.get(request.match_info["id"])
        if alert is None:
            raise _not_found("Alert", request.match_info["id"])
        return alert

    async def _alert_v2_get(self, request: web.Request) -> Json:
        return self._alert_v2_or_404(request)

    async def _alert_v2_update(self, request: web.Request) -> Json:
        alert = self._alert_v2_or_404(request)
        if alert["lifecycle_state"] != "ACTIVE":
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Alert {alert['id']} is in the trash.")
        changed = dict(alert)
        self._apply_update_mask(changed, await request.json(), request.query.get("update_mask"))
        if "parent_path" in changed and changed.get("parent_path") != alert.get("parent_path"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "parent_path can only be set on create.")
        self._checked_alert_v2(changed)
        self._check_name_free(self.v2_alerts, changed, "Alert")
        alert.clear()
        alert.update(changed, update_time=_iso_now())
        return alert

    async def _alert_v2_trash(self, request: web.Request) -> Json:
        alert = self._alert_v2_or_404(request)
        if request.query.get("purge") == "true":
            del self.v2_alerts[alert["id"]]
        else:
            alert["lifecycle_state"] = "DELETED"  # in the trash: gone from the list, still readable
        return {}

    async def _alert_v2_list(self, request: web.Request) -> Json:
        self._alerts_v2_enabled()
        live = [a for a in self.v2_alerts.values() if a["lifecycle_state"] == "ACTIVE"]
        size = min(int(request.query.get("page_size") or self.page_size), self.page_size, 100)
        chunk, token = _page(live, request.query.get("page_token"), size)
        body: Json = {"alerts": chunk}
        if token:
            body["next_page_token"] = token
        return body

    # ---- notification destinations ----------------------------------------------------------

    def _destination_routes(self) -> list[tuple[str, str, Handler]]:
        base = "/api/2.0/notification-destinations"
        item = base + "/{id}"
        return [("POST", base, self._destination_create), ("GET", base, self._destination_list),
                ("GET", item, self._destination_get), ("PATCH", item, self._destination_update),
                ("DELETE", item, self._destination_delete)]

    def _destination_or_404(self, request: web.Request) -> Json:
        dest = self.destinations.get(request.match_info["id"])
        if dest is None:
            raise _not_found("Notification destination", request.match_info["id"])
        return dest

    @classmethod
    def _check_destination_config(cls, config: Json) -> None:
        cls._check_schema(sdk_settings.Config, config)
        url = (config.get("generic_webhook") or {}).get("url")
        if url is not None and not str(url).lower().startswith("https://"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Invalid webhook URL: only HTTPS URLs are allowed.")

    async def _destination_create(self, request: web.Request) -> Json:
        body = await request.json()
        self._require(body, "display_name", "config")
        self._check_destination_config(body["config"])
        dest = {"id": str(uuid.uuid4()), "display_name": body["display_name"],
                "destination_type": self._destination_type(body["config"]), "config": body["config"]}
        self.destinations[dest["id"]] = dest
        return _masked(dest)

    async def _destination_get(self, request: web.Request) -> Json:
        return _masked(self._destination_or_404(request))

    async def _destination_update(self, request: web.Request) -> Json:
        dest, body = self._destination_or_404(request), await request.json()
        if "display_name" in body:
            dest["display_name"] = body["display_name"]
        if "config" in body:
            self._check_destination_config(body["config"])
            if self._destination_type(body["config"]) != dest["destination_type"]:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "destination type cannot be changed")
            # omitted secret fields keep their stored value, as they are never read back
            for kind, fields in body["config"].items():
                dest["config"][kind] = {**dest["config"].get(kind, {}), **fields}
        return _masked(dest)

    async def _destination_delete(self, request: web.Request) -> Json:
        del self.destinations[self._destination_or_404(request)["id"]]
        return {}

    async def _destination_list(self, request: web.Request) -> Json:
        summaries = [{k: d[k] for k in ("id", "display_name", "destination_type")}
                     for d in self.destinations.values()]
        return self._results_page(request, summaries)

    @staticmethod
    def _destination_type(config: Json) -> str:
        kinds = [k for k in config if k in DESTINATION_TYPES]
        if len(kinds) != 1:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "config must set exactly one destination kind")
        return DESTINATION_TYPES[kinds[0]]


def _inherited_only(entry: Json) -> bool:
    return all(p.get("inherited") for p in entry.get("all_permissions") or [])


def _scim_eq(expression: str, attribute: str) -> str:
    """The value of a SCIM `attribute eq "value"` filter; anything else is 400 as the API answers."""
    head, _, rest = expression.strip().partition(" ")
    op, _, value = rest.strip().partition(" ")
    if head.lower() != attribute.lower() or op.lower() != "eq" or len(value) < 2 or value[0] != '"' or value[-1] != '"':
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Unsupported filter: {expression[:200]}")
    return value[1:-1]


def _masked(dest: Json) -> Json:
    """The API never echoes webhook URLs, credentials or tokens; it says `<field>_set: true`."""
    config = {}
    for kind, fields in dest["config"].items():
        shown = {k: v for k, v in fields.items() if k not in SECRET_CONFIG_FIELDS}
        shown.update({f"{k}_set": True for k in fields if k in SECRET_CONFIG_FIELDS and fields[k]})
        config[kind] = shown
    return {**dest, "config": config}
