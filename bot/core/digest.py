"""The backfill digest's tally: what a backfill's sync saw, per detection and per cluster.

`Tally` collects the counts (pure, from the pipeline's per-page plans); bot/render/digest.py
renders them as the one Slack message that sums the backfill up.

Pure: imports only the standard library and bot.core.*.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from bot.core.findings import Detection, Severity


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
