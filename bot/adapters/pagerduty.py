"""Pager over PagerDuty's Events API v2 (`POST /v2/enqueue`), with aiohttp.

One event per call: trigger, acknowledge or resolve, keyed by the finding's key as `dedup_key`, so
a retried or repeated trigger is one incident. A 429 or 5xx is retried a few times with backoff
(PagerDuty asks for that); a 400 is reported with PagerDuty's own reasons. The routing key never
appears in an error or a log line.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import aiohttp

from bot.core.ports import PagerError

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
MAX_SUMMARY = 1024  # PagerDuty truncates past this; the adapter cuts it first, with an ellipsis
MAX_DEDUP_KEY = 255
SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")


class PagerDuty:
    def __init__(self, routing_key: str, url: str = DEFAULT_URL, *, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.5):
        self._key = routing_key
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = retries
        self._backoff = backoff
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"PagerDuty(url={self.url!r})"

    async def send(self, action: str, dedup_key: str, *, summary: str = "", severity: str = "", source: str = "",
                   links: Sequence[tuple[str, str]] = (), details: dict[str, Any] | None = None) -> str:
        body = event_body(self._key, action, dedup_key, summary=summary, severity=severity, source=source,
                          links=links, details=details)
        answer = await self._post(body)
        return str(answer.get("dedup_key") or dedup_key)

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        for attempt in range(self._retries + 1):
            try:
                async with self._session.post(self.url, json=body) as response:
                    answer = await _json(response)
                    if response.status == 202:
                        return answer
                    if response.status in (429, 500, 502, 503, 504) and attempt < self._retries:
                        await asyncio.sleep(self._backoff * 2 ** attempt)
                        continue
                    raise PagerError(self._scrub(_failure(response.status, answer)))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                if attempt >= self._retries:
                    raise PagerError(self._scrub(f"PagerDuty unreachable: {type(exc).__name__}: {exc}")) from None
                await asyncio.sleep(self._backoff * 2 ** attempt)
        raise PagerError("PagerDuty: no answer")  # not reached

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def event_body(routing_key: str, action: str, dedup_key: str, *, summary: str = "", severity: str = "",
               source: str = "", links: Sequence[tuple[str, str]] = (),
               details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Events API v2 body; a trigger carries the payload and links, ack/resolve only the key."""
    if action not in ACTIONS:
        raise PagerError(f"unknown PagerDuty event action {action!r}")
    if not dedup_key or len(dedup_key) > MAX_DEDUP_KEY:
        raise PagerError(f"dedup_key must be 1 to {MAX_DEDUP_KEY} characters")
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action, "dedup_key": dedup_key}
    if action != "trigger":
        return body
    if severity not in SEVERITIES:
        raise PagerError(f"PagerDuty severity must be one of {', '.join(SEVERITIES)}")
    text = " ".join(summary.split()) or "esm-bot finding"
    body["payload"] = {
        "summary": text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…",
        "source": source or "esm-bot", "severity": severity,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "component": "databricks-esm", "class": "capsule8", "custom_details": dict(details or {}),
    }
    body["links"] = [{"href": href, "text": text} for text, href in links if href]
    return body


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        data = await response.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        return {}
    return data if isinstance(data, dict) else {}


def _failure(status: int, answer: dict[str, Any]) -> str:
    errors = answer.get("errors") or []
    reasons = "; ".join(str(e) for e in errors)[:300] if isinstance(errors, list) else ""
    message = str(answer.get("message") or "")[:200]
    return f"PagerDuty refused the event (HTTP {status}): {message}{': ' + reasons if reasons else ''}"
