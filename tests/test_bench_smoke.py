"""The benchmark's whole flow at a tiny size: floors, syncs (id ranges, whole records, 1% changed, a state size),
table, correctness check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_flow_prints_the_table_for_a_tiny_estate(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "bench.run", "--assets", "60", "--skip-small", "--page-size", "20",
        "--hostasset-latency", "0", "--kb-latency", "0", "--tag-latency", "0",
        "--count-latency", "0", "--cache-dir", str(tmp_path / "cache"), "--state-assets", "80", "--state-latency", "0",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "correctness: OK" in out
    rows = {line.split("  ")[0]: line for line in out.splitlines() if line.startswith("(")}
    assert set(rows) == {
        "(a) floor", "(b) sync, full", "(c) sync, incremental", "(d) floor, 4 ranges", "(e) sync, full, 4 ranges",
        "(f) floor, whole records", "(g) sync, full, whole records", "(i) sync, incremental, 1% changed",
        "(j) sync, full, state of 80", "(k) sync, incremental, 1% changed, state of 80",
    }
    # 57 of the 60 assets are in the window: the floor reads 3 pages of 20, one KB batch, one tag search,
    # and so does the sync; with 4 ranges asked, 3 pages give 3 ranges: 1 count, 2 boundary searches, 3 chains.
    assert "3 / 1 / 1 / 0" in rows["(a) floor"] and "3 / 1 / 1 / 0" in rows["(b) sync, full"]
    assert " / 1 / 1 / 1 " in rows["(d) floor, 4 ranges"] and " / 1 / 1 / 1 " in rows["(e) sync, full, 4 ranges"]
    assert "3 / 1 / 1 / 0" in rows["(f) floor, whole records"] and "3 / 1 / 1 / 0" in rows["(g) sync, full, whole records"]
    assert "MISS] full sync requests" not in out and "MISS] 4-range requests" not in out
    assert "MB received with field limiting <= 25% of whole records" in out
    assert "simulator throughput:" in out and "floor schedule:" in out and "benchmark total:" in out
    assert list((tmp_path / "cache").glob("assets-60-*/hostasset/*.xml"))
    # The 1% phases re-scan one asset (of 57, and of 75 in window): an incremental run reads it again.
    assert "1 of 57 in-window assets re-scanned" in out and "1 of 75 in-window assets re-scanned" in out
    assert "every sync's peak RSS <=" in out and "incremental, nothing changed, under 5 s" in out
