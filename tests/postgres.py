"""PostgreSQL for the tests: `ESM_TEST_POSTGRES_URL` names a server (scripts/test.sh starts one);
each test gets a fresh schema on it, dropped afterwards.

Without the variable the PostgreSQL tests skip, saying why; under CI=true they fail instead, so a
CI run can never pass by silently skipping them.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest

ENV = "ESM_TEST_POSTGRES_URL"


def server_url() -> str:
    url = os.environ.get(ENV, "").strip()
    if url:
        return url
    reason = f"PostgreSQL tests need {ENV} (scripts/test.sh starts a server when it can install one)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


def with_search_path(url: str, schema: str) -> str:
    """The same server and database, with `schema` first on the search path."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, quote_via=quote), parts.fragment))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose tables live in a schema of this test's own."""
    import psycopg

    base = server_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {ENV} is not reachable: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    yield with_search_path(base, schema)
    with psycopg.connect(base, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
