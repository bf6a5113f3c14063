"""Investigate's thread reply (#12): the timeline as Block Kit within Slack's limits however long
it is (every outside value escaped), and a small PNG chart of events over time."""
from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from bot.core.text import clip
from bot.core.timeline import SOURCES, Entry, Window, counts_by_source
from bot.render.blocks import MAX_SECTION_TEXT, context, escape, mrkdwn, section

MAX_LINES_SHOWN = 120  # the rest is in the CSV
MAX_SECTIONS = 40  # leaves room under Slack's 50 blocks for the header and the footers
LINE_CHARS = 280
ICON = {"capsule8": ":rotating_light:", "notebook": ":notebook:", "cluster": ":gear:", "job": ":clock3:",
        "login": ":key:", "token": ":ticket:"}


def timeline_message(title: str, window: Window, entries: Sequence[Entry], problems: Sequence[str],
                     user_line: str | None) -> tuple[str, list[dict[str, Any]]]:
    counts = counts_by_source(entries)
    summary = ", ".join(f"{n} {source}" for source, n in counts.items() if n) or "no entries"
    head = (f"*Investigation* {escape(title)}\n{window.start:%Y-%m-%d %H:%M} – {window.end:%H:%M} UTC"
            f" (event at {window.event:%H:%M:%S}): {summary}")
    blocks = [section(clip(head, MAX_SECTION_TEXT))]
    if user_line:
        blocks.append(context([mrkdwn(clip(escape(user_line), 2000))]))
    shown = nearest(window, entries, MAX_LINES_SHOWN)
    sections = _line_sections(window, shown)
    blocks += sections
    footer = []
    listed = sum(s["text"]["text"].count("\n") + 1 for s in sections)
    if listed < len(entries):
        footer.append(f"Shown: the {listed} entries nearest the event; {len(entries) - listed} more entries in the"
                      f" attached CSV (all {len(entries)}).")
    footer += [f"Not included: {escape(p)}" for p in problems[:5]]
    if footer:
        blocks.append(context([mrkdwn(clip(line, 2000)) for line in footer[:10]]))
    return clip(f"Investigation {title}: {summary}", 3000), blocks


def nearest(window: Window, entries: Sequence[Entry], limit: int) -> list[Entry]:
    """At most `limit` entries, the nearest the event in time, in time order."""
    if len(entries) <= limit:
        return list(entries)
    closest = sorted(entries, key=lambda e: abs((e.time - window.event).total_seconds()))[:limit]
    return sorted(closest)


def _line_sections(window: Window, entries: Sequence[Entry]) -> list[dict[str, Any]]:
    sections: list[dict[str, Any]] = []
    chunk = ""
    for entry in entries:
        line = _line(window, entry)
        if len(chunk) + len(line) + 1 > MAX_SECTION_TEXT:
            sections.append(section(chunk))
            chunk = ""
            if len(sections) >= MAX_SECTIONS:
                return sections
        chunk = f"{chunk}\n{line}" if chunk else line
    if chunk and len(sections) < MAX_SECTIONS:
        sections.append(section(chunk))
    return sections


def _line(window: Window, entry: Entry) -> str:
    offset = _offset(entry.time - window.event)
    who = f" — {escape(entry.who)}" if entry.who else ""
    detail = f": {escape(entry.detail)}" if entry.detail else ""
    text = f"{ICON.get(entry.source, '•')} `{entry.time:%H:%M:%S}` ({offset}) *{escape(entry.what)}*{who}{detail}"
    return clip(" ".join(text.split()), LINE_CHARS)


def _offset(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign = "+" if seconds >= 0 else "−"
    minutes = abs(seconds) // 60
    return f"T{sign}{minutes}m"


def chart_png(window: Window, entries: Sequence[Entry]) -> bytes:
    """Events per 5 minutes by source, as a small PNG (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    bins = int((window.end - window.start).total_seconds() // 300) + 1
    figure = Figure(figsize=(6.4, 2.4), dpi=100)
    axes = figure.add_subplot()
    bottom = [0] * bins
    for source in SOURCES:
        counts = [0] * bins
        for entry in entries:
            if entry.source == source and window.holds(entry.time):
                counts[min(bins - 1, int((entry.time - window.start).total_seconds() // 300))] += 1
        if any(counts):
            axes.bar([i * 5 - 120 for i in range(bins)], counts, width=4.5, bottom=bottom, label=source, align="edge")
            bottom = [b + c for b, c in zip(bottom, counts)]
    axes.axvline(0, color="red", linewidth=1)
    axes.set_xlabel("minutes from the event")
    axes.set_ylabel("entries")
    if any(bottom):
        axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
