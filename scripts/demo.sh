#!/usr/bin/env bash
# Sets up a virtual environment and runs a real sync against the bundled Qualys simulator
# into ./qualys-output (no Azure or Qualys account needed). Extra arguments go to `qualys demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
exec .venv/bin/python -m qualys demo "$@"
