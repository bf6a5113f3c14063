"""Undo quarantine of all (#14, #12): the button on Quarantine all's note in the incident's thread,
responders only. Every cluster of the incident still quarantined gets back exactly the grants its
quarantine replaced, through Undo quarantine's own pre-flight and run (which says what was changed
by hand meanwhile); each outcome goes into the thread. Done, Quarantine all may be run again.
"""
from __future__ import annotations

from bot.core.actions import OutcomeStatus
from bot.core.ids import ActionId
from bot.core.incidents import ClusterRow, IncidentSummary
from bot.core.ports import ActionStore
from handlers.actions import undo_quarantine
from handlers.actions._bulk import BulkAction, one_per_cluster
from handlers.actions.quarantine_all import INCIDENT_ACTION as QUARANTINE_ALL


class UndoQuarantineAll(BulkAction):
    id = "esm.undo_quarantine_all"
    name = "Undo quarantine of all"
    none_left = "No cluster of this incident is quarantined any more; nothing to undo."
    action = undo_quarantine.ACTION
    undoes = QUARANTINE_ALL.id
    labels = {
        OutcomeStatus.DONE: "access restored",
        OutcomeStatus.ALREADY: "not quarantined any more",
        OutcomeStatus.DRY_RUN: "dry run",
        OutcomeStatus.REFUSED: "refused",
        OutcomeStatus.FAILED: "failed",
    }

    async def targets(self, summary: IncidentSummary, store: ActionStore) -> tuple[ClusterRow, ...]:
        """The clusters still quarantined, whatever their findings' status."""
        return tuple([row for row in one_per_cluster(summary.rows)
                      if await store.action_state(row.finding_key, ActionId.QUARANTINE_CLUSTER) is not None])


INCIDENT_ACTION = UndoQuarantineAll()
