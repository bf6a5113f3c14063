"""A storm incident's controls (#14): the select menu that opens one affected cluster's finding
as a private reply with its own buttons, and the responder-only bulk actions "Terminate all N
clusters…" and "Quarantine all N clusters…" (button -> confirmation modal -> submission), with
"Undo quarantine of all" on the latter's thread note. The bulk actions themselves are
handlers/actions/{terminate_all,quarantine_all,undo_quarantine_all}.py; every cluster goes
through the dispatcher's checks."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NoReturn

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.actions import Outcome, OutcomeStatus
from bot.core.incidents import ClusterRow, Incident, is_incident_key, summarise
from bot.core.state import NewOutboxItem, NoteButton, NotePayload
from bot.render import blocks
from bot.render.incident import (
    OPEN_FINDING,
    QUARANTINE_COPY,
    TERMINATE_COPY,
    UNDO_QUARANTINE_ALL,
    BulkCopy,
    bulk_modal,
)
from bot.runtime import Runtime
from handlers.actions._bulk import BulkAction
from handlers.actions.quarantine_all import INCIDENT_ACTION as QUARANTINE_ALL_ACTION
from handlers.actions.terminate_all import INCIDENT_ACTION as TERMINATE_ALL_ACTION
from handlers.actions.undo_quarantine_all import INCIDENT_ACTION as UNDO_ALL
from handlers.interactions import retire_undo

log = logging.getLogger(__name__)

# the bulk actions a responder confirms in a modal listing every cluster (the button shows only
# where the incident message offers it: Quarantine all needs ESM_QUARANTINE_PRINCIPALS)
CONFIRMED: tuple[tuple[BulkAction, BulkCopy], ...] = (
    (QUARANTINE_ALL_ACTION, QUARANTINE_COPY),
    (TERMINATE_ALL_ACTION, TERMINATE_COPY),
)


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

    for bulk, copy in CONFIRMED:
        _register_confirmed(app, runtime, bulk, copy)

    @app.action(UNDO_QUARANTINE_ALL)
    async def on_undo_all(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        await ack()  # Slack's confirm dialog asked first; the outcomes go into the thread
        ran = await run_bulk(runtime, UNDO_ALL, _user(body), str(action.get("value") or ""), client, respond)
        if ran and all(o.status in (OutcomeStatus.DONE, OutcomeStatus.ALREADY) for o in ran):
            await retire_undo(client, body, _user(body))  # nothing left quarantined: the button goes


def _register_confirmed(app: AsyncApp, runtime: Runtime, bulk: BulkAction, copy: BulkCopy) -> None:
    """A bulk button that opens its confirmation modal, and the modal's submission."""

    async def on_button(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        await ack()
        refusal = await open_bulk(runtime, bulk, copy, _user(body), str(action.get("value") or ""),
                                  body.get("trigger_id"), client)
        if refusal is not None:
            await respond(response_type="ephemeral", replace_original=False, text=blocks.mention_safe(refusal))

    async def on_submit(ack, body: dict[str, Any], view: dict[str, Any], client) -> None:
        await ack()  # closes the modal; the clusters are acted on after it, reported in the thread
        await run_bulk(runtime, bulk, _user(body), str(view.get("private_metadata") or ""), client)

    app.action(copy.button)(on_button)
    app.view(copy.callback_id)(on_submit)


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


async def _refused(runtime: Runtime, bulk: BulkAction, user_id: str, key: str) -> str | None:
    """Responders only, checked before anything else is read or called; a refusal is recorded."""
    allowed, why = await runtime.dispatcher.authorizer.allows(user_id)
    if allowed:
        return None
    log.warning("%s on %s refused for %s: %s", bulk.name, key, user_id, why)
    if is_incident_key(key) and await runtime.store.incident(key) is not None:
        await runtime.store.record_action(key, bulk.id, user_id, OutcomeStatus.REFUSED.value,
                                          f"Refused: {why}.", dry_run=runtime.dispatcher.dry_run)
    return f"Refused: {why}."


def _not_offered(runtime: Runtime, bulk: BulkAction) -> str | None:
    """A bulk action runs only where its finding action is offered (Quarantine cluster: with
    ESM_QUARANTINE_PRINCIPALS set); a forged button for another gets this answer."""
    if any(spec.id == bulk.action.spec.id for spec in runtime.outbox.settings.actions):
        return None
    return f"{bulk.name} is not offered here: {bulk.action.spec.label} is not enabled on this bot."


async def open_bulk(runtime: Runtime, bulk: BulkAction, copy: BulkCopy, user_id: str, key: str,
                    trigger_id: str | None, client: AsyncWebClient) -> str | None:
    """The confirmation modal naming every cluster the bulk action will touch, for responders.
    Returns the refusal to answer with, or None."""
    refusal = await _refused(runtime, bulk, user_id, key) or _not_offered(runtime, bulk)
    if refusal is not None:
        return refusal
    incident = await _incident(runtime, key)
    if incident is None:
        return "This incident is no longer known to esm-bot."
    rows = await bulk.targets(summarise(await runtime.store.incident_members(key)), runtime.store)
    if not rows:
        return bulk.none_left
    if not trigger_id:
        return "Slack sent no trigger to open the confirmation with; try again."
    try:
        await client.views_open(trigger_id=trigger_id, view=bulk_modal(copy, incident, rows, runtime.dispatcher.dry_run))
    except SlackApiError as exc:
        return f"Could not open the confirmation: {exc.response.get('error')}"
    return None


async def run_bulk(runtime: Runtime, bulk: BulkAction, user_id: str, key: str, client: AsyncWebClient,
                   respond: Any = None) -> list[Outcome] | None:
    """The confirmed bulk action: authorised again (the form may be forged), once per incident,
    each cluster through the dispatcher's checks; the outcomes go into the incident's thread.
    Each cluster's outcome, or None when it did not run (refused, or running or done already)."""
    dispatcher, store = runtime.dispatcher, runtime.store
    incident = await _incident(runtime, key)
    interaction = IncidentInteraction(user_id, client, incident.channel if incident else None, respond)
    refusal = await _refused(runtime, bulk, user_id, key) or _not_offered(runtime, bulk)
    if refusal is not None or incident is None:
        await interaction.reply_private(refusal or "This incident is no longer known to esm-bot.")
        return None
    if not await store.claim_action(key, bulk.id, user_id):
        text = f"{bulk.name} is already running or done for this incident."
        await store.record_action(key, bulk.id, user_id, OutcomeStatus.ALREADY.value, text, dry_run=dispatcher.dry_run)
        await interaction.reply_private(text)
        return None
    members = {f.key: f for f in await store.incident_members(key)}
    rows = await bulk.targets(summarise(list(members.values())), store)
    done: list[tuple[ClusterRow, Outcome]] = []
    for row in rows:
        finding = members[row.finding_key]
        ctx, refused = await dispatcher.gate(bulk.action, bulk.value(row, finding.first_event.instance_id), interaction)
        if ctx is None or refused is not None:
            outcome = refused or Outcome.refused("This finding is no longer known to esm-bot.")
        else:
            outcome = await dispatcher.run_quietly(bulk.action, ctx)
        done.append((row, outcome))
    notes = bulk.notes(user_id, done, dispatcher.dry_run)
    changed = sum(1 for _, o in done if o.status is OutcomeStatus.DONE)
    if dispatcher.dry_run or changed == 0:
        await store.release_claim(key, bulk.id)  # nothing was changed: it may run again
    elif bulk.undoes is not None:  # undone: the bulk action, and this undo, may be done again
        await store.release_claim(key, bulk.undoes)
        await store.release_claim(key, bulk.id)
    undo = _undo_button(bulk, key) if changed and not dispatcher.dry_run else None
    status = OutcomeStatus.DRY_RUN if dispatcher.dry_run else OutcomeStatus.DONE
    await store.record_action(key, bulk.id, user_id, status.value, notes[0].split("\n", 1)[0], dry_run=dispatcher.dry_run,
                              outbox=[NewOutboxItem(key, NotePayload(note, button=undo if i == 0 else None))
                                      for i, note in enumerate(notes)])
    runtime.outbox.kick()
    return [o for _, o in done]


def _undo_button(bulk: BulkAction, key: str) -> NoteButton | None:
    """The undo of a bulk action, on its first thread note: Quarantine all's only."""
    return NoteButton(UNDO_QUARANTINE_ALL, "Undo quarantine of all", key) if bulk is QUARANTINE_ALL_ACTION else None
