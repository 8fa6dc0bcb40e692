"""End-to-end syncs against the Qualys simulator on loopback, into a folder and into Azurite."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from qualys.config.secret import Secret
from qualys.config.settings import BlobOutput
from qualys.errors import LockHeldError
from qualys.output.blob import BlobSink
from qualys.output.folder import FolderSink
from qualys.sync.run import SyncResult
from qualys.sync.state import RunState
from qualys.timestamps import parse_datetime
from qualys_simulator.server import QualysSimulator, RequestRecord
from tests.helpers import PASSWORD, USER, Run, assert_matches_truth, estate_in_past, read_latest, sync


def schema(name: str) -> dict[str, object]:
    return json.loads(resources.files("qualys").joinpath(f"schemas/{name}.schema.json").read_text())


@pytest.fixture
def simulator() -> Iterator[QualysSimulator]:
    with QualysSimulator(estate_in_past(430), username=USER, password=PASSWORD) as sim:
        yield sim


@dataclass(frozen=True)
class FullRun:
    """One full sync into a folder, and what it left behind: shared by the tests that read it."""

    simulator: QualysSimulator
    result: SyncResult
    run: Run
    root: Path
    requests: list[RequestRecord]

    @property
    def cutoff(self) -> datetime:
        window = self.run.manifest["window"]
        assert isinstance(window, dict)
        value = parse_datetime(str(window["modified_after"]))
        assert value is not None
        return value


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullRun]:
    root = tmp_path_factory.mktemp("full-run")
    with QualysSimulator(estate_in_past(430), username=USER, password=PASSWORD) as sim:
        result = sync(sim, str(root))
        yield FullRun(sim, result, read_latest(FolderSink(root)), root, sim.requests)


def test_full_sync_to_folder_matches_truth_over_many_pages(full_run: FullRun) -> None:
    assert_matches_truth(full_run.run, full_run.simulator.estate)
    assert full_run.result.mode == "full" and not full_run.result.resumed
    assert full_run.result.pages >= 8 and full_run.run.device_count > 300 and full_run.run.finding_count > 5000


def test_assets_outside_the_window_stay_out(full_run: FullRun) -> None:
    now = datetime.now(UTC)
    stale = [a for a in full_run.simulator.estate.assets.values() if a.modified < now - timedelta(days=90)]
    assert stale and not {str(a.id) for a in stale} & set(full_run.run.devices)
    assert abs((full_run.cutoff - (now - timedelta(days=90))).total_seconds()) < 600  # the window is now - lookback
    assert full_run.result.skipped_outside_window == 0  # Qualys filtered; the client re-check found nothing stale


def test_manifest_and_latest_pointer_describe_the_complete_run(full_run: FullRun) -> None:
    manifest = full_run.run.manifest
    assert set(manifest) >= {"run_id", "status", "mode", "window", "started_at", "completed_at", "counts", "files"}
    assert manifest["mode"] == "full" and str(manifest["started_at"]).endswith("Z")
    assert json.loads((full_run.root / "latest.json").read_text()) == {
        "run_id": manifest["run_id"], "manifest": f"runs/{manifest['run_id']}/manifest.json",
    }
    assert not (full_run.root / "state" / "checkpoint.json").exists()


def test_every_record_follows_its_json_schema(full_run: FullRun) -> None:
    device_validator = jsonschema.Draft202012Validator(schema("device"))
    finding_validator = jsonschema.Draft202012Validator(schema("finding"))
    for record in full_run.run.devices.values():
        device_validator.validate(record)
    for record in full_run.run.findings.values():
        finding_validator.validate(record)


def test_requests_are_the_minimum(full_run: FullRun) -> None:
    """Every QID of an in-window asset is looked up once; one hostasset call per page; KB concurrency kept."""
    requested = [int(q) for r in full_run.requests if r.endpoint == "kb" for q in r.params["ids"].split(",")]
    in_window = {f.qid for a in full_run.simulator.estate.modified_after(full_run.cutoff) for f in a.findings}
    assert sorted(requested) == sorted(in_window)
    assert len([r for r in full_run.requests if r.endpoint == "hostasset"]) == full_run.result.pages
    assert full_run.simulator.peak_concurrency.get("kb", 0) <= 2


def test_password_never_reaches_output(full_run: FullRun) -> None:
    for path in full_run.root.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_full_sync_to_azurite_matches_truth(simulator: QualysSimulator, azurite_connection_string: str) -> None:
    container = f"qualys-{uuid.uuid4().hex[:8]}"
    output = BlobOutput(container, connection_string=Secret(azurite_connection_string))
    sync(simulator, output)
    sink = BlobSink.from_settings(output)
    run = read_latest(sink)
    assert_matches_truth(run, simulator.estate)
    names = sink.list("")
    assert "latest.json" in names and f"runs/{run.manifest['run_id']}/manifest.json" in names
    assert "state/checkpoint.json" not in names
    assert any(name.startswith("state/kb/") for name in names)


def test_incremental_run_gets_exactly_the_changed_assets(simulator: QualysSimulator, tmp_path: Path) -> None:
    first = sync(simulator, str(tmp_path))
    in_window = sorted(first_id for first_id in read_latest(FolderSink(tmp_path)).devices)
    changed = [int(asset_id) for asset_id in in_window[::37]]
    simulator.estate.touch(changed, datetime.now(UTC))
    simulator.reset_log()
    second = sync(simulator, str(tmp_path))
    run = read_latest(FolderSink(tmp_path))
    assert second.mode == "incremental" and second.run_id != first.run_id
    assert set(run.devices) == {str(asset_id) for asset_id in changed}
    assert_matches_truth(run, simulator.estate)
    # nothing changed since: an incremental run is nearly free (a hostasset page, a KB delta, a tag lookup);
    # the 30-minute overlap re-delivers the assets touched just now, at least once, never lost
    simulator.reset_log()
    third = sync(simulator, str(tmp_path))
    assert third.mode == "incremental" and third.devices == len(changed)
    assert len(simulator.requests) <= 3, [r.endpoint for r in simulator.requests]


def test_knowledge_base_cache_refreshes_changed_qids(simulator: QualysSimulator, tmp_path: Path) -> None:
    sync(simulator, str(tmp_path))
    run = read_latest(FolderSink(tmp_path))
    revised = sorted({qid for _, qid in run.findings if qid in simulator.estate.kb})[:3]
    simulator.estate.update_kb(revised, datetime.now(UTC))
    simulator.reset_log()
    sync(simulator, str(tmp_path), full=True)
    refreshed = read_latest(FolderSink(tmp_path))
    assert_matches_truth(refreshed, simulator.estate)
    titles = {refreshed.findings[key]["title"] for key in refreshed.findings if key[1] in revised}
    assert titles and all(str(title).endswith("(revised)") for title in titles)
    kb_calls = [r for r in simulator.requests if r.endpoint == "kb"]
    assert len(kb_calls) == 1 and "last_modified_after" in kb_calls[0].params  # only the delta: the rest was cached


def test_second_sync_is_refused_while_one_holds_the_lock(simulator: QualysSimulator, tmp_path: Path) -> None:
    with RunState(FolderSink(tmp_path)).lock(), pytest.raises(LockHeldError, match="Another sync is writing"):
        sync(simulator, str(tmp_path))
    assert not (tmp_path / "latest.json").exists()


def test_a_lock_file_left_behind_does_not_block(simulator: QualysSimulator, tmp_path: Path) -> None:
    """What a killed run (or an older version) leaves: the file, but no process holding its lock. It names this
    machine and a pid that is alive (pid 1, as when a pid is reused): only the lock itself is trusted."""
    lock = tmp_path / "state" / "lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"token": "x", "pid": 1, "host": socket.gethostname(), "expires_at": 9e9}))
    sync(simulator, str(tmp_path))
    assert (tmp_path / "latest.json").exists() and lock.read_bytes() == b""  # released: nobody named in it


def test_blob_lease_keeps_a_second_sync_out(simulator: QualysSimulator, azurite_connection_string: str) -> None:
    output = BlobOutput(f"lock-{uuid.uuid4().hex[:8]}", connection_string=Secret(azurite_connection_string))
    sink = BlobSink.from_settings(output)
    with RunState(sink).lock(), pytest.raises(LockHeldError, match="leased"):
        sync(simulator, output)
    sync(simulator, output)  # released: now it runs
    assert_matches_truth(read_latest(sink), simulator.estate)
