"""`esm-bot rules check` validates the playbook (#12): the actions a detection lists, and every
action module's spec (a destructive one needs a dry-run plan; an undo names an existing action)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.cli.rules_check import action_settings, check_rules
from bot.config import load_settings
from bot.core.catalogue import load_catalogue
from handlers import actions

RULES = Path(__file__).resolve().parents[2] / "rules"


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    shutil.copytree(RULES, tmp_path / "rules")
    return tmp_path / "rules"


def test_the_shipped_rules_and_their_playbooks_check(rules):
    assert check_rules(rules) == []
    entry = load_catalogue(rules / "detections.yml").entries["Container Escape via Kernel Exploitation"]
    assert entry.actions[:2] == ("esm.quarantine_cluster", "esm.page_oncall")


def test_a_misspelt_action_is_named_with_the_known_ones(rules):
    path = rules / "detections.yml"
    path.write_text(path.read_text().replace("actions: [investigate, quarantine_cluster, page_oncall]",
                                             "actions: [investigate, quarantine_clustr]"))
    [problem] = check_rules(rules)
    assert "Kernel Module Loaded: actions: 'quarantine_clustr' is not an action" in problem
    assert "quarantine_cluster" in problem and "undo_quarantine" not in problem


def test_an_undo_or_a_follow_up_step_cannot_be_listed_as_a_button(rules):
    path = rules / "detections.yml"
    path.write_text(path.read_text().replace("actions: [investigate, quarantine_cluster, page_oncall]",
                                             "actions: [undo_quarantine, revoke_tokens_confirmed]"))
    problems = check_rules(rules)
    assert len(problems) == 2 and all("follow-up step" in p for p in problems)


def test_a_destructive_action_without_a_plan_is_refused_by_the_registry():
    class NoPlan:
        spec = actions.discover()["esm.quarantine_cluster"].spec

        async def preflight(self, ctx): ...

        async def run(self, ctx): ...

    with pytest.raises(actions.RegistryError, match="needs plan"):
        actions._check(NoPlan(), "handlers.actions.no_plan")


def test_actions_whose_settings_are_unset_are_named():
    lines = action_settings(load_settings({}))
    assert "Page on-call: not offered until ESM_PAGERDUTY_ROUTING_KEY is set" in lines
    assert action_settings(load_settings({"ESM_PAGERDUTY_ROUTING_KEY": "k" * 32,
                                          "ESM_QUARANTINE_PRINCIPALS": "group:security-team"})) == []


def test_the_suspect_is_found_whether_times_are_naive_or_aware():
    from datetime import datetime, timedelta, timezone

    from bot.core.containment import suspect_of
    from bot.core.findings import ClusterContext, Context, NotebookCommand
    from dataclasses import replace

    from tests.unit.test_blocks import kmod_finding

    event = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    commands = (NotebookCommand(datetime(2026, 1, 1, 11, 50), "naive@example.com", "nb", "x"),
                NotebookCommand(event - timedelta(minutes=5), "aware@example.com", "nb", "y"),
                NotebookCommand(event + timedelta(minutes=5), "after@example.com", "nb", "z"))
    finding = replace(kmod_finding(), context=Context(cluster=ClusterContext("c-1", owner="owner@example.com"),
                                                      commands=commands))
    found = suspect_of(finding, commands, event.replace(tzinfo=None))
    assert found is not None and found.user == "aware@example.com"
