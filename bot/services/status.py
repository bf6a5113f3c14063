"""The text of `/esm status`: health, last sync, the late-arrival sweep, stored counts and the
outbox of a runtime. It answers even when the state store is the broken part (each read of it is
bounded and its failure is shown), and every text that came from outside is escaped.

It takes the parts it reads (not the runtime), so the slash command (handlers/commands.py) and any
other caller reach it without importing the wiring.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime
from typing import TypeVar

from bot.core.degraded import Degradation
from bot.core.ports import StatusReader
from bot.render.blocks import escape
from bot.services.pipeline import Pipeline

T = TypeVar("T")
STORE_TIMEOUT = 2.0


async def _bounded(read: Awaitable[T]) -> T | str:
    try:
        return await asyncio.wait_for(read, STORE_TIMEOUT)
    except asyncio.TimeoutError:
        return f"unavailable (no answer within {STORE_TIMEOUT:g}s)"
    except Exception as exc:
        return f"unavailable ({exc})"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "never"


async def status_text(store: StatusReader, pipeline: Pipeline, health: Degradation | None) -> str:
    lines = ["*esm-bot status*"]
    problems = health.failing() if health is not None else []
    now = pipeline.clock()
    degraded = {p.part for p in health.degraded(now)} if health is not None else set()
    if problems:
        for problem in problems:
            state = "DEGRADED" if problem.part in degraded else "failing"
            lines.append(f"• :warning: {state}: {escape(problem.line())}")
    else:
        lines.append("• health: every part works")
    report = pipeline.last_report
    lines.append(f"• last successful sync: {_when(pipeline.last_success_at)}; last sync: {_when(pipeline.last_sync_at)}"
                 + (f" — error: {escape(report.error)}" if report and report.error else ""))
    watermark = await _bounded(store.watermark())
    lines.append(f"• watermark: {escape(str(watermark)) if watermark else 'none yet'}")
    sweep = pipeline.last_sweep
    if sweep is not None:
        lines.append(
            f"• late-arrival sweep: {_when(sweep.window_end)} back to {_when(sweep.window_start)}, "
            f"{sweep.ids_read} ids + {sweep.rows_read} rows read in {sweep.seconds:.2f} s, "
            f"{sweep.late_rows} late rows found" + (" (window truncated)" if sweep.truncated else "")
        )
    else:
        lines.append("• late-arrival sweep: not run yet")
    counts = await _bounded(store.counts())
    if isinstance(counts, dict):
        lines.append(
            f"• events stored: {sum(v for k, v in counts.items() if k not in ('findings', 'posted'))}, "
            f"findings: {counts.get('findings', 0)}, posted: {counts.get('posted', 0)}, "
            f"ignored: {counts.get('ignored', 0)}, suppressed: {counts.get('suppressed', 0)}"
        )
    else:
        lines.append(f"• state store: {escape(counts)}")
    depth = await _bounded(store.outbox_depth())
    lines.append(f"• outbox depth: {escape(str(depth))}")
    return "\n".join(lines)
