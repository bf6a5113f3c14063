"""A local Databricks SQL warehouse: HiveServer2 (TCLIService) over HTTP, backed by DuckDB.

The real `databricks.sql.connect(..., _connection_uri=emu.uri)` talks to it: the connector's
bundled TCLIService Thrift types travel in TBinaryProtocol over HTTP POST bodies, exactly as
they do to a warehouse. Enough of the service is implemented for connect, execute with native
named parameters, fetch and close:

    OpenSession, ExecuteStatement (direct results, or RUNNING + polling when slow),
    GetOperationStatus (long-polls like the real server), GetResultSetMetadata, FetchResults
    (paged by maxRows), CancelOperation, CloseOperation, CloseSession.

Statements arrive in Databricks dialect with `:name` markers and native `TSparkParameter`s;
they run on DuckDB after `bot.adapters.sql_dialect.to_duckdb`, binding the received values by
name. Every statement is recorded as received (`emu.statements`), so tests can check at the
protocol level that values travelled as parameters and never inside the SQL text.

Results are a COLUMN_BASED_SET, as a server sends to a client without pyarrow (this connector
then asks `canReadArrowResult=False`). Like the Spark Thrift server, complex types (MAP, STRUCT,
ARRAY) travel as JSON text in string columns, TIMESTAMP as `YYYY-MM-DD HH:MM:SS[.ffffff]` text in
the session time zone (UTC unless the session sets TIMEZONE), DATE as ISO text; BIGINT, INT,
BOOLEAN, DOUBLE travel natively.

Faults: `fail_next(n, message)` answers the next n statements with an error status (a stopped
warehouse, say); `delay(seconds)` holds every statement that long before it runs; a `token`
makes every request without `Authorization: Bearer <token>` a 401.

The server is a `ThreadingHTTPServer` in a background thread: the connector is synchronous, so
tests call it through `asyncio.to_thread` (or from plain threads) while the emulator answers.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
from thrift.protocol import TBinaryProtocol
from thrift.transport import TTransport

from bot.adapters.sql_dialect import to_duckdb
from databricks.sql.thrift_api.TCLIService import TCLIService
from databricks.sql.thrift_api.TCLIService import ttypes as T

HTTP_PATH = "/sql/1.0/warehouses/emulator"
DIRECT_RESULTS_WAIT = 0.5  # seconds ExecuteStatement waits before answering RUNNING
STATUS_LONG_POLL = 0.2  # seconds GetOperationStatus waits for a running statement
SERVER_PROTOCOL = T.TProtocolVersion.SPARK_CLI_SERVICE_PROTOCOL_V8  # native parameters need >= V8

_OK = T.TStatus(statusCode=T.TStatusCode.SUCCESS_STATUS)


def _error(message: str, sql_state: str | None = None, code=T.TStatusCode.ERROR_STATUS) -> T.TStatus:
    return T.TStatus(statusCode=code, errorMessage=message, displayMessage=message, sqlState=sql_state)


def _handle_id() -> T.THandleIdentifier:
    return T.THandleIdentifier(guid=uuid.uuid4().bytes, secret=uuid.uuid4().bytes)


# ---------------------------------------------------------------- parameters


def _param_value(param: T.TSparkParameter, tz: dt.tzinfo) -> Any:
    """The Python value of one native parameter, by its declared SQL type."""
    kind = (param.type or "STRING").upper()
    text = param.value.stringValue if param.value is not None else None
    if text is None or kind == "VOID":
        return None
    if kind in ("INT", "BIGINT", "SMALLINT", "TINYINT"):
        return int(text)
    if kind in ("DOUBLE", "FLOAT"):
        return float(text)
    if kind.startswith("DECIMAL"):
        return decimal.Decimal(text)
    if kind == "BOOLEAN":
        return text.strip().lower() == "true"
    if kind == "DATE":
        return dt.date.fromisoformat(text)
    if kind in ("TIMESTAMP", "TIMESTAMP_NTZ"):
        value = dt.datetime.fromisoformat(text)
        if kind == "TIMESTAMP" and value.tzinfo is None:
            value = value.replace(tzinfo=tz)  # a zone-less TIMESTAMP literal is in the session zone
        return value
    return text


# ---------------------------------------------------------------- result encoding


def _type_id(duck_type: str) -> int:
    name = duck_type.upper()
    if name.startswith("MAP("):
        return T.TTypeId.MAP_TYPE
    if name.startswith("STRUCT("):
        return T.TTypeId.STRUCT_TYPE
    if name.endswith("]"):
        return T.TTypeId.ARRAY_TYPE
    if name.startswith("DECIMAL"):
        return T.TTypeId.DECIMAL_TYPE
    if name.startswith("TIMESTAMP"):
        return T.TTypeId.TIMESTAMP_TYPE
    simple = {
        "BOOLEAN": T.TTypeId.BOOLEAN_TYPE, "TINYINT": T.TTypeId.TINYINT_TYPE,
        "SMALLINT": T.TTypeId.SMALLINT_TYPE, "INTEGER": T.TTypeId.INT_TYPE, "BIGINT": T.TTypeId.BIGINT_TYPE,
        "HUGEINT": T.TTypeId.BIGINT_TYPE, "FLOAT": T.TTypeId.FLOAT_TYPE, "DOUBLE": T.TTypeId.DOUBLE_TYPE,
        "DATE": T.TTypeId.DATE_TYPE, "VARCHAR": T.TTypeId.STRING_TYPE, "BLOB": T.TTypeId.BINARY_TYPE,
        '"NULL"': T.TTypeId.NULL_TYPE,
    }
    return simple.get(name, T.TTypeId.STRING_TYPE)


def _qualifiers(duck_type: str) -> T.TTypeQualifiers | None:
    if not duck_type.upper().startswith("DECIMAL("):
        return None
    precision, scale = duck_type[duck_type.index("(") + 1:-1].split(",")
    return T.TTypeQualifiers(qualifiers={
        "precision": T.TTypeQualifierValue(i32Value=int(precision)),
        "scale": T.TTypeQualifierValue(i32Value=int(scale)),
    })


def _schema(columns: list[tuple[str, str]]) -> T.TTableSchema:
    return T.TTableSchema(columns=[
        T.TColumnDesc(
            columnName=name,
            typeDesc=T.TTypeDesc(types=[T.TTypeEntry(primitiveEntry=T.TPrimitiveTypeEntry(
                type=_type_id(duck_type), typeQualifiers=_qualifiers(duck_type)))]),
            position=index + 1,
        )
        for index, (name, duck_type) in enumerate(columns)
    ])


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return _timestamp_text(value, dt.timezone.utc)
    if isinstance(value, (dt.date, decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(type(value).__name__)


def _timestamp_text(value: dt.datetime, tz: dt.tzinfo) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(tz).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="microseconds" if value.microsecond else "seconds")


def _to_text(value: Any, type_id: int, tz: dt.tzinfo) -> str:
    if type_id in (T.TTypeId.MAP_TYPE, T.TTypeId.STRUCT_TYPE, T.TTypeId.ARRAY_TYPE):
        return json.dumps(value, separators=(",", ":"), default=_json_default)
    if isinstance(value, dt.datetime):
        return _timestamp_text(value, tz)
    return str(value)


def _nulls(values: list[Any]) -> bytes:
    bits = bytearray((len(values) + 7) // 8)
    for index, value in enumerate(values):
        if value is None:
            bits[index >> 3] |= 1 << (index & 7)
    return bytes(bits)


def _column(values: list[Any], type_id: int, tz: dt.tzinfo) -> T.TColumn:
    nulls = _nulls(values)
    if type_id == T.TTypeId.BOOLEAN_TYPE:
        return T.TColumn(boolVal=T.TBoolColumn(values=[bool(v) if v is not None else False for v in values], nulls=nulls))
    if type_id == T.TTypeId.TINYINT_TYPE:
        return T.TColumn(byteVal=T.TByteColumn(values=[v if v is not None else 0 for v in values], nulls=nulls))
    if type_id == T.TTypeId.SMALLINT_TYPE:
        return T.TColumn(i16Val=T.TI16Column(values=[v if v is not None else 0 for v in values], nulls=nulls))
    if type_id == T.TTypeId.INT_TYPE:
        return T.TColumn(i32Val=T.TI32Column(values=[v if v is not None else 0 for v in values], nulls=nulls))
    if type_id == T.TTypeId.BIGINT_TYPE:
        return T.TColumn(i64Val=T.TI64Column(values=[int(v) if v is not None else 0 for v in values], nulls=nulls))
    if type_id in (T.TTypeId.FLOAT_TYPE, T.TTypeId.DOUBLE_TYPE):
        return T.TColumn(doubleVal=T.TDoubleColumn(values=[float(v) if v is not None else 0.0 for v in values], nulls=nulls))
    if type_id == T.TTypeId.BINARY_TYPE:
        return T.TColumn(binaryVal=T.TBinaryColumn(values=[bytes(v) if v is not None else b"" for v in values], nulls=nulls))
    texts = ["" if v is None else _to_text(v, type_id, tz) for v in values]
    return T.TColumn(stringVal=T.TStringColumn(values=texts, nulls=nulls))


def _row_set(columns: list[tuple[str, str]], rows: list[tuple], offset: int, tz: dt.tzinfo) -> T.TRowSet:
    type_ids = [_type_id(duck_type) for _, duck_type in columns]
    return T.TRowSet(
        startRowOffset=offset,
        rows=[],
        columns=[_column([row[i] for row in rows], type_ids[i], tz) for i in range(len(columns))],
    )


# ---------------------------------------------------------------- state


@dataclass
class Statement:
    sql: str
    params: dict[str, Any]
    session: bytes


@dataclass
class _Operation:
    statement: Statement
    tz: dt.tzinfo
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    columns: list[tuple[str, str]] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    error: str | None = None
    sql_state: str | None = None
    cursor: int = 0


@dataclass
class _Session:
    tz: dt.tzinfo
    configuration: dict[str, str]
    busy: int = 0


class ThriftSQLEmulator:
    """`with ThriftSQLEmulator(token="dapi-x") as emu:` then connect with `_connection_uri=emu.uri`.

    `emu.source` (a DuckDBSource on `emu.duckdb_path`) seeds data; the emulator and the source
    share one process, so DuckDB's one-writer-process rule holds."""

    def __init__(self, duckdb_path: str | Path | None = None, *, token: str | None = None,
                 http_path: str = HTTP_PATH, direct_results_wait: float = DIRECT_RESULTS_WAIT):
        if duckdb_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="thrift-sql-emu-")
            duckdb_path = Path(self._tmp.name) / "warehouse.duckdb"
        else:
            self._tmp = None
        self.duckdb_path = str(duckdb_path)
        self.token = token  # None: accept any (or no) credentials
        self.http_path = http_path
        self.direct_results_wait = direct_results_wait
        self.statements: list[tuple[str, dict[str, Any]]] = []  # as received: (sql text, {name: value})
        self.requests: list[str] = []  # Thrift method names, in order
        self.raw_parameters: list[list[T.TSparkParameter]] = []  # the TSparkParameters as received
        self.sessions_opened = 0
        self.concurrent_use: list[str] = []  # one entry per request that overlapped another on its session
        self.auth_failures = 0
        self._sessions: dict[bytes, _Session] = {}
        self._operations: dict[bytes, _Operation] = {}
        self._faults: list[tuple[str, str | None]] = []
        self._delay = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._source = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> "ThriftSQLEmulator":
        from bot.adapters.duckdb_source import DuckDBSource

        self._source = DuckDBSource(self.duckdb_path)  # creates the system-table schema
        handler = type("Handler", (_HTTPHandler,), {"emulator": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="thrift-sql-emu", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            with self._lock:
                for op in self._operations.values():
                    op.cancelled = True
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "ThriftSQLEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> "ThriftSQLEmulator":
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the emulator first"
        return self._server.server_address[1]

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def uri(self) -> str:
        """For the connector's `_connection_uri` (or ESM_WAREHOUSE_URI)."""
        return f"http://127.0.0.1:{self.port}{self.http_path}"

    @property
    def source(self):
        """A DuckDBSource on the warehouse's file: insert_rows, insert_node_timeline, insert_clusters."""
        assert self._source is not None, "start() the emulator first"
        return self._source

    def load(self, rows: list[dict[str, Any]]) -> int:
        return self.source.insert_rows(rows)

    # -- faults -------------------------------------------------------------------------

    def fail_next(self, n: int = 1, message: str = "warehouse is stopped", sql_state: str | None = None) -> None:
        """Answer the next n ExecuteStatement calls with an error status carrying `message`."""
        with self._lock:
            self._faults.extend([(message, sql_state)] * n)

    def delay(self, seconds: float) -> None:
        """Hold every following statement `seconds` before it runs (0 turns it off)."""
        self._delay = seconds

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
        self._delay = 0.0

    # -- TCLIService (called from the HTTP threads) ---------------------------------------

    def OpenSession(self, req: T.TOpenSessionReq) -> T.TOpenSessionResp:
        configuration = {k.upper(): v for k, v in (req.configuration or {}).items()}
        tz = _zone(configuration.get("TIMEZONE", "UTC"))
        handle = _handle_id()
        with self._lock:
            self._sessions[handle.guid] = _Session(tz, configuration)
            self.sessions_opened += 1
        return T.TOpenSessionResp(
            status=_OK, serverProtocolVersion=SERVER_PROTOCOL, sessionHandle=T.TSessionHandle(sessionId=handle),
            canUseMultipleCatalogs=True, configuration={},
        )

    def CloseSession(self, req: T.TCloseSessionReq) -> T.TCloseSessionResp:
        with self._lock:
            self._sessions.pop(req.sessionHandle.sessionId.guid, None)
        return T.TCloseSessionResp(status=_OK)

    def ExecuteStatement(self, req: T.TExecuteStatementReq) -> T.TExecuteStatementResp:
        session_id = req.sessionHandle.sessionId.guid
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            return T.TExecuteStatementResp(status=_error("Invalid SessionHandle", code=T.TStatusCode.INVALID_HANDLE_STATUS))
        raw = list(req.parameters or [])
        try:
            params = {p.name: _param_value(p, session.tz) for p in raw}
        except (ValueError, decimal.InvalidOperation) as exc:
            return T.TExecuteStatementResp(status=_error(f"[INVALID_PARAMETER_VALUE] {exc}", "22023"))
        statement = Statement(req.statement, params, session_id)
        with self._lock:
            self.statements.append((req.statement, params))
            self.raw_parameters.append(raw)
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            return T.TExecuteStatementResp(status=_error(fault[0], fault[1]))
        if any(p.ordinal for p in raw):
            return T.TExecuteStatementResp(status=_error("[UNBOUND_SQL_PARAMETER] positional parameters are not expected", "42P02"))
        try:
            duck_sql = to_duckdb(req.statement)
        except Exception as exc:  # sqlglot parse errors: the warehouse's PARSE_SYNTAX_ERROR
            return T.TExecuteStatementResp(status=_error(f"[PARSE_SYNTAX_ERROR] Syntax error: {exc}", "42601"))
        op = _Operation(statement, session.tz)
        handle = T.TOperationHandle(operationId=_handle_id(), operationType=T.TOperationType.EXECUTE_STATEMENT,
                                    hasResultSet=True)
        with self._lock:
            self._operations[handle.operationId.guid] = op
        threading.Thread(target=self._run, args=(op, duck_sql, session.configuration), daemon=True).start()
        op.done.wait(self.direct_results_wait)
        if not op.done.is_set():
            return T.TExecuteStatementResp(status=_OK, operationHandle=handle, directResults=T.TSparkDirectResults(
                operationStatus=self._status(op)))
        max_rows = req.getDirectResults.maxRows if req.getDirectResults else 10000
        direct = T.TSparkDirectResults(operationStatus=self._status(op))
        if op.error is None:
            direct.resultSetMetadata = self._metadata(op)
            rows = self._next_rows(op, max_rows)
            has_more = op.cursor < len(op.rows)
            direct.resultSet = T.TFetchResultsResp(status=_OK, hasMoreRows=has_more, results=rows)
            if not has_more:
                direct.closeOperation = T.TCloseOperationResp(status=_OK)
                with self._lock:
                    self._operations.pop(handle.operationId.guid, None)
        return T.TExecuteStatementResp(status=_OK, operationHandle=handle, directResults=direct)

    def GetOperationStatus(self, req: T.TGetOperationStatusReq) -> T.TGetOperationStatusResp:
        op = self._operation(req.operationHandle)
        if op is None:
            return T.TGetOperationStatusResp(status=_error("Invalid OperationHandle", code=T.TStatusCode.INVALID_HANDLE_STATUS))
        op.done.wait(STATUS_LONG_POLL)
        return self._status(op)

    def GetResultSetMetadata(self, req: T.TGetResultSetMetadataReq) -> T.TGetResultSetMetadataResp:
        op = self._operation(req.operationHandle)
        if op is None or op.cancelled or op.error is not None or not op.done.is_set():
            why = "Operation was cancelled" if op is not None and op.cancelled else "Invalid OperationHandle"
            return T.TGetResultSetMetadataResp(status=_error(why))
        return self._metadata(op)

    def FetchResults(self, req: T.TFetchResultsReq) -> T.TFetchResultsResp:
        op = self._operation(req.operationHandle)
        if op is None or op.cancelled or not op.done.is_set() or op.error is not None:
            return T.TFetchResultsResp(status=_error("Invalid OperationHandle", code=T.TStatusCode.INVALID_HANDLE_STATUS))
        rows = self._next_rows(op, req.maxRows or 10000)
        return T.TFetchResultsResp(status=_OK, hasMoreRows=op.cursor < len(op.rows), results=rows,
                                   resultSetMetadata=self._metadata(op) if req.includeResultSetMetadata else None)

    def CancelOperation(self, req: T.TCancelOperationReq) -> T.TCancelOperationResp:
        op = self._operation(req.operationHandle)
        if op is not None:
            op.cancelled = True
        return T.TCancelOperationResp(status=_OK)

    def CloseOperation(self, req: T.TCloseOperationReq) -> T.TCloseOperationResp:
        with self._lock:
            op = self._operations.pop(req.operationHandle.operationId.guid, None)
        if op is not None:
            op.cancelled = True
        return T.TCloseOperationResp(status=_OK)

    # -- internals ----------------------------------------------------------------------

    def _operation(self, handle: T.TOperationHandle) -> _Operation | None:
        with self._lock:
            return self._operations.get(handle.operationId.guid)

    def _run(self, op: _Operation, duck_sql: str, configuration: dict[str, str]) -> None:
        try:
            timeout = float(configuration.get("STATEMENT_TIMEOUT", "0") or 0)  # seconds, as DBSQL has it
            delay = self._delay
            held = min(delay, timeout) if timeout else delay
            deadline = time.monotonic() + held
            while time.monotonic() < deadline and not op.cancelled:
                time.sleep(0.01)
            if op.cancelled:
                return
            if timeout and delay >= timeout:
                op.error, op.sql_state = f"[QUERY_TIMEOUT] Query has been timed out after {timeout:g} seconds", "HYT00"
                return
            con = duckdb.connect(self.duckdb_path)
            try:
                con.execute(f"SET TimeZone = '{_zone_name(op.tz)}'")  # the name comes from _zone, never raw input
                cursor = con.execute(duck_sql, op.statement.params)
                op.columns = [(d[0], str(d[1])) for d in cursor.description]
                op.rows = cursor.fetchall()
            finally:
                con.close()
        except duckdb.Error as exc:
            op.error, op.sql_state = f"[{type(exc).__name__}] {exc}", "42000"
        finally:
            op.done.set()

    def _status(self, op: _Operation) -> T.TGetOperationStatusResp:
        if op.cancelled:
            state = T.TOperationState.CANCELED_STATE
        elif not op.done.is_set():
            state = T.TOperationState.RUNNING_STATE
        elif op.error is not None:
            return T.TGetOperationStatusResp(status=_OK, operationState=T.TOperationState.ERROR_STATE,
                                             errorMessage=op.error, displayMessage=op.error, sqlState=op.sql_state)
        else:
            state = T.TOperationState.FINISHED_STATE
        return T.TGetOperationStatusResp(status=_OK, operationState=state, hasResultSet=True)

    def _metadata(self, op: _Operation) -> T.TGetResultSetMetadataResp:
        return T.TGetResultSetMetadataResp(status=_OK, schema=_schema(op.columns),
                                           resultFormat=T.TSparkRowSetType.COLUMN_BASED_SET, lz4Compressed=False,
                                           isStagingOperation=False)

    def _next_rows(self, op: _Operation, max_rows: int) -> T.TRowSet:
        start = op.cursor
        chunk = op.rows[start:start + max(1, max_rows)]
        op.cursor = start + len(chunk)
        return _row_set(op.columns, chunk, start, op.tz)

    def _enter_session(self, method: str, session_id: bytes | None) -> None:
        with self._lock:
            self.requests.append(method)
            session = self._sessions.get(session_id) if session_id else None
            if session is not None:
                if session.busy:
                    self.concurrent_use.append(method)
                session.busy += 1

    def _leave_session(self, session_id: bytes | None) -> None:
        with self._lock:
            session = self._sessions.get(session_id) if session_id else None
            if session is not None:
                session.busy -= 1


def _zone(name: str) -> dt.tzinfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return dt.timezone.utc if name.upper() in ("UTC", "Z") else ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.timezone.utc


def _zone_name(tz: dt.tzinfo) -> str:
    return "UTC" if tz is dt.timezone.utc else str(tz)



class _Dispatch:
    """The Thrift handler: every method name goes to the emulator, with bookkeeping around it."""

    def __init__(self, emulator: ThriftSQLEmulator):
        self._emulator = emulator

    def __getattr__(self, method: str):
        target = getattr(self._emulator, method, None)
        if target is None or not method[:1].isupper():
            raise AttributeError(method)

        def call(req: Any) -> Any:
            session_id = getattr(getattr(req, "sessionHandle", None), "sessionId", None)
            session_id = session_id.guid if session_id is not None else None
            if session_id is None and getattr(req, "operationHandle", None) is not None:
                op = self._emulator._operation(req.operationHandle)
                session_id = op.statement.session if op is not None else None
            self._emulator._enter_session(method, session_id)
            try:
                return target(req)
            finally:
                self._emulator._leave_session(session_id)

        return call


class _HTTPHandler(BaseHTTPRequestHandler):
    emulator: ThriftSQLEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        emu = self.emulator
        if self.path.split("?")[0].rstrip("/") != emu.http_path.rstrip("/"):
            self._send(404, b"", {"x-databricks-reason-phrase": f"no warehouse at {self.path}"})
            return
        if emu.token is not None and self.headers.get("Authorization") != f"Bearer {emu.token}":
            with emu._lock:
                emu.auth_failures += 1
            self._send(401, b"", {"x-databricks-reason-phrase": "Invalid access token."})
            return
        itrans = TTransport.TMemoryBuffer(body)
        otrans = TTransport.TMemoryBuffer()
        processor = TCLIService.Processor(_Dispatch(emu))
        processor.process(TBinaryProtocol.TBinaryProtocol(itrans), TBinaryProtocol.TBinaryProtocol(otrans))
        self._send(200, otrans.getvalue(), {"Content-Type": "application/x-thrift"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


__all__ = ["ThriftSQLEmulator", "HTTP_PATH", "Statement"]
