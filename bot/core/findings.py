"""The values a finding is made of: lineage, cluster context, notebook commands, the finding."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from bot.core.events import AuditRow


class Severity(IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> "Severity":
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {text!r}; expected one of {names}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Detection:
    """One entry of the detection catalogue (rules/detections.yml)."""

    name: str
    category: str
    severity: Severity
    description: str
    guidance: str
    ignore: bool = False  # liveness and other non-findings: stored, never posted


UNCATEGORISED = "Uncategorised"


# Capsule8 row keys are unconfirmed: each field is looked up under every spelling seen or likely.
LINEAGE_KEYS: dict[str, tuple[str, ...]] = {
    "container_id": ("containerId", "container_id", "containerID"),
    "container_name": ("containerName", "container_name"),
    "image": ("imageName", "image", "containerImage", "image_name"),
    "process_chain": ("processLineage", "lineage", "processChain", "process_chain", "processTree"),
    "command_line": ("commandLine", "cmdline", "command_line", "processCommandLine", "command"),
    "file_path": ("filePath", "file_path", "path", "fileName"),
    "process_user": ("user", "userName", "uid", "processUser"),
}


@dataclass(frozen=True)
class Lineage:
    origin: str  # "container", "host" or "unknown"
    container_id: str | None = None
    container_name: str | None = None
    image: str | None = None
    process_chain: tuple[str, ...] = ()
    command_line: str | None = None
    file_path: str | None = None
    process_user: str | None = None


def lineage_of(row: AuditRow) -> Lineage:
    found = {name: _lookup(row.request_params, keys) for name, keys in LINEAGE_KEYS.items()}
    origin = _origin(row.request_params, found["container_id"])
    return Lineage(
        origin=origin,
        container_id=found["container_id"],
        container_name=found["container_name"],
        image=found["image"],
        process_chain=_chain(found["process_chain"]),
        command_line=found["command_line"],
        file_path=found["file_path"],
        process_user=found["process_user"],
    )


def _lookup(params: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = params.get(key)
        if value not in (None, ""):
            return str(value)
    return None


def _origin(params: Mapping[str, str], container_id: str | None) -> str:
    explicit = (params.get("origin") or params.get("location") or "").lower()
    if explicit in ("container", "host"):
        return explicit
    if container_id:
        return "host" if is_host_container_id(container_id) else "container"
    return "unknown"


def is_host_container_id(container_id: str) -> bool:
    """The host's own "container" is reported with an all-zero id on some agents."""
    return set(container_id) <= {"0", "-"}


def _chain(value: str | None) -> tuple[str, ...]:
    """A process chain arrives as a JSON list, or text joined by '>', '->' or newlines."""
    if not value:
        return ()
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
            return tuple(_process_label(item) for item in items)
        except (ValueError, TypeError, RecursionError):  # not a list after all, or absurdly nested
            pass
    for separator in ("->", ">", "\n", "|"):
        if separator in text:
            return tuple(part.strip() for part in text.split(separator) if part.strip())
    return (text,)


def _process_label(item: Any) -> str:
    if isinstance(item, Mapping):
        name = item.get("name") or item.get("exe") or item.get("comm") or "?"
        pid = item.get("pid")
        return f"{name} ({pid})" if pid is not None else str(name)
    return str(item)


@dataclass(frozen=True)
class ClusterContext:
    cluster_id: str
    name: str | None = None
    owner: str | None = None  # creator_user_name
    single_user: str | None = None
    access_mode: str | None = None  # data_security_mode
    policy_id: str | None = None
    state: str | None = None
    runtime: str | None = None  # spark_version / dbr_version
    node_role: str | None = None  # "driver" or "executor" for the instance in question
    source: str = "api"  # where the context came from: "api" or "system tables"


@dataclass(frozen=True)
class NotebookCommand:
    event_time: datetime
    user: str | None
    notebook_id: str | None
    command_text: str | None
    status: str | None = None


@dataclass(frozen=True)
class Context:
    """Everything enrichment found, and why anything is missing."""

    cluster: ClusterContext | None = None
    commands: tuple[NotebookCommand, ...] = ()
    problems: tuple[str, ...] = ()
    timing: str | None = None  # the event's time said plainly when it is odd (late, or ahead of the clock)


class FindingStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    BENIGN = "benign"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class Finding:
    """One group of events: same detection on the same cluster (or instance) within a window."""

    key: str
    detection: Detection
    first_event: AuditRow
    first_seen: datetime
    last_seen: datetime
    count: int = 1
    hosts: frozenset[str] = frozenset()
    context: Context = Context()
    status: FindingStatus = FindingStatus.OPEN
    status_by: str | None = None
    status_note: str | None = None
    suppressed_count: int = 0
    cluster_id: str | None = None  # resolved at grouping time (the event rarely carries it)
    group: str = ""  # the grouping key: workspace | detection | cluster or instance
