"""Test helpers: settings, clients and syncs against a simulator; reading a run back from any sink."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from qualys.api.client import QualysClient
from qualys.api.retry import RetryPolicy
from qualys.config.catalog import SETTINGS, SETTINGS_BY_NAME
from qualys.config.secret import Secret
from qualys.config.settings import LocalOutput, OutputTarget, SyncSettings
from qualys.output.sink import Sink
from qualys.sync.run import SyncResult, run_sync
from qualys.timestamps import parse_datetime
from qualys_simulator.estate import Estate
from qualys_simulator.server import QualysSimulator
from qualys_simulator.truth import expected_run

USER = "sim-user"
PASSWORD = "Pa55-w0rd!sim"  # the simulator's; asserted never to appear in any output
FAST_RETRY = RetryPolicy(max_attempts=6, backoff_base=0.02, backoff_max=0.1, max_total_wait=60, concurrency_wait=0.1)


class Clock:
    """A settable clock for ``run_sync(now=...)``: the tests move time forward between runs."""

    def __init__(self, start: datetime) -> None:
        self.now = start.replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


def settings_for(
    simulator: QualysSimulator, output: OutputTarget | str, page_size: int = 50, partitions: int = 1
) -> SyncSettings:
    return SyncSettings(
        api_url=simulator.url,
        username=USER,
        password=Secret(PASSWORD),
        lookback_days=90,
        page_size=page_size,
        max_retry_wait_seconds=60,
        output=LocalOutput(output) if isinstance(output, str) else output,
        asset_partitions=partitions,
    )


def client_for(simulator: QualysSimulator, *, retry: RetryPolicy = FAST_RETRY) -> QualysClient:
    """A client of the simulator that retries fast (tests inject faults and must not wait for real backoffs)."""
    return QualysClient(simulator.url, USER, Secret(PASSWORD), retry=retry)


def sync(
    simulator: QualysSimulator,
    output: OutputTarget | str,
    *,
    full: bool = False,
    page_size: int = 50,
    partitions: int = 1,
    retry: RetryPolicy = FAST_RETRY,
) -> SyncResult:
    """One sync from ``simulator`` into ``output`` (a folder path or an output setting)."""
    with client_for(simulator, retry=retry) as client:
        return run_sync(settings_for(simulator, output, page_size, partitions), full=full, client=client)


@dataclass
class Run:
    manifest: dict[str, object]
    devices: dict[str, dict[str, object]]
    findings: dict[tuple[str, int], dict[str, object]]
    device_count: int
    finding_count: int
    #: The current state (checked: sorted, no duplicates, counts as the manifest says).
    current_devices: dict[str, dict[str, object]] = field(default_factory=dict)
    current_findings: dict[tuple[str, int], dict[str, object]] = field(default_factory=dict)
    #: The change feed, in file order.
    changes: list[dict[str, object]] = field(default_factory=list)


def listed_files(manifest: dict[str, object], in_run: str | None = None) -> list[str]:
    """Every file a manifest lists (its parts, its state's segments, its changes); with ``in_run``, only that run's."""
    current, changes = manifest.get("current"), manifest.get("changes")
    files = [
        *manifest["files"],  # type: ignore[misc]
        *(current["files"] if isinstance(current, dict) else []),
        *(changes["files"] if isinstance(changes, dict) else []),
    ]
    return [str(f) for f in files if in_run is None or str(f).startswith(f"runs/{in_run}/")]


_decoded: dict[tuple[str, int], list[dict[str, object]]] = {}


def _lines(sink: Sink, path: str) -> list[dict[str, object]]:
    """A JSON Lines file's records (decoded once per content: state segments are read by every later run)."""
    data = sink.read(path)
    assert data is not None, f"manifest lists {path} but it does not exist"
    assert data.endswith(b"\n") or not data
    key = (sink.uri(path), hash(data))
    if key not in _decoded:
        if len(_decoded) > 2000:
            _decoded.clear()
        _decoded[key] = [json.loads(line) for line in data.decode().split("\n")[:-1]]  # "\n" only: a title may hold U+2028
    return [dict(record) for record in _decoded[key]]


def read_state(sink: Sink, manifest: dict[str, object]) -> tuple[
    dict[str, dict[str, object]], dict[tuple[str, int], dict[str, object]], list[dict[str, object]]
]:
    """A manifest's current state and change feed, checked against the order and counts the contract promises."""
    current = manifest["current"]
    assert isinstance(current, dict)
    segments = current["segments"]
    assert current["files"] == [s["devices_file"] for s in segments] + [s["findings_file"] for s in segments]
    devices: dict[str, dict[str, object]] = {}
    findings: dict[tuple[str, int], dict[str, object]] = {}
    device_order: list[int] = []
    finding_order: list[tuple[int, int]] = []
    for segment in segments:
        seg_devices = _lines(sink, segment["devices_file"])
        seg_findings = _lines(sink, segment["findings_file"])
        assert (len(seg_devices), len(seg_findings)) == (segment["devices"], segment["findings"])
        assert seg_devices and int(seg_devices[0]["asset_id"]) == segment["first_asset_id"]
        assert int(seg_devices[-1]["asset_id"]) == segment["last_asset_id"]
        dates = [str(d["modified_at"]) for d in seg_devices if d["modified_at"] is not None]
        assert segment["oldest_modified_at"] == (min(dates) if dates else None)
        for record in seg_devices:
            devices[str(record["asset_id"])] = record
            device_order.append(int(str(record["asset_id"])))
        in_segment = {str(d["asset_id"]) for d in seg_devices}
        for record in seg_findings:
            assert str(record["asset_id"]) in in_segment, "a finding sits in its device's segment"
            findings[(str(record["asset_id"]), int(str(record["qid"])))] = record
            finding_order.append((int(str(record["asset_id"])), int(str(record["qid"]))))
    assert device_order == sorted(set(device_order)), "current devices sorted by asset id, each once"
    assert finding_order == sorted(set(finding_order)), "current findings sorted by asset id then QID, each once"
    assert {asset for asset, _ in findings} <= set(devices), "every current finding belongs to a current device"
    assert (current["devices"], current["findings"]) == (len(devices), len(findings))
    changes_meta = manifest["changes"]
    assert isinstance(changes_meta, dict)
    assert changes_meta["files"], "at least one change part, empty when nothing changed"
    changes = [record for path in changes_meta["files"] for record in _lines(sink, path)]
    counts = {kind: sum(1 for c in changes if c["change"] == kind) for kind in changes_meta["counts"]}
    assert counts == changes_meta["counts"] and sum(counts.values()) == len(changes)
    if changes_meta["baseline"]:
        assert changes == []
    return devices, findings, changes


def read_latest(sink: Sink) -> Run:
    """Follow latest.json like a reader would; fail on duplicates."""
    latest = json.loads(sink.read("latest.json") or b"null")
    manifest = json.loads(sink.read(latest["manifest"]) or b"null")
    assert manifest["status"] == "complete" and manifest["run_id"] == latest["run_id"]
    devices: dict[str, dict[str, object]] = {}
    findings: dict[tuple[str, int], dict[str, object]] = {}
    device_count = finding_count = 0
    for path in manifest["files"]:
        data = sink.read(path)
        assert data is not None, f"manifest lists {path} but it does not exist"
        for line in data.decode().split("\n")[:-1]:  # JSON Lines: "\n" only (a title may hold U+2028)
            record = json.loads(line)
            if "/devices/" in path:
                device_count += 1
                devices[str(record["asset_id"])] = record
            else:
                finding_count += 1
                findings[(str(record["asset_id"]), int(record["qid"]))] = record
    assert device_count == len(devices), "duplicate asset_id in a complete run"
    assert finding_count == len(findings), "duplicate (asset_id, qid) in a complete run"
    assert manifest["counts"] == {"devices": device_count, "findings": finding_count}
    current_devices, current_findings, changes = read_state(sink, manifest)
    return Run(manifest, devices, findings, device_count, finding_count, current_devices, current_findings, changes)


def assert_matches_truth(run: Run, estate: Estate) -> None:
    window = run.manifest["window"]
    assert isinstance(window, dict)
    cutoff = parse_datetime(str(window["modified_after"]))
    assert cutoff is not None
    devices, findings = expected_run(estate, cutoff)
    assert set(run.devices) == set(devices)
    for asset_id, record in devices.items():
        assert run.devices[asset_id] == record, asset_id
    assert set(run.findings) == set(findings)
    for key, record in findings.items():
        assert run.findings[key] == record, key


def estate_in_past(assets: int, seed: int = 11, hours_ago: int = 3) -> Estate:
    """An estate whose latest change is older than the incremental overlap, so a re-run sees no change."""
    from datetime import timedelta

    return Estate.generate(assets=assets, seed=seed, now=datetime.now(UTC) - timedelta(hours=hours_ago))


def lines_in(root: Path, files: Iterable[object], containing: str = "") -> int:
    """Record lines in the output files ``files`` (paths relative to ``root``) whose path contains ``containing``."""
    return sum(len((root / str(f)).read_text().splitlines()) for f in files if containing in str(f))


def clear_connector_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's environment without any connector setting (the catalogue's names)."""
    for spec in SETTINGS:
        monkeypatch.delenv(spec.name, raising=False)


def subprocess_env(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without connector settings, plus ``settings``: for a CLI subprocess."""
    env = {key: value for key, value in os.environ.items() if key not in SETTINGS_BY_NAME}
    return {**env, **settings}
