"""Revoke tokens (#12), step 1: list the personal access tokens the user behind the finding
created (token management API), with their comments, creation and last use, to the clicker only,
with a "Revoke N tokens" button whose confirm says it is not reversible. Step 2 is
revoke_tokens_confirmed. Never the bot's own principal, never ESM_PROTECTED_PRINCIPALS."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.core.actions import UNTIL_CLOSED, ActionContext, ActionSpec, Confirm, Outcome, OutcomeStatus
from bot.core.findings import Finding
from bot.core.ids import ActionId
from bot.core.ports import WorkspaceError
from bot.render.blocks import button, escape, section
from handlers.actions._common import failed, private, reason, text
from handlers.actions._users import named, target_user
from handlers.actions.revoke_tokens_confirmed import ACTION as CONFIRMED

MAX_LISTED = 20


def confirm(finding: Finding) -> Confirm:
    return Confirm(title="List this user's tokens?",
                   text=f"List the personal access tokens of {named(finding)}. Nothing is deleted until you"
                        " confirm the list.", confirm="List tokens", deny="Cancel")


def token_line(token: dict[str, Any]) -> str:
    comment = token.get("comment") or "(no comment)"
    return (f"• {escape(text(comment, 80))}: created {_day(token.get('created'))}, last used"
            f" {_day(token.get('last_used'))}, expires {_day(token.get('expires'))}")


def _day(when: datetime | None) -> str:
    return f"{when:%Y-%m-%d}" if when else "never"


class RevokeTokens:
    spec = ActionSpec(
        id=ActionId.REVOKE_TOKENS, label="Revoke tokens", order=37, offered_while=UNTIL_CLOSED, confirm=confirm,
        permissions=("workspace admin (token management: list and delete)",),
    )

    async def preflight(self, ctx: ActionContext) -> Outcome | None:
        target, refusal = await target_user(ctx, "revoke tokens")
        if refusal is not None:
            return refusal
        ctx.extras["revoke_tokens.user"] = target
        return None

    async def run(self, ctx: ActionContext) -> Outcome:
        target = ctx.extras["revoke_tokens.user"]
        assert ctx.clusters is not None
        try:
            tokens = await ctx.clusters.user_tokens(target.user)
        except WorkspaceError as err:
            return failed(f"Could not list the tokens of {text(target.user, 100)}: {reason(err)}")
        if not tokens:
            return private(OutcomeStatus.DONE, f"{text(target.user, 100)} has no personal access tokens; nothing to revoke.")
        lines = [token_line(t) for t in tokens[:MAX_LISTED]]
        more = [f"… and {len(tokens) - MAX_LISTED} more"] if len(tokens) > MAX_LISTED else []
        head = (f"*{len(tokens)} personal access token(s) of {escape(text(target.user, 100))}*"
                f" ({escape(text(target.why, 160))}):")
        blocks = [section("\n".join([head, *lines, *more])[:3000])]
        blocks.append({"type": "actions", "elements": [button(CONFIRMED.spec, ctx.value.to_json(), ctx.finding)]})
        return Outcome(OutcomeStatus.DONE, f"Listed {len(tokens)} token(s) of {text(target.user, 100)}.",
                       private=True, blocks=tuple(blocks))


ACTION = RevokeTokens()
