"""What the playbook actions (#12) are configured with, handed to them in the action context."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.core.findings import Finding, Severity
from bot.core.ports import AuditSource, Pager

EXTRA = "playbook"  # its key in ActionContext.extras
# the catalogue's severities as PagerDuty's four
PAGER_SEVERITY = {Severity.CRITICAL: "critical", Severity.HIGH: "error", Severity.MEDIUM: "warning",
                  Severity.LOW: "info", Severity.INFO: "info"}


@dataclass(frozen=True)
class Playbook:
    quarantine_principals: tuple[str, ...] = ()
    protected_principals: tuple[str, ...] = ()
    pager: Pager | None = None
    page_severity: Severity | None = None  # page new findings at or above it
    slack_team_url: str = "https://slack.com"  # message links in pages
    investigate: Any = None  # the Investigate service (bot.services.investigate)
    audit: AuditSource | None = None  # who attached to a cluster lately (Terminate's "Quarantine instead")


def playbook_of(extras: dict[str, Any]) -> Playbook:
    found = extras.get(EXTRA)
    return found if isinstance(found, Playbook) else Playbook()


def pages_automatically(playbook: Playbook, finding: Finding) -> bool:
    return (playbook.pager is not None and playbook.page_severity is not None
            and finding.detection.severity >= playbook.page_severity)
