"""The Log Analytics destination against a TLS stand-in of the Logs Ingestion API, driven by the real client.

Row for row against the simulator's truth (through the state model), resumed after failures and a
kill without re-sending accepted batches, and refusals reported with the table, the column and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from qualys.config.secret import Secret
from qualys.config.settings import BlobOutput, LocalOutput, LogAnalyticsTarget
from qualys.output.folder import FolderSink
from qualys.output.log_delivery import LogAnalyticsDelivery, LogDeliveryError
from qualys.output.log_tables import TABLES_BY_KIND
from qualys.output.runs import RunOutput
from qualys.output.sink import Sink, open_sink
from qualys.sync.run import DeliveryFailedError, SyncResult, run_sync
from qualys_simulator.server import QualysSimulator
from qualys_simulator.truth import expected_run
from tests.helpers import PASSWORD, USER, Clock, client_for, estate_in_past, lines_in, read_latest, settings_for
from tests.logs_ingestion_fake import DROP, RULE_ID, FakeLogsIngestion, IngestionFault

ROOT = Path(__file__).resolve().parents[1]
DEVICES, FINDINGS, CHANGES = (TABLES_BY_KIND[kind].stream for kind in ("devices", "findings", "changes"))


@pytest.fixture
def ingestion(tmp_path: Path) -> Iterator[FakeLogsIngestion]:
    with FakeLogsIngestion(tmp_path) as fake:
        yield fake


def target(fake: FakeLogsIngestion) -> LogAnalyticsTarget:
    return LogAnalyticsTarget(fake.url, RULE_ID, {kind: table.stream for kind, table in TABLES_BY_KIND.items()})


def sync(
    simulator: QualysSimulator, sink: Sink, clock: Clock, fake: FakeLogsIngestion, *, full: bool = False, **client: Any
) -> SyncResult:
    settings = dataclasses.replace(settings_for(simulator, LocalOutput("unused"), 50), log_analytics=target(fake))
    with client_for(simulator) as qualys:
        return run_sync(settings, full=full, sink=sink, client=qualys, now=clock, log_uploader=fake.client(**client))


def without_run_columns(rows: list[dict[str, Any]], run_id: str, started_at: str) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        record = dict(row)
        assert record.pop("TimeGenerated") == started_at == record.pop("run_started_at") and record["run_id"] == run_id
        if "change" not in record:
            del record["run_id"]
        out.append(record)
    return out


def test_runs_reach_the_three_tables_row_for_row(tmp_path: Path, ingestion: FakeLogsIngestion) -> None:
    estate = estate_in_past(300, seed=41)
    sink = FolderSink(str(tmp_path / "out"))
    clock = Clock(estate.now + timedelta(hours=1))
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        first = sync(simulator, sink, clock, ingestion)
        one = read_latest(sink)
        # The first delivery sends the current state, so the tables start complete.
        assert without_run_columns(ingestion.rows(DEVICES), first.run_id, str(one.manifest["started_at"])) == list(
            one.current_devices.values()
        )
        assert len(ingestion.rows(FINDINGS)) == len(one.current_findings) and ingestion.rows(CHANGES) == []
        clock.now += timedelta(hours=4)
        ids = sorted(estate.assets)
        estate.touch(ids[:5], clock.now - timedelta(minutes=1))
        estate.fix(ids[5:8], clock.now - timedelta(minutes=1))
        second = sync(simulator, sink, clock, ingestion)
        two = read_latest(sink)
    started = str(two.manifest["started_at"])
    devices = [r for r in ingestion.rows(DEVICES) if r["run_id"] == second.run_id]
    findings = [r for r in ingestion.rows(FINDINGS) if r["run_id"] == second.run_id]
    changes = [r for r in ingestion.rows(CHANGES) if r["run_id"] == second.run_id]
    # Later runs send what they read, and their change feed, each record once, in the files' order.
    assert without_run_columns(devices, second.run_id, started) == [two.devices[k] for k in _order(sink, two, "devices")]
    assert sorted(map(_key, without_run_columns(findings, second.run_id, started))) == sorted(map(_key, two.findings.values()))
    assert without_run_columns(changes, second.run_id, started) == two.changes and changes
    assert all(ingestion.repeats(stream) == 0 for stream in (DEVICES, FINDINGS, CHANGES))
    status = json.loads((tmp_path / "out" / "runs" / second.run_id / "log-analytics.json").read_text())
    assert status["complete"] is True and status["mode"] == "run"
    assert status["rows"] == {
        "QualysDevices_CL": len(devices), "QualysFindings_CL": len(findings), "QualysChanges_CL": len(changes)
    }
    assert second.stats["log_analytics"]["runs"] == [second.run_id]  # type: ignore[index]
    assert all(r.authorized and r.gzip and r.status == 204 for r in ingestion.requests)
    assert PASSWORD not in json.dumps(ingestion.rows(DEVICES))
    first_rows = [sum(r["run_id"] == first.run_id for r in ingestion.rows(s)) for s in (DEVICES, FINDINGS, CHANGES)]
    print(
        f"\nfirst run (current state): {first_rows[0]} / {first_rows[1]} / {first_rows[2]} rows;"
        f" second run (what it read + changes): {len(devices)} / {len(findings)} / {len(changes)} rows"
        " (QualysDevices_CL / QualysFindings_CL / QualysChanges_CL)"
    )


def test_throttling_server_errors_and_oversized_batches_are_retried_without_loss(
    tmp_path: Path, ingestion: FakeLogsIngestion
) -> None:
    estate = estate_in_past(200, seed=42)
    sink = FolderSink(str(tmp_path / "out"))
    ingestion.inject(
        IngestionFault(429, retry_after=1), IngestionFault(500, skip=1), IngestionFault(413, skip=1), IngestionFault(503)
    )
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        started = time.monotonic()
        sync(simulator, sink, Clock(estate.now + timedelta(hours=1)), ingestion)
        elapsed = time.monotonic() - started
    run = read_latest(sink)
    assert len(ingestion.rows(DEVICES)) == len(run.current_devices)
    assert len(ingestion.rows(FINDINGS)) == len(run.current_findings)
    assert sum(ingestion.repeats(s) for s in (DEVICES, FINDINGS, CHANGES)) == 0
    statuses = [r.status for r in ingestion.requests]
    assert {429, 500, 413, 503} <= set(statuses)
    assert elapsed >= 1, "the client waited as Retry-After said"


def test_a_refused_batch_stops_with_the_table_the_column_and_the_fix(tmp_path: Path, ingestion: FakeLogsIngestion) -> None:
    estate = estate_in_past(60, seed=43)
    sink = FolderSink(str(tmp_path / "out"))
    ingestion.drop_column(FINDINGS, "cvss_v3_base")  # a rule deployed by an older version
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator, pytest.raises(LogDeliveryError) as refused:
        sync(simulator, sink, Clock(estate.now + timedelta(hours=1)), ingestion)
    message = str(refused.value)
    assert "QualysFindings_CL" in message and "cvss_v3_base" in message and "azd provision" in message
    assert "\n" not in message and "Bearer" not in message and ingestion.credential.token not in message
    # Blob (here the folder) has the run; the devices went; the next invocation resumes from the findings.
    assert read_latest(sink).manifest["run_id"]
    assert ingestion.rows(DEVICES) and not ingestion.rows(FINDINGS)


def test_a_refusing_destination_does_not_hold_blob_storage_back(tmp_path: Path, ingestion: FakeLogsIngestion) -> None:
    """Blob Storage is the system of record: while Log Analytics refuses, runs are still published
    (each invocation fails, so the alert fires); once it accepts, every run goes, in order, once."""
    estate = estate_in_past(120, seed=46)
    sink = FolderSink(str(tmp_path / "out"))
    clock = Clock(estate.now + timedelta(hours=1))
    ids = sorted(estate.assets)
    published: list[str] = []
    refusals: list[int] = []
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        first = sync(simulator, sink, clock, ingestion)  # delivered whole: the current state
        ingestion.drop_column(FINDINGS, "cvss_v3_base")  # then a rule from an older version
        for round_number in range(3):
            clock.now += timedelta(hours=4)
            estate.fix(ids[round_number * 3 : round_number * 3 + 3], clock.now - timedelta(minutes=1))
            asked = len(ingestion.requests)
            with pytest.raises(DeliveryFailedError) as failed:
                sync(simulator, sink, clock, ingestion)
            refusals.append(sum(r.status == 400 for r in ingestion.requests[asked:]))
            result = failed.value.result
            assert read_latest(sink).manifest["run_id"] == result.run_id, "the run is published all the same"
            assert "cvss_v3_base" in failed.value.cause and f"Run {result.run_id} is complete" in str(failed.value)
            assert result.stats["log_analytics"]["error"] == failed.value.cause  # type: ignore[index]
            published.append(result.run_id)
            # The first failing run's own delivery failed; later ones fail on the pending run first and
            # do not try the destination again after their sync: none of their rows went.
            sent = sum(r["run_id"] == result.run_id for r in ingestion.rows(DEVICES))
            assert sent == (result.devices if round_number == 0 else 0)
        # One refused attempt per invocation (the same batch each time), not a second one after the sync.
        assert refusals[0] > 0 and len(set(refusals)) == 1, refusals
        ingestion.redeploy()
        clock.now += timedelta(hours=4)
        last = sync(simulator, sink, clock, ingestion)
    published.append(last.run_id)
    delivered = last.stats["log_analytics"]
    assert delivered["runs"] == published  # type: ignore[index]
    for run_id in published:
        manifest = json.loads((tmp_path / "out" / "runs" / run_id / "manifest.json").read_text())
        for stream, kind in ((DEVICES, "/devices/"), (FINDINGS, "/findings/")):
            lines = lines_in(tmp_path / "out", manifest["files"], kind)
            assert sum(r["run_id"] == run_id for r in ingestion.rows(stream)) == lines, (run_id, stream)
        changes = lines_in(tmp_path / "out", manifest["changes"]["files"])
        assert sum(r["run_id"] == run_id for r in ingestion.rows(CHANGES)) == changes
        assert changes > 0 or run_id == last.run_id  # each refused run fixed findings: its feed has rows
    assert first.run_id not in published and sum(ingestion.repeats(s) for s in (DEVICES, FINDINGS, CHANGES)) == 0


def test_a_damaged_record_line_stops_the_delivery_naming_the_file(tmp_path: Path, ingestion: FakeLogsIngestion) -> None:
    """Rows are spliced from the record lines without decoding them: a line that is not a JSON object
    (a file cut short) is named, and nothing from it onwards is sent. The fix the message gives works:
    a full sync, then state/log-analytics.json deleted, and the next delivery sends the whole state."""
    estate = estate_in_past(400, seed=48)  # one findings segment of several batches
    sink = FolderSink(str(tmp_path / "out"))
    clock = Clock(estate.now + timedelta(hours=1))
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        settings = settings_for(simulator, LocalOutput("unused"), 50)

        def plain_sync(full: bool = False) -> SyncResult:  # to the folder only: the deliveries are driven here
            with client_for(simulator) as qualys:
                return run_sync(settings, full=full, sink=sink, client=qualys, now=clock)

        plain_sync()
        run = read_latest(sink)
        damaged = next(f for f in run.manifest["current"]["files"] if "/findings/" in f)  # type: ignore[index]
        path = tmp_path / "out" / damaged
        lines = path.read_bytes().splitlines()
        path.write_bytes(b"\n".join([*lines[:-1], lines[-1][:len(lines[-1]) // 2]]) + b"\n")
        delivery = LogAnalyticsDelivery(RunOutput(sink), target(ingestion), ingestion.client())
        with pytest.raises(LogDeliveryError) as stopped:
            delivery.deliver_pending()
        assert damaged in str(stopped.value) and f"line {len(lines)}" in str(stopped.value)
        assert "state/log-analytics.json" in str(stopped.value)
        # What went is the file's first whole batches, row for row, and the status file says so.
        status = json.loads((tmp_path / "out" / "runs" / str(run.manifest["run_id"]) / "log-analytics.json").read_text())
        sent = without_run_columns(ingestion.rows(FINDINGS), str(run.manifest["run_id"]), str(run.manifest["started_at"]))
        assert status["files"][damaged]["rows"] == len(sent) and 0 < len(sent) < len(lines) - 1 and not status["complete"]
        assert sent == [json.loads(line) for line in lines[: len(sent)]]

        clock.now += timedelta(hours=1)
        rebuilt = plain_sync(full=True)
        assert rebuilt.stats["baseline"], "the full run rebuilt the damaged state"
        sink.delete("state/log-analytics.json")
        delivered = LogAnalyticsDelivery(RunOutput(sink), target(ingestion), ingestion.client()).deliver_pending()
        state = read_latest(sink)
        assert delivered.runs == [rebuilt.run_id]
        assert sum(r["run_id"] == rebuilt.run_id for r in ingestion.rows(FINDINGS)) == len(state.current_findings)
        assert sum(r["run_id"] == rebuilt.run_id for r in ingestion.rows(DEVICES)) == len(state.current_devices)


def test_a_connection_lost_mid_batch_is_sent_again(tmp_path: Path, ingestion: FakeLogsIngestion) -> None:
    """One connection closed before the answer (azure-core does not retry a POST then): the batch is
    sent again and the delivery completes, every row once (this stand-in drops what it did not answer)."""
    estate = estate_in_past(200, seed=50)
    sink = FolderSink(str(tmp_path / "out"))
    ingestion.inject(IngestionFault(DROP, skip=3))
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        result = sync(simulator, sink, Clock(estate.now + timedelta(hours=1)), ingestion)
    run = read_latest(sink)
    assert [r.status for r in ingestion.requests].count(DROP) == 1
    assert result.stats["log_analytics"]["runs"] == [result.run_id]  # type: ignore[index]
    assert len(ingestion.rows(FINDINGS)) == len(run.current_findings) and ingestion.repeats(FINDINGS) == 0


def test_an_endpoint_that_dies_mid_upload_fails_the_delivery_not_the_sync(tmp_path: Path, ingestion: FakeLogsIngestion) -> None:
    """The endpoint stops answering after a few batches (every connection closed unanswered): the batch
    is tried three times, the run is in Blob Storage, the invocation fails with one line saying the
    endpoint could not be reached, and once it is back the next invocation delivers every row, once."""
    estate = estate_in_past(300, seed=49)
    sink = FolderSink(str(tmp_path / "out"))
    clock = Clock(estate.now + timedelta(hours=1))
    ingestion.inject(IngestionFault(DROP, times=1_000_000, skip=3))
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        with pytest.raises(DeliveryFailedError) as failed:
            sync(simulator, sink, clock, ingestion)
        message = str(failed.value)
        assert "Cannot reach the Log Analytics endpoint" in message and "\n" not in message
        assert read_latest(sink).manifest["run_id"] == failed.value.result.run_id
        assert [r.status for r in ingestion.requests].count(DROP) == 3, "sent three times, then the delivery stopped"
        ingestion.revive()
        clock.now += timedelta(hours=4)
        estate.fix(sorted(estate.assets)[:3], clock.now - timedelta(minutes=1))
        second = sync(simulator, sink, clock, ingestion)
    first = failed.value.result.run_id
    assert second.stats["log_analytics"]["runs"] == [first, second.run_id]  # type: ignore[index]
    for run_id in (first, second.run_id):
        manifest = json.loads((tmp_path / "out" / "runs" / run_id / "manifest.json").read_text())
        files = manifest["current"]["files"] if run_id == first else manifest["files"]
        lines = lines_in(tmp_path / "out", files, "/findings/")
        assert sum(r["run_id"] == run_id for r in ingestion.rows(FINDINGS)) == lines, run_id
    assert sum(ingestion.repeats(s) for s in (DEVICES, FINDINGS, CHANGES)) == 0


def _key(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True)


def _order(sink: Sink, run: Any, kind: str) -> list[str]:
    ids: list[str] = []
    for path in run.manifest["files"]:
        if f"/{kind}/" in path:
            ids += [json.loads(line)["asset_id"] for line in (sink.read(path) or b"").decode().splitlines()]
    return ids


def test_a_run_into_blob_storage_reaches_the_tables(azurite_connection_string: str, ingestion: FakeLogsIngestion) -> None:
    container = f"la-{os.getpid()}-{int(time.time())}"
    sink = open_sink(BlobOutput(container, connection_string=Secret(azurite_connection_string)))
    estate = estate_in_past(250, seed=44)
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        result = sync(simulator, sink, Clock(estate.now + timedelta(hours=1)), ingestion)
        run = read_latest(sink)
        scope = datetime.fromisoformat(str(run.manifest["current"]["modified_after"]).replace("Z", "+00:00"))  # type: ignore[index]
        devices, findings = expected_run(estate, scope)  # the simulator's truth
    started = str(run.manifest["started_at"])
    assert sorted(map(_key, without_run_columns(ingestion.rows(DEVICES), result.run_id, started))) == sorted(
        map(_key, devices.values())
    )
    assert sorted(map(_key, without_run_columns(ingestion.rows(FINDINGS), result.run_id, started))) == sorted(
        map(_key, findings.values())
    )
    assert sink.read(f"runs/{result.run_id}/log-analytics.json")
    print(f"\nrows per table: {len(devices)} QualysDevices_CL, {len(findings)} QualysFindings_CL, 0 QualysChanges_CL")


def _finding_answers(fake: FakeLogsIngestion) -> list[int]:
    """Rows of each answered finding request that was accepted, in order."""
    return [r.rows for r in fake.requests if r.stream == FINDINGS and r.status == 204]


@pytest.mark.parametrize("moment", ["between batches", "batch in flight"])
def test_a_kill_mid_upload_resumes_with_the_next_invocation(
    tmp_path: Path, ingestion: FakeLogsIngestion, moment: str
) -> None:
    """A SIGKILL between two batches (here: while the client waits out a Retry-After) repeats nothing;
    one while a batch is in flight (the endpoint stores it though the client never hears back) repeats
    exactly that batch, and nothing else."""
    estate = estate_in_past(1500, seed=45)
    out = tmp_path / "out"
    ingestion.delay_seconds = 0.05 if moment == "between batches" else 0.4
    with QualysSimulator(estate, username=USER, password=PASSWORD) as simulator:
        command = [
            sys.executable, "-m", "tests.log_ingestion_driver", "--api-url", simulator.url, "--output-dir", str(out),
            "--endpoint", ingestion.url, "--certificate", str(ingestion.cert_path),
        ]
        victim = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and victim.poll() is None and len(_finding_answers(ingestion)) < 5:
            time.sleep(0.005)
        if moment == "between batches":
            # The next request is answered 503 with a long Retry-After: the client sleeps, nothing in flight.
            ingestion.inject(IngestionFault(503, retry_after=60))
            while time.monotonic() < deadline and not any(r.status == 503 for r in ingestion.requests):
                time.sleep(0.005)
        else:
            while time.monotonic() < deadline and not ingestion.in_flight(FINDINGS):
                time.sleep(0.005)
        accepted, in_flight = len(_finding_answers(ingestion)), ingestion.in_flight(FINDINGS)
        victim.kill()
        assert victim.wait(timeout=10) == -9, "the kill must land mid-upload"
        while time.monotonic() < deadline and len(_finding_answers(ingestion)) < accepted + in_flight:
            time.sleep(0.01)  # the endpoint finishes the request the client no longer waits for
        answers = _finding_answers(ingestion)
        orphaned = sum(answers[accepted:])
        assert (orphaned > 0) == (moment == "batch in flight"), (moment, in_flight, answers)
        before = len(ingestion.rows(FINDINGS))
        run = read_latest(FolderSink(str(out)))
        assert 0 < before < len(run.current_findings)
        ingestion.delay_seconds = 0
        resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    delivered = summary["log_analytics"]
    assert delivered["runs"][0] == run.manifest["run_id"] and delivered["resumed_files"] == 1
    findings = ingestion.rows(FINDINGS)
    first_run = [r for r in findings if r["run_id"] == run.manifest["run_id"]]
    unique = {_key(r) for r in first_run}
    assert len(unique) == len(run.current_findings), "every row delivered"
    repeats = ingestion.repeats(FINDINGS)
    assert repeats == len(first_run) - len(unique)
    assert repeats == orphaned, "only the batch the endpoint stored after the kill is sent again"
    print(
        f"\nkilled {moment}, after {before} of {len(run.current_findings)} finding rows were stored"
        f" ({accepted} batches answered); resumed; {repeats} rows sent twice"
    )
