"""Degraded is loud: which part of the bot is failing, since when, and what to tell the channel.

Every sync and every Slack delivery reports success or failure of the part it used: the state
store, the audit source (the SQL warehouse or the embedded store) and Slack. A part that has
failed without a success for longer than ESM_DEGRADED_AFTER is degraded: /readyz answers 503
naming it, and the findings channel is told once (again at most once an hour while it lasts) and
told again when it ends. Pure and in memory, so it works when the state store is the broken part.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

STATE_STORE = "state store"
AUDIT_SOURCE = "audit source"
SLACK = "Slack"
PARTS = (STATE_STORE, AUDIT_SOURCE, SLACK)
REMIND_EVERY = timedelta(hours=1)
MAX_REASON = 300


@dataclass
class PartHealth:
    failing_since: datetime | None = None
    reason: str = ""
    last_success: datetime | None = None
    failures: int = 0


@dataclass(frozen=True)
class Problem:
    part: str
    reason: str
    since: datetime

    def line(self) -> str:
        return f"{self.part}: {self.reason} since {self.since.strftime('%Y-%m-%d %H:%M:%S UTC')}"


@dataclass
class Degradation:
    after: timedelta
    parts: dict[str, PartHealth] = field(default_factory=lambda: {p: PartHealth() for p in PARTS})
    announced: dict[str, datetime] = field(default_factory=dict)  # part -> when the channel was last told

    def failure(self, part: str, reason: str, now: datetime) -> None:
        health = self.parts.setdefault(part, PartHealth())
        if health.failing_since is None:
            health.failing_since = now
        health.reason = " ".join(reason.split())[:MAX_REASON] or "failed"
        health.failures += 1

    def success(self, part: str, now: datetime) -> None:
        health = self.parts.setdefault(part, PartHealth())
        health.failing_since, health.reason, health.failures = None, "", 0
        health.last_success = now

    def failing(self) -> list[Problem]:
        """Every part failing now, however briefly."""
        return [Problem(part, h.reason, h.failing_since) for part, h in self.parts.items() if h.failing_since]

    def degraded(self, now: datetime) -> list[Problem]:
        """The parts failing for longer than `after`."""
        return [p for p in self.failing() if now - p.since >= self.after]

    def to_announce(self, now: datetime) -> tuple[list[Problem], list[str]]:
        """(degraded parts to announce now, parts that recovered since they were announced);
        the caller posts, then calls `announced_at` / `recovered` for what went out."""
        due = [p for p in self.degraded(now)
               if p.part not in self.announced or now - self.announced[p.part] >= REMIND_EVERY]
        failing = {p.part for p in self.failing()}
        recovered = [part for part in self.announced if part not in failing]
        return due, recovered

    def announced_at(self, problems: list[Problem], now: datetime) -> None:
        for problem in problems:
            self.announced[problem.part] = now

    def recovered(self, parts: list[str]) -> None:
        for part in parts:
            self.announced.pop(part, None)


def degraded_text(problem: Problem) -> str:
    return f"esm-bot is degraded: {problem.line()}; detections may be delayed"


def recovered_text(part: str, now: datetime) -> str:
    return (f"esm-bot recovered: {part} works again ({now.strftime('%Y-%m-%d %H:%M:%S UTC')}); "
            "detections held back meanwhile are posted now")
