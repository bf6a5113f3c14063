"""Audit rows and the values derived from them.

An audit row is the `system.access.audit` shape. Capsule8 rows carry their detection in
`action_name` and the host in `request_params['instanceId']`; every other key is unconfirmed,
so everything here is tolerant: a missing key gives None, never an exception.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

CAPSULE8_SERVICE = "capsule8-alerts-dataplane"
CLAMAV_SERVICE = "clamAVScanService-dataplane"


class RowError(ValueError):
    """An audit row that cannot be used; the message names the field."""


@dataclass(frozen=True)
class AuditRow:
    event_id: str
    event_time: datetime  # always timezone-aware UTC
    workspace_id: str
    service_name: str
    action_name: str
    request_params: Mapping[str, str] = field(default_factory=dict)
    response: Mapping[str, Any] = field(default_factory=dict)
    user_identity: Mapping[str, Any] = field(default_factory=dict)
    source_ip_address: str | None = None

    @property
    def instance_id(self) -> str | None:
        return _first(self.request_params, INSTANCE_KEYS)

    @property
    def cluster_id(self) -> str | None:
        """Capsule8 rows rarely carry it; notebook rows do (`clusterId`)."""
        return _first(self.request_params, CLUSTER_KEYS)

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_time": self.event_time.isoformat(),
            "workspace_id": self.workspace_id,
            "service_name": self.service_name,
            "action_name": self.action_name,
            "request_params": dict(self.request_params),
            "response": dict(self.response),
            "user_identity": dict(self.user_identity),
            "source_ip_address": self.source_ip_address,
        }


INSTANCE_KEYS = ("instanceId", "instance_id")
CLUSTER_KEYS = ("clusterId", "cluster_id")


def _first(params: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = params.get(key)
        if value not in (None, ""):
            return str(value)
    return None


def parse_time(value: Any, name: str = "event_time") -> datetime:
    """Accept datetimes, ISO-8601 strings (with `Z` or a space) and epoch seconds or millis."""
    try:
        return _to_utc(value, name)
    except (OverflowError, OSError, ValueError) as exc:
        if isinstance(exc, RowError):
            raise
        raise RowError(f"{name} is out of range: {str(value)[:64]!r}") from exc


def _to_utc(value: Any, name: str) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, bool):
        raise RowError(f"{name} must be a timestamp, got a boolean")
    if isinstance(value, (int, float)):
        seconds = value / 1000 if value > 10**11 else value
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    if isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "T", 1)
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise RowError(f"{name} is not an ISO-8601 timestamp: {value[:64]!r}") from exc
        return _to_utc(parsed, name)
    raise RowError(f"{name} is missing or empty")


def _mapping(value: Any, name: str) -> dict[str, Any]:
    """Maps arrive as dicts, JSON text, or (from some drivers) lists of key/value pairs."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise RowError(f"{name} is not a JSON object") from exc
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (list, tuple)) and all(_is_pair(p) for p in value):
        return {str(k): v for k, v in value}
    raise RowError(f"{name} must be an object, got {type(value).__name__}")


def _is_pair(item: Any) -> bool:
    return isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], (str, int))


def _string_map(value: Any, name: str) -> dict[str, str]:
    return {str(k): "" if v is None else v if isinstance(v, str) else json.dumps(v) for k, v in _mapping(value, name).items()}


def _required_text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowError(f"{name} is missing or empty")
    if isinstance(value, (dict, list)):
        raise RowError(f"{name} must be text, got {type(value).__name__}")
    return str(value)


def parse_audit_row(data: Any) -> AuditRow:
    """Normalise one audit row (from JSON, DuckDB or the SQL connector) or raise RowError."""
    if not isinstance(data, Mapping):
        raise RowError(f"an audit row must be an object, got {type(data).__name__}")
    workspace = data.get("workspace_id")
    return AuditRow(
        event_id=_required_text(data, "event_id"),
        event_time=parse_time(data.get("event_time")),
        workspace_id="" if workspace is None else str(workspace),
        service_name=_required_text(data, "service_name"),
        action_name=_required_text(data, "action_name"),
        request_params=_string_map(data.get("request_params"), "request_params"),
        response=_mapping(data.get("response"), "response"),
        user_identity=_mapping(data.get("user_identity"), "user_identity"),
        source_ip_address=data.get("source_ip_address") or None,
    )


# ClamAV scan rows carry no detection name: their scan text says whether anything was found.
CLAMAV_INFECTION = "ClamAV Infection"
CLAMAV_CLEAN_SCAN = "ClamAV Clean Scan"
_INFECTED_COUNT = re.compile(r"Infected files:\s*(\d+)")
_FOUND_LINE = re.compile(r"^\s*(.+?):\s*(\S.*?)\s+FOUND\s*$", re.M)
MAX_INFECTIONS = 50


def scan_text(row: AuditRow) -> str:
    result = row.response.get("result")
    return result if isinstance(result, str) else ""


def clamav_infections(row: AuditRow) -> list[tuple[str, str]]:
    """(path, signature) of each `<path>: <signature> FOUND` line of a ClamAV scan."""
    return [(m.group(1), m.group(2)) for m in _FOUND_LINE.finditer(scan_text(row)[:200_000])][:MAX_INFECTIONS]


def detection_name(row: AuditRow) -> str:
    """The catalogue name of a row: Capsule8's action_name, or the outcome of a ClamAV scan."""
    if row.service_name != CLAMAV_SERVICE:
        return row.action_name
    count = _INFECTED_COUNT.search(scan_text(row))
    infected = (count is not None and int(count.group(1)) > 0) or bool(clamav_infections(row))
    return CLAMAV_INFECTION if infected else CLAMAV_CLEAN_SCAN
