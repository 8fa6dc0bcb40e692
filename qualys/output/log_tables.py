"""The Log Analytics tables of the optional second destination, derived from the records' JSON Schemas.

One source of truth: each table's columns are the run columns (``TimeGenerated`` and
``run_started_at``, both the run's ``started_at``, and ``run_id``) and the record's fields, typed
from ``qualys/schemas/*.schema.json`` (lists and objects are ``dynamic``).
``infra/app/log-analytics-tables.json`` is this module's output
(``python scripts/log_tables_json.py``), which the Bicep loads for the tables and the data
collection rule's stream declarations; a test keeps the two equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

#: The Logs Ingestion API's column types (learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview).
LOG_TYPES = frozenset({"string", "int", "long", "real", "boolean", "datetime", "dynamic"})


@dataclass(frozen=True)
class LogTable:
    #: Which records: devices, findings or changes.
    kind: str
    #: The custom table (``_CL``) in the workspace.
    name: str
    #: The JSON Schema of its records (qualys/schemas/<schema>.schema.json).
    schema: str

    @property
    def stream(self) -> str:
        """The data collection rule's stream for it (the default of its setting)."""
        return f"Custom-{self.name}"

    @property
    def columns(self) -> list[tuple[str, str]]:
        """(name, type) in order: TimeGenerated, run_id, run_started_at, then the record's fields."""
        return _columns(self.schema)


TABLES = (
    LogTable("devices", "QualysDevices_CL", "device"),
    LogTable("findings", "QualysFindings_CL", "finding"),
    LogTable("changes", "QualysChanges_CL", "change"),
)
TABLES_BY_KIND = {table.kind: table for table in TABLES}


def tables_json() -> dict[str, object]:
    """What ``infra/app/log-analytics-tables.json`` holds: each table's name, stream and columns, with the
    column types as the data collection rule spells them (``columns``) and as the tables API does
    (``tableColumns``: ``dateTime``)."""
    return {
        "generatedBy": "python scripts/log_tables_json.py (from qualys/schemas via qualys/output/log_tables.py)",
        "tables": [
            {
                "kind": table.kind,
                "name": table.name,
                "stream": table.stream,
                "columns": [{"name": name, "type": kind} for name, kind in table.columns],
                "tableColumns": [
                    {"name": name, "type": "dateTime" if kind == "datetime" else kind} for name, kind in table.columns
                ],
            }
            for table in TABLES
        ],
    }


@cache
def _columns(schema_name: str) -> list[tuple[str, str]]:
    schema = json.loads(resources.files("qualys").joinpath(f"schemas/{schema_name}.schema.json").read_text())
    # run_started_at repeats TimeGenerated: Azure Monitor owns TimeGenerated (it may replace values it
    # finds too old or too new), while queries ordering runs need the run's own start, always.
    columns = [("TimeGenerated", "datetime"), ("run_id", "string"), ("run_started_at", "datetime")]
    for name, spec in schema["properties"].items():
        if name != "run_id":
            columns.append((name, _log_type(spec, schema.get("$defs", {}))))
    return columns


def _log_type(spec: dict[str, Any], defs: dict[str, Any]) -> str:
    ref = spec.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return "datetime" if name == "timestamp" else _log_type(defs[name], defs)
    if "enum" in spec or "const" in spec:
        return "string"
    types = spec.get("type")
    kinds = [types] if isinstance(types, str) else [t for t in types or [] if t != "null"]
    if len(kinds) != 1:
        raise ValueError(f"no single Log Analytics type for {spec}")
    kind = kinds[0]
    if kind == "string":
        pattern = str(spec.get("pattern", ""))
        return "datetime" if pattern.startswith(r"^\d{4}-\d{2}-\d{2}T") else "string"
    return {"integer": "long", "number": "real", "boolean": "boolean", "array": "dynamic", "object": "dynamic"}[kind]
