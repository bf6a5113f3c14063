"""The detection catalogue: rules/detections.yml as validated, immutable data.

Capsule8 names its detections in `action_name`; the catalogue maps each name to a category,
a severity and responder guidance. Names are matched exactly first, then case- and
whitespace-insensitively, because the names are only confirmed by public queries and may drift
in spelling. An unknown name is never dropped: `lookup` files it under UNCATEGORISED so it is
still posted.

Pure: imports only yaml, the standard library and bot.core.*.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import yaml

from bot.core.events import RowError, parse_audit_row, detection_name
from bot.core.findings import UNCATEGORISED, Detection, Severity, lineage_of

# The seed's four categories. Any other non-empty category is accepted (the catalogue is data),
# these are only the ones the product ships with.
KNOWN_CATEGORIES = (
    "Container Security",
    "Host Security Changes",
    "Kernel Related Events",
    "Other Suspicious Activity",
)
ORIGINS = ("container", "host", "unknown")

ENTRY_FIELDS = frozenset(
    {"name", "category", "severity", "description", "guidance", "also_in", "confirmed", "ignore", "synthetic",
     "examples", "actions"}
)
EXAMPLE_FIELDS = frozenset({"row", "expect"})
EXPECT_FIELDS = frozenset({"category", "severity", "ignored", "origin"})

UNKNOWN_DESCRIPTION = "Detection not in the catalogue"
UNKNOWN_GUIDANCE = (
    "1. Review the raw event below: what process, file and container it names.\n"
    "2. Check the notebook commands on the cluster just before the event time.\n"
    "3. Add the detection to rules/detections.yml with a category, severity and guidance "
    "so the next one is triaged correctly."
)


class CatalogueError(ValueError):
    """A catalogue that cannot be used; the message names the file, the entry and the field."""


@dataclass(frozen=True)
class Expectation:
    """What an example row must classify as: the test suite checks every one."""

    category: str
    severity: Severity
    ignored: bool
    origin: str | None = None  # checked with lineage_of when given


@dataclass(frozen=True)
class Example:
    row: Mapping[str, Any]  # raw system.access.audit JSON shape, parsed by parse_audit_row
    expect: Expectation


@dataclass(frozen=True)
class CatalogueEntry:
    """A Detection plus the catalogue-only facts Detection does not carry."""

    detection: Detection
    guidance_steps: tuple[str, ...] = ()
    also_in: tuple[str, ...] = ()
    confirmed: bool = True  # False: the action_name string is a guess, not seen in Databricks queries
    examples: tuple[Example, ...] = ()
    synthetic: bool = False  # raised by esm-bot itself (e.g. a silent sensor), never in the audit table
    actions: tuple[str, ...] = ()  # the playbook's response actions for it, in order (#12): "esm.<name>" ids

    @property
    def name(self) -> str:
        return self.detection.name

    def in_category(self, category: str) -> bool:
        return category == self.detection.category or category in self.also_in


def normalise_name(name: str) -> str:
    """The fallback matching key: case-folded, whitespace runs collapsed, ends trimmed."""
    return " ".join(name.split()).casefold()


def uncategorised(action_name: str) -> Detection:
    """The Detection for a name the catalogue does not know: posted, never dropped."""
    return Detection(
        name=action_name,
        category=UNCATEGORISED,
        severity=Severity.MEDIUM,
        description=UNKNOWN_DESCRIPTION,
        guidance=UNKNOWN_GUIDANCE,
    )


@dataclass(frozen=True)
class Catalogue:
    entries: Mapping[str, CatalogueEntry]  # exact name -> entry, in catalogue order
    source: str = "detections.yml"
    _by_normal_name: Mapping[str, CatalogueEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # frozen: the derived index is set once here, through object.__setattr__
        object.__setattr__(self, "entries", MappingProxyType(dict(self.entries)))
        index = {normalise_name(name): entry for name, entry in self.entries.items()}
        object.__setattr__(self, "_by_normal_name", MappingProxyType(index))

    @property
    def detections(self) -> Mapping[str, Detection]:
        return MappingProxyType({name: entry.detection for name, entry in self.entries.items()})

    def entry_for(self, action_name: str) -> CatalogueEntry | None:
        exact = self.entries.get(action_name)
        return exact if exact is not None else self._by_normal_name.get(normalise_name(action_name))

    def lookup(self, action_name: str) -> Detection:
        entry = self.entry_for(action_name)
        return entry.detection if entry is not None else uncategorised(action_name)

    def is_known(self, action_name: str) -> bool:
        return self.entry_for(action_name) is not None

    def categories(self, *, include_ignored: bool = False, include_synthetic: bool = True) -> list[str]:
        """Primary categories in order of first appearance, then any only named in also_in.

        Categories holding only ignored entries (e.g. the Heartbeat's) are left out by default:
        no alert or channel should be built for them. `include_synthetic=False` leaves out the
        detections esm-bot raises itself (no audit row will ever match them).
        """
        entries = self._entries(include_ignored, include_synthetic)
        primary = [entry.detection.category for entry in entries]
        secondary = [category for entry in entries for category in entry.also_in]
        return list(dict.fromkeys(primary + secondary))  # dict keeps first-seen order

    def names_in(self, category: str, *, include_ignored: bool = False, include_synthetic: bool = True) -> list[str]:
        """Detection names filed under the category, primary or via also_in, in catalogue order."""
        return [entry.name for entry in self._entries(include_ignored, include_synthetic) if entry.in_category(category)]

    def examples(self) -> list[tuple[str, int, Example]]:
        """(detection name, example index, example) for every example of every entry."""
        return [(entry.name, i, ex) for entry in self.entries.values() for i, ex in enumerate(entry.examples)]

    def _entries(self, include_ignored: bool, include_synthetic: bool = True) -> list[CatalogueEntry]:
        return [e for e in self.entries.values()
                if (include_ignored or not e.detection.ignore) and (include_synthetic or not e.synthetic)]


# ---------------------------------------------------------------------------------- checking


def example_problems(catalogue: Catalogue, example: Example) -> list[str]:
    """How an example's row classifies differently from its `expect` (empty: it holds).

    Shared by the test suite and `esm-bot rules check`, so both judge examples the same way.
    """
    row = parse_audit_row(example.row)
    detection = catalogue.lookup(detection_name(row))
    want = example.expect
    actual = {"category": detection.category, "severity": detection.severity, "ignored": detection.ignore}
    expected = {"category": want.category, "severity": want.severity, "ignored": want.ignored}
    if want.origin is not None:
        actual["origin"], expected["origin"] = lineage_of(row).origin, want.origin
    return [f"{key}: expected {expected[key]!r}, got {actual[key]!r}" for key in expected if expected[key] != actual[key]]


def check_examples(catalogue: Catalogue) -> list[str]:
    """Every failing example of the catalogue, one line each, labelled by detection and index."""
    return [
        f"{name} example {index}: {problem}"
        for name, index, example in catalogue.examples()
        for problem in example_problems(catalogue, example)
    ]


# ----------------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Where:
    """Where a value sits in the file, so every error names file, entry and field."""

    source: str
    index: int | None = None
    name: str | None = None

    def error(self, field_name: str, problem: str) -> CatalogueError:
        return CatalogueError(f"{self._entry()}: field '{field_name}' {problem}")

    def entry_error(self, problem: str) -> CatalogueError:
        return CatalogueError(f"{self._entry()}: {problem}")

    def _entry(self) -> str:
        if self.index is None:
            return self.source
        label = f" ({self.name!r})" if self.name else ""
        return f"{self.source}: entry {self.index}{label}"


def load_catalogue(path: str | os.PathLike[str]) -> Catalogue:
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise CatalogueError(f"{source}: cannot be read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{source}: is not valid YAML: {exc}") from exc
    return parse_catalogue(data, source)


def parse_catalogue(data: Any, source: str = "detections.yml") -> Catalogue:
    """Validate the YAML document (a list of detection mappings) into a Catalogue."""
    if not isinstance(data, list):
        found = "nothing" if data is None else type(data).__name__
        raise CatalogueError(f"{source}: must be a list of detections, got {found}")
    if not data:
        raise CatalogueError(f"{source}: has no detections")
    entries: dict[str, CatalogueEntry] = {}
    first_index: dict[str, int] = {}
    for index, raw in enumerate(data):
        entry = _parse_entry(raw, _Where(source, index))
        _reject_duplicate(entry.name, first_index, _Where(source, index, entry.name))
        first_index[normalise_name(entry.name)] = index
        entries[entry.name] = entry
    return Catalogue(entries=entries, source=source)


def _reject_duplicate(name: str, first_index: Mapping[str, int], where: _Where) -> None:
    earlier = first_index.get(normalise_name(name))
    if earlier is not None:
        raise where.error("name", f"duplicates entry {earlier} (names compare case- and space-insensitively)")


def _parse_entry(raw: Any, where: _Where) -> CatalogueEntry:
    if not isinstance(raw, Mapping):
        raise where.entry_error(f"must be a mapping, got {type(raw).__name__}")
    where = replace(where, name=_text(raw, "name", where))
    _reject_unknown_keys(raw, ENTRY_FIELDS, where, "")
    category = _text(raw, "category", where)
    steps = _guidance(raw.get("guidance"), where)
    detection = Detection(
        name=where.name or "",
        category=category,
        severity=_severity(raw, "severity", where),
        description=_text(raw, "description", where),
        guidance="\n".join(f"{n}. {step}" for n, step in enumerate(steps, 1)),
        ignore=_flag(raw, "ignore", where, default=False),
    )
    return CatalogueEntry(
        detection=detection,
        guidance_steps=steps,
        also_in=_also_in(raw.get("also_in"), category, where),
        confirmed=_flag(raw, "confirmed", where, default=True),
        examples=_examples(raw.get("examples"), detection.name, where),
        synthetic=_flag(raw, "synthetic", where, default=False),
        actions=_actions(raw.get("actions"), where),
    )


def _actions(value: Any, where: _Where) -> tuple[str, ...]:
    """`actions: [quarantine_cluster, page_oncall]`: response action names (with or without the
    `esm.` prefix); whether each exists is checked by `esm-bot rules check` against handlers/actions."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise where.error("actions", "must be a list of action names")
    names = tuple(v.strip() if v.strip().startswith("esm.") else f"esm.{v.strip()}" for v in value)
    if len(set(names)) != len(names):
        raise where.error("actions", "lists an action twice")
    return names


def _reject_unknown_keys(raw: Mapping[str, Any], allowed: frozenset[str], where: _Where, prefix: str) -> None:
    # a misspelt optional key (`also-in`, `severty`) would otherwise be silently ignored
    for key in raw:
        if key not in allowed:
            raise where.error(f"{prefix}{key}", f"is not a known field; expected one of {sorted(allowed)}")


def _text(raw: Mapping[str, Any], key: str, where: _Where, label: str | None = None) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        problem = "is missing" if value is None else "must be non-empty text"
        raise where.error(label or key, problem)
    return value.strip()


def _severity(raw: Mapping[str, Any], key: str, where: _Where, label: str | None = None) -> Severity:
    text = _text(raw, key, where, label)
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise where.error(label or key, str(exc)) from None


def _flag(raw: Mapping[str, Any], key: str, where: _Where, *, default: bool | None = None, label: str | None = None) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise where.error(label or key, "is missing" if value is None else "must be true or false")
    return value


def _guidance(value: Any, where: _Where) -> tuple[str, ...]:
    """Guidance is a list of responder steps; a single string is accepted as one step."""
    steps = [value] if isinstance(value, str) else value
    if not isinstance(steps, list) or not steps:
        raise where.error("guidance", "is missing" if value is None else "must be a non-empty list of steps")
    if not all(isinstance(step, str) and step.strip() for step in steps):
        raise where.error("guidance", "must contain only non-empty text steps")
    return tuple(step.strip() for step in steps)


def _also_in(value: Any, category: str, where: _Where) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() for c in value):
        raise where.error("also_in", "must be a list of category names")
    names = tuple(c.strip() for c in value)
    if category in names or len(set(names)) != len(names):
        raise where.error("also_in", "must not repeat the primary category or itself")
    return names


def _examples(value: Any, name: str, where: _Where) -> tuple[Example, ...]:
    # every entry carries its own test cases (StreamAlert/Panther style)
    if not isinstance(value, list) or not value:
        raise where.error("examples", "is missing" if value is None else "must be a non-empty list")
    return tuple(_example(raw, f"examples[{i}]", name, where) for i, raw in enumerate(value))


def _example(raw: Any, label: str, name: str, where: _Where) -> Example:
    if not isinstance(raw, Mapping):
        raise where.error(label, "must be a mapping with 'row' and 'expect'")
    _reject_unknown_keys(raw, EXAMPLE_FIELDS, where, f"{label}.")
    return Example(row=_row(raw.get("row"), f"{label}.row", name, where), expect=_expect(raw.get("expect"), f"{label}.expect", where))


def _row(value: Any, label: str, name: str, where: _Where) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise where.error(label, "is missing" if value is None else "must be an audit row mapping")
    try:
        row = parse_audit_row(value)
    except RowError as exc:
        raise where.error(label, f"is not a usable audit row: {exc}") from None
    if normalise_name(detection_name(row)) != normalise_name(name):
        raise where.error(f"{label}.action_name", f"is {detection_name(row)!r}, not this detection's name")
    return MappingProxyType(dict(value))


def _expect(value: Any, label: str, where: _Where) -> Expectation:
    if not isinstance(value, Mapping):
        raise where.error(label, "is missing" if value is None else "must be a mapping")
    _reject_unknown_keys(value, EXPECT_FIELDS, where, f"{label}.")
    origin = value.get("origin")
    if origin is not None and origin not in ORIGINS:
        raise where.error(f"{label}.origin", f"must be one of {', '.join(ORIGINS)}")
    return Expectation(
        category=_text(value, "category", where, f"{label}.category"),
        severity=_severity(value, "severity", where, f"{label}.severity"),
        ignored=_flag(value, "ignored", where, label=f"{label}.ignored"),
        origin=origin,
    )
