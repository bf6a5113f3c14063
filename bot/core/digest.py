"""The backfill digest: one Slack message summing up past events per detection and per cluster.

`Tally` collects what a backfill's sync saw (pure, from the pipeline's per-page plans);
`digest_message` renders it within Slack's limits (DESIGN.md §5), escaping every value that came
from an event, like bot/core/blocks.py.

Pure: imports only the standard library and bot.core.*.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from bot.core.blocks import (
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
from bot.core.findings import Detection, Severity

ROWS_SHOWN = 15  # per table; the rest is one "+N more" line


@dataclass
class Tally:
    """Counts of new events by disposition, detection and where they happened."""

    since: datetime
    until: datetime | None = None
    events: int = 0  # new (not seen before) events
    posted: int = 0  # new findings + repeats: what would have been posted one by one
    findings: int = 0
    suppressed: int = 0
    ignored: int = 0
    detections: Counter[str] = field(default_factory=Counter)
    severity: dict[str, Severity] = field(default_factory=dict)
    category: dict[str, str] = field(default_factory=dict)
    places: Counter[str] = field(default_factory=Counter)  # "cluster <id>" / "instance <id>"

    def add(self, detection: Detection, disposition: str, cluster_id: str | None, instance_id: str | None,
            when: datetime) -> None:
        self.events += 1
        self.until = when if self.until is None or when > self.until else self.until
        if disposition == "ignored":
            self.ignored += 1
            return
        if disposition == "suppressed":
            self.suppressed += 1
            return
        self.posted += 1
        self.findings += disposition == "new_finding"
        self.detections[detection.name] += 1
        self.severity[detection.name] = detection.severity
        self.category[detection.name] = detection.category
        self.places[_place(cluster_id, instance_id)] += 1

    def add_plan(self, dispositions: Iterable[tuple[Any, str, str | None]]) -> None:
        """From a BatchPlan's dispositions: (Classified, disposition, finding key)."""
        for item, disposition, _ in dispositions:
            row = item.row
            self.add(item.detection, disposition, item.cluster_id or row.cluster_id, row.instance_id, row.event_time)


def _place(cluster_id: str | None, instance_id: str | None) -> str:
    if cluster_id:
        return f"cluster {cluster_id}"
    return f"instance {instance_id}" if instance_id else "unknown host"


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
