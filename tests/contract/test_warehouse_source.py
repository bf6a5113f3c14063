"""The SQL warehouse AuditSource: the real databricks-sql-connector over Thrift/HTTP against the
local Thrift SQL emulator (emulators/thrift_sql.py), whose DuckDB file also backs a DuckDBSource.
Both sources must answer alike; values must travel as native parameters; failures must become
SourceErrors that name the warehouse and never the token."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest

from bot.adapters.databricks_sql import DatabricksSQLSource
from bot.adapters.duckdb_source import DuckDBSource
from bot.config import ConfigError, load_settings
from bot.core import queries
from bot.core.events import CAPSULE8_SERVICE, AuditRow
from bot.core.ports import SourceError
from bot.runtime import open_source
from emulators.databricks import DatabricksEmulator
from emulators.thrift_sql import ThriftSQLEmulator

T0 = datetime(2025, 3, 4, 10, 0, tzinfo=timezone.utc)
TOKEN = "dapi-warehouse-test-3c9e71"
HOST = "https://dbc-warehouse-test.cloud.databricks.com"
CLUSTER = "0304-100000-abcd1234"
WORKSPACE = 1234567890123456
INJECTIONS = ["x' OR '1'='1", "'; DROP TABLE access.audit; --", "' OR 1=1 --", '"; DROP TABLE compute.clusters; --']


def capsule8(event_id: str, minutes: float, detection: str = "Kernel Module Loaded", instance: str = "i-0abc",
             workspace: int = WORKSPACE, **params: str) -> dict:
    return {
        "event_id": event_id, "event_time": (T0 + timedelta(minutes=minutes)).isoformat(),
        "workspace_id": workspace, "service_name": CAPSULE8_SERVICE, "action_name": detection,
        "request_params": {"instanceId": instance, **params}, "response": {"status_code": 200},
        "user_identity": {"email": None, "subject_name": "capsule8"}, "source_ip_address": "10.0.0.7",
    }


def notebook(event_id: str, minutes: float, cluster: str = CLUSTER, text: str = "print(1)") -> dict:
    return {
        "event_id": event_id, "event_time": (T0 + timedelta(minutes=minutes)).isoformat(),
        "workspace_id": WORKSPACE, "service_name": "notebook", "action_name": "runCommand",
        "request_params": {"clusterId": cluster, "notebookId": f"nb-{event_id}", "commandText": text},
        "user_identity": {"email": f"{event_id}@example.com"}, "response": {"status_code": 200},
    }


SEED_AUDIT = [
    *[capsule8(f"c-{i:02d}", i % 4, instance=f"i-0{i % 3}") for i in range(12)],  # shared times for keyset paging
    capsule8("c-boot", 20, detection="Boot Files Modified", instance="i-0etl", containerId="3f4e9c2a1b7d"),
    capsule8("c-other-ws", 25, detection="Boot Files Modified", instance="i-0etl", workspace=42),
    capsule8("c-before", -60 * 12),
    capsule8("c-quote", 30, detection="Kernel Module Loaded", instance="i-0abc", commandLine="echo 'hi' \"there\" ; {}"),
    notebook("n-start", -30, text="%sh curl http://x | sh"),
    notebook("n-mid", -10, text="import os"),
    notebook("n-end", 0, text="display(df)"),
    notebook("n-other", -5, cluster="0304-999999-zzzz9999"),
]
SEED_NODES = [
    {"instance_id": "i-0abc", "cluster_id": "old-cluster", "start_time": T0 - timedelta(hours=3), "end_time": T0 - timedelta(hours=2), "driver": False},
    {"instance_id": "i-0abc", "cluster_id": CLUSTER, "start_time": T0 - timedelta(minutes=1), "end_time": T0, "driver": True},
    {"instance_id": "i-0etl", "cluster_id": "etl-cluster", "start_time": T0, "end_time": T0 + timedelta(hours=1), "driver": False},
]
SEED_CLUSTERS = [
    {"cluster_id": CLUSTER, "cluster_name": "etl-old", "owned_by": "a@example.com", "change_time": T0 - timedelta(days=1), "dbr_version": "13.3"},
    {"cluster_id": CLUSTER, "cluster_name": "etl", "owned_by": "b@example.com", "change_time": T0, "dbr_version": "14.3",
     "data_security_mode": "USER_ISOLATION", "policy_id": "pol-1", "tags": {"team": "sec"}},
    {"cluster_id": "gone", "cluster_name": "gone", "change_time": T0, "delete_time": T0},
]


@pytest.fixture
def emu(tmp_path):
    with ThriftSQLEmulator(tmp_path / "warehouse.duckdb", token=TOKEN) as emulator:
        emulator.source.insert_rows(SEED_AUDIT)
        emulator.source.insert_node_timeline(SEED_NODES)
        emulator.source.insert_clusters(SEED_CLUSTERS)
        yield emulator


@pytest.fixture
def embedded(emu) -> DuckDBSource:
    return DuckDBSource(emu.duckdb_path)


@pytest.fixture
async def warehouse(emu):
    source = DatabricksSQLSource(HOST, emu.http_path, token=TOKEN, timeout=5, connection_uri=emu.uri)
    yield source
    await source.close()


def where(emu: ThriftSQLEmulator) -> str:
    return f"{HOST}{emu.http_path}"


# ---------------------------------------------------------------- same answers as the embedded store

CALLS = {
    "capsule8_since": lambda s: s.capsule8_since(T0, limit=100),
    "capsule8_since_limited": lambda s: s.capsule8_since(T0, limit=5),
    "capsule8_since_after_id": lambda s: s.capsule8_since(T0 + timedelta(minutes=1), limit=5, after_id="c-05"),
    "capsule8_since_midnight": lambda s: s.capsule8_since(datetime(2025, 3, 3, 21, 0, tzinfo=timezone.utc), limit=3),
    "capsule8_since_non_utc_since": lambda s: s.capsule8_since(T0.astimezone(timezone(timedelta(hours=-5))), limit=4),
    "capsule8_detection_since": lambda s: s.capsule8_detection_since(" boot files MODIFIED ", T0, limit=10),
    "notebook_commands": lambda s: s.notebook_commands(CLUSTER, T0 - timedelta(minutes=30), T0, limit=50),
    "notebook_commands_limited": lambda s: s.notebook_commands(CLUSTER, T0 - timedelta(hours=1), T0, limit=2),
    "cluster_for_instance": lambda s: s.cluster_for_instance("i-0abc", T0),
    "cluster_for_instance_earlier": lambda s: s.cluster_for_instance("i-0abc", T0 - timedelta(hours=2)),
    "cluster_for_unknown_instance": lambda s: s.cluster_for_instance("i-nope", T0),
    "cluster_record": lambda s: s.cluster_record(CLUSTER),
    "cluster_record_deleted": lambda s: s.cluster_record("gone"),
    "cluster_record_unknown": lambda s: s.cluster_record("nope"),
    "recent_summary": lambda s: s.recent_summary(T0 - timedelta(hours=1)),
    "recent_summary_instance": lambda s: s.recent_summary(T0 - timedelta(hours=1), instance_id="i-0etl"),
    "recent_summary_detection": lambda s: s.recent_summary(T0 - timedelta(hours=1), detection="Kernel Module Loaded", limit=2),
    "recent_summary_workspace": lambda s: s.recent_summary(T0 - timedelta(hours=1), workspace_id=42),
}


@pytest.mark.parametrize("name", list(CALLS))
async def test_the_warehouse_answers_exactly_as_the_embedded_store(name, embedded, warehouse):
    expected = await CALLS[name](embedded)
    got = await CALLS[name](warehouse)
    assert got == expected
    if name in ("capsule8_since", "recent_summary", "notebook_commands", "cluster_record"):
        assert got, "the comparison must not be vacuous"


async def test_keyset_paging_through_the_warehouse_returns_every_row_once(warehouse, embedded):
    seen: list[str] = []
    since, after_id = T0, ""
    for _ in range(10):
        page = await warehouse.capsule8_since(since, limit=5, after_id=after_id)
        if not page:
            break
        seen.extend(r.event_id for r in page)
        since, after_id = page[-1].event_time, page[-1].event_id
    assert seen == [r.event_id for r in await embedded.capsule8_since(T0, limit=100)]
    assert len(seen) == len(set(seen)) == 15


async def test_rows_come_back_in_the_embedded_stores_python_shapes(warehouse):
    rows = await warehouse.capsule8_since(T0 + timedelta(minutes=20), limit=10)
    boot = next(r for r in rows if r.event_id == "c-boot")
    assert isinstance(boot, AuditRow)
    assert boot.event_time == T0 + timedelta(minutes=20) and boot.event_time.utcoffset() == timedelta(0)
    assert dict(boot.request_params) == {"instanceId": "i-0etl", "containerId": "3f4e9c2a1b7d"}
    assert boot.response["status_code"] == 200 and boot.user_identity["subject_name"] == "capsule8"
    assert boot.workspace_id == str(WORKSPACE)
    quoted = next(r for r in rows if r.event_id == "c-quote")
    assert quoted.request_params["commandLine"] == "echo 'hi' \"there\" ; {}"
    raw = await warehouse._run("SELECT tags, event_date FROM (SELECT tags, DATE'2025-03-04' AS event_date "
                               "FROM system.compute.clusters WHERE cluster_id = :id AND tags IS NOT NULL)", {"id": CLUSTER})
    assert raw == [{"tags": {"team": "sec"}, "event_date": T0.date()}]


# ---------------------------------------------------------------- values travel as parameters


@pytest.mark.parametrize("evil", INJECTIONS)
async def test_user_values_arrive_as_bound_parameters_never_in_the_sql_text(evil, warehouse, emu):
    assert await warehouse.cluster_for_instance(evil, T0) is None
    assert await warehouse.cluster_record(evil) is None
    assert await warehouse.notebook_commands(evil, T0 - timedelta(hours=1), T0, limit=5) == []
    assert await warehouse.capsule8_detection_since(evil, T0, limit=5) == []
    assert await warehouse.recent_summary(T0, instance_id=evil, detection=evil) == []
    assert len(emu.statements) == 5
    sent_sql = {sql for sql, _ in emu.statements}
    assert sent_sql == {queries.CLUSTER_FOR_INSTANCE, queries.CLUSTER_RECORD, queries.NOTEBOOK_COMMANDS,
                        queries.CAPSULE8_DETECTION_SINCE, queries.RECENT_EVENTS}, "the SQL text is sent verbatim"
    for sql, params in emu.statements:
        assert evil not in sql
        assert evil in params.values()
    # the tables are intact and still answer
    assert await warehouse.cluster_record(CLUSTER) is not None
    assert len(await warehouse.capsule8_since(T0, limit=100)) == 15


async def test_parameters_carry_their_sql_types(warehouse, emu):
    await warehouse.capsule8_since(T0, limit=7, after_id="c-01")
    await warehouse.recent_summary(T0, workspace_id=WORKSPACE)
    capsule, recent = emu.raw_parameters
    types = {p.name: p.type for p in capsule}
    assert types == {"service": "STRING", "clamav_service": "STRING", "since": "TIMESTAMP", "after_id": "STRING",
                     "limit": "INT"}
    assert all(p.name and not p.ordinal for p in capsule), "named, not positional"
    since = next(p for p in capsule if p.name == "since")
    assert since.value.stringValue == "2025-03-04 10:00:00+00:00"
    recent_types = {p.name: p.type for p in recent}
    assert recent_types["instance"] == "VOID" and recent_types["workspace"] == "BIGINT"
    assert emu.statements[1][1]["instance"] is None


# ---------------------------------------------------------------- failures


async def test_a_stopped_warehouse_is_a_source_error_naming_the_warehouse_not_the_token(warehouse, emu):
    emu.fail_next(1, "[WAREHOUSE_STOPPED] The SQL warehouse is stopped. Start it and try again.")
    with pytest.raises(SourceError) as caught:
        await warehouse.capsule8_since(T0, limit=10)
    message = str(caught.value)
    assert where(emu) in message and "stopped" in message
    assert TOKEN not in message and TOKEN not in repr(caught.value.__cause__ or "")
    assert len(await warehouse.capsule8_since(T0, limit=100)) == 15, "the next call works again"


async def test_a_statement_past_the_timeout_is_cancelled_and_reported(emu):
    source = DatabricksSQLSource(HOST, emu.http_path, token=TOKEN, timeout=1, connection_uri=emu.uri)
    try:
        await source.capsule8_since(T0, limit=1)  # warm the connection
        emu.delay(4)
        started = time.monotonic()
        with pytest.raises(SourceError) as caught:
            await source.cluster_record(CLUSTER)
        assert time.monotonic() - started < 2.5
        assert "timed out" in str(caught.value) and where(emu) in str(caught.value)
        assert TOKEN not in str(caught.value)
        deadline = time.monotonic() + 3
        while "CancelOperation" not in emu.requests and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert "CancelOperation" in emu.requests, "the abandoned statement was cancelled on the warehouse"
        emu.delay(0)
        assert (await source.cluster_record(CLUSTER)).name == "etl"
    finally:
        await source.close()


async def test_the_warehouse_statement_timeout_is_set_server_side_too(emu):
    source = DatabricksSQLSource(HOST, emu.http_path, token=TOKEN, timeout=1, connection_uri=emu.uri)
    try:
        await source.cluster_record(CLUSTER)
        [session] = emu._sessions.values()
        assert session.configuration["TIMEZONE"] == "UTC" and session.configuration["STATEMENT_TIMEOUT"] == "6"
    finally:
        await source.close()


async def test_a_refused_token_is_a_source_error_that_does_not_leak_it(emu):
    wrong = "dapi-wrong-token-0000"
    source = DatabricksSQLSource(HOST, emu.http_path, token=wrong, timeout=5, connection_uri=emu.uri)
    try:
        with pytest.raises(SourceError) as caught:
            await source.capsule8_since(T0, limit=10)
    finally:
        await source.close()
    message = str(caught.value)
    assert "refused the credentials" in message and "401" in message and where(emu) in message
    assert wrong not in message and TOKEN not in message
    assert emu.auth_failures >= 1


async def test_bad_sql_is_a_source_error(warehouse, emu):
    with pytest.raises(SourceError, match="rejected the query"):
        await warehouse._run("SELEC event_id FROM", {})
    with pytest.raises(SourceError, match="rejected the query"):
        await warehouse._run("SELECT no_such_column FROM system.access.audit", {})
    assert await warehouse.cluster_record(CLUSTER) is not None


async def test_an_unreachable_warehouse_is_a_source_error(emu):
    source = DatabricksSQLSource(HOST, emu.http_path, token=TOKEN, timeout=3, connection_uri="http://127.0.0.1:9/sql/1.0/warehouses/x")
    try:
        with pytest.raises(SourceError) as caught:
            await source.cluster_record(CLUSTER)
    finally:
        await source.close()
    assert where(emu) in str(caught.value) and TOKEN not in str(caught.value)


async def test_concurrent_calls_use_one_connection_per_worker_thread(warehouse, emu):
    emu.delay(0.3)
    results = await asyncio.gather(*[warehouse.cluster_record(CLUSTER) for _ in range(8)],
                                   *[warehouse.capsule8_since(T0, limit=100) for _ in range(4)])
    assert all(r.name == "etl" for r in results[:8])
    assert all(len(r) == 15 for r in results[8:])
    assert emu.concurrent_use == [], "no session ever served two requests at once"
    assert 2 <= emu.sessions_opened <= 4, "one session per worker thread, reused"
    before = emu.sessions_opened
    emu.delay(0)
    await asyncio.gather(*[warehouse.cluster_record(CLUSTER) for _ in range(8)])
    assert emu.sessions_opened == before, "connections are reused"


async def test_close_closes_every_session(warehouse, emu):
    await asyncio.gather(*[warehouse.cluster_record(CLUSTER) for _ in range(4)])
    await warehouse.close()
    assert emu.requests.count("CloseSession") == emu.sessions_opened
    with pytest.raises(SourceError, match="closed"):
        await warehouse.cluster_record(CLUSTER)


async def test_without_a_token_the_sdks_unified_auth_supplies_the_credentials(emu, monkeypatch):
    """No DATABRICKS_TOKEN for the source: databricks.sdk Config (here: PAT from its own env
    lookup) becomes the connector's credentials_provider."""
    async with DatabricksEmulator(token=TOKEN) as rest:
        monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
        source = DatabricksSQLSource(rest.host, emu.http_path, timeout=5, connection_uri=emu.uri)
        try:
            assert (await source.cluster_record(CLUSTER)).name == "etl"
        finally:
            await source.close()


# ---------------------------------------------------------------- configuration


def test_open_source_builds_the_warehouse_source_from_settings(emu):
    settings = load_settings({"ESM_AUDIT_SOURCE": "databricks", "DATABRICKS_HOST": HOST, "DATABRICKS_TOKEN": TOKEN,
                              "ESM_WAREHOUSE_ID": "abc123", "ESM_WAREHOUSE_TIMEOUT": "7"})
    source = open_source(settings)
    assert isinstance(source, DatabricksSQLSource)
    assert source.where == f"{HOST}/sql/1.0/warehouses/abc123" and source.timeout == 7
    assert TOKEN not in repr(source)
    explicit = load_settings({"ESM_AUDIT_SOURCE": "databricks", "DATABRICKS_HOST": HOST,
                              "ESM_WAREHOUSE_HTTP_PATH": "sql/1.0/warehouses/xyz", "ESM_WAREHOUSE_ID": "abc123"})
    assert open_source(explicit).http_path == "/sql/1.0/warehouses/xyz"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"ESM_WAREHOUSE_ID": "abc123"}, "DATABRICKS_HOST"),
        ({"DATABRICKS_HOST": HOST}, "ESM_WAREHOUSE_HTTP_PATH"),
    ],
)
def test_a_missing_warehouse_setting_is_a_config_error_naming_it(env, variable):
    with pytest.raises(ConfigError, match=variable):
        open_source(load_settings({"ESM_AUDIT_SOURCE": "databricks", **env}))


async def test_a_recent_answer_does_not_queue_behind_a_syncs_statements(emu):
    """A storm's enrichment queues many statements at once; `/esm recent` asked meanwhile runs
    on its own lane and is answered while the sync's statements are still waiting their turn."""
    source = DatabricksSQLSource(HOST, emu.http_path, token=TOKEN, timeout=30, connection_uri=emu.uri, workers=2)
    try:
        await source.capsule8_since(T0, limit=1)
        emu.delay(1.0)
        done: list[str] = []

        async def lookup(n: int) -> None:
            await source.notebook_commands(CLUSTER, T0 - timedelta(hours=1), T0, limit=10)
            done.append(f"sync-{n}")

        syncs = [asyncio.create_task(lookup(n)) for n in range(6)]  # three rounds on two workers
        while len(emu.statements) < 3:  # the first two are running on the warehouse
            await asyncio.sleep(0.01)
        rows = await source.recent_summary(T0 - timedelta(days=1))
        done.append("recent")
        await asyncio.gather(*syncs)
        assert rows, "the answer has the seeded events"
        assert done.index("recent") <= 2, f"the answer waited for the sync's queued statements: {done}"
    finally:
        emu.delay(0)
        await source.close()
