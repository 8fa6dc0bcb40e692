"""Faults injected mid-run: retryable ones still give the exact result, the rest stop cleanly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qualys.api.client import QualysClient
from qualys.api.retry import RetryPolicy
from qualys.config.secret import Secret
from qualys.errors import (
    AuthenticationError,
    KnowledgeBasePermissionError,
    PermissionDeniedError,
    QualysApiError,
    RateLimitExhaustedError,
    TemporaryFailureError,
)
from qualys.output.folder import FolderSink
from qualys.sync.checkpoint import CHECKPOINT_PATH
from qualys_simulator.server import Fault, QualysSimulator
from tests import helpers
from tests.helpers import FAST_RETRY, PASSWORD, USER, assert_matches_truth, estate_in_past, read_latest


@pytest.fixture(scope="module")
def estate_seed() -> int:
    return 23


@pytest.fixture
def simulator(estate_seed: int) -> Iterator[QualysSimulator]:
    with QualysSimulator(estate_in_past(160, seed=estate_seed), username=USER, password=PASSWORD) as sim:
        yield sim


def sync(simulator: QualysSimulator, out: Path, retry: RetryPolicy = FAST_RETRY, *, full: bool = False) -> None:
    """Pages of 20: faults land mid-run."""
    helpers.sync(simulator, str(out), page_size=20, retry=retry, full=full)


RETRYABLE = [
    ("hostasset", "http_429"),
    ("hostasset", "http_503"),
    ("hostasset", "http_502"),
    ("hostasset", "reset_mid_body"),
    ("hostasset", "truncated_body"),
    ("hostasset", "rate_limit_1965"),
    ("kb", "concurrency_1960"),
    ("kb", "code_1920"),
    ("kb", "rate_limit_1965"),
    ("kb", "http_429"),
    ("kb", "reset_mid_body"),
    ("kb", "truncated_body"),
    ("kb", "http_500"),
    ("tag", "http_503"),
    ("tag", "reset_mid_body"),
]


@pytest.mark.parametrize(("endpoint", "kind"), RETRYABLE)
def test_retryable_fault_mid_run_gives_exact_result(simulator: QualysSimulator, tmp_path: Path, endpoint: str, kind: str) -> None:
    skip = 2 if endpoint == "hostasset" else 0
    simulator.inject(Fault(endpoint=endpoint, kind=kind, times=2, skip=skip, wait_seconds=0.2))
    sync(simulator, tmp_path)
    assert_matches_truth(read_latest(FolderSink(tmp_path)), simulator.estate)
    faulted = [r for r in simulator.requests if r.fault == kind]
    assert len(faulted) == 2, [(r.endpoint, r.fault) for r in simulator.requests]


@pytest.mark.parametrize(("kind", "seconds"), [("http_429", 1.0), ("rate_limit_1965", 1.5), ("http_503", 1.0)])
def test_announced_waits_are_honoured(simulator: QualysSimulator, tmp_path: Path, kind: str, seconds: float) -> None:
    simulator.inject(Fault(endpoint="hostasset", kind=kind, times=1, skip=1, wait_seconds=seconds))
    sync(simulator, tmp_path)
    log = [r for r in simulator.requests if r.endpoint == "hostasset"]
    index = next(i for i, r in enumerate(log) if r.fault == kind)
    gap = log[index + 1].started - log[index].ended
    assert gap >= seconds * 0.95, gap
    assert gap < seconds + 2.0, gap
    assert_matches_truth(read_latest(FolderSink(tmp_path)), simulator.estate)


NON_RETRYABLE = [
    ("hostasset", "http_401", AuthenticationError, "user name or password"),
    ("hostasset", "qps_unauthorized", PermissionDeniedError, "Read Asset"),
    ("hostasset", "http_403", PermissionDeniedError, "Read Asset"),
    ("hostasset", "http_404", QualysApiError, "QUALYS_API_URL"),
    ("kb", "kb_permission", KnowledgeBasePermissionError, "KnowledgeBase permission"),
]


@pytest.mark.parametrize(("endpoint", "kind", "error", "words"), NON_RETRYABLE)
def test_non_retryable_error_stops_without_a_new_complete_run(
    simulator: QualysSimulator, tmp_path: Path, endpoint: str, kind: str, error: type[Exception], words: str
) -> None:
    sync(simulator, tmp_path)
    first = read_latest(FolderSink(tmp_path)).manifest["run_id"]
    # the second run's first KB call is the cache delta; its second hostasset call is page 2
    simulator.inject(Fault(endpoint=endpoint, kind=kind, times=1, skip=1 if endpoint == "hostasset" else 0))
    with pytest.raises(error) as caught:
        sync(simulator, tmp_path, full=True)
    message = str(caught.value)
    assert words in message and "\n" not in message and PASSWORD not in message
    assert read_latest(FolderSink(tmp_path)).manifest["run_id"] == first  # no new complete run
    assert (tmp_path / CHECKPOINT_PATH).exists()
    # the failed run is resumed and completes exactly
    sync(simulator, tmp_path)
    run = read_latest(FolderSink(tmp_path))
    assert run.manifest["run_id"] != first and run.manifest["resumes"] == 1
    assert_matches_truth(run, simulator.estate)


def test_retries_exhausted_on_rate_limits(simulator: QualysSimulator, tmp_path: Path) -> None:
    simulator.inject(Fault(endpoint="hostasset", kind="http_429", times=100, wait_seconds=0.05))
    with pytest.raises(RateLimitExhaustedError, match="dedicated Qualys API user"):
        sync(simulator, tmp_path)
    assert len([r for r in simulator.requests if r.fault == "http_429"]) == FAST_RETRY.max_attempts


def test_a_wait_beyond_the_budget_fails_at_once(simulator: QualysSimulator, tmp_path: Path) -> None:
    simulator.inject(Fault(endpoint="kb", kind="rate_limit_1965", times=1, wait_seconds=86000))
    with pytest.raises(RateLimitExhaustedError, match="86000 s"):
        sync(simulator, tmp_path)
    assert len([r for r in simulator.requests if r.fault == "rate_limit_1965"]) == 1


def test_temporary_failures_exhausted(simulator: QualysSimulator, tmp_path: Path) -> None:
    simulator.inject(Fault(endpoint="*", kind="http_503", times=100))
    with pytest.raises(TemporaryFailureError, match="allow-listed"):
        sync(simulator, tmp_path)


def test_connection_refused_is_a_temporary_failure(tmp_path: Path) -> None:
    from tests.conftest import free_port

    client = QualysClient(f"http://127.0.0.1:{free_port()}", USER, Secret(PASSWORD), retry=FAST_RETRY)
    from qualys.api.hostasset_search import fetch_page

    with pytest.raises(TemporaryFailureError, match="connection failed"):
        fetch_page(client, "2026-01-01T00:00:00Z", 10, None)


def test_a_dripping_body_is_cut_by_the_call_deadline() -> None:
    """A server that sends one byte at a time cannot hold a call past its overall deadline."""
    import socket
    import threading
    import time

    from qualys.api.hostasset_search import fetch_page

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def drip() -> None:
        while not stop.is_set():
            listener.settimeout(0.2)
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 100000\r\n\r\n")
                while not stop.is_set():
                    try:
                        conn.sendall(b" ")
                    except OSError:
                        break
                    time.sleep(0.05)

    threading.Thread(target=drip, daemon=True).start()
    port = listener.getsockname()[1]
    client = QualysClient(f"http://127.0.0.1:{port}", USER, Secret(PASSWORD), retry=FAST_RETRY, read_timeout=5, call_deadline=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(TemporaryFailureError, match="overall time limit"):
            fetch_page(client, "2026-01-01T00:00:00Z", 10, None)
    finally:
        stop.set()
    assert time.monotonic() - started < 4.0
