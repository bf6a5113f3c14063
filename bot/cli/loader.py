"""Load JSON-lines audit rows into the embedded store: bad lines are reported by number (not JSON,
not an audit row, or not valid UTF-8), duplicates skipped, everything else kept."""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.adapters.duckdb_source import DuckDBSource
from bot.core.events import AuditRow, parse_audit_row

BATCH = 5000


@dataclass
class LoadResult:
    inserted: int = 0
    duplicates: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)


def load_jsonl(lines: Iterable[str | bytes], duckdb_path: str) -> LoadResult:
    """`lines` as text, or as bytes (a file opened in binary mode): each line is then decoded on
    its own, so a line that is not valid UTF-8 is one bad line, not the end of the load."""
    source = DuckDBSource(duckdb_path)
    result = LoadResult()
    batch: list[AuditRow] = []
    for number, raw in enumerate(lines, start=1):
        if isinstance(raw, bytes):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                result.bad_lines.append((number, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"))
                continue
        else:
            line = raw
        if not line.strip():
            continue
        try:
            batch.append(parse_audit_row(json.loads(line)))
        except RecursionError:
            result.bad_lines.append((number, "JSON nested too deeply"))
            continue
        except ValueError as exc:  # JSONDecodeError and RowError are both ValueErrors
            result.bad_lines.append((number, str(exc)[:300]))
            continue
        if len(batch) >= BATCH:
            _flush(source, batch, result)
    _flush(source, batch, result)
    return result


def _flush(source: DuckDBSource, batch: list[AuditRow], result: LoadResult) -> None:
    inserted = source.insert_rows(batch)
    result.inserted += inserted
    result.duplicates += len(batch) - inserted
    batch.clear()
