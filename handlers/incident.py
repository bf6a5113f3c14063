"""A storm incident's controls (#14): the select menu that opens one affected cluster's finding
as a private reply with its own buttons, and the responder-only "Terminate all N clusters…"
(button -> confirmation modal -> submission). The bulk action itself is
handlers/actions/terminate_all.py; every cluster goes through the dispatcher's checks."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NoReturn

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.actions import Outcome, OutcomeStatus
from bot.core.incidents import Incident, is_incident_key, summarise
from bot.core.state import NewOutboxItem, NotePayload
from bot.render import blocks
from bot.render.incident import OPEN_FINDING, TERMINATE_ALL, TERMINATE_ALL_CALLBACK, terminate_all_modal
from bot.runtime import Runtime
from handlers.actions.terminate_all import INCIDENT_ACTION

log = logging.getLogger(__name__)


@dataclass
class IncidentInteraction:
    """The Interaction port for the bulk action: private answers as ephemerals in the incident's channel."""

    user_id: str
    client: AsyncWebClient
    channel: str | None = None
    respond: Any = None

    async def reply_private(self, text: str, blocks_: list[dict[str, Any]] | None = None) -> None:
        if self.respond is not None:
            await self.respond(response_type="ephemeral", replace_original=False, text=text, blocks=blocks_)
        elif self.channel:
            await self.client.chat_postEphemeral(channel=self.channel, user=self.user_id, text=text, blocks=blocks_)

    async def open_modal(self, view: dict[str, Any]) -> NoReturn:
        raise RuntimeError("not here")


def _user(body: dict[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or "")


def register(app: AsyncApp, runtime: Runtime) -> None:
    @app.action(OPEN_FINDING)
    async def on_open(ack, body: dict[str, Any], action: dict[str, Any], respond) -> None:
        await ack()
        selected = str(((action.get("selected_option") or {}).get("value")) or "")
        text, shown = await open_finding(runtime, _user(body), selected, _message_ts(body))
        await respond(response_type="ephemeral", replace_original=False, text=text, blocks=shown)

    @app.action(TERMINATE_ALL)
    async def on_terminate_all(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        await ack()
        refusal = await open_terminate_all(runtime, _user(body), str(action.get("value") or ""),
                                           body.get("trigger_id"), client)
        if refusal is not None:
            await respond(response_type="ephemeral", replace_original=False, text=blocks.mention_safe(refusal))

    @app.view(TERMINATE_ALL_CALLBACK)
    async def on_submit(ack, body: dict[str, Any], view: dict[str, Any], client) -> None:
        await ack()  # closes the modal; the clusters are terminated after it, reported in the thread
        await terminate_all(runtime, _user(body), str(view.get("private_metadata") or ""), client)


def _message_ts(body: dict[str, Any]) -> str:
    """The ts of the message the menu is on (the incident's)."""
    return str((body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts") or "")


async def open_finding(runtime: Runtime, user_id: str, finding_key: str, message_ts: str
                       ) -> tuple[str, list[dict[str, Any]] | None]:
    """One member's finding with its own buttons, for the user only; readers and responders
    only when ESM_READERS is set (it shows audit data). The finding must be a member of the
    incident whose message the menu is on."""
    access = runtime.dispatcher.read_access
    if access is not None:
        allowed, why = await access.events(user_id)
        if not allowed:
            return f"Refused: {why}.", None
    finding = await runtime.store.finding(finding_key) if finding_key else None
    member_of = (await runtime.store.incidents_of([finding_key])).get(finding_key) if finding is not None else None
    incident = await runtime.store.incident(member_of) if member_of is not None else None
    if finding is None or incident is None or incident.ts != message_ts:
        return "This cluster's finding is no longer known to esm-bot (stale message or forged request).", None
    specs = runtime.outbox.settings.actions
    text, shown = blocks.finding_message(finding, runtime.workspaces.links_for(finding), specs)
    return text, shown


async def _incident(runtime: Runtime, key: str) -> Incident | None:
    return await runtime.store.incident(key) if is_incident_key(key) else None


async def open_terminate_all(runtime: Runtime, user_id: str, key: str, trigger_id: str | None,
                             client: AsyncWebClient) -> str | None:
    """Responders only (checked before anything else is read or called); the modal names every
    cluster the action will touch. Returns the refusal to answer with, or None."""
    allowed, why = await runtime.dispatcher.authorizer.allows(user_id)
    if not allowed:
        log.warning("terminate all on %s refused for %s: %s", key, user_id, why)
        if is_incident_key(key):
            await runtime.store.record_action(key, INCIDENT_ACTION.id, user_id, OutcomeStatus.REFUSED.value,
                                              f"Refused: {why}.", dry_run=runtime.dispatcher.dry_run)
        return f"Refused: {why}."
    incident = await _incident(runtime, key)
    if incident is None:
        return "This incident is no longer known to esm-bot."
    rows = INCIDENT_ACTION.targets(summarise(await runtime.store.incident_members(key)))
    if not rows:
        return "No open cluster of this incident is left to terminate."
    if not trigger_id:
        return "Slack sent no trigger to open the confirmation with; try again."
    try:
        await client.views_open(trigger_id=trigger_id, view=terminate_all_modal(incident, rows,
                                                                                runtime.dispatcher.dry_run))
    except SlackApiError as exc:
        return f"Could not open the confirmation: {exc.response.get('error')}"
    return None


async def terminate_all(runtime: Runtime, user_id: str, key: str, client: AsyncWebClient) -> list[Outcome]:
    """The confirmed bulk terminate: authorised again (the form may be forged), once per incident,
    each cluster through the dispatcher's checks; the outcomes go into the incident's thread."""
    dispatcher, store = runtime.dispatcher, runtime.store
    incident = await _incident(runtime, key)
    interaction = IncidentInteraction(user_id, client, incident.channel if incident else None)
    allowed, why = await dispatcher.authorizer.allows(user_id)
    if not allowed or incident is None:
        text = f"Refused: {why}." if not allowed else "This incident is no longer known to esm-bot."
        if incident is not None:
            await store.record_action(key, INCIDENT_ACTION.id, user_id, OutcomeStatus.REFUSED.value, text,
                                      dry_run=dispatcher.dry_run)
        await interaction.reply_private(text)
        return []
    if not await store.claim_action(key, INCIDENT_ACTION.id, user_id):
        text = "Terminate all is already running or done for this incident."
        await store.record_action(key, INCIDENT_ACTION.id, user_id, OutcomeStatus.ALREADY.value, text,
                                  dry_run=dispatcher.dry_run)
        await interaction.reply_private(text)
        return []
    members = {f.key: f for f in await store.incident_members(key)}
    rows = INCIDENT_ACTION.targets(summarise(list(members.values())))
    action = INCIDENT_ACTION.action
    outcomes, lines = [], []
    for row in rows:
        finding = members[row.finding_key]
        ctx, refusal = await dispatcher.gate(action, INCIDENT_ACTION.value(row, finding.first_event.instance_id),
                                             interaction)
        if ctx is None or refusal is not None:
            outcome = refusal or Outcome.refused("This finding is no longer known to esm-bot.")
        else:
            outcome = await dispatcher.run_quietly(action, ctx)
        outcomes.append(outcome)
        lines.append(INCIDENT_ACTION.line(row, outcome))
    notes = INCIDENT_ACTION.notes(user_id, lines, dispatcher.dry_run)
    done = sum(1 for o in outcomes if o.status is OutcomeStatus.DONE)
    summary = notes[0].split("\n", 1)[0]
    if dispatcher.dry_run or done == 0:
        await store.release_claim(key, INCIDENT_ACTION.id)  # nothing was changed: it may run again
    status = OutcomeStatus.DRY_RUN if dispatcher.dry_run else OutcomeStatus.DONE
    await store.record_action(key, INCIDENT_ACTION.id, user_id, status.value, summary, dry_run=dispatcher.dry_run,
                              outbox=[NewOutboxItem(key, NotePayload(note)) for note in notes])
    runtime.outbox.kick()
    return outcomes
