"""AuditSource over an embedded DuckDB file: the local default and the test store.

The file holds `access.audit`, `compute.node_timeline` and `compute.clusters` in the
system-table shapes. DuckDB lets one process hold a file open for writing, so every operation
opens, works and closes: `esm-bot load-events` can then add rows while the bot runs.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import duckdb

from bot.adapters.audit_sql import SqlAuditSource
from bot.adapters.sql_dialect import to_duckdb
from bot.core.events import AuditRow, parse_audit_row
from bot.core.ports import SourceError

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS access;
CREATE SCHEMA IF NOT EXISTS compute;
CREATE TABLE IF NOT EXISTS access.audit (
    version VARCHAR,
    event_time TIMESTAMPTZ NOT NULL,
    event_date DATE NOT NULL,
    workspace_id BIGINT,
    source_ip_address VARCHAR,
    user_agent VARCHAR,
    session_id VARCHAR,
    user_identity STRUCT(email VARCHAR, subject_name VARCHAR),
    service_name VARCHAR NOT NULL,
    action_name VARCHAR NOT NULL,
    request_id VARCHAR,
    request_params MAP(VARCHAR, VARCHAR),
    response STRUCT(status_code INTEGER, error_message VARCHAR, result VARCHAR),
    audit_level VARCHAR,
    account_id VARCHAR,
    event_id VARCHAR PRIMARY KEY,
    identity_metadata STRUCT(run_by VARCHAR, run_as VARCHAR)
);
CREATE TABLE IF NOT EXISTS compute.node_timeline (
    account_id VARCHAR, workspace_id VARCHAR, cluster_id VARCHAR, instance_id VARCHAR,
    start_time TIMESTAMPTZ, end_time TIMESTAMPTZ, driver BOOLEAN, node_type VARCHAR
);
CREATE TABLE IF NOT EXISTS compute.clusters (
    account_id VARCHAR, workspace_id VARCHAR, cluster_id VARCHAR, cluster_name VARCHAR,
    owned_by VARCHAR, create_time TIMESTAMPTZ, delete_time TIMESTAMPTZ, change_time TIMESTAMPTZ,
    dbr_version VARCHAR, data_security_mode VARCHAR, policy_id VARCHAR, tags MAP(VARCHAR, VARCHAR)
);
"""

# One statement for a whole batch: DuckDB zips the parallel lists with unnest, which is
# hundreds of times faster than executemany row by row.
INSERT_AUDIT = """
INSERT INTO access.audit (event_id, event_time, event_date, workspace_id, service_name,
    action_name, request_params, response, user_identity, source_ip_address, user_agent, audit_level)
SELECT event_id, event_time, CAST(event_time AS DATE), workspace_id, service_name, action_name,
    MAP(param_keys, param_values),
    {'status_code': status_code, 'error_message': error_message, 'result': result},
    {'email': email, 'subject_name': subject_name}, source_ip_address, user_agent, audit_level
FROM (SELECT unnest($event_id) AS event_id, unnest($event_time) AS event_time,
    unnest($workspace_id) AS workspace_id, unnest($service_name) AS service_name,
    unnest($action_name) AS action_name, unnest($param_keys) AS param_keys,
    unnest($param_values) AS param_values, unnest($status_code) AS status_code,
    unnest($error_message) AS error_message, unnest($result) AS result, unnest($email) AS email,
    unnest($subject_name) AS subject_name, unnest($source_ip_address) AS source_ip_address,
    unnest($user_agent) AS user_agent, unnest($audit_level) AS audit_level)
ON CONFLICT DO NOTHING
"""

LOCK_RETRY_SECONDS = 5.0
# Opening the file costs ~20 ms, several times a typical query here; while one connection is
# open DuckDB reuses the database for further connects (microseconds). Profiled in bench/ (#6):
# a 10,000-event storm spent most of its time opening the file for per-finding lookups.
HOLD_SECONDS = 0.25


class DuckDBSource(SqlAuditSource):
    def __init__(self, path: str):
        self.path = path
        self._hold_lock = threading.Lock()
        self._held: duckdb.DuckDBPyConnection | None = None  # keeps the file open during a burst
        self._active = 0
        self._release_timer: threading.Timer | None = None
        with self._connect() as con:
            con.execute(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file for one operation and close it (loading: the lock is released at once)."""
        con = self._open()
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for a query; the file stays open until HOLD_SECONDS after the last one
        closes, so a burst of queries opens it once and a loader in another process still gets
        its lock moments after this source goes idle."""
        self._hold()
        try:
            con = duckdb.connect(self.path)  # cheap: the held connection keeps the database open
            try:
                yield con
            finally:
                con.close()
        finally:
            self._release_later()

    def _open(self) -> duckdb.DuckDBPyConnection:
        """Open the file, waiting briefly while another process (a loader) holds its lock."""
        deadline = time.monotonic() + LOCK_RETRY_SECONDS
        while True:
            try:
                return duckdb.connect(self.path)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise SourceError(f"embedded audit store {self.path} cannot be opened: {exc}") from exc
                time.sleep(0.05)

    def _hold(self) -> None:
        with self._hold_lock:
            if self._release_timer is not None:
                self._release_timer.cancel()
                self._release_timer = None
            if self._held is None:
                self._held = self._open()
            self._active += 1

    def _release_later(self) -> None:
        with self._hold_lock:
            self._active -= 1
            if self._active == 0:
                self._release_timer = threading.Timer(HOLD_SECONDS, self._release)
                self._release_timer.daemon = True
                self._release_timer.start()

    def _release(self) -> None:
        with self._hold_lock:
            if self._active == 0 and self._held is not None:
                self._held.close()
                self._held = None

    def _query(self, databricks_sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            with self._reading() as con:
                cursor = con.execute(to_duckdb(databricks_sql), params)
                names = [d[0] for d in cursor.description]
                return [dict(zip(names, row)) for row in cursor.fetchall()]
        except duckdb.Error as exc:
            raise SourceError(f"embedded audit store query failed: {exc}") from exc

    async def _run(self, databricks_sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._query, databricks_sql, params)

    async def close(self) -> None:
        self._release()

    # -- loading (esm-bot load-events and tests) ------------------------------------------

    def insert_rows(self, rows: Iterable[AuditRow | dict[str, Any]]) -> int:
        """Insert audit rows; rows whose event_id is already stored are skipped. Returns inserted."""
        records = _unique_records(rows)
        if not records:
            return 0
        columns = {name: [r[name] for r in records] for name in records[0]}
        with self._connect() as con:
            before = (con.execute("SELECT count(*) FROM access.audit").fetchone() or (0,))[0]
            con.execute(INSERT_AUDIT, columns)
            after = (con.execute("SELECT count(*) FROM access.audit").fetchone() or (0,))[0]
        return int(after - before)

    def insert_node_timeline(self, rows: Iterable[dict[str, Any]]) -> None:
        self._insert_plain("compute.node_timeline", rows)

    def insert_clusters(self, rows: Iterable[dict[str, Any]]) -> None:
        self._insert_plain("compute.clusters", rows)

    def _insert_plain(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        columns = list(dict.fromkeys(key for row in rows for key in row))  # every key of every row
        # table and column names come from this module's callers, never from input data
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        with self._connect() as con:
            con.executemany(sql, [[row.get(c) for c in columns] for row in rows])


def _unique_records(rows: Iterable[AuditRow | dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per event_id (the first wins): a batch may not conflict with itself."""
    records: dict[str, dict[str, Any]] = {}
    for raw in rows:
        row = raw if isinstance(raw, AuditRow) else parse_audit_row(raw)
        records.setdefault(row.event_id, _insert_params(row, raw))
    return list(records.values())


def _insert_params(row: AuditRow, original: Any) -> dict[str, Any]:
    extra = original if isinstance(original, dict) else {}
    params = dict(row.request_params)
    response = row.response
    return {
        "event_id": row.event_id,
        "event_time": row.event_time,
        "workspace_id": _bounded_int(row.workspace_id, BIGINT_MAX),
        "service_name": row.service_name,
        "action_name": row.action_name,
        "param_keys": list(params),
        "param_values": list(params.values()),
        "status_code": _bounded_int(response.get("status_code"), INTEGER_MAX),
        "error_message": _text_or_none(response.get("error_message")),
        "result": _text_or_none(response.get("result")),
        "email": _text_or_none(row.user_identity.get("email")),
        "subject_name": _text_or_none(row.user_identity.get("subject_name")),
        "source_ip_address": row.source_ip_address,
        "user_agent": _text_or_none(extra.get("user_agent")),
        "audit_level": _text_or_none(extra.get("audit_level")),
    }


BIGINT_MAX = 2**63 - 1
INTEGER_MAX = 2**31 - 1


def _bounded_int(value: Any, limit: int) -> int | None:
    """A number the column can hold, or NULL: one odd row must not fail a whole batch."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        return None
    return number if -limit - 1 <= number <= limit else None


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)
