"""A Lakebase state store: the PostgreSQL password is a Databricks OAuth token that expires, got
through the real Databricks SDK (database credential API) from the local Databricks emulator,
against the local PostgreSQL. The token rotates, the server's password rotates with it (ALTER
ROLE … PASSWORD), and the store keeps working across the rotation without a restart."""
from __future__ import annotations

import asyncio
import os
import time
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest

from bot.adapters.state import StateStore, StateStoreError
from bot.adapters.state.lakebase import LakebaseCredentials, workspace_client_factory
from emulators.databricks import DatabricksEmulator

INSTANCE = "esm-state"
DBX_TOKEN = "dapi-lakebase-test-7c1e"


@pytest.fixture
async def dbx():
    async with DatabricksEmulator(token=DBX_TOKEN) as emulator:
        emulator.database_instances.add(INSTANCE)
        yield emulator


@pytest.fixture
def lakebase_role(pg_url):
    """A login role of its own (the "Databricks identity"), allowed into the test's schema; its
    password is whatever the test sets. Returns (role, url without a password, set_password)."""
    role = f"lake_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(pg_url, autocommit=True, connect_timeout=10) as conn:
            schema = conn.execute("SELECT current_schema()").fetchone()[0]
            conn.execute(f'CREATE ROLE "{role}" LOGIN')
            conn.execute(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO "{role}"')
            conn.execute(f'GRANT "{role}" TO CURRENT_USER')  # to cut its sessions (pg_terminate_backend)
    except psycopg.errors.InsufficientPrivilege as exc:
        message = f"the test PostgreSQL role may not create roles (scripts/postgres.sh grants CREATEROLE): {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)

    def set_password(password: str) -> None:
        with psycopg.connect(pg_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(password)))

    parts = urlsplit(pg_url)
    host = parts.netloc.rsplit("@", 1)[1]
    url = urlunsplit((parts.scheme, f"{quote(role)}@{host}", parts.path, parts.query, parts.fragment))
    yield role, url, set_password
    with psycopg.connect(pg_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # its tables belong to the role
        conn.execute(f'CREATE SCHEMA "{schema}"')  # the pg_url fixture drops it again
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def credentials(dbx: DatabricksEmulator) -> LakebaseCredentials:
    return LakebaseCredentials(INSTANCE, workspace_client_factory(dbx.host, DBX_TOKEN, 5))


async def terminate_sessions(pg_url: str, role: str) -> int:
    def run() -> int:
        with psycopg.connect(pg_url, autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                                (role,)).fetchall()
        return len(rows)

    return await asyncio.to_thread(run)


async def test_the_store_keeps_working_across_token_rotations(dbx, lakebase_role, pg_url):
    """Each credential the SDK obtains is a new token, and the server's password becomes that
    token at once (stricter than Lakebase, where the old one stays valid until it expires): the
    store's new connections must always use the newest token, obtained before the old expires."""
    role, url, set_password = lakebase_role
    issued: list[tuple[str, float]] = []

    def rotate() -> str:  # the Databricks side of a rotation: a new token, and PostgreSQL takes it
        token = f"lakebase-token-{len(issued) + 1}-" + uuid.uuid4().hex
        set_password(token)
        issued.append((token, time.monotonic()))
        return token

    dbx.database_token_ttl = 8.0
    dbx.issue_database_token = rotate
    creds = credentials(dbx)
    store = await StateStore.open(url, credentials=creds, heartbeat=False)
    ops, cuts, started = 0, 0, time.monotonic()
    try:
        assert creds.issued == 1 and creds.pool_recycle() < 8, "pooled connections recycle before the token expires"
        while time.monotonic() - started < 20:  # two and a half token lifetimes
            await store.set_meta("k", f"v{ops}")
            assert await store.get_meta("k") == f"v{ops}"
            ops += 1
            if ops % 25 == 0:  # every session cut (as a Lakebase restart would): all reconnect
                cuts += await terminate_sessions(pg_url, role)
            await asyncio.sleep(0.1)
        calls = len(dbx.calls_to("/api/2.0/database/credentials", "POST"))
    finally:
        await store.close()
    assert creds.issued == calls == len(issued) and 3 <= calls <= 6, f"{calls} credentials in 20 s"
    gaps = [later - earlier for (_, earlier), (_, later) in zip(issued, issued[1:])]
    assert cuts >= 3, "sessions were cut and the store reconnected with the current token"
    assert all(c.data["instance_names"] == [INSTANCE] and c.data["request_id"]
               for c in dbx.calls_to("/api/2.0/database/credentials"))
    with pytest.raises(psycopg.OperationalError):  # an earlier token no longer opens a connection
        psycopg.connect(url, password=issued[0][0], connect_timeout=5).close()
    print(f"\n[lakebase] {ops} store operations over {time.monotonic() - started:.0f}s, {calls} tokens "
          f"(8 s lifetime, renewed after {min(gaps):.1f}-{max(gaps):.1f}s), {cuts} sessions cut: 0 failures")


async def test_an_unknown_instance_or_refused_credential_fails_in_one_line_without_a_token(dbx, lakebase_role):
    _, url, _ = lakebase_role
    creds = LakebaseCredentials("no-such-instance", workspace_client_factory(dbx.host, DBX_TOKEN, 5))
    with pytest.raises(StateStoreError) as caught:
        await StateStore.open(url, credentials=creds, heartbeat=False, timeout=5)
    message = str(caught.value)
    assert "no Lakebase credential for database instance no-such-instance" in message
    assert "does not exist" in message and DBX_TOKEN not in message and "\n" not in message

    wrong = LakebaseCredentials(INSTANCE, workspace_client_factory(dbx.host, "dapi-wrong", 5))
    with pytest.raises(StateStoreError) as caught:
        await StateStore.open(url, credentials=wrong, heartbeat=False, timeout=5)
    assert "dapi-wrong" not in str(caught.value) and DBX_TOKEN not in str(caught.value)


async def test_a_token_is_cached_until_shortly_before_it_expires(dbx):
    now = [1_000_000.0]
    creds = LakebaseCredentials(INSTANCE, workspace_client_factory(dbx.host, DBX_TOKEN, 5), clock=lambda: now[0])
    dbx.database_token_ttl = 3600  # the emulator's clock is real: the token expires an hour from now
    real_now = time.time()
    now[0] = real_now
    first = await creds.password()
    assert [await creds.password() for _ in range(20)] == [first] * 20 and creds.issued == 1
    assert creds.margin() == 300 and creds.pool_recycle() == 3000  # recycled 10 minutes before expiry
    dbx.database_token = "lakebase-token-next"
    now[0] = real_now + 3600 - 301
    assert await creds.password() == first
    now[0] = real_now + 3600 - 299  # within five minutes of expiry: a new one
    assert await creds.password() == "lakebase-token-next" and creds.issued == 2
