"""Containment as data (#12): cluster ACL grants, the principals a quarantine keeps, who is behind
a finding, and who must never be disabled. Pure: the adapters turn these into SDK calls."""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from bot.core.findings import Finding, NotebookCommand

KINDS = ("user_name", "group_name", "service_principal_name")
KIND_LABEL = {"user_name": "user", "group_name": "group", "service_principal_name": "service principal"}
QUARANTINE_LEVEL = "CAN_MANAGE"  # attach, restart and manage: only the quarantine principals keep any
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_PREFIXES = {"user": "user_name", "group": "group_name", "sp": "service_principal_name",
             "service_principal": "service_principal_name"}


@dataclass(frozen=True, order=True)
class Grant:
    kind: str  # user_name | group_name | service_principal_name
    name: str
    level: str  # CAN_ATTACH_TO | CAN_RESTART | CAN_MANAGE

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "level": self.level}

    @classmethod
    def from_json(cls, data: Any) -> "Grant":
        if not isinstance(data, dict) or data.get("kind") not in KINDS:
            raise ValueError(f"not a grant: {str(data)[:100]}")
        return cls(str(data["kind"]), str(data["name"]), str(data["level"]))

    def text(self) -> str:
        return f"{KIND_LABEL[self.kind]} {self.name} {self.level}"


def principal(text: str) -> tuple[str, str]:
    """(kind, name) of a configured principal: `group:x`, `user:x`, `sp:x`, or bare (an e-mail is
    a user, a UUID a service principal's application id, anything else a group)."""
    raw = text.strip()
    prefix, sep, rest = raw.partition(":")
    if sep and prefix.lower() in _PREFIXES and rest.strip():
        return _PREFIXES[prefix.lower()], rest.strip()
    if "@" in raw:
        return "user_name", raw
    if _UUID.fullmatch(raw):
        return "service_principal_name", raw
    return "group_name", raw


def bot_principal(identity: str) -> tuple[str, str]:
    """The bot's own principal from its SCIM Me user name (a service principal's is its UUID)."""
    return ("service_principal_name", identity) if _UUID.fullmatch(identity) else ("user_name", identity)


def quarantine_grants(principals: Iterable[str], bot_identity: str) -> list[Grant]:
    """Who keeps access to a quarantined cluster: the configured principals and the bot itself."""
    keep = {principal(p) for p in principals if p.strip()} | {bot_principal(bot_identity)}
    return sorted(Grant(kind, name, QUARANTINE_LEVEL) for kind, name in keep)


def grants_to_json(grants: Iterable[Grant]) -> list[dict[str, str]]:
    return [g.to_json() for g in sorted(grants)]


def grants_from_json(data: Any) -> list[Grant]:
    if not isinstance(data, list):
        raise ValueError("grants must be a list")
    return sorted(Grant.from_json(item) for item in data)


def describe(grants: Sequence[Grant], limit: int = 8) -> str:
    if not grants:
        return "no direct grants"
    shown = ", ".join(g.text() for g in sorted(grants)[:limit])
    return shown + (f" and {len(grants) - limit} more" if len(grants) > limit else "")


def changes(expected: Sequence[Grant], found: Sequence[Grant]) -> str | None:
    """What differs between the ACL the bot left and the one found now, or None."""
    added, removed = set(found) - set(expected), set(expected) - set(found)
    if not added and not removed:
        return None
    parts = ([f"added {describe(sorted(added))}"] if added else []) + (
        [f"removed {describe(sorted(removed))}"] if removed else [])
    return "; ".join(parts)


@dataclass(frozen=True)
class Suspect:
    user: str
    why: str


def suspect_of(finding: Finding, commands: Sequence[NotebookCommand], event_time: datetime) -> Suspect | None:
    """The user behind a finding: the single user of a dedicated cluster, else the user of the last
    notebook command on the cluster before the event, else the cluster's owner."""
    cluster = finding.context.cluster
    if cluster is not None and _present(cluster.single_user):
        return Suspect(str(cluster.single_user).strip(), "the single user of this dedicated cluster")
    at = _utc(event_time)
    before = [c for c in commands if c.user and _utc(c.event_time) <= at]
    if before:
        last = max(before, key=lambda c: _utc(c.event_time))
        return Suspect(str(last.user).strip(), f"ran the last notebook command before the event ({last.event_time:%H:%M:%S} UTC)")
    if cluster is not None and _present(cluster.owner):
        return Suspect(str(cluster.owner).strip(), "the cluster's owner (no notebook command found before the event)")
    return None


def protected_reason(user: str, protected: Iterable[str], bot_identity: str | None) -> str | None:
    """Why this user must never be disabled (the bot itself, ESM_PROTECTED_PRINCIPALS), or None."""
    folded = user.strip().lower()
    if bot_identity and folded == bot_identity.strip().lower():
        return "it is the principal esm-bot itself runs as"
    for entry in protected:
        kind, name = principal(entry)
        if kind != "group_name" and name.strip().lower() == folded:
            return "it is listed in ESM_PROTECTED_PRINCIPALS"
    return None


def protected_groups(protected: Iterable[str]) -> set[str]:
    return {name.lower() for kind, name in map(principal, protected) if kind == "group_name"}


def _present(value: str | None) -> bool:
    return bool(value and value.strip())


def _utc(when: datetime) -> datetime:
    """Naive times are UTC by the domain's convention; compare everything as aware UTC."""
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
