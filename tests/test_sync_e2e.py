"""End-to-end syncs against the Qualys simulator on loopback, into a folder and into Azurite."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from qualys.api.client import QualysClient
from qualys.config.secret import Secret
from qualys.config.settings import BlobOutput
from qualys.output.blob import BlobSink
from qualys.output.folder import FolderSink
from qualys.sync.run import run_sync
from qualys.sync.state import RunState
from qualys_simulator.server import QualysSimulator
from tests.helpers import FAST_RETRY, PASSWORD, USER, assert_matches_truth, estate_in_past, read_latest, settings_for


def client_for(simulator: QualysSimulator) -> QualysClient:
    return QualysClient(simulator.url, USER, Secret(PASSWORD), retry=FAST_RETRY)


def cutoff_of(run: object) -> datetime:
    from qualys.timestamps import parse_datetime

    value = parse_datetime(run.manifest["window"]["modified_after"])  # type: ignore[attr-defined]
    assert value is not None
    return value


def schema(name: str) -> dict[str, object]:
    return json.loads(resources.files("qualys").joinpath(f"schemas/{name}.schema.json").read_text())


@pytest.fixture
def simulator() -> QualysSimulator:
    with QualysSimulator(estate_in_past(430), username=USER, password=PASSWORD) as sim:
        yield sim


def test_full_sync_to_folder_matches_truth_over_many_pages(simulator: QualysSimulator, tmp_path: Path) -> None:
    settings = settings_for(simulator, str(tmp_path))
    result = run_sync(settings, client=client_for(simulator))
    sink = FolderSink(tmp_path)
    run = read_latest(sink)
    assert_matches_truth(run, simulator.estate)
    assert result.mode == "full" and not result.resumed
    assert result.pages >= 8 and run.device_count > 300 and run.finding_count > 5000
    assert result.skipped_outside_window == 0  # the server filtered; the client re-check found nothing stale
    # the window is now - lookback, and stale assets stayed out
    stale = [a for a in simulator.estate.assets.values() if a.modified < datetime.now(UTC) - timedelta(days=90)]
    assert stale and not {str(a.id) for a in stale} & set(run.devices)
    manifest = run.manifest
    assert set(manifest) >= {"run_id", "status", "mode", "window", "started_at", "completed_at", "counts", "files"}
    assert manifest["mode"] == "full" and str(manifest["started_at"]).endswith("Z")
    assert json.loads((tmp_path / "latest.json").read_text()) == {
        "run_id": manifest["run_id"], "manifest": f"runs/{manifest['run_id']}/manifest.json",
    }
    assert not (tmp_path / "state" / "checkpoint.json").exists()
    device_validator = jsonschema.Draft202012Validator(schema("device"))
    finding_validator = jsonschema.Draft202012Validator(schema("finding"))
    for record in run.devices.values():
        device_validator.validate(record)
    for record in run.findings.values():
        finding_validator.validate(record)
    # every QID was looked up once, and only QIDs of in-window assets; one hostasset call per page
    requested = [int(q) for r in simulator.requests if r.endpoint == "kb" for q in r.params["ids"].split(",")]
    in_window = {f.qid for a in simulator.estate.modified_after(cutoff_of(run)) for f in a.findings}
    assert sorted(requested) == sorted(in_window)
    assert len([r for r in simulator.requests if r.endpoint == "hostasset"]) == result.pages
    assert simulator.peak_concurrency.get("kb", 0) <= 2


def test_full_sync_to_azurite_matches_truth(simulator: QualysSimulator, azurite_connection_string: str) -> None:
    container = f"qualys-{uuid.uuid4().hex[:8]}"
    output = BlobOutput(container, connection_string=Secret(azurite_connection_string))
    run_sync(settings_for(simulator, output), client=client_for(simulator))
    sink = BlobSink.from_settings(output)
    run = read_latest(sink)
    assert_matches_truth(run, simulator.estate)
    names = sink.list("")
    assert "latest.json" in names and f"runs/{run.manifest['run_id']}/manifest.json" in names
    assert "state/checkpoint.json" not in names
    assert any(name.startswith("state/kb/") for name in names)


def test_incremental_run_gets_exactly_the_changed_assets(simulator: QualysSimulator, tmp_path: Path) -> None:
    settings = settings_for(simulator, str(tmp_path))
    first = run_sync(settings, client=client_for(simulator))
    in_window = sorted(first_id for first_id in read_latest(FolderSink(tmp_path)).devices)
    changed = [int(asset_id) for asset_id in in_window[::37]]
    simulator.estate.touch(changed, datetime.now(UTC))
    simulator.reset_log()
    second = run_sync(settings, client=client_for(simulator))
    run = read_latest(FolderSink(tmp_path))
    assert second.mode == "incremental" and second.run_id != first.run_id
    assert set(run.devices) == {str(asset_id) for asset_id in changed}
    assert_matches_truth(run, simulator.estate)
    # nothing changed since: an incremental run is nearly free (a hostasset page, a KB delta, a tag lookup);
    # the 30-minute overlap re-delivers the assets touched just now, at least once, never lost
    simulator.reset_log()
    third = run_sync(settings, client=client_for(simulator))
    assert third.mode == "incremental" and third.devices == len(changed)
    assert len(simulator.requests) <= 3, [r.endpoint for r in simulator.requests]


def test_knowledge_base_cache_refreshes_changed_qids(simulator: QualysSimulator, tmp_path: Path) -> None:
    settings = settings_for(simulator, str(tmp_path))
    run_sync(settings, client=client_for(simulator))
    run = read_latest(FolderSink(tmp_path))
    revised = sorted({qid for _, qid in run.findings if qid in simulator.estate.kb})[:3]
    simulator.estate.update_kb(revised, datetime.now(UTC))
    simulator.reset_log()
    run_sync(settings, full=True, client=client_for(simulator))
    refreshed = read_latest(FolderSink(tmp_path))
    assert_matches_truth(refreshed, simulator.estate)
    titles = {refreshed.findings[key]["title"] for key in refreshed.findings if key[1] in revised}
    assert titles and all(str(title).endswith("(revised)") for title in titles)
    kb_calls = [r for r in simulator.requests if r.endpoint == "kb"]
    assert len(kb_calls) == 1 and "last_modified_after" in kb_calls[0].params  # only the delta: the rest was cached


def test_password_never_reaches_output(simulator: QualysSimulator, tmp_path: Path) -> None:
    run_sync(settings_for(simulator, str(tmp_path)), client=client_for(simulator))
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_second_sync_is_refused_while_one_holds_the_lock(simulator: QualysSimulator, tmp_path: Path) -> None:
    from qualys.errors import LockHeldError

    sink = FolderSink(tmp_path)
    with RunState(sink).lock(), pytest.raises(LockHeldError, match="Another sync is writing"):
        run_sync(settings_for(simulator, str(tmp_path)), client=client_for(simulator))
    assert not (tmp_path / "latest.json").exists()


def test_stale_lock_of_a_dead_process_is_taken_over(simulator: QualysSimulator, tmp_path: Path) -> None:
    lock = tmp_path / "state" / "lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"token": "x", "pid": 1, "host": "elsewhere", "expires_at": 0}))
    run_sync(settings_for(simulator, str(tmp_path)), client=client_for(simulator))
    assert (tmp_path / "latest.json").exists() and not lock.exists()


def test_blob_lease_keeps_a_second_sync_out(simulator: QualysSimulator, azurite_connection_string: str) -> None:
    from qualys.errors import LockHeldError

    output = BlobOutput(f"lock-{uuid.uuid4().hex[:8]}", connection_string=Secret(azurite_connection_string))
    sink = BlobSink.from_settings(output)
    with RunState(sink).lock(), pytest.raises(LockHeldError, match="leased"):
        run_sync(settings_for(simulator, output), client=client_for(simulator))
    run_sync(settings_for(simulator, output), client=client_for(simulator))  # released: now it runs
    assert_matches_truth(read_latest(sink), simulator.estate)

