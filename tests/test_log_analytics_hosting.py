"""The Log Analytics destination the way it runs in Azure: the timer's and the CLI's own code paths.

No test double is injected: ``run_scheduled_sync`` and ``python -m qualys sync`` build the real
``LogsIngestionClient`` with the connector's own credential (``azure_credential``), which gets its
token from a stand-in of the Function App's managed identity endpoint (``IDENTITY_ENDPOINT``), and
reach the TLS stand-in of the Logs Ingestion API through ``REQUESTS_CA_BUNDLE``. A refusing
destination fails the invocation (both log lines: the run's summary, then the failure) while
Blob Storage (here a folder) keeps being updated; the next invocation delivers every pending run.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from qualys.hosting.scheduled import FAILURE_PREFIX, SUMMARY_PREFIX, run_scheduled_sync
from qualys.output.folder import FolderSink
from qualys.output.log_tables import TABLES_BY_KIND
from qualys.sync.run import DeliveryFailedError
from qualys_simulator.server import QualysSimulator
from tests.helpers import (
    PASSWORD,
    USER,
    clear_connector_settings,
    estate_in_past,
    lines_in,
    read_latest,
    subprocess_env,
)
from tests.logs_ingestion_fake import RULE_ID, TOKEN, FakeLogsIngestion
from tests.managed_identity_fake import CLIENT_ID, FakeManagedIdentity

ROOT = Path(__file__).resolve().parents[1]
DEVICES, FINDINGS, CHANGES = (TABLES_BY_KIND[kind].stream for kind in ("devices", "findings", "changes"))
MONITOR = "https://monitor.azure.com"


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No connector setting and no managed identity but the stand-in's, which each test sets."""
    clear_connector_settings(monkeypatch)
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_CLIENT_ID", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ingestion(tmp_path: Path) -> Iterator[FakeLogsIngestion]:
    with FakeLogsIngestion(tmp_path) as fake:
        yield fake


def _rows_of(fake: FakeLogsIngestion, stream: str, run_id: str) -> int:
    return sum(row["run_id"] == run_id for row in fake.rows(stream))


def _cli(env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qualys", "sync", *options], env=subprocess_env(env), cwd=ROOT,
        capture_output=True, text=True, timeout=180, check=False,
    )


def test_timer_and_cli_deliver_with_the_managed_identity_and_a_refusal_keeps_blob_current(
    tmp_path: Path, ingestion: FakeLogsIngestion, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    estate = estate_in_past(150, seed=47)
    out = tmp_path / "out"
    with FakeManagedIdentity({MONITOR: TOKEN}) as identity, QualysSimulator(estate, username=USER, password=PASSWORD) as sim:
        env = {
            "QUALYS_API_URL": sim.url, "QUALYS_USERNAME": USER, "QUALYS_PASSWORD": PASSWORD, "OUTPUT_DIR": str(out),
            "QUALYS_PAGE_SIZE": "40", "LOG_ANALYTICS_ENDPOINT": ingestion.url, "LOG_ANALYTICS_RULE_ID": RULE_ID,
            "REQUESTS_CA_BUNDLE": str(ingestion.cert_path), **identity.environment(),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        caplog.set_level(logging.INFO, logger="qualys")

        # 1. The timer: the first delivery sends the current state.
        first = run_scheduled_sync()
        sink = FolderSink(str(out))
        state = read_latest(sink)
        assert _rows_of(ingestion, DEVICES, first.run_id) == len(state.current_devices) > 100
        assert _rows_of(ingestion, FINDINGS, first.run_id) == len(state.current_findings)
        assert {(r.resource.rstrip("/"), r.client_id, r.proved, r.status) for r in identity.requests} == {
            (MONITOR, CLIENT_ID, True, 200)
        }
        assert all(r.authorized and r.status == 204 for r in ingestion.requests)

        # 2. The rule loses a column (an older deployment); findings fixed in Qualys meanwhile.
        ingestion.drop_column(FINDINGS, "cvss_v3_base")
        ids = sorted(estate.assets)
        estate.fix(ids[:4], datetime.now(UTC) - timedelta(seconds=30))
        cli = _cli(env)  # the plain summary line this time
        assert cli.returncode == 1, cli.stderr
        line = cli.stdout.strip().splitlines()[-1]
        second = {"run_id": str(read_latest(sink).manifest["run_id"])}
        assert line.startswith(f"sync complete: run {second['run_id']} "), "the CLI's run is published"
        assert line.endswith("then it failed (below); the next run delivers what is pending")
        error = [line for line in cli.stderr.splitlines() if line.startswith("error: ")]
        assert len(error) == 1 and "azd provision" in error[0] and f"Run {second['run_id']} is complete" in error[0]
        assert "cvss_v3_base" in error[0]

        # 3. The timer again: it fails (the alert fires), logging the run's summary and the failure.
        estate.fix(ids[4:8], datetime.now(UTC) - timedelta(seconds=30))
        caplog.clear()
        with pytest.raises(DeliveryFailedError) as failed:
            run_scheduled_sync()
        third = failed.value.result
        assert read_latest(sink).manifest["run_id"] == third.run_id != second["run_id"]
        lines = [r.getMessage() for r in caplog.records]
        summaries = [line for line in lines if line.startswith(SUMMARY_PREFIX)]
        failures = [line for line in lines if line.startswith(FAILURE_PREFIX)]
        assert len(summaries) == 1 and len(failures) == 1
        assert json.loads(summaries[0][len(SUMMARY_PREFIX):])["run_id"] == third.run_id
        failure = json.loads(failures[0][len(FAILURE_PREFIX):])
        assert failure["error"] == "DeliveryFailedError" and "cvss_v3_base" in failure["cause"]

        # 4. Redeployed: the CLI delivers the two pending runs, then its own, in order.
        ingestion.redeploy()
        cli = _cli(env, "--json")
        assert cli.returncode == 0, cli.stderr
        fourth = json.loads(cli.stdout.strip().splitlines()[-1])
    assert fourth["log_analytics"]["runs"] == [second["run_id"], third.run_id, fourth["run_id"]]
    for run_id in (second["run_id"], third.run_id, fourth["run_id"]):
        manifest: dict[str, Any] = json.loads((out / "runs" / run_id / "manifest.json").read_text())
        for stream, kind in ((DEVICES, "/devices/"), (FINDINGS, "/findings/")):
            lines_in_run = lines_in(out, manifest["files"], kind)
            assert _rows_of(ingestion, stream, run_id) == lines_in_run, (run_id, stream)
        feed = lines_in(out, manifest["changes"]["files"])
        assert _rows_of(ingestion, CHANGES, run_id) == feed
    assert _rows_of(ingestion, CHANGES, second["run_id"]) > 0 and _rows_of(ingestion, CHANGES, third.run_id) > 0
    assert sum(ingestion.repeats(s) for s in (DEVICES, FINDINGS, CHANGES)) == 0
    # Each process asked the identity endpoint for its token; nothing else was ever offered.
    assert {r.status for r in identity.requests} == {200} and len(identity.requests) >= 3
    for text in (caplog.text, cli.stdout, cli.stderr, json.dumps(ingestion.rows(DEVICES))):
        assert PASSWORD not in text and TOKEN not in text and identity.header not in text
    print(
        f"\ntoken requests: {len(identity.requests)}; delivered by the last CLI run: {fourth['log_analytics']['rows']}"
        f" for runs {fourth['log_analytics']['runs']}"
    )


def test_an_identity_without_a_token_fails_the_delivery_with_the_fix(
    tmp_path: Path, ingestion: FakeLogsIngestion, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """AZURE_CLIENT_ID names no identity of the Function App: the managed identity endpoint refuses the
    token, the run still reaches Blob Storage, and the failure line says which setting to check."""
    estate = estate_in_past(40, seed=51)
    out = tmp_path / "out"
    with FakeManagedIdentity({MONITOR: TOKEN}) as identity, QualysSimulator(estate, username=USER, password=PASSWORD) as sim:
        env = {
            "QUALYS_API_URL": sim.url, "QUALYS_USERNAME": USER, "QUALYS_PASSWORD": PASSWORD, "OUTPUT_DIR": str(out),
            "LOG_ANALYTICS_ENDPOINT": ingestion.url, "LOG_ANALYTICS_RULE_ID": RULE_ID,
            "REQUESTS_CA_BUNDLE": str(ingestion.cert_path), **identity.environment(),
            "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000000",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        caplog.set_level(logging.INFO, logger="qualys")
        with pytest.raises(DeliveryFailedError) as failed:
            run_scheduled_sync()
    assert read_latest(FolderSink(str(out))).manifest["run_id"] == failed.value.result.run_id
    assert "could not get a token" in failed.value.cause and "AZURE_CLIENT_ID" in failed.value.action
    assert ingestion.requests == [] and {r.status for r in identity.requests} == {400}
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith(FAILURE_PREFIX)]
    assert len(failures) == 1 and "AZURE_CLIENT_ID" in failures[0]
