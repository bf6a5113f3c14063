"""Slack ids the bot owns, and the typed value every finding button carries.

A button value travels through Slack and comes back in an interaction payload that anyone who
can forge a request could have written, so it is parsed strictly, once, in one place.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any


class ActionId(StrEnum):
    """Slack `action_id`s of the finding buttons (each at most 255 characters)."""

    ACKNOWLEDGE = "esm.acknowledge"
    MARK_BENIGN = "esm.mark_benign"
    TERMINATE_CLUSTER = "esm.terminate_cluster"
    RECENT_ON_HOST = "esm.recent_on_host"
    # the responder's playbook (#12)
    QUARANTINE_CLUSTER = "esm.quarantine_cluster"
    UNDO_QUARANTINE = "esm.undo_quarantine"
    DISABLE_USER = "esm.disable_user"
    ENABLE_USER = "esm.enable_user"
    REVOKE_TOKENS = "esm.revoke_tokens"
    REVOKE_TOKENS_CONFIRMED = "esm.revoke_tokens_confirmed"
    INVESTIGATE = "esm.investigate"
    PAGE_ONCALL = "esm.page_oncall"
    TERMINATE_ANYWAY = "esm.terminate_anyway"


BUTTON_VALUE_VERSION = 1
MAX_VALUE_CHARS = 2000  # Slack's limit for a button `value`
# An id longer than this is not a real EC2 or cluster id. It is dropped, never shortened: a
# shortened cluster id could name a different cluster, and this one can terminate clusters.
MAX_ID_CHARS = 200
_FIELDS = ("v", "finding_key", "instance_id", "cluster_id")


@dataclass(frozen=True)
class ButtonValue:
    finding_key: str
    instance_id: str | None
    cluster_id: str | None
    v: int = BUTTON_VALUE_VERSION

    def compact(self) -> ButtonValue:
        """This value with over-long ids dropped; ValueError if even the key cannot fit."""
        if not self.finding_key:
            raise ValueError("button value needs a non-empty finding key")
        trimmed = replace(self, instance_id=_fitting_id(self.instance_id), cluster_id=_fitting_id(self.cluster_id))
        size = len(trimmed._encode())
        if size > MAX_VALUE_CHARS:
            raise ValueError(f"button value would be {size} characters; Slack allows {MAX_VALUE_CHARS}")
        return trimmed

    def to_json(self) -> str:
        """Compact JSON, ASCII only (so its length is what Slack counts), under 2,000 chars."""
        return self.compact()._encode()

    def _encode(self) -> str:
        data = {"v": self.v, "finding_key": self.finding_key}
        data |= {name: value for name, value in self._ids().items() if value is not None}
        return json.dumps(data, separators=(",", ":"), ensure_ascii=True)

    def _ids(self) -> dict[str, str | None]:
        return {"instance_id": self.instance_id, "cluster_id": self.cluster_id}

    @classmethod
    def from_json(cls, text: Any) -> ButtonValue:
        data = _decode_object(text)
        _check_version(data)
        return cls(
            finding_key=_required_key(data),
            instance_id=_optional_id(data, "instance_id"),
            cluster_id=_optional_id(data, "cluster_id"),
        )


def _fitting_id(value: str | None) -> str | None:
    if not value or len(json.dumps(value)) > MAX_ID_CHARS:
        return None
    return value


def _decode_object(text: Any) -> dict[str, Any]:
    if not isinstance(text, str):
        raise ValueError(f"button value must be text, got {type(text).__name__}")
    if len(text) > MAX_VALUE_CHARS:
        raise ValueError(f"button value is {len(text)} characters; at most {MAX_VALUE_CHARS} are allowed")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: deeply nested arrays
        raise ValueError(f"button value is not JSON: {str(exc)[:80]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"button value must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ValueError(f"button value has unknown keys: {', '.join(map(repr, unknown))[:200]}")
    return data


def _check_version(data: dict[str, Any]) -> None:
    if "v" not in data:
        raise ValueError("button value has no version 'v'")
    version = data["v"]
    # bool is an int in Python; `true` must not pass for version 1
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"button value version must be an integer, got {type(version).__name__}")
    if version != BUTTON_VALUE_VERSION:
        raise ValueError(f"unknown button value version {version}; this bot understands {BUTTON_VALUE_VERSION}")


def _required_key(data: dict[str, Any]) -> str:
    if "finding_key" not in data:
        raise ValueError("button value has no 'finding_key'")
    key = data["finding_key"]
    if not isinstance(key, str) or not key:
        raise ValueError("button value 'finding_key' must be non-empty text")
    return key


def _optional_id(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"button value {name!r} must be non-empty text or absent")
    return value
