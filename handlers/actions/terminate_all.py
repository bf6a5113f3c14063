"""Terminate all N clusters… (#14): the responder-only button on a storm incident. It opens a
confirmation modal naming every cluster it will touch; on submission it runs once for the
incident (a claim), and for each cluster the terminate action's own pre-flight and run, through
the dispatcher's checks (the finding, still open to the action, the user authorised, the claim
per finding, ESM_DRY_RUN, the audit record). Each cluster's outcome goes into the incident's
thread. The wiring (button, modal, submission) is handlers/incident.py.
"""
from __future__ import annotations

from collections.abc import Sequence

from bot.core.actions import Outcome, OutcomeStatus
from bot.core.incidents import ClusterRow, IncidentSummary
from bot.core.ids import ButtonValue
from bot.render.blocks import inert
from handlers.actions import terminate_cluster

ID = "esm.terminate_all"  # the incident's claim and audit records name it
NOTE_CHARS = 2800  # one thread note at most (a section's 3,000 less the mention's room)
LABELS = {
    OutcomeStatus.DONE: "terminated",
    OutcomeStatus.ALREADY: "already stopped",
    OutcomeStatus.DRY_RUN: "dry run",
    OutcomeStatus.REFUSED: "refused",
    OutcomeStatus.FAILED: "failed",
}


class TerminateAll:
    """What the bulk action is made of; each cluster goes through `action` (terminate_cluster)."""

    id = ID
    action = terminate_cluster.ACTION

    def targets(self, summary: IncidentSummary) -> tuple[ClusterRow, ...]:
        """The clusters it will touch: each affected cluster once, while its finding is open to it."""
        return summary.terminable

    def value(self, row: ClusterRow, instance_id: str | None) -> ButtonValue:
        """The button value the terminate action checks (the cluster must be its finding's own)."""
        return ButtonValue(row.finding_key, instance_id, row.cluster_id)

    def line(self, row: ClusterRow, outcome: Outcome) -> str:
        label = f"{row.name} ({row.cluster_id})" if row.name else str(row.cluster_id)
        return f"• {inert(label)}: {LABELS.get(outcome.status, outcome.status.value)} — {outcome.message}"

    def notes(self, user_id: str, lines: Sequence[str], dry_run: bool) -> list[str]:
        """The per-cluster outcomes as thread notes, each within one Slack section."""
        counts: dict[str, int] = {}
        for line in lines:
            for label in LABELS.values():
                if f": {label} — " in line:
                    counts[label] = counts.get(label, 0) + 1
                    break
        tally = ", ".join(f"{n} {label}" for label, n in counts.items()) or "nothing done"
        head = (f"<@{user_id}> ran Terminate all on {len(lines)} clusters"
                f"{' (dry run: ESM_DRY_RUN is on)' if dry_run else ''}: {tally}.")
        notes, current = [], head
        for line in lines:
            line = line if len(line) <= NOTE_CHARS - 10 else line[: NOTE_CHARS - 11] + "…"
            if len(current) + 1 + len(line) > NOTE_CHARS:
                notes.append(current)
                current = line
            else:
                current += "\n" + line
        notes.append(current)
        return notes


INCIDENT_ACTION = TerminateAll()
