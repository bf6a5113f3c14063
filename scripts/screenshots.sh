#!/usr/bin/env bash
# The README's screenshots (docs/screenshots/*.png): a fresh demo driven in headless Chromium
# (Debian's chromium and chromium-driver, installed here when missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  apt-get install -y -q chromium chromium-driver fonts-noto-color-emoji >/dev/null
fi
python -m tests.browser.screenshots docs/screenshots
