"""The answer to `/esm recent` (and the "Recent on this host" button) as Block Kit: the groups
bot/core/recent.py made from the source's rows, within Slack's limits for any number of groups,
every value from an event escaped.

Pure: imports only the standard library, bot.core.* and bot.render.blocks.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from bot.core.recent import RecentGroup, RecentQuery, RecentSummary, window_label
from bot.render.blocks import (
    MAX_BLOCKS,
    MAX_HEADER,
    MAX_TEXT,
    SEVERITY_EMOJI,
    clip,
    code,
    context,
    escape,
    mrkdwn,
    plain,
    section,
)

GROUPS_SHOWN = 40  # groups rendered one by one; the rest are summed up in one line


def render_recent(summary: RecentSummary, query: RecentQuery, *, shown: int = GROUPS_SHOWN) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) within Slack's limits for any number of groups; data escaped."""
    title = f"Recent ESM events — last {window_label(query.window)}"
    head: list[dict[str, Any]] = [{"type": "header", "text": plain(clip(title, MAX_HEADER))}]
    filters = _filters_text(query)
    if filters:
        head.append(context([mrkdwn(clip(f"Filters: {filters}", MAX_TEXT))]))
    head.append(section(_totals(summary)))
    tail = _tail(summary, shown)
    room = max(MAX_BLOCKS - len(head) - len(tail) - 1, 0)  # one spare for "…and N more"
    visible = summary.groups[: min(shown, room)]
    more = _more(summary.groups[len(visible):])
    blocks = [*head, *(_group_block(g) for g in visible), *more, *tail]
    return _fallback(title, filters, summary), blocks


def _filters_text(query: RecentQuery) -> str:
    return " · ".join(f"{escape(label)} {code(value, 200)}" for label, value in query.filters())


def _totals(summary: RecentSummary) -> str:
    if not summary.groups:
        return "No Capsule8 events match."
    return (f"*{_plural(summary.events, 'event')}* on {_plural(summary.hosts, 'host')} in "
            f"{_plural(len(summary.groups), 'group')} (detection × cluster, or × host when its cluster is unknown), "
            "newest first")


def _group_block(group: RecentGroup) -> dict[str, Any]:
    detection = group.detection
    emoji = SEVERITY_EMOJI.get(detection.severity, "")
    if group.cluster_id:
        where = f"cluster {code(group.cluster_id, 200)}"
    elif group.instance_id:
        where = f"host {code(group.instance_id, 200)}"
    else:
        where = "an unknown host"
    lines = [
        f"{emoji} *{escape(detection.severity.label)}* {code(detection.name, 150)} on {where}",
        f"{group.events}× on {_plural(group.hosts, 'host')} · first {_when(group.first_seen)} · "
        f"last {_when(group.last_seen)} · {escape(clip(detection.category, 100))}",
    ]
    return section("\n".join(lines))


def _more(rest: Sequence[RecentGroup]) -> list[dict[str, Any]]:
    if not rest:
        return []
    events = sum(g.events for g in rest)
    return [context([mrkdwn(f"…and {_plural(len(rest), 'more group')} ({_plural(events, 'event')}); narrow the filters to see them")])]


def _tail(summary: RecentSummary, shown: int) -> list[dict[str, Any]]:
    notes = []
    if summary.truncated:
        notes.append(f"Only the {summary.row_limit} most recently active detection × host rows were read; "
                     "shorten the duration or add filters to see everything.")
    if summary.hidden:
        notes.append(f"{_plural(summary.hidden, 'liveness event')} (heartbeats) not shown.")
    return [context([plain(clip(note, MAX_TEXT))]) for note in notes]


def _fallback(title: str, filters: str, summary: RecentSummary) -> str:
    counts = f"{_plural(summary.events, 'event')} in {_plural(len(summary.groups), 'group')}"
    return clip(f"{title}: {counts}" + (f" ({filters})" if filters else ""), MAX_TEXT)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _when(moment: datetime) -> str:
    utc = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return f"{utc:%Y-%m-%d %H:%M} UTC"
