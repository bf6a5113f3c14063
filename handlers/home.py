"""The App Home tab: app_home_opened publishes the user's Home (bot/services/home.py)."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp

if TYPE_CHECKING:
    from bot.runtime import Runtime


def register(app: AsyncApp, runtime_of: Callable[[], "Runtime"]) -> None:
    @app.event("app_home_opened")
    async def on_home_opened(event: dict[str, Any]) -> None:
        home = runtime_of().home
        user = str(event.get("user") or "")
        if home is not None and user and event.get("tab", "home") == "home":
            home.opened(user)  # published in the background, within Slack's rate limits
