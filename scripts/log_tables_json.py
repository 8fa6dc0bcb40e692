"""Writes infra/app/log-analytics-tables.json from the records' JSON Schemas (qualys/output/log_tables.py).

The Bicep loads that file for the custom tables and the data collection rule's stream declarations;
tests/test_infra.py fails when it is out of date. Run: python scripts/log_tables_json.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qualys.output.log_tables import tables_json  # noqa: E402

TARGET = ROOT / "infra" / "app" / "log-analytics-tables.json"


def render() -> str:
    return json.dumps(tables_json(), indent=2) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render(), encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
