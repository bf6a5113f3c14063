"""Print the figures of the latest reliability run: `python -m tests.reliability.report [FILE]`.

Reads the JSON lines the reliability tests append (tests/reliability/last-run.jsonl, or
$ESM_RELIABILITY_RESULTS) and prints, for each test, its latest figures line, plus a markdown
table that can be pasted into the README's Reliability section (`--markdown`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.reliability.harness import RESULTS

ORDER = ["slack_outage", "sigkill_storm", "databricks_outage", "hostile_slack", "log_secrets", "log_scan"]


def latest(path: Path) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        found[entry["test"]] = entry  # later lines win
    return found


def main(argv: list[str]) -> int:
    markdown = "--markdown" in argv
    args = [a for a in argv if not a.startswith("--")]
    path = Path(args[0]) if args else RESULTS
    if not path.exists():
        print(f"no results yet at {path}: run python -m pytest tests/reliability", file=sys.stderr)
        return 1
    entries = latest(path)
    names = sorted(entries, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    if markdown:
        print("| Scenario | Result (run) |\n|---|---|")
        for name in names:
            print(f"| {name.replace('_', ' ')} | {entries[name]['line']} ({entries[name]['at'][:10]}) |")
    else:
        for name in names:
            print(f"{entries[name]['at']}  {entries[name]['line']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
