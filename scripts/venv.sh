# Sourced by scripts/demo.sh and scripts/test.sh: the virtual environment in .venv, with every
# dependency from requirements.lock (hashes checked) and esm-bot itself (editable, no deps).
# Installing is done only when the lock or pyproject.toml changed since the last install: a
# rerun starts at once, without pip's resolver output or setuptools' "Editable installation"
# notice (it comes from setuptools' editable_wheel, printed each time the editable wheel is built).
python3 -m venv .venv
. .venv/bin/activate
stamp=.venv/.esm-bot-installed
wanted="$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-32)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] || ! command -v esm-bot >/dev/null 2>&1; then
  python -m pip install -q --require-hashes -r requirements.lock  # pinned, hashes checked
  python -m pip install -q --no-deps -e . 2>/dev/null || python -m pip install -q --no-deps -e .
  echo "$wanted" > "$stamp"
fi
