"""From new audit rows to findings: classify, drop what is not a finding, group repeats.

Pure functions: the pipeline loads the open findings these rows may join, calls `plan_batch`,
and stores what it returns in one transaction.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from bot.core.catalogue import Catalogue
from bot.core.events import AuditRow, detection_name
from bot.core.findings import Context, Detection, Finding


class Disposition:
    NEW_FINDING = "new_finding"
    REPEAT = "repeat"
    IGNORED = "ignored"  # liveness rows such as Heartbeat
    SUPPRESSED = "suppressed"  # matched an active benign suppression


@dataclass(frozen=True)
class Classified:
    row: AuditRow
    detection: Detection
    cluster_id: str | None

    @property
    def group_key(self) -> str:
        return group_key(self.row, self.detection, self.cluster_id)


def group_key(row: AuditRow, detection: Detection, cluster_id: str | None) -> str:
    """Same detection on the same cluster (or instance when no cluster is known) groups."""
    where = f"cluster:{cluster_id}" if cluster_id else f"instance:{row.instance_id or 'unknown'}"
    return f"{row.workspace_id}|{detection.name}|{where}"


def finding_key(group: str, first_event_id: str) -> str:
    return hashlib.sha256(f"{group}|{first_event_id}".encode()).hexdigest()[:20]


def classify(rows: Iterable[AuditRow], catalogue: Catalogue, cluster_of: Callable[[AuditRow], str | None]) -> list[Classified]:
    return [Classified(row, catalogue.lookup(detection_name(row)), cluster_of(row)) for row in rows]


@dataclass
class FindingChange:
    """What one batch did to one finding."""

    finding: Finding
    is_new: bool
    repeats: list[AuditRow] = field(default_factory=list)
    new_hosts: set[str] = field(default_factory=set)


@dataclass
class BatchPlan:
    changes: dict[str, FindingChange] = field(default_factory=dict)
    dispositions: list[tuple[Classified, str, str | None]] = field(default_factory=list)

    @property
    def new_findings(self) -> list[Finding]:
        return [c.finding for c in self.changes.values() if c.is_new]


def plan_batch(
    items: Iterable[Classified],
    open_findings: Mapping[str, Finding],
    window: timedelta,
    is_suppressed: Callable[[Classified], bool] = lambda item: False,
) -> BatchPlan:
    """Assign each event (oldest first) to an open finding within the window or a new one."""
    plan = BatchPlan()
    current = dict(open_findings)  # group key -> latest finding for that group
    for item in sorted(items, key=lambda i: (i.row.event_time, i.row.event_id)):
        if item.detection.ignore:
            plan.dispositions.append((item, Disposition.IGNORED, None))
            continue
        if is_suppressed(item):
            plan.dispositions.append((item, Disposition.SUPPRESSED, None))
            continue
        finding = current.get(item.group_key)
        if finding is not None and _within(finding, item.row.event_time, window):
            change = _add_repeat(plan, finding, item.row)
            plan.dispositions.append((item, Disposition.REPEAT, finding.key))
        else:
            change = _start_finding(plan, item)
            plan.dispositions.append((item, Disposition.NEW_FINDING, change.finding.key))
        current[item.group_key] = change.finding
    return plan


def _within(finding: Finding, when: datetime, window: timedelta) -> bool:
    """A finding covers `window` either side of its first event, and that anchor never moves,
    so how events group does not depend on how they were split into batches; a late row a
    little older than the first event still joins its thread."""
    return abs(when - finding.first_seen) < window


def _start_finding(plan: BatchPlan, item: Classified) -> FindingChange:
    row = item.row
    finding = Finding(
        key=finding_key(item.group_key, row.event_id),
        detection=item.detection,
        first_event=row,
        first_seen=row.event_time,
        last_seen=row.event_time,
        count=1,
        hosts=frozenset({row.instance_id} if row.instance_id else ()),
        context=Context(),
        cluster_id=item.cluster_id,
        group=item.group_key,
    )
    change = FindingChange(finding, is_new=True)
    plan.changes[finding.key] = change
    return change


def _add_repeat(plan: BatchPlan, finding: Finding, row: AuditRow) -> FindingChange:
    change = plan.changes.setdefault(finding.key, FindingChange(finding, is_new=False))
    hosts = finding.hosts | ({row.instance_id} if row.instance_id else set())
    if row.instance_id and row.instance_id not in finding.hosts:
        change.new_hosts.add(row.instance_id)
    change.finding = replace(
        finding,
        count=finding.count + 1,
        hosts=frozenset(hosts),
        last_seen=max(finding.last_seen, row.event_time),
    )
    change.repeats.append(row)  # also for a finding new in this batch: its thread gets them
    return change
