"""The backfill digest as Block Kit: one Slack message summing up past events per detection and
per cluster (the counts: bot.core.digest.Tally), within Slack's limits (DESIGN.md §5), escaping
every value that came from an event, like bot/render/blocks.py.

Pure: imports only the standard library, bot.core.* and bot.render.blocks.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.core.digest import Tally
from bot.render.blocks import (
    MAX_HEADER,
    MAX_SECTION_TEXT,
    MAX_TEXT,
    SEVERITY_EMOJI,
    clip,
    code,
    context,
    mrkdwn,
    section,
)

ROWS_SHOWN = 15  # per table; the rest is one "+N more" line


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, MAX_HEADER), "emoji": True}}


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _table(title: str, counts: list[tuple[str, int]], label) -> str:
    lines = [f"*{title}*"]
    for name, count in counts[:ROWS_SHOWN]:
        lines.append(f"{count:>6} × {label(name)}")
    if len(counts) > ROWS_SHOWN:
        rest = counts[ROWS_SHOWN:]
        lines.append(f"+{len(rest)} more ({sum(c for _, c in rest)} events)")
    return clip("\n".join(lines), MAX_SECTION_TEXT)


def digest_message(tally: Tally) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) of the one backfill summary message."""
    title = f"ESM backfill since {_when(tally.since)}: {tally.posted} events, {tally.findings} findings"
    blocks: list[dict[str, Any]] = [header(title)]
    if not tally.posted:
        blocks.append(section("No Capsule8 detections to report in this period."))
    else:
        by_detection = sorted(tally.detections.items(),
                              key=lambda kv: (-tally.severity[kv[0]], -kv[1], kv[0]))
        blocks.append(section(_table("By detection", by_detection, lambda n: _detection_label(tally, n))))
        by_place = sorted(tally.places.items(), key=lambda kv: (-kv[1], kv[0]))
        blocks.append(section(_table("By cluster", by_place, lambda p: code(p, 120))))
    notes = [f"{tally.suppressed} suppressed as benign", f"{tally.ignored} heartbeats",
             "findings were stored, not posted one by one; use `/esm recent` for details"]
    blocks.append(context([mrkdwn(clip(" · ".join(notes), MAX_TEXT))]))
    return clip(title, MAX_TEXT), blocks


def _detection_label(tally: Tally, name: str) -> str:
    emoji = SEVERITY_EMOJI.get(tally.severity[name], "")
    return f"{emoji} {code(name, 120)} ({code(tally.category[name], 60)})"
