"""A local PagerDuty Events API v2 stand-in (`POST /v2/enqueue`) for tests and the demo.

Validates an event as the real endpoint does (its documented rules): a JSON object; `routing_key`
a 32-character string; `event_action` trigger, acknowledge or resolve; `dedup_key` at most 255
characters, required to acknowledge or resolve; a trigger's `payload` with a `summary` (at most
1,024 characters), a `source` and a `severity` of critical, error, warning or info, an optional
ISO 8601 `timestamp`; `links` and `images` arrays of objects with an `href`. An invalid event is
400 `{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}`; a valid
one 202 `{"status": "success", "message": "Event processed", "dedup_key": ...}`. Incidents are
kept by dedup key (triggered → acknowledged → resolved; a new trigger reopens a resolved one).
`fail(status, times)` injects 429s or 5xx.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
ROUTING_KEY_LENGTH = 32
TEST_ROUTING_KEY = "R0ESMTESTROUTINGKEY0000000000000"  # 32 characters, as a real integration key


@dataclass
class Incident:
    dedup_key: str
    status: str  # triggered | acknowledged | resolved
    summary: str
    severity: str
    links: list[dict[str, Any]] = field(default_factory=list)
    history: list[str] = field(default_factory=list)  # every event_action received, in order


class PagerDutyEmulator:
    def __init__(self, *, routing_key: str | None = TEST_ROUTING_KEY, host: str = "127.0.0.1", port: int = 0):
        self.routing_key = routing_key  # None: any well-formed key is accepted
        self.events: list[dict[str, Any]] = []  # every accepted event, in order
        self.rejected: list[dict[str, Any]] = []
        self.incidents: dict[str, Incident] = {}
        self._faults: list[list[int]] = []  # [status, remaining]
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> "PagerDutyEmulator":
        app = web.Application()
        app.router.add_post("/v2/enqueue", self._enqueue)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        self._port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "PagerDutyEmulator":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}/v2/enqueue"

    def fail(self, status: int = 429, times: int = 1) -> None:
        self._faults.append([status, times])

    async def _enqueue(self, request: web.Request) -> web.Response:
        for fault in self._faults:
            if fault[1] > 0:
                fault[1] -= 1
                return web.json_response({"status": "throttle event", "message": "Requests for this service are "
                                          "arriving too quickly. Please retry later."} if fault[0] == 429 else
                                         {"status": "error", "message": "internal error"}, status=fault[0])
        try:
            event = json.loads(await request.text())
        except ValueError:
            return _invalid(["Event object is not valid JSON"], {})
        errors = problems(event)
        if not errors and self.routing_key is not None and event["routing_key"] != self.routing_key:
            errors = ["Invalid routing key"]
        if errors:
            self.rejected.append(event if isinstance(event, dict) else {"body": event})
            return _invalid(errors, event)
        dedup_key = event.get("dedup_key") or uuid.uuid4().hex
        self.events.append({**event, "dedup_key": dedup_key})
        self._apply(event["event_action"], dedup_key, event)
        return web.json_response({"status": "success", "message": "Event processed", "dedup_key": dedup_key},
                                 status=202)

    def _apply(self, action: str, dedup_key: str, event: dict[str, Any]) -> None:
        incident = self.incidents.get(dedup_key)
        if action == "trigger":
            payload = event["payload"]
            if incident is None or incident.status == "resolved":
                incident = Incident(dedup_key, "triggered", payload["summary"], payload["severity"],
                                    list(event.get("links") or []), list(incident.history) if incident else [])
                self.incidents[dedup_key] = incident
            incident.history.append(action)
            return
        if incident is None:  # PagerDuty accepts it (202) and drops it: there is nothing to change
            return
        incident.history.append(action)
        if action == "acknowledge" and incident.status == "triggered":
            incident.status = "acknowledged"
        elif action == "resolve":
            incident.status = "resolved"


def problems(event: Any) -> list[str]:
    """Every reason the Events API v2 would refuse this event (empty: it is accepted)."""
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    found: list[str] = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != ROUTING_KEY_LENGTH:
        found.append(f"'routing_key' must be a string of {ROUTING_KEY_LENGTH} characters")
    action = event.get("event_action")
    if action not in ACTIONS:
        found.append("'event_action' must be one of trigger, acknowledge, resolve")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not dedup or len(dedup) > MAX_DEDUP_KEY):
        found.append(f"'dedup_key' must be a non-empty string of at most {MAX_DEDUP_KEY} characters")
    if action in ("acknowledge", "resolve") and not dedup:
        found.append("'dedup_key' is required to acknowledge or resolve")
    if action == "trigger":
        found += _payload_problems(event.get("payload"))
    for name in ("links", "images"):
        value = event.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) and isinstance(v.get("href" if name == "links" else "src"), str) for v in value):
            found.append(f"'{name}' must be an array of objects with " + ("'href'" if name == "links" else "'src'"))
    return found


def _payload_problems(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is required to trigger"]
    found = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        found.append("'payload.summary' is required")
    elif len(summary) > MAX_SUMMARY:
        found.append(f"'payload.summary' must be at most {MAX_SUMMARY} characters")
    if not isinstance(payload.get("source"), str) or not payload["source"].strip():
        found.append("'payload.source' is required")
    if payload.get("severity") not in SEVERITIES:
        found.append("'payload.severity' must be one of critical, error, warning, info")
    stamp = payload.get("timestamp")
    if stamp is not None:
        try:
            datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            found.append("'payload.timestamp' must be an ISO 8601 time")
    if "custom_details" in payload and not isinstance(payload["custom_details"], (dict, str)):
        found.append("'payload.custom_details' must be an object")
    return found


def _invalid(errors: list[str], event: Any) -> web.Response:
    return web.json_response({"status": "invalid event", "message": "Event object is invalid", "errors": errors},
                             status=400)
