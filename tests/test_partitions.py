"""Id-range partitions of the host asset search: same result as the sequential chain, whatever the split."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from qualys.api.partitions import IdRange, plan_ranges, ranges_from_bounds
from qualys.errors import AuthenticationError
from qualys.output.folder import FolderSink
from qualys.output.sink import read_json
from qualys.sync.checkpoint import CHECKPOINT_PATH, Checkpoint
from qualys.sync.run import SyncResult
from qualys_simulator.estate import Estate
from qualys_simulator.server import Fault, Latency, QualysSimulator, RequestRecord
from tests.helpers import PASSWORD, USER, Run, assert_matches_truth, client_for, estate_in_past, read_latest, sync

PAGE = 40


def partitioned(simulator: QualysSimulator, out: Path, partitions: int, *, full: bool = False) -> SyncResult:
    """A sync in pages of ``PAGE`` with ``partitions`` id ranges."""
    return sync(simulator, str(out), page_size=PAGE, partitions=partitions, full=full)


def records(run: Run) -> tuple[dict[str, dict[str, object]], dict[tuple[str, int], dict[str, object]]]:
    return run.devices, run.findings


def page_requests(simulator: QualysSimulator) -> list[RequestRecord]:
    """hostasset searches of the keyset chains (the probe's one-record searches excluded)."""
    return [r for r in simulator.requests if r.endpoint == "hostasset" and "startFromOffset" not in r.params]


def bounds_of(request: RequestRecord) -> tuple[int | None, int | None]:
    after, below = request.params.get("id GREATER"), request.params.get("id LESSER")
    return (int(after) if after else None, int(below) if below else None)


@pytest.fixture(scope="module")
def estate_and_sequential(tmp_path_factory: pytest.TempPathFactory) -> tuple[Estate, Run]:
    """One estate and its sequential run, the reference every partitioned run must equal."""
    estate = estate_in_past(430, seed=31)
    out = tmp_path_factory.mktemp("sequential")
    with QualysSimulator(estate, username=USER, password=PASSWORD) as sim:
        partitioned(sim, out, 1)
        assert not [r for r in sim.requests if r.endpoint == "count"], "the default never probes"
    return estate, read_latest(FolderSink(out))


@pytest.mark.parametrize("partitions", [2, 3, 4, 8])
def test_partitioned_run_equals_the_sequential_run(
    estate_and_sequential: tuple[Estate, Run], tmp_path: Path, partitions: int
) -> None:
    estate, sequential = estate_and_sequential
    with QualysSimulator(estate, username=USER, password=PASSWORD, latency=Latency(hostasset=0.05)) as sim:
        result = partitioned(sim, tmp_path, partitions)
        requests = list(sim.requests)
        chains = page_requests(sim)
        peak = sim.peak_concurrency.get("hostasset", 0)
    run = read_latest(FolderSink(tmp_path))
    assert records(run) == records(sequential)  # same records, field for field (order-independent)
    assert_matches_truth(run, sim.estate)
    # the probe: one count, one one-record search per boundary
    assert len([r for r in requests if r.endpoint == "count"]) == 1
    probes = [r for r in requests if "startFromOffset" in r.params]
    assert len(probes) == partitions - 1 and all(r.params["limitResults"] == "1" for r in probes)
    # one chain per range: K distinct upper bounds, the last range unbounded
    upper_bounds = {bounds_of(r)[1] for r in chains}
    assert len(upper_bounds) == partitions and None in upper_bounds
    # never more than one extra page per range over the sequential chain, and they ran at the same time
    assert len(chains) <= sequential.manifest["pages"] + partitions  # type: ignore[operator]
    assert result.pages == len(chains) and peak >= 2
    assert result.summary()["id_ranges"] == partitions == run.manifest["id_ranges"]


def test_ranges_from_bounds_cover_every_id_exactly_once() -> None:
    rng = random.Random(5)
    for _ in range(200):
        bounds = [rng.randint(1, 60) for _ in range(rng.randint(0, 6))]
        ranges = ranges_from_bounds(bounds)
        assert len(ranges) == len(set(bounds)) + 1
        assert ranges[0].after is None and ranges[-1].below is None
        for asset_id in range(0, 62):
            assert sum(r.holds(asset_id) for r in ranges) == 1, (bounds, asset_id)


def test_checkpoint_round_trip_and_damage() -> None:
    ranges = [IdRange(5, 9, True), IdRange(8, None)]
    checkpoint = Checkpoint("r", "full", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", ranges=ranges)
    assert Checkpoint.from_dict(checkpoint.to_dict()) == checkpoint
    legacy = {"run_id": "r", "mode": "full", "modified_after": "x", "started_at": "y", "after_id": 77, "pages": 3}
    assert Checkpoint.from_dict(legacy).ranges == [IdRange(77, None)]
    for bad in ({"after": "7"}, {"after": 1, "done": "yes"}, [1, 2], {"below": True}):
        with pytest.raises(Exception, match="damaged"):
            Checkpoint.from_dict({**legacy, "ranges": [bad]})


def test_killed_partitioned_run_resumes_each_range_without_a_new_probe(
    estate_and_sequential: tuple[Estate, Run], tmp_path: Path
) -> None:
    estate, sequential = estate_and_sequential
    with QualysSimulator(estate, username=USER, password=PASSWORD) as sim:
        partitioned(sim, tmp_path, 1)  # warm KB cache: pages commit at once
        # an expired password after a few pages: the full run stops with its ranges half done
        sim.inject(Fault(endpoint="hostasset", kind="http_401", times=1, skip=6))
        with pytest.raises(AuthenticationError):
            partitioned(sim, tmp_path, 3, full=True)
        raw = read_json(FolderSink(tmp_path), CHECKPOINT_PATH)
        assert raw is not None
        saved = Checkpoint.from_dict(raw)
        assert len(saved.ranges) == 3 and saved.pages >= 1
        sim.reset_log()
        result = partitioned(sim, tmp_path, 3)
        assert result.resumed
        assert not [r for r in sim.requests if r.endpoint == "count" or "startFromOffset" in r.params]
        # every range restarts from its own checkpointed position
        restarted = {bounds_of(r) for r in page_requests(sim)}
        for r in saved.ranges:
            assert r.done or (r.after, r.below) in restarted
    run = read_latest(FolderSink(tmp_path))
    assert run.manifest["resumes"] == 1
    assert records(run) == records(sequential)


@pytest.mark.parametrize(
    ("endpoint", "kind"), [("hostasset", "http_429"), ("hostasset", "reset_mid_body"), ("count", "http_503")]
)
def test_retryable_faults_in_partitioned_runs_give_the_same_result(
    estate_and_sequential: tuple[Estate, Run], tmp_path: Path, endpoint: str, kind: str
) -> None:
    estate, sequential = estate_and_sequential
    with QualysSimulator(estate, username=USER, password=PASSWORD) as sim:
        sim.inject(Fault(endpoint=endpoint, kind=kind, times=2, skip=3 if endpoint == "hostasset" else 0))
        partitioned(sim, tmp_path, 4)
        assert [r for r in sim.requests if r.fault == kind]
    assert records(read_latest(FolderSink(tmp_path))) == records(sequential)


def test_unsupported_count_api_falls_back_to_one_chain(
    estate_and_sequential: tuple[Estate, Run], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    estate, sequential = estate_and_sequential
    with QualysSimulator(estate, username=USER, password=PASSWORD) as sim:
        sim.inject(Fault(endpoint="count", kind="http_404", times=1))
        with caplog.at_level(logging.WARNING, logger="qualys.api.partitions"):
            partitioned(sim, tmp_path, 4)
        chains = page_requests(sim)
    assert "one sequential chain" in caplog.text and PASSWORD not in caplog.text
    assert read_latest(FolderSink(tmp_path)).manifest["id_ranges"] == 1
    assert {bounds_of(r)[1] for r in chains} == {None}
    assert records(read_latest(FolderSink(tmp_path))) == records(sequential)


def test_small_windows_are_not_split(tmp_path: Path) -> None:
    estate = estate_in_past(60, seed=3)
    with QualysSimulator(estate, username=USER, password=PASSWORD) as sim:
        with client_for(sim) as client:
            cutoff = "2000-01-01T00:00:00Z"
            assert plan_ranges(client, cutoff, 4, page_size=1000) == [IdRange()]  # one page holds it all: count only
            assert [r.endpoint for r in sim.requests] == ["count"]
            assert len(plan_ranges(client, cutoff, 4, page_size=30)) == 2  # two pages: two ranges, not four
        sync(sim, str(tmp_path), page_size=1000, partitions=4)
        sim.reset_log()
        sync(sim, str(tmp_path), page_size=1000, partitions=4)
        assert len(sim.requests) <= 3, [r.endpoint for r in sim.requests]  # incremental, nothing changed
    assert_matches_truth(read_latest(FolderSink(tmp_path)), estate)
