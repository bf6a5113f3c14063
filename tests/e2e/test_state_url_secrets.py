"""The state URL's password and the workspace tokens never show: not in a malformed URL's error
(`esm-bot sync`, `serve`, `doctor`), not in a driver's message that quotes the password, not in a
traceback, not in a log line; `esm-bot doctor` checks ESM_STATE_URL and says its schema revision."""
from __future__ import annotations

import io
import logging
import socket

import pytest

from bot.adapters.state import StateStore, redact_url
from bot.adapters.state.migrate import head
from bot.cli import main as cli
from bot.cli.doctor import run_doctor
from bot.config import Secret, load_settings, url_password_forms
from bot.observability import logs
from bot.services.health import secret_values
from tests.e2e.test_cli import esm_bot

PASSWORD = "S3cret%zz-4b1f"  # a malformed percent escape: the driver's error quotes it
MALFORMED = f"postgresql://esm:{PASSWORD}@127.0.0.1:1/esm"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(tmp_path, **extra: str) -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": "xoxb-x", "SLACK_SIGNING_SECRET": "signing-secret-5678", "ESM_SLACK_CHANNEL": "C0FINDINGS",
            "ESM_WEBHOOK_USER": "databricks",
            "ESM_WEBHOOK_PASSWORD": "webhook-pw-1234", "ESM_AUDIT_SOURCE": f"duckdb:{tmp_path / 'audit.duckdb'}",
            "SLACK_API_URL": f"http://127.0.0.1:{_closed_port()}/api/", **extra}


@pytest.mark.parametrize("command", [["sync"], ["serve", "--port", "0"], ["doctor"]])
def test_a_malformed_state_url_never_prints_its_password(tmp_path, command):
    result = esm_bot(*command, env=base_env(tmp_path, ESM_STATE_URL=MALFORMED), timeout=90)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for form in ("S3cret", "%zz-4b1f", PASSWORD):
        assert form not in output, output
    assert "Traceback" not in output
    assert "esm:****@127.0.0.1:1" in output  # still says which server


def test_the_password_is_masked_in_every_form_a_message_may_quote_it():
    cases = {
        "postgresql://u:p@ss-word-1@db.example/esm": "p@ss-word-1",  # an @ in the password
        "postgresql://u:pass word-2@db.example/esm": "pass word-2",  # a space
        "postgresql://u:pw%2Fthree@db.example/esm": "pw/three",  # percent-encoded: decoded form too
        "postgresql://u:S3cret%zz@db.example/esm": "S3cret%zz",  # a malformed escape
        "postgresql://db.example/esm?user=u&password=pw-five": "pw-five",
    }
    for url, password in cases.items():
        assert password in url_password_forms(url)
        for text in (url, f"connect to {url} failed", f'invalid token: "{password}"',
                     f"invalid token: {url.split('://')[1]}"):
            masked = redact_url(text, url=url)
            assert password not in masked, (text, masked)
            assert password.split("%")[0] not in masked or len(password.split("%")[0]) < 4, masked
    assert redact_url("postgresql://esm:pw-123@db.example:5432/esm?sslmode=require") == (
        "postgresql://esm:****@db.example:5432/esm?sslmode=require")


def test_secret_values_hold_the_state_password_and_every_workspace_token(tmp_path):
    workspaces = tmp_path / "workspaces.yml"
    workspaces.write_text(
        'workspaces:\n'
        '  - {id: "1111111111111111", name: prod, host: https://dbc-prod.example.com, token_env: PROD_TOKEN}\n'
        '  - {id: "2222222222222222", name: dev, host: https://dbc-dev.example.com, token_env: DEV_TOKEN}\n')
    settings = load_settings({"ESM_STATE_URL": "postgresql://esm:pw%40four@db/esm", "ESM_WORKSPACES_FILE": str(workspaces),
                              "PROD_TOKEN": "dapi-prod-9f1e", "DEV_TOKEN": "dapi-dev-2c7a",
                              "ESM_ADMIN_TOKEN": "admin-token-55aa"})
    values = secret_values(settings)
    for value in ("pw%40four", "pw@four", "dapi-prod-9f1e", "dapi-dev-2c7a", "admin-token-55aa"):
        assert value in values
    assert "admin-token-55aa" not in repr(settings) and isinstance(settings.admin_token, Secret)


def test_a_logged_traceback_is_masked_in_the_text_format(capsys):
    logs.configure("INFO", secret_values(load_settings({"ESM_STATE_URL": MALFORMED})), "text")
    try:
        try:
            raise RuntimeError(f"driver said: invalid percent-encoded token: \"{PASSWORD}\"")
        except RuntimeError:
            logging.getLogger("bot.test").exception("the state store failed")
    finally:
        logs.configure("WARNING")
    err = capsys.readouterr().err
    assert "Traceback" in err and "the state store failed" in err
    assert PASSWORD not in err and "****" in err


def test_an_unexpected_failure_prints_a_masked_traceback(monkeypatch, capsys, tmp_path):
    def boom(args, settings):
        raise RuntimeError(f"failed at {settings.state_url.reveal()} with {settings.webhook_password.reveal()}")

    monkeypatch.setitem(cli.COMMANDS, "sync", boom)
    code = cli.main(["sync"], base_env(tmp_path, ESM_STATE_URL=MALFORMED))
    logs.configure("WARNING")
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err and "RuntimeError" in err
    assert PASSWORD not in err and "webhook-pw-1234" not in err and "esm:****@127.0.0.1:1" in err


async def test_doctor_checks_the_state_url_and_says_its_schema_revision(tmp_path, pg_url):
    settings = load_settings(base_env(tmp_path, ESM_STATE_URL=pg_url))
    password = pg_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    out = io.StringIO()
    await run_doctor(settings, out)
    [line] = [l for l in out.getvalue().splitlines() if "state store" in l]
    assert line.startswith("ok") and "no esm-bot tables yet" in line and password not in out.getvalue()
    store = await StateStore.open(pg_url, heartbeat=False)
    await store.close()
    out = io.StringIO()
    await run_doctor(settings, out)
    [line] = [l for l in out.getvalue().splitlines() if "state store" in l]
    assert line.startswith("ok") and f"schema revision {head()} (current)" in line and "PostgreSQL" in line
    assert password not in out.getvalue() and ":****@" in line


async def test_doctor_says_why_the_state_url_fails_without_its_password(tmp_path):
    out = io.StringIO()
    code = await run_doctor(load_settings(base_env(tmp_path, ESM_STATE_URL=MALFORMED)), out)
    text = out.getvalue()
    [line] = [l for l in text.splitlines() if "state store" in l]
    assert code == 1 and line.startswith("FAIL") and "fix: check ESM_STATE_URL" in text
    assert "S3cret" not in text and "zz-4b1f" not in text
