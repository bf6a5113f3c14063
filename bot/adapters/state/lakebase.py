"""Passwords for a Lakebase (Databricks-managed PostgreSQL) state store.

A Lakebase database instance takes a Databricks OAuth token as the PostgreSQL password of the
caller's identity, and the token expires an hour after it is issued. `LakebaseCredentials` asks
the Databricks SDK's database credential API (`WorkspaceClient().database
.generate_database_credential(instance_names=[…])`, `POST /api/2.0/database/credentials`) for one,
keeps it until shortly before it expires, and then asks again; the state store calls it for
every new connection (its `async_creator`) and recycles pooled connections before their token's
lifetime is up. So a bot runs for days on Lakebase without a restart.

Every SDK call runs in a thread (the SDK blocks); every failure is a StateStoreError naming the
instance and the API's reason, never a token.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.adapters.state.urls import StateStoreError

log = logging.getLogger(__name__)

DEFAULT_LIFETIME = 3600.0  # seconds, when the API gives no expiration time
EARLY = 300.0  # refresh a token this long before it expires (a quarter of its life if shorter)


class LakebaseCredentials:
    """`await credentials.password()`: a token valid for a while yet (cached, refreshed early)."""

    def __init__(self, instance: str, client: Callable[[], Any], *, clock: Callable[[], float] = time.time):
        self.instance = instance
        self._client_factory = client  # builds a databricks.sdk.WorkspaceClient (off the loop)
        self._client: Any = None
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._lifetime = DEFAULT_LIFETIME
        self._lock = asyncio.Lock()
        self.issued = 0  # tokens obtained so far (for tests and the log)

    @property
    def lifetime(self) -> float:
        """Seconds a token lives, as the last one said."""
        return self._lifetime

    def margin(self) -> float:
        return min(EARLY, self._lifetime / 4)

    def pool_recycle(self) -> int:
        """Seconds a pooled connection may live: well inside a token's lifetime."""
        return max(1, int(self._lifetime - 2 * self.margin()))

    async def password(self) -> str:
        async with self._lock:
            now = self._clock()
            if self._token is None or now >= self._expires - self.margin():
                self._token, self._expires, self._lifetime = await asyncio.to_thread(self._generate)
                self.issued += 1
                log.info("Lakebase credential %d for database instance %s obtained; valid for %.0fs",
                         self.issued, self.instance, self._expires - self._clock())
            assert self._token is not None
            return self._token

    def _generate(self) -> tuple[str, float, float]:
        try:
            if self._client is None:
                self._client = self._client_factory()
            database = getattr(self._client, "database", None)
            if database is None or not hasattr(database, "generate_database_credential"):
                raise StateStoreError("this databricks-sdk has no database credential API: upgrade databricks-sdk")
            issued = self._clock()
            credential = database.generate_database_credential(instance_names=[self.instance],
                                                               request_id=str(uuid.uuid4()))
        except StateStoreError:
            raise
        except Exception as exc:  # the SDK's errors: auth, permission, an unknown instance, the network
            code = getattr(exc, "error_code", None) or type(exc).__name__
            raise StateStoreError(f"no Lakebase credential for database instance {self.instance}: "
                                  f"{code}: {_first_line(exc)}") from None
        token = getattr(credential, "token", None)
        if not token:
            raise StateStoreError(f"no Lakebase credential for database instance {self.instance}: the answer held no token")
        expires = _epoch(getattr(credential, "expiration_time", None)) or issued + DEFAULT_LIFETIME
        return token, expires, max(1.0, expires - issued)


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [""])[0][:300]


def workspace_client_factory(host: str | None, token: str | None, timeout: float) -> Callable[[], Any]:
    """The WorkspaceClient the bot uses elsewhere: DATABRICKS_HOST and DATABRICKS_TOKEN, or the
    SDK's unified auth (a Databricks App's service principal) when they are unset."""

    def build() -> Any:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config

        config = Config(host=host, token=token, retry_timeout_seconds=max(1, int(timeout)),
                        http_timeout_seconds=timeout)
        return WorkspaceClient(config=config)

    return build
