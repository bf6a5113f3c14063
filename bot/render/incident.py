"""Block Kit of storm incidents (#14): the incident message, the list of its clusters in its
thread, and the confirmation modals of its bulk actions (Terminate all, Quarantine all). Pure functions of domain values; every
outside value escaped and clipped as in bot.render.blocks.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.core.incidents import ClusterRow, Incident, IncidentSummary
from bot.core.text import clip
from bot.render.blocks import (
    MAX_HEADER,
    MAX_SECTION_TEXT,
    MAX_TEXT,
    SEVERITY_EMOJI,
    context,
    escape,
    mrkdwn,
    plain,
    section,
)

OPEN_FINDING = "esm_incident.open"  # the select menu: one member's finding, privately
TERMINATE_ALL = "esm_incident.terminate_all"  # the responder-only bulk button
TERMINATE_ALL_CALLBACK = "esm_incident.terminate_all.confirm"  # its confirmation modal
QUARANTINE_ALL = "esm_incident.quarantine_all"  # the responder-only bulk quarantine (#12's action)
QUARANTINE_ALL_CALLBACK = "esm_incident.quarantine_all.confirm"
UNDO_QUARANTINE_ALL = "esm_incident.undo_quarantine_all"  # on Quarantine all's thread note
METADATA_EVENT = "esm_incident"
LIST_METADATA_EVENT = "esm_incident_list"
TOP_ROWS = 10  # clusters in the incident message's table
MAX_OPTIONS = 100  # Slack's limit of options in a static_select
MAX_OPTION_TEXT = 75
LIST_SECTIONS = 40  # sections per thread message listing clusters (Slack allows 50 blocks)
MODAL_SECTIONS = 40  # sections of the modal's cluster list (a modal allows 100 blocks)
SECTION_BUDGET = MAX_SECTION_TEXT - 100


def _name(row: ClusterRow) -> str:
    return row.name or row.cluster_id or "unknown cluster"


def _cell(value: str | None, width: int) -> str:
    text = " ".join((value or "-").split()).replace("`", "\u02cb")
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True)
class BulkCopy:
    """The words of one bulk action's button and confirmation modal."""

    button: str  # the incident message's button (action_id)
    callback_id: str  # its modal
    verb: str  # "Terminate"
    title: str  # the modal's title (Slack: at most 24 characters)
    consequence: str  # what happens to the clusters


TERMINATE_COPY = BulkCopy(TERMINATE_ALL, TERMINATE_ALL_CALLBACK, "Terminate", "Terminate clusters",
                          "Running notebooks and jobs on them stop; each can be started again later.")
QUARANTINE_COPY = BulkCopy(
    QUARANTINE_ALL, QUARANTINE_ALL_CALLBACK, "Quarantine", "Quarantine clusters",
    "Only the quarantine principals and esm-bot keep attach, restart and manage on them; everyone else loses "
    "access. They keep running, so the evidence stays; Undo in the incident's thread restores each list exactly.")


def incident_message(incident: Incident, summary: IncidentSummary, *, terminate: bool = True,
                     quarantine: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) of the incident message; within Slack's limits for any input."""
    d = incident.detection
    emoji = SEVERITY_EMOJI.get(d.severity, ":white_circle:")
    header = {"type": "header", "text": {"type": "plain_text", "emoji": True, "text": clip(
        f"{emoji} Storm: {escape(d.name)} on {summary.clusters} clusters", MAX_HEADER)}}
    counts = (f"*{d.severity.label.capitalize()}* · *{summary.events}* events · *{summary.clusters}* clusters · "
              f"*{summary.hosts}* hosts · *{summary.workspaces}* workspaces\n"
              f"First {_when(summary.first_seen)} · last {_when(summary.last_seen)}")
    blocks: list[dict[str, Any]] = [header, section(counts), section(_table(summary.rows[:TOP_ROWS], summary))]
    elements: list[dict[str, Any]] = []
    options = [_option(row) for row in summary.rows[:MAX_OPTIONS]]
    if options:
        placeholder = "Open a cluster's finding" + ("" if len(summary.rows) <= MAX_OPTIONS else
                                                    f" (top {MAX_OPTIONS})")
        elements.append({"type": "static_select", "action_id": OPEN_FINDING, "placeholder": plain(placeholder),
                         "options": options})
    clusters = summary.terminate_count
    if quarantine and clusters:
        elements.append({"type": "button", "action_id": QUARANTINE_ALL,
                         "text": plain(clip(f"Quarantine all {clusters} clusters…", 75)), "value": incident.key})
    if terminate and clusters:
        elements.append({"type": "button", "action_id": TERMINATE_ALL, "style": "danger",
                         "text": plain(clip(f"Terminate all {clusters} clusters…", 75)), "value": incident.key})
    if elements:
        blocks.append({"type": "actions", "block_id": "incident_actions", "elements": elements})
    closed = " · storm over" if incident.closed_at is not None else ""
    blocks.append(context([mrkdwn(clip(
        f"{summary.findings} findings rolled up into one message while this channel storms{closed}; "
        "every cluster is listed in the thread and in `/esm`.", MAX_TEXT))]))
    text = clip(f"ESM storm: {escape(d.name)} ({d.severity.label}) — {summary.events} events on "
                f"{summary.clusters} clusters", MAX_TEXT)
    return text, blocks


def _table(rows: Sequence[ClusterRow], summary: IncidentSummary) -> str:
    head = f"{'cluster':<28} {'owner':<24} {'access':<16} {'events':>6}"
    lines = [head] + [f"{_cell(_name(r), 28):<28} {_cell(r.owner, 24):<24} {_cell(r.access_mode, 16):<16} "
                      f"{r.events:>6}" for r in rows]
    more = len(summary.rows) - len(rows)
    tail = f"\n…and {more} more clusters in the thread" if more > 0 else ""
    return clip("*Top clusters*\n```" + escape("\n".join(lines)) + "```" + tail, MAX_SECTION_TEXT)


def _option(row: ClusterRow) -> dict[str, Any]:
    label = clip(f"{_cell(_name(row), 50)} · {row.events} events", MAX_OPTION_TEXT)
    return {"text": plain(escape(label) if label.strip() else "cluster"), "value": row.finding_key}


def _line(row: ClusterRow) -> str:
    ident = f" `{_cell(row.cluster_id, 60)}`" if row.cluster_id and row.cluster_id != row.name else ""
    return (f"• *{escape(_cell(_name(row), 60))}*{escape(ident)} · {escape(_cell(row.owner, 60))} · "
            f"{escape(_cell(row.access_mode, 30))} · ws {escape(_cell(row.workspace_id, 30))} · "
            f"{row.events} events on {row.hosts} hosts")


def _sections(lines: Sequence[str]) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        line = clip(line, SECTION_BUDGET)
        if current and size + len(line) + 1 > SECTION_BUDGET:
            out.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        out.append("\n".join(current))
    return out


def list_messages(incident: Incident, rows: Sequence[ClusterRow], first: int
                  ) -> list[tuple[int, str, list[dict[str, Any]]]]:
    """The thread messages listing `rows` (members `first`… of the incident): (members listed
    after it, fallback text, blocks), each ≤ LIST_SECTIONS sections of ≤ 3,000 characters."""
    messages: list[tuple[int, str, list[dict[str, Any]]]] = []
    start = 0
    while start < len(rows):
        sections: list[str] = []
        end = start
        current: list[str] = []
        size = 0
        while end < len(rows):
            line = clip(_line(rows[end]), SECTION_BUDGET)
            if current and size + len(line) + 1 > SECTION_BUDGET:
                sections.append("\n".join(current))
                current, size = [], 0
                if len(sections) == LIST_SECTIONS:
                    break
            current.append(line)
            size += len(line) + 1
            end += 1
        if current and len(sections) < LIST_SECTIONS:
            sections.append("\n".join(current))
        title = f"Affected clusters {first + start + 1}–{first + end} of this incident"
        blocks = [section(f"*{title}*"), *(section(s) for s in sections)]
        messages.append((first + end, clip(title, MAX_TEXT), blocks))
        start = end
    return messages


def terminate_all_modal(incident: Incident, rows: Sequence[ClusterRow], dry_run: bool) -> dict[str, Any]:
    """The confirmation modal naming every cluster the bulk terminate touches."""
    return bulk_modal(TERMINATE_COPY, incident, rows, dry_run)


def bulk_modal(copy: BulkCopy, incident: Incident, rows: Sequence[ClusterRow], dry_run: bool) -> dict[str, Any]:
    """The confirmation modal naming every cluster a bulk action touches."""
    lines = [f"• {escape(_cell(_name(r), 60))} `{escape(_cell(r.cluster_id, 60))}` · "
             f"{escape(_cell(r.owner, 60))}" for r in rows]
    sections = _sections(lines)
    shown = sections[:MODAL_SECTIONS]
    intro = (f"{copy.verb} these *{len(rows)}* clusters affected by *{escape(incident.detection.name)}*? "
             f"{copy.consequence}")
    if dry_run:
        intro += "\n_Dry run (ESM_DRY_RUN is on): nothing will be changed._"
    blocks = [section(intro), *(section(s) for s in shown)]
    if len(sections) > len(shown):
        blocks.append(context([mrkdwn(f"…the list goes on in the incident's thread "
                                      f"({len(rows)} clusters in all).")]))
    return {
        "type": "modal", "callback_id": copy.callback_id, "private_metadata": incident.key,
        "title": plain(copy.title), "submit": plain(f"{copy.verb} all"), "close": plain("Cancel"),
        "blocks": blocks,
    }


def outcomes_messages(title: str, lines: Sequence[str]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The bulk action's per-cluster outcomes for the incident's thread, chunked."""
    sections = _sections([escape(line) for line in lines])
    out = []
    for start in range(0, max(len(sections), 1), LIST_SECTIONS):
        chunk = sections[start : start + LIST_SECTIONS]
        out.append((clip(escape(title), MAX_TEXT), [section(f"*{escape(title)}*"), *(section(s) for s in chunk)]))
    return out


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
