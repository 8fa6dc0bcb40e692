"""A fake Logs Ingestion endpoint that the real ``azure.monitor.ingestion.LogsIngestionClient`` talks to.

Real TLS on 127.0.0.1 (a self-signed certificate made at test time), a bearer token required,
``POST /dataCollectionRules/{ruleId}/streams/{stream}?api-version=2023-01-01`` with the rule id and
the stream checked, gzip bodies decoded, and every row validated against the stream's declared
columns (``qualys.output.log_tables``, the source the Bicep's declarations come from): an unknown
column or a value of the wrong type is a 400 naming the column, as a rule's schema check would be.
Accepted rows are kept per stream; rows identical to ones accepted before are counted as repeats.
Scripted faults answer 413, 429 (with ``Retry-After``), 500 or 400 for the next requests, or drop
them unanswered (``DROP``: the endpoint died mid-upload).
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from azure.monitor.ingestion import LogsIngestionClient

from qualys.output.log_tables import TABLES
from tests.keyvault_fake import StubCredential
from tests.tls_stand_in import TlsServer, TlsStandIn

TOKEN = "fake-monitor-token"
RULE_ID = "dcr-0123456789abcdef0123456789abcdef"
API_VERSION = "2023-01-01"
_PATH = re.compile(r"^/dataCollectionRules/(?P<rule>[^/]+)/streams/(?P<stream>[^/]+)$")


#: An IngestionFault status: the endpoint closes the connection without answering (it died mid-upload).
DROP = 0


@dataclass
class IngestionFault:
    #: An HTTP status, or DROP.
    status: int
    times: int = 1
    retry_after: int | None = None
    #: Let this many requests through first.
    skip: int = 0


@dataclass(frozen=True)
class IngestionRequest:
    stream: str
    status: int
    rows: int
    authorized: bool
    gzip: bool
    #: The body as sent (gzip-compressed when ``gzip``).
    body_bytes: int = 0


@dataclass
class _Stream:
    columns: dict[str, str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    repeats: int = 0


class FakeLogsIngestion(TlsStandIn):
    """``https://127.0.0.1:<port>``: the data collection endpoint's logs ingestion URL."""

    thread_name = "fake logs ingestion endpoint"

    def __init__(self, directory: Path, *, rule_id: str = RULE_ID, token: str = TOKEN, keep_rows: bool = True) -> None:
        super().__init__(directory)
        #: False (the benchmark): rows are counted, not checked or kept, so millions fit.
        self.keep_rows = keep_rows
        self._counted: dict[str, int] = {}
        self.credential = StubCredential(token)
        self.rule_id = rule_id
        self._token = token
        self._streams = {table.stream: _Stream(dict(table.columns)) for table in TABLES}
        self._faults: list[IngestionFault] = []
        self._log: list[IngestionRequest] = []
        #: Seconds each request waits before it is answered (a slow endpoint, so a test can kill mid-upload).
        self.delay_seconds = 0.0
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    def client(self, **kwargs: Any) -> LogsIngestionClient:
        """The real client, trusting this endpoint's certificate, with fast retries."""
        options: dict[str, Any] = {"connection_verify": str(self.cert_path), "retry_backoff_factor": 0.05}
        options.update(kwargs)
        return LogsIngestionClient(self.url, self.credential, **options)

    # ---- what tests read and script
    def rows(self, stream: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._streams[stream].rows)

    def row_count(self, stream: str) -> int:
        """Rows accepted for ``stream`` (kept or only counted)."""
        with self._lock:
            return self._counted.get(stream, 0)

    def repeats(self, stream: str) -> int:
        with self._lock:
            return self._streams[stream].repeats

    def in_flight(self, stream: str) -> int:
        """Requests for ``stream`` received and not yet answered."""
        with self._lock:
            return self._in_flight.get(stream, 0)

    @property
    def requests(self) -> list[IngestionRequest]:
        with self._lock:
            return list(self._log)

    def inject(self, *faults: IngestionFault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def revive(self) -> None:
        """Forget the scripted faults that have not run yet (the endpoint is back)."""
        with self._lock:
            self._faults.clear()

    def drop_column(self, stream: str, column: str) -> None:
        """As if the rule had been deployed by an older version without ``column``."""
        with self._lock:
            del self._streams[stream].columns[column]

    def redeploy(self) -> None:
        """The rule deployed again from this version's tables: every column declared."""
        with self._lock:
            for table in TABLES:
                self._streams[table.stream].columns = dict(table.columns)

    # ---- the API
    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any] | None, dict[str, str], int]:
        """(status, error body, extra headers, rows)."""
        parts = urlsplit(path)
        if parse_qs(parts.query).get("api-version") != [API_VERSION]:
            return 400, _error("InvalidApiVersion", f"api-version must be {API_VERSION}"), {}, 0
        authorization = headers.get("authorization", "")
        if authorization != f"Bearer {self._token}":
            return 401, _error("InvalidToken", "The access token is missing or invalid."), {}, 0
        match = _PATH.match(unquote(parts.path))
        if match is None or match["rule"] != self.rule_id:
            return 404, _error("NotFound", "Data collection rule not found."), {}, 0
        with self._lock:
            self._in_flight[match["stream"]] = self._in_flight.get(match["stream"], 0) + 1
        try:
            return self._accept(match["stream"], headers, body)
        finally:
            with self._lock:
                self._in_flight[match["stream"]] -= 1

    def _accept(
        self, stream_name: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any] | None, dict[str, str], int]:
        # Like the service, a request whose client has gone is still processed: its rows are stored.
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        with self._lock:
            stream = self._streams.get(stream_name)
            fault = self._next_fault()
        if stream is None:
            return 404, _error("InvalidStream", f"Stream {stream_name} is not declared in the rule."), {}, 0
        if fault is not None and fault.status == DROP:
            return DROP, None, {}, 0
        if fault is not None:
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return fault.status, _error("Scripted", f"scripted {fault.status}"), extra, 0
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        try:
            rows = json.loads(body)
        except ValueError:
            return 400, _error("InvalidJson", "The body is not JSON."), {}, 0
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            return 400, _error("InvalidPayload", "The body must be a JSON array of objects."), {}, 0
        if not self.keep_rows:
            with self._lock:
                self._counted[stream_name] = self._counted.get(stream_name, 0) + len(rows)
            return 204, None, {}, len(rows)
        problem = next((p for row in rows if (p := _check_row(row, stream.columns))), None)
        if problem is not None:
            return 400, _error("InvalidSchema", problem), {}, 0
        with self._lock:
            self._counted[stream_name] = self._counted.get(stream_name, 0) + len(rows)
            for row in rows:
                key = json.dumps(row, sort_keys=True)
                if key in stream.seen:
                    stream.repeats += 1
                stream.seen.add(key)
                stream.rows.append(row)
        return 204, None, {}, len(rows)

    def record(self, entry: IngestionRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _next_fault(self) -> IngestionFault | None:
        for fault in self._faults:
            if fault.times <= 0:
                continue
            if fault.skip > 0:
                fault.skip -= 1
                return None
            fault.times -= 1
            return fault
        return None


def _check_row(row: dict[str, Any], columns: dict[str, str]) -> str | None:
    if "TimeGenerated" not in row:
        return "Column TimeGenerated is required."
    for name, value in row.items():
        kind = columns.get(name)
        if kind is None:
            return f"Column '{name}' is not declared in the stream."
        if value is not None and not _fits(value, kind):
            return f"Column '{name}' of type {kind} cannot hold {value!r}."
    return None


def _fits(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind in ("int", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "real":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "datetime":
        if not isinstance(value, str):
            return False
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return False
        return True
    return kind == "dynamic"


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    timeout = 30

    def log_message(self, format: str, *args: object) -> None:
        """Silent; see FakeLogsIngestion.requests."""

    def do_POST(self) -> None:
        fake = cast(FakeLogsIngestion, cast(TlsServer, self.server).owner)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        status, payload, extra, rows = fake.handle(self.path, headers, body)
        match = _PATH.match(unquote(urlsplit(self.path).path))
        fake.record(IngestionRequest(
            match["stream"] if match else "", status, rows, "authorization" in headers,
            headers.get("content-encoding") == "gzip", len(body),
        ))
        if status == DROP:
            self.close_connection = True  # no status line: the client sees the connection go
            return
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        for key, value in extra.items():
            self.send_header(key, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


FakeLogsIngestion.handler = _Handler
