"""AuditSource over a Databricks SQL warehouse, through databricks-sql-connector (Thrift backend).

The SQL is bot/core/queries.py as written (Databricks dialect); every value travels as a native
named parameter (`:name` markers, `TSparkParameter`s in `TExecuteStatementReq.parameters`), never
inside the text. The connector is synchronous and its connections are not thread-safe, so
statements run on this source's own worker threads with ONE connection per thread
(`threading.local`), opened lazily and reopened after a transport failure.

Two lanes of worker threads: syncs (audit reads, the late sweep, enrichment's look-ups, which a
storm queues by the dozen) and interactive statements (`/esm recent`, Recent on this host). A
statement holds its thread for the warehouse's whole run, so with one shared pool an answer
queued behind a sync's statements waited for several warehouse runs; on its own lane it waits
for its own run only (unless more than `interactive_workers` answers are asked at once).

Rows come back in the shapes DuckDBSource returns, so the pipeline cannot tell the sources
apart: timestamps are tz-aware UTC (the session runs with TIMEZONE=UTC and a zone-less value is
read as UTC), MAP / STRUCT / ARRAY columns are decoded to dicts / lists whether the connector hands
them over as JSON text (column-based results, no pyarrow) or as Arrow-native Python values
(maps as lists of pairs).

Failures become `SourceError`s that name the warehouse (host + HTTP path) and never the token:
stopped or starting warehouse, refused credentials, timeout, rejected SQL, unreachable host.

Relies on databricks-sql-connector 4.x private keywords (`_connection_uri`, `_socket_timeout`,
`_retry_stop_after_attempts_duration`); pin the connector's minor version (written against 4.9).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlparse

from bot.adapters.audit_sql import SqlAuditSource
from bot.core.ports import SourceError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
DEFAULT_WORKERS = 4
DEFAULT_INTERACTIVE_WORKERS = 4
_COMPLEX = ("map", "struct", "array")
_STOPPED_MARKERS = ("warehouse_stopped", "stopped", "starting", "not running", "temporarily_unavailable",
                    "is being started", "resource_does_not_exist")
_AUTH_MARKERS = ("invalid access token", "unauthorized", "unauthenticated", "permission_denied",
                 "invalid token", "credential")
_TIMEOUT_MARKERS = ("query_timeout", "timed out", "timeout")


def warehouse_http_path(http_path: str | None, warehouse_id: str | None) -> str | None:
    """ESM_WAREHOUSE_HTTP_PATH as given, else /sql/1.0/warehouses/<ESM_WAREHOUSE_ID>."""
    if http_path:
        return "/" + http_path.lstrip("/")
    if warehouse_id:
        return f"/sql/1.0/warehouses/{warehouse_id}"
    return None


@dataclass
class _Call:
    """One statement in flight: the cursor (for a cancel from another thread) and its fate."""

    cursor: Any = None
    abandoned: bool = False

    def cancel(self) -> None:
        self.abandoned = True
        cursor = self.cursor
        if cursor is not None:
            try:
                cursor.cancel()  # the connector allows cancel from another thread
            except Exception as exc:  # best effort: the statement may have just finished
                log.debug("cancel of an abandoned warehouse statement failed: %s", exc)


class DatabricksSQLSource(SqlAuditSource):
    def __init__(
        self,
        host: str,
        http_path: str,
        *,
        token: str | None = None,
        credentials_provider: Callable[[], Callable[[], dict[str, str]]] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connection_uri: str | None = None,
        workers: int = DEFAULT_WORKERS,
        interactive_workers: int = DEFAULT_INTERACTIVE_WORKERS,
    ):
        """`host` is the workspace URL (DATABRICKS_HOST); `http_path` the warehouse's HTTP path.
        Without a token, the Databricks SDK's own unified auth (OAuth M2M, Azure, profiles...)
        supplies the headers. `connection_uri` overrides where Thrift requests go: for local
        emulators only."""
        parsed = urlparse(host if "://" in host else f"https://{host}")
        self.host = f"{parsed.scheme}://{parsed.netloc}"
        self.http_path = "/" + http_path.lstrip("/")
        self.where = f"{self.host}{self.http_path}"
        self.timeout = timeout
        self._hostname = parsed.hostname or parsed.netloc
        self._port = parsed.port or 443
        self._token = token
        self._credentials_provider = credentials_provider
        self._connection_uri = connection_uri
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="esm-warehouse")
        self._interactive = ThreadPoolExecutor(max_workers=interactive_workers, thread_name_prefix="esm-warehouse-ask")
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._sdk_config: Any = None
        self._closed = False

    def __repr__(self) -> str:
        return f"DatabricksSQLSource({self.where!r})"

    # -- AuditSource -------------------------------------------------------------------------

    async def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._interactive.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._close_connections)

    # -- running statements ------------------------------------------------------------------

    async def _run(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Run one statement on a sync worker thread, bounded by the query timeout."""
        return await self._run_on(self._executor, sql, params)

    async def _run_interactive(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Run one statement someone is waiting for on the interactive lane."""
        return await self._run_on(self._interactive, sql, params)

    async def _run_on(self, executor: ThreadPoolExecutor, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self._closed:
            raise SourceError(f"SQL warehouse {self.where}: the source is closed")
        call = _Call()
        future = executor.submit(self._query, sql, _bindable(params), call)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.timeout)
        except asyncio.TimeoutError:
            self._abandon(call, future)
            raise SourceError(
                f"query on SQL warehouse {self.where} timed out after {self.timeout:g} s (it was cancelled)"
            ) from None
        except asyncio.CancelledError:
            self._abandon(call, future)
            raise

    def _abandon(self, call: _Call, future: Future) -> None:
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody awaits it any more
        threading.Thread(target=call.cancel, name="esm-warehouse-cancel", daemon=True).start()

    def _query(self, sql: str, params: dict[str, Any], call: _Call) -> list[dict[str, Any]]:
        from databricks.sql.exc import ServerOperationError

        try:
            connection = self._connection()
            with connection.cursor() as cursor:
                call.cursor = cursor
                cursor.execute(sql, params)
                description = cursor.description or []
                rows = cursor.fetchall()
        except SourceError:
            raise
        except Exception as exc:
            if not isinstance(exc, ServerOperationError):  # the transport may be broken: reconnect next time
                self._drop_connection()
            if call.abandoned:
                raise SourceError(f"query on SQL warehouse {self.where} was cancelled after its timeout") from None
            raise self._error(exc) from None
        finally:
            call.cursor = None
        names = [d[0] for d in description]
        kinds = [str(d[1] or "").lower() for d in description]
        return [{name: _value(value, kind) for name, kind, value in zip(names, kinds, row)} for row in rows]

    # -- connections (one per worker thread) ---------------------------------------------------

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _connect(self) -> Any:
        from databricks import sql

        kwargs: dict[str, Any] = {
            "server_hostname": self._hostname,
            "http_path": self.http_path,
            "_port": self._port,
            # the warehouse session: UTC timestamps; a server-side bound for abandoned statements
            "session_configuration": {"TIMEZONE": "UTC", "STATEMENT_TIMEOUT": str(math.ceil(self.timeout) + 5)},
            "enable_telemetry": False,
            "user_agent_entry": "esm-bot",
            "_socket_timeout": self.timeout + 30,
            "_retry_stop_after_attempts_duration": max(1.0, self.timeout),
        }
        if self._connection_uri:
            kwargs["_connection_uri"] = self._connection_uri
        if self._token:
            kwargs["access_token"] = self._token
        else:
            kwargs["credentials_provider"] = self._credentials_provider or self._sdk_credentials
        try:
            return sql.connect(**kwargs)
        except Exception as exc:
            raise self._error(exc) from None

    def _sdk_credentials(self) -> Callable[[], dict[str, str]]:
        """The SDK's unified auth as the connector's credentials_provider: Config.authenticate
        returns fresh headers on every call (and refreshes OAuth tokens itself)."""
        with self._lock:
            if self._sdk_config is None:
                from databricks.sdk.config import Config

                self._sdk_config = Config(
                    host=self.host, retry_timeout_seconds=max(1, int(self.timeout)), http_timeout_seconds=self.timeout
                )
            return self._sdk_config.authenticate

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is None:
            return
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)
        _quiet_close(connection)

    def _close_connections(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            _quiet_close(connection)

    # -- errors --------------------------------------------------------------------------------

    def _error(self, exc: BaseException) -> SourceError:
        text = self._redact(_describe(exc))
        lowered = text.lower()
        code = _http_code(exc)
        if code in (401, 403) or any(marker in lowered for marker in _AUTH_MARKERS):
            why = f"refused the credentials (HTTP {code})" if code else "refused the credentials"
            return SourceError(f"SQL warehouse {self.where} {why}: {text}")
        if code in (429, 503) or any(marker in lowered for marker in _STOPPED_MARKERS):
            return SourceError(f"SQL warehouse {self.where} is stopped or still starting: {text}")
        if any(marker in lowered for marker in _TIMEOUT_MARKERS):
            return SourceError(f"query on SQL warehouse {self.where} timed out: {text}")
        if type(exc).__name__ in ("ServerOperationError", "DatabaseError", "ProgrammingError"):
            return SourceError(f"SQL warehouse {self.where} rejected the query: {text}")
        return SourceError(f"SQL warehouse {self.where} is unreachable or failed: {text}")

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "****") if self._token else text


# ---------------------------------------------------------------- helpers


def _bindable(params: dict[str, Any]) -> dict[str, Any]:
    """Timestamps travel as UTC (a zone-less one is taken as UTC): the warehouse parses the text
    `YYYY-MM-DD HH:MM:SS+00:00` the connector renders for a TIMESTAMP parameter."""
    bound = {}
    for name, value in params.items():
        if isinstance(value, datetime):
            value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        bound[name] = value
    return bound


def _value(value: Any, kind: str) -> Any:
    """One cell in DuckDBSource's shape: aware UTC datetimes, dicts for maps and structs."""
    if value is None:
        return None
    if kind.startswith("timestamp") and isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if kind.startswith(_COMPLEX):
        if isinstance(value, (str, bytes)):
            try:
                value = json.loads(value)
            except ValueError:
                return value  # leave it to the row parser, which reports the row and skips it
        if kind.startswith("map") and isinstance(value, list):
            return {str(k): v for k, v in value}  # Arrow-native maps come as lists of pairs
    return value


def _context(exc: BaseException) -> dict[str, Any]:
    """The connector's errors carry a context dict (http-code, error-message, ...)."""
    context = getattr(exc, "context", None)
    return context if isinstance(context, dict) else {}


def _describe(exc: BaseException) -> str:
    message = str(getattr(exc, "message", None) or (exc.args[0] if exc.args else "") or "")
    detail = str(_context(exc).get("error-message") or "")
    text = message.strip() if not detail.strip() or detail.strip() in message else f"{message.strip()} {detail.strip()}"
    return (text or type(exc).__name__).splitlines()[0][:500]


def _http_code(exc: BaseException) -> int | None:
    code = _context(exc).get("http-code")
    return code if isinstance(code, int) else None


def _quiet_close(connection: Any) -> None:
    try:
        connection.close()
    except Exception as exc:
        log.debug("closing a warehouse connection failed: %s", exc)


__all__ = ["DatabricksSQLSource", "warehouse_http_path"]
