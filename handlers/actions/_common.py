"""Helpers the playbook actions share (not an action: the registry skips `_` modules)."""
from __future__ import annotations

import logging
from typing import Any

from bot.core.actions import ActionContext, Outcome, OutcomeStatus
from bot.core.findings import Finding, FindingStatus
from bot.core.ports import WorkspaceError
from bot.core.state import ActionRecord
from bot.render.blocks import actor, inert, note_message

log = logging.getLogger(__name__)


def cluster_of(finding: Finding) -> str | None:
    """The one cluster this finding may act on, from the bot's own state (never the button)."""
    known = finding.context.cluster
    for candidate in (finding.cluster_id, known.cluster_id if known else None, finding.first_event.cluster_id):
        if candidate and candidate.strip():
            return candidate
    return None


def target_cluster(ctx: ActionContext, verb: str) -> tuple[str | None, Outcome | None]:
    if ctx.clusters is None:
        return None, Outcome.refused(f"Cannot {verb}: no Databricks workspace configured; set DATABRICKS_HOST.")
    expected = cluster_of(ctx.finding)
    if expected is None:
        return None, Outcome.refused(f"Cannot {verb}: this finding is not tied to a known cluster.")
    if ctx.value.cluster_id != expected:
        return None, Outcome.refused(
            "Refused: this button names a different cluster than its finding (stale message or forged request).")
    return expected, None


def label(name: str | None, ident: str) -> str:
    shown = text(ident, 100)
    return f"{text(name, 80)} ({shown})" if name and name.strip() else shown


def text(value: str, limit: int) -> str:
    """An outside value on one line, short, with no live mention (mention_safe only revives the clicker's)."""
    flat = " ".join(inert(value).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def reason(err: WorkspaceError) -> str:
    """The API's reason without the client configuration the SDK appends to 401/403 messages."""
    log.warning("databricks: %s", err)
    return text(str(err).split(". Config: ", 1)[0], 400)


def shown(status: OutcomeStatus, message: str, *, record: ActionRecord | None = None, undo: bool = False,
          finding_status: FindingStatus | None = None, note: str | None = None) -> Outcome:
    """In the thread (and answered privately as escaped blocks)."""
    return Outcome(status, message, finding_status=finding_status, blocks=escaped(message), note=note,
                   record=record, undo=undo)


def private(status: OutcomeStatus, message: str) -> Outcome:
    return Outcome(status, message, private=True, blocks=escaped(message))


def failed(message: str) -> Outcome:
    return shown(OutcomeStatus.FAILED, message)


def escaped(message: str) -> tuple[dict[str, Any], ...]:
    return tuple(note_message(message)[1])


def by(user_id: str) -> str:
    """Who acted: a Slack user as a mention, the bot itself (an automatic page) as plain text."""
    return actor(user_id)
