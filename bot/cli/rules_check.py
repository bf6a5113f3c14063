"""`esm-bot rules check`: validate the catalogue, the benign rules and the response actions,
and run every catalogue example."""
from __future__ import annotations

from pathlib import Path

import yaml

from bot.core.catalogue import Catalogue, CatalogueError, check_examples, load_catalogue


def check_rules(rules_dir: Path) -> list[str]:
    problems: list[str] = []
    try:
        catalogue = load_catalogue(rules_dir / "detections.yml")
    except CatalogueError as exc:
        return [str(exc)]
    problems += check_examples(catalogue)
    problems += _check_benign(rules_dir / "benign.yml")
    problems += _check_actions(catalogue)
    return problems


def _check_actions(catalogue: Catalogue) -> list[str]:
    """Every response action module loads and declares a well-formed, unique spec (a destructive
    one has a dry-run plan, an undo names an action that exists), and every action a detection
    lists in rules/ (`actions:`) is one a finding can show as a button."""
    from handlers.actions import RegistryError, discover

    try:
        registry = discover()
    except (RegistryError, ImportError) as exc:
        return [f"response actions: {exc}"]
    problems = []
    for entry in catalogue.entries.values():
        for name in entry.actions:
            action = registry.get(name)
            if action is None:
                known = ", ".join(sorted(a.spec.id.removeprefix("esm.") for a in registry.values()
                                         if not (a.spec.hidden or a.spec.undoes)))
                problems.append(f"detections.yml: {entry.name}: actions: {name.removeprefix('esm.')!r} is not an"
                                f" action; known: {known}")
            elif action.spec.hidden or action.spec.undoes:
                problems.append(f"detections.yml: {entry.name}: actions: {name.removeprefix('esm.')!r} is a follow-up"
                                " step, not a button on a finding")
    return problems


def action_settings(settings: object) -> list[str]:
    """Lines naming the actions a finding will not show because a setting they need is unset."""
    from bot.config import ENV_NAMES
    from handlers.actions import discover

    lines = []
    for action in discover().values():
        missing = [ENV_NAMES.get(name, name) for name in action.spec.settings if not getattr(settings, name, None)]
        if missing:
            lines.append(f"{action.spec.label}: not offered until {', '.join(missing)} is set")
    return lines


def _check_benign(path: Path) -> list[str]:
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        return [f"{path.name}: not valid YAML: {exc}"]
    if data is not None and not isinstance(data, list):
        return [f"{path.name}: must be a list of suppressions"]
    from bot.core.suppressions import SuppressionError, check_benign_examples, parse_benign_entries

    try:
        entries = parse_benign_entries(data, path.name)
    except SuppressionError as exc:
        return [str(exc)]
    return [f"{path.name}: {problem}" for problem in check_benign_examples(entries)]
