"""What every scenario needs: the emulators (in this process), the bot (a separate process:
the shared harness of emulators/botprocess.py), seed rows (bot/cli/audit_rows.py), and read-only
views of the bot's state. Everything listens on 127.0.0.1 only."""
from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bot.cli.audit_rows import capsule8_row, minutes_ago, notebook_command_row
from emulators import botprocess
from emulators.botprocess import BotIdentity
from emulators.databricks import DatabricksEmulator
from emulators.slack import SlackEmulator

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "C0BENCH"
SLACK_TOKEN = "xoxb-bench-token-3c9d"
SIGNING_SECRET = "bench-signing-secret-81fe"
WEBHOOK_USER, WEBHOOK_PASSWORD = "databricks", "bench-webhook-password-77aa"
DBX_TOKEN = "dapi-bench-token-51b0"
RESPONDER = "U0RESPONDER"

# Twelve detections of the shipped catalogue (Heartbeat excluded: it is never a finding).
DETECTIONS = (
    "Container Escape via Kernel Exploitation", "Userland Container Escape", "New File Executed in Container",
    "Privileged Container Launched", "Processor-Level Protections Disabled", "AppArmor Disabled In Kernel",
    "AppArmor Profile Modified", "Boot Files Modified", "Root Certificate Store Modified",
    "Kernel Module Loaded", "Suspicious Interactive Shell", "User Command Logging Evasion",
)

ALERT_PAYLOAD = {
    "event": "alert_state_change",
    "url_base": "https://dbc-bench.cloud.databricks.com",
    "alert": {
        "title": "ESM kernel events", "description": "Capsule8 detections",
        "alert": {"id": "bench-alert", "name": "ESM kernel events",
                  "owner": {"id": 1, "name": "Security", "email": "sec@example.com"},
                  "query_text": "SELECT 1", "warehouse_id": "w1"},
    },
}
IDENTITY = BotIdentity(channel=CHANNEL, slack_token=SLACK_TOKEN, signing_secret=SIGNING_SECRET,
                       webhook_user=WEBHOOK_USER, webhook_password=WEBHOOK_PASSWORD, databricks_token=DBX_TOKEN,
                       responders=RESPONDER, alert=ALERT_PAYLOAD)
# request params of every bench Capsule8 row (a container process loading a kernel module)
PROCESS = {"containerId": "8c1f5e0a9b7d", "processLineage": "python3(1) > bash(2) > insmod(3)",
           "commandLine": "insmod ./x.ko"}


# -- emulators -------------------------------------------------------------------------------


class TimedSlack(SlackEmulator):
    """The Slack emulator, plus: when each chat.postMessage and response_url post arrived, and a
    ts index so thread replies do not scan the whole channel (the stock emulator's `_find` is a
    linear scan, which turns a 10,000-message storm quadratic inside the *emulator*)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.post_times: list[float] = []
        self.response_times: dict[str, float] = {}
        self._index: dict[str, tuple[int, dict[str, dict[str, Any]]]] = {}

    async def _handle_api(self, request):  # type: ignore[override]
        if request.match_info["method"] == "chat.postMessage":
            self.post_times.append(time.perf_counter())
        return await super()._handle_api(request)

    async def _handle_response_url(self, request):  # type: ignore[override]
        self.response_times.setdefault(request.match_info["rid"], time.perf_counter())
        return await super()._handle_response_url(request)

    def _find(self, channel: str, ts: str) -> dict[str, Any] | None:
        messages = self._messages.get(channel, [])
        done, index = self._index.get(channel, (0, {}))
        if done > len(messages):  # something was deleted: rebuild
            done, index = 0, {}
        for message in messages[done:]:
            index[message["ts"]] = message
        self._index[channel] = (len(messages), index)
        return index.get(ts)

    def api_calls(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for call in self.calls:
            counts[call.method] = counts.get(call.method, 0) + 1
        return counts


def cluster_id(n: int) -> str:
    return f"0101-000000-b{n:05d}"


def instances_of(n: int) -> tuple[str, str]:
    """(driver, executor) instance ids of bench cluster n."""
    return f"i-0d{n:015d}", f"i-0e{n:015d}"


async def start_emulators(clusters: int = 200) -> tuple[TimedSlack, DatabricksEmulator]:
    slack = await TimedSlack(token=SLACK_TOKEN).start()
    dbx = await DatabricksEmulator(token=DBX_TOKEN).start()
    for n in range(clusters):
        driver, executor = instances_of(n)
        dbx.add_cluster(cluster_id(n), name=f"bench-cluster-{n:03d}", creator=f"owner{n % 17}@example.com",
                        data_security_mode="USER_ISOLATION", policy_id="POLBENCH",
                        driver_instance_id=driver, executor_instance_ids=[executor])
    return slack, dbx


async def stop_emulators(slack: SlackEmulator, dbx: DatabricksEmulator) -> None:
    await slack.stop()
    await dbx.stop()


# -- seed rows -------------------------------------------------------------------------------


def storm_rows(events: int, clusters: int = 200, detections: int = 12, prefix: str = "storm",
               spread: timedelta = timedelta(minutes=30)) -> list[dict[str, Any]]:
    """`events` new Capsule8 rows spread evenly over clusters x detections (every pair gets
    events/(clusters*detections) of them, alternating driver and executor) in the last `spread`."""
    now = datetime.now(timezone.utc) - timedelta(seconds=5)
    step = spread / max(events, 1)
    rows = []
    for i in range(events):
        n = i % clusters
        detection = DETECTIONS[(i // clusters) % detections]
        instance = instances_of(n)[(i // (clusters * detections)) % 2]
        rows.append(capsule8_row(f"{prefix}-{i:07d}", detection, instance, now - spread + step * i, **PROCESS))
    return rows


def notebook_rows(clusters: int = 200, per_cluster: int = 2) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc)
    return [notebook_command_row(f"nb-{n}-{k}", cluster_id(n), minutes_ago(20 + k, now), "dana@example.com", "%sh ls /tmp")
            for n in range(clusters) for k in range(per_cluster)]


def expected_groups(events: int, clusters: int = 200, detections: int = 12) -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for i in range(events):
        key = (i % clusters, (i // clusters) % detections)
        counts[key] = counts.get(key, 0) + 1
    return counts


# -- the bot process -------------------------------------------------------------------------

_SYNC_DONE = re.compile(r"sync done: SyncReport\((.*)\)")
_SWEEP = re.compile(r"late-arrival sweep: SweepReport\((.*)\)")


STATE_URL_ENV = "ESM_BENCH_STATE_URL"  # set by `python -m bench --state-url`: PostgreSQL instead of SQLite


def fresh_schema(url: str) -> str:
    """A new schema on that PostgreSQL server; the URL with it first on the search path."""
    import uuid
    from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')  # the name is ours: letters, digits and _
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"] + [("options", f"-csearch_path={schema}")]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, quote_via=quote), parts.fragment))


class BotProcess(botprocess.BotProcess):
    """The shared bot process (emulators/botprocess.py) with the bench's identity. With
    `counted=True` it runs through bench/counted_bot.py, which only adds a counter of
    audit-source queries (written at exit); with `profile_to`, under cProfile as well."""

    def __init__(self, workdir: Path, slack_api_url: str, dbx_host: str, extra_env: dict[str, str],
                 counted: bool = False, profile_to: Path | None = None):
        if os.environ.get(STATE_URL_ENV):  # python -m bench --state-url: a fresh schema per bot
            extra_env = {"ESM_STATE_URL": fresh_schema(os.environ[STATE_URL_ENV]), **extra_env}
        self.counts_path = workdir / "query-counts.json"
        self.counted = counted
        self.profile_to = profile_to
        super().__init__(workdir, IDENTITY, slack_api_url=slack_api_url, databricks_host=dbx_host, cwd=ROOT,
                         stop_timeout=30, env={"HOME": os.environ.get("HOME", "/tmp"), "ESM_DATABRICKS_TIMEOUT": "10",
                                               "BENCH_QUERY_COUNTS": str(self.counts_path), **extra_env})

    def command(self) -> list[str]:
        if self.profile_to is not None:
            return [sys.executable, "-m", "cProfile", "-o", str(self.profile_to), "-m", "bench.counted_bot"]
        if self.counted:
            return [sys.executable, "-m", "bench.counted_bot"]
        return super().command()

    def proc_status(self, field: str) -> int | None:
        """A /proc/<pid>/status field in kB (VmHWM: peak RSS, VmRSS: now)."""
        if self.proc is None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the bot process so far."""
        if self.proc is None:
            return None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def sync_reports(self) -> list[dict[str, Any]]:
        """The bot's own `sync done: SyncReport(...)` log lines, parsed."""
        reports = []
        for match in _SYNC_DONE.finditer(self.log_text()):
            fields = {}
            for part in re.finditer(r"(\w+)=('[^']*'|None|[\d.]+)", match.group(1)):
                value = part.group(2)
                fields[part.group(1)] = None if value == "None" else value.strip("'") if value.startswith("'") else float(value)
            reports.append(fields)
        return reports

    def sweep_reports(self) -> list[dict[str, float]]:
        """The bot's `late-arrival sweep: SweepReport(...)` log lines: what each sweep read and took."""
        return [{name: float(m.group(1)) for name in ("ids_read", "rows_read", "late_rows", "seconds")
                 if (m := re.search(rf"\b{name}=([\d.]+)", line.group(1)))}
                for line in _SWEEP.finditer(self.log_text())]

    def query_counts(self) -> dict[str, int]:
        try:
            return json.loads(self.counts_path.read_text())
        except (OSError, ValueError):
            return {}


def state_progress(bot: BotProcess) -> dict[str, int]:
    """Counts from the bot's state store (read-only); zeros before its first sync."""
    try:
        with bot.state() as db:
            return {
                "events": db.execute("SELECT count(*) FROM events").fetchone()[0],
                "findings": db.execute("SELECT count(*) FROM findings").fetchone()[0],
                "posted": db.execute("SELECT count(*) FROM findings WHERE ts IS NOT NULL").fetchone()[0],
                "pending": db.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0],
                "dead": db.execute("SELECT count(*) FROM outbox WHERE state = 'dead'").fetchone()[0],
                "outbox": db.execute("SELECT count(*) FROM outbox").fetchone()[0],
            }
    except Exception as exc:  # before the first sync there are no tables (SQLite or PostgreSQL)
        if isinstance(exc, sqlite3.Error) or "does not exist" in str(exc):
            return {"events": 0, "findings": 0, "posted": 0, "pending": 0, "dead": 0, "outbox": 0}
        raise


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1))  # nearest rank
    return ordered[rank]
