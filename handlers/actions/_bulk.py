"""What the bulk actions on a storm incident share (#14): Terminate all, Quarantine all and its
undo. Each names the finding action it runs on every affected cluster, which clusters it touches,
and how an outcome reads in the incident's thread. The wiring (button, confirmation, once per
incident, each cluster through the dispatcher's checks) is handlers/incident.py.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.core.actions import Outcome, OutcomeStatus, ResponseAction
from bot.core.incidents import ClusterRow, IncidentSummary
from bot.core.ids import ButtonValue
from bot.core.ports import ActionStore
from bot.render.blocks import inert

NOTE_CHARS = 2800  # one thread note at most (a section's 3,000 less the mention's room)


class BulkAction:
    """One bulk action; subclasses set the class attributes and may narrow `targets`."""

    id: str  # the incident's claim and audit records name it
    name: str  # "Terminate all": the thread note's words
    action: ResponseAction  # what runs on each affected cluster's finding
    labels: Mapping[OutcomeStatus, str]  # how each cluster's outcome reads
    none_left: str  # the answer when no cluster is left for it
    undoes: str | None = None  # a bulk undo: done, it frees the bulk action it undoes

    async def targets(self, summary: IncidentSummary, store: ActionStore) -> tuple[ClusterRow, ...]:
        """The clusters it will touch: each affected cluster once, while its finding is open."""
        return summary.terminable

    def value(self, row: ClusterRow, instance_id: str | None) -> ButtonValue:
        """The button value the finding action checks (the cluster must be its finding's own)."""
        return ButtonValue(row.finding_key, instance_id, row.cluster_id)

    def line(self, row: ClusterRow, outcome: Outcome) -> str:
        label = f"{row.name} ({row.cluster_id})" if row.name else str(row.cluster_id)
        return f"• {inert(label)}: {self.labels.get(outcome.status, outcome.status.value)} — {outcome.message}"

    def notes(self, user_id: str, outcomes: Sequence[tuple[ClusterRow, Outcome]], dry_run: bool) -> list[str]:
        """The per-cluster outcomes as thread notes, each within one Slack section; the first
        line tallies them."""
        counts: dict[str, int] = {}
        for _, outcome in outcomes:
            label = self.labels.get(outcome.status, outcome.status.value)
            counts[label] = counts.get(label, 0) + 1
        tally = ", ".join(f"{n} {label}" for label, n in counts.items()) or "nothing done"
        head = (f"<@{user_id}> ran {self.name} on {len(outcomes)} clusters"
                f"{' (dry run: ESM_DRY_RUN is on)' if dry_run else ''}: {tally}.")
        notes, current = [], head
        for row, outcome in outcomes:
            line = self.line(row, outcome)
            line = line if len(line) <= NOTE_CHARS - 10 else line[: NOTE_CHARS - 11] + "…"
            if len(current) + 1 + len(line) > NOTE_CHARS:
                notes.append(current)
                current = line
            else:
                current += "\n" + line
        notes.append(current)
        return notes


def one_per_cluster(rows: Sequence[ClusterRow]) -> tuple[ClusterRow, ...]:
    """Each cluster once (its first row: the one with most events), whatever its finding's status."""
    seen: set[str] = set()
    out = []
    for row in rows:
        if row.cluster_id and row.cluster_id not in seen:
            seen.add(row.cluster_id)
            out.append(row)
    return tuple(out)
