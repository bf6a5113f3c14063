"""Terminate cluster: stop the finding's cluster through clusters.delete, which TERMINATES (the
cluster can be started again). The SDK's permanent deletion is never called.

Destructive: responders only, once per finding (the dispatcher's claim); with ESM_DRY_RUN the
dispatcher reports plan() and never calls run().
The pre-flight checks that the button names this finding's cluster, that a workspace is
configured and that the cluster still runs, and notes what stopping it will interrupt.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from datetime import datetime, timedelta, timezone

from bot.core.actions import UNTIL_CLOSED, ActionContext, ActionSpec, Confirm, Needs, Outcome, OutcomeStatus
from bot.core.findings import Finding, FindingStatus
from bot.core.ids import ActionId
from bot.core.ports import WorkspaceError
from bot.core.playbook import playbook_of
from bot.render.blocks import button, escape, inert, section
from handlers.actions._common import failed, private, shown

log = logging.getLogger(__name__)

STOPPED_STATES = ("TERMINATED", "TERMINATING")
MAX_NAME = 80  # a cluster name long enough to push the warning out of Slack's 300-char dialog
RUNS_NAMED = 5  # job runs named in a message; the rest are counted
_PLAN = "terminate_cluster.plan"  # key in ctx.extras: what the pre-flight found, for run()
SHARED_WINDOW = timedelta(hours=1)  # "shared": more than one user ran notebook commands on it this recently


def cluster_of(finding: Finding) -> str | None:
    """The one cluster this finding may terminate, from the bot's own state (never the button)."""
    known = finding.context.cluster
    for candidate in (finding.cluster_id, known.cluster_id if known else None, finding.first_event.cluster_id):
        if candidate and candidate.strip():
            return candidate
    return None


def confirm(finding: Finding) -> Confirm:
    known = finding.context.cluster
    name = known.name if known is not None else None
    cluster_id = (known.cluster_id if known is not None else None) or cluster_of(finding) or "unknown"
    return Confirm(
        title="Terminate this cluster?",
        text=f"Terminate cluster {_label(name, cluster_id)}? Running notebooks and jobs on it stop."
        " It can be started again later. If it is shared, esm-bot first offers Quarantine instead.",
        confirm="Terminate",
        deny="Cancel",
        danger=True,
    )


class TerminateCluster:
    spec = ActionSpec(
        id=ActionId.TERMINATE_CLUSTER,
        label="Terminate cluster",
        order=30,
        style="danger",
        needs=frozenset({Needs.CLUSTER}),
        offered_while=UNTIL_CLOSED,
        responders_only=True,
        destructive=True,
        confirm=confirm,
        permissions=("CAN_RESTART or CAN_MANAGE on the finding's cluster",),
    )
    offers_quarantine = True  # Terminate anyway (its follow-up) does not ask again

    async def preflight(self, ctx: ActionContext) -> Outcome | None:
        cluster_id, refusal = _target(ctx)
        if refusal is not None:
            return refusal
        assert cluster_id is not None and ctx.clusters is not None
        try:
            cluster = await ctx.clusters.get_cluster(cluster_id)
        except WorkspaceError as err:
            return failed(f"Could not terminate cluster {_label(None, cluster_id)}: {_reason(err)}")
        if cluster is None:
            return private(OutcomeStatus.ALREADY, f"Cluster {_label(None, cluster_id)} no longer exists; nothing to terminate.")
        label, state = _label(cluster.name, cluster_id), _text(cluster.state or "UNKNOWN", 40)
        if state in STOPPED_STATES:
            return _already_stopped(ctx, label, state)
        if self.offers_quarantine:
            choice = await _quarantine_instead(ctx, cluster_id, label)
            if choice is not None:
                return choice
        ctx.extras[_PLAN] = (cluster_id, label, state, await _interrupted(ctx, cluster_id))
        return None

    async def plan(self, ctx: ActionContext) -> str:
        _, label, state, interrupted = ctx.extras[_PLAN]
        return f"would terminate cluster {label}, state {state}, interrupting {interrupted}"

    async def run(self, ctx: ActionContext) -> Outcome:
        cluster_id, label, state, interrupted = ctx.extras[_PLAN]
        assert ctx.clusters is not None
        try:
            await ctx.clusters.terminate_cluster(cluster_id)
        except WorkspaceError as err:
            return failed(f"Could not terminate cluster {label}: {_reason(err)}")
        done = f"{label}, which was {state}; interrupted {interrupted}. It can be started again from the cluster page."
        return shown(OutcomeStatus.DONE, f"<@{ctx.user_id}> terminated cluster {done}",
                      finding_status=FindingStatus.TERMINATED, note=f"Terminated {done}")


def _target(ctx: ActionContext) -> tuple[str | None, Outcome | None]:
    if ctx.clusters is None:
        return None, Outcome.refused("Cannot terminate: no Databricks workspace configured; set DATABRICKS_HOST.")
    expected = cluster_of(ctx.finding)
    if expected is None:
        return None, Outcome.refused("Cannot terminate: this finding is not tied to a known cluster.")
    if ctx.value.cluster_id != expected:
        return None, Outcome.refused(
            "Refused: this button names a different cluster than its finding (stale message or forged request)."
        )
    return expected, None


async def _quarantine_instead(ctx: ActionContext, cluster_id: str, label: str) -> Outcome | None:
    """On a shared cluster (more than one user attached in the last hour), offer Quarantine instead:
    it keeps everyone's work and the evidence, and shuts everyone else out."""
    playbook = playbook_of(ctx.extras)
    if playbook.audit is None or not playbook.quarantine_principals:
        return None
    now = datetime.now(timezone.utc)
    try:
        commands = await playbook.audit.notebook_commands(cluster_id, now - SHARED_WINDOW, now, 500)
    except Exception as err:  # best effort: the terminate goes on as before
        log.warning("terminate: could not tell whether %s is shared: %s", cluster_id, err)
        return None
    users = sorted({c.user for c in commands if c.user})
    if len(users) <= 1:
        return None
    from handlers.actions.quarantine_cluster import ACTION as QUARANTINE

    named = ", ".join(_text(u, 60) for u in users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
    text = (f"Cluster {label} is shared: {len(users)} users attached in the last hour ({named}). Terminating stops"
            " all their work and the evidence on the host. Quarantine instead keeps it running for the quarantine"
            " principals only (undoable).")
    value = ctx.value.to_json()
    blocks = (section(escape(text)), {"type": "actions", "elements": [
        button(QUARANTINE.spec, value, ctx.finding), button(ANYWAY_SPEC, value, ctx.finding)]})
    return Outcome(OutcomeStatus.CHOICE, text, private=True, blocks=blocks)


def _already_stopped(ctx: ActionContext, label: str, state: str) -> Outcome:
    text = f"Cluster {label} is already terminated (state {state}); nothing to do."
    if ctx.finding.status == FindingStatus.TERMINATED:
        return private(OutcomeStatus.ALREADY, text)
    return shown(OutcomeStatus.ALREADY, text, finding_status=FindingStatus.TERMINATED, note=text)


async def _interrupted(ctx: ActionContext, cluster_id: str) -> str:
    """One line: the job runs that stopping the cluster interrupts (best effort)."""
    assert ctx.clusters is not None
    try:
        runs = await ctx.clusters.active_runs_on_cluster(cluster_id)
    except WorkspaceError as err:
        return f"any attached notebooks and jobs (could not list running jobs: {_reason(err)})"
    if not runs:
        return "any attached notebooks (no running job runs found)"
    named = ", ".join(_run_name(run) for run in runs[:RUNS_NAMED])
    more = f" and {len(runs) - RUNS_NAMED} more" if len(runs) > RUNS_NAMED else ""
    noun = "job run" if len(runs) == 1 else "job runs"
    return f"{len(runs)} running {noun}: {named}{more}"


def _run_name(run: dict[str, Any]) -> str:
    name = _text(str(run.get("run_name") or f"job {run.get('job_id')}"), 60)
    return f"{name} (run {run.get('run_id')})"


def _label(name: str | None, cluster_id: str) -> str:
    ident = _text(cluster_id, 100)
    return f"{_text(name, MAX_NAME)} ({ident})" if name and name.strip() else ident


def _text(value: str, limit: int) -> str:
    """An API value on one line and short: messages are single-line notes. A user mention in
    it must not ping anyone (mention_safe revives `<@U…>`: only the clicking user's is real)."""
    flat = " ".join(inert(value).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _reason(err: WorkspaceError) -> str:
    """The API's reason, without the client configuration the SDK appends to 401/403 messages
    (host, config file, environment variable names): the log keeps it, the channel does not."""
    log.warning("terminate cluster: %s", err)
    return _text(str(err).split(". Config: ", 1)[0], 500)


ACTION = TerminateCluster()
# the follow-up on a shared cluster (handlers/actions/terminate_anyway.py): claimed with Terminate
ANYWAY_SPEC = replace(TerminateCluster.spec, id=ActionId.TERMINATE_ANYWAY, label="Terminate anyway", hidden=True,
                      claim_as=ActionId.TERMINATE_CLUSTER)
