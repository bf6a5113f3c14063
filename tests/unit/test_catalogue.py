"""The detection catalogue: every example in rules/detections.yml, the lookup contract, and
the loader's error messages. Also the structure of rules/benign.yml (its matching is tested
with the suppression code)."""
from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.core.catalogue import (
    Catalogue,
    CatalogueError,
    Example,
    check_examples,
    load_catalogue,
    parse_catalogue,
)
from bot.core.events import parse_audit_row, detection_name
from bot.core.findings import UNCATEGORISED, Severity, lineage_of

RULES = Path(__file__).resolve().parents[2] / "rules"
DETECTIONS = RULES / "detections.yml"
BENIGN = RULES / "benign.yml"

# The contract: exact action_name strings confirmed in Databricks-authored queries (DESIGN.md §4),
# by the seed's category. Detections filed under two categories appear under both.
CONFIRMED = {
    "Container Security": [
        "Container Escape via Kernel Exploitation",
        "Userland Container Escape",
        "New File Executed in Container",
        "Privileged Container Launched",
    ],
    "Host Security Changes": [
        "Processor-Level Protections Disabled",
        "AppArmor Disabled In Kernel",
        "AppArmor Profile Modified",
        "Boot Files Modified",
        "Root Certificate Store Modified",
    ],
    "Kernel Related Events": ["BPF Program Executed", "Kernel Module Loaded", "Kernel Exploit"],
    "Other Suspicious Activity": [
        "Suspicious Interactive Shell",
        "User Command Logging Evasion",
        "New File Executed in Container",
        "Privileged Container Launched",
    ],
}
UNCONFIRMED = ["Memory Marked Executable", "Userfaultfd Usage", "Systemd Unit File Modified", "Illegal Elevation Of Privileges"]

REAL = load_catalogue(DETECTIONS)


# ------------------------------------------------------------------ every entry's own examples


@pytest.mark.parametrize(
    "example",
    [pytest.param(example, id=f"{name}[{index}]") for name, index, example in REAL.examples()],
)
def test_example_classifies_as_expected(example: Example) -> None:
    row = parse_audit_row(example.row)
    detection = REAL.lookup(detection_name(row))  # Capsule8's action_name, or a ClamAV scan's outcome
    assert detection.category == example.expect.category
    assert detection.severity == example.expect.severity
    assert detection.ignore == example.expect.ignored
    if example.expect.origin is not None:
        assert lineage_of(row).origin == example.expect.origin


def test_check_examples_agrees_on_the_real_catalogue() -> None:
    assert check_examples(REAL) == []


def test_check_examples_reports_a_wrong_expectation() -> None:
    data = _valid_data()
    data[0]["examples"][0]["expect"]["severity"] = "low"
    problems = check_examples(parse_catalogue(data))
    assert problems == ["Kernel Module Loaded example 0: severity: expected <Severity.LOW: 1>, got <Severity.HIGH: 3>"]


def test_every_entry_has_a_row_whose_instance_id_is_an_ec2_id() -> None:
    for name, index, example in REAL.examples():
        assert (parse_audit_row(example.row).instance_id or "").startswith("i-"), f"{name}[{index}]"


# --------------------------------------------------------------------------- the catalogue contract


@pytest.mark.parametrize("category", sorted(CONFIRMED))
def test_confirmed_detections_are_filed_under_their_seed_category(category: str) -> None:
    for name in CONFIRMED[category]:
        assert REAL.is_known(name), name
        assert REAL.entries[name].confirmed, name
        assert name in REAL.names_in(category), name


def test_each_detection_has_one_primary_category_and_the_other_in_also_in() -> None:
    for name in ("New File Executed in Container", "Privileged Container Launched"):
        entry = REAL.entries[name]
        assert entry.detection.category == "Container Security"
        assert entry.also_in == ("Other Suspicious Activity",)


def test_unconfirmed_detections_are_present_and_marked() -> None:
    for name in UNCONFIRMED:
        assert REAL.is_known(name) and not REAL.entries[name].confirmed, name


def test_heartbeat_is_ignored_and_kept_out_of_finding_categories() -> None:
    heartbeat = REAL.lookup("Heartbeat")
    assert heartbeat.ignore
    assert heartbeat.category not in REAL.categories(include_synthetic=False)
    assert heartbeat.category in REAL.categories(include_ignored=True)
    assert "Heartbeat" not in REAL.names_in(heartbeat.category)


def test_the_silent_sensor_is_a_finding_the_bot_raises_itself_with_no_alert_of_its_own() -> None:
    silent = REAL.lookup("ESM sensor silent")
    assert not silent.ignore and silent.severity.label == "high"
    assert REAL.names_in(silent.category) == ["ESM sensor silent"]
    assert REAL.names_in(silent.category, include_synthetic=False) == []


def test_categories_are_the_seed_four_in_catalogue_order_then_malware_scanning() -> None:
    assert REAL.categories(include_synthetic=False) == [*CONFIRMED, "Malware Scanning"]
    assert REAL.categories() == [*CONFIRMED, "Agent Health", "Malware Scanning"]


def test_severities_follow_the_triage_rules() -> None:
    critical = ["Container Escape via Kernel Exploitation", "Userland Container Escape", "Kernel Exploit"]
    high = ["Kernel Module Loaded", "BPF Program Executed", "AppArmor Disabled In Kernel", "AppArmor Profile Modified", "Boot Files Modified"]
    assert all(REAL.lookup(n).severity == Severity.CRITICAL for n in critical)
    assert all(REAL.lookup(n).severity == Severity.HIGH for n in high)
    assert REAL.lookup("Root Certificate Store Modified").severity == Severity.MEDIUM


def test_every_entry_has_two_to_four_guidance_steps() -> None:
    for entry in REAL.entries.values():
        assert 2 <= len(entry.guidance_steps) <= 4, entry.name
        assert entry.detection.guidance.startswith("1. "), entry.name


def test_root_ca_examples_include_a_private_ca_installed_in_a_container() -> None:
    rows = [parse_audit_row(ex.row) for name, _, ex in REAL.examples() if name == "Root Certificate Store Modified"]
    assert any(lineage_of(r).origin == "container" and "ca-certificates" in (lineage_of(r).file_path or "") for r in rows)


def test_unknown_name_is_uncategorised_never_none() -> None:
    detection = REAL.lookup("Some Future Detection")
    assert detection.name == "Some Future Detection"
    assert detection.category == UNCATEGORISED
    assert detection.severity == Severity.MEDIUM
    assert detection.description == "Detection not in the catalogue"
    assert "rules/detections.yml" in detection.guidance
    assert not detection.ignore
    assert not REAL.is_known("Some Future Detection")


@pytest.mark.parametrize("spelling", ["kernel module loaded", "  Kernel  Module\tLoaded ", "KERNEL MODULE LOADED"])
def test_lookup_ignores_case_and_whitespace(spelling: str) -> None:
    assert REAL.lookup(spelling) is REAL.detections["Kernel Module Loaded"]
    assert REAL.is_known(spelling)


def test_catalogue_is_read_only() -> None:
    with pytest.raises(TypeError):
        REAL.entries["x"] = REAL.entries["Heartbeat"]  # type: ignore[index]


# ------------------------------------------------------------------------- malformed catalogues


def _row(action_name: str = "Kernel Module Loaded") -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "event_time": "2025-03-04T14:10:00Z",
        "workspace_id": 1,
        "service_name": "capsule8-alerts-dataplane",
        "action_name": action_name,
        "request_params": {"instanceId": "i-0123456789abcdef0"},
    }


def _entry(name: str = "Kernel Module Loaded") -> dict[str, Any]:
    return {
        "name": name,
        "category": "Kernel Related Events",
        "severity": "high",
        "description": "A kernel module was loaded.",
        "guidance": ["Check the module.", "Terminate if unexplained."],
        "examples": [{"row": _row(name), "expect": {"category": "Kernel Related Events", "severity": "high", "ignored": False}}],
    }


def _valid_data() -> list[dict[str, Any]]:
    return [_entry(), _entry("Boot Files Modified")]


def _broken(change) -> list[dict[str, Any]]:
    data = copy.deepcopy(_valid_data())
    change(data)
    return data


MALFORMED = {
    "missing field": (lambda d: d[1].pop("description"), ["entry 1", "'Boot Files Modified'", "'description'", "missing"]),
    "bad severity": (lambda d: d[0].update(severity="severe"), ["entry 0", "'Kernel Module Loaded'", "'severity'", "severe"]),
    "duplicate name": (lambda d: d.append(_entry(" kernel module LOADED")), ["entry 2", "'name'", "duplicates entry 0"]),
    "example without row": (lambda d: d[0]["examples"][0].pop("row"), ["entry 0", "'examples[0].row'", "missing"]),
    "expect without ignored": (lambda d: d[0]["examples"][0]["expect"].pop("ignored"), ["entry 0", "'examples[0].expect.ignored'"]),
    "row for another detection": (lambda d: d[0]["examples"][0].update(row=_row("Kernel Exploit")), ["entry 0", "'examples[0].row.action_name'"]),
    "unusable row": (lambda d: d[0]["examples"][0]["row"].pop("event_time"), ["entry 0", "'examples[0].row'", "event_time"]),
    "no examples": (lambda d: d[1].update(examples=[]), ["entry 1", "'examples'"]),
    "misspelt key": (lambda d: d[0].update(severty="high"), ["entry 0", "'severty'", "not a known field"]),
    "guidance not steps": (lambda d: d[0].update(guidance=[1, 2]), ["entry 0", "'guidance'"]),
    "bad origin": (lambda d: d[0]["examples"][0]["expect"].update(origin="vm"), ["entry 0", "'examples[0].expect.origin'"]),
    "also_in repeats category": (lambda d: d[0].update(also_in=["Kernel Related Events"]), ["entry 0", "'also_in'"]),
    "entry not a mapping": (lambda d: d.append("Kernel Exploit"), ["entry 2", "must be a mapping"]),
    "name missing": (lambda d: d[1].pop("name"), ["entry 1", "'name'", "missing"]),
}


@pytest.mark.parametrize("change, fragments", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_catalogue_names_the_entry_and_field(change, fragments: list[str]) -> None:
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(_broken(change), source="rules/test.yml")
    message = str(caught.value)
    assert message.startswith("rules/test.yml: ")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("data", [None, {"name": "Kernel Exploit"}, "Kernel Exploit", []], ids=["empty", "mapping", "text", "no entries"])
def test_a_document_that_is_not_a_list_of_detections_is_refused(data: Any) -> None:
    with pytest.raises(CatalogueError, match=r"^detections\.yml: "):
        parse_catalogue(data)


def test_load_names_the_file_when_it_is_missing_or_not_yaml(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="nope.yml"):
        load_catalogue(tmp_path / "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("- name: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="bad.yml: is not valid YAML"):
        load_catalogue(bad)


def test_a_new_category_is_accepted() -> None:
    data = _valid_data()
    data[0]["category"] = "Network"
    data[0]["examples"][0]["expect"]["category"] = "Network"
    catalogue = parse_catalogue(data)
    assert catalogue.categories() == ["Network", "Kernel Related Events"]
    assert check_examples(catalogue) == []


def test_a_single_guidance_string_is_one_step() -> None:
    data = _valid_data()
    data[0]["guidance"] = "Check the module."
    assert parse_catalogue(data).entries["Kernel Module Loaded"].guidance_steps == ("Check the module.",)


def test_defaults_for_optional_fields() -> None:
    entry = parse_catalogue(_valid_data()).entries["Kernel Module Loaded"]
    assert entry.confirmed and not entry.detection.ignore and entry.also_in == ()
    assert isinstance(parse_catalogue(_valid_data()), Catalogue)


# ------------------------------------------------------------------------------ rules/benign.yml

BENIGN_FIELDS = {"id", "enabled", "detection", "scope", "match", "expires", "reason", "examples"}
SCOPE_KEYS = {"workspace_id", "cluster_id", "instance_id"}
BENIGN_DATA = yaml.safe_load(BENIGN.read_text(encoding="utf-8"))


def test_benign_file_is_a_list_with_unique_ids() -> None:
    assert isinstance(BENIGN_DATA, list) and BENIGN_DATA
    ids = [entry["id"] for entry in BENIGN_DATA]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("entry", BENIGN_DATA, ids=[e.get("id", "?") for e in BENIGN_DATA])
def test_benign_entry_is_disabled_and_well_formed(entry: dict[str, Any]) -> None:
    assert set(entry) == BENIGN_FIELDS
    assert entry["enabled"] is False, "defaults ship disabled"
    assert isinstance(entry["reason"], str) and entry["reason"].strip()
    assert REAL.is_known(entry["detection"])
    assert isinstance(entry["scope"], dict) and set(entry["scope"]) <= SCOPE_KEYS
    assert entry["expires"] is None or isinstance(_timestamp(entry["expires"]), datetime)
    _assert_match_is_field_to_globs(entry["match"])


@pytest.mark.parametrize("entry", BENIGN_DATA, ids=[e.get("id", "?") for e in BENIGN_DATA])
def test_benign_entry_has_matching_and_non_matching_examples(entry: dict[str, Any]) -> None:
    outcomes = [example["matches"] for example in entry["examples"]]
    assert all(isinstance(o, bool) for o in outcomes)
    assert True in outcomes and False in outcomes
    for example in entry["examples"]:
        assert set(example) == {"matches", "row"}
        assert parse_audit_row(example["row"]).instance_id


def test_the_seed_private_ca_pattern_is_shipped() -> None:
    entry = next(e for e in BENIGN_DATA if e["detection"] == "Root Certificate Store Modified")
    assert entry["match"]["origin"] == "container"
    assert "/usr/local/share/ca-certificates/*" in entry["match"]["file_path"]


def _assert_match_is_field_to_globs(match: Any) -> None:
    assert isinstance(match, dict) and match
    for field_name, globs in match.items():
        assert isinstance(field_name, str) and field_name
        values = [globs] if isinstance(globs, str) else globs
        assert isinstance(values, list) and values and all(isinstance(g, str) and g for g in values), field_name


def _timestamp(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
