"""Settings: one frozen value built from an injected environment mapping.

This is the only module that reads the environment (the CLI passes `os.environ` in). A missing
or malformed setting raises ConfigError with one line naming the variable; secrets are wrapped
in `Secret`, whose repr and str never show the value.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal

from bot.core.deploy_plan import Schedule
from bot.core.digest import DailyAt, parse_daily_at
from bot.core.workspaces import NO_WORKSPACES, Workspaces, WorkspacesError, parse_workspaces

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class Secret:
    """A value that must never reach a log, an error or a repr."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str, name: str = "duration") -> timedelta:
    """`30s`, `10m`, `24h`, `7d` (and `0`)."""
    if (text or "").strip() == "0":
        return timedelta(0)
    match = _DURATION.match(text or "")
    if not match:
        raise ConfigError(f"{name}: {text!r} is not a duration like 30s, 10m, 24h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class Settings:
    slack_bot_token: Secret | None = None
    slack_signing_secret: Secret | None = None
    slack_app_token: Secret | None = None
    slack_channel: str | None = None
    slack_api_url: str = "https://slack.com/api/"
    databricks_host: str | None = None
    databricks_token: Secret | None = None
    workspace_url: str | None = None
    workspaces_file: Path | None = None  # several workspaces: hosts, credentials, channel routes
    workspaces: Workspaces = NO_WORKSPACES
    workspace_tokens: Mapping[str, Secret] = field(default_factory=dict)
    audit_source: str = "duckdb:esm-audit.duckdb"
    warehouse_http_path: str | None = None  # ESM_AUDIT_SOURCE=databricks: the SQL warehouse's HTTP path
    warehouse_uri: str | None = None  # test-only: a local Thrift emulator's URI (the connector's _connection_uri)
    warehouse_timeout: float = 60.0  # seconds a warehouse statement may take
    state_path: str = "esm-state.sqlite3"
    state_url: Secret | None = None  # ESM_STATE_URL postgresql://… (replicas); takes precedence over state_path
    outbox_lease: timedelta = timedelta(seconds=30)  # PostgreSQL: a dead replica's outbox threads pass on after this
    webhook_user: str | None = None
    webhook_password: Secret | None = None
    responders: tuple[str, ...] = ()
    initial_lookback: timedelta = timedelta(hours=24)
    sync_overlap: timedelta = timedelta(minutes=10)
    # never blind (#11): clocks that run ahead, rows that land late, failures that last, silent sensors
    clock_skew: timedelta = timedelta(minutes=2)  # rows dated later than now + this never move the watermark
    late_window: timedelta = timedelta(hours=24)  # the late-arrival sweep re-reads this far back
    late_sweep_interval: timedelta = timedelta(minutes=15)  # at most one sweep this often; 0: every sync
    degraded_after: timedelta = timedelta(minutes=5)  # failing this long: /readyz 503 and a channel message
    heartbeat_gap: timedelta = timedelta(minutes=30)  # a running host's sensor silent this long is a finding
    group_window: timedelta = timedelta(minutes=60)
    context_ttl: timedelta = timedelta(minutes=10)
    commands_window: timedelta = timedelta(minutes=30)
    thread_replies: int = 1  # a finding's first repeat in full in its thread; later ones in digests
    message_style: Literal["compact", "full"] = "compact"  # compact parent + details reply, or one long message
    slack_post_interval: float = 1.0  # seconds between posts: Slack allows about 1 message/s per channel
    storm_budget: timedelta = timedelta(seconds=60)  # a sync's posts per channel beyond this: one message per detection
    poll_interval: timedelta | None = None  # off: syncs run only when a webhook (or the CLI) asks
    databricks_timeout: float = 10.0
    rules_dir: Path = RULES_DIR
    dry_run: bool = False
    log_level: str = "INFO"
    log_format: str = "text"  # ESM_LOG_FORMAT: text or json (one JSON object per line)
    digest_at: DailyAt | None = None  # ESM_DIGEST_AT: the daily digest's time and zone; None: off
    host: str = "127.0.0.1"
    port: int = 8080
    warehouse_id: str | None = None  # esm-bot deploy: the SQL warehouse its queries and alerts run on
    public_url: str | None = None  # esm-bot deploy: the bot's public base URL (the webhook target)
    # server hardening (#11)
    header_timeout: float = 10.0  # seconds a connection has to send a request's complete headers (slowloris)
    max_connections: int = 512  # open HTTP connections at most; at the limit the slowest-to-send-headers makes room
    admin_token: Secret | None = None  # ESM_ADMIN_TOKEN: `Authorization: Bearer …` shows /readyz's details
    state_lakebase_instance: str | None = None  # ESM_STATE_LAKEBASE_INSTANCE: the state URL's password from the SDK
    # Slack-side hardening (#11)
    readers: tuple[str, ...] = ()  # ESM_READERS: who may read suppressions (and, when set, /esm recent and status)
    slack_team_id: str | None = None  # ESM_SLACK_TEAM_ID: Slack requests from any other workspace are refused
    slack_enterprise_id: str | None = None  # ESM_SLACK_ENTERPRISE_ID: the same for the Enterprise Grid org
    # field truth (#13): esm-bot deploy's alerts run on their own schedule (AlertsV2, or a job on legacy)
    alert_schedule: timedelta = timedelta(minutes=10)  # how often each alert runs; divides an hour

    @property
    def duckdb_path(self) -> str | None:
        return self.audit_source.split(":", 1)[1] if self.audit_source.startswith("duckdb:") else None

    def secret(self, name: str) -> str:
        """A required secret's value; a ConfigError naming its variable when it is unset."""
        value = getattr(self, name)
        if not isinstance(value, Secret):
            raise ConfigError(f"{ENV_NAMES[name]} is required for this command but is not set")
        return value.reveal()

    def secret_values(self) -> list[str]:
        """Every secret value this configuration holds, for masking in logs and errors: the tokens
        and passwords, the state URL's password (as written and decoded) and each workspace's token."""
        values = [s.reveal() for s in (self.slack_bot_token, self.slack_signing_secret, self.slack_app_token,
                                        self.webhook_password, self.databricks_token, self.admin_token) if s is not None]
        if self.state_url is not None:
            values += url_password_forms(self.state_url.reveal())
        values += [token.reveal() for token in self.workspace_tokens.values()]
        return [v for v in dict.fromkeys(values) if len(v) >= 4]

    def require(self, *names: str) -> "Settings":
        """Fail with the environment variable's name when a setting a command needs is unset."""
        for name in names:
            if getattr(self, name) in (None, "", ()):
                raise ConfigError(f"{ENV_NAMES[name]} is required for this command but is not set")
        return self


ENV_NAMES = {
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "slack_signing_secret": "SLACK_SIGNING_SECRET",
    "slack_app_token": "SLACK_APP_TOKEN",
    "slack_channel": "ESM_SLACK_CHANNEL",
    "slack_api_url": "SLACK_API_URL",
    "databricks_host": "DATABRICKS_HOST",
    "databricks_token": "DATABRICKS_TOKEN",
    "workspace_url": "ESM_WORKSPACE_URL",
    "workspaces_file": "ESM_WORKSPACES_FILE",
    "audit_source": "ESM_AUDIT_SOURCE",
    "warehouse_http_path": "ESM_WAREHOUSE_HTTP_PATH",
    "warehouse_uri": "ESM_WAREHOUSE_URI",
    "warehouse_timeout": "ESM_WAREHOUSE_TIMEOUT",
    "state_path": "ESM_STATE_PATH",
    "state_url": "ESM_STATE_URL",
    "outbox_lease": "ESM_OUTBOX_LEASE",
    "webhook_user": "ESM_WEBHOOK_USER",
    "webhook_password": "ESM_WEBHOOK_PASSWORD",
    "responders": "ESM_RESPONDERS",
    "initial_lookback": "ESM_INITIAL_LOOKBACK",
    "sync_overlap": "ESM_SYNC_OVERLAP",
    "clock_skew": "ESM_CLOCK_SKEW",
    "late_window": "ESM_LATE_WINDOW",
    "late_sweep_interval": "ESM_LATE_SWEEP_INTERVAL",
    "degraded_after": "ESM_DEGRADED_AFTER",
    "heartbeat_gap": "ESM_HEARTBEAT_GAP",
    "group_window": "ESM_GROUP_WINDOW",
    "storm_budget": "ESM_STORM_BUDGET",
    "context_ttl": "ESM_CONTEXT_TTL",
    "commands_window": "ESM_COMMANDS_WINDOW",
    "thread_replies": "ESM_THREAD_REPLIES",
    "message_style": "ESM_MESSAGE_STYLE",
    "slack_post_interval": "ESM_SLACK_POST_INTERVAL",
    "poll_interval": "ESM_POLL_INTERVAL",
    "databricks_timeout": "ESM_DATABRICKS_TIMEOUT",
    "rules_dir": "ESM_RULES_DIR",
    "dry_run": "ESM_DRY_RUN",
    "log_level": "ESM_LOG_LEVEL",
    "log_format": "ESM_LOG_FORMAT",
    "digest_at": "ESM_DIGEST_AT",
    "host": "ESM_HOST",
    "port": "ESM_PORT",
    "warehouse_id": "ESM_WAREHOUSE_ID",
    "public_url": "ESM_PUBLIC_URL",
    # server hardening (#11)
    "header_timeout": "ESM_HEADER_TIMEOUT",
    "max_connections": "ESM_MAX_CONNECTIONS",
    "admin_token": "ESM_ADMIN_TOKEN",
    "state_lakebase_instance": "ESM_STATE_LAKEBASE_INSTANCE",
    # Slack-side hardening (#11)
    "readers": "ESM_READERS",
    "slack_team_id": "ESM_SLACK_TEAM_ID",
    "slack_enterprise_id": "ESM_SLACK_ENTERPRISE_ID",
    "alert_schedule": "ESM_ALERT_SCHEDULE",
}

_SECRETS = {"slack_bot_token", "slack_signing_secret", "slack_app_token", "webhook_password", "databricks_token",
            "admin_token"}
_DURATIONS = {"initial_lookback", "sync_overlap", "group_window", "context_ttl", "commands_window", "poll_interval",
              "outbox_lease", "clock_skew", "late_window", "late_sweep_interval", "degraded_after", "heartbeat_gap", "storm_budget"}
_SLACK_ID = re.compile(r"^[UWS][A-Z0-9]{2,}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
# Slack-side hardening (#11)
_TEAM_ID = re.compile(r"^T[A-Z0-9]{2,31}$")
_ENTERPRISE_ID = re.compile(r"^E[A-Z0-9]{2,31}$")


def _parse_bool(text: str, name: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: {text!r} is not a boolean (true/false)")


def _parse_int(text: str, name: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: {value} is outside {low}..{high}")
    return value


def _parse_float(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}: must be greater than 0")
    return value


def _parse_non_negative(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a number") from None
    if not 0 <= value <= 60:
        raise ConfigError(f"{name}: {value:g} is outside 0..60 seconds")
    return value


def _parse_responders(text: str, name: str) -> tuple[str, ...]:
    ids = tuple(part.strip() for part in re.split(r"[,\s]+", text) if part.strip())
    for slack_id in ids:
        if not _SLACK_ID.match(slack_id):
            raise ConfigError(f"{name}: {slack_id!r} is not a Slack user id (U…/W…) or user-group id (S…)")
    return ids


def _parse_url(text: str, name: str) -> str:
    if not re.match(r"^https?://[^\s/]+", text):
        raise ConfigError(f"{name}: {text!r} is not an http(s) URL")
    return text


def _parse_source(text: str, name: str) -> str:
    if text == "databricks" or (text.startswith("duckdb:") and len(text) > len("duckdb:")):
        return text
    raise ConfigError(f"{name}: {text!r} must be 'duckdb:<path>' or 'databricks'")


def _parse_channel(text: str, name: str) -> str:
    if not _CHANNEL_ID.match(text):
        raise ConfigError(f"{name}: {text!r} is not a Slack channel id (C…/G…)")
    return text


def url_password_forms(url: str) -> list[str]:
    """The password of a `scheme://user:password@host/…` URL (or its `password=` parameter) in
    every form an error message may quote it: as written, and percent-decoded. Never fails,
    whatever the URL (an `@` or a space in the password, a malformed escape, no password)."""
    from urllib.parse import unquote, unquote_plus

    found: list[str] = []
    _, sep, rest = url.partition("://")
    colon = rest.find(":")
    if sep and colon != -1:
        # the password runs from the first colon to one of the @ after it (the last one, unless the
        # query holds an @ too): each candidate is masked, the longest first
        found += [rest[colon + 1:at] for at in range(colon + 1, len(rest)) if rest[at] == "@"]
    found += [m.group(2) for m in re.finditer(r"(?i)(password\s*=\s*)('[^']*'|[^&\s]*)", url) if m.group(2)]
    forms: list[str] = []
    for value in sorted(found, key=len, reverse=True):
        for form in (value, value.strip("'"), unquote(value), unquote_plus(value)):
            if form and form not in forms:
                forms.append(form)
    return forms


def _parse_slack_id(pattern: re.Pattern[str], what: str) -> Callable[[str, str], str]:
    def parse(text: str, name: str) -> str:
        if not pattern.match(text):
            raise ConfigError(f"{name}: {text[:40]!r} is not a Slack {what}")
        return text

    return parse


def _parse_state_url(text: str, name: str) -> Secret:
    """A PostgreSQL URL; it holds a password, so an error never repeats it."""
    if not re.match(r"^postgres(ql)?://[^\s/]", text):
        raise ConfigError(f"{name}: must be a postgresql://user:password@host:port/database URL")
    return Secret(text)


def _parse_lakebase_instance(text: str, name: str) -> str:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$", text):
        raise ConfigError(f"{name}: {text!r} is not a Lakebase database instance name (letters, digits, hyphens)")
    return text


def _convert(attr: str, text: str) -> object:
    name = ENV_NAMES[attr]
    if attr == "state_url":
        return _parse_state_url(text, name)
    if attr in _SECRETS:
        return Secret(text)
    if attr in _DURATIONS:
        return parse_duration(text, name)
    converters = {
        "responders": _parse_responders,
        "slack_api_url": lambda t, n: _parse_url(t, n).rstrip("/") + "/",
        "databricks_host": lambda t, n: _parse_url(t, n).rstrip("/"),
        "workspace_url": lambda t, n: _parse_url(t, n).rstrip("/"),
        "public_url": lambda t, n: _parse_url(t, n).rstrip("/"),
        "audit_source": _parse_source,
        "slack_channel": _parse_channel,
        "dry_run": _parse_bool,
        "thread_replies": lambda t, n: _parse_int(t, n, 0, 20),
        "port": lambda t, n: _parse_int(t, n, 0, 65535),
        "databricks_timeout": _parse_float,
        "slack_post_interval": _parse_non_negative,
        "warehouse_timeout": _parse_float,
        "warehouse_uri": _parse_url,
        "rules_dir": lambda t, n: Path(t),
        "workspaces_file": lambda t, n: Path(t),
        "log_level": lambda t, n: _parse_log_level(t, n),
        "log_format": _parse_log_format,
        "digest_at": _parse_daily_at,
        "message_style": _parse_message_style,
        # server hardening (#11)
        "header_timeout": _parse_float,
        "max_connections": lambda t, n: _parse_int(t, n, 1, 1_000_000),
        "state_lakebase_instance": _parse_lakebase_instance,
        # Slack-side hardening (#11)
        "readers": _parse_responders,
        "slack_team_id": _parse_slack_id(_TEAM_ID, "team id (T…)"),
        "slack_enterprise_id": _parse_slack_id(_ENTERPRISE_ID, "Enterprise Grid id (E…)"),
        "alert_schedule": _parse_alert_schedule,
    }
    convert = converters.get(attr, lambda t, n: t)
    return convert(text, name)


def _parse_alert_schedule(text: str, name: str) -> timedelta:
    interval = parse_duration(text, name)
    try:
        Schedule.every(interval)
    except ValueError as exc:
        raise ConfigError(f"{name}: {text!r}: {exc}") from None
    return interval


def _parse_log_level(text: str, name: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{name}: {text!r} is not one of DEBUG, INFO, WARNING, ERROR")
    return level


def _parse_log_format(text: str, name: str) -> str:
    fmt = text.strip().lower()
    if fmt not in ("text", "json"):
        raise ConfigError(f"{name}: {text!r} is not one of text, json")
    return fmt


def _parse_daily_at(text: str, name: str) -> DailyAt:
    try:
        return parse_daily_at(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _parse_message_style(text: str, name: str) -> str:
    style = text.strip().lower()
    if style not in ("compact", "full"):
        raise ConfigError(f"{name}: {text!r} is not one of compact, full")
    return style


def load_settings(environ: Mapping[str, str], **overrides: object) -> Settings:
    """Build Settings from environment variables; blank values count as unset. Every malformed
    setting is named in the one ConfigError raised (one line each), not just the first."""
    settings, problems = read_settings(environ, **overrides)
    if problems:
        raise ConfigError("\n".join(problems))
    return settings


def read_settings(environ: Mapping[str, str], **overrides: object) -> tuple[Settings, list[str]]:
    """Settings from every variable that parses, and one problem line per variable that does not
    (those are left unset), so a command can name everything wrong at once."""
    values: dict[str, object] = {}
    problems: list[str] = []
    for attr, env_name in ENV_NAMES.items():
        raw = environ.get(env_name)
        if raw is not None and raw.strip() != "":
            try:
                values[attr] = _convert(attr, raw.strip())
            except ConfigError as exc:
                problems.append(str(exc))
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "workspace_url" not in values and "databricks_host" in values:
        values["workspace_url"] = values["databricks_host"]
    if "workspaces_file" in values:
        workspaces_file = values.pop("workspaces_file")
        assert isinstance(workspaces_file, Path)
        try:
            values["workspaces"], values["workspace_tokens"] = _load_workspaces(workspaces_file, environ)
            values["workspaces_file"] = workspaces_file
        except ConfigError as exc:
            problems.append(str(exc))
    try:
        return Settings(**values), problems  # type: ignore[arg-type]
    except ConfigError as exc:
        return Settings(), problems + [str(exc)]


def _load_workspaces(path: Path, environ: Mapping[str, str]) -> tuple[Workspaces, Mapping[str, Secret]]:
    """The workspaces file, and each workspace's token read from the variable it names."""
    import yaml

    name = ENV_NAMES["workspaces_file"]
    try:
        workspaces = parse_workspaces(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None
    except (yaml.YAMLError, WorkspacesError) as exc:
        raise ConfigError(f"{name}: {exc}") from None
    tokens = {}
    for workspace in workspaces.by_id.values():
        if workspace.token_env:
            token = environ.get(workspace.token_env, "").strip()
            if not token:
                raise ConfigError(f"{workspace.token_env} (the token of workspace {workspace.label}) is not set")
            tokens[workspace.id] = Secret(token)
    return workspaces, tokens


__all__ = ["ConfigError", "Secret", "Settings", "load_settings", "read_settings", "parse_duration", "url_password_forms", "ENV_NAMES"]
