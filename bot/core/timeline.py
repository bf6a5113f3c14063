"""Investigate's timeline (#12): what happened on a finding's instance and cluster, and what its
user did, from 2 hours before the event to 30 minutes after, as one ordered list of entries."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from bot.core.events import AuditRow
from bot.core.findings import NotebookCommand

BEFORE = timedelta(hours=2)
AFTER = timedelta(minutes=30)
USER_LOOKBACK = timedelta(days=7)  # the user's logins and token creations: this far back from the event
SOURCES = ("capsule8", "notebook", "cluster", "job", "login", "token")
CSV_COLUMNS = ("time", "source", "who", "what", "detail")


@dataclass(frozen=True, order=True)
class Entry:
    time: datetime
    source: str  # one of SOURCES
    who: str
    what: str
    detail: str = ""


@dataclass(frozen=True)
class Window:
    start: datetime
    event: datetime
    end: datetime

    @classmethod
    def around(cls, event: datetime) -> "Window":
        at = event if event.tzinfo else event.replace(tzinfo=timezone.utc)
        return cls(at - BEFORE, at, at + AFTER)

    def holds(self, when: datetime | None) -> bool:
        return when is not None and self.start <= _utc(when) <= self.end


def from_capsule8(rows: Iterable[AuditRow]) -> list[Entry]:
    found = []
    for row in rows:
        params = row.request_params
        detail = "; ".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "instanceId")
        found.append(Entry(_utc(row.event_time), "capsule8", row.instance_id or "", row.action_name, detail[:500]))
    return found


def from_commands(commands: Iterable[NotebookCommand]) -> list[Entry]:
    return [Entry(_utc(c.event_time), "notebook", c.user or "", f"notebook {c.notebook_id or '?'}",
                  (c.command_text or "")[:500]) for c in commands]


def from_cluster_events(events: Iterable[dict[str, Any]]) -> list[Entry]:
    return [Entry(_utc(e["time"]), "cluster", "", str(e.get("type") or ""), str(e.get("details") or "")[:500])
            for e in events if e.get("time") is not None]


def from_runs(runs: Iterable[dict[str, Any]]) -> list[Entry]:
    return [Entry(_utc(r["start"]), "job", str(r.get("creator") or ""),
                  f"job run {r.get('run_name') or r.get('job_id')} (run {r.get('run_id')})", str(r.get("state") or ""))
            for r in runs if r.get("start") is not None]


def from_user_activity(user: str, rows: Iterable[dict[str, Any]]) -> list[Entry]:
    found = []
    for row in rows:
        action = str(row.get("action_name") or "")
        source = "token" if action == "generateDbToken" else "login"
        what = "created a personal access token" if source == "token" else f"{action}"
        detail = f"from {row.get('source_ip_address') or '?'}; status {row.get('status_code')}"
        found.append(Entry(_utc(row["event_time"]), source, user, what, detail))
    return found


def ordered(*parts: Sequence[Entry]) -> list[Entry]:
    return sorted(entry for part in parts for entry in part)


def to_csv(entries: Sequence[Entry]) -> bytes:
    """The whole timeline as CSV. A cell that a spreadsheet would run as a formula (=, +, -, @)
    is prefixed with a quote: the values come from outside."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        writer.writerow([e.time.isoformat(), e.source, *(_cell(v) for v in (e.who, e.what, e.detail))])
    return out.getvalue().encode("utf-8")


def counts_by_source(entries: Sequence[Entry]) -> dict[str, int]:
    return {source: sum(1 for e in entries if e.source == source) for source in SOURCES}


def _cell(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
