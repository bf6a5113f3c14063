"""Block Kit rendering of findings: pure functions from domain values to Slack dicts.

Two rules hold everywhere below:
- Every value that comes from an event, a cluster or a notebook is escaped (`&`, `<`, `>`) and,
  inside mrkdwn, shown in a code span or block. Slack mrkdwn has no escape for `*`, `_`, `~`, so a
  code span is the only way to show `*bold*` as typed; escaping stops mentions and links. Every
  mrkdwn object is `verbatim` so Slack does not auto-link bare `@channel` or URLs either.
  Free sentences (problems, notes) go into plain_text objects instead.
- Every text is clipped to its Slack limit (DESIGN.md §5), measured in UTF-16 code units, the
  stricter of the ways Slack might count, so no input can make Slack reject the message.
  `clip` and `slack_len` live in bot/core/text.py (the domain bounds its own words with them)
  and are re-exported here with the rest of the text helpers.

Pure: imports only the standard library and bot.core.*; bot.core never imports bot.render.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Literal
from urllib.parse import quote

from bot.core.actions import ActionSpec, Confirm, Needs
from bot.core.events import CAPSULE8_SERVICE, AuditRow, clamav_infections
from bot.core.findings import (
    ClusterContext,
    Context,
    Detection,
    Finding,
    FindingStatus,
    Lineage,
    NotebookCommand,
    Severity,
    UNCATEGORISED,
    is_host_container_id,
    lineage_of,
)
from bot.core.ids import ButtonValue
from bot.core.queries import sql_literal
from bot.core.text import clip, slack_len  # re-exported: the rendering's own text helpers

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ACTION_ID = 255
MAX_BUTTONS = 25  # Slack's limit of elements in one actions block
MAX_BLOCK_ID = 255
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTION_ELEMENTS = 25
MAX_TEXT = 3000  # any other text object, and the fallback `text` of a message
MAX_URL = 3000

COMMANDS_SHOWN = 5
COMMANDS_TITLE = "Commands on this cluster in the 30 minutes before"

SEVERITY_EMOJI = {
    Severity.CRITICAL: ":rotating_light:",
    Severity.HIGH: ":red_circle:",
    Severity.MEDIUM: ":large_orange_circle:",
    Severity.LOW: ":large_yellow_circle:",
    Severity.INFO: ":large_blue_circle:",
}

# ---------------------------------------------------------------------------------------------
# text: escaping, code spans (clipping: bot.core.text)
# ---------------------------------------------------------------------------------------------

_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,31}")  # bounded: a 5,000-char "id" is not a user
# A backtick cannot be escaped inside a Slack code span; this look-alike keeps the span closed.
_BACKTICK_LOOKALIKE = "\u02cb"


def escape(text: str) -> str:
    """Slack's three control characters as entities: no mention, link or quote from data."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _one_line(text: str) -> str:
    return " ↵ ".join(text.splitlines()) if ("\n" in text or "\r" in text) else text


def code(value: str, limit: int = 200) -> str:
    """An untrusted value as an inline code span: one line, escaped, clipped."""
    inner = _one_line(value).replace("`", _BACKTICK_LOOKALIKE)
    return f"`{clip(escape(inner), limit)}`"


def code_block(value: str, limit: int) -> str:
    """An untrusted value as a code block; single backticks survive (shell commands use them)."""
    inner = re.sub(r"`{2,}|\A`|`\Z", lambda m: _BACKTICK_LOOKALIKE * len(m.group()), value)
    return f"```{clip(escape(inner), limit)}```"


def _present(value: str | None) -> bool:
    return value is not None and value.strip() != ""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _when(moment: datetime) -> str:
    utc = _utc(moment)
    return f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} {utc.hour:02d}:{utc.minute:02d}:{utc.second:02d} UTC"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:  # the domain keeps UTC; a naive time is UTC by convention
        return moment
    try:
        return moment.astimezone(timezone.utc)
    except (OverflowError, ValueError):  # year 1 or 9999 pushed over the edge by the offset
        return moment


# ---------------------------------------------------------------------------------------------
# Block Kit primitives
# ---------------------------------------------------------------------------------------------


def mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(clip(text, MAX_SECTION_TEXT))}


def plain_section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": plain(clip(escape(text), MAX_SECTION_TEXT))}


def context(elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "context", "elements": elements[:MAX_CONTEXT_ELEMENTS]}


def field(label: str, value: str) -> dict[str, Any]:
    return mrkdwn(clip(f"*{label}*\n{value}", MAX_FIELD_TEXT))


def fields_section(fields: list[dict[str, Any]], text: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section"}
    if text:
        block["text"] = mrkdwn(clip(text, MAX_SECTION_TEXT))
    if fields:
        block["fields"] = fields[:MAX_FIELDS]
    return block


# ---------------------------------------------------------------------------------------------
# links and pointers: raw strings (URLs, SQL, text); rendering escapes them
# ---------------------------------------------------------------------------------------------

MAX_ID_IN_LINK = 200  # longer is not a real cluster id, and would only bloat the message
_UNSAFE_IN_LINK = re.compile(r"[\s<>|\"`&?#]")  # would end the link or clash with our path
_AWS_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")


@dataclass(frozen=True)
class Links:
    workspace_url: str | None  # e.g. "https://dbc-123.cloud.databricks.com"
    workspace_name: str | None = None  # from the workspaces file, shown beside the id


def _workspace_base(links: Links) -> str | None:
    """The workspace URL if it can sit inside a Slack `<url|label>` link, else None."""
    url = (links.workspace_url or "").rstrip("/")
    if not url.startswith(("https://", "http://")) or _UNSAFE_IN_LINK.search(url):
        return None
    return url


def cluster_url(links: Links, cluster_id: str | None) -> str | None:
    base = _workspace_base(links)
    if base is None or not cluster_id or len(cluster_id) > MAX_ID_IN_LINK:
        return None
    return f"{base}/compute/clusters/{quote(cluster_id, safe='', errors='replace')}"


def cluster_events_url(links: Links, cluster_id: str | None) -> str | None:
    page = cluster_url(links, cluster_id)
    return None if page is None else f"{page}/events"


def reproduce_sql(detection: str, instance_id: str | None, since: date, workspace_id: str | None = None) -> str:
    """Databricks SQL that lists the events behind a finding (shown to humans, never run)."""
    lines = [
        "SELECT event_time, event_id, workspace_id, request_params, response",
        "FROM system.access.audit",
        f"WHERE service_name = {sql_literal(CAPSULE8_SERVICE)}",
        f"  AND action_name = {sql_literal(detection)}",
    ]
    if instance_id:
        lines.append(f"  AND request_params['instanceId'] = {sql_literal(instance_id)}")
    if workspace_id and workspace_id.isascii() and workspace_id.isdigit():
        lines.append(f"  AND workspace_id = {workspace_id}")
    lines += [f"  AND event_date >= DATE'{since.isoformat()}'", "ORDER BY event_time"]
    return "\n".join(lines)


def cloud_pointer(instance_id: str | None) -> str | None:
    """Where to look next in AWS for this instance; None unless it is an EC2 instance id."""
    if not instance_id or not _AWS_INSTANCE_ID.fullmatch(instance_id):
        return None
    return (
        f"CloudTrail: eventSource = ec2.amazonaws.com with resources.ARN containing {instance_id}"
        f" · VPC flow logs: the ENI of {instance_id}"
        f" (aws ec2 describe-instances --instance-ids {instance_id})"
    )


# ---------------------------------------------------------------------------------------------
# the parent message of a finding, and its details reply
# ---------------------------------------------------------------------------------------------

MessageStyle = Literal["compact", "full"]
STYLES: tuple[MessageStyle, ...] = ("compact", "full")
EVIDENCE_LIMIT = 240  # the one line of evidence on a compact parent
NAME_LIMIT = 80  # a cluster name, an owner on a compact parent
LINE_LIMIT = 160  # a timing line, a status note on a compact parent
COMPACT_TEXT_LIMIT = 1400  # every text of a compact parent but its buttons: about a dozen lines
RAW_EVENT_LIMIT = 2800
DETAILS_HINT = "Process chain, notebook commands, guidance and SQL to reproduce: in the thread"


def finding_message(
    finding: Finding, links: Links, actions: Sequence[ActionSpec] = (), style: MessageStyle = "compact"
) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) of a finding's parent message; within Slack limits for any input.

    compact: a dozen lines (header, one summary line, the most telling line of evidence, status,
    buttons); everything else is in `finding_details`, the first reply in its thread.
    full: everything in this one message, no details reply."""
    if style == "full":
        blocks = [
            _header(finding.detection),
            _summary(finding, links),
            *_timing_blocks(finding.context),
            *_detail_blocks(finding, links),
            *_status_blocks(finding),
            *_suppressed_blocks(finding.suppressed_count),
            *_action_blocks(finding, actions),
        ]
        return _fallback(finding), blocks[:MAX_BLOCKS]
    blocks = [
        _header(finding.detection),
        section(_compact_summary(finding, links)),
        *_evidence_blocks(finding),
        *_timing_blocks(finding.context, LINE_LIMIT),
        *_compact_status_blocks(finding),
        *_action_blocks(finding, actions),
    ]
    return _fallback(finding), blocks[:MAX_BLOCKS]


def has_details_reply(style: MessageStyle) -> bool:
    return style == "compact"


def finding_details(finding: Finding, links: Links) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) of the first reply under a compact parent: the finding's fields,
    cluster, process lineage, notebook commands, guidance, SQL to reproduce it, links, and for a
    detection the catalogue does not know, the raw event."""
    blocks = [_summary(finding, links, title="*Details*", counter=False), *_detail_blocks(finding, links)]
    host = finding.first_event.instance_id
    where = code(host, 100) if host else "an unknown host"
    return clip(f"Details: {code(finding.detection.name, 150)} on {where}", MAX_TEXT), blocks[:MAX_BLOCKS]


def _detail_blocks(finding: Finding, links: Links) -> list[dict[str, Any]]:
    return [
        _cluster_block(finding.context),
        _lineage_block(_safe_lineage(finding.first_event)),
        *_scan_blocks(finding.first_event),
        *_command_blocks(finding.context),
        *_guidance_blocks(finding.detection),
        *_raw_event_blocks(finding),
        _reproduce_block(finding),
        *_link_blocks(finding, links),
    ]


# --- the compact parent ----------------------------------------------------------------------


def _compact_summary(finding: Finding, links: Links) -> str:
    """One line: severity · category · on cluster (owner) · workspace · when, seen N× on M hosts."""
    detection, row, cluster = finding.detection, finding.first_event, finding.context.cluster
    parts = [f"{_emoji(detection.severity)} *{detection.severity.label}*", _inline(detection.category, NAME_LIMIT)]
    if cluster is not None:
        name = cluster.name if _present(cluster.name) else cluster.cluster_id
        parts.append(f"on cluster {code(name or '', NAME_LIMIT)}")
        owner = cluster.owner if _present(cluster.owner) else cluster.single_user
        if owner is not None and _present(owner):
            parts.append(f"owner {code(owner, NAME_LIMIT)}")
    elif _cluster_id(finding):
        parts.append(f"on cluster {code(_cluster_id(finding) or '', NAME_LIMIT)}")
    else:
        host = code(row.instance_id, NAME_LIMIT) if row.instance_id else "an unknown host"
        parts.append(f"on {host} (cluster unknown)")
    parts.append(f"workspace {_workspace(row.workspace_id, links.workspace_name, 40)}")
    hosts = max(len(finding.hosts), 1)
    if finding.count > 1:
        parts.append(f"seen {finding.count}× on {_plural(hosts, 'host')} since {_when(finding.first_seen)}")
    else:
        parts.append(_when(finding.first_seen))
    if hosts == 1 and row.instance_id and (cluster is not None or _cluster_id(finding)):
        parts.append(f"host {code(row.instance_id, NAME_LIMIT)}")
    return " · ".join(parts)


def _inline(value: str, limit: int) -> str:
    """Reviewed configuration (a category) inside the summary line: one line, no code fences."""
    return escape(clip(_one_line(value).replace("`", _BACKTICK_LOOKALIKE), limit))


def _evidence_blocks(finding: Finding) -> list[dict[str, Any]]:
    """The one most telling line: the command line, else the last notebook command before the
    event, else the first infected file, else the file touched."""
    row = finding.first_event
    lineage = _safe_lineage(row)
    if _present(lineage.command_line):
        return [section(f"*Command line:* {code(lineage.command_line or '', EVIDENCE_LIMIT)}")]
    last = _last_command_before(finding.context.commands, row.event_time)
    if last is not None:
        who = f" by {code(last.user or '', NAME_LIMIT)}" if _present(last.user) else ""
        return [section(f"*Last notebook command* ({_when(last.event_time)}{who}): "
                        f"{code(last.command_text or '', EVIDENCE_LIMIT)}")]
    infections = clamav_infections(row)
    if infections:
        path, signature = infections[0]
        more = f" (+{len(infections) - 1} more)" if len(infections) > 1 else ""
        return [section(f"*Infected:* {code(path, EVIDENCE_LIMIT // 2)} — {code(signature, NAME_LIMIT)}{more}")]
    if _present(lineage.file_path):
        return [section(f"*File:* {code(lineage.file_path or '', EVIDENCE_LIMIT)}")]
    return []


def _last_command_before(commands: Sequence[NotebookCommand], moment: datetime) -> NotebookCommand | None:
    limit = _utc(moment).replace(tzinfo=None)
    before = [c for c in commands if _present(c.command_text) and _command_order(c) <= limit]
    return max(before, key=_command_order) if before else None


def _compact_status_blocks(finding: Finding) -> list[dict[str, Any]]:
    elements = [*_status_elements(finding, LINE_LIMIT)]
    if finding.suppressed_count > 0:
        elements.append(mrkdwn(f"{_plural(finding.suppressed_count, 'similar event')} hidden by benign suppressions"))
    elements.append(plain(DETAILS_HINT))
    return [context(elements)]


def _raw_event_blocks(finding: Finding) -> list[dict[str, Any]]:
    """A detection the catalogue does not know: the raw event, as the guidance asks to review it."""
    if finding.detection.category != UNCATEGORISED:
        return []
    try:
        raw = json.dumps(finding.first_event.to_json(), ensure_ascii=False, sort_keys=True, default=str, indent=1)
    except (TypeError, ValueError, RecursionError):
        raw = repr(finding.first_event)
    return [section(f"*Raw event*\n{code_block(raw, RAW_EVENT_LIMIT)}")]


def _emoji(severity: Severity) -> str:
    return SEVERITY_EMOJI.get(severity, ":white_circle:")


def _fallback(finding: Finding) -> str:
    host = finding.first_event.instance_id
    where = code(host, 100) if host else "an unknown host"
    text = f"ESM {finding.detection.severity.label} finding: {code(finding.detection.name, 150)} on {where}"
    if finding.count > 1:
        text += f" (seen {finding.count}×)"
    return clip(text, MAX_TEXT)


def _header(detection: Detection) -> dict[str, Any]:
    text = f"{_emoji(detection.severity)} {escape(detection.name)}"
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, MAX_HEADER), "emoji": True}}


def _summary(finding: Finding, links: Links, title: str | None = None, counter: bool = True) -> dict[str, Any]:
    detection, row = finding.detection, finding.first_event
    fields = [
        field("Category", escape(detection.category)),
        field("Severity", f"{_emoji(detection.severity)} {detection.severity.label}"),
        field("Workspace", _workspace(row.workspace_id, links.workspace_name)),
        field("Instance", code(row.instance_id) if row.instance_id else "unknown"),
        field("First seen", _when(finding.first_seen)),
    ]
    # the details reply is never edited: the running count lives on the parent only
    text = "\n".join(t for t in (title, _counter_line(finding) if counter else None) if t) or None
    return fields_section(fields, text)


def _timing_blocks(ctx: Context, limit: int = MAX_TEXT) -> list[dict[str, Any]]:
    """When the event's time is odd (it landed late; the host's clock is ahead), one line says so."""
    if not ctx.timing:
        return []
    return [{"type": "context", "elements": [
        {"type": "plain_text", "text": clip(escape(f"⏱ Time: {ctx.timing}"), limit), "emoji": True}]}]


def _workspace(workspace_id: str, name: str | None, limit: int = 200) -> str:
    if not _present(workspace_id):
        return "unknown"
    id_text = code(workspace_id, limit)
    return f"{escape(clip(name, min(60, limit)))} {id_text}" if name else id_text


def _counter_line(finding: Finding) -> str | None:
    if finding.count <= 1:
        return None
    hosts = max(len(finding.hosts), 1)
    return f"*Seen {finding.count}× on {_plural(hosts, 'host')} since {_when(finding.first_seen)}*"


# --- cluster ---------------------------------------------------------------------------------


def _about_commands(problem: str) -> bool:
    # Enrichment reports problems as sentences; the ones naming commands belong to that section.
    lowered = problem.lower()
    return "command" in lowered or "notebook" in lowered


def _cluster_block(ctx: Context) -> dict[str, Any]:
    if ctx.cluster is None:
        reasons = [p for p in ctx.problems if not _about_commands(p)]
        reason = "; ".join(reasons) or "no cluster matched this instance"
        return plain_section(f"Cluster: unknown — {reason}")
    return fields_section(_cluster_fields(ctx.cluster), _cluster_title(ctx.cluster))


def _cluster_title(cluster: ClusterContext) -> str:
    if _present(cluster.name):
        return f"*Cluster* {code(cluster.name or '', 300)} ({code(cluster.cluster_id, 200)})"
    return f"*Cluster* {code(cluster.cluster_id, 200)}"


def _cluster_fields(cluster: ClusterContext) -> list[dict[str, Any]]:
    values = [
        ("Owner", cluster.owner),
        ("Single user", cluster.single_user),
        ("Access mode", cluster.access_mode),
        ("Policy", cluster.policy_id),
        ("State", cluster.state),
        ("Runtime", cluster.runtime),
        ("Role of this instance", cluster.node_role),
        ("Looked up in", cluster.source),
    ]
    return [field(label, code(value, 500)) for label, value in values if value is not None and _present(value)]


# --- lineage ---------------------------------------------------------------------------------

CHAIN_HEAD, CHAIN_TAIL = 3, 6  # a long chain keeps its root and the processes nearest the event


def _safe_lineage(row: AuditRow) -> Lineage:
    try:
        return lineage_of(row)
    except RecursionError:  # a deeply nested JSON process chain; show the rest of the finding
        return Lineage(origin="unknown")


MAX_INFECTED_SHOWN = 10


def _scan_blocks(row: AuditRow) -> list[dict[str, Any]]:
    """A ClamAV finding's infected files: `path` — `signature`, the first few."""
    infections = clamav_infections(row)
    if not infections:
        return []
    lines = [f"{code(path, 300)} — {code(signature, 150)}" for path, signature in infections[:MAX_INFECTED_SHOWN]]
    if len(infections) > MAX_INFECTED_SHOWN:
        lines.append(f"…and {len(infections) - MAX_INFECTED_SHOWN} more")
    return [section(clip("*Infected files:*\n" + "\n".join(lines), MAX_SECTION_TEXT))]


def _lineage_block(lineage: Lineage) -> dict[str, Any]:
    lines = [f"*Origin:* {escape(lineage.origin)}"]
    lines += _container_line(lineage)
    if lineage.process_chain:
        lines.append(f"*Process chain:* {code(_chain_text(lineage.process_chain), 700)}")
    if _present(lineage.process_user):
        lines.append(f"*Process user:* {code(lineage.process_user or '', 100)}")
    if _present(lineage.file_path):
        lines.append(f"*File:* {code(lineage.file_path or '', 400)}")
    if _present(lineage.command_line):
        lines.append(f"*Command line:*\n{code_block(lineage.command_line or '', 1000)}")
    return section("\n".join(lines))


def _container_line(lineage: Lineage) -> list[str]:
    container_id = lineage.container_id
    if lineage.origin == "host" or (container_id is not None and is_host_container_id(container_id)):
        container_id = None  # the host's own "container": an all-zero id means nothing to a reader
    parts = [
        f"{label} {code(value, 150)}"
        for label, value in (("id", container_id), ("name", lineage.container_name), ("image", lineage.image))
        if value is not None and _present(value)
    ]
    return [f"*Container:* {' · '.join(parts)}"] if parts else []


def _chain_text(chain: tuple[str, ...]) -> str:
    names = [clip(name, 120) for name in chain]
    if len(names) > CHAIN_HEAD + CHAIN_TAIL:
        hidden = len(names) - CHAIN_HEAD - CHAIN_TAIL
        names = [*names[:CHAIN_HEAD], f"…{hidden} more…", *names[-CHAIN_TAIL:]]
    return " → ".join(names)


# --- notebook commands -----------------------------------------------------------------------


def _command_blocks(ctx: Context) -> list[dict[str, Any]]:
    if not ctx.commands:
        return [plain_section(f"{COMMANDS_TITLE}: {_no_commands_reason(ctx)}")]
    newest = sorted(ctx.commands, key=_command_order, reverse=True)
    title = f"*{COMMANDS_TITLE}*"
    if len(newest) > COMMANDS_SHOWN:
        title += f" ({COMMANDS_SHOWN} newest of {len(newest)})"
    return [section(title), *(_command_block(c) for c in newest[:COMMANDS_SHOWN])]


def _command_order(command: NotebookCommand) -> datetime:
    return _utc(command.event_time).replace(tzinfo=None)  # naive and aware times both sort


def _no_commands_reason(ctx: Context) -> str:
    reasons = [p for p in ctx.problems if _about_commands(p)]
    if reasons:
        return "; ".join(reasons)
    return "not looked up, the cluster is unknown" if ctx.cluster is None else "none found"


def _command_block(command: NotebookCommand) -> dict[str, Any]:
    parts = [_when(command.event_time), code(command.user or "", 200) if _present(command.user) else "unknown user"]
    if _present(command.notebook_id):
        parts.append(f"notebook {code(command.notebook_id or '', 200)}")
    if _present(command.status):
        parts.append(code(command.status or "", 50))
    body = code_block(command.command_text or "", 2000) if _present(command.command_text) else "_no command text_"
    return section(" · ".join(parts) + "\n" + body)


# --- guidance, reproduction, links -------------------------------------------------------------


def _guidance_blocks(detection: Detection) -> list[dict[str, Any]]:
    # The catalogue is reviewed configuration: its mrkdwn formatting is kept, its <>& escaped.
    if not _present(detection.guidance):
        return []
    return [section(f"*What to do:* {clip(escape(detection.guidance), 2800)}")]


def _reproduce_block(finding: Finding) -> dict[str, Any]:
    row = finding.first_event
    since = _utc(finding.first_seen).date()
    sql = reproduce_sql(finding.detection.name, row.instance_id, since, row.workspace_id)
    return section(f"*Reproduce in Databricks SQL*\n{code_block(sql, 2900)}")


def _cluster_id(finding: Finding) -> str | None:
    cluster = finding.context.cluster
    found = cluster.cluster_id if cluster is not None else finding.first_event.cluster_id
    return found if found and found.strip() else None


def _link_blocks(finding: Finding, links: Links) -> list[dict[str, Any]]:
    cluster_id = _cluster_id(finding)
    targets = (("Cluster page", cluster_url(links, cluster_id)), ("Event log", cluster_events_url(links, cluster_id)))
    elements = [mrkdwn(f"<{url}|{label}>") for label, url in targets if url]
    pointer = cloud_pointer(finding.first_event.instance_id)
    if pointer:
        elements.append(plain(pointer))
    return [context(elements)] if elements else []


# --- status ----------------------------------------------------------------------------------

_STATUS_TEXT = {
    FindingStatus.ACKNOWLEDGED: (":eyes:", "Acknowledged", "Note"),
    FindingStatus.BENIGN: (":white_check_mark:", "Marked benign", "Reason"),
    FindingStatus.TERMINATED: (":octagonal_sign:", "Cluster terminated", "Note"),
}


def actor(user: str | None) -> str:
    """A trusted Slack user id as a mention; anything else as inert text."""
    if user and _SLACK_USER_ID.fullmatch(user):
        return f"<@{user}>"
    return code(user or "", 100)


def _status_blocks(finding: Finding) -> list[dict[str, Any]]:
    elements = _status_elements(finding)
    return [context(elements)] if elements else []


def _status_elements(finding: Finding, note_limit: int = 2000) -> list[dict[str, Any]]:
    if finding.status not in _STATUS_TEXT:
        return []
    emoji, verb, note_label = _STATUS_TEXT[finding.status]
    line = f"{emoji} *{verb}*" + (f" by {actor(finding.status_by)}" if _present(finding.status_by) else "")
    elements = [mrkdwn(clip(line, MAX_TEXT))]
    if _present(finding.status_note):
        elements.append(plain(clip(escape(f"{note_label}: {finding.status_note}"), note_limit)))
    return elements


def _suppressed_blocks(suppressed: int) -> list[dict[str, Any]]:
    if suppressed <= 0:
        return []
    return [context([mrkdwn(f"{_plural(suppressed, 'similar event')} hidden by benign suppressions")])]


# --- buttons ---------------------------------------------------------------------------------


def _action_blocks(finding: Finding, actions: Sequence[ActionSpec]) -> list[dict[str, Any]]:
    try:
        value = ButtonValue(finding.key, finding.first_event.instance_id, _cluster_id(finding)).compact()
    except ValueError:  # keys are short digests; one that cannot fit is a bug elsewhere, not a crash here
        return [context([mrkdwn("Buttons unavailable: this finding's key does not fit a button; use `/esm`.")])]
    buttons = _buttons(finding, value, actions)
    return [{"type": "actions", "elements": buttons}] if buttons else []


def _buttons(finding: Finding, value: ButtonValue, actions: Sequence[ActionSpec]) -> list[dict[str, Any]]:
    payload = value.to_json()
    has = frozenset(need for need in Needs if getattr(value, need.value))
    shown = [spec for spec in sorted(actions, key=lambda a: a.order) if spec.shown_on(finding, has)]
    return [button(spec, payload, finding) for spec in shown[:MAX_BUTTONS]]


def button(spec: ActionSpec, value: str, finding: Finding) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "action_id": clip(spec.id, MAX_ACTION_ID),
        "text": plain(clip(_shown(spec.label, spec.id), MAX_BUTTON_TEXT)),
        "value": value,
    }
    if spec.style in ("primary", "danger"):
        element["style"] = spec.style
    if spec.confirm is not None:
        element["confirm"] = _confirm(spec.confirm(finding))
    return element


def _shown(text: str, fallback: str) -> str:
    """Slack refuses an empty text object (`must be more than 0 characters`): never send one."""
    return escape(text) if text.strip() else fallback


def _confirm(dialog: Confirm) -> dict[str, Any]:
    confirm: dict[str, Any] = {
        "title": plain(clip(_shown(dialog.title, "Are you sure?"), MAX_CONFIRM_TITLE)),
        "text": plain(clip(_shown(dialog.text, "Are you sure?"), MAX_CONFIRM_TEXT)),
        "confirm": plain(clip(_shown(dialog.confirm, "Confirm"), MAX_CONFIRM_BUTTON)),
        "deny": plain(clip(_shown(dialog.deny, "Cancel"), MAX_CONFIRM_BUTTON)),
    }
    if dialog.danger:
        confirm["style"] = "danger"
    return confirm


# ---------------------------------------------------------------------------------------------
# thread replies
# ---------------------------------------------------------------------------------------------


def reply_message(row: AuditRow, finding: Finding) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) of a repeat event posted in the finding's thread."""
    host = code(row.instance_id, 100) if row.instance_id else "an unknown host"
    lineage = _safe_lineage(row)
    lines = [f"*Again* at {_when(row.event_time)} on {host} · origin: {escape(lineage.origin)}"]
    if _present(lineage.file_path):
        lines.append(f"*File:* {code(lineage.file_path or '', 500)}")
    if _present(lineage.command_line):
        lines.append(f"*Command line:*\n{code_block(lineage.command_line or '', 1500)}")
    blocks = [section("\n".join(lines)), context([mrkdwn(f"event {code(row.event_id, 200)}")])]
    return clip(f"Again: {code(finding.detection.name, 150)} on {host}", MAX_TEXT), blocks


def digest_message(finding: Finding, extra_events: int, extra_hosts: int) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) summing up repeats that were not posted one by one."""
    host = finding.first_event.instance_id
    command = code(f"/esm recent instance={host}" if host else "/esm recent", 250)
    text = f"+{extra_events} more on {_plural(max(extra_hosts, 1), 'host')} (see {command})"
    return clip(text, MAX_TEXT), [context([mrkdwn(clip(text, MAX_TEXT))])]


_MENTION = re.compile(r"&lt;@([UW][A-Z0-9]{2,32})&gt;")


def mention_safe(text: str, limit: int = MAX_SECTION_TEXT - 100) -> str:
    """Everything escaped; only well-formed user mentions (`<@U…>`, which actions write
    themselves) come back to life, so data inside a message can never ping a channel."""
    return _MENTION.sub(r"<@\1>", escape(clip(text, limit)))


def inert(text: str) -> str:
    """Outside data (a cluster name, a job name) quoted in an action's message: a `<@U…>` in it
    stays text, as mention_safe brings back only the mentions actions write themselves."""
    return text.replace("<@", "<\u2060@")  # a word joiner: invisible, breaks the mention


def note_message(text: str) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) of an action's note in a finding's thread."""
    body = mention_safe(text)
    return clip(body, MAX_TEXT), [section(clip(body, MAX_SECTION_TEXT))]


# ---------------------------------------------------------------------------------------------
# limits checker
# ---------------------------------------------------------------------------------------------


def limit_violations(blocks: list[dict[str, Any]], text: str | None = None) -> list[str]:
    """Every way `blocks` (and the fallback `text`) break a Slack limit; empty when they don't."""
    problems = [] if len(blocks) <= MAX_BLOCKS else [f"{len(blocks)} blocks; Slack allows {MAX_BLOCKS}"]
    if text is not None:
        problems += _text_problems("fallback text", {"type": "mrkdwn", "text": text}, MAX_TEXT)
    for index, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        check = _BLOCK_CHECKS.get(str(kind), _no_checks)
        problems += check(f"block {index} ({kind})", block)
    problems += _duplicates("block_id", [b.get("block_id") for b in blocks if isinstance(b, dict)])
    problems += _duplicates("action_id", [e.get("action_id") for e in _elements_of_actions(blocks)])
    return problems


def _text_problems(where: str, obj: Any, limit: int, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return [f"{where}: not a text object"]
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if obj.get("type") not in allowed:
        return [f"{where}: text type {obj.get('type')!r}, expected one of {allowed}"]
    size = slack_len(obj["text"])
    if size == 0:
        return [f"{where}: empty text"]
    return [f"{where}: text is {size} characters; limit {limit}"] if size > limit else []


def _no_checks(where: str, block: Any) -> list[str]:
    return [] if isinstance(block, dict) else [f"{where}: not an object"]


def _block_id_problems(where: str, block: dict[str, Any]) -> list[str]:
    block_id = block.get("block_id")
    if block_id is None or (isinstance(block_id, str) and 0 < len(block_id) <= MAX_BLOCK_ID):
        return []
    return [f"{where}: block_id must be 1..{MAX_BLOCK_ID} characters"]


def _check_header(where: str, block: dict[str, Any]) -> list[str]:
    return _block_id_problems(where, block) + _text_problems(f"{where} text", block.get("text"), MAX_HEADER, True)


def _check_section(where: str, block: dict[str, Any]) -> list[str]:
    problems = _block_id_problems(where, block)
    if "text" not in block and "fields" not in block:
        problems.append(f"{where}: needs text or fields")
    if "text" in block:
        problems += _text_problems(f"{where} text", block["text"], MAX_SECTION_TEXT)
    fields = block.get("fields", [])
    if "fields" in block and not 1 <= len(fields) <= MAX_FIELDS:
        problems.append(f"{where}: {len(fields)} fields; Slack allows 1..{MAX_FIELDS}")
    for number, item in enumerate(fields):
        problems += _text_problems(f"{where} field {number}", item, MAX_FIELD_TEXT)
    return problems


def _check_context(where: str, block: dict[str, Any]) -> list[str]:
    elements = block.get("elements", [])
    problems = _block_id_problems(where, block)
    if not 1 <= len(elements) <= MAX_CONTEXT_ELEMENTS:
        problems.append(f"{where}: {len(elements)} elements; Slack allows 1..{MAX_CONTEXT_ELEMENTS}")
    for number, element in enumerate(elements):
        if isinstance(element, dict) and element.get("type") == "image":
            continue
        problems += _text_problems(f"{where} element {number}", element, MAX_TEXT)
    return problems


def _check_actions(where: str, block: dict[str, Any]) -> list[str]:
    elements = block.get("elements", [])
    problems = _block_id_problems(where, block)
    if not 1 <= len(elements) <= MAX_ACTION_ELEMENTS:
        problems.append(f"{where}: {len(elements)} elements; Slack allows 1..{MAX_ACTION_ELEMENTS}")
    for number, element in enumerate(elements):
        if isinstance(element, dict) and element.get("type") == "button":
            problems += _check_button(f"{where} button {number}", element)
    return problems


def _check_button(where: str, button_: dict[str, Any]) -> list[str]:
    problems = _text_problems(f"{where} text", button_.get("text"), MAX_BUTTON_TEXT, True)
    problems += _max_len(where, "value", button_.get("value"), MAX_BUTTON_VALUE)
    problems += _max_len(where, "action_id", button_.get("action_id"), MAX_ACTION_ID)
    problems += _max_len(where, "url", button_.get("url"), MAX_URL)
    if "confirm" in button_:
        problems += _check_confirm(f"{where} confirm", button_["confirm"])
    return problems


def _check_confirm(where: str, confirm: Any) -> list[str]:
    if not isinstance(confirm, dict):
        return [f"{where}: not an object"]
    return [
        *_text_problems(f"{where} title", confirm.get("title"), MAX_CONFIRM_TITLE, True),
        *_text_problems(f"{where} text", confirm.get("text"), MAX_CONFIRM_TEXT),
        *_text_problems(f"{where} confirm", confirm.get("confirm"), MAX_CONFIRM_BUTTON, True),
        *_text_problems(f"{where} deny", confirm.get("deny"), MAX_CONFIRM_BUTTON, True),
    ]


def _max_len(where: str, name: str, value: Any, limit: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, str):
        return [f"{where}: {name} must be text"]
    return [f"{where}: {name} is {slack_len(value)} characters; limit {limit}"] if slack_len(value) > limit else []


def _elements_of_actions(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for block in blocks:
        if isinstance(block, dict) and block.get("type") == "actions":
            found += [e for e in block.get("elements", []) if isinstance(e, dict)]
    return found


def _duplicates(name: str, values: list[Any]) -> list[str]:
    present = [v for v in values if v is not None]
    repeated = sorted({str(v) for v in present if present.count(v) > 1})
    return [f"{name} {v!r} is used more than once" for v in repeated]


_BLOCK_CHECKS = {
    "header": _check_header,
    "section": _check_section,
    "context": _check_context,
    "actions": _check_actions,
}
