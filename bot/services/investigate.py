"""Investigate (#12): gather the timeline around a finding from the audit source and the
workspace API, post it as one reply in the finding's thread, and attach the whole of it as CSV
and a small chart (files_upload_v2). A part that fails is named in the reply, never fatal."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.core import timeline as tl
from bot.core.containment import suspect_of
from bot.core.findings import Finding
from bot.core.ports import AuditSource, Chat, ChatError, ClusterControl, FindingReader
from bot.render.timeline import chart_png, timeline_message

log = logging.getLogger(__name__)
T = TypeVar("T")
LIMIT = 2000  # entries read per part at most
PART_TIMEOUT = 60.0


@dataclass(frozen=True)
class Investigation:
    entries: int
    problems: tuple[str, ...]
    files: tuple[str, ...]  # ids of the files attached
    reply_ts: str


@dataclass
class InvestigateService:
    source: AuditSource
    chat: Chat
    store: FindingReader
    clusters_of: Callable[[str], ClusterControl | None]
    channel_for: Callable[[Finding], str]

    async def investigate(self, finding: Finding, cluster_id: str | None, requested_by: str) -> Investigation:
        message = await self.store.message_of(finding.key)
        if message is None:
            raise ChatError("the finding's message is not posted yet; try again in a moment", permanent=True)
        channel, thread_ts = message
        window = tl.Window.around(finding.first_event.event_time)
        entries, problems, user = await self._gather(finding, cluster_id, window)
        title = f"of {finding.detection.name} on {finding.first_event.instance_id or cluster_id or 'unknown host'}" \
                f" (requested by {requested_by})"
        user_line = f"User looked at: {user[0]}, {user[1]}." if user else None
        text, blocks = timeline_message(title, window, entries, problems, user_line)
        reply_ts = await self.chat.post(channel, text, blocks, thread_ts=thread_ts)
        files = await self._attach(channel, thread_ts, finding, window, entries)
        return Investigation(len(entries), tuple(problems), tuple(files), reply_ts)

    async def _gather(self, finding: Finding, cluster_id: str | None,
                      window: tl.Window) -> tuple[list[tl.Entry], list[str], tuple[str, str] | None]:
        problems: list[str] = []
        instance = finding.first_event.instance_id
        clusters = self.clusters_of(finding.first_event.workspace_id)
        rows: list[Any] = []
        commands: list[Any] = []
        events: list[dict[str, Any]] = []
        runs: list[dict[str, Any]] = []
        if instance:
            rows = await self._part("Capsule8 events", problems, lambda: self.source.capsule8_on_instance(
                instance, window.start, window.end, LIMIT))
        if cluster_id:
            commands = await self._part("notebook commands", problems, lambda: self.source.notebook_commands(
                cluster_id, window.start, window.end, LIMIT))
        if cluster_id and clusters is not None:
            events = await self._part("cluster events", problems, lambda: clusters.cluster_events(
                cluster_id, window.start, window.end, LIMIT))
            runs = await self._part("job runs", problems, lambda: clusters.runs_on_cluster(
                cluster_id, window.start, window.end, 200))
        suspect = suspect_of(finding, commands, window.event)
        activity: list[dict[str, Any]] = []
        if suspect is not None:
            user = suspect.user
            activity = await self._part("the user's logins and tokens", problems, lambda: self.source.user_activity(
                user, window.event - tl.USER_LOOKBACK, window.end, LIMIT))
        entries = tl.ordered(tl.from_capsule8(rows), tl.from_commands(commands),
                             tl.from_cluster_events(events), tl.from_runs(runs),
                             tl.from_user_activity(suspect.user, activity) if suspect else [])
        return entries, problems, (suspect.user, suspect.why) if suspect else None

    async def _part(self, name: str, problems: list[str], call: Callable[[], Awaitable[list[T]]]) -> list[T]:
        try:
            return await asyncio.wait_for(call(), PART_TIMEOUT)
        except asyncio.TimeoutError:
            problems.append(f"{name}: no answer within {PART_TIMEOUT:.0f}s")
        except Exception as exc:  # one part failing leaves the others
            log.warning("investigate: %s failed: %s", name, exc)
            problems.append(f"{name}: {str(exc).split('. Config: ', 1)[0][:200]}")
        return []

    async def _attach(self, channel: str, thread_ts: str, finding: Finding, window: tl.Window,
                      entries: list[tl.Entry]) -> list[str]:
        stamp = f"{window.event:%Y%m%dT%H%M%S}"
        files: list[tuple[str, bytes, str, str | None]] = [(f"timeline-{stamp}.csv", tl.to_csv(entries), "Timeline (CSV)", None)]
        try:
            files.append((f"timeline-{stamp}.png", await asyncio.to_thread(chart_png, window, entries),
                          "Events over time", f"Timeline of {finding.detection.name}: entries per 5 minutes"))
        except Exception as exc:  # a chart is a nicety: the CSV still goes
            log.warning("investigate: chart failed: %s", exc)
        ids = []
        for name, content, title, alt in files:
            ids.append(await self.chat.upload_file(channel, name, content, title=title, thread_ts=thread_ts,
                                                   alt_txt=alt[:1000] if alt else None))
        return ids
