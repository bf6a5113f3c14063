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
