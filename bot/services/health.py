"""Readiness: can the running bot do its job right now?

`/readyz` runs these checks concurrently, each bounded by a short timeout:
  state       a query on the state store answers
  slack       auth.test with the bot token works
  databricks  SCIM Me answers (only when DATABRICKS_HOST is set)
  degraded    no part (state store, audit source, Slack) has failed for longer than ESM_DEGRADED_AFTER
              (from what the syncs and the outbox saw: bot.core.degraded)
The answer names each check with ok and a short detail; detail texts never carry a secret (the
probes scrub tokens, and every text is masked again with the configured secret values).
"""
from __future__ import annotations

import asyncio
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


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def secret_values(settings: Settings) -> list[str]:
    secrets = (settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token,
               settings.webhook_password, settings.databricks_token)
    return [s.reveal() for s in secrets if s is not None and len(s.reveal()) >= 4]


class Readiness:
    def __init__(self, settings: Settings, store: StatusReader, timeout: float = CHECK_TIMEOUT,
                 health: Degradation | None = None):
        self.settings = settings
        self.store = store
        self.health = health
        self.timeout = timeout
        token = settings.slack_bot_token.reveal() if settings.slack_bot_token else ""
        self.slack = SlackProbe(token, settings.slack_api_url, timeout)
        self.databricks = None
        if settings.databricks_host:
            dbx_token = settings.databricks_token.reveal() if settings.databricks_token else None
            self.databricks = DatabricksProbe(settings.databricks_host, dbx_token, timeout)
        self._secrets = secret_values(settings)

    async def run(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        checks: dict[str, Callable[[], Awaitable[str]]] = {"state": self._state, "slack": self._slack}
        if self.databricks is not None:
            checks["databricks"] = self._databricks
        results = await asyncio.gather(*(self._bounded(fn) for fn in checks.values()))
        report = {name: {"ok": r.ok, "detail": r.detail} for name, r in zip(checks, results)}
        if self.health is not None:
            degraded = self.health.degraded(datetime.now(timezone.utc))
            detail = "; ".join(p.line() for p in degraded) or "no part failing longer than ESM_DEGRADED_AFTER"
            report["degraded"] = {"ok": not degraded, "detail": self._mask(detail)[:600],
                                  "parts": sorted(p.part for p in degraded)}
        return all(c["ok"] for c in report.values()), report

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
