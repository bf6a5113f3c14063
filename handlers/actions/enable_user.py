"""Re-enable user (#12): the undo of Disable user, from its thread note: the user's `active` flag
is set back to what it was (true) through SCIM, while the recorded deactivation still applies."""
from __future__ import annotations

from bot.core.actions import ALWAYS, ActionContext, ActionSpec, Outcome, OutcomeStatus
from bot.core.ids import ActionId
from bot.core.ports import WorkspaceError
from bot.core.state import ActionRecord
from handlers.actions._common import by, failed, private, reason, shown, text

_PLAN = "enable_user.plan"


class EnableUser:
    spec = ActionSpec(
        id=ActionId.ENABLE_USER, label="Re-enable user", order=36, offered_while=ALWAYS, destructive=True,
        undoes=ActionId.DISABLE_USER, permissions=("workspace admin (SCIM Users: read and patch)",),
    )

    async def preflight(self, ctx: ActionContext) -> Outcome | None:
        state = await ctx.store.action_state(ctx.finding.key, ActionId.DISABLE_USER)
        if state is None:
            return private(OutcomeStatus.ALREADY, "No user is disabled for this finding (already re-enabled); nothing to undo.")
        if ctx.clusters is None:
            return Outcome.refused("Cannot re-enable: no Databricks workspace configured; set DATABRICKS_HOST.")
        try:
            current = await ctx.clusters.find_user(state.target)
        except WorkspaceError as err:
            return failed(f"Could not re-enable {text(state.target, 100)}: {reason(err)}")
        if current is None:
            return failed(f"Could not re-enable {text(state.target, 100)}: the user no longer exists.")
        ctx.extras[_PLAN] = (state.target, current, bool((state.before or {}).get("active", True)))
        return None

    async def plan(self, ctx: ActionContext) -> str:
        user, _, active = ctx.extras[_PLAN]
        return f"would set user {text(user, 100)} back to active: {str(active).lower()} through SCIM"

    async def run(self, ctx: ActionContext) -> Outcome:
        user, current, active = ctx.extras[_PLAN]
        assert ctx.clusters is not None
        meanwhile = " (someone had already re-activated the user by hand)" if current["active"] else ""
        try:
            await ctx.clusters.set_user_active(str(current["id"]), active)
            after = await ctx.clusters.find_user(user)
        except WorkspaceError as err:
            return failed(f"Could not re-enable {text(user, 100)}: {reason(err)}")
        record = ActionRecord(before={"active": current["active"]}, after={"active": bool(after and after["active"])},
                              mark=(ActionId.DISABLE_USER, None), state=(ActionId.DISABLE_USER, None))
        return shown(OutcomeStatus.DONE, f"{by(ctx.user_id)} re-enabled user {text(user, 100)}{meanwhile}.", record=record)


ACTION = EnableUser()
