"""The App Home tab: open findings by severity (linked to their messages), active suppressions,
the last sync and its health, and the 7-day chart. Pure: the view from the values given.

Slack's limits for a home view: at most 100 blocks, section text at most 3,000 characters,
private_metadata at most 3,000; the lists are cut with an "and N more" line to stay inside them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.core.findings import Finding, Severity
from bot.core.suppressions import Suppression
from bot.core.text import clip
from bot.render.blocks import SEVERITY_EMOJI, escape, mrkdwn, plain

MAX_BLOCKS = 100
MAX_SECTION = 3000
FINDINGS_PER_SEVERITY = 10
SUPPRESSIONS_SHOWN = 15


@dataclass(frozen=True)
class HomeData:
    findings: Sequence[Finding]
    suppressions: Sequence[Suppression]
    links: Mapping[str, str] = field(default_factory=dict)  # finding key -> its message's permalink
    hits: Mapping[str, int] = field(default_factory=dict)  # suppression id -> events it hid
    last_sync: datetime | None = None
    last_success: datetime | None = None
    sync_error: str | None = None
    problems: Sequence[str] = ()  # health: one line per failing part
    chart_file_id: str | None = None
    chart_note: str | None = None  # why there is no chart
    now: datetime | None = None


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(clip(text, MAX_SECTION))}


def home_view(data: HomeData) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [{"type": "header", "text": plain("esm-bot · security findings")}]
    blocks += _health(data)
    blocks.append({"type": "divider"})
    blocks += _findings(data)
    blocks.append({"type": "divider"})
    blocks += _suppressions(data)
    blocks.append({"type": "divider"})
    blocks += _chart(data)
    blocks.append({"type": "context", "elements": [mrkdwn(f"Updated {_when(data.now)} · refreshed when opened and after each sync")]})
    return {"type": "home", "blocks": blocks[:MAX_BLOCKS]}


def _health(data: HomeData) -> list[dict[str, Any]]:
    sync = f"*Last sync:* {_when(data.last_sync)} · *last successful:* {_when(data.last_success)}"
    if data.sync_error:
        sync += f"\n:warning: the last sync failed: {escape(clip(data.sync_error, 500))}"
    health = ("\n".join(f":warning: {escape(clip(p, 300))}" for p in data.problems[:10])
              if data.problems else ":white_check_mark: every part works")
    return [_section(sync), _section(f"*Health*\n{health}")]


def _findings(data: HomeData) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [_section(f"*Open findings* ({len(data.findings)})")]
    if not data.findings:
        return blocks + [{"type": "context", "elements": [mrkdwn("Nothing open.")]}]
    by_severity: dict[Severity, list[Finding]] = {}
    for finding in data.findings:
        by_severity.setdefault(finding.detection.severity, []).append(finding)
    for severity in sorted(by_severity, reverse=True):
        found = by_severity[severity]
        lines = [f"{SEVERITY_EMOJI[severity]} *{severity.name.lower()}* ({len(found)})"]
        for finding in found[:FINDINGS_PER_SEVERITY]:
            name = escape(clip(finding.detection.name, 120))
            link = data.links.get(finding.key)
            title = f"<{link}|{name}>" if link and link.startswith("https://") else name
            where = escape(clip(finding.cluster_id or ", ".join(sorted(finding.hosts)) or "unknown host", 80))
            status = "" if finding.status.value == "open" else f" · {finding.status.value}"
            lines.append(f"• {title} · `{where}` · {finding.count}× · last {_when(finding.last_seen)}{status}")
        if len(found) > FINDINGS_PER_SEVERITY:
            lines.append(f"… and {len(found) - FINDINGS_PER_SEVERITY} more")
        blocks.append(_section("\n".join(lines)))
    return blocks


def _suppressions(data: HomeData) -> list[dict[str, Any]]:
    shown = data.suppressions[:SUPPRESSIONS_SHOWN]
    lines = [f"*Active suppressions* ({len(data.suppressions)})"]
    for s in shown:
        expiry = "never expires" if s.expires_at is None else f"until {_when(s.expires_at)}"
        who = f"<@{s.created_by}>" if s.created_by[:1] in ("U", "W") and s.created_by.isalnum() else escape(s.created_by)
        hidden = data.hits.get(s.id, 0)
        lines.append(f"• `{escape(s.id)}` {escape(clip(s.detection, 100))} · {escape(s.scope.describe())} · "
                     f"by {who} · {expiry} · {hidden} events hidden")
    if len(data.suppressions) > SUPPRESSIONS_SHOWN:
        lines.append(f"… and {len(data.suppressions) - SUPPRESSIONS_SHOWN} more (`/esm benign list`)")
    if not data.suppressions:
        lines.append("None.")
    return [_section("\n".join(lines))]


def _chart(data: HomeData) -> list[dict[str, Any]]:
    if data.chart_file_id:
        return [{"type": "image", "slack_file": {"id": data.chart_file_id},
                 "alt_text": "Events per detection over the last 7 days", "title": plain("Events per detection, last 7 days")}]
    return [{"type": "context", "elements": [mrkdwn(escape(data.chart_note or "No chart yet."))]}]
