#!/usr/bin/env bash
# Set up a virtual environment, install esm-bot, and run it on embedded defaults: local Slack and
# Databricks stand-ins, sample Capsule8 events, a real webhook. Extra arguments go to `esm-bot demo`
# (for example --once to exit after the findings are posted).
set -euo pipefail
cd "$(dirname "$0")/.."
# every dependency from the lock, each checked against its hashes; then esm-bot itself, nothing more
. scripts/venv.sh
exec esm-bot demo "$@"
