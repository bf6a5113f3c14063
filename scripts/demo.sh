#!/usr/bin/env bash
# Set up a virtual environment, install esm-bot, and run it on embedded defaults: local Slack and
# Databricks stand-ins, sample Capsule8 events, a real webhook. Extra arguments go to `esm-bot demo`
# (for example --once to exit after the findings are posted).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --require-hashes -r requirements.lock  # pinned, hashes checked
python -m pip install -q --no-deps -e .
exec esm-bot demo "$@"
