"""Quarantine cluster (#12): replace the cluster's access control list so that only the principals
in ESM_QUARANTINE_PRINCIPALS and the bot itself can attach, restart or manage it. The cluster keeps
running, so the evidence on it stays. Through the SDK's cluster permissions API (PUT: the direct
grants become exactly these); inherited grants (workspace admins) cannot be removed, and the note
says so. The previous direct grants are recorded; "Undo quarantine" restores them exactly.
"""
from __future__ import annotations

from bot.core.actions import UNTIL_CLOSED, ActionContext, ActionSpec, Confirm, Needs, Outcome, OutcomeStatus
from bot.core.containment import Grant, describe, grants_to_json, quarantine_grants
from bot.core.findings import Finding
from bot.core.ids import ActionId
from bot.core.playbook import playbook_of
from bot.core.ports import WorkspaceError
from bot.core.state import ActionRecord, ActionState
from handlers.actions._common import by, cluster_of, failed, label, private, reason, shown, target_cluster, text

_PLAN = "quarantine_cluster.plan"
MARK = "Quarantined"


def confirm(finding: Finding) -> Confirm:
    known = finding.context.cluster
    cluster = label(known.name if known else None, cluster_of(finding) or "unknown")
    return Confirm(
        title="Quarantine this cluster?",
        text=f"Replace the access list of cluster {cluster}: only the quarantine principals and esm-bot keep"
             " attach, restart and manage; everyone else loses access. It keeps running. Undo restores the list.",
        confirm="Quarantine", deny="Cancel", danger=True,
    )


class QuarantineCluster:
    spec = ActionSpec(
        id=ActionId.QUARANTINE_CLUSTER, label="Quarantine cluster", order=25, style="danger",
        needs=frozenset({Needs.CLUSTER}), offered_while=UNTIL_CLOSED, destructive=True, confirm=confirm,
        permissions=("CAN_MANAGE on the finding's cluster (its permissions)",),
        settings=("quarantine_principals",),
    )

    async def preflight(self, ctx: ActionContext) -> Outcome | None:
        cluster_id, refusal = target_cluster(ctx, "quarantine")
        if refusal is not None:
            return refusal
        assert cluster_id is not None and ctx.clusters is not None
        state = await ctx.store.action_state(ctx.finding.key, self.spec.id)
        if state is not None:
            return private(OutcomeStatus.ALREADY, f"Cluster {text(cluster_id, 100)} is already quarantined"
                                                  f" (by {by(state.user_id)}); undo it from its thread note.")
        principals = playbook_of(ctx.extras).quarantine_principals
        if not principals:
            return private(OutcomeStatus.FAILED, "Cannot quarantine: ESM_QUARANTINE_PRINCIPALS is not set, so no one"
                                                 " would be left to investigate the cluster.")
        try:
            cluster = await ctx.clusters.get_cluster(cluster_id)
            if cluster is None:
                return private(OutcomeStatus.ALREADY, f"Cluster {text(cluster_id, 100)} no longer exists; nothing to quarantine.")
            me = await ctx.clusters.whoami()
            direct, inherited = await ctx.clusters.cluster_grants(cluster_id)
        except WorkspaceError as err:
            return failed(f"Could not quarantine cluster {text(cluster_id, 100)}: esm-bot cannot read or manage its"
                          f" permissions: {reason(err)}")
        new = quarantine_grants(principals, me)
        ctx.extras[_PLAN] = (cluster_id, label(cluster.name, cluster_id), direct, inherited, new)
        return None

    async def plan(self, ctx: ActionContext) -> str:
        _, shown_label, direct, inherited, new = ctx.extras[_PLAN]
        return (f"would replace the ACL of cluster {shown_label} ({text(describe(direct), 600)}) with"
                f" {text(describe(new), 600)}{_inherited(inherited)}")

    async def run(self, ctx: ActionContext) -> Outcome:
        cluster_id, shown_label, direct, inherited, new = ctx.extras[_PLAN]
        assert ctx.clusters is not None
        try:
            await ctx.clusters.replace_cluster_grants(cluster_id, new)
            after, inherited = await ctx.clusters.cluster_grants(cluster_id)
        except WorkspaceError as err:
            return failed(f"Could not quarantine cluster {shown_label}: {reason(err)}")
        before_json, after_json = grants_to_json(direct), grants_to_json(after)
        message = (f"{by(ctx.user_id)} quarantined cluster {shown_label}: only {text(describe(after), 600)} keep"
                   f" access; it keeps running. Previous grants (restored by Undo): {text(describe(direct), 600)}."
                   f"{_inherited(inherited)}")
        record = ActionRecord(before=before_json, after=after_json, mark=(self.spec.id, MARK),
                              state=(self.spec.id, ActionState(cluster_id, before_json, after_json)))
        return shown(OutcomeStatus.DONE, message, record=record, undo=True)


def _inherited(inherited: list[Grant]) -> str:
    if not inherited:
        return ""
    return (f" Inherited grants cannot be removed and stay: {text(describe(inherited), 300)}"
            " (workspace admins keep access).")


ACTION = QuarantineCluster()
