"""The DuckDB statements of docs/query-the-output.md, run as written against synced output (folder and Azurite).

Only parameters change: the connection string of this test's Azurite and a CVE the simulated estate has.
Every answer is compared with the simulator's truth, through the same model as the state tests.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import duckdb_extension_azure
import pytest

from qualys.config.secret import Secret
from qualys.config.settings import BlobOutput, LocalOutput
from qualys.output.folder import FolderSink
from qualys.output.sink import Sink, open_sink
from qualys.sync.run import run_sync
from qualys_simulator.server import QualysSimulator
from tests.helpers import PASSWORD, USER, Clock, client_for, estate_in_past, read_latest, settings_for
from tests.state_model import State, expected_changes, next_state

DOC = Path(__file__).resolve().parents[1] / "docs" / "query-the-output.md"
BLOCK = re.compile(r"<!-- sql: ([\w-]+)(?: ([\w-]+))? -->\n```sql\n(.*?)```", re.S)
DOC_CVE = "CVE-2024-3094"


def doc_blocks() -> dict[str, str]:
    blocks = {f"{kind} {name}" if name else kind: sql for kind, name, sql in BLOCK.findall(DOC.read_text())}
    assert {"local", "azure", "connection-string", "views"} <= blocks.keys()
    return blocks


def queries() -> dict[str, str]:
    return {key.removeprefix("query "): sql for key, sql in doc_blocks().items() if key.startswith("query ")}


@dataclasses.dataclass
class Synced:
    state: State
    changes: list[tuple[object, ...]]
    observed_at: str


def sync_twice(sink: Sink, seed: int) -> Synced:
    """A full run, then changes of every kind (new, fixed and renamed assets, a deletion, aging), then a full run."""
    estate = estate_in_past(400, seed=seed)
    clock = Clock(estate.now + timedelta(hours=1))
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        settings = settings_for(simulator, LocalOutput("unused"))
        with client_for(simulator) as client:
            run_sync(settings, sink=sink, client=client, now=clock)
            first = read_latest(sink)
            state = next_state(None, estate, full=True, window_after=_date(first.manifest["window"]["modified_after"]),  # type: ignore[index]
                               cutoff=str(first.manifest["current"]["modified_after"]))  # type: ignore[index]
            clock.now += timedelta(days=2)  # assets near the window's edge age out
            when = clock.now - timedelta(minutes=1)
            ids = sorted(estate.assets)
            estate.touch(ids[10:20], when)
            estate.fix(ids[30:40], when)
            estate.rename(ids[50:52], when)
            estate.delete(ids[60:63])
            estate.add(3, when)
            run_sync(settings, full=True, sink=sink, client=client, now=clock)
        second = read_latest(sink)
        cutoff = str(second.manifest["current"]["modified_after"])  # type: ignore[index]
        new_state = next_state(state, estate, full=True, window_after=_date(second.manifest["window"]["modified_after"]),  # type: ignore[index]
                               cutoff=cutoff)
    changes = expected_changes(state, new_state, cutoff)
    assert second.current_devices == new_state.devices and second.current_findings == new_state.findings
    kinds = {change[0] for change in changes}
    reasons = {change[3] for change in changes if change[0] == "device_removed"}
    assert {"device_added", "device_updated", "device_removed", "finding_added", "finding_removed"} <= kinds
    assert reasons == {"aged_out", "not_returned"}, "the doc's removal query must see both reasons"
    return Synced(new_state, changes, str(second.manifest["started_at"]))


def _date(value: object) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed


def common_cve(state: State) -> str:
    counts = Counter(cve for record in state.findings.values() for cve in record["cve_ids"])  # type: ignore[attr-defined]
    return counts.most_common(1)[0][0]


def expected_answers(synced: Synced, cve: str) -> dict[str, list[tuple[Any, ...]]]:
    state = synced.state
    devices = state.devices
    by_cell: dict[tuple[Any, Any], list[str]] = {}
    for (asset_id, _), record in state.findings.items():
        by_cell.setdefault((record["severity"], devices[asset_id]["criticality"]), []).append(asset_id)
    cells = sorted(by_cell, key=lambda key: (key[0] is None, -(key[0] or 0), -int(key[1])))
    with_cve: dict[str, list[int]] = {}
    for (asset_id, qid), record in state.findings.items():
        if cve in record["cve_ids"]:  # type: ignore[operator]
            with_cve.setdefault(asset_id, []).append(qid)
    kinds = Counter(str(change[0]) for change in synced.changes)
    assets_per_kind = {kind: len({c[1] for c in synced.changes if c[0] == kind}) for kind in kinds}
    observed = datetime.fromisoformat(synced.observed_at.replace("Z", ""))
    severe = []
    for change, asset_id, qid, _, _ in synced.changes:
        if change == "finding_added":
            record = state.findings[(str(asset_id), int(qid))]  # type: ignore[call-overload]
            if record["severity"] is not None and int(record["severity"]) >= 4:  # type: ignore[call-overload]
                device = devices[str(asset_id)]
                severe.append((device["criticality"], record["severity"], asset_id, device["name"], qid, record["title"],
                               record["cve_ids"]))
    severe.sort(key=lambda row: (-int(row[0]), -int(row[1]), int(row[2]), row[4]))
    removed = sorted(
        ((c[1], c[3], observed) for c in synced.changes if c[0] == "device_removed"), key=lambda row: (row[1], int(row[0]))
    )
    return {
        "open-findings-by-severity-and-criticality": [
            (sev, crit, len(ids), len(set(ids))) for (sev, crit), ids in ((cell, by_cell[cell]) for cell in cells)
        ],
        "assets-with-a-cve": [
            (asset_id, devices[asset_id]["name"], devices[asset_id]["criticality"], sorted(qids))
            for asset_id, qids in sorted(with_cve.items(), key=lambda item: int(item[0]))
        ],
        "changes-in-the-last-run": [(kind, kinds[kind], assets_per_kind[kind]) for kind in sorted(kinds)],
        "new-severe-findings": severe,
        "removed-assets": removed,
    }


def run_doc(connection: duckdb.DuckDBPyConnection, setup: str, cve: str) -> dict[str, list[tuple[Any, ...]]]:
    connection.execute(setup)
    connection.execute(doc_blocks()["views"])
    answers = {}
    for name, sql in queries().items():
        assert DOC_CVE not in sql or name == "assets-with-a-cve"
        answers[name] = connection.execute(sql.replace(DOC_CVE, cve)).fetchall()
    return answers


def test_the_documented_queries_on_a_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = sync_twice(FolderSink(str(tmp_path / "qualys-output")), seed=31)
    cve = common_cve(synced.state)
    monkeypatch.chdir(tmp_path)  # the doc's root is the relative folder qualys-output/
    answers = run_doc(duckdb.connect(), doc_blocks()["local"], cve)
    expected = expected_answers(synced, cve)
    assert set(answers) == set(expected)
    for name, rows in expected.items():
        assert answers[name] == rows, name
    assert all(answers[name] for name in answers), "every documented question has an answer here"


def test_the_documented_queries_on_blob_storage(azurite_connection_string: str) -> None:
    output = BlobOutput("qualys", connection_string=Secret(azurite_connection_string))  # the doc's container
    synced = sync_twice(open_sink(output), seed=32)
    cve = common_cve(synced.state)
    connection = duckdb.connect()
    extension = Path(duckdb_extension_azure.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "azure.duckdb_extension"
    connection.execute(f"LOAD '{extension}'")  # offline: the wheel's copy, not INSTALL from the internet
    setup = doc_blocks()["connection-string"].replace("UseDevelopmentStorage=true", azurite_connection_string)
    answers = run_doc(connection, setup, cve)
    assert answers == expected_answers(synced, cve)
