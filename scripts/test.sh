#!/usr/bin/env bash
# Set up a virtual environment, install esm-bot and its test extras from requirements.lock (hashes
# checked), check the rules, the layout contracts and the types, and run the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
# every dependency from the lock, each checked against its hashes; then esm-bot itself, nothing more
python -m pip install -q --require-hashes -r requirements.lock
python -m pip install -q --no-deps -e .
# PostgreSQL for the state-store tests: a private server under /tmp, stopped on exit. Without
# root/apt the PostgreSQL tests skip; under CI=true they must run, so that fails the run.
if [ -z "${ESM_TEST_POSTGRES_URL:-}" ]; then
  pgdir="$(mktemp -d /tmp/esm-test-pg.XXXXXX)"
  if url="$(bash scripts/postgres.sh start "$pgdir")"; then
    export ESM_TEST_POSTGRES_URL="$url"
    trap 'bash scripts/postgres.sh stop "$pgdir"; rm -rf "$pgdir"' EXIT
  else
    rm -rf "$pgdir"
    if [ "${CI:-}" = "true" ]; then
      echo "PostgreSQL could not be started, and CI=true requires the PostgreSQL tests" >&2
      exit 1
    fi
    echo "PostgreSQL is not available here: the PostgreSQL tests will skip" >&2
  fi
fi
esm-bot rules check
lint-imports
mypy  # configured in pyproject.toml: strict on bot/core, the default elsewhere
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests"
  status=0
fi
exit "$status"
