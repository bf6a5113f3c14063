"""The one path every finding button takes: parse -> find -> authorise -> pre-flight -> claim ->
run -> record -> tell. Actions only decide and act; this records and reports, so every action
gets the same audit trail, refusals and thread notes without repeating them."""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from bot.observability import metrics
from bot.core.actions import ActionContext, Outcome, OutcomeStatus, ResponseAction
from bot.core.authz import Authorizer, ReadAccess
from bot.core.findings import Finding, FindingStatus
from bot.core.ids import ButtonValue
from bot.core.ports import ActionStore, ClusterControl, Interaction, StoreError
from bot.core.state import NewOutboxItem, NotePayload, UpdatePayload
from bot.render.blocks import mention_safe

log = logging.getLogger(__name__)


@dataclass
class Dispatcher:
    actions: Mapping[str, ResponseAction]
    store: ActionStore
    authorizer: Authorizer
    clusters_of: Callable[[str], ClusterControl | None]  # a workspace id -> its Databricks API
    dry_run: bool = False
    on_outbox: Any = lambda: None
    extras: dict[str, Any] | None = None
    read_access: ReadAccess | None = None  # None: suppressions for responders only, audit data open

    def __post_init__(self) -> None:
        if self.read_access is None:
            self.read_access = ReadAccess(self.authorizer, restricted=False)

    async def click(self, action_id: str, raw_value: Any, interaction: Interaction) -> Outcome:
        try:
            outcome = await self._click(action_id, raw_value, interaction)
        except StoreError as exc:  # never a silent click: say so, and that nothing was done
            log.error("%s by %s not run: %s", action_id, interaction.user_id, exc)
            outcome = Outcome.refused(
                "esm-bot could not record this, so nothing was done: its state store is unavailable "
                f"({exc}). Try again in a minute."
            )
        text = mention_safe(outcome.message)  # answers quote cluster names and other outside data
        await interaction.reply_private(text, list(outcome.blocks) if outcome.blocks else None)
        return outcome

    async def _click(self, action_id: str, raw_value: Any, interaction: Interaction) -> Outcome:
        action = self.actions.get(action_id)
        if action is None:
            return Outcome.refused("This button is not known to esm-bot (stale message or forged request).")
        try:
            value = ButtonValue.from_json(raw_value)
        except ValueError as exc:
            log.warning("refused %s from %s: bad button value: %s", action_id, interaction.user_id, exc)
            return Outcome.refused("This button's value is not valid (stale message or forged request).")
        ctx, refusal = await self.gate(action, value, interaction)
        if ctx is None or refusal is not None:
            return refusal or Outcome.refused("This finding is no longer known to esm-bot.")
        return await self._run(action, ctx)

    async def gate(
        self, action: ResponseAction, value: ButtonValue, interaction: Interaction
    ) -> tuple[ActionContext | None, Outcome | None]:
        """The chain's checks, for a click and for what follows it (a modal's submission): find
        the finding, check the action is still offered on it, authorise (a refusal there is
        recorded). (context, None) means go on; otherwise the refusal to answer with."""
        ctx = await self._context(value, interaction)
        if ctx is None:
            return None, Outcome.refused("This finding is no longer known to esm-bot.")
        if not action.spec.offered_on(ctx.finding):
            by = f" (by {ctx.finding.status_by})" if ctx.finding.status_by else ""
            return ctx, Outcome.refused(
                f"This finding is already {ctx.finding.status.value}{by}; {action.spec.label} is no longer offered on it."
            )
        refusal = await self._authorise(action, ctx)
        if refusal is not None:
            return ctx, await self.complete(action, ctx, refusal)
        return ctx, None

    async def _context(self, value: ButtonValue, interaction: Interaction) -> ActionContext | None:
        finding = await self.store.finding(value.finding_key)
        if finding is None:
            return None
        return self.context(finding, value, interaction)

    def context(self, finding: Finding, value: ButtonValue, interaction: Interaction) -> ActionContext:
        """What an action on this finding may use; its Databricks API is the finding's workspace's."""
        clusters = self.clusters_of(finding.first_event.workspace_id)
        return ActionContext(finding, value, interaction, self.store, clusters, self.dry_run, dict(self.extras or {}))

    async def _authorise(self, action: ResponseAction, ctx: ActionContext) -> Outcome | None:
        if action.spec.responders_only:
            allowed, why = await self.authorizer.allows(ctx.user_id)
        elif action.spec.readers_only and self.read_access is not None:
            allowed, why = await self.read_access.events(ctx.user_id)
        else:
            return None
        if allowed:
            return None
        return Outcome(OutcomeStatus.REFUSED, f"Refused: {why}.", private=True)

    async def _run(self, action: ResponseAction, ctx: ActionContext) -> Outcome:
        spec = action.spec
        if spec.destructive and not await self.store.claim_action(ctx.finding.key, spec.id, ctx.user_id):
            lost = Outcome(OutcomeStatus.ALREADY, f"{spec.label} is already running or done for this finding.", private=True)
            return await self.complete(action, ctx, lost)  # the audit trail keeps the losing click too
        try:
            outcome = await action.preflight(ctx) or await action.run(ctx)
        except Exception as exc:  # an action's bug must still be answered and recorded
            log.exception("action %s failed", spec.id)
            outcome = Outcome(OutcomeStatus.FAILED, f"{spec.label} failed: {type(exc).__name__}")
        try:
            if spec.destructive and outcome.status in (OutcomeStatus.FAILED, OutcomeStatus.DRY_RUN,
                                                       OutcomeStatus.REFUSED):
                await self.store.release_claim(ctx.finding.key, spec.id)  # allow another try
            return await self.complete(action, ctx, outcome)
        except StoreError as exc:
            if not spec.destructive:  # recording was the action (acknowledge, …): nothing happened
                raise
            # it acted on the world: say what happened, and that the audit trail lacks it
            log.error("action %s on %s by %s (%s) not recorded: %s", spec.id, ctx.finding.key, ctx.user_id,
                      outcome.status.value, exc)
            return replace(outcome, private=True, message=(
                f"{outcome.message} — esm-bot could not record this in its audit trail (state store "
                f"unavailable: {exc}); tell your team what was done."))

    async def run_quietly(self, action: ResponseAction, ctx: ActionContext) -> Outcome:
        """One finding of a bulk action (#14): the same claim, pre-flight, run, release and audit
        record as a click, with no thread note of its own (the bulk action reports every
        finding's outcome in one place); a changed status still updates the message."""
        spec = action.spec
        if spec.destructive and not await self.store.claim_action(ctx.finding.key, spec.id, ctx.user_id):
            outcome = Outcome(OutcomeStatus.ALREADY, f"{spec.label} is already running or done for this finding.",
                              private=True)
        else:
            try:
                outcome = await action.preflight(ctx) or await action.run(ctx)
            except Exception as exc:
                log.exception("action %s failed", spec.id)
                outcome = Outcome(OutcomeStatus.FAILED, f"{spec.label} failed: {type(exc).__name__}")
            if spec.destructive and outcome.status in (OutcomeStatus.FAILED, OutcomeStatus.DRY_RUN,
                                                       OutcomeStatus.REFUSED):
                await self.store.release_claim(ctx.finding.key, spec.id)
        return await self.complete(action, ctx, replace(outcome, private=True))

    async def complete(self, action: ResponseAction, ctx: ActionContext, outcome: Outcome) -> Outcome:
        """Record an outcome: finding status, audit record, thread note and parent update."""
        key = ctx.finding.key
        if outcome.finding_status is not None:
            await self.store.set_finding_status(key, outcome.finding_status, ctx.user_id, _note(outcome))
        outbox = [] if outcome.private else [NewOutboxItem(key, NotePayload(outcome.message))]
        if outcome.finding_status is not None or not outcome.private:
            outbox.append(NewOutboxItem(key, UpdatePayload()))
        await self.store.record_action(
            key, action.spec.id, ctx.user_id, outcome.status.value, outcome.message, dry_run=ctx.dry_run, outbox=outbox
        )
        log.info("action %s on %s by %s: %s", action.spec.id, key, ctx.user_id, outcome.status.value, extra={
            "action": action.spec.id, "finding": key, "user": ctx.user_id, "outcome": outcome.status.value,
            "detection": ctx.finding.detection.name, "cluster_id": ctx.finding.cluster_id, "dry_run": ctx.dry_run,
        })
        metrics.ACTIONS.inc(action=action.spec.id, outcome=outcome.status.value)
        if outbox:
            self.on_outbox()
        return outcome


def _note(outcome: Outcome) -> str | None:
    if outcome.finding_status not in (FindingStatus.BENIGN, FindingStatus.TERMINATED):
        return None
    return outcome.note or outcome.message
