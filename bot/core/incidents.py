"""Storm roll-ups (#14): when a sync's new findings for one channel would take longer than the
storm budget to post at Slack's pace, the findings of each detection become ONE incident message.

An incident is (channel, detection, opened_at). Its member findings are ordinary findings (state,
/esm, audit trail) that carry the incident's key and are never posted one by one; the incident
message counts them, and its thread lists every one.

When is the storm over? A channel storms while a sync's new findings for it exceed the budget.
The storm is over for a channel as soon as a later sync brings new findings for that channel
that fit the budget (they are posted individually, and the channel's open incidents close), or
when an open incident has seen no new member for longer than the group window (the next new
finding of that detection then starts afresh: a new incident if the channel storms again, an
individual message otherwise). A closed incident still counts later repeats of its members.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.core.findings import Detection, Finding, FindingStatus


@dataclass(frozen=True)
class Incident:
    key: str
    channel: str
    detection: Detection
    opened_at: datetime
    last_joined_at: datetime  # when the newest member joined
    closed_at: datetime | None = None  # the storm is over for this incident: no new members
    ts: str | None = None  # the incident message, once posted
    listed: int = 0  # members listed in its thread so far

    def open_for(self, now: datetime, window: timedelta) -> bool:
        return self.closed_at is None and now - self.last_joined_at <= window


def incident_key(channel: str, detection: str, first_member: str) -> str:
    digest = hashlib.sha256(f"{channel}\x00{detection}\x00{first_member}".encode()).hexdigest()[:20]
    return f"inc-{digest}"


def is_incident_key(key: str) -> bool:
    return key.startswith("inc-")


def storming(messages: int, post_interval: float, budget: float) -> bool:
    """Would `messages` posts, one every post_interval seconds, take longer than the budget?"""
    return messages > 1 and messages * max(post_interval, 0.0) > budget


@dataclass(frozen=True)
class ClusterRow:
    """One affected cluster of an incident, as its table and list show it."""

    finding_key: str
    cluster_id: str | None
    name: str | None
    owner: str | None
    access_mode: str | None
    workspace_id: str
    events: int
    hosts: int
    status: FindingStatus = FindingStatus.OPEN


@dataclass(frozen=True)
class IncidentSummary:
    events: int
    findings: int
    clusters: int
    hosts: int
    workspaces: int
    first_seen: datetime
    last_seen: datetime
    rows: tuple[ClusterRow, ...]  # the members, most events first (the store gives the top ones only)
    open_clusters: int | None = None  # clusters Terminate all would touch (None: count them in rows)

    @property
    def terminate_count(self) -> int:
        return self.open_clusters if self.open_clusters is not None else len(self.terminable)

    @property
    def terminable(self) -> tuple[ClusterRow, ...]:
        """The members tied to a cluster and not closed yet, one row per cluster."""
        seen: set[str] = set()
        rows = []
        for row in self.rows:
            if row.status not in (FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED):
                continue
            if row.cluster_id and row.cluster_id not in seen:
                seen.add(row.cluster_id)
                rows.append(row)
        return tuple(rows)


def summarise(members: Sequence[Finding]) -> IncidentSummary:
    if not members:
        raise ValueError("an incident has at least one member")
    rows = sorted((_row(f) for f in members), key=lambda r: (-r.events, r.name or "", r.finding_key))
    hosts = set().union(*(f.hosts for f in members))
    return IncidentSummary(
        events=sum(f.count for f in members),
        findings=len(members),
        clusters=len({f.cluster_id or f.key for f in members}),
        hosts=len(hosts),
        workspaces=len({f.first_event.workspace_id for f in members}),
        first_seen=min(f.first_seen for f in members),
        last_seen=max(f.last_seen for f in members),
        rows=tuple(rows),
    )


def cluster_row(f: Finding) -> ClusterRow:
    return _row(f)


def _row(f: Finding) -> ClusterRow:
    known = f.context.cluster
    owner = None
    if known is not None:
        owner = known.single_user or known.owner
    return ClusterRow(
        finding_key=f.key,
        cluster_id=f.cluster_id or (known.cluster_id if known else None),
        name=known.name if known is not None else None,
        owner=owner,
        access_mode=known.access_mode if known is not None else None,
        workspace_id=f.first_event.workspace_id,
        events=f.count,
        hosts=len(f.hosts),
        status=f.status,
    )


def unlisted(members_in_join_order: Iterable[Finding], listed: int) -> list[Finding]:
    return list(members_in_join_order)[listed:]
