"""Finding buttons. One generic listener; the response actions themselves live in
handlers/actions/ (one file each)."""
from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncApp

ACTION_PATTERN = re.compile(r"^esm\.")


def register(app: AsyncApp) -> None:
    @app.action(ACTION_PATTERN)
    async def on_finding_button(ack, body: dict[str, Any], respond) -> None:
        await ack()
        await respond(
            response_type="ephemeral",
            replace_original=False,
            text="This action is not available yet in this version of esm-bot.",
        )
