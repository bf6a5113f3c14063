"""The Mark benign modal as pure data: the view for a finding, its submitted state, and the
suppression (or the per-block errors) a submission makes.

Pure: Block Kit dicts in, Block Kit dicts and domain values out.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.core.blocks import clip, escape, mrkdwn, plain
from bot.core.findings import Finding, lineage_of
from bot.core.suppressions import (
    DATE_CHOICE,
    MAX_REASON_CHARS,
    NEVER_CHOICE,
    Suppression,
    SuppressionError,
    parse_expiry,
    parse_patterns,
    parse_reason,
    scope_for,
)

CALLBACK_ID = "esm.mark_benign.submit"
# Actions inside the modal: not "esm." ids, so the finding-button listener never takes them.
SCOPE_ACTION = "benign.scope"
EXPIRY_ACTION = "benign.expiry"
REFRESH_ACTION = "benign.refresh"
MODAL_ACTIONS = (SCOPE_ACTION, EXPIRY_ACTION, REFRESH_ACTION)

B_SCOPE, B_PATTERNS, B_EXPIRY, B_DATE, B_NEVER, B_REASON, B_PREVIEW = (
    "scope", "patterns", "expiry", "expiry_date", "never_confirm", "reason", "preview",
)
PATTERNS_ACTION, DATE_ACTION, NEVER_ACTION, REASON_ACTION = "patterns", "date", "never", "reason"

CA_STORE_DETECTION = "root certificate store modified"
EXPIRY_LABELS = {
    "1h": "1 hour", "24h": "24 hours", "7d": "7 days", "30d": "30 days",
    DATE_CHOICE: "Until the date below", NEVER_CHOICE: "Never (tick the confirmation below)",
}
DEFAULT_EXPIRY = "7d"
MAX_METADATA = 3000
PREVIEW_PENDING = "Preview not counted yet: change the scope or press Refresh preview."


@dataclass(frozen=True)
class FormState:
    scope: str
    patterns: str = ""
    expiry: str = DEFAULT_EXPIRY
    on_date: str | None = None
    confirm_never: bool = False
    reason: str = ""


# --------------------------------------------------------------------------------- scopes


def scope_choices(finding: Finding) -> list[tuple[str, str]]:
    """(kind, label) for the scopes this finding can offer: cluster only when it is known."""
    event = finding.first_event
    choices = []
    if event.instance_id:
        choices.append(("instance", f"This instance ({event.instance_id})"))
    if finding.cluster_id:
        name = finding.context.cluster.name if finding.context.cluster and finding.context.cluster.name else None
        choices.append(("cluster", f"This cluster ({name or finding.cluster_id})"))
    if event.workspace_id:
        choices.append(("workspace", f"This workspace ({event.workspace_id})"))
    choices.append(("everywhere", "Everywhere"))
    return [(kind, clip(label, 150)) for kind, label in choices]


def pattern_hint(finding: Finding) -> str:
    """A starting pattern: for a CA-store change, its directory in the same origin."""
    if " ".join(finding.detection.name.split()).casefold() != CA_STORE_DETECTION:
        return ""
    lineage = lineage_of(finding.first_event)
    if not lineage.file_path:
        return ""
    lines = [f"origin={lineage.origin}"] if lineage.origin in ("container", "host") else []
    directory = os.path.dirname(lineage.file_path)
    lines.append(f"file_path={directory.rstrip('/')}/*" if directory else f"file_path={lineage.file_path}")
    return "\n".join(lines)


def default_state(finding: Finding) -> FormState:
    return FormState(scope=scope_choices(finding)[0][0], patterns=pattern_hint(finding))


# ----------------------------------------------------------------------------------- view


def build_view(finding: Finding, state: FormState, preview: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "private_metadata": finding.key[:MAX_METADATA],
        "title": plain("Mark benign"),
        "submit": plain("Suppress"),
        "close": plain("Cancel"),
        "blocks": [
            _intro(finding),
            _scope_block(finding, state),
            _patterns_block(state),
            _expiry_block(state),
            _date_block(state),
            _never_block(state),
            _reason_block(state),
            {"type": "context", "block_id": B_PREVIEW, "elements": [mrkdwn(escape(preview))]},
            {"type": "actions", "block_id": "preview_actions",
             "elements": [{"type": "button", "action_id": REFRESH_ACTION, "text": plain("Refresh preview")}]},
        ],
    }


def _intro(finding: Finding) -> dict[str, Any]:
    text = (
        f"*Detection:* {escape(finding.detection.name)}\n"
        "Matching events will not be posted; they are still stored and counted on this finding."
    )
    return {"type": "section", "block_id": "detection", "text": mrkdwn(clip(text, 3000))}


def _option(value: str, label: str) -> dict[str, Any]:
    return {"text": plain(clip(label, 75)), "value": value}


def _scope_block(finding: Finding, state: FormState) -> dict[str, Any]:
    options = [_option(kind, label) for kind, label in scope_choices(finding)]
    element: dict[str, Any] = {"type": "radio_buttons", "action_id": SCOPE_ACTION, "options": options}
    chosen = next((o for o in options if o["value"] == state.scope), None)
    if chosen is not None:
        element["initial_option"] = chosen
    return {"type": "input", "block_id": B_SCOPE, "dispatch_action": True, "label": plain("Scope"), "element": element}


def _patterns_block(state: FormState) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input", "action_id": PATTERNS_ACTION, "multiline": True, "max_length": 3000,
        "placeholder": plain("file_path=/usr/local/share/ca-certificates/*"),
    }
    if state.patterns:
        element["initial_value"] = state.patterns
    return {
        "type": "input", "block_id": B_PATTERNS, "optional": True, "label": plain("Patterns on the event's fields"),
        "hint": plain("One field=glob per line, all must match. Fields: origin, file_path, command_line, "
                      "container_id, image, … or any raw request_params key."),
        "element": element,
    }


def _expiry_block(state: FormState) -> dict[str, Any]:
    options = [_option(value, label) for value, label in EXPIRY_LABELS.items()]
    chosen = next((o for o in options if o["value"] == state.expiry), options[2])
    return {
        "type": "input", "block_id": B_EXPIRY, "dispatch_action": True, "label": plain("Expires after"),
        "element": {"type": "static_select", "action_id": EXPIRY_ACTION, "options": options, "initial_option": chosen},
    }


def _date_block(state: FormState) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "datepicker", "action_id": DATE_ACTION}
    if state.on_date:
        element["initial_date"] = state.on_date
    return {"type": "input", "block_id": B_DATE, "optional": True, "label": plain("Expiry date (UTC, inclusive)"),
            "element": element}


def _never_block(state: FormState) -> dict[str, Any]:
    option = _option("confirmed", "I confirm: this suppression never expires")
    element: dict[str, Any] = {"type": "checkboxes", "action_id": NEVER_ACTION, "options": [option]}
    if state.confirm_never:
        element["initial_options"] = [option]
    return {"type": "input", "block_id": B_NEVER, "optional": True, "label": plain("Never expire"), "element": element}


def _reason_block(state: FormState) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input", "action_id": REASON_ACTION, "multiline": True, "max_length": MAX_REASON_CHARS,
        "placeholder": plain("Why is this benign? Shown next to every suppressed count."),
    }
    if state.reason:
        element["initial_value"] = state.reason
    return {"type": "input", "block_id": B_REASON, "label": plain("Reason"), "element": element}


# ---------------------------------------------------------------------------- submission


def read_state(values: Mapping[str, Any] | None, fallback: FormState) -> FormState:
    """The form as Slack reports it in view.state.values; absent fields keep `fallback`'s."""
    values = values if isinstance(values, Mapping) else {}

    def element(block: str, action: str) -> Mapping[str, Any]:
        found = (values.get(block) or {}).get(action) if isinstance(values.get(block), Mapping) else None
        return found if isinstance(found, Mapping) else {}

    def selected(block: str, action: str, default: str) -> str:
        option = element(block, action).get("selected_option")
        return str(option.get("value")) if isinstance(option, Mapping) and option.get("value") else default

    never = element(B_NEVER, NEVER_ACTION).get("selected_options")
    return FormState(
        scope=selected(B_SCOPE, SCOPE_ACTION, fallback.scope),
        patterns=_text(element(B_PATTERNS, PATTERNS_ACTION), fallback.patterns),
        expiry=selected(B_EXPIRY, EXPIRY_ACTION, fallback.expiry),
        on_date=element(B_DATE, DATE_ACTION).get("selected_date") or None,
        confirm_never=isinstance(never, list) and any(isinstance(o, Mapping) and o.get("value") == "confirmed" for o in never),
        reason=_text(element(B_REASON, REASON_ACTION), ""),
    )


def _text(element: Mapping[str, Any], default: str) -> str:
    if "value" not in element:
        return default
    value = element.get("value")
    return value if isinstance(value, str) else ""


def preview_draft(finding: Finding, state: FormState) -> tuple[Suppression | None, str | None]:
    """What the preview counts: scope and patterns only (expiry and reason do not change it)."""
    try:
        scope = scope_for(state.scope, finding)
        match = parse_patterns(state.patterns)
    except SuppressionError as exc:
        return None, f"No preview: {exc}"
    return Suppression(id="preview", detection=finding.detection.name, scope=scope, match=match, reason="",
                       created_by="", finding_key=finding.key), None


def draft_for(finding: Finding, state: FormState, user_id: str, now: datetime) -> tuple[Suppression | None, dict[str, str]]:
    """The suppression a submission asks for, or Slack's per-block error messages."""
    errors: dict[str, str] = {}
    scope = match = expires = reason = None
    try:
        scope = scope_for(state.scope, finding) if state.scope in dict(scope_choices(finding)) else None
        if scope is None:
            errors[B_SCOPE] = "Choose one of the scopes offered."
    except SuppressionError as exc:
        errors[B_SCOPE] = str(exc)
    try:
        match = parse_patterns(state.patterns)
    except SuppressionError as exc:
        errors[B_PATTERNS] = str(exc)
    try:
        expires = parse_expiry(state.expiry, now, on_date=state.on_date, confirm_never=state.confirm_never)
    except SuppressionError as exc:
        errors[_expiry_block_for(state)] = str(exc)
    try:
        reason = parse_reason(state.reason)
    except SuppressionError as exc:
        errors[B_REASON] = str(exc)
    if errors or scope is None or match is None:
        return None, errors
    return Suppression(
        id="", detection=finding.detection.name, scope=scope, match=match, reason=reason or "",
        created_by=user_id, created_at=now, expires_at=expires, finding_key=finding.key, source="slack",
    ), {}


def _expiry_block_for(state: FormState) -> str:
    if state.expiry == NEVER_CHOICE:
        return B_NEVER
    return B_DATE if state.expiry == DATE_CHOICE or state.on_date else B_EXPIRY
