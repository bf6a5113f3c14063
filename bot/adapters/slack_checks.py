"""Read-only Slack probes for `/readyz` and `esm-bot doctor`: auth.test (with the scopes the token
holds, from its X-OAuth-Scopes response header) and conversations.info (is the bot a member of
the findings channel). Nothing here posts. Failures come back as text with the token scrubbed.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient


class SlackProbeError(RuntimeError):
    def __init__(self, message: str, error: str = ""):
        super().__init__(message)
        self.error = error  # Slack's error name (invalid_auth, missing_scope, ...) when it gave one


@dataclass(frozen=True)
class AuthInfo:
    team: str
    user: str
    user_id: str
    bot_id: str
    scopes: frozenset[str] | None  # None: Slack sent no X-OAuth-Scopes header
    team_id: str = ""  # the workspace the token belongs to (ESM_SLACK_TEAM_ID, #11)
    enterprise_id: str = ""  # its Enterprise Grid org, when it has one (ESM_SLACK_ENTERPRISE_ID)


@dataclass(frozen=True)
class ChannelInfo:
    channel_id: str
    name: str
    is_member: bool
    is_private: bool
    is_archived: bool


class SlackProbe:
    def __init__(self, token: str, api_url: str, timeout: float = 5.0):
        self._token = token
        self._timeout = timeout
        self._api_url = api_url

    async def auth(self) -> AuthInfo:
        data, headers = await self._call("auth.test")
        raw = _header(headers, "x-oauth-scopes")
        scopes = None if raw is None else frozenset(s.strip() for s in raw.split(",") if s.strip())
        return AuthInfo(str(data.get("team") or ""), str(data.get("user") or ""), str(data.get("user_id") or ""),
                        str(data.get("bot_id") or ""), scopes, team_id=str(data.get("team_id") or ""),
                        enterprise_id=str(data.get("enterprise_id") or ""))

    async def channel(self, channel_id: str) -> ChannelInfo:
        data, _ = await self._call("conversations.info", channel=channel_id)
        info = data.get("channel") or {}
        return ChannelInfo(channel_id, str(info.get("name") or ""), bool(info.get("is_member")),
                           bool(info.get("is_private")), bool(info.get("is_archived")))

    async def connections_open(self) -> str:
        """apps.connections.open with an app-level token: the websocket URL Socket Mode would use
        (it is only issued, not connected to)."""
        data, _ = await self._call("apps.connections.open", app_token=self._token)
        return str(data.get("url") or "")

    async def _call(self, method: str, **params: Any) -> tuple[dict[str, Any], Any]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout)) as session:
            client = AsyncWebClient(token=self._token, base_url=self._api_url, timeout=int(max(1, self._timeout)),
                                    session=session)
            try:
                response = await asyncio.wait_for(getattr(client, method.replace(".", "_"))(**params), self._timeout)
            except SlackApiError as exc:
                error = str((exc.response.data or {}).get("error") if isinstance(exc.response.data, dict) else "")
                needed = (exc.response.data or {}).get("needed") if isinstance(exc.response.data, dict) else None
                extra = f" (needs {needed})" if needed else ""
                raise SlackProbeError(self._scrub(f"{method}: {error or 'HTTP ' + str(exc.response.status_code)}{extra}"),
                                      error) from None
            except asyncio.TimeoutError:
                raise SlackProbeError(f"{method}: no answer within {self._timeout:g}s", "timeout") from None
            except (aiohttp.ClientError, OSError) as exc:
                raise SlackProbeError(self._scrub(f"{method}: {type(exc).__name__}: {exc}"), "unreachable") from None
            return dict(response.data), response.headers

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "xox*-***") if self._token else text


def _header(headers: Any, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value[0] if isinstance(value, list) else str(value)
    return None
