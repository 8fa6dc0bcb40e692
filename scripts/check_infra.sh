#!/usr/bin/env bash
# Static checks of the Bicep in infra/ (no Bicep compiler can be installed on the CI machines).
#
#   bash scripts/check_infra.sh        # from the repository root
#
# checkov scans infra/ with its Bicep framework. The script fails on any failed check and on any
# file checkov cannot parse: checkov only *reports* parse errors ("Parsing errors: N") and still
# exits 0, so its output is inspected too. Suppressions live inline in the Bicep
# (`// checkov:skip=CKV_...: reason`). The structural invariants (FC1 plan, identity, RBAC, app
# settings against qualys/config/catalog.py) are asserted by tests/test_infra.py in the pytest run.
#
# checkov lives in its own git-ignored venv (.venv-checkov) because it pins old dependencies.
# checkov 3.3.30 pins pycep-parser==0.5.1, whose Bicep grammar predates deployer(), func,
# import/@export() and other newer syntax (a template using them is reported as a parse error);
# pycep-parser 0.7.1 parses them, and checkov 3.3.30 gives identical results with it. pip refuses
# both pins in one command, so 0.7.1 is installed in a second step, over checkov's pin.
set -euo pipefail

CHECKOV_VERSION=3.3.30
PYCEP_VERSION=0.7.1
VENV=.venv-checkov

if [[ ! -f infra/main.bicep ]]; then
  echo "check_infra: run from the repository root (infra/main.bicep not found)" >&2
  exit 2
fi

if [[ ! -x "$VENV/bin/checkov" ]] \
  || ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('pycep-parser') != '$PYCEP_VERSION')" 2>/dev/null; then
  echo "check_infra: creating $VENV (checkov $CHECKOV_VERSION, pycep-parser $PYCEP_VERSION)"
  install_log="$(mktemp)"
  # pip's output is kept out of the CI log unless the install fails. The second install prints
  # "checkov 3.3.30 requires pycep-parser==0.5.1, but you have 0.7.1" — expected, see the header.
  if ! { python3 -m venv "$VENV" \
      && "$VENV/bin/pip" install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION" \
      && "$VENV/bin/pip" install -q --disable-pip-version-check "pycep-parser==$PYCEP_VERSION"; } >"$install_log" 2>&1; then
    cat "$install_log" >&2
    rm -f "$install_log"
    rm -rf "$VENV"   # a half-built venv must not pass the check above next time
    echo "check_infra: FAILED — could not install checkov" >&2
    exit 1
  fi
  rm -f "$install_log"
fi

report="$(mktemp)"
trap 'rm -f "$report"' EXIT

# --skip-download: never call the Prisma Cloud API (unreachable here; ~25 s of tracebacks).
# Settings that do not change per run live in .checkov.yaml.
set +e
"$VENV/bin/checkov" --config-file .checkov.yaml -d infra --framework bicep \
  --skip-download --compact --quiet >"$report" 2>&1
rc=$?
set -e
cat "$report"

if grep "Parsing errors" "$report" | grep -vq "Parsing errors: 0"; then
  echo "check_infra: FAILED — checkov could not parse some Bicep (see 'Parsing errors' above)" >&2
  exit 1
fi
if [[ $rc -ne 0 ]]; then
  echo "check_infra: FAILED — checkov reported failed checks (exit $rc)" >&2
  exit 1
fi
# Guard against a silent no-op (wrong directory, framework not loaded): there must be passes.
if ! grep -Eq "Passed checks: [1-9]" "$report"; then
  echo "check_infra: FAILED — checkov ran no checks on infra/" >&2
  exit 1
fi
echo "check_infra: OK"
