#!/usr/bin/env bash
# Refresh requirements.lock: every runtime and test dependency of pyproject.toml pinned with its
# hashes, for CPython 3.11 on x86_64 Linux (CI, the developers' machines and Databricks Apps).
# scripts/test.sh, scripts/demo.sh and the Databricks App (requirements.txt) install from it with
# pip's hash checking. Run it after changing the dependencies in pyproject.toml, or with
# --upgrade to move every pin to the newest release allowed; then run bash scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${TMPDIR:-/tmp}/esm-bot-lock-tools"
if [ ! -x "$tools/bin/uv" ]; then
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install -q uv
fi
"$tools/bin/uv" pip compile pyproject.toml --extra test --generate-hashes \
  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
  --custom-compile-command "bash scripts/lock.sh" -o requirements.lock "$@" >/dev/null
echo "requirements.lock: $(grep -c '^[a-z]' requirements.lock) packages pinned with their hashes"
