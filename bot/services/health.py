"""Readiness: can the running bot do its job right now?

`/readyz` runs these checks concurrently, each bounded by a short timeout:
  state       a query on the state store answers
  slack       auth.test with the bot token works
  databricks  SCIM Me answers (only when DATABRICKS_HOST is set)
  degraded    no part (state store, audit source, Slack) has failed for longer than ESM_DEGRADED_AFTER
              (from what the syncs and the outbox saw: bot.core.degraded)
The probes run at most once per PROBE_TTL seconds whatever the request rate (one outbound Slack
and one Databricks call per period; concurrent requests share one run), and their results are
reused until then. Without the admin token (`Authorization: Bearer <ESM_ADMIN_TOKEN>`) the answer
says only ok / not ok per check and the names of the failing checks and parts; with it, each
check's detail too (host and principal names, SDK errors). Detail texts never carry a secret (the
probes scrub tokens, and every text is masked again with the configured secret values).
"""
from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from bot.adapters.databricks_checks import DatabricksProbe
from bot.adapters.slack_checks import SlackProbe
from bot.config import Settings
from bot.core.degraded import Degradation
from bot.core.ports import StatusReader

CHECK_TIMEOUT = 3.0
PROBE_TTL = 10.0  # seconds the probes' results are reused: at most one Slack and one Databricks call per period


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def secret_values(settings: Settings) -> list[str]:
    """What logs and answers mask: every token and password, the state URL's password and each
    workspace's token (Settings.secret_values)."""
    return settings.secret_values()


def bearer_matches(header: str | None, token: str | None) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time; never true without a token."""
    if not token or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode())


class Readiness:
    def __init__(self, settings: Settings, store: StatusReader, timeout: float = CHECK_TIMEOUT,
                 health: Degradation | None = None, ttl: float = PROBE_TTL):
        self.settings = settings
        self.store = store
        self.health = health
        self.timeout = timeout
        self.ttl = ttl
        self._cached: tuple[float, dict[str, Check]] | None = None
        self._running: asyncio.Task[dict[str, Check]] | None = None
        token = settings.slack_bot_token.reveal() if settings.slack_bot_token else ""
        self.slack = SlackProbe(token, settings.slack_api_url, timeout)
        self.databricks = None
        if settings.databricks_host:
            dbx_token = settings.databricks_token.reveal() if settings.databricks_token else None
            self.databricks = DatabricksProbe(settings.databricks_host, dbx_token, timeout)
        self._secrets = secret_values(settings)

    async def run(self, detailed: bool = True) -> tuple[bool, dict[str, dict[str, Any]]]:
        """(ready, report). `detailed` only for the admin: each check's detail text too."""
        results = await self.probes()
        report: dict[str, dict[str, Any]] = {
            name: {"ok": r.ok, "detail": r.detail} if detailed else {"ok": r.ok} for name, r in results.items()
        }
        if self.health is not None:
            degraded = self.health.degraded(datetime.now(timezone.utc))
            parts = sorted(p.part for p in degraded)
            report["degraded"] = {"ok": not degraded, "parts": parts}
            if detailed:
                detail = "; ".join(p.line() for p in degraded) or "no part failing longer than ESM_DEGRADED_AFTER"
                report["degraded"]["detail"] = self._mask(detail)[:600]
        return all(c["ok"] for c in report.values()), report

    async def probes(self) -> dict[str, Check]:
        """The probes' results, at most PROBE_TTL old; one run at a time, shared by every caller."""
        if self._cached is not None and time.monotonic() - self._cached[0] < self.ttl:
            return self._cached[1]
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._probe_all())
        return await asyncio.shield(self._running)  # a caller that goes away never cancels the others' run

    async def _probe_all(self) -> dict[str, Check]:
        checks: dict[str, Callable[[], Awaitable[str]]] = {"state": self._state, "slack": self._slack}
        if self.databricks is not None:
            checks["databricks"] = self._databricks
        results = await asyncio.gather(*(self._bounded(fn) for fn in checks.values()))
        probed = dict(zip(checks, results))
        self._cached = (time.monotonic(), probed)
        return probed

    async def _bounded(self, check: Callable[[], Awaitable[str]]) -> Check:
        try:
            return Check(True, self._mask(await asyncio.wait_for(check(), self.timeout)))
        except asyncio.TimeoutError:
            return Check(False, f"no answer within {self.timeout:g}s")
        except Exception as exc:  # any failure is "not ready", with the reason
            return Check(False, self._mask(str(exc) or type(exc).__name__)[:300])

    async def _state(self) -> str:
        depth = await self.store.outbox_depth()
        return f"state store answers (outbox depth {depth})"

    async def _slack(self) -> str:
        info = await self.slack.auth()
        return f"auth.test ok: {info.user or info.user_id} in {info.team}"

    async def _databricks(self) -> str:
        assert self.databricks is not None
        who = await self.databricks.me()
        return f"{self.databricks.host} answers as {who.user_name}"

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "****")
        return text
