#!/usr/bin/env bash
# Sets up a virtual environment and runs real syncs against the bundled Qualys simulator into
# ./qualys-output (no Azure or Qualys account needed): a full run, then, after the simulator changed
# some assets (new and fixed findings, one asset ageing out), a second run whose change feed it prints.
# Extra arguments go to `qualys demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
exec .venv/bin/python -m qualys demo "$@"
