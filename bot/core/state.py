"""The records the state store takes and gives back, shared by every StateStore (bot.core.ports)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class OutboxItem:
    id: int
    finding_key: str
    kind: str  # "post" (parent), "update" (parent), "reply", "digest" or "note" (thread)
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class EventRecord:
    event_id: str
    event_time: datetime
    detection: str
    disposition: str
    finding_key: str | None
    workspace_id: str
    instance_id: str | None
    cluster_id: str | None


MAX_DIGEST_HOSTS = 500  # host ids kept to count distinct hosts; past that the count is a floor


def digest_payload(events: int, hosts: set[str]) -> dict[str, Any]:
    return {"events": events, "hosts": sorted(hosts)[:MAX_DIGEST_HOSTS]}


def host_count(payload: dict[str, Any]) -> int:
    hosts = payload.get("hosts")
    return len(hosts) if isinstance(hosts, list) else int(hosts or 0)


def merge_digests(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """Several pending digests of one finding as one: events add up, hosts are a union."""
    hosts: set[str] = set()
    for payload in payloads:
        if isinstance(payload.get("hosts"), list):
            hosts.update(payload["hosts"])
    merged = digest_payload(sum(int(p.get("events", 0)) for p in payloads), hosts)
    return {**payloads[0], **merged}
