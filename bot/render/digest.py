"""The backfill digest and the daily digest as Block Kit: each one Slack message summing up past events per detection and
per cluster (the counts: bot.core.digest.Tally), within Slack's limits (DESIGN.md §5), escaping
every value that came from an event, like bot/render/blocks.py.

Pure: imports only the standard library, bot.core.* and bot.render.blocks.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.core.digest import DailyDigest, Tally
from bot.render.blocks import (
    MAX_HEADER,
    MAX_SECTION_TEXT,
    MAX_TEXT,
    SEVERITY_EMOJI,
    clip,
    code,
    context,
    escape,
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


# ---------------------------------------------------------------- the daily digest (ESM_DIGEST_AT)

OPEN_SHOWN = 15
SUPPRESSIONS_SHOWN = 10


def daily_digest_message(d: DailyDigest) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) of the one daily digest message: yesterday's counts per detection
    and cluster, findings still open, suppressions that hid events, those expiring soon, the chart."""
    events = sum(d.by_detection.values())
    day = d.start.astimezone(ZoneInfo(d.zone)).strftime("%Y-%m-%d")
    title = f"ESM daily digest for {day} ({d.zone}): {events} events, {len(d.open_findings)} findings open"
    blocks: list[dict[str, Any]] = [header(title)]
    if events:
        by_detection = sorted(d.by_detection.items(), key=lambda kv: (-kv[1], kv[0]))
        blocks.append(section(_table("Events by detection", by_detection, lambda n: code(n, 120))))
        by_cluster = sorted(d.by_cluster.items(), key=lambda kv: (-kv[1], kv[0]))
        blocks.append(section(_table("Events by cluster", by_cluster, lambda p: code(p, 120))))
    else:
        blocks.append(section("No Capsule8 detections that day."))
    blocks.append(divider())
    blocks.append(section(_open(d)))
    blocks.append(section(_suppressed(d)))
    blocks.append(section(_expiring(d)))
    if d.chart_file_id:
        blocks.append({"type": "image", "slack_file": {"id": d.chart_file_id},
                       "alt_text": "Events per detection over the last 7 days",
                       "title": {"type": "plain_text", "text": "Events per detection, last 7 days"}})
    blocks.append(context([mrkdwn(f"{_when(d.start)} to {_when(d.end)} · `/esm digest` shows it any time")]))
    return clip(title, MAX_TEXT), blocks


def _open(d: DailyDigest) -> str:
    lines = [f"*Findings still open* ({len(d.open_findings)})"]
    for severity, detection, where, count, link in d.open_findings[:OPEN_SHOWN]:
        emoji = _SEVERITY_BY_NAME.get(severity, "")
        name = escape(clip(detection, 120))
        title = f"<{link}|{name}>" if link and link.startswith("https://") else name
        lines.append(f"{emoji} {title} · {code(where, 80)} · {count}×")
    if len(d.open_findings) > OPEN_SHOWN:
        lines.append(f"+{len(d.open_findings) - OPEN_SHOWN} more")
    if not d.open_findings:
        lines.append("None.")
    return clip("\n".join(lines), MAX_SECTION_TEXT)


def _suppressed(d: DailyDigest) -> str:
    lines = [f"*Hidden by suppressions that day:* {d.suppressed} events"]
    for sid, detection, total in d.suppressions_hit[:SUPPRESSIONS_SHOWN]:
        lines.append(f"• {code(sid, 40)} {escape(clip(detection, 100))} · {total} hidden in all")
    if len(d.suppressions_hit) > SUPPRESSIONS_SHOWN:
        lines.append(f"+{len(d.suppressions_hit) - SUPPRESSIONS_SHOWN} more (`/esm benign list`)")
    return clip("\n".join(lines), MAX_SECTION_TEXT)


def _expiring(d: DailyDigest) -> str:
    lines = [f"*Suppressions expiring soon* ({len(d.expiring)})"]
    for sid, detection, at in d.expiring[:SUPPRESSIONS_SHOWN]:
        lines.append(f"• {code(sid, 40)} {escape(clip(detection, 100))} · expires {_when(at)}")
    if len(d.expiring) > SUPPRESSIONS_SHOWN:
        lines.append(f"+{len(d.expiring) - SUPPRESSIONS_SHOWN} more")
    if not d.expiring:
        lines.append("None in the next 3 days.")
    return clip("\n".join(lines), MAX_SECTION_TEXT)


def divider() -> dict[str, Any]:
    return {"type": "divider"}


_SEVERITY_BY_NAME = {severity.name.lower(): emoji for severity, emoji in SEVERITY_EMOJI.items()}
