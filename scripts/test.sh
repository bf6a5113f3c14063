#!/usr/bin/env bash
# Set up a virtual environment, install esm-bot and its test extras from requirements.lock (hashes
# checked), check the rules, the layout contracts and the types, and run the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# every dependency from the lock, each checked against its hashes; then esm-bot itself, nothing more
. scripts/venv.sh
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
# Headless Chromium and its driver for the demo page's browser tests (tests/browser), from Debian's
# packages; an emoji font so the page shows emoji as Slack does. Where they cannot be installed the
# browser tests skip with one line; under CI=true they must run, so that fails the run.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver for the browser tests" >&2
    (apt-get install -y -q chromium chromium-driver fonts-noto-color-emoji >/dev/null 2>&1 ||
     { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver fonts-noto-color-emoji >/dev/null 2>&1; }) ||
      echo "chromium could not be installed" >&2
  fi
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "${CI:-}" = "true" ]; then
      echo "Chromium and chromedriver are not available, and CI=true requires the browser tests" >&2
      exit 1
    fi
    echo "Chromium is not available here: the browser tests (tests/browser) will skip" >&2
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
