"""app.yaml (the Databricks App) describes a bot that can serve: Socket Mode, polling, the SQL
warehouse, secrets only through valueFrom, and DATABRICKS_* left to the app's service principal."""
from __future__ import annotations

from pathlib import Path

import yaml

from bot.config import load_settings
from bot.cli.doctor import missing_for_serve

APP = yaml.safe_load((Path(__file__).resolve().parents[2] / "app.yaml").read_text(encoding="utf-8"))
SECRETS = {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "ESM_WEBHOOK_PASSWORD", "DATABRICKS_TOKEN"}


def test_the_command_serves_on_the_app_port():
    assert APP["command"][:4] == ["python", "-m", "bot.cli", "serve"]  # from the source tree: nothing to install
    assert "$DATABRICKS_APP_PORT" in APP["command"] and "0.0.0.0" in APP["command"]


def test_the_app_installs_the_hash_checked_lock_and_the_lock_covers_pyproject():
    """requirements.txt (what Databricks Apps install) is the lock; every dependency and test
    extra of pyproject.toml is pinned there (==) with at least one sha256 hash."""
    import re
    import tomllib

    root = Path(__file__).resolve().parents[2]
    lines = [line.strip() for line in (root / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line and not line.startswith("#")] == ["-r requirements.lock"]
    lock = (root / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\$", lock, re.MULTILINE))
    blocks = re.split(r"\n(?=[a-z0-9])", lock.split("\n", 2)[2])
    assert all("--hash=sha256:" in block for block in blocks if "==" in block)
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    names = {re.split(r"[<>=!\[; ]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in wanted}
    assert names <= set(pins), sorted(names - set(pins))


def test_secrets_and_the_warehouse_come_from_resources():
    env = {e["name"]: e for e in APP["env"]}
    for name in SECRETS & set(env):
        assert "valueFrom" in env[name] and "value" not in env[name], name
    assert env["ESM_WAREHOUSE_ID"]["valueFrom"] == "sql-warehouse"
    assert not [name for name in env if name.startswith("DATABRICKS_")]


def test_with_the_resources_filled_in_the_settings_serve_in_socket_mode_with_polling():
    environ = {e["name"]: e.get("value", f"resolved-{e.get('valueFrom')}") for e in APP["env"]}
    environ.update(SLACK_BOT_TOKEN="xoxb-x", SLACK_APP_TOKEN="xapp-x", DATABRICKS_HOST="https://dbc-x.cloud.databricks.com")
    settings = load_settings(environ)
    assert settings.slack_app_token is not None and settings.poll_interval is not None
    assert settings.audit_source == "databricks"
    assert missing_for_serve(settings) == []
