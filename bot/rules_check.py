"""`esm-bot rules check`: validate the catalogue and the benign rules, run every example."""
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
    return problems


def _check_benign(path: Path) -> list[str]:
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        return [f"{path.name}: not valid YAML: {exc}"]
    if data is not None and not isinstance(data, list):
        return [f"{path.name}: must be a list of suppressions"]
    return []
