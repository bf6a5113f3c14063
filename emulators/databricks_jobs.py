"""The Databricks REST emulator plus Jobs CRUD (2.2), for `esm-bot deploy` contract tests.

Legacy DBSQL alerts (`/api/2.0/sql/alerts`) have no schedule of their own: a job with a
`sql_task.alert` task evaluates them on a cron schedule and notifies its subscriptions (AlertsV2
carry their own schedule and need no job). This adds the job endpoints the SDK's
`w.jobs.create/get/list/reset/delete` call, in the shapes databricks-sdk 0.16x sends and parses,
to DatabricksEmulator (kept separate so the base emulator stays small). Job settings are checked
against the SDK's `JobSettings` (a task without `task_key`, an `sql_task` without `warehouse_id`,
an unknown `pause_status` are 400 INVALID_PARAMETER_VALUE, as in the real API).
"""
from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web
from databricks.sdk.service import jobs as sdk_jobs

from emulators.databricks import ApiError, DatabricksEmulator, Json, _error_response, _now_ms, _page

JOBS = "/api/2.2/jobs"


class JobsEmulator(DatabricksEmulator):
    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.jobs: dict[int, Json] = {}
        self._job_ids = itertools.count(1001)
        self._method_faults: list[list[Any]] = []  # [method, fragment, status, remaining]

    def fail_method(self, method: str, path_fragment: str, status: int = 400, times: int = 1) -> None:
        """Like fail(), for one HTTP method only (e.g. a create, while the list still works)."""
        self._method_faults.append([method.upper(), path_fragment, status, times])

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        for fault in self._method_faults:
            method, fragment, status, remaining = fault
            if remaining > 0 and request.method == method and fragment in request.path:
                fault[3] -= 1
                await self._record(request)
                return _error_response(status, "INVALID_PARAMETER_VALUE", f"emulated rejection (HTTP {status})")
        return await super()._middleware(request, handler)

    def add_job(self, settings: Json) -> int:
        """Seed a job (e.g. one esm-bot does not own)."""
        job_id = next(self._job_ids)
        self.jobs[job_id] = {"job_id": job_id, "settings": dict(settings), "created_time": _now_ms(),
                             "creator_user_name": self.user_name}
        return job_id

    def writes(self) -> list:
        """Every request that could change state (any POST/PATCH/PUT/DELETE)."""
        return [c for c in self.calls if c.method in ("POST", "PATCH", "PUT", "DELETE")]

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        super()._add_routes(router)
        routes = [("POST", f"{JOBS}/create", self._job_create), ("GET", f"{JOBS}/get", self._job_get),
                  ("GET", f"{JOBS}/list", self._job_list), ("POST", f"{JOBS}/reset", self._job_reset),
                  ("POST", f"{JOBS}/delete", self._job_delete)]
        for method, path, handler in routes:
            router.add_route(method, path, self._as_json(handler))

    def _job_or_404(self, job_id: Any) -> Json:
        try:
            job = self.jobs.get(int(job_id))
        except (TypeError, ValueError):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Invalid job_id {job_id!r}") from None
        if job is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
        return job

    def _validate(self, settings: Json) -> None:
        self._check_schema(sdk_jobs.JobSettings, settings)
        for task in settings.get("tasks") or []:
            alert = (task.get("sql_task") or {}).get("alert")
            if alert is not None and alert.get("alert_id") not in self.alerts:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Alert {alert.get('alert_id')} does not exist")
            for sub in (alert or {}).get("subscriptions") or []:
                if sub.get("destination_id") and sub["destination_id"] not in self.destinations:
                    raise ApiError(400, "INVALID_PARAMETER_VALUE",
                                   f"Notification destination {sub['destination_id']} does not exist")

    async def _job_create(self, request: web.Request) -> Json:
        body = await request.json()
        self._validate(body)
        return {"job_id": self.add_job(body)}

    async def _job_get(self, request: web.Request) -> Json:
        return self._job_or_404(request.query.get("job_id"))

    async def _job_list(self, request: web.Request) -> Json:
        q = request.query
        jobs = sorted(self.jobs.values(), key=lambda j: -j["job_id"])  # newest first, as the API
        if q.get("name"):
            jobs = [j for j in jobs if (j["settings"].get("name") or "").lower() == q["name"].lower()]
        if q.get("expand_tasks") != "true":
            jobs = [{**j, "settings": {k: v for k, v in j["settings"].items() if k != "tasks"}} for j in jobs]
        chunk, token = _page(jobs, q.get("page_token"), min(int(q.get("limit") or 20), 100, self.page_size))
        body: Json = {"jobs": chunk, "has_more": token is not None}
        if token:
            body["next_page_token"] = token
        return body

    async def _job_reset(self, request: web.Request) -> Json:
        body = await request.json()
        job = self._job_or_404(body.get("job_id"))
        self._validate(body.get("new_settings") or {})
        job["settings"] = dict(body.get("new_settings") or {})
        return {}

    async def _job_delete(self, request: web.Request) -> Json:
        job = self._job_or_404((await request.json()).get("job_id"))
        del self.jobs[job["job_id"]]
        return {}
