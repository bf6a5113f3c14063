"""The real bot (`python -m bot.cli serve`) as a child process against the local emulators, with
an embedded DuckDB audit file and a SQLite state file in its own folder: the one bot-process
harness of the reliability suite (tests/reliability/harness.py) and the benchmarks
(bench/harness.py). Everything listens on 127.0.0.1 only.

The lifecycle is synchronous (`start`, `kill`, `stop`, `webhook`); callers whose emulators run on
their own event loop use `start_async`, `stop_async` and `webhook_async`, which keep that loop
free while the bot starts and stops.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import requests

from bot.adapters.duckdb_source import DuckDBSource
from emulators.slack_signing import signed_form_headers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class BotIdentity:
    """What a harness configures its bots with: the findings channel, the responders, the known
    secret values (every log can be searched for them) and the alert its webhooks carry."""

    channel: str
    slack_token: str
    signing_secret: str
    webhook_user: str
    webhook_password: str
    databricks_token: str
    responders: str
    alert: Mapping[str, Any] = field(default_factory=dict)

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.slack_token, self.signing_secret, self.webhook_password, self.databricks_token)


@dataclass
class LogScan:
    """A tally of bot logs searched for the known secret values."""

    files: int = 0
    bytes: int = 0
    found: int = 0


class BotProcess:
    """`python -m bot.cli serve` in its own process (and session), on a fresh loopback port per
    start; its output goes to one log file per start in `folder`.

    `env` adds to (or overrides) the environment built from `identity` and the emulators' URLs.
    With `log_scan`, every `stop` searches the logs written since the last scan for the known
    secret values, adds to the tally and fails if one is there. Subclasses change the command
    by overriding `command`."""

    def __init__(self, folder: Path, identity: BotIdentity, *, slack_api_url: str, databricks_host: str,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None, log_scan: LogScan | None = None,
                 stop_timeout: float = 15.0):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.identity = identity
        self.audit_path = folder / "audit.duckdb"
        self.state_path = folder / "state.sqlite3"
        self.env: dict[str, str] = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder),
            "DATABRICKS_CONFIG_FILE": str(folder / "no-databrickscfg"),
            "SLACK_BOT_TOKEN": identity.slack_token, "SLACK_SIGNING_SECRET": identity.signing_secret,
            "ESM_SLACK_CHANNEL": identity.channel, "SLACK_API_URL": slack_api_url,
            "DATABRICKS_HOST": databricks_host, "DATABRICKS_TOKEN": identity.databricks_token,
            "ESM_AUDIT_SOURCE": f"duckdb:{self.audit_path}", "ESM_STATE_PATH": str(self.state_path),
            "ESM_WEBHOOK_USER": identity.webhook_user, "ESM_WEBHOOK_PASSWORD": identity.webhook_password,
            "ESM_SLACK_POST_INTERVAL": "0", "ESM_RESPONDERS": identity.responders, "ESM_LOG_LEVEL": "INFO",
            **(env or {}),
        }
        self.alert_body = json.dumps(identity.alert).encode()
        self.cwd = cwd
        self.log_scan = log_scan
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.starts = 0
        self.kills = 0
        self.logs: list[Path] = []
        self.logs_scanned: list[Path] = []

    # -- lifecycle

    def command(self) -> list[str]:
        """The program and arguments before `serve ...`."""
        return [sys.executable, "-m", "bot.cli"]

    def start(self, timeout: float = 60) -> "BotProcess":
        """Start the bot on a new port and wait until it answers /healthz."""
        port = free_port()
        self.starts += 1
        log_path = self.folder / f"bot-{self.starts}.log"
        self.logs.append(log_path)
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*self.command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the bot exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.healthy(timeout=1):
                return self
            time.sleep(0.05)
        raise AssertionError(f"the bot did not answer /healthz within {timeout:g}s:\n{self.log_tail()}")

    async def start_async(self, timeout: float = 60) -> "BotProcess":
        """`start` without blocking the caller's event loop (where its emulators may run)."""
        return await asyncio.to_thread(self.start, timeout)

    def kill(self) -> None:
        """SIGKILL: no clean-up, no flush, exactly like a host losing the process."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1
        self.proc = None

    def stop(self) -> None:
        """A graceful stop (SIGTERM; SIGKILL after `stop_timeout`), then, with a `log_scan`, the
        search of this bot's logs for the known secrets. Stopping a stopped bot is harmless."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self.proc = None
        if self.log_scan is not None:
            self.assert_no_secret_in_logs()

    async def stop_async(self) -> None:
        await asyncio.to_thread(self.stop)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- logs

    def assert_no_secret_in_logs(self) -> None:
        """Search every log since the last scan for the identity's secrets (tallied in `log_scan`)."""
        tally = self.log_scan if self.log_scan is not None else LogScan()
        for path in self.logs:
            data = path.read_bytes() if path.exists() else b""
            tally.files += 1
            tally.bytes += len(data)
            leaked = [s for s in self.identity.secrets if s.encode() in data]
            tally.found += len(leaked)
            assert not leaked, f"{path} contains {len(leaked)} known secret value(s)"
        self.logs_scanned, self.logs = list(self.logs), []

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- requests

    def healthy(self, timeout: float = 2) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=timeout).status_code == 200
        except requests.RequestException:
            return False

    def webhook_headers(self, password: str | None = None) -> dict[str, str]:
        """Basic auth (the identity's, or another password) and the JSON content type."""
        user = self.identity.webhook_user
        password = self.identity.webhook_password if password is None else password
        return {"Authorization": aiohttp.encode_basic_auth(user, password), "Content-Type": "application/json"}

    def webhook(self, password: str | None = None) -> int:
        """The Databricks SQL alert webhook; returns the HTTP status."""
        response = requests.post(self.url + "/webhooks/dbsql", data=self.alert_body,
                                 headers=self.webhook_headers(password), timeout=10)
        return response.status_code

    async def webhook_async(self, session: aiohttp.ClientSession | None = None, password: str | None = None) -> int:
        """`webhook` on the caller's event loop, in `session` (or a session of its own)."""
        if session is None:
            async with aiohttp.ClientSession() as own:
                return await self.webhook_async(own, password)
        async with session.post(self.url + "/webhooks/dbsql", data=self.alert_body,
                                headers=self.webhook_headers(password)) as response:
            await response.read()
            return response.status

    def slack_request(self, body: bytes, headers: dict[str, str] | None = None, *, secret: str | None = None,
                      timestamp: int | None = None, signed: bool = True) -> requests.Response:
        """POST /slack/events signed as Slack signs it (or with another secret or time, or unsigned)."""
        secret = self.identity.signing_secret if secret is None else secret
        base = (signed_form_headers(secret, body, timestamp) if signed
                else {"Content-Type": "application/x-www-form-urlencoded"})
        return requests.post(self.url + "/slack/events", data=body, headers={**base, **(headers or {})}, timeout=15)

    # -- the audit file and the state store, from outside

    def source(self) -> DuckDBSource:
        """The embedded audit file (load it while no bot holds it open)."""
        return DuckDBSource(str(self.audit_path))

    def seed(self, rows: list[dict[str, Any]]) -> int:
        """Insert audit rows (only while no bot process has the file open); returns inserted."""
        return self.source().insert_rows(rows)

    @property
    def state_url(self) -> str | None:
        """ESM_STATE_URL when the bot keeps its state in PostgreSQL; None for the SQLite file."""
        return self.env.get("ESM_STATE_URL") or None

    def state(self) -> Any:
        """A connection to the bot's state store: read-only SQLite, or PostgreSQL (ESM_STATE_URL).
        Queries use `?` placeholders either way (see `query`)."""
        if self.state_url:
            import psycopg

            return _QmarkConnection(psycopg.connect(self.state_url, autocommit=True, connect_timeout=10))
        return sqlite3.connect(f"file:{self.state_path}?mode=ro", uri=True, timeout=10)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of a read-only query; none before the store exists."""
        if not self.state_url and not self.state_path.exists():
            return []
        con = self.state()
        try:
            return list(con.execute(sql, params).fetchall())
        except Exception as exc:  # sqlite3's or psycopg's "no such table" before the first start
            if "no such table" in str(exc) or "does not exist" in str(exc):
                return []
            raise
        finally:
            con.close()

    def scalar(self, sql: str, *params: Any) -> Any:
        rows = self.query(sql, *params)
        return rows[0][0] if rows else None

    def stored_events(self) -> int:
        return self.scalar("SELECT count(*) FROM events") or 0

    def outbox_pending(self) -> int:
        return self.scalar("SELECT count(*) FROM outbox WHERE state = 'pending'") or 0

    def watermark(self) -> datetime | None:
        text = self.scalar("SELECT value FROM meta WHERE key = 'watermark'")
        return None if text is None else datetime.fromisoformat(text)


class _QmarkConnection:
    """A psycopg connection that takes the `?` placeholders the SQLite queries use."""

    def __init__(self, conn: Any):
        self._conn = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self._conn.execute(sql.replace("?", "%s"), params)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "_QmarkConnection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._conn.close()
