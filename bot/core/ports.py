"""The outside world as the domain sees it. Adapters implement these; tests use real adapters
against local emulators, so no test double lives here."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from bot.core.events import AuditRow
from bot.core.findings import ClusterContext, Finding, FindingStatus, NotebookCommand
from bot.core.recent import RecentRow
from bot.core.incidents import Incident, IncidentSummary
from bot.core.state import EventRecord, HeartbeatSeen, NewOutboxItem, OutboxItem, OutboxKind, Payload
from bot.core.suppressions import Suppression


class SourceError(RuntimeError):
    """The audit source (warehouse or embedded store) failed; the message says why."""


class StoreError(RuntimeError):
    """The state store failed (unreachable, locked, corrupt); the message says why, no secret."""


class WorkspaceError(RuntimeError):
    """The Databricks workspace API failed; the message says why."""


class ChatError(RuntimeError):
    """Slack refused or failed; `retry_after` is set when Slack asked us to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None, permanent: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


class AuditSource(Protocol):
    async def capsule8_since(self, since: datetime, limit: int, after_id: str = "") -> list[AuditRow]:
        """Capsule8 and ClamAV rows after (since, after_id) in (event_time, event_id) order,
        oldest first, at most `limit` (keyset pagination)."""

    async def capsule8_ids_between(self, since: datetime, until: datetime, limit: int) -> list[str]:
        """The ids of Capsule8 and ClamAV rows with since <= event_time < until (the sweep)."""

    async def capsule8_by_ids(self, event_ids: Sequence[str], since: datetime) -> list[AuditRow]:
        """Those rows, whole, oldest first (`since` prunes partitions: no row is older)."""

    async def capsule8_detection_since(self, detection: str, since: datetime, limit: int) -> list[AuditRow]:
        """Capsule8 rows of one detection with event_time >= since, newest first, at most `limit`."""

    async def notebook_commands(
        self, cluster_id: str, start: datetime, end: datetime, limit: int
    ) -> list[NotebookCommand]:
        """Verbose-audit `runCommand` rows on that cluster in [start, end], newest first."""

    async def cluster_for_instance(self, instance_id: str, at: datetime) -> tuple[str, bool] | None:
        """(cluster_id, is_driver) from system.compute.node_timeline, or None."""

    async def cluster_record(self, cluster_id: str) -> ClusterContext | None:
        """The latest system.compute.clusters row for that cluster, or None."""

    async def recent_summary(
        self,
        since: datetime,
        *,
        instance_id: str | None = None,
        detection: str | None = None,
        workspace_id: int | None = None,
        limit: int = 2000,
    ) -> list[RecentRow]:
        """Capsule8 events since `since`, one row per (detection, instance, workspace) with the
        count and first/last time, most recently active first, at most `limit` rows. Filters
        left None match everything; values are bound as parameters, never written into SQL."""

    async def close(self) -> None: ...


class Workspace(Protocol):
    host: str  # the workspace URL, for links

    async def instance_index(self) -> dict[str, ClusterContext]:
        """Every live cluster's driver and executor instance ids -> that cluster (clusters.list)."""

    async def get_cluster(self, cluster_id: str) -> ClusterContext | None:
        """None when the cluster does not exist."""


class Chat(Protocol):
    async def post(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]],
        *,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Post a message; returns its ts. Raises ChatError."""

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]], *,
                     metadata: dict[str, Any] | None = None) -> None:
        """Replace a message's content (and its metadata, when given). Raises ChatError."""

    async def find_posted(self, channel: str, event_type: str, key: str, limit: int = 200) -> str | None:
        """The ts of a recent top-level message whose metadata carries this key, or None."""

    async def upload_file(
        self,
        channel: str | None,
        filename: str,
        content: bytes,
        *,
        title: str | None = None,
        thread_ts: str | None = None,
        initial_comment: str | None = None,
        alt_txt: str | None = None,
    ) -> str:
        """Share a file in a channel (a thread when `thread_ts`); returns its file id. Raises
        ChatError. Not retried on an ambiguous failure: a retry could share it twice."""

    async def find_reply(self, channel: str, thread_ts: str, event_type: str, key: str, limit: int = 1000) -> str | None:
        """The ts of a reply in that thread whose metadata carries this key, or None."""


class Clock(Protocol):
    def now(self) -> datetime: ...


class OpenedModal(Protocol):
    """A modal the clicker has open: it can change without a trigger_id (views.update)."""

    async def update(self, view: dict[str, Any]) -> bool:
        """Replace its content; False when Slack refused because the modal changed meanwhile (the
        user's own change re-renders it) or was closed."""


class Interaction(Protocol):
    """The Slack interaction that started an action: who clicked, and how to answer them."""

    user_id: str

    async def reply_private(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        """An answer only the clicker sees."""

    async def open_modal(self, view: dict[str, Any]) -> OpenedModal:
        """Open a modal at once: Slack's trigger_id expires 3 s after the click, so anything slow
        comes after, through the returned modal's update()."""


class FindingReader(Protocol):
    async def finding(self, key: str) -> Finding | None: ...

    async def message_of(self, key: str) -> tuple[str, str] | None:
        """(channel, ts) of the finding's parent message, once posted."""


class ActionStore(FindingReader, Protocol):
    """The state an action may read and change; every change is recorded for the audit trail."""

    async def claim_action(self, key: str, action: str, user_id: str) -> bool:
        """True for the first caller only: a double click or two responders run it once."""

    async def release_claim(self, key: str, action: str) -> None: ...

    async def set_finding_status(self, key: str, status: FindingStatus, by: str, note: str | None) -> None: ...

    async def record_action(
        self, key: str, action: str, user_id: str, outcome: str, message: str, *, dry_run: bool,
        outbox: Sequence[NewOutboxItem] = (),
    ) -> None:
        """The audit record and the Slack messages it causes, in one transaction."""

    async def actions_for(self, key: str) -> list[dict[str, Any]]: ...


class SuppressionStore(Protocol):
    """Benign suppressions made in Slack, and how many events every suppression has hidden."""

    async def add_suppression(self, s: Suppression) -> Suppression:
        """Returns it with its id; raises SuppressionExists when an active one already hides the
        same events (same detection, scope and patterns), decided in one transaction."""

    async def suppression(self, suppression_id: str) -> Suppression | None: ...
    async def active_suppressions(self, now: datetime) -> list[Suppression]: ...
    async def remove_suppression(self, suppression_id: str, by: str) -> bool: ...
    async def suppression_counts(self) -> dict[str, int]: ...
    async def count_suppressed(self, suppression_id: str, finding_key: str | None, events: int = 1) -> None: ...


class ReplayLedger(Protocol):
    """Signed Slack requests already let through, shared by restarts and replicas (#11)."""

    async def first_seen(self, key: str, expires_at: datetime) -> bool:
        """True for the first caller with this key until `expires_at`; False for every later one."""


class HostIndex(Protocol):
    async def clusters_of_instances(self, instance_ids: Iterable[str]) -> dict[str, str]:
        """instance id -> the cluster the bot resolved for it at ingest (its latest event's)."""


class SyncLedger(HostIndex, Protocol):
    """What a sync reads and writes: the watermark, events seen, open findings, and (through
    record_sync) everything a sync stores, atomically. Replicas take turns through sync_lock."""

    def sync_lock(self) -> AbstractAsyncContextManager[bool]:
        """`async with ledger.sync_lock() as held:` held is False while another sync runs."""

    async def request_sync(self) -> None:
        """Ask whoever holds the sync lock for one more sync after theirs."""

    async def take_sync_request(self) -> bool:
        """True, once, if a sync was requested since the last take."""

    async def watermark(self) -> datetime | None: ...
    async def seen(self, event_ids: Sequence[str]) -> set[str]: ...

    async def last_heartbeats(self, detection: str, since: datetime, exclude: str = "") -> list[HeartbeatSeen]:
        """The hosts that sent an event of that (heartbeat) detection at or after `since`, each with
        its newest event of any detection but `exclude` (a host that still reports is alive)."""
    async def latest_findings(self, groups: Iterable[str]) -> dict[str, Finding]: ...

    async def record_sync(
        self,
        events: Sequence[EventRecord],
        findings: Sequence[Finding],
        outbox: Sequence[NewOutboxItem],
        watermark: datetime | None,
        suppressed: Sequence[tuple[str, str | None]] = (),
        *,
        incidents: Sequence[Incident] = (),
        members: Sequence[tuple[str, str]] = (),
        close_incidents: Sequence[str] = (),
    ) -> None:
        """Events, findings, outbox items, storm incidents and watermark, atomically; the
        watermark never moves back."""

    async def open_incidents(self) -> list[Incident]:
        """Storm incidents whose storm is not over (#14)."""

    async def incidents_of(self, finding_keys: Iterable[str]) -> dict[str, str]:
        """finding key -> the incident it was rolled up into, for those that were."""


class IncidentReader(Protocol):
    """Storm incidents (#14) as the outbox and the incident buttons read them."""

    async def incident(self, key: str) -> Incident | None: ...
    async def incident_members(self, key: str, offset: int = 0) -> list[Finding]: ...
    async def incident_summary(self, key: str, top: int = 100) -> IncidentSummary | None: ...
    async def incidents_of(self, finding_keys: Iterable[str]) -> dict[str, str]: ...


class OutboxQueue(FindingReader, IncidentReader, Protocol):
    """The Slack outbox: items written with the change that caused them, sent in thread order."""

    async def due_outbox(self, limit: int = 100, skip: Sequence[str] = ()) -> list[OutboxItem]:
        """Due items, parent posts first, threads in `skip` left out; with replicas only those of
        threads this one claimed."""

    async def pending_items(self, key: str, kind: OutboxKind) -> list[OutboxItem]:
        """A finding's pending items of one kind, oldest first (for coalescing)."""

    async def outbox_depth(self) -> int: ...
    async def outbox_sent(self, item_id: int) -> None: ...
    async def outbox_retry(self, item_id: int, error: str, not_before: float) -> None: ...
    async def outbox_dead(self, item_id: int, error: str) -> None: ...

    async def outbox_attempt(self, item_id: int) -> Payload | None:
        """Committed before an item goes to Slack, so whoever sends it next checks Slack first;
        the payload as of this attempt (None: no longer pending)."""

    async def outbox_dead_for_finding(self, key: str, error: str) -> None: ...
    async def posted_with_message(self, item_id: int, key: str, channel: str, ts: str) -> None: ...
    async def incident_posted(self, item_id: int, key: str, ts: str) -> None: ...
    async def incident_listed(self, key: str, listed: int) -> None: ...


class StatusReader(Protocol):
    """What /esm status, /readyz and the CLI report."""

    async def counts(self) -> dict[str, int]: ...
    async def watermark(self) -> datetime | None: ...
    async def outbox_depth(self) -> int: ...
    async def get_meta(self, key: str) -> str | None: ...


class BenignStore(SuppressionStore, ActionStore, HostIndex, Protocol):
    """What the benign service uses: suppressions, the audit trail, and hosts' clusters."""


class StateStore(SyncLedger, OutboxQueue, BenignStore, StatusReader, ReplayLedger, Protocol):
    """The whole state store, as the wiring opens and closes it (bot.adapters.state); every
    consumer names only the small port above that it uses."""

    async def set_meta(self, key: str, value: str) -> None: ...
    async def close(self) -> None: ...


class ClusterControl(Protocol):
    """The Databricks calls a response action may make."""

    async def get_cluster(self, cluster_id: str) -> ClusterContext | None: ...

    async def terminate_cluster(self, cluster_id: str) -> None:
        """Terminate (reversible: clusters.delete). Never a permanent delete."""

    async def active_runs_on_cluster(self, cluster_id: str) -> list[dict[str, Any]]: ...


class WorkspaceApi(Workspace, ClusterControl, Protocol):
    """A workspace's API as the bot uses it: enrichment and the response actions."""
