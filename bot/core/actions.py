"""What a response action is, as data: the button it shows, who may run it, what it needs.

Each action lives in its own file in handlers/actions/ and declares an `ActionSpec`; the finding
message renders its buttons from the specs, and the one generic listener routes clicks by id.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from bot.core.findings import Finding, FindingStatus
from bot.core.ids import ButtonValue
from bot.core.ports import ActionStore, ClusterControl, Interaction
from bot.core.state import ActionRecord


@dataclass(frozen=True)
class Confirm:
    """Slack's confirmation dialog, shown before the click is even sent."""

    title: str
    text: str
    confirm: str = "Confirm"
    deny: str = "Cancel"
    danger: bool = False


OPEN_ONLY = frozenset({FindingStatus.OPEN})
UNTIL_CLOSED = frozenset({FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED})  # acknowledging is not closing
ALWAYS = frozenset(FindingStatus)


class Needs(StrEnum):
    CLUSTER = "cluster_id"
    INSTANCE = "instance_id"


@dataclass(frozen=True)
class ActionSpec:
    id: str  # the Slack action_id, "esm.<name>"
    label: str  # button text, at most 75 characters
    order: int = 100  # position among the finding's buttons
    style: str | None = None  # "primary" or "danger"
    needs: frozenset[Needs] = frozenset()  # the button is hidden when the finding lacks these
    offered_while: frozenset[FindingStatus] = OPEN_ONLY  # finding states it is offered (and runs) in
    responders_only: bool = True  # only ESM_RESPONDERS may run it (checked on the server)
    readers_only: bool = False  # reads audit data: with ESM_READERS set, only readers and responders (#11)
    destructive: bool = False  # changes the world: dry-run (the dispatcher's) and once per finding
    confirm: Callable[[Finding], Confirm] | None = None
    undoes: str | None = None  # an undo: its button sits in that action's thread note, never on the parent
    permissions: tuple[str, ...] = ()  # what the bot needs in Databricks (`esm-bot doctor` checks them)
    settings: tuple[str, ...] = ()  # Settings fields it needs (`rules check` and `doctor` say when unset)
    hidden: bool = False  # a follow-up step (a button in a private answer), never on the parent
    claim_as: str | None = None  # runs once per finding together with that action (same claim)

    def offered_on(self, finding: Finding) -> bool:
        return finding.status in self.offered_while

    def shown_on(self, finding: Finding, has: frozenset[Needs]) -> bool:
        return self.undoes is None and not self.hidden and self.offered_on(finding) and self.needs <= has


class OutcomeStatus(StrEnum):
    DONE = "done"
    ALREADY = "already"  # nothing to do: the goal was already reached
    REFUSED = "refused"  # not authorised, or the finding or button is no longer valid
    FAILED = "failed"  # the outside system said no; the message says why
    DRY_RUN = "dry_run"  # ESM_DRY_RUN: what would have happened
    CHOICE = "choice"  # the pre-flight offers the clicker a better choice first (Terminate: Quarantine instead)


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    message: str  # one line for the thread and the audit record
    finding_status: FindingStatus | None = None  # set when the action changes the finding
    private: bool = False  # answer the clicker only; nothing goes into the thread
    blocks: tuple[dict[str, Any], ...] | None = None  # a richer private answer than `message`
    note: str | None = None  # the status note shown on the finding, when not `message` (e.g. a reason)
    record: ActionRecord | None = None  # before/after, the parent's containment line, the undo's state (#12)
    undo: bool = False  # offer this action's undo in its thread note


    @classmethod
    def refused(cls, message: str) -> "Outcome":
        return cls(OutcomeStatus.REFUSED, message, private=True)


@dataclass
class ActionContext:
    """Everything an action may use: the finding, who asked, and the ports to the world."""

    finding: Finding
    value: ButtonValue
    interaction: Interaction
    store: ActionStore
    clusters: ClusterControl | None  # None when no Databricks workspace is configured
    dry_run: bool = False
    extras: dict[str, Any] = field(default_factory=dict)  # optional services (e.g. "recent")

    @property
    def user_id(self) -> str:
        return self.interaction.user_id


class ResponseAction(Protocol):
    spec: ActionSpec

    async def preflight(self, ctx: ActionContext) -> Outcome | None:
        """None to go ahead; an Outcome to stop with (already done, nothing to act on, …)."""

    async def run(self, ctx: ActionContext) -> Outcome:
        """The action itself. For a destructive action this is the step that changes the world:
        with ESM_DRY_RUN the dispatcher never calls it and reports `plan(ctx)` instead."""


class DestructiveAction(ResponseAction, Protocol):
    async def plan(self, ctx: ActionContext) -> str:
        """What run() would change, after a passed pre-flight: "would replace the ACL of … with …"."""
