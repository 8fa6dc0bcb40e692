"""The optional second destination: each complete run sent to Log Analytics through the Logs Ingestion API.

Blob Storage (or the folder) stays the system of record; this sends what it holds to three custom
tables (:mod:`qualys.output.log_tables`) with the ``azure-monitor-ingestion`` client and the Function
App's identity. Runs go in order: each run's records as it read them, and its change feed. The first
delivery to a rule, or one after a gap that retention has removed, sends the current state instead,
so the tables start complete.

Nothing is lost and little is repeated: ``runs/<run_id>/log-analytics.json`` records, batch by batch,
how many rows of each file were accepted, so a killed or failed delivery resumes with the next
invocation where it stopped (a batch in flight when the process died is the most that is sent
twice); ``state/log-analytics.json`` names the last run delivered whole. Batches stay under the
API's 1 MB per call, the client retries 429 and 5xx as the service says (``Retry-After``), a 413
splits the batch, a connection lost before the answer sends the batch again, and a refusal (400,
401/403, 404), an unreachable endpoint or a missing token stops with one line naming the fix.
"""

from __future__ import annotations

import io
import json
import logging
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from qualys.config.settings import LogAnalyticsTarget
from qualys.errors import ConnectorError
from qualys.output.log_tables import TABLES_BY_KIND, LogTable
from qualys.output.runs import RunOutput, is_whole_record

log = logging.getLogger(__name__)

STATE_PATH = "state/log-analytics.json"
#: Next to each run's manifest: which rows of which file Log Analytics accepted.
STATUS_NAME = "log-analytics.json"
#: Rows per request stay under this many bytes of JSON (the API takes 1 MB per call; the client cuts at 1 MiB).
BATCH_BYTES = 900_000
#: zlib level of the request bodies. python -m bench.log_delivery, 20,000 assets (733,386 rows, 297 MB
#: of JSON): level 1 sends 45 MB with 3.8 CPU s, the default 6 sends 33 MB with 5.4 CPU s; either is far
#: under the per-call limit, and the bytes stay inside Azure.
GZIP_LEVEL = 1
#: Seconds before sending a batch again whose connection went before the answer (then the delivery stops).
CONNECTION_RETRY_PAUSES = (1.0, 5.0)


class LogsUploader(Protocol):
    """What :class:`azure.monitor.ingestion.LogsIngestionClient` offers and the delivery uses."""

    def upload(self, rule_id: str, stream_name: str, logs: list[Any] | IO[bytes]) -> None: ...


class LogDeliveryError(ConnectorError):
    """Log Analytics refused rows or could not be reached; the next invocation resumes where it stopped."""


@dataclass
class DeliveryResult:
    """What one invocation delivered (it may deliver twice: before its sync and after)."""

    #: Runs delivered whole.
    runs: list[str] = field(default_factory=list)
    #: Rows accepted in this invocation, by table.
    rows: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    #: Files whose delivery resumed part-way (their first batch may repeat one accepted before a kill).
    resumed_files: int = 0
    #: Why the delivery stopped, when it did (the rows above were accepted before).
    error: LogDeliveryError | None = None

    def summary(self) -> dict[str, object]:
        summary: dict[str, object] = {
            "runs": self.runs, "rows": self.rows, "batches": self.batches, "resumed_files": self.resumed_files
        }
        if self.error is not None:
            summary["error"] = self.error.cause
        return summary


def ingestion_client(target: LogAnalyticsTarget) -> LogsUploader:
    """The real client, with the Azure identity (the Function App's user-assigned identity in Azure)."""
    from azure.monitor.ingestion import LogsIngestionClient

    from qualys.hosting.identity import azure_credential

    # azure-core's retry policy: 408/429/5xx retried, Retry-After honoured, at most 6 tries per request.
    return LogsIngestionClient(target.endpoint, azure_credential(), retry_total=5, retry_backoff_max=60)


class LogAnalyticsDelivery:
    """Delivers the runs of one output location that Log Analytics has not accepted whole yet."""

    def __init__(self, output: RunOutput, target: LogAnalyticsTarget, client: LogsUploader) -> None:
        self._output = output
        self._target = target
        self._client = client

    def deliver_pending(self, result: DeliveryResult | None = None) -> DeliveryResult:
        """Every complete run not delivered yet, oldest first (the current state first, on a fresh start),
        counted into ``result``. Raises :class:`LogDeliveryError` when the destination stops it."""
        result = result if result is not None else DeliveryResult()
        for manifest, mode in self._pending():
            run_id = str(manifest["run_id"])
            self._deliver_run(manifest, mode, result)
            self._output.sink.write(STATE_PATH, _json({"delivered_run_id": run_id, **self._destination()}))
            result.runs.append(run_id)
        if result.runs:
            log.info("Log Analytics: delivered %s (%s rows)", ", ".join(result.runs), result.rows)
        return result

    # ---- what to send
    def _pending(self) -> list[tuple[dict[str, object], str]]:
        """(manifest, mode) oldest first: mode "run" sends what the run read, "state" its current state."""
        latest = self._output.latest_manifest()
        if latest is None:
            return []
        state = _read_json(self._output, STATE_PATH) or {}
        delivered = state.get("delivered_run_id") if _same(state, self._destination()) else None
        if delivered is None:
            return [(latest, "state")]  # a first delivery, or to a new rule: start with the whole state
        chain: list[dict[str, object]] = []
        manifest: dict[str, object] | None = latest
        while manifest is not None:
            if manifest.get("run_id") == delivered:
                return [(m, "run") for m in reversed(chain)]
            chain.append(manifest)
            previous = manifest.get("previous_run_id")
            manifest = self._output.manifest(str(previous)) if previous else None
        # The runs since the last delivered one are gone (retention) or never linked: the whole state again.
        return [(latest, "state")]

    def _files(self, manifest: dict[str, object], mode: str) -> list[tuple[LogTable, str]]:
        """(table, file) in delivery order: devices, findings, changes."""
        if mode == "state":
            current = manifest.get("current")
            records = current.get("files") if isinstance(current, dict) else None
        else:
            records = manifest.get("files")
        changes = manifest.get("changes")
        change_files = changes.get("files") if isinstance(changes, dict) else []
        files = [str(f) for f in records or []]
        ordered = [(TABLES_BY_KIND["devices"], f) for f in files if "/devices/" in f]
        ordered += [(TABLES_BY_KIND["findings"], f) for f in files if "/findings/" in f]
        ordered += [(TABLES_BY_KIND["changes"], str(f)) for f in change_files or []]
        return ordered

    # ---- sending
    def _deliver_run(self, manifest: dict[str, object], mode: str, result: DeliveryResult) -> None:
        run_id = str(manifest["run_id"])
        status_path = f"runs/{run_id}/{STATUS_NAME}"
        status = _read_json(self._output, status_path) or {}
        if not _same(status, self._destination()):
            status = {}  # written for another rule: start over
        if status.get("complete"):
            return
        mode = str(status.get("mode") or mode)  # a resumed delivery keeps what it started with
        files: dict[str, dict[str, Any]] = dict(status.get("files") or {})
        status = {"run_id": run_id, "mode": mode, **self._destination(), "files": files, "complete": False}
        time_generated = str(manifest["started_at"])
        for table, path in self._files(manifest, mode):
            progress = files.setdefault(path, {"table": table.name, "rows": 0, "done": False})
            if progress["done"]:
                continue
            if progress["rows"]:
                result.resumed_files += 1
            for count in self._send_file(table, path, run_id, time_generated, skip=int(progress["rows"])):
                progress["rows"] += count
                result.rows[table.name] = result.rows.get(table.name, 0) + count
                result.batches += 1
                self._output.sink.write(status_path, _json(status))
            progress["done"] = True
            self._output.sink.write(status_path, _json(status))
        totals: dict[str, int] = {}
        for progress in files.values():
            totals[progress["table"]] = totals.get(progress["table"], 0) + int(progress["rows"])
        status.update(complete=True, rows=totals)
        self._output.sink.write(status_path, _json(status))

    def _send_file(self, table: LogTable, path: str, run_id: str, time_generated: str, skip: int) -> Iterator[int]:
        """Send the rows of ``path`` after the first ``skip``, a batch at a time; yields each batch's row count."""
        stream = self._target.streams[table.kind]
        prefix = _row_prefix(time_generated, None if table.kind == "changes" else run_id)
        for batch in _batches(self._output.read_lines(path), skip, prefix, path):
            self._upload(table, stream, batch)
            yield len(batch)

    def _upload(self, table: LogTable, stream: str, rows: list[bytes]) -> None:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        try:
            self._post(table, stream, _gzip_array(rows))
        except ClientAuthenticationError as exc:
            if exc.status_code is not None:  # the service's 401
                raise _refusal(table, stream, self._target, exc.status_code, _service_message(exc)) from None
            raise LogDeliveryError(  # no token: azure-identity's message says which credential and why
                f"The Function App's identity could not get a token for Log Analytics ({type(exc).__name__}).",
                "Check AZURE_CLIENT_ID (the user-assigned identity's client id) and that the identity is assigned "
                "to the Function App; the next run resumes the delivery.",
            ) from None
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status == 413 and len(rows) > 1:  # too large after all: halves
                half = len(rows) // 2
                self._upload(table, stream, rows[:half])
                self._upload(table, stream, rows[half:])
                return
            raise _refusal(table, stream, self._target, status, _service_message(exc)) from None
        except (ServiceRequestError, ServiceResponseError) as exc:  # no answer, or the connection went mid-answer
            raise LogDeliveryError(
                f"Cannot reach the Log Analytics endpoint {self._target.endpoint} ({type(exc).__name__}, after retries).",
                "Check the network path to *.ingest.monitor.azure.com; the next run resumes the delivery.",
            ) from None

    def _post(self, table: LogTable, stream: str, body: bytes) -> None:
        """One batch. A gzip stream is sent as it is (the client's list path would decode and encode every
        row again). A connection lost before the answer is not retried by azure-core for a POST (the
        service may have stored the rows): it is here, a few times, at the cost of the batch perhaps twice."""
        from azure.core.exceptions import ServiceResponseError

        for pause in CONNECTION_RETRY_PAUSES:
            try:
                self._client.upload(self._target.rule_id, stream, io.BytesIO(body))
                return
            except ServiceResponseError:
                log.warning("Log Analytics: connection lost during a batch for %s; sending it again", table.name)
                time.sleep(pause)
        self._client.upload(self._target.rule_id, stream, io.BytesIO(body))  # the last try: its error goes up

    def _destination(self) -> dict[str, str]:
        return {"endpoint": self._target.endpoint, "rule_id": self._target.rule_id}


def _row_prefix(started_at: str, run_id: str | None) -> bytes:
    """The start of a row: ``{`` and the run columns (``TimeGenerated`` and ``run_started_at``, then
    ``run_id`` unless the record carries its own, as change records do), ready for a record's fields."""
    columns = {"TimeGenerated": started_at, "run_started_at": started_at, **({"run_id": run_id} if run_id else {})}
    return json.dumps(columns, separators=(",", ":")).encode()[:-1] + b","


def _batches(lines: Iterator[bytes], skip: int, prefix: bytes, path: str) -> Iterator[list[bytes]]:
    """Rows as JSON bytes, in batches under ``BATCH_BYTES``: each record line with the run columns
    spliced in front of its fields, without decoding it (the lines are the connector's own compact
    JSON objects; a line that is not one stops the delivery, naming the file)."""
    batch: list[bytes] = []
    size = rows = 0
    for number, line in enumerate(lines):
        line = line.strip()
        if not line:
            continue
        rows += 1
        if rows <= skip:  # accepted by an earlier invocation (skip counts rows, as the status file does)
            continue
        if not is_whole_record(line):
            raise LogDeliveryError(
                f"{path} line {number + 1} is not a JSON record; nothing after it was sent to Log Analytics.",
                f"Delete {STATE_PATH} in the output: the next delivery then sends the latest run's whole state "
                "instead (if the file is a state segment, run python -m qualys sync --full first).",
            )
        row = prefix + line[1:]
        if batch and size + len(row) + 1 > BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += len(row) + 1
    if batch:
        yield batch


def _gzip_array(rows: list[bytes]) -> bytes:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    return compressor.compress(b"[" + b",".join(rows) + b"]") + compressor.flush()


def _refusal(table: LogTable, stream: str, target: LogAnalyticsTarget, status: int, message: str) -> LogDeliveryError:
    where = f"table {table.name} (stream {stream}, rule {target.rule_id})"
    said = f": {message.rstrip('.')}" if message else ""
    if status == 400:
        return LogDeliveryError(
            f"Log Analytics refused rows for {where} (HTTP 400){said}.",
            "The rule's stream declaration and the table must have this version's columns "
            "(infra/app/log-analytics-tables.json): redeploy the infrastructure (azd provision), "
            "or unset LOG_ANALYTICS_ENDPOINT to write to Blob Storage only.",
        )
    if status in (401, 403):
        return LogDeliveryError(
            f"The identity may not send to {where} (HTTP {status}){said}.",
            "Assign the role Monitoring Metrics Publisher on the data collection rule to the Function App's "
            "identity (azd provision does), and wait a few minutes for it to apply.",
        )
    if status == 404:
        return LogDeliveryError(
            f"Log Analytics does not know {where} at {target.endpoint} (HTTP 404){said}.",
            "Check LOG_ANALYTICS_ENDPOINT (the data collection endpoint), LOG_ANALYTICS_RULE_ID (the rule's "
            "immutable id, dcr-...) and the stream settings.",
        )
    return LogDeliveryError(
        f"Log Analytics kept refusing rows for {where} (HTTP {status}) after retries{said}.",
        "It is usually temporary: the next run resumes the delivery where it stopped.",
    )


def _service_message(exc: Exception) -> str:
    """The service's own words (``error.message``), shortened; never a header or a token."""
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or getattr(exc, "message", None) or ""
    text = " ".join(str(message).split())
    return text[:300]


def _read_json(output: RunOutput, path: str) -> dict[str, Any] | None:
    data = output.sink.read(path)
    if not data:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _same(status: dict[str, Any], destination: dict[str, str]) -> bool:
    return all(status.get(key) == value for key, value in destination.items())


def _json(value: object) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()
