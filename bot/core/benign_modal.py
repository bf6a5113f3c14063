"""The Mark benign form as domain values: its state, the scopes a finding can offer, a starting
pattern, and the suppression (or the per-field errors) a submission makes.

The modal itself (the Block Kit view, and reading its submitted state back) is
bot/render/benign_modal.py. The field ids (B_*) are the view's block ids, so Slack shows each
error of a submission next to its field.

Pure: imports only the standard library and bot.core.*.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from bot.core.findings import Finding, lineage_of
from bot.core.suppressions import (
    DATE_CHOICE,
    NEVER_CHOICE,
    Suppression,
    SuppressionError,
    parse_expiry,
    parse_patterns,
    parse_reason,
    scope_for,
)
from bot.core.text import clip

# The form's fields: block ids in the view, and the keys of a submission's errors.
B_SCOPE, B_PATTERNS, B_EXPIRY, B_DATE, B_NEVER, B_REASON = (
    "scope", "patterns", "expiry", "expiry_date", "never_confirm", "reason",
)

CA_STORE_DETECTION = "root certificate store modified"
DEFAULT_EXPIRY = "7d"


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


# ---------------------------------------------------------------------------- submission


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
