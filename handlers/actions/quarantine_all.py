"""Quarantine all N clusters… (#14, with #12's Quarantine cluster): the responder-only button on a
storm incident, shown when ESM_QUARANTINE_PRINCIPALS is set. A confirmation modal names every
cluster; on submission it runs once for the incident, each cluster through Quarantine cluster's
own pre-flight, run and record (the grants before, for its undo), with the dispatcher's checks.
The clusters keep running, so the evidence stays. The outcomes go into the incident's thread,
whose note carries "Undo quarantine of all" (handlers/actions/undo_quarantine_all.py).
"""
from __future__ import annotations

from bot.core.actions import OutcomeStatus
from bot.core.ids import ActionId
from bot.core.incidents import ClusterRow, IncidentSummary
from bot.core.ports import ActionStore
from handlers.actions import quarantine_cluster
from handlers.actions._bulk import BulkAction


class QuarantineAll(BulkAction):
    id = "esm.quarantine_all"
    name = "Quarantine all"
    none_left = "No open cluster of this incident is left to quarantine: each is quarantined already, closed or gone."
    action = quarantine_cluster.ACTION
    labels = {
        OutcomeStatus.DONE: "quarantined",
        OutcomeStatus.ALREADY: "already quarantined or gone",
        OutcomeStatus.DRY_RUN: "dry run",
        OutcomeStatus.REFUSED: "refused",
        OutcomeStatus.FAILED: "failed",
    }

    async def targets(self, summary: IncidentSummary, store: ActionStore) -> tuple[ClusterRow, ...]:
        """The open clusters not quarantined yet."""
        return tuple([row for row in summary.terminable
                      if await store.action_state(row.finding_key, ActionId.QUARANTINE_CLUSTER) is None])


INCIDENT_ACTION = QuarantineAll()
