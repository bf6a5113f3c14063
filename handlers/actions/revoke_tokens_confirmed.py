"""Revoke tokens (#12), step 2: delete every personal access token of the user behind the finding
(token management API). Not reversible: the confirm says so. Offered only in step 1's answer."""
from __future__ import annotations

from bot.core.actions import UNTIL_CLOSED, ActionContext, ActionSpec, Confirm, Outcome, OutcomeStatus
from bot.core.findings import Finding
from bot.core.ids import ActionId
from bot.core.ports import WorkspaceError
from bot.core.state import ActionRecord
from handlers.actions._common import by, failed, private, reason, shown, text
from handlers.actions._users import Target, named, target_user

_PLAN = "revoke_tokens_confirmed.plan"


def confirm(finding: Finding) -> Confirm:
    return Confirm(title="Revoke these tokens?",
                   text=f"Delete every listed personal access token of {named(finding)}. This is NOT reversible:"
                        " a token cannot be restored; the user must create new ones.",
                   confirm="Revoke", deny="Cancel", danger=True)


class RevokeTokensConfirmed:
    spec = ActionSpec(
        id=ActionId.REVOKE_TOKENS_CONFIRMED, label="Revoke these tokens", order=38, style="danger",
        offered_while=UNTIL_CLOSED, destructive=True, confirm=confirm, hidden=True,
        permissions=("workspace admin (token management: list and delete)",),
    )

    async def preflight(self, ctx: ActionContext) -> Outcome | None:
        target, refusal = await target_user(ctx, "revoke tokens")
        if refusal is not None:
            return refusal
        assert target is not None and ctx.clusters is not None
        try:
            tokens = await ctx.clusters.user_tokens(target.user)
        except WorkspaceError as err:
            return failed(f"Could not list the tokens of {text(target.user, 100)}: {reason(err)}")
        if not tokens:
            return private(OutcomeStatus.ALREADY, f"{text(target.user, 100)} has no personal access tokens left.")
        ctx.extras[_PLAN] = (target, tokens)
        return None

    async def plan(self, ctx: ActionContext) -> str:
        target, tokens = ctx.extras[_PLAN]
        return f"would delete {len(tokens)} personal access token(s) of {text(target.user, 100)}: {_comments(tokens)}"

    async def run(self, ctx: ActionContext) -> Outcome:
        target: Target = ctx.extras[_PLAN][0]
        tokens = ctx.extras[_PLAN][1]
        assert ctx.clusters is not None
        deleted, problems = [], []
        for token in tokens:
            try:
                await ctx.clusters.delete_token(str(token["token_id"]))
                deleted.append(token)
            except WorkspaceError as err:
                problems.append(reason(err))
        before = [{"token_id": t["token_id"], "comment": t["comment"]} for t in tokens]
        after = [{"token_id": t["token_id"], "comment": t["comment"]} for t in tokens if t not in deleted]
        record = ActionRecord(before=before, after=after,
                              mark=(ActionId.REVOKE_TOKENS, f"Tokens of {target.user} revoked") if deleted else None)
        failed_part = f" {len(problems)} could not be deleted: {text(problems[0], 300)}." if problems else ""
        status = OutcomeStatus.DONE if deleted else OutcomeStatus.FAILED
        message = (f"{by(ctx.user_id)} revoked {len(deleted)} personal access token(s) of {text(target.user, 100)}:"
                   f" {_comments(deleted)}. Not reversible.{failed_part}")
        return shown(status, message, record=record)


def _comments(tokens: list[dict[str, object]]) -> str:
    shown_ = ", ".join(text(str(t.get("comment") or "(no comment)"), 60) for t in tokens[:10])
    return shown_ + (f" and {len(tokens) - 10} more" if len(tokens) > 10 else "")


ACTION = RevokeTokensConfirmed()
