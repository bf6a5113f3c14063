"""Undo quarantine (#12): put back exactly the direct grants the quarantine replaced, and say what
changed on the cluster's list meanwhile (someone granted or removed access by hand). Offered as a
button in the quarantine's thread note, to responders, while the quarantine still applies."""
from __future__ import annotations

from bot.core.actions import ALWAYS, ActionContext, ActionSpec, Needs, Outcome, OutcomeStatus
from bot.core.containment import changes, describe, grants_from_json, grants_to_json
from bot.core.ids import ActionId
from bot.core.ports import WorkspaceError
from bot.core.state import ActionRecord
from handlers.actions._common import by, failed, private, reason, shown, text

_PLAN = "undo_quarantine.plan"


class UndoQuarantine:
    spec = ActionSpec(
        id=ActionId.UNDO_QUARANTINE, label="Undo quarantine", order=26, needs=frozenset({Needs.CLUSTER}),
        offered_while=ALWAYS, destructive=True, undoes=ActionId.QUARANTINE_CLUSTER,
        permissions=("CAN_MANAGE on the finding's cluster (its permissions)",),
    )

    async def preflight(self, ctx: ActionContext) -> Outcome | None:
        state = await ctx.store.action_state(ctx.finding.key, ActionId.QUARANTINE_CLUSTER)
        if state is None:
            return private(OutcomeStatus.ALREADY, "This cluster is not quarantined any more (already undone); nothing to undo.")
        if ctx.clusters is None:
            return Outcome.refused("Cannot undo: no Databricks workspace configured; set DATABRICKS_HOST.")
        if ctx.value.cluster_id != state.target:
            return Outcome.refused("Refused: this button names a different cluster than the quarantine (forged request).")
        try:
            current, _ = await ctx.clusters.cluster_grants(state.target)
        except WorkspaceError as err:
            return failed(f"Could not undo the quarantine of cluster {text(state.target, 100)}: {reason(err)}")
        previous, left = grants_from_json(state.before), grants_from_json(state.after)
        ctx.extras[_PLAN] = (state.target, previous, current, changes(left, current))
        return None

    async def plan(self, ctx: ActionContext) -> str:
        cluster_id, previous, current, _ = ctx.extras[_PLAN]
        return (f"would replace the ACL of cluster {text(cluster_id, 100)} ({text(describe(current), 500)}) with the"
                f" grants it had before the quarantine: {text(describe(previous), 600)}")

    async def run(self, ctx: ActionContext) -> Outcome:
        cluster_id, previous, current, meanwhile = ctx.extras[_PLAN]
        assert ctx.clusters is not None
        try:
            await ctx.clusters.replace_cluster_grants(cluster_id, previous)
            restored, _ = await ctx.clusters.cluster_grants(cluster_id)
        except WorkspaceError as err:
            return failed(f"Could not undo the quarantine of cluster {text(cluster_id, 100)}: {reason(err)}")
        note = (f" Changed by hand while quarantined, and replaced now: {text(meanwhile, 600)}." if meanwhile
                else " Nothing else changed on its list meanwhile.")
        mismatch = changes(previous, restored)
        if mismatch:
            note += f" The list read back differs from the one recorded: {text(mismatch, 400)}."
        message = (f"{by(ctx.user_id)} undid the quarantine of cluster {text(cluster_id, 100)}: restored"
                   f" {text(describe(restored), 600)}.{note}")
        record = ActionRecord(before=grants_to_json(current), after=grants_to_json(restored),
                              mark=(ActionId.QUARANTINE_CLUSTER, None), state=(ActionId.QUARANTINE_CLUSTER, None))
        return shown(OutcomeStatus.DONE, message, record=record)


ACTION = UndoQuarantine()
