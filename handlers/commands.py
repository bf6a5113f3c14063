"""The /esm slash command."""
from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

HELP = (
    "*esm-bot* — Databricks Enhanced Security Monitoring findings\n"
    "• `/esm status` — last sync, watermark, counts, outbox depth\n"
    "• `/esm help` — this text"
)


def register(app: AsyncApp, status_text: Any) -> None:
    @app.command("/esm")
    async def esm(ack, command: dict[str, Any]) -> None:
        words = (command.get("text") or "").split()
        verb = words[0].lower() if words else "help"
        if verb == "status":
            await ack(response_type="ephemeral", text=await status_text())
        elif verb == "help":
            await ack(response_type="ephemeral", text=HELP)
        else:
            await ack(response_type="ephemeral", text=f"Unknown command `{verb[:40]}`.\n{HELP}")
