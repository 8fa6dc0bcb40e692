"""Invariants of the Log Analytics destination's infrastructure: one source of truth for the columns.

The JSON Schemas -> qualys/output/log_tables.py -> infra/app/log-analytics-tables.json -> the custom
tables and the data collection rule's stream declarations and flows in infra/app/log-analytics.bicep;
the settings catalogue's stream defaults; the KQL functions use only columns the tables have.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from qualys.config.catalog import SETTINGS_BY_NAME
from qualys.output.log_tables import TABLES, tables_json
from tests.test_infra import DCE, DCR, body, main, module, parse, ref, resources

ROOT = Path(__file__).resolve().parents[1]
TABLES_JSON = ROOT / "infra" / "app" / "log-analytics-tables.json"
KQL_DIR = ROOT / "infra" / "app" / "kql"
DOC = ROOT / "docs" / "log-analytics.md"


def template() -> dict[str, Any]:
    return parse("app/log-analytics.bicep")


def test_the_tables_file_is_generated_from_the_schemas() -> None:
    assert json.loads(TABLES_JSON.read_text()) == tables_json(), "run: python scripts/log_tables_json.py"


def test_table_columns_equal_stream_columns_equal_the_schema_fields() -> None:
    schemas = {t.schema: json.loads((ROOT / "qualys" / "schemas" / f"{t.schema}.schema.json").read_text()) for t in TABLES}
    for entry, table in zip(json.loads(TABLES_JSON.read_text())["tables"], TABLES, strict=True):
        stream = [(c["name"], c["type"]) for c in entry["columns"]]
        columns = [(c["name"], "datetime" if c["type"] == "dateTime" else c["type"]) for c in entry["tableColumns"]]
        assert stream == columns
        fields = list(schemas[table.schema]["properties"])
        run_columns = ["TimeGenerated", "run_id", "run_started_at"]
        assert [name for name, _ in stream] == [*run_columns, *(f for f in fields if f != "run_id")]
        assert entry["stream"] == f"Custom-{entry['name']}" and entry["name"].endswith("_CL")


def test_tables_and_rule_are_built_from_the_tables_file() -> None:
    parsed = template()
    spec = parsed["variables"]["spec"]["value"]
    assert spec["function"]["type"] == "load_json_content"
    for index, kind in enumerate(("devices", "findings", "changes")):  # var devices = spec.tables[0], ...
        accessor = parsed["variables"][kind]["value"]["operator"]["operands"]
        assert accessor["operand_1"] == "spec"
        assert accessor["operand_2"]["operator"]["operands"] == {"operand_1": "tables", "operand_2": index}
        assert json.loads(TABLES_JSON.read_text())["tables"][index]["kind"] == kind
    (tables_declaration,) = resources(parsed, "Microsoft.OperationalInsights/workspaces/tables").values()
    loop = tables_declaration["config"]
    assert loop["loop_type"]["detail"]["item_name"] == "table"
    assert ref(loop["loop_type"]["detail"]["array_name"]) == "spec.tables"
    table = loop["config"]
    assert (ref(table["name"]), ref(table["properties"]["schema"]["name"])) == ("table.name", "table.name")
    assert ref(table["properties"]["schema"]["columns"]) == "table.tableColumns"
    assert table["properties"]["plan"] == "Analytics"
    rule = body(resources(parsed, DCR)["rule"])[1]["properties"]
    assert [key.strip("'") for key in rule["streamDeclarations"]] == [t.stream for t in TABLES]
    for (stream, declaration), kind in zip(rule["streamDeclarations"].items(), ("devices", "findings", "changes"), strict=True):
        assert ref(declaration["columns"]) == f"{kind}.columns", stream
    flows = rule["dataFlows"]
    assert [(ref(f["streams"][0]), ref(f["outputStream"]), f["transformKql"], f["destinations"]) for f in flows] == [
        (f"{kind}.stream", f"{kind}.stream", "source", ["workspace"]) for kind in ("devices", "findings", "changes")
    ]
    (destination,) = rule["destinations"]["logAnalytics"]
    assert destination["name"] == "workspace" and ref(destination["workspaceResourceId"]) == "workspace.id"
    assert ref(rule["dataCollectionEndpointId"]) == "dataCollectionEndpoint.id"
    assert body(resources(parsed, DCE)["dataCollectionEndpoint"])[1]["properties"]["networkAcls"]


def test_the_destination_is_off_by_default_and_its_settings_follow_the_switch() -> None:
    params = main()["parameters"]
    assert params["logAnalyticsEnabled"]["default"] is False
    condition, declaration = module(main(), "app/log-analytics.bicep")
    assert condition == "logAnalyticsEnabled"
    assert ref(declaration["params"]["workspaceName"]) == "monitoring.outputs.logAnalyticsName"
    for table in TABLES:
        setting = SETTINGS_BY_NAME[f"LOG_ANALYTICS_{table.kind.upper()}_STREAM"]
        assert setting.default == table.stream
    assert SETTINGS_BY_NAME["LOG_ANALYTICS_ENDPOINT"].default == ""


# ---- KQL


_KQL_WORDS = {
    "let", "where", "and", "or", "not", "summarize", "by", "join", "kind", "leftouter", "inner", "on", "project",
    "away", "order", "desc", "asc", "ago", "max", "arg_max", "isnull",
}


def kql_problems(text: str, functions: set[str]) -> list[str]:
    """Identifiers of ``text`` that are neither KQL, a table, a function, a parameter, a name it defines,
    nor a column of a table."""
    code = re.sub(r"//[^\n]*", "", text)
    code = re.sub(r'"[^"]*"', '""', code)
    code = re.sub(r"\b\d+[a-z]*\b", "", code)
    defined = set(re.findall(r"\blet\s+(\w+)\s*=", code)) | set(re.findall(r"\b(\w+)\s*=(?!=)", code))
    columns = {name for table in TABLES for name, _ in table.columns}
    tables = {table.name for table in TABLES}
    known = _KQL_WORDS | defined | columns | tables | functions | {"lookback", "since", "asset_id1"}
    return sorted(set(re.findall(r"[A-Za-z_]\w*", code)) - known)


def saved_searches() -> dict[str, dict[str, Any]]:
    found = {}
    for declaration in resources(template(), "Microsoft.OperationalInsights/workspaces/savedSearches").values():
        found[body(declaration)[1]["properties"]["functionAlias"]] = body(declaration)[1]["properties"]
    return found


def test_every_kql_function_is_deployed_from_its_file_with_its_parameters() -> None:
    searches = saved_searches()
    assert set(searches) == {path.stem for path in KQL_DIR.glob("*.kql")}
    for alias, properties in searches.items():
        assert properties["query"]["function"]["type"] == "load_text_content"
        assert properties["query"]["function"]["parameters"]["file_path"] == f"kql/{alias}.kql"
        text = (KQL_DIR / f"{alias}.kql").read_text()
        parameter = properties["functionParameters"].split(":", 1)[0]
        assert re.search(rf"\b{parameter}\b", text), alias
        assert properties["category"] == "Qualys" and properties["version"] == 2


@pytest.mark.parametrize("path", sorted(KQL_DIR.glob("*.kql")), ids=lambda p: p.stem)
def test_kql_uses_only_columns_the_tables_have(path: Path) -> None:
    assert kql_problems(path.read_text(), set(saved_searches())) == []


def test_the_column_check_sees_a_misspelt_column() -> None:
    text = (KQL_DIR / "QualysOpenFindings.kql").read_text().replace("criticality", "critically")
    assert kql_problems(text, set(saved_searches())) == ["critically"]


def test_the_docs_show_the_deployed_kql() -> None:
    doc = DOC.read_text()
    for path in KQL_DIR.glob("*.kql"):
        assert f"```kusto\n{path.read_text()}```" in doc, path.stem
