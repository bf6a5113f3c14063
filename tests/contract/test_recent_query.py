"""RECENT_EVENTS (Databricks dialect) run on a real DuckDB file through to_duckdb, the SQLite
instance -> cluster map, and the recent service over both."""
from __future__ import annotations

import json
from pathlib import Path
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb
import pytest
import sqlglot

from bot.adapters.duckdb_source import DuckDBSource
from bot.adapters.sql_dialect import to_duckdb
from bot.adapters.state import StateStore
from bot.core.state import EventRecord
from bot.core import queries
from bot.core.catalogue import load_catalogue
from bot.core.events import CAPSULE8_SERVICE
from bot.core.ports import SourceError
from bot.core.recent import RecentQuery
from bot.services.recent import RecentService

CATALOGUE = load_catalogue(Path(__file__).resolve().parents[2] / "rules" / "detections.yml")

NOW = datetime.now(timezone.utc).replace(microsecond=0)
WS_A, WS_B = 1111111111111111, 2222222222222222
INJECTIONS = ["x' OR '1'='1", "'; DROP TABLE access.audit; --", "' OR 1=1 --", "i-a' UNION SELECT * FROM access.audit --"]


def audit(event_id: str, detection: str, instance: str | None, minutes_ago: float, workspace: int = WS_A,
          service: str = CAPSULE8_SERVICE) -> dict[str, Any]:
    params = {"instanceId": instance} if instance is not None else {"other": "x"}
    return {
        "event_id": event_id, "event_time": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        "workspace_id": workspace, "service_name": service, "action_name": detection, "request_params": params,
    }


ROWS = [
    audit("k1", "Kernel Module Loaded", "i-a", 5),
    audit("k2", "Kernel Module Loaded", "i-a", 50),
    audit("k3", "Kernel Module Loaded", "i-b", 30),
    audit("k4", "Kernel Module Loaded", "i-c", 20, WS_B),
    audit("s1", "Suspicious Interactive Shell", "i-a", 10),
    audit("n1", "Made Up Detection", None, 15),
    audit("old", "Kernel Module Loaded", "i-a", 60 * 24 * 3),  # three days ago
    audit("nb", "runCommand", "i-a", 1, service="notebook"),  # not Capsule8
]


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "audit.duckdb")


class RecordingSource(DuckDBSource):
    """The real adapter; it also keeps the exact SQL text it sent to DuckDB and the parameters."""

    def __init__(self, path: str):
        self.sent: list[tuple[str, dict[str, Any]]] = []
        super().__init__(path)

    def _query(self, databricks_sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.sent.append((to_duckdb(databricks_sql), dict(params)))
        return super()._query(databricks_sql, params)


@pytest.fixture
def source(path):
    src = RecordingSource(path)
    src.insert_rows(ROWS)
    return src


def shape(rows) -> list[tuple[str, str | None, str | None, int]]:
    return [(r.detection, r.instance_id, r.workspace_id, r.events) for r in rows]


def count(path: str) -> int:
    with duckdb.connect(path) as con:
        return con.execute("SELECT count(*) FROM access.audit").fetchone()[0]


# ------------------------------------------------------------------------------- the SQL


def test_the_databricks_text_parses_and_translates():
    sqlglot.parse_one(queries.RECENT_EVENTS, read="databricks")
    duck = to_duckdb(queries.RECENT_EVENTS)
    assert "access.audit" in duck and "system.access" not in duck
    for name in ("service", "since", "instance", "detection", "workspace", "limit"):
        assert f":{name}" in queries.RECENT_EVENTS and f"${name}" in duck


async def test_unfiltered_groups_by_detection_host_and_workspace_newest_first(source):
    rows = await source.recent_summary(NOW - timedelta(hours=24))
    assert shape(rows) == [
        ("Kernel Module Loaded", "i-a", str(WS_A), 2),
        ("Suspicious Interactive Shell", "i-a", str(WS_A), 1),
        ("Made Up Detection", None, str(WS_A), 1),
        ("Kernel Module Loaded", "i-c", str(WS_B), 1),
        ("Kernel Module Loaded", "i-b", str(WS_A), 1),
    ]
    first = rows[0]
    assert first.first_seen == NOW - timedelta(minutes=50) and first.last_seen == NOW - timedelta(minutes=5)


async def test_the_window_reaches_back_as_asked(source):
    assert sum(r.events for r in await source.recent_summary(NOW - timedelta(minutes=12))) == 2
    assert sum(r.events for r in await source.recent_summary(NOW - timedelta(days=7))) == 7


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"instance_id": "i-a"}, [("Kernel Module Loaded", "i-a", str(WS_A), 2), ("Suspicious Interactive Shell", "i-a", str(WS_A), 1)]),
        ({"instance_id": "i-nope"}, []),
        ({"detection": "Suspicious Interactive Shell"}, [("Suspicious Interactive Shell", "i-a", str(WS_A), 1)]),
        ({"workspace_id": WS_B}, [("Kernel Module Loaded", "i-c", str(WS_B), 1)]),
        ({"workspace_id": WS_A, "detection": "Kernel Module Loaded"},
         [("Kernel Module Loaded", "i-a", str(WS_A), 2), ("Kernel Module Loaded", "i-b", str(WS_A), 1)]),
        ({"instance_id": "i-a", "detection": "Kernel Module Loaded", "workspace_id": WS_B}, []),
    ],
)
async def test_each_sql_filter(source, filters, expected):
    assert shape(await source.recent_summary(NOW - timedelta(hours=24), **filters)) == expected


async def test_the_limit_keeps_the_most_recently_active_rows(source):
    rows = await source.recent_summary(NOW - timedelta(hours=24), limit=2)
    assert [r.detection for r in rows] == ["Kernel Module Loaded", "Suspicious Interactive Shell"]


@pytest.mark.parametrize("value", INJECTIONS)
async def test_injection_looking_values_match_nothing_drop_nothing_and_never_enter_the_sql(source, path, value):
    before = count(path)
    assert await source.recent_summary(NOW - timedelta(days=7), instance_id=value) == []
    assert await source.recent_summary(NOW - timedelta(days=7), detection=value) == []
    assert count(path) == before
    assert len(await source.recent_summary(NOW - timedelta(hours=24))) == 5, "the table is intact"
    recent = [(sql, params) for sql, params in source.sent if "GROUP BY" in sql]
    assert recent
    for sql, params in recent:
        assert value not in sql
        assert "i-a" not in sql and "Kernel Module Loaded" not in sql and str(WS_B) not in sql
    assert {params["instance"] for _, params in recent} >= {value}, "the value went in as a bound parameter"


async def test_a_missing_table_is_a_source_error(tmp_path):
    src = DuckDBSource(str(tmp_path / "a.duckdb"))
    with duckdb.connect(src.path) as con:
        con.execute("DROP TABLE access.audit")
    with pytest.raises(SourceError, match="query failed"):
        await src.recent_summary(NOW - timedelta(hours=1))


# --------------------------------------------------------------- instance -> cluster (SQLite)


def event(event_id: str, instance: str | None, cluster: str | None, minutes_ago: float) -> EventRecord:
    return EventRecord(event_id, NOW - timedelta(minutes=minutes_ago), "Kernel Module Loaded", "new_finding", None,
                       str(WS_A), instance, cluster)


@pytest.fixture
async def store(tmp_path):
    db = await StateStore.open(str(tmp_path / "state.sqlite3"))
    await db.record_sync(
        [event("e1", "i-a", "cl-old", 60), event("e2", "i-a", "cl-1", 5), event("e3", "i-b", "cl-1", 30),
         event("e4", "i-c", None, 20), event("e5", "i-d", "", 20)],
        [], [], None,
    )
    yield db
    await db.close()


async def test_clusters_of_instances_takes_the_latest_resolved_cluster(store):
    assert await store.clusters_of_instances(["i-a", "i-b", "i-c", "i-d", "i-unknown", ""]) == {"i-a": "cl-1", "i-b": "cl-1"}
    assert await store.clusters_of_instances([]) == {}
    many = [f"i-{n}" for n in range(1200)] + ["i-b"]
    assert await store.clusters_of_instances(many) == {"i-b": "cl-1"}


@pytest.mark.parametrize("value", INJECTIONS)
async def test_clusters_of_instances_binds_its_values(store, value):
    assert await store.clusters_of_instances([value]) == {}
    assert await store.clusters_of_instances(["i-a"]) == {"i-a": "cl-1"}


# ------------------------------------------------------------------------------ the service


async def test_the_service_filters_by_cluster_category_and_severity(source, store):
    service = RecentService(source, store, CATALOGUE, now=lambda: NOW)
    text, blocks = await service.answer(service.parse(["cluster=cl-1"]))
    dumped = json.dumps(blocks, ensure_ascii=False)
    assert "`cl-1`" in dumped and "3× on 2 hosts" in dumped, "i-a and i-b share cl-1"
    assert "i-c" not in dumped and "Made Up Detection" not in dumped
    text, blocks = await service.answer(service.parse(["category=uncategorised"]))
    assert "Made Up Detection" in json.dumps(blocks) and "Kernel Module Loaded" not in json.dumps(blocks)
    text, blocks = await service.answer(service.parse(["instance=i-c"]))
    assert "host `i-c`" in json.dumps(blocks), "an instance the bot never resolved is shown by host"
    text, _ = await service.on_host("i-a")
    assert text.startswith("Recent ESM events — last 24h: 3 events in 2 groups")


async def test_the_service_reports_a_full_page(source, store):
    service = RecentService(source, store, CATALOGUE, now=lambda: NOW, row_limit=2)
    _, blocks = await service.answer(RecentQuery())
    assert "Only the 2 most recently active" in json.dumps(blocks)

