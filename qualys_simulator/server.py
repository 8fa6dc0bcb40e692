"""A loopback HTTP server that answers like the Qualys API, with real limits and injectable faults.

Endpoints: QPS ``/qps/rest/2.0/search/am/hostasset``, ``/count/am/hostasset`` and ``/search/am/tag``,
``/qps/rest/portal/version`` and the KnowledgeBase ``/api/2.0/fo/knowledge_base/vuln/``.
The VM-API (``/api/2.0/``) family enforces the subscription's concurrency and rate limits
for real (409 1960 / 1965 with the ``X-RateLimit-*`` / ``X-Concurrency-*`` headers);
QPS responses carry no such headers, as observed on qg3 (docs/qualys-api.md §2.9, §5.1).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import os
import secrets
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl, urlsplit

from .estate import Estate, SimAsset, SimTag, SimVuln
from .qps import FieldTree, SearchError, SearchRequest, count_assets, parse_search, search_assets, search_tags
from .render import (
    NOT_FOUND_HTML,
    render_count,
    render_hostasset_page,
    render_html_error,
    render_kb,
    render_portal_version,
    render_qps_error,
    render_simple_return,
    render_tag_page,
)
from .vmapi import KbRequestError, select_kb

_ENDPOINTS = {
    "/qps/rest/2.0/search/am/hostasset": "hostasset",
    "/qps/rest/2.0/search/am/tag": "tag",
    "/qps/rest/2.0/count/am/hostasset": "count",
    "/qps/rest/portal/version": "version",
    "/api/2.0/fo/knowledge_base/vuln": "kb",
}
_QPS_XML = "application/xml"
_API_XML = "text/xml;charset=UTF-8"
_HTML = "text/html; charset=iso-8859-1"
_RATE_WINDOW_SECONDS = 3600
#: Simulator's choice: the real CODE for a missing X-Requested-With header is not documented
#: in our sources; 1903 ("Missing required parameter(s)") is the closest documented meaning.
CODE_MISSING_REQUESTED_WITH = 1903
#: Simulator's choice: the real CODE for a KB call without KnowledgeBase permission is unknown.
#: Microsoft's troubleshooting table maps a KB 409 to "insufficient permissions"; we send 409 with
#: no CODE at all: every documented code means something else (2002 is "User account is inactive",
#: 1920/1960/1965 are retryable), so only the status can say it.
CODE_KB_PERMISSION: int | None = None
_IMMEDIATE_FAULTS = frozenset(
    {
        "http_429",
        "rate_limit_1965",
        "concurrency_1960",
        "code_1920",
        "http_500",
        "http_502",
        "http_503",
        "http_401",
        "http_403",
        "http_404",
        "qps_unauthorized",
        "kb_permission",
        "canned",
    }
)
_DELIVERY_FAULTS = frozenset({"reset_mid_body", "truncated_body", "slow"})
FAULT_KINDS = _IMMEDIATE_FAULTS | _DELIVERY_FAULTS


@dataclass
class Latency:
    """Seconds slept per request, per endpoint, before answering."""

    hostasset: float = 0.0
    tag: float = 0.0
    kb: float = 0.0
    count: float = 0.0


@dataclass
class Fault:
    """A scripted failure. Faults form a queue: the first unexhausted one matching an endpoint owns the request."""

    endpoint: str  # hostasset | count | tag | kb | version | *
    kind: str
    times: int = 1
    skip: int = 0
    wait_seconds: float | None = None
    #: kind "canned": answer with exactly this status and body (e.g. a recorded Qualys error body).
    status: int = 200
    body: bytes = b""

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {sorted(FAULT_KINDS)}")


@dataclass(frozen=True)
class RequestRecord:
    endpoint: str
    method: str
    path: str
    status: int
    params: dict[str, str]
    fault: str | None
    started: float  # time.monotonic()
    ended: float
    bytes_sent: int


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    delivery: str | None = None  # reset_mid_body | truncated_body
    #: A page-cache body: sent as ``body`` + this file's bytes + ``suffix``, the file streamed from disk.
    file: Path | None = None
    suffix: bytes = b""

    def materialize(self) -> None:
        """Load a file-backed body into ``body`` (for the delivery faults, which cut it in half)."""
        if self.file is not None:
            self.body = self.body + self.file.read_bytes() + self.suffix
            self.file, self.suffix = None, b""


@dataclass
class _Exchange:
    """What one request turned into; ``holds_slot`` = it occupies a VM-API concurrency slot until sent."""

    reply: _Reply
    params: dict[str, str]
    fault: str | None = None
    holds_slot: bool = False


def _wait(value: float | None) -> int:
    return max(0, math.ceil(value if value is not None else 1))


def _human_seconds(total: int) -> str:
    """Qualys' wording: "23 hours, 57 minutes and 54 seconds"."""
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    units = [(hours, "hour"), (minutes, "minute"), (seconds, "second")]
    words = [f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in units if n]
    if not words:
        return "0 seconds"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _simple(status: int, code: int | None, text: str, items: dict[str, str] | None = None) -> _Reply:
    # Real 400s came without the XML declaration, 401/409 bodies with it (the recordings in docs/qualys-api.md §8).
    return _Reply(status, render_simple_return(code, text, items, declaration=status != 400), _API_XML)


def _concurrency_reply(running: int, limit: int) -> _Reply:
    """``running`` = calls in progress (not counting the refused one)."""
    to_finish = max(1, running - limit + 1)
    noun = "instance has" if to_finish == 1 else "instances have"
    text = f"This API cannot be run again until {to_finish} currently running API {noun} finished."
    return _simple(409, 1960, text, {"CALLS_TO_FINISH": str(to_finish)})


def _rate_reply(seconds: int) -> _Reply:
    text = f"This API cannot be run again for another {_human_seconds(seconds)}."
    return _simple(409, 1965, text, {"SECONDS_TO_WAIT": str(seconds)})


class CachedKbBody(Protocol):
    """A KnowledgeBase answer as ``head`` + a cached file + ``tail`` (the envelope is rendered per request)."""

    head: bytes
    list_file: Path
    tail: bytes


class BodyCache(Protocol):
    """Rendered bodies kept on disk and streamed from there (the benchmark's ``bench.page_cache``)."""

    def hostasset(
        self,
        assets: Sequence[SimAsset],
        *,
        has_more: bool,
        last_id: int | None,
        tags: Mapping[int, SimTag] | None = None,
        fields: FieldTree | None = None,
    ) -> Path: ...

    def kb(self, vulns: Sequence[SimVuln], *, keepalive_prefix: bool, now: datetime) -> CachedKbBody | None: ...


class QualysSimulator:
    """The Qualys API on ``http://127.0.0.1:<port>``; serves :attr:`estate`, which tests may mutate between runs.

    ``page_cache``: serve hostasset pages and KnowledgeBase lists from this cache of rendered bodies
    (the benchmark's, so it measures the client, not the simulator); None renders every answer anew.
    """

    def __init__(
        self,
        estate: Estate,
        *,
        username: str = "demo-user",
        password: str = "demo-password",  # noqa: S107 - the simulator's published demo credential
        concurrency_limit: int = 2,
        rate_limit: int = 300,
        latency: Latency | None = None,
        asset_permission: bool = True,
        kb_permission: bool = True,
        keepalive_prefix: bool = True,
        port: int = 0,
        page_cache: BodyCache | None = None,
        tls: ssl.SSLContext | None = None,
        fields_supported: bool = True,
    ) -> None:
        self.estate = estate
        self.username = username
        self.password = password
        self.concurrency_limit = concurrency_limit
        self.rate_limit = rate_limit
        self.latency = latency or Latency()
        self.asset_permission = asset_permission
        self.kb_permission = kb_permission
        self.keepalive_prefix = keepalive_prefix
        self.page_cache = page_cache
        #: Serve HTTPS with this server context (as the real API does) instead of plain HTTP.
        self.tls = tls
        #: False: a search with ``<fields>`` is refused with INVALID_REQUEST (a platform without "Limit your results").
        self.fields_supported = fields_supported
        self.peak_concurrency: dict[str, int] = {}
        self._port = port
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._log: list[RequestRecord] = []
        self._faults: list[Fault] = []
        self._inflight: dict[str, int] = {}
        self._api_running = 0
        self._api_calls: deque[float] = deque()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle
    def start(self) -> QualysSimulator:
        if self._server is not None:
            return self
        self._server = _Server(("127.0.0.1", self._port), _Handler, self, self.tls)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="qualys-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> QualysSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator is not running; call start()")
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    # ---- faults and log
    def inject(self, *faults: Fault) -> None:
        """Queue faults; each is copied, so the caller's objects are never mutated."""
        with self._lock:
            self._faults.extend(replace(f) for f in faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        """The request log. Waits (up to 1 s) for requests still being answered: a client that has
        just read a response may be faster than the server thread that logs it."""
        with self._settled:
            self._settled.wait_for(lambda: not any(self._inflight.values()), timeout=1.0)
            return list(self._log)

    def reset_log(self) -> None:
        """Forget logged requests and peak concurrency (not faults, not the rate window)."""
        with self._lock:
            self._log.clear()
            self.peak_concurrency.clear()

    def reset_rate_window(self) -> None:
        """Forget the VM-API calls counted against :attr:`rate_limit` (a new hour starts now)."""
        with self._lock:
            self._api_calls.clear()

    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.endpoint not in ("*", endpoint) or fault.times <= 0:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                return replace(fault)
            return None

    # ---- bookkeeping called by the handler
    def _enter(self, endpoint: str) -> None:
        with self._lock:
            now = self._inflight[endpoint] = self._inflight.get(endpoint, 0) + 1
            self.peak_concurrency[endpoint] = max(self.peak_concurrency.get(endpoint, 0), now)

    def _leave(self, endpoint: str, exchange: _Exchange | None, record: RequestRecord) -> None:
        with self._lock:
            self._inflight[endpoint] -= 1
            if exchange is not None and exchange.holds_slot:
                self._api_running -= 1
            self._log.append(record)
            self._settled.notify_all()

    def _admit_api(self) -> _Reply | None:
        """Apply the subscription limits; on success the caller holds a concurrency slot."""
        with self._lock:
            now = time.monotonic()
            while self._api_calls and self._api_calls[0] <= now - _RATE_WINDOW_SECONDS:
                self._api_calls.popleft()
            if self._api_running >= self.concurrency_limit:
                # Qualys: "the concurrency error takes precedence" (docs/qualys-api.md §5.1).
                reply = _concurrency_reply(self._api_running, self.concurrency_limit)
                reply.headers = self._rate_headers_locked(self._api_running)
                return reply
            if len(self._api_calls) >= self.rate_limit:
                wait = max(1, math.ceil(self._api_calls[0] + _RATE_WINDOW_SECONDS - now))
                reply = _rate_reply(wait)
                reply.headers = self._rate_headers_locked(self._api_running, to_wait=wait)
                return reply
            self._api_calls.append(now)
            self._api_running += 1
            return None

    def _rate_headers_locked(self, running: int, to_wait: int = 0) -> list[tuple[str, str]]:
        remaining = 0 if to_wait else max(0, self.rate_limit - len(self._api_calls))
        return [
            ("X-RateLimit-Limit", str(self.rate_limit)),
            ("X-RateLimit-Window-Sec", str(_RATE_WINDOW_SECONDS)),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-ToWait-Sec", str(to_wait)),
            ("X-Concurrency-Limit-Limit", str(self.concurrency_limit)),
            ("X-Concurrency-Limit-Running", str(running)),
        ]

    def _rate_headers(self, to_wait: int = 0) -> list[tuple[str, str]]:
        with self._lock:
            return self._rate_headers_locked(self._api_running, to_wait)

    # ---- request handling
    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, pw = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.username) & secrets.compare_digest(pw, self.password)

    def _unauthorized(self, api: bool) -> _Reply:
        challenge = [("WWW-Authenticate", 'Basic realm="Qualys API"')]
        if api:  # observed: HTTP 401, SIMPLE_RETURN 2000, no X-RateLimit headers
            return _Reply(401, render_simple_return(2000, "Bad Login/Password", None), _API_XML, challenge)
        body = render_qps_error(
            "INVALID_CREDENTIALS", "Authentication failed", "Verify both, user and password credentials."
        )
        return _Reply(401, body, _QPS_XML, challenge)

    def _fault_reply(self, fault: Fault, api: bool) -> _Reply:
        kind, wait = fault.kind, _wait(fault.wait_seconds)
        retry_after = [("Retry-After", str(wait))]
        if kind == "http_429":
            return _Reply(429, render_html_error(429, "Too Many Requests"), _HTML, retry_after)
        if kind in ("http_500", "http_502", "http_503"):
            status = int(kind[5:])
            reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}[status]
            return _Reply(status, render_html_error(status, reason), _HTML, retry_after if fault.wait_seconds else [])
        if kind == "http_401":
            return self._unauthorized(api)
        if kind == "http_403":
            return _Reply(403, render_html_error(403, "Forbidden"), _HTML)
        if kind == "http_404":
            return _Reply(404, NOT_FOUND_HTML, _HTML)
        if kind == "qps_unauthorized":
            return _Reply(200, _qps_unauthorized(), _QPS_XML)
        if kind == "canned":
            return _Reply(fault.status, fault.body, _API_XML if api else _QPS_XML)
        if kind == "rate_limit_1965":
            reply = _rate_reply(wait)
            reply.headers = self._rate_headers(to_wait=wait)
            return reply
        if kind == "concurrency_1960":
            reply = _concurrency_reply(self.concurrency_limit, self.concurrency_limit)
        elif kind == "code_1920":
            reply = _simple(409, 1920, "The requested operation is blocked by one or more existing Business Objects.")
        else:  # kb_permission
            reply = _kb_permission_reply()
        reply.headers = self._rate_headers()
        return reply

    def _handle(self, method: str, endpoint: str, target: str, headers: Message, body: bytes) -> _Exchange:
        """Turn one request into a reply (runs on the connection's thread)."""
        if endpoint == "unknown":
            return _Exchange(_Reply(404, NOT_FOUND_HTML, _HTML), {})
        api = endpoint == "kb"
        url = urlsplit(target)
        form: dict[str, str] = {}
        search = None
        if api:
            form = dict(parse_qsl(url.query, keep_blank_values=True))
            if body:
                form.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            params = form
        elif endpoint in ("hostasset", "tag", "count"):
            search = parse_search(body)
            params = search.summary()
        else:
            params = {}
        if not self._authorized(headers.get("Authorization")):
            return _Exchange(self._unauthorized(api), params)
        fault = self._take_fault(endpoint)
        kind = fault.kind if fault else None
        if fault is not None and fault.kind in _IMMEDIATE_FAULTS:
            return _Exchange(self._fault_reply(fault, api), params, kind)
        exchange = _Exchange(_Reply(200, b"", _QPS_XML), params, kind)
        if api:
            if not headers.get("X-Requested-With"):
                text = "Missing required header: X-Requested-With (required on all API v2 calls)."
                reply = _simple(400, CODE_MISSING_REQUESTED_WITH, text)
                reply.headers = self._rate_headers()
                exchange.reply = reply
                return exchange
            refused = self._admit_api()
            if refused is not None:
                exchange.reply = refused
                return exchange
            exchange.holds_slot = True
        delay: float = getattr(self.latency, endpoint, 0.0)
        if fault is not None and kind == "slow":
            delay += fault.wait_seconds if fault.wait_seconds is not None else 1.0
        if delay > 0:
            time.sleep(delay)
        if api:
            exchange.reply = self._kb(form)
            exchange.reply.headers = self._rate_headers()
        elif endpoint == "version":
            exchange.reply = _Reply(200, render_portal_version(), _QPS_XML)
        else:
            assert search is not None
            exchange.reply = self._search(endpoint, method, search)
        if kind in ("reset_mid_body", "truncated_body"):
            exchange.reply.delivery = kind
        return exchange

    def _search(self, endpoint: str, method: str, search: SearchRequest) -> _Reply:
        if method != "POST":
            return _Reply(405, render_html_error(405, "Method Not Allowed"), _HTML, [("Allow", "POST")])
        if not self.asset_permission:
            return _Reply(200, _qps_unauthorized(), _QPS_XML)
        try:
            if search.fields is not None and not self.fields_supported:
                raise SearchError(
                    "Unrecognized element 'fields' in the ServiceRequest.", "Remove 'fields' to get whole records."
                )
            if endpoint == "tag":
                body = render_tag_page(search_tags(self.estate, search), _object_fields(search, "Tag"))
            elif endpoint == "count":
                body = render_count(count_assets(self.estate, search))
            else:
                page, has_more = search_assets(self.estate, search)
                last_id = page[-1].id if has_more and page else None
                fields = _object_fields(search, "HostAsset")
                if self.page_cache is not None and page:
                    path = self.page_cache.hostasset(
                        page, has_more=has_more, last_id=last_id, tags=self.estate.tags, fields=fields
                    )
                    return _Reply(200, b"", _QPS_XML, file=path)
                body = render_hostasset_page(page, has_more=has_more, last_id=last_id, tags=self.estate.tags, fields=fields)
        except SearchError as err:
            body = render_qps_error("INVALID_REQUEST", err.message, err.resolution)
        return _Reply(200, body, _QPS_XML)

    def _kb(self, form: dict[str, str]) -> _Reply:
        try:
            vulns = select_kb(self.estate, form)
        except KbRequestError as err:
            return _simple(400, err.code, err.text)
        if not self.kb_permission:
            return _kb_permission_reply()
        if self.page_cache is not None:
            cached = self.page_cache.kb(vulns, keepalive_prefix=self.keepalive_prefix, now=datetime.now(UTC))
            if cached is not None:
                return _Reply(200, cached.head, _API_XML, file=cached.list_file, suffix=cached.tail)
        return _Reply(200, render_kb(vulns, keepalive_prefix=self.keepalive_prefix), _API_XML)


def _object_fields(search: SearchRequest, name: str) -> FieldTree | None:
    """The ``fields`` asked for an object (``<fields><HostAsset>...``); None: whole records."""
    if search.fields is None:
        return None
    return search.fields.get(name) or {}


def _qps_unauthorized() -> bytes:
    return render_qps_error(
        "UNAUTHORIZED",
        "You are not authorized to access the application through the API.",
        "If you think this is an error, please contact your account manager.",
    )


def _kb_permission_reply() -> _Reply:
    return _simple(409, CODE_KB_PERMISSION, "You do not have permission to access the KnowledgeBase through the API.")


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        sim: QualysSimulator,
        tls: ssl.SSLContext | None = None,
        fields_supported: bool = True,
    ) -> None:
        self.sim = sim
        self.tls = tls
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """With TLS, the handshake runs on the connection's own thread (a stalled client never blocks accept())."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            secured = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(secured, client_address)
        finally:
            with contextlib.suppress(OSError):
                secured.close()

    def close_connections(self) -> None:
        """Unblock keep-alive connection threads still waiting for a next request."""
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with Content-Length
    server_version = "Apache"
    timeout = 120

    def setup(self) -> None:
        super().setup()
        server = cast(_Server, self.server)
        with server.sockets_lock:
            server.open_sockets.add(self.connection)

    def finish(self) -> None:
        server = cast(_Server, self.server)
        with server.sockets_lock:
            server.open_sockets.discard(self.connection)
        with contextlib.suppress(OSError):  # the client may already be gone
            super().finish()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default per-request stderr line; requests are in ``QualysSimulator.requests``."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self, method: str) -> None:
        sim = cast(_Server, self.server).sim
        started = time.monotonic()
        endpoint = _ENDPOINTS.get(urlsplit(self.path).path.rstrip("/"), "unknown")
        body = self._read_body()
        sim._enter(endpoint)
        exchange: _Exchange | None = None
        sent, status = 0, 500
        try:
            exchange = sim._handle(method, endpoint, self.path, self.headers, body)
            status = exchange.reply.status
            sent = self._send(exchange.reply)
        finally:
            record = RequestRecord(
                endpoint=endpoint,
                method=method,
                path=self.path,
                status=status,
                params=exchange.params if exchange else {},
                fault=exchange.fault if exchange else None,
                started=started,
                ended=time.monotonic(),
                bytes_sent=sent,
            )
            sim._leave(endpoint, exchange, record)

    def _send(self, reply: _Reply) -> int:
        if reply.delivery is not None:
            reply.materialize()
        if reply.file is not None:
            return self._send_file(reply, reply.file)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        if reply.delivery is None:
            self.wfile.write(reply.body)
            return len(reply.body)
        # Full Content-Length promised, about half delivered, then the connection dies.
        half = reply.body[: max(1, len(reply.body) // 2)]
        self.wfile.write(half)
        self.close_connection = True
        time.sleep(0.05)  # let the client read the partial body before the connection goes
        if reply.delivery == "reset_mid_body":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.rfile.close()  # last reference to the socket: closing it with linger 0 sends RST
        else:
            self.connection.shutdown(socket.SHUT_WR)  # clean FIN, body short of Content-Length
        return len(half)

    def _send_file(self, reply: _Reply, path: Path) -> int:
        """``body`` + the file (``sendfile``, never loaded into memory) + ``suffix``."""
        with path.open("rb") as source:
            size = os.fstat(source.fileno()).st_size
            total = len(reply.body) + size + len(reply.suffix)
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(total))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            if reply.body:
                self.wfile.write(reply.body)
            streamed: int = self.connection.sendfile(source)
            sent = len(reply.body) + streamed
        if reply.suffix:
            self.wfile.write(reply.suffix)
        return sent + len(reply.suffix)
