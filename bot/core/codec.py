"""Findings to and from JSON-ready dicts, for the state store and the outbox."""
from __future__ import annotations

from typing import Any

from bot.core.events import parse_time
from bot.core.findings import ClusterContext, Context, Detection, NotebookCommand, Severity


def context_to_json(context: Context) -> dict[str, Any]:
    return {
        "cluster": None if context.cluster is None else vars(context.cluster).copy(),
        "commands": [_command_to_json(c) for c in context.commands],
        "problems": list(context.problems),
        **({"timing": context.timing} if context.timing else {}),
    }


def context_from_json(data: dict[str, Any] | None) -> Context:
    if not data:
        return Context()
    cluster = data.get("cluster")
    return Context(
        cluster=ClusterContext(**cluster) if cluster else None,
        commands=tuple(_command_from_json(c) for c in data.get("commands", [])),
        problems=tuple(data.get("problems", [])),
        timing=data.get("timing") if isinstance(data.get("timing"), str) else None,
    )


def _command_to_json(command: NotebookCommand) -> dict[str, Any]:
    return {**vars(command), "event_time": command.event_time.isoformat()}


def _command_from_json(data: dict[str, Any]) -> NotebookCommand:
    return NotebookCommand(**{**data, "event_time": parse_time(data["event_time"])})





def detection_to_json(detection: Detection) -> dict[str, Any]:
    return {**vars(detection), "severity": detection.severity.label}


def detection_from_json(data: dict[str, Any]) -> Detection:
    return Detection(**{**data, "severity": Severity.parse(data["severity"])})
