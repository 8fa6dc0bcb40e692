"""The current state and the change feed over many runs: mutations, clock moves, full and incremental, interruptions.

Real parts: the simulator over HTTP, the folder sink (and Azurite for Blob Storage); the
expected state and feed come from the simulator's truth through :mod:`tests.state_model`.
"""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest

from qualys.config.settings import LocalOutput
from qualys.errors import QualysApiError, SinkError
from qualys.output.folder import FolderSink
from qualys.output.sink import JSON, Sink
from qualys.sync.run import SyncResult, run_sync
from qualys.timestamps import parse_datetime
from qualys_simulator.server import Fault, QualysSimulator
from tests.helpers import PASSWORD, USER, Clock, Run, client_for, estate_in_past, listed_files, read_latest, settings_for
from tests.state_model import State, expected_changes, next_state

SCHEMAS = Path(__file__).resolve().parents[1] / "qualys" / "schemas"


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))


class BreakingSink(FolderSink):
    """A folder whose storage fails at the n-th write of a state segment or change part (then works again)."""

    def __init__(self, root: Path) -> None:
        super().__init__(str(root))
        self.fail_after: int | None = None
        self.failures = 0

    def write_chunks(self, path: str, chunks: Iterable[bytes], content_type: str = JSON) -> None:
        if self.fail_after is not None and ("/current/" in path or "/changes/" in path):
            if self.fail_after == 0:
                self.fail_after = None
                self.failures += 1
                raise SinkError(f"Simulated storage failure writing {path}.")
            self.fail_after -= 1
        super().write_chunks(path, chunks, content_type)


def sync(simulator: QualysSimulator, sink: Sink, clock: Clock, *, full: bool = False, page_size: int = 50) -> SyncResult:
    settings = dataclasses.replace(settings_for(simulator, LocalOutput("unused"), page_size), full_sync_every_days=7)
    with client_for(simulator) as client:
        return run_sync(settings, full=full, sink=sink, client=client, now=clock)


def check_run(run: Run, previous: State | None, simulator: QualysSimulator, sink: Sink) -> State:
    """The run's state and feed against the model, and no stray file in the run; returns the model's new state."""
    manifest = run.manifest
    run_id = str(manifest["run_id"])
    on_storage = sorted(sink.list(f"runs/{run_id}/"))
    assert on_storage == sorted([*listed_files(manifest, in_run=run_id), f"runs/{run_id}/manifest.json"])
    window = manifest["window"]
    current = manifest["current"]
    changes = manifest["changes"]
    assert isinstance(window, dict) and isinstance(current, dict) and isinstance(changes, dict)
    after = parse_datetime(str(window["modified_after"]))
    assert after is not None
    cutoff = str(current["modified_after"])
    full = manifest["mode"] == "full"
    expected = next_state(previous, simulator.estate, full=full, window_after=after, cutoff=cutoff)
    assert set(run.current_devices) == set(expected.devices)
    assert run.current_devices == expected.devices
    assert set(run.current_findings) == set(expected.findings)
    assert run.current_findings == expected.findings
    if previous is None:
        assert changes["baseline"] is True and run.changes == []
    else:
        assert changes["baseline"] is False
        got = [(c["change"], c["asset_id"], c["qid"], c["reason"], c["fields"]) for c in run.changes]
        assert got == expected_changes(previous, expected, cutoff)
        assert {c["run_id"] for c in run.changes} <= {manifest["run_id"]}
        assert {c["observed_at"] for c in run.changes} <= {manifest["started_at"]}
    change_validator = validator("change")
    for record in run.changes:
        change_validator.validate(record)
    return expected


def test_state_and_changes_follow_the_truth_over_many_runs(tmp_path: Path) -> None:
    rng = random.Random(20261201)
    estate = estate_in_past(1700, seed=3, hours_ago=2)  # two segments: some runs leave one untouched
    sink = BreakingSink(tmp_path)
    clock = Clock(estate.now + timedelta(hours=1))
    device_validator, finding_validator = validator("device"), validator("finding")
    seen_changes: set[str] = set()
    seen_reasons: set[str] = set()
    modes: list[str] = []
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        sync(simulator, sink, clock)
        run = read_latest(sink)
        state = check_run(run, None, simulator, sink)
        last_full = clock.now
        for round_number in range(14):
            clock.now += rng.choice([timedelta(minutes=10), timedelta(hours=5), timedelta(days=1), timedelta(days=4)])
            when = clock.now - timedelta(minutes=1)
            ids = sorted(estate.assets)
            # Changes cluster in one part of the id space, as a scan of one subnet would.
            start = rng.randrange(len(ids) - 400)
            cluster = ids[start : start + 400]
            estate.touch(rng.sample(cluster, 6), when)
            estate.fix(rng.sample(cluster, 4), when)
            estate.rename(rng.sample(cluster, 2), when)
            estate.check_in(rng.sample(cluster, 5), when)
            if round_number % 3 == 1:
                estate.delete(rng.sample(ids, 3))
            if round_number % 4 == 2:
                estate.add(4, when)
            if round_number % 5 == 3:
                estate.update_kb(rng.sample(sorted(estate.kb), 5), when)
            full = round_number % 6 == 5
            interruption = round_number % 4
            # Incremental runs read a few pages of 5, so an interruption lands mid-pull.
            page_size = 100 if full else 5
            if interruption == 1:  # the pull stops mid-way (Qualys keeps failing), the next invocation resumes
                simulator.inject(Fault("hostasset", "http_500", times=100, skip=2))
                with pytest.raises(QualysApiError):
                    sync(simulator, sink, clock, full=full, page_size=page_size)
                simulator.clear_faults()
            elif interruption == 3:  # the storage fails while the state is written, after a few files
                sink.fail_after = rng.randint(0, 3)
                with pytest.raises(SinkError):
                    sync(simulator, sink, clock, full=full, page_size=page_size)
                assert sink.failures
                # What an earlier build of the run may have left that this one does not write: removed.
                unfinished = json.loads((tmp_path / "state" / "checkpoint.json").read_text())["run_id"]
                stray = tmp_path / "runs" / unfinished / "current" / "findings" / "part-00099.jsonl"
                stray.parent.mkdir(parents=True, exist_ok=True)
                stray.write_text("{}\n")
            before = json.loads((tmp_path / "latest.json").read_text())["run_id"]
            result = sync(simulator, sink, clock, full=full, page_size=page_size)
            run = read_latest(sink)
            assert run.manifest["run_id"] == result.run_id != before
            assert run.manifest["previous_run_id"] == before
            expect_full = full or clock.now - last_full >= timedelta(days=7)
            assert (run.manifest["mode"] == "full") == expect_full, (round_number, run.manifest["mode"])
            if expect_full:
                last_full = clock.now
            modes.append(str(run.manifest["mode"]))
            state = check_run(run, state, simulator, sink)
            written = {int(str(s["first_asset_id"])) for s in run.manifest["current"]["segments"]  # type: ignore[index]
                       if str(s["devices_file"]).startswith(f"runs/{result.run_id}/")}
            for asset_id, record in run.current_devices.items():  # the records this run wrote (schemas are slow)
                if int(asset_id) in written:
                    device_validator.validate(record)
            for (asset_id, _), record in run.current_findings.items():
                if int(asset_id) in written:
                    finding_validator.validate(record)
            seen_changes.update(str(c["change"]) for c in run.changes)
            seen_reasons.update(str(c["reason"]) for c in run.changes if c["reason"])
    # The sequence exercised every kind of change and every reason, and both kinds of run.
    assert seen_changes == {
        "device_added", "device_updated", "device_removed", "finding_added", "finding_updated", "finding_removed",
    }
    assert seen_reasons == {"aged_out", "not_returned", "no_longer_detected"}
    assert {"full", "incremental"} <= set(modes)
    assert sink.failures >= 2


def test_a_run_with_nothing_changed_writes_no_segment_and_an_empty_feed(tmp_path: Path) -> None:
    estate = estate_in_past(300, seed=8)
    sink = FolderSink(str(tmp_path))
    # Past the 30-minute overlap of the estate's last change, and before any asset ages out
    # (each is at least an hour inside the window when generated).
    clock = Clock(estate.now + timedelta(minutes=35))
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        sync(simulator, sink, clock)
        first = read_latest(sink)
        clock.now += timedelta(minutes=20)
        sync(simulator, sink, clock)
        second = read_latest(sink)
    assert second.manifest["mode"] == "incremental" and second.changes == []
    assert second.manifest["current"]["segments"] == first.manifest["current"]["segments"]  # type: ignore[index]
    assert second.current_devices == first.current_devices and second.current_findings == first.current_findings
    run_dir = tmp_path / "runs" / str(second.manifest["run_id"])
    assert not (run_dir / "current").exists()
    assert [p.stat().st_size for p in (run_dir / "changes").iterdir()] == [0]  # one empty part: an empty feed


def test_one_changed_asset_rewrites_only_its_segment(tmp_path: Path) -> None:
    estate = estate_in_past(2600, seed=9)
    sink = FolderSink(str(tmp_path))
    clock = Clock(estate.now + timedelta(hours=1))
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        sync(simulator, sink, clock, page_size=200)
        first = read_latest(sink)
        segments = first.manifest["current"]["segments"]  # type: ignore[index]
        assert len(segments) >= 2
        middle = sorted(int(a) for a in first.current_devices)[len(first.current_devices) // 2]
        clock.now += timedelta(minutes=20)
        estate.rename([middle], clock.now - timedelta(minutes=1))
        sync(simulator, sink, clock, page_size=200)
        second = read_latest(sink)
    new_segments = second.manifest["current"]["segments"]  # type: ignore[index]
    rewritten = [s for s in new_segments if s not in segments]
    assert len(rewritten) == 1 and rewritten[0]["first_asset_id"] <= middle <= rewritten[0]["last_asset_id"]
    assert len(new_segments) == len(segments)
    assert [(c["change"], c["asset_id"], c["fields"]) for c in second.changes] == [
        ("device_updated", str(middle), ["name"])
    ]


def test_first_run_is_a_baseline_with_sorted_segments_of_bounded_size(tmp_path: Path) -> None:
    estate = estate_in_past(2300, seed=4)
    sink = FolderSink(str(tmp_path))
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        result = sync(simulator, sink, Clock(estate.now + timedelta(hours=1)), page_size=200)
    run = read_latest(sink)
    changes = run.manifest["changes"]
    assert isinstance(changes, dict) and changes["baseline"] is True
    assert [(tmp_path / path).stat().st_size for path in changes["files"]] == [0]
    assert run.manifest["previous_run_id"] is None
    segments = run.manifest["current"]["segments"]  # type: ignore[index]
    assert [s["devices"] for s in segments] == [1000, result.devices - 1000]  # the remainder is at least half
    assert run.current_devices == run.devices and run.current_findings == run.findings


@pytest.mark.parametrize("damage", ["file cut short", "one line cut short"])
def test_a_damaged_previous_state_stops_an_incremental_run_and_a_full_run_rebuilds_it(tmp_path: Path, damage: str) -> None:
    estate = estate_in_past(300, seed=12)
    sink = FolderSink(str(tmp_path))
    clock = Clock(estate.now + timedelta(hours=1))
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        sync(simulator, sink, clock)
        good = read_latest(sink)
        segment = good.manifest["current"]["segments"][0]  # type: ignore[index]
        damaged = tmp_path / segment["findings_file"]
        if damage == "file cut short":
            damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
        else:  # as many lines as before (the manifest's counts still match), the last asset's not re-read
            lines = damaged.read_bytes().splitlines()
            lines[-1] = lines[-1][: len(lines[-1]) // 2]
            damaged.write_bytes(b"\n".join(lines) + b"\n")
        clock.now += timedelta(minutes=20)
        estate.touch([segment["first_asset_id"]], clock.now - timedelta(minutes=1))
        with pytest.raises(SinkError) as failure:
            sync(simulator, sink, clock)
        message = str(failure.value)
        assert segment["findings_file"] in message and "--full" in message
        latest = json.loads((tmp_path / "latest.json").read_text())
        assert latest["run_id"] == good.manifest["run_id"], "latest.json still points to the last complete run"
        sync(simulator, sink, clock, full=True)
        rebuilt = read_latest(sink)
    changes = rebuilt.manifest["changes"]
    assert isinstance(changes, dict) and changes["baseline"] is True
    assert "could not be read" in str(changes["baseline_reason"])
    assert rebuilt.current_devices == rebuilt.devices


def test_state_on_blob_storage(azurite_connection_string: str) -> None:
    from qualys.config.secret import Secret
    from qualys.config.settings import BlobOutput
    from qualys.output.sink import open_sink

    container = f"state-{random.randrange(1 << 30):x}"
    output = BlobOutput(container, connection_string=Secret(azurite_connection_string))
    sink = open_sink(output)
    estate = estate_in_past(1200, seed=21)
    clock = Clock(estate.now + timedelta(hours=1))
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        sync(simulator, sink, clock, page_size=100)
        first = read_latest(sink)
        state = check_run(first, None, simulator, sink)
        clock.now += timedelta(days=1)
        ids = sorted(estate.assets)
        estate.fix(ids[:3], clock.now - timedelta(minutes=1))
        estate.delete(ids[-2:])
        sync(simulator, sink, clock, page_size=100, full=True)
        second = read_latest(sink)
        check_run(second, state, simulator, sink)


def test_the_demo_shows_a_change_feed_with_each_kind_of_change(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "qualys", "demo", "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, check=True, cwd=Path(__file__).resolve().parents[1],
    )
    run = read_latest(FolderSink(str(tmp_path / "out")))
    assert run.manifest["mode"] == "incremental" and run.manifest["changes"]["baseline"] is False  # type: ignore[index]
    printed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("  {")]
    kinds = {(record["change"], record["reason"]) for record in printed}
    assert kinds == {
        ("finding_added", None), ("device_removed", "aged_out"), ("finding_removed", "aged_out"),
        ("finding_removed", "no_longer_detected"), ("device_updated", None),
    }
    assert all(record in run.changes for record in printed), "the demo prints records of the run's feed"
    assert [c for c in run.changes if c["change"] == "device_removed"] == [
        c for c in printed if c["change"] == "device_removed"
    ], "exactly one asset ages out"
