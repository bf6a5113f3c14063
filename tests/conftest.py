"""Fixtures for every test."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _isolate_databricks_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The SDK's unified auth reads every DATABRICKS_* variable and ~/.databrickscfg: a developer's
    real workspace settings must never leak into a test client (or send a test to the internet)."""
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-such-databrickscfg"))


from tests.postgres import pg_url  # noqa: E402,F401  (a fresh PostgreSQL schema per test)
