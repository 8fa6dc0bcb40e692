"""The output lock: a folder's ends with its holder's process, a Blob lease expires; live syncs exclude each other."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from qualys.errors import LockHeldError, SinkError
from qualys.output import lock as lock_module
from qualys.output.folder import FolderSink
from qualys.sync.state import RunState
from qualys_simulator.server import QualysSimulator
from tests.helpers import PASSWORD, USER, estate_in_past, read_latest, sync

HOLDER = """
import sys, time
from qualys.output.folder import FolderSink
from qualys.sync.state import RunState
held = RunState(FolderSink(sys.argv[1])).lock()
held.__enter__()
print("held", flush=True)
time.sleep(600)
"""


def hold_in_another_process(root: Path) -> subprocess.Popen[str]:
    """A live process holding the folder's lock (as a sync does for its whole run)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_live_sync_keeps_others_out_and_its_death_frees_the_lock_at_once(tmp_path: Path) -> None:
    with QualysSimulator(estate_in_past(60), username=USER, password=PASSWORD) as simulator:
        holder = hold_in_another_process(tmp_path)
        try:
            with pytest.raises(LockHeldError) as refused:
                sync(simulator, str(tmp_path))
            message = str(refused.value)
            assert f"Another sync is writing to folder {tmp_path.resolve()} (pid {holder.pid} on " in message
            assert "ends the moment that process ends" in message and "\n" not in message
            assert not (tmp_path / "latest.json").exists()
        finally:
            holder.kill()  # SIGKILL: no clean-up code runs, as when the OOM killer or a timeout ends a run
            holder.wait(timeout=10)
        started = time.monotonic()
        result = sync(simulator, str(tmp_path))
        assert result.devices > 0 and read_latest(FolderSink(tmp_path)).device_count == result.devices
    # nothing waited for an expiry: the whole sync took a fraction of the 60 s a lease would need
    assert time.monotonic() - started < 30


def test_two_syncs_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    state = RunState(FolderSink(tmp_path))
    with state.lock(), pytest.raises(LockHeldError, match="Another sync is writing"):
        state.lock().__enter__()
    with state.lock():  # released: taken again at once
        pass


def test_a_lock_whose_file_is_removed_is_reported_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock_module, "FOLDER_LOCK_CHECK_SECONDS", 0.02)
    with RunState(FolderSink(tmp_path)).lock() as handle:
        (tmp_path / "state" / "lock").unlink()  # another process may now create and lock a new file
        deadline = time.monotonic() + 5
        while handle.lost is None and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(SinkError, match=r"Lost the output lock .*removed or replaced"):
            handle.check()
