"""Page on-call (#12): trigger a PagerDuty incident through the Events API v2, keyed by the
finding (dedup_key = the finding's key, so a retry or a second page is the same incident).
Acknowledging the finding in Slack acknowledges the incident; closing it (benign, terminated)
resolves it (`on_status`, which the dispatcher calls after every status change). With
ESM_PAGE_SEVERITY, new findings at or above it are paged without a click (bot.services.autopage).
"""
from __future__ import annotations

from typing import Any

from bot.core.actions import UNTIL_CLOSED, ActionContext, ActionSpec, Confirm, Outcome, OutcomeStatus
from bot.core.findings import Finding, FindingStatus
from bot.core.ids import ActionId
from bot.core.playbook import PAGER_SEVERITY, Playbook, playbook_of
from bot.core.ports import ActionStore, PagerError
from bot.core.state import ActionRecord, ActionState
from handlers.actions._common import by, private, shown, text

MARK = "Paged on-call"
FOLLOW = {FindingStatus.ACKNOWLEDGED: "acknowledge", FindingStatus.BENIGN: "resolve",
          FindingStatus.TERMINATED: "resolve"}


def confirm(finding: Finding) -> Confirm:
    severity = PAGER_SEVERITY[finding.detection.severity]
    return Confirm(
        title="Page on-call?",
        text=f"Trigger a PagerDuty incident ({severity}) for this finding now. Acknowledging or closing the"
             " finding here acknowledges or resolves the incident.",
        confirm="Page", deny="Cancel",
    )


def summary(finding: Finding) -> str:
    cluster = finding.context.cluster
    where = finding.first_event.instance_id or finding.cluster_id or "unknown host"
    name = f" on cluster {cluster.name}" if cluster is not None and cluster.name else ""
    return f"[esm-bot] {finding.detection.name} ({finding.count}x) on {where}{name}"


async def trigger(playbook: Playbook, store: ActionStore, finding: Finding) -> tuple[str, dict[str, Any]]:
    """Send the trigger; returns the dedup key and what the audit record keeps."""
    assert playbook.pager is not None
    message = await store.message_of(finding.key)
    links = [("Finding in Slack", f"{playbook.slack_team_url}/archives/{message[0]}/p{message[1].replace('.', '')}")] \
        if message else []
    severity = PAGER_SEVERITY[finding.detection.severity]
    details = {"detection": finding.detection.name, "category": finding.detection.category,
               "instance_id": finding.first_event.instance_id, "cluster_id": finding.cluster_id,
               "workspace_id": finding.first_event.workspace_id, "events": finding.count,
               "first_seen": finding.first_seen.isoformat()}
    key = await playbook.pager.send("trigger", finding.key, summary=summary(finding), severity=severity,
                                    source=str(finding.first_event.instance_id or "esm-bot"), links=links, details=details)
    return key, {"status": "triggered", "severity": severity, "dedup_key": key}


class PageOnCall:
    spec = ActionSpec(
        id=ActionId.PAGE_ONCALL, label="Page on-call", order=50, offered_while=UNTIL_CLOSED, destructive=True,
        confirm=confirm, settings=("pagerduty_routing_key",),
    )

    async def preflight(self, ctx: ActionContext) -> Outcome | None:
        if playbook_of(ctx.extras).pager is None:
            return private(OutcomeStatus.FAILED, "Paging is not configured: set ESM_PAGERDUTY_ROUTING_KEY.")
        state = await ctx.store.action_state(ctx.finding.key, self.spec.id)
        if state is not None:
            return private(OutcomeStatus.ALREADY, f"On-call was already paged for this finding (by {by(state.user_id)};"
                                                  f" PagerDuty dedup key {text(state.target, 100)}).")
        return None

    async def plan(self, ctx: ActionContext) -> str:
        severity = PAGER_SEVERITY[ctx.finding.detection.severity]
        return (f"would trigger a PagerDuty incident ({severity}, dedup key {text(ctx.finding.key, 100)}):"
                f" {text(summary(ctx.finding), 300)}")

    async def run(self, ctx: ActionContext) -> Outcome:
        try:
            key, after = await trigger(playbook_of(ctx.extras), ctx.store, ctx.finding)
        except PagerError as err:
            return shown(OutcomeStatus.FAILED, f"Could not page on-call: {text(str(err), 400)}")
        record = ActionRecord(before=None, after=after, mark=(self.spec.id, MARK),
                              state=(self.spec.id, ActionState(key, None, after)))
        return shown(OutcomeStatus.DONE, f"{by(ctx.user_id)} paged on-call: PagerDuty incident triggered"
                                         f" ({after['severity']}, dedup key {text(key, 100)}).", record=record)

    async def on_status(self, ctx: ActionContext, status: FindingStatus) -> Outcome | None:
        """The finding was acknowledged or closed: do the same to its incident, if it was paged."""
        event = FOLLOW.get(status)
        pager = playbook_of(ctx.extras).pager
        state = await ctx.store.action_state(ctx.finding.key, self.spec.id)
        if event is None or pager is None or state is None or (state.after or {}).get("status") == "resolved":
            return None
        if ctx.dry_run:
            return shown(OutcomeStatus.DRY_RUN, f"Dry run: would {event} the PagerDuty incident (dedup key"
                                                f" {text(state.target, 100)}). Nothing was changed (ESM_DRY_RUN is on).")
        try:
            await pager.send(event, state.target)
        except PagerError as err:
            return shown(OutcomeStatus.FAILED, f"Could not {event} the PagerDuty incident: {text(str(err), 400)}")
        after = {**(state.after or {}), "status": "acknowledged" if event == "acknowledge" else "resolved"}
        keep = ActionState(state.target, state.before, after) if event == "acknowledge" else None
        record = ActionRecord(before=state.after, after=after, state=(self.spec.id, keep),
                              mark=None if event == "acknowledge" else (self.spec.id, None))
        verb = "acknowledged" if event == "acknowledge" else "resolved"
        return shown(OutcomeStatus.DONE, f"PagerDuty incident {verb} (dedup key {text(state.target, 100)}), following"
                                         f" {by(ctx.user_id)}.", record=record)


ACTION = PageOnCall()
