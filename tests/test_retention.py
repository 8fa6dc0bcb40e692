"""Retention: old runs go, what the latest run or a checkpoint needs stays (folder and Blob Storage)."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import timedelta
from pathlib import Path

import pytest

from qualys.config.secret import Secret
from qualys.config.settings import BlobOutput, LocalOutput
from qualys.errors import QualysApiError
from qualys.output.folder import FolderSink
from qualys.output.retention import apply_retention
from qualys.output.runs import RunOutput
from qualys.output.sink import Sink, open_sink
from qualys.sync.run import SyncResult, run_sync
from qualys_simulator.server import Fault, QualysSimulator
from tests.helpers import PASSWORD, USER, Clock, client_for, estate_in_past, listed_files, read_latest, settings_for


def sync(simulator: QualysSimulator, sink: Sink, clock: Clock, *, full: bool = False) -> SyncResult:
    # A long lookback and no forced full runs: nothing ages out, so the first run's segments stay in every state.
    settings = dataclasses.replace(
        settings_for(simulator, LocalOutput("unused"), 50), lookback_days=400, full_sync_every_days=3650, retention_days=30
    )
    with client_for(simulator) as client:
        return run_sync(settings, full=full, sink=sink, client=client, now=clock)


def run_ids(sink: Sink) -> set[str]:
    return {path.split("/")[1] for path in sink.list("runs/")}


def test_runs_of_every_age_around_the_limit(tmp_path: Path) -> None:
    estate = estate_in_past(150, seed=2)
    sink = FolderSink(str(tmp_path))
    start = estate.now + timedelta(hours=1)
    clock = Clock(start)
    completed: dict[str, float] = {}
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        first = sync(simulator, sink, clock)
        completed[first.run_id] = 0
        # An incremental run that never completes, then abandoned by a --full run a day later.
        clock.now = start + timedelta(days=1)
        estate.touch(sorted(estate.assets)[:120], clock.now - timedelta(minutes=1))
        simulator.inject(Fault("hostasset", "http_500", times=100, skip=1))  # after one written page
        with pytest.raises(QualysApiError):
            sync(simulator, sink, clock)
        simulator.clear_faults()
        abandoned = json.loads((tmp_path / "state" / "checkpoint.json").read_text())["run_id"]
        for days in (1.01, 14.9, 15.1, 20):
            clock.now = start + timedelta(days=days)
            result = sync(simulator, sink, clock, full=days == 1.01)
            completed[result.run_id] = days
        assert abandoned in run_ids(sink), "nothing is old enough yet"
        clock.now = start + timedelta(days=45)  # the limit is day 15
        last = sync(simulator, sink, clock)
        completed[last.run_id] = 45
    latest = read_latest(sink)  # every file the latest run lists is there
    assert latest.manifest["run_id"] == last.run_id
    remaining = run_ids(sink)
    kept = {run_id for run_id, days in completed.items() if days > 15}
    expired = {run_id for run_id, days in completed.items() if days <= 15} | {abandoned}
    assert kept <= remaining
    def manifest_of(run_id: str) -> dict[str, object]:
        return dict(json.loads((tmp_path / "runs" / run_id / "manifest.json").read_text()))

    for run_id in kept:  # untouched
        own = [*listed_files(manifest_of(run_id), in_run=run_id), f"runs/{run_id}/manifest.json"]
        assert sorted(sink.list(f"runs/{run_id}/")) == sorted(own)
    listed_by_kept = {path for run_id in kept for path in listed_files(manifest_of(run_id))}
    survivors = 0
    for run_id in expired:
        left = sink.list(f"runs/{run_id}/")
        assert f"runs/{run_id}/manifest.json" not in left
        # An expired run keeps exactly what a kept run lists: here, the state segments nothing changed since.
        assert set(left) == {path for path in listed_by_kept if path.startswith(f"runs/{run_id}/")}
        assert all("/current/" in path for path in left)
        survivors += bool(left)
    assert survivors >= 1, "the test must cover segments an expired run wrote and the latest state still lists"
    assert abandoned not in run_ids(sink)


def test_an_unfinished_run_and_the_latest_are_never_deleted(tmp_path: Path) -> None:
    estate = estate_in_past(60, seed=6)
    sink = FolderSink(str(tmp_path))
    clock = Clock(estate.now + timedelta(hours=1))
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        only = sync(simulator, sink, clock)
        estate.touch(sorted(estate.assets)[:10], clock.now)
        clock.now += timedelta(hours=1)
        simulator.inject(Fault("hostasset", "http_500", times=100, skip=0))
        with pytest.raises(QualysApiError):
            sync(simulator, sink, clock)
        simulator.clear_faults()
    unfinished = json.loads((tmp_path / "state" / "checkpoint.json").read_text())["run_id"]
    before = sorted(sink.list("runs/"))
    result = apply_retention(
        RunOutput(sink), now=clock.now + timedelta(days=400), days=30, latest_run_id=only.run_id, unfinished_run_id=unfinished
    )
    assert result.runs_deleted == 0 and sorted(sink.list("runs/")) == before
    assert apply_retention(RunOutput(sink), now=clock.now + timedelta(days=400), days=0, latest_run_id="x").runs_deleted == 0


def test_retention_on_blob_storage(azurite_connection_string: str) -> None:
    container = f"retention-{random.randrange(1 << 30):x}"
    sink = open_sink(BlobOutput(container, connection_string=Secret(azurite_connection_string)))
    estate = estate_in_past(120, seed=14)
    clock = Clock(estate.now + timedelta(hours=1))
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        first = sync(simulator, sink, clock)
        clock.now += timedelta(days=40)
        estate.rename(sorted(estate.assets)[:5], clock.now - timedelta(minutes=1))
        sync(simulator, sink, clock, full=True)  # rewrites every segment: nothing of the first run is listed any more
    assert read_latest(sink).manifest["previous_run_id"] == first.run_id
    assert sink.list(f"runs/{first.run_id}/") == []
