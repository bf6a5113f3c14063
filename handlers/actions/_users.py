"""Who a user action (#12: disable, re-enable, revoke tokens) acts on, and who it never touches."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.core.actions import ActionContext, Outcome, OutcomeStatus
from bot.core.containment import Suspect, protected_groups, protected_reason, suspect_of
from bot.core.findings import Finding
from bot.core.playbook import playbook_of
from bot.core.ports import WorkspaceError
from handlers.actions._common import escaped, failed, reason, text


def suspect(finding: Finding) -> Suspect | None:
    return suspect_of(finding, finding.context.commands, finding.first_event.event_time)


def named(finding: Finding) -> str:
    """"alice@example.com (why)" for a confirm dialog, or a sentence saying no one is known yet."""
    found = suspect(finding)
    if found is None:
        return "the user behind this finding (none known yet: esm-bot says so before acting)"
    return f"{text(found.user, 100)}, {text(found.why, 120)}"


@dataclass(frozen=True)
class Target:
    user: str
    why: str
    record: dict[str, Any]  # {id, user_name, active, groups}


async def target_user(ctx: ActionContext, verb: str) -> tuple[Target | None, Outcome | None]:
    """The user to act on, after the protections: never the bot's own principal, never a member of
    ESM_PROTECTED_PRINCIPALS (a user listed, or a member of a group listed)."""
    if ctx.clusters is None:
        return None, Outcome.refused(f"Cannot {verb}: no Databricks workspace configured; set DATABRICKS_HOST.")
    found = suspect(ctx.finding)
    if found is None:
        return None, Outcome.refused(f"Cannot {verb}: no user is known behind this finding (no single user, no"
                                     " notebook command before the event, no cluster owner).")
    protected = playbook_of(ctx.extras).protected_principals
    try:
        me = await ctx.clusters.whoami()
        why = protected_reason(found.user, protected, me)
        if why is not None:
            return None, _protected(verb, found.user, why)
        record = await ctx.clusters.find_user(found.user)
    except WorkspaceError as err:
        return None, failed(f"Could not {verb} {text(found.user, 100)}: {reason(err)}")
    if record is None:
        return None, failed(f"Could not {verb} {text(found.user, 100)}: no such user in this workspace.")
    groups = protected_groups(protected) & {g.lower() for g in record.get("groups") or ()}
    if groups:
        return None, _protected(verb, found.user, f"it is a member of the protected group {sorted(groups)[0]}")
    return Target(found.user, found.why, record), None


def _protected(verb: str, user: str, why: str) -> Outcome:
    message = f"Refused: esm-bot never acts on {text(user, 100)} to {verb}: {why}."
    return Outcome(OutcomeStatus.REFUSED, message, private=True, blocks=escaped(message))
