"""Databricks SQL alert webhook payloads, current and legacy.

The payload is only a trigger: rows come from the audit source. Unknown fields are ignored,
since Databricks adds fields over time; what is checked is what we use and what proves the
body is an alert at all.

Current SQL alerts (AlertsV2, what `esm-bot deploy` creates) send the documented payload:
`{"event": "alert_state_change", "url_base", "alert": {"title", "description", "alert": {"id",
"name", "owner": {"id", "name", "email"}, "query_text", "warehouse_id", "custom_summary",
"custom_description", "evaluations": [{…, "state"?}]}}}`, where "fields without values are
omitted". Legacy alerts send `{"event", "url_base", "alert": {"id", "name", "state", "title",
"description", "query_id", …}}`. A body that is neither says which field was expected.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 32


class PayloadError(ValueError):
    """The body is not a DBSQL alert payload; the message says what is wrong."""


EXPECTED = ("expected 'alert.alert.id' (current SQL alerts: {event, alert: {title, alert: {id, name, …}}}) "
            "or 'alert.id' (legacy alerts: {event, alert: {id, name, state, …}})")


@dataclass(frozen=True)
class AlertNotice:
    shape: str  # "current" or "legacy"
    event: str | None
    alert_id: str
    alert_name: str | None
    state: str | None
    url_base: str | None
    owner: str | None = None  # the owner's email (or name); current alerts send an object
    summary: str | None = None  # current alerts: custom_summary, as configured


def parse_alert_payload(body: bytes) -> AlertNotice:
    data = _json_object(body)
    alert = data.get("alert")
    if not isinstance(alert, Mapping):
        raise PayloadError(f"field 'alert' is {_what(alert)}: {EXPECTED}")
    inner = alert.get("alert")
    if isinstance(inner, Mapping):
        return _current(data, alert, inner)
    if inner is not None:
        raise PayloadError(f"field 'alert.alert' is {_what(inner)}: {EXPECTED}")
    if "id" not in alert:
        raise PayloadError(f"neither 'alert.alert.id' nor 'alert.id' is given: {EXPECTED}")
    return _legacy(data, alert)


def _what(value: Any) -> str:
    return "missing" if value is None else f"a JSON {type(value).__name__}, not an object"


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except RecursionError:
        raise PayloadError(f"body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, over-long integer literals
        raise PayloadError(f"body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"body must be a JSON object, got {type(data).__name__}")
    if _depth(data) > MAX_DEPTH:
        raise PayloadError(f"body is nested deeper than {MAX_DEPTH} levels")
    return data


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_DEPTH:
        return level
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return max((_depth(child, level + 1) for child in children), default=level)


def _current(data: Mapping[str, Any], outer: Mapping[str, Any], inner: Mapping[str, Any]) -> AlertNotice:
    return AlertNotice(
        shape="current",
        event=_optional_text(data, "event"),
        alert_id=_id(inner, "alert.alert.id"),
        alert_name=_optional_text(inner, "name") or _optional_text(outer, "title"),
        state=_optional_text(inner, "state") or _evaluated_state(inner) or _optional_text(outer, "state"),
        url_base=_optional_text(data, "url_base"),
        owner=_owner(inner.get("owner")),
        summary=_optional_text(inner, "custom_summary"),
    )


def _evaluated_state(inner: Mapping[str, Any]) -> str | None:
    """The first evaluation's state, when the payload carries one."""
    evaluations = inner.get("evaluations")
    if not isinstance(evaluations, list):
        return None
    states = (_optional_text(e, "state") for e in evaluations if isinstance(e, Mapping))
    return next((state for state in states if state), None)


def _owner(value: Any) -> str | None:
    """`owner` is an object {id, name, email} in the documented payload; a plain string is kept."""
    if isinstance(value, str):
        return value[:500] or None
    if isinstance(value, Mapping):
        return _optional_text(value, "email") or _optional_text(value, "name")
    return None


def _legacy(data: Mapping[str, Any], alert: Mapping[str, Any]) -> AlertNotice:
    return AlertNotice(
        shape="legacy",
        event=_optional_text(data, "event"),
        alert_id=_id(alert, "alert.id"),
        alert_name=_optional_text(alert, "name") or _optional_text(alert, "title"),
        state=_optional_text(alert, "state"),
        url_base=_optional_text(data, "url_base"),
    )


def _id(data: Mapping[str, Any], path: str) -> str:
    value = data.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise PayloadError(f"field '{path}' must be a non-empty string: {EXPECTED}")
    return str(value)[:200]


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value[:500] if isinstance(value, str) else None
