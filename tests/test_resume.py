"""A sync process killed mid-run is resumed by the next one; readers never see a partial run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qualys.output.folder import FolderSink
from qualys_simulator.server import Latency, QualysSimulator
from tests.helpers import PASSWORD, USER, assert_matches_truth, estate_in_past, listed_files, read_latest


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
                missing = [f for f in manifest["files"] if not (self.root / f).exists()]
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
