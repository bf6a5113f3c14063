"""`python -m bench.counted_bot serve ...`: the real `esm-bot` CLI with one addition, a count of
the queries the bot sends to its audit source (by query), written as JSON to
$BENCH_QUERY_COUNTS when the process exits. The storm and growth scenarios use it to show that
no query runs per event. Nothing else changes: same settings, same code path."""
from __future__ import annotations

import atexit
import json
import os
import threading

from bot.adapters import duckdb_source
from bot.core import queries

_NAMES = {getattr(queries, name): name.lower() for name in dir(queries) if name.isupper() and isinstance(getattr(queries, name), str)}
_counts: dict[str, int] = {}
_lock = threading.Lock()
_original = duckdb_source.DuckDBSource._query


def _counted(self, databricks_sql, params):  # type: ignore[no-untyped-def]
    name = _NAMES.get(databricks_sql, "other")
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
    return _original(self, databricks_sql, params)


def _write() -> None:
    path = os.environ.get("BENCH_QUERY_COUNTS")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(_counts, out)


duckdb_source.DuckDBSource._query = _counted  # type: ignore[method-assign]
if os.environ.get("BENCH_DUCKDB_HOLD") and hasattr(duckdb_source, "HOLD_SECONDS"):
    # for before/after figures only: 0 re-opens the file for every query, as before the fix
    duckdb_source.HOLD_SECONDS = float(os.environ["BENCH_DUCKDB_HOLD"])
atexit.register(_write)

if __name__ == "__main__":
    from bot.cli.main import main

    raise SystemExit(main())
