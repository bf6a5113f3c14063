"""Which workspace (#11): Slack requests from any team or Enterprise Grid org but the bot's own
are refused before anything runs.

A request signed with the app's signing secret may still come from another workspace the app
was installed in (a distributed app, or an install the security team never meant). With
ESM_SLACK_TEAM_ID (and/or ESM_SLACK_ENTERPRISE_ID) set, a slash command, button, view submission
or event whose team id (enterprise id) differs, or that names none, gets 403 with an empty body;
no listener runs, nothing is acknowledged, and one warning line says so (never the body). It runs
as Bolt's `before_authorize` middleware: after the signature check, before Bolt's own
authorization and the listeners, for HTTP and Socket Mode alike.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

log = logging.getLogger(__name__)

_SHOWN = re.compile(r"[^A-Za-z0-9_-]")


def _shown(value: Any) -> str:
    """An id from the request as it may appear in a log line: short, nothing but id characters."""
    if value is None:
        return "none"
    return _SHOWN.sub("?", str(value)[:32]) or "empty"


def workspace_guard(
    team_id: str | None, enterprise_id: str | None
) -> Callable[..., Awaitable[BoltResponse]] | None:
    """The middleware, or None when neither setting is given (every workspace is served)."""
    if not team_id and not enterprise_id:
        return None

    async def refuse_other_workspaces(
        req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        body = req.body if isinstance(req.body, dict) else {}
        if body.get("type") == "url_verification":  # Slack's endpoint check: names no team, runs nothing
            return await next()
        got_team, got_enterprise = req.context.team_id, req.context.enterprise_id
        if (team_id and got_team != team_id) or (enterprise_id and got_enterprise != enterprise_id):
            log.warning(
                "Slack request refused: it comes from team %s (enterprise %s), this bot serves team %s (enterprise %s)",
                _shown(got_team), _shown(got_enterprise), team_id or "any", enterprise_id or "any",
            )
            return BoltResponse(status=403, body="")
        return await next()

    return refuse_other_workspaces
