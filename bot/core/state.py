"""The records the state store takes and gives back (bot.core.ports): events as stored, and the
outbox's typed items: one enum of kinds, one dataclass per payload.

An outbox payload is stored as a JSON object (its kind beside it in its own column); the shape is
the one every earlier release wrote, so items queued before an upgrade are still sent after it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeAlias

MAX_DIGEST_HOSTS = 500  # host ids kept to count distinct hosts; past that the count is a floor
CORRELATION_KEY = "cid"  # where a payload keeps the correlation id of the sync that queued it


class OutboxKind(StrEnum):
    POST = "post"  # the finding's parent message
    UPDATE = "update"  # the parent message rendered again
    REPLY = "reply"  # one repeat event in the thread
    DIGEST = "digest"  # later repeats, counted
    NOTE = "note"  # an action's note in the thread
    INCIDENT = "incident"  # a storm incident's message (#14): one per detection and channel
    INCIDENT_UPDATE = "incident_update"  # the incident message rendered again with its counts
    INCIDENT_LIST = "incident_list"  # the incident's members not listed in its thread yet


FOLDED_KINDS = (OutboxKind.UPDATE, OutboxKind.DIGEST, OutboxKind.INCIDENT_UPDATE, OutboxKind.INCIDENT_LIST)
"""Kinds of which a thread keeps at most one pending, unattempted item: a new one is folded into it
when written (an update renders the message as it is then; digests add up; a list lists what is
unlisted then)."""


@dataclass(frozen=True)
class PostPayload:
    correlation: str | None = None
    kind = OutboxKind.POST


@dataclass(frozen=True)
class UpdatePayload:
    correlation: str | None = None
    kind = OutboxKind.UPDATE


@dataclass(frozen=True)
class ReplyPayload:
    row: dict[str, Any]  # the raw audit row, as stored (AuditRow.to_json)
    correlation: str | None = None
    kind = OutboxKind.REPLY


@dataclass(frozen=True)
class DigestPayload:
    events: int
    hosts: tuple[str, ...] = ()  # at most MAX_DIGEST_HOSTS, sorted
    correlation: str | None = None
    kind = OutboxKind.DIGEST

    @classmethod
    def of(cls, events: int, hosts: set[str], correlation: str | None = None) -> "DigestPayload":
        return cls(events, tuple(sorted(hosts)[:MAX_DIGEST_HOSTS]), correlation)

    def merged(self, others: list["DigestPayload"]) -> "DigestPayload":
        """Several pending digests of one finding as one: events add up, hosts are a union."""
        hosts = set(self.hosts).union(*(o.hosts for o in others))
        return DigestPayload.of(self.events + sum(o.events for o in others), hosts, self.correlation)


@dataclass(frozen=True)
class NotePayload:
    text: str
    correlation: str | None = None
    kind = OutboxKind.NOTE


@dataclass(frozen=True)
class IncidentPayload:
    """An incident's message, its update, or the listing of its members: rendered from the
    store when sent, so the payload carries nothing but its kind."""

    kind: OutboxKind = OutboxKind.INCIDENT
    correlation: str | None = None


Payload: TypeAlias = PostPayload | UpdatePayload | ReplyPayload | DigestPayload | NotePayload | IncidentPayload


class PayloadError(ValueError):
    """A stored outbox payload cannot be read back; the message says which part."""


def payload_to_json(payload: Payload) -> dict[str, Any]:
    body: dict[str, Any]
    if isinstance(payload, ReplyPayload):
        body = {"row": payload.row}
    elif isinstance(payload, DigestPayload):
        body = {"events": payload.events, "hosts": list(payload.hosts)}
    elif isinstance(payload, NotePayload):
        body = {"text": payload.text}
    else:
        body = {}
    if payload.correlation is not None:
        body[CORRELATION_KEY] = payload.correlation
    return body


def payload_from_json(kind: str, body: Any) -> Payload:
    try:
        known = OutboxKind(kind)
    except ValueError:
        raise PayloadError(f"unknown outbox kind {kind!r}") from None
    if not isinstance(body, dict):
        raise PayloadError(f"{known} payload is not a JSON object")
    cid = body.get(CORRELATION_KEY)
    cid = cid if isinstance(cid, str) else None
    try:
        if known is OutboxKind.REPLY:
            return ReplyPayload(dict(body["row"]), cid)
        if known is OutboxKind.DIGEST:
            hosts = body.get("hosts")
            return DigestPayload(int(body.get("events", 0)), tuple(map(str, hosts)) if isinstance(hosts, list) else (), cid)
        if known is OutboxKind.NOTE:
            return NotePayload(str(body["text"]), cid)
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"{known} payload is malformed: {exc}") from None
    if known in (OutboxKind.INCIDENT, OutboxKind.INCIDENT_UPDATE, OutboxKind.INCIDENT_LIST):
        return IncidentPayload(known, cid)
    return PostPayload(cid) if known is OutboxKind.POST else UpdatePayload(cid)


def with_correlation(payload: Payload, correlation: str | None) -> Payload:
    return payload if correlation is None else replace(payload, correlation=correlation)


@dataclass(frozen=True)
class NewOutboxItem:
    """An item to queue: for which finding, and what."""

    finding_key: str  # or an incident's key
    payload: Payload
    priority: int = 0  # parent posts: 10 + severity, sent first; thread items 0, in the order written

    @property
    def kind(self) -> OutboxKind:
        return self.payload.kind


@dataclass(frozen=True)
class OutboxItem:
    """A queued item as the store gives it back."""

    id: int
    finding_key: str
    payload: Payload
    attempts: int = 0

    @property
    def kind(self) -> OutboxKind:
        return self.payload.kind


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


@dataclass(frozen=True)
class HeartbeatSeen:
    """A host's newest stored Capsule8 heartbeat."""

    instance_id: str
    workspace_id: str
    cluster_id: str | None
    last_at: datetime
