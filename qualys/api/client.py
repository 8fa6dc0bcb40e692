"""The Qualys HTTP client: one session, Basic auth, streamed bodies, retries.

Every call goes through :meth:`QualysClient.call`, which hands the streamed
body to a parser callback. The parse is part of the attempt: a connection cut
mid-body is retried by re-requesting the same thing, so a parser never sees
half a page twice. What a refusal means is decided in :mod:`qualys.api.refusals`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import requests
import urllib3.exceptions

from qualys.api.limits import ConcurrencyLimiter, RateWindow
from qualys.api.refusals import exhausted_error, refusal
from qualys.api.request import ApiRequest
from qualys.api.retry import RetryPolicy, RetrySignal
from qualys.api.xmlstream import TruncatedBodyError, root_element
from qualys.config.secret import Secret
from qualys.errors import QualysApiError

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 15.0
#: Between two bytes, not for the whole body: slow KB/hostasset calls stream
#: keep-alive bytes and JupiterOne saw 5-minute silences that then succeeded.
READ_TIMEOUT_SECONDS = 300.0
#: Error bodies are small; never read more than this of one.
MAX_ERROR_BODY_BYTES = 64 * 1024
USER_AGENT = "qualys-azure-connector/0.1"
#: How far into a body the client looks for its root element (past the XML declaration and DOCTYPE).
ROOT_LOOKAHEAD_BYTES = 64 * 1024
FIRST_READ_BYTES = 8 * 1024
#: The element Qualys's VM/PC APIs answer errors with; on a 2xx it stands where the data should be.
SIMPLE_RETURN = "SIMPLE_RETURN"
#: The document every QPS answer is, errors included (``responseCode``); on another API it is an error.
SERVICE_RESPONSE = "ServiceResponse"

#: Errors while reading a body that mean "the connection broke", not "bad data".
_BODY_TRANSPORT_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    urllib3.exceptions.DecodeError,
    ConnectionError,
    TimeoutError,
    TruncatedBodyError,
)


class BodyReader:
    """File-like view of a streamed response body that counts bytes and enforces an overall deadline."""

    def __init__(self, response: requests.Response, on_bytes: Callable[[int], None], deadline: float | None = None) -> None:
        self._raw = response.raw
        self._on_bytes = on_bytes
        self._deadline = deadline
        self._ahead = b""  # read by root_element(), handed out first by read()

    def read(self, size: int = -1, /) -> bytes:
        if self._ahead:
            chunk, self._ahead = (self._ahead, b"") if size < 0 else (self._ahead[:size], self._ahead[size:])
            return chunk
        return self._read_raw(size)

    def _read_raw(self, size: int) -> bytes:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise TimeoutError("the response took longer than the call's overall time limit")
        # read1: whatever has arrived (up to size), so a slow trickle cannot hold one read past the deadline.
        chunk: bytes = self._raw.read1(None if size < 0 else size, decode_content=True)
        self._on_bytes(len(chunk))
        return chunk

    def root_element(self) -> str | None:
        """The name of the document's root element, read ahead (and handed out again by :meth:`read`).

        None when the body is not XML or names no element within its first bytes. Keep-alive whitespace
        that Qualys sends before a slow answer is dropped while looking (the parsers drop it anyway).
        """
        head = b""
        while len(head) < ROOT_LOOKAHEAD_BYTES:
            chunk = self._read_raw(FIRST_READ_BYTES)
            if not chunk:
                break
            head = (head + chunk) if head else chunk.lstrip(b" \t\r\n")
            decided, name = root_element(head)
            if decided:
                self._ahead = head
                return name
        self._ahead = head
        return None


@dataclass
class ClientStats:
    """What a run cost: calls by endpoint, retries, waits, bytes."""

    calls: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    waited_seconds: float = 0.0
    bytes_received: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "calls": dict(self.calls),
            "retries": self.retries,
            "waited_seconds": round(self.waited_seconds, 3),
            "bytes_received": self.bytes_received,
        }


class QualysClient:
    """Talks to one Qualys API server. Thread-safe; share one per run."""

    def __init__(
        self,
        api_url: str,
        username: str,
        password: Secret,
        *,
        retry: RetryPolicy | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        call_deadline: float | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.stats = ClientStats()
        self._timeout = (connect_timeout, read_timeout)
        self._sleep = sleep
        #: Seconds one call (all attempts, waits and body included) may take; None = no overall limit.
        #: May be changed between calls (the validation shares one time budget between its checks).
        self.call_deadline = call_deadline
        self._session = requests.Session()
        self._session.auth = (username, password.reveal())
        self._session.headers.update({"X-Requested-With": USER_AGENT, "User-Agent": USER_AGENT})
        # Redirects are never followed (allow_redirects=False on every request): a redirect could carry the
        # Basic credentials elsewhere. Not max_redirects=0: requests then raises TooManyRedirects on any 3xx
        # while computing Response.next, instead of handing us the answer to turn into a QualysApiError.
        self._vm_api_limiter = ConcurrencyLimiter(1)
        self._rate_window = RateWindow()
        self._lock = threading.Lock()

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> QualysClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, request: ApiRequest, parse: Callable[[BodyReader], T]) -> T:
        """Send ``request`` (with retries) and return ``parse(body)`` of the successful answer."""
        attempt = 0
        deadline = time.monotonic() + self.call_deadline if self.call_deadline is not None else None
        while True:
            attempt += 1
            try:
                return self._attempt(request, parse, deadline)
            except RetrySignal as signal:
                self._before_retry(signal, attempt=attempt, endpoint=request.endpoint, deadline=deadline)

    def _before_retry(self, signal: RetrySignal, *, attempt: int, endpoint: str, deadline: float | None) -> None:
        policy = self.retry
        wait = signal.wait if signal.wait is not None else policy.backoff(attempt)
        with self._lock:
            waited = self.stats.waited_seconds
        exhausted = attempt >= policy.max_attempts or waited + wait > policy.max_total_wait
        if deadline is not None and time.monotonic() + wait >= deadline:
            exhausted = True
        if exhausted:
            budget = (
                f"Qualys asked for {wait:.0f} s more after {waited:.0f} s of waiting"
                if attempt < policy.max_attempts
                else f"after {attempt} attempts"
            )
            raise exhausted_error(signal, endpoint, budget, self.api_url)
        log.warning("Qualys %s: %s; retry %d in %.1f s", endpoint, signal.reason, attempt, wait)
        with self._lock:
            self.stats.retries += 1
            self.stats.waited_seconds += wait
        self._sleep(wait)

    def _attempt(self, request: ApiRequest, parse: Callable[[BodyReader], T], deadline: float | None) -> T:
        delay = self._rate_window.delay()
        if delay > 0:
            with self._lock:
                self.stats.waited_seconds += delay
            self._sleep(delay)
        if request.shares_vm_api_limit:
            with self._vm_api_limiter:
                return self._send(request, parse, deadline)
        return self._send(request, parse, deadline)

    def _send(self, request: ApiRequest, parse: Callable[[BodyReader], T], deadline: float | None) -> T:
        headers = {"Content-Type": request.content_type} if request.content_type else {}
        with self._lock:
            self.stats.calls[request.endpoint] += 1
        try:
            response = self._session.request(
                request.method, self.api_url + request.path, data=request.data, headers=headers,
                stream=True, timeout=self._timeout, allow_redirects=False,
            )
        except requests.exceptions.Timeout as exc:
            raise RetrySignal(f"timed out: {type(exc).__name__}") from exc
        except requests.exceptions.ConnectionError as exc:
            raise RetrySignal(f"connection failed: {_short(exc)}") from exc
        try:
            if request.shares_vm_api_limit:
                self._vm_api_limiter.learn(response.headers)
            self._rate_window.learn(response.headers)
            if 200 <= response.status_code < 300:
                body = BodyReader(response, self._count_bytes, deadline)
                try:
                    root = body.root_element()
                    # An error document where data should be, sent with a success status: read its code.
                    if root == SIMPLE_RETURN or (root == SERVICE_RESPONSE and not request.is_qps):
                        raise self._refusal(request, response, body)
                    return parse(body)
                except _BODY_TRANSPORT_ERRORS as exc:
                    raise RetrySignal(f"body cut off: {_short(exc)}", status=response.status_code) from exc
            raise self._refusal(request, response, BodyReader(response, self._count_bytes, deadline))
        finally:
            response.close()

    def _count_bytes(self, count: int) -> None:
        with self._lock:
            self.stats.bytes_received += count

    def _refusal(self, request: ApiRequest, response: requests.Response, body: BodyReader) -> QualysApiError | RetrySignal:
        """The error an error answer means; its body is read up to ``MAX_ERROR_BODY_BYTES`` (error bodies are small)."""
        data = b""
        try:
            while len(data) < MAX_ERROR_BODY_BYTES and (chunk := body.read(MAX_ERROR_BODY_BYTES - len(data))):
                data += chunk
        except _BODY_TRANSPORT_ERRORS:
            pass  # what arrived is enough to report; the status still says what kind of refusal it was
        return refusal(
            request, response.status_code, response.headers, data,
            api_url=self.api_url, concurrency_wait=self.retry.concurrency_wait,
        )


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
