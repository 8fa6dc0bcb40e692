#!/usr/bin/env bash
# Sets up everything from scratch (Python venv, Azurite from npm, checkov) and runs
# lint, types, infrastructure checks and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
npm ci --no-audit --no-fund --loglevel=error
echo "== ruff"; .venv/bin/ruff check .
echo "== mypy --strict"; .venv/bin/mypy
echo "== infra (checkov)"; bash scripts/check_infra.sh
echo "== pytest"; .venv/bin/python -m pytest "$@"
