"""The Mark benign modal as Block Kit: the view for a finding and its form state, and the form
state read back from what Slack reports on a change or a submission.

The form's domain (its state, the scopes offered, the suppression a submission makes) is
bot/core/benign_modal.py.

Pure: Block Kit dicts in, Block Kit dicts and domain values out.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.core.benign_modal import (
    B_DATE,
    B_EXPIRY,
    B_NEVER,
    B_PATTERNS,
    B_REASON,
    B_SCOPE,
    FormState,
    scope_choices,
)
from bot.core.findings import Finding
from bot.core.suppressions import DATE_CHOICE, MAX_REASON_CHARS, NEVER_CHOICE
from bot.render.blocks import clip, escape, mrkdwn, plain

CALLBACK_ID = "esm.mark_benign.submit"
# Actions inside the modal: not "esm." ids, so the finding-button listener never takes them.
SCOPE_ACTION = "benign.scope"
EXPIRY_ACTION = "benign.expiry"
REFRESH_ACTION = "benign.refresh"
MODAL_ACTIONS = (SCOPE_ACTION, EXPIRY_ACTION, REFRESH_ACTION)
PATTERNS_ACTION, DATE_ACTION, NEVER_ACTION, REASON_ACTION = "patterns", "date", "never", "reason"

EXPIRY_LABELS = {
    "1h": "1 hour", "24h": "24 hours", "7d": "7 days", "30d": "30 days",
    DATE_CHOICE: "Until the date below", NEVER_CHOICE: "Never (tick the confirmation below)",
}
B_PREVIEW = "preview"  # the preview line's block id; not a field of the form
MAX_METADATA = 3000
PREVIEW_PENDING = "Preview not counted yet: change the scope or press Refresh preview."
# what the modal says while the count runs: it opens at once (Slack's trigger_id lives 3 s) and is
# updated with views.update when the preview arrives
PREVIEW_COMPUTING = "Preview: computing… (counting matching events of the last 7 days)"


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
            {"type": "context", "block_id": B_PREVIEW, "elements": [mrkdwn(escape(preview) or PREVIEW_PENDING)]},
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
