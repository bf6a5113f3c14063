"""Settings from an injected environment mapping: defaults, one-line errors naming the
variable, secrets that never show, blank values treated as unset."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.config import (
    ENV_NAMES,
    ConfigError,
    Secret,
    Settings,
    load_settings,
    parse_duration,
)

SECRET_VARS = {
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "slack_signing_secret": "SLACK_SIGNING_SECRET",
    "slack_app_token": "SLACK_APP_TOKEN",
    "webhook_password": "ESM_WEBHOOK_PASSWORD",
    "databricks_token": "DATABRICKS_TOKEN",
}


def test_empty_environment_gives_documented_defaults():
    settings = load_settings({})
    assert settings.audit_source == "duckdb:esm-audit.duckdb"
    assert settings.duckdb_path == "esm-audit.duckdb"
    assert settings.state_path == "esm-state.sqlite3"
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.group_window == timedelta(minutes=60)
    assert settings.initial_lookback == timedelta(hours=24)
    assert settings.sync_overlap == timedelta(minutes=10)
    assert settings.responders == ()
    assert settings.dry_run is False
    assert settings.port == 8080
    assert settings.host == "127.0.0.1"
    assert settings.log_level == "INFO"
    assert settings.slack_bot_token is None
    assert settings.slack_channel is None
    assert settings.workspace_url is None


def test_well_formed_values_are_converted():
    settings = load_settings(
        {
            "ESM_RESPONDERS": "U012ABCDE, W0ABC S0GROUP",
            "ESM_SLACK_CHANNEL": "C0123ABCD",
            "ESM_AUDIT_SOURCE": "databricks",
            "ESM_GROUP_WINDOW": "15m",
            "ESM_PORT": "9000",
            "ESM_DRY_RUN": "yes",
            "SLACK_API_URL": "http://127.0.0.1:5555/api",
            "ESM_LOG_LEVEL": "debug",
            "ESM_RULES_DIR": "/tmp/rules",
        }
    )
    assert settings.responders == ("U012ABCDE", "W0ABC", "S0GROUP")
    assert settings.slack_channel == "C0123ABCD"
    assert settings.audit_source == "databricks"
    assert settings.duckdb_path is None
    assert settings.group_window == timedelta(minutes=15)
    assert settings.port == 9000
    assert settings.dry_run is True
    assert settings.slack_api_url == "http://127.0.0.1:5555/api/"
    assert settings.log_level == "DEBUG"
    assert settings.rules_dir == Path("/tmp/rules")


@pytest.mark.parametrize(
    "name, value",
    [
        ("ESM_RESPONDERS", "U012ABCDE,alice"),
        ("ESM_RESPONDERS", "C0123ABCD"),
        ("ESM_SLACK_CHANNEL", "#security"),
        ("ESM_SLACK_CHANNEL", "U012ABCDE"),
        ("ESM_AUDIT_SOURCE", "postgres://db"),
        ("ESM_AUDIT_SOURCE", "duckdb:"),
        ("ESM_GROUP_WINDOW", "an hour"),
        ("ESM_INITIAL_LOOKBACK", "24"),
        ("ESM_SYNC_OVERLAP", "10x"),
        ("ESM_CONTEXT_TTL", "-5m"),
        ("ESM_COMMANDS_WINDOW", "1.5h"),
        ("ESM_PORT", "65536"),
        ("ESM_PORT", "-1"),
        ("ESM_PORT", "http"),
        ("ESM_DRY_RUN", "maybe"),
        ("SLACK_API_URL", "slack.com/api"),
        ("SLACK_API_URL", "ftp://slack.com/api"),
        ("DATABRICKS_HOST", "my-workspace.cloud.databricks.com"),
        ("ESM_THREAD_REPLIES", "21"),
        ("ESM_DATABRICKS_TIMEOUT", "0"),
        ("ESM_LOG_LEVEL", "LOUD"),
    ],
)
def test_malformed_variable_raises_config_error_naming_it(name, value):
    with pytest.raises(ConfigError) as info:
        load_settings({name: value})
    message = str(info.value)
    assert name in message
    assert "\n" not in message


@pytest.mark.parametrize("port", ["0", "65535", "1"])
def test_port_bounds_are_accepted(port):
    assert load_settings({"ESM_PORT": port}).port == int(port)


@pytest.mark.parametrize("text", ["1", "true", "YES", "on", " True "])
def test_dry_run_truthy_spellings(text):
    assert load_settings({"ESM_DRY_RUN": text}).dry_run is True


@pytest.mark.parametrize("text", ["0", "false", "No", "off"])
def test_dry_run_falsy_spellings(text):
    assert load_settings({"ESM_DRY_RUN": text}).dry_run is False


@pytest.mark.parametrize(
    "text, expected",
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        (" 5 m ", timedelta(minutes=5)),
    ],
)
def test_parse_duration_units(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10", "m", "10 minutes", "1w", "-1h", "1.5h", None])
def test_parse_duration_rejects_other_text_and_names_the_setting(text):
    with pytest.raises(ConfigError, match="ESM_SOMETHING"):
        parse_duration(text, "ESM_SOMETHING")


@pytest.mark.parametrize("attr", ["slack_bot_token", "slack_channel", "databricks_host", "responders", "webhook_user"])
def test_require_names_the_missing_environment_variable(attr):
    with pytest.raises(ConfigError) as info:
        load_settings({}).require(attr)
    assert ENV_NAMES[attr] in str(info.value)


def test_require_passes_and_returns_settings_when_set():
    settings = load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "ESM_SLACK_CHANNEL": "C0123ABCD"})
    assert settings.require("slack_bot_token", "slack_channel") is settings


def test_require_reports_the_first_unset_of_several():
    settings = load_settings({"SLACK_BOT_TOKEN": "xoxb-1"})
    with pytest.raises(ConfigError, match="ESM_SLACK_CHANNEL"):
        settings.require("slack_bot_token", "slack_channel")


@pytest.mark.parametrize("attr, env_name", sorted(SECRET_VARS.items()))
def test_secret_values_never_appear_in_repr_or_str(attr, env_name):
    value = f"very-secret-{env_name.lower()}-value"
    settings = load_settings({env_name: value})
    secret = getattr(settings, attr)
    assert isinstance(secret, Secret)
    assert secret.reveal() == value
    for text in (repr(settings), str(settings), repr(secret), str(secret), f"{secret}", f"{settings!r}"):
        assert value not in text


def test_all_secrets_at_once_are_masked():
    env = {name: f"s3cr3t-{i}-zzz" for i, name in enumerate(SECRET_VARS.values())}
    text = repr(load_settings(env)) + str(load_settings(env))
    for value in env.values():
        assert value not in text


def test_secret_equality_compares_values_not_masks():
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_blank_values_count_as_unset(blank):
    env = {name: blank for name in ENV_NAMES.values()}
    settings = load_settings(env)
    assert settings == Settings()


def test_blank_required_value_is_reported_as_missing():
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        load_settings({"SLACK_BOT_TOKEN": "  "}).require("slack_bot_token")


def test_workspace_url_defaults_to_databricks_host():
    settings = load_settings({"DATABRICKS_HOST": "https://adb-123.4.azuredatabricks.net/"})
    assert settings.databricks_host == "https://adb-123.4.azuredatabricks.net"
    assert settings.workspace_url == "https://adb-123.4.azuredatabricks.net"


def test_explicit_workspace_url_wins_over_databricks_host():
    settings = load_settings(
        {"DATABRICKS_HOST": "http://127.0.0.1:9999", "ESM_WORKSPACE_URL": "https://example.cloud.databricks.com"}
    )
    assert settings.workspace_url == "https://example.cloud.databricks.com"


def test_settings_are_frozen():
    settings = load_settings({})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_every_setting_has_an_environment_variable():
    read_from_the_workspaces_file = {"workspaces", "workspace_tokens"}
    assert set(ENV_NAMES) == set(Settings.__dataclass_fields__) - read_from_the_workspaces_file


# ---------------------------------------------------------------- Slack-side hardening (#11)


def test_readers_and_the_slack_workspace_are_read():
    settings = load_settings({"ESM_READERS": "U0READER, S0AUDITORS W0GUEST", "ESM_SLACK_TEAM_ID": "T0ESM",
                              "ESM_SLACK_ENTERPRISE_ID": "E0ESMORG"})
    assert settings.readers == ("U0READER", "S0AUDITORS", "W0GUEST")
    assert (settings.slack_team_id, settings.slack_enterprise_id) == ("T0ESM", "E0ESMORG")
    unset = load_settings({})
    assert (unset.readers, unset.slack_team_id, unset.slack_enterprise_id) == ((), None, None)


@pytest.mark.parametrize("name, value", [
    ("ESM_READERS", "U0READER,bob"), ("ESM_READERS", "C0123ABCD"),
    ("ESM_SLACK_TEAM_ID", "E0ESMORG"), ("ESM_SLACK_TEAM_ID", "t0esm"), ("ESM_SLACK_TEAM_ID", "T0ESM' OR 1=1"),
    ("ESM_SLACK_ENTERPRISE_ID", "T0ESM"), ("ESM_SLACK_ENTERPRISE_ID", "<!channel>"),
])
def test_malformed_readers_and_workspace_ids_name_the_variable(name, value):
    with pytest.raises(ConfigError) as info:
        load_settings({name: value})
    assert name in str(info.value) and "\n" not in str(info.value)


def test_alert_schedule_defaults_to_ten_minutes_and_must_divide_an_hour():
    assert load_settings({}).alert_schedule == timedelta(minutes=10)
    assert load_settings({"ESM_ALERT_SCHEDULE": "1h"}).alert_schedule == timedelta(hours=1)
    for bad in ("7m", "90s", "2h", "0"):
        with pytest.raises(ConfigError, match="^ESM_ALERT_SCHEDULE: "):
            load_settings({"ESM_ALERT_SCHEDULE": bad})
