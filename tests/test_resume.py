"""A sync process killed mid-run is resumed by the next one; readers never see a partial run."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qualys.output.folder import FolderSink
from qualys_simulator.server import Latency, QualysSimulator
from tests.helpers import PASSWORD, USER, assert_matches_truth, estate_in_past, listed_files, read_latest
from tests.state_model import State, expected_changes, next_state


class LatestWatcher(threading.Thread):
    """Polls latest.json like a downstream reader and records anything that is not a complete run."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()
        self.violations: list[str] = []
        self.observations = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                latest = json.loads((self.root / "latest.json").read_text())
                manifest = json.loads((self.root / latest["manifest"]).read_text())
                missing = [f for f in listed_files(manifest) if not (self.root / f).exists()]
                if manifest.get("status") != "complete" or missing:
                    self.violations.append(f"{latest['run_id']}: status {manifest.get('status')}, missing {missing[:3]}")
                self.observations += 1
            except FileNotFoundError:
                pass
            time.sleep(0.01)


@pytest.mark.parametrize("partitions", ["1", "3"])
def test_killed_sync_is_resumed_and_complete(tmp_path: Path, partitions: str) -> None:
    estate = estate_in_past(500, seed=5)
    with QualysSimulator(estate, username=USER, password=PASSWORD, latency=Latency(hostasset=0.1)) as simulator:
        env = {
            **os.environ, "QUALYS_API_URL": simulator.url, "QUALYS_USERNAME": USER, "QUALYS_PASSWORD": PASSWORD,
            "OUTPUT_DIR": str(tmp_path), "QUALYS_PAGE_SIZE": "20", "QUALYS_ASSET_PARTITIONS": partitions,
        }
        command = [sys.executable, "-m", "qualys", "sync"]
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
        first_id = read_latest(FolderSink(tmp_path)).manifest["run_id"]
        watcher = LatestWatcher(tmp_path)
        watcher.start()

        victim = subprocess.Popen([*command, "--full"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        checkpoint_file = tmp_path / "state" / "checkpoint.json"
        deadline = time.monotonic() + 60
        checkpoint: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                checkpoint = json.loads(checkpoint_file.read_text())
            except (FileNotFoundError, ValueError):
                checkpoint = {}
            if int(str(checkpoint.get("pages", 0))) >= 4:
                break
            time.sleep(0.02)
        victim.kill()
        assert victim.wait(timeout=10) == -9
        checkpoint = json.loads(checkpoint_file.read_text())
        pages_before = int(str(checkpoint["pages"]))
        assert 4 <= pages_before < 20, "the kill must land mid-run"
        assert len(checkpoint["ranges"]) == int(partitions)  # type: ignore[arg-type]
        assert read_latest(FolderSink(tmp_path)).manifest["run_id"] == first_id

        resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
        watcher.stop.set()
        watcher.join()

    run = read_latest(FolderSink(tmp_path))
    assert run.manifest["run_id"] == checkpoint["run_id"] and run.manifest["resumes"] == 1
    assert run.manifest["mode"] == "full" and "resumed" in resumed.stdout
    assert_matches_truth(run, estate)
    run_dir = tmp_path / "runs" / str(run.manifest["run_id"])
    on_disk = sorted(p.relative_to(tmp_path).as_posix() for p in run_dir.rglob("*.jsonl"))
    assert on_disk == sorted(listed_files(run.manifest, in_run=str(run.manifest["run_id"]))), "no orphan or missing files"
    assert watcher.observations > 10 and watcher.violations == []
    for output in (first.stdout, first.stderr, resumed.stdout, resumed.stderr):
        assert PASSWORD not in output


def test_killed_while_building_the_state_resumes_to_the_same_state_and_changes(tmp_path: Path) -> None:
    """SIGKILL after every page is written, while the state segments are being written; the next run finishes."""
    estate = estate_in_past(5000, seed=17)
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        env = {
            **os.environ, "QUALYS_API_URL": simulator.url, "QUALYS_USERNAME": USER, "QUALYS_PASSWORD": PASSWORD,
            "OUTPUT_DIR": str(tmp_path), "QUALYS_PAGE_SIZE": "500",
        }
        command = [sys.executable, "-m", "qualys", "sync"]
        subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
        first = read_latest(FolderSink(tmp_path))
        before = State(dict(first.current_devices), dict(first.current_findings))
        ids = sorted(estate.assets)
        estate.touch(ids[::40], datetime.now(UTC) - timedelta(seconds=30))  # every segment changes
        estate.fix(ids[7::50], datetime.now(UTC) - timedelta(seconds=30))

        victim = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        checkpoint_file = tmp_path / "state" / "checkpoint.json"
        deadline = time.monotonic() + 60
        run_id = ""
        while time.monotonic() < deadline and victim.poll() is None:
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                run_id = json.loads(checkpoint_file.read_text())["run_id"]
            if run_id and list((tmp_path / "runs" / run_id).glob("current/findings/*.jsonl")):
                break
            time.sleep(0.002)
        victim.kill()
        assert victim.wait(timeout=10) == -9, "the kill must land while the state is written"
        checkpoint = json.loads(checkpoint_file.read_text())
        assert all(r["done"] for r in checkpoint["ranges"]), "every page was written before the kill"
        assert not (tmp_path / "runs" / run_id / "manifest.json").exists()
        assert read_latest(FolderSink(tmp_path)).manifest["run_id"] == first.manifest["run_id"]

        resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
        assert "resum" in resumed.stdout + resumed.stderr
        run = read_latest(FolderSink(tmp_path))
        assert run.manifest["run_id"] == run_id and run.manifest["resumes"] == 1
        window_after = datetime.fromisoformat(str(run.manifest["window"]["modified_after"]).replace("Z", "+00:00"))  # type: ignore[index]
        cutoff = str(run.manifest["current"]["modified_after"])  # type: ignore[index]
        expected = next_state(before, estate, full=False, window_after=window_after, cutoff=cutoff)
    assert run.current_devices == expected.devices and run.current_findings == expected.findings
    got = [(c["change"], c["asset_id"], c["qid"], c["reason"], c["fields"]) for c in run.changes]
    assert got == expected_changes(before, expected, cutoff) and got
    on_disk = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "runs" / run_id).rglob("*.jsonl"))
    assert on_disk == sorted(listed_files(run.manifest, in_run=run_id)), "no orphan or missing files"
