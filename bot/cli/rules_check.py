"""`esm-bot rules check`: validate the catalogue, the benign rules and the response actions,
and run every catalogue example."""
from __future__ import annotations

from pathlib import Path

import yaml

from bot.core.catalogue import CatalogueError, check_examples, load_catalogue


def check_rules(rules_dir: Path) -> list[str]:
    problems: list[str] = []
    try:
        catalogue = load_catalogue(rules_dir / "detections.yml")
    except CatalogueError as exc:
        return [str(exc)]
    problems += check_examples(catalogue)
    problems += _check_benign(rules_dir / "benign.yml")
    problems += _check_actions()
    return problems


def _check_actions() -> list[str]:
    """Every response action module loads and declares a well-formed, unique spec."""
    from handlers.actions import RegistryError, discover

    try:
        discover()
    except (RegistryError, ImportError) as exc:
        return [f"response actions: {exc}"]
    return []


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
