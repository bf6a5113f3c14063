"""Disable user (#12): deactivate the user behind the finding through SCIM (`active: false`), which
ends their sessions and blocks their tokens. Who: the single user of a dedicated cluster, else the
user of the last notebook command before the event, else the cluster's owner; the confirm dialog
names who and why. Never the bot's own principal, never a member of ESM_PROTECTED_PRINCIPALS.
"Re-enable user" in the thread note undoes it."""
from __future__ import annotations

from bot.core.actions import UNTIL_CLOSED, ActionContext, ActionSpec, Confirm, Outcome, OutcomeStatus
from bot.core.findings import Finding
from bot.core.ids import ActionId
from bot.core.ports import WorkspaceError
from bot.core.state import ActionRecord, ActionState
from handlers.actions._common import by, failed, private, reason, shown, text
from handlers.actions._users import Target, named, target_user

_PLAN = "disable_user.plan"


def confirm(finding: Finding) -> Confirm:
    return Confirm(
        title="Disable this user?",
        text=f"Deactivate {named(finding)}. Their sessions end and their tokens stop working. Re-enable undoes it.",
        confirm="Disable", deny="Cancel", danger=True,
    )


class DisableUser:
    spec = ActionSpec(
        id=ActionId.DISABLE_USER, label="Disable user", order=35, style="danger", offered_while=UNTIL_CLOSED,
        destructive=True, confirm=confirm, permissions=("workspace admin (SCIM Users: read and patch)",),
    )

    async def preflight(self, ctx: ActionContext) -> Outcome | None:
        state = await ctx.store.action_state(ctx.finding.key, self.spec.id)
        if state is not None:
            return private(OutcomeStatus.ALREADY, f"{text(state.target, 100)} was already disabled by {by(state.user_id)};"
                                                  " re-enable from the thread note.")
        target, refusal = await target_user(ctx, "disable a user")
        if refusal is not None:
            return refusal
        assert target is not None
        if not target.record["active"]:
            return private(OutcomeStatus.ALREADY, f"{text(target.user, 100)} is already deactivated; nothing to do.")
        ctx.extras[_PLAN] = target
        return None

    async def plan(self, ctx: ActionContext) -> str:
        target: Target = ctx.extras[_PLAN]
        return (f"would deactivate user {text(target.user, 100)} ({text(target.why, 160)}) through SCIM"
                " (active: false), ending their sessions and blocking their tokens")

    async def run(self, ctx: ActionContext) -> Outcome:
        target: Target = ctx.extras[_PLAN]
        assert ctx.clusters is not None
        try:
            await ctx.clusters.set_user_active(str(target.record["id"]), False)
            after = await ctx.clusters.find_user(target.user)
        except WorkspaceError as err:
            return failed(f"Could not disable {text(target.user, 100)}: {reason(err)}")
        if after is None or after["active"]:
            return failed(f"Disabling {text(target.user, 100)} did not take: the workspace still reports the user active.")
        before = {"id": target.record["id"], "active": True}
        record = ActionRecord(before=before, after={"id": target.record["id"], "active": False},
                              mark=(self.spec.id, f"User {target.user} disabled"),
                              state=(self.spec.id, ActionState(target.user, before, {"active": False})))
        message = (f"{by(ctx.user_id)} disabled user {text(target.user, 100)} ({text(target.why, 160)}): their"
                   " sessions end and their tokens stop working. Re-enable from this note.")
        return shown(OutcomeStatus.DONE, message, record=record, undo=True)


ACTION = DisableUser()
