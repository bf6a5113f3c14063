"""Terminate all N clusters… (#14): the responder-only button on a storm incident. It opens a
confirmation modal naming every cluster it will touch; on submission it runs once for the
incident (a claim), and for each cluster the terminate action's own pre-flight and run, through
the dispatcher's checks (the finding, still open to the action, the user authorised, the claim
per finding, ESM_DRY_RUN, the audit record). Each cluster's outcome goes into the incident's
thread. The wiring (button, modal, submission) is handlers/incident.py.
"""
from __future__ import annotations

from bot.core.actions import OutcomeStatus
from handlers.actions import terminate_anyway
from handlers.actions._bulk import BulkAction


class TerminateAll(BulkAction):
    """Each cluster goes through Terminate, claimed with each finding's own Terminate, without
    asking "Quarantine instead?" per cluster (the responder chose the bulk terminate in a modal
    listing every cluster)."""

    id = "esm.terminate_all"
    name = "Terminate all"
    none_left = "No open cluster of this incident is left to terminate."
    action = terminate_anyway.ACTION
    labels = {
        OutcomeStatus.DONE: "terminated",
        OutcomeStatus.ALREADY: "already stopped",
        OutcomeStatus.DRY_RUN: "dry run",
        OutcomeStatus.REFUSED: "refused",
        OutcomeStatus.FAILED: "failed",
    }


INCIDENT_ACTION = TerminateAll()
