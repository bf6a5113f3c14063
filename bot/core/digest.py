"""Digests: the backfill's tally (what a backfill's sync saw, per detection and per cluster), and
the daily digest's schedule (ESM_DIGEST_AT) and content.

`Tally` collects the counts (pure, from the pipeline's per-page plans); bot/render/digest.py
renders them as the one Slack message that sums the backfill up.

Pure: imports only the standard library and bot.core.*.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


# ---------------------------------------------------------------- the daily digest (ESM_DIGEST_AT)


@dataclass(frozen=True)
class DailyAt:
    """When the daily digest goes out: a local time of day in an IANA time zone (zoneinfo)."""

    hour: int
    minute: int
    zone: str = "UTC"

    def tz(self) -> tzinfo:
        return ZoneInfo(self.zone)

    def due_day(self, now: datetime) -> date | None:
        """The local day whose digest is due at `now` (from the set time until midnight), else None."""
        local = now.astimezone(self.tz())
        return local.date() if (local.hour, local.minute) >= (self.hour, self.minute) else None

    def reported(self, day: date) -> tuple[datetime, datetime]:
        """The UTC bounds [start, end) of the local day before `day`: what that day's digest reports."""
        tz = self.tz()
        start = datetime.combine(day - timedelta(days=1), time(0), tz)
        end = datetime.combine(day, time(0), tz)
        return start.astimezone(timezone.utc), end.astimezone(timezone.utc)

    def describe(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d} {self.zone}"


def parse_daily_at(text: str) -> DailyAt:
    """`09:00 Europe/Berlin` (or `09:00`, meaning UTC); ValueError saying what is wrong."""
    parts = text.split()
    if len(parts) not in (1, 2) or ":" not in parts[0]:
        raise ValueError(f"{text!r} is not a time like 09:00 Europe/Berlin")
    hour_text, _, minute_text = parts[0].partition(":")
    if not (hour_text.isdigit() and minute_text.isdigit() and len(minute_text) == 2):
        raise ValueError(f"{text!r} is not a time like 09:00 Europe/Berlin")
    hour, minute = int(hour_text), int(minute_text)
    if hour > 23 or minute > 59:
        raise ValueError(f"{parts[0]!r} is not a time of day (00:00 to 23:59)")
    zone = parts[1] if len(parts) == 2 else "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{zone!r} is not a time zone (an IANA name like Europe/Berlin)") from None
    return DailyAt(hour, minute, zone)


@dataclass(frozen=True)
class DailyDigest:
    """What one day's digest says; bot/render/digest.py renders it."""

    start: datetime
    end: datetime
    zone: str
    by_detection: dict[str, int]  # events per detection (not ignored, not suppressed)
    by_cluster: dict[str, int]  # events per cluster (or instance)
    suppressed: int  # events hidden by suppressions that day
    suppressions_hit: list[tuple[str, str, int]]  # (id, detection, events hidden in all) matched that day
    open_findings: list[tuple[str, str, str, int, str | None]]  # (severity, detection, where, count, link)
    expiring: list[tuple[str, str, datetime]]  # (id, detection, expires_at) within the next days
    chart_file_id: str | None = None
