"""The text of `/esm status`: last sync, watermark, stored counts and outbox depth of a runtime.

Its own module so that the slash command (handlers/commands.py) can reach it without importing
the aiohttp application (bot/app.py), which imports the handlers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.runtime import Runtime


async def status_text(runtime: Runtime) -> str:
    counts = await runtime.store.counts()
    watermark = await runtime.store.watermark()
    report = runtime.pipeline.last_report
    return (
        f"*esm-bot status*\n"
        f"• last sync: {runtime.pipeline.last_sync_at or 'never'}"
        f"{' — error: ' + report.error if report and report.error else ''}\n"
        f"• watermark: {watermark or 'none yet'}\n"
        f"• events stored: {sum(v for k, v in counts.items() if k not in ('findings', 'posted'))}, "
        f"findings: {counts.get('findings', 0)}, posted: {counts.get('posted', 0)}, "
        f"ignored: {counts.get('ignored', 0)}, suppressed: {counts.get('suppressed', 0)}\n"
        f"• outbox depth: {await runtime.store.outbox_depth()}"
    )
