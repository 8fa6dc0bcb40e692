"""The Qualys HTTP client: one session, Basic auth, streamed bodies, retries.

Every call goes through :meth:`QualysClient.call`, which hands the streamed
body to a parser callback. The parse is part of the attempt: a connection cut
mid-body is retried by re-requesting the same thing, so a parser never sees
half a page twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
import requests
import urllib3.exceptions
from defusedxml import DefusedXmlException

from qualys.api.retry import CONCURRENCY_CODES, RATE_LIMIT_CODE, RetryPolicy, announced_wait
from qualys.api.xmlstream import TruncatedBodyError
from qualys.config.settings import Secret
from qualys.errors import (
    AccountBlockedError,
    ApiNotFoundError,
    AuthenticationError,
    BadRequestError,
    KnowledgeBasePermissionError,
    PermissionDeniedError,
    QualysApiError,
    RateLimitExhaustedError,
    TemporaryFailureError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: VM/PC APIs (KnowledgeBase) share a per-subscription concurrency limit.
API_V2_PREFIX = "/api/2.0/"
KB_PATH = "/api/2.0/fo/knowledge_base/vuln/"
CONNECT_TIMEOUT_SECONDS = 15.0
#: Between two bytes, not for the whole body: slow KB/hostasset calls stream
#: keep-alive bytes and JupiterOne saw 5-minute silences that then succeeded.
READ_TIMEOUT_SECONDS = 300.0
#: Error bodies are small; never read more than this of one.
MAX_ERROR_BODY_BYTES = 64 * 1024
USER_AGENT = "qualys-azure-connector/0.1"

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

PLATFORM_HINT = "see https://www.qualys.com/platform-identification/ or Qualys Help > About"


class BodyReader:
    """File-like view of a streamed response body that counts bytes and enforces an overall deadline."""

    def __init__(self, response: requests.Response, on_bytes: Callable[[int], None], deadline: float | None = None) -> None:
        self._raw = response.raw
        self._on_bytes = on_bytes
        self._deadline = deadline

    def read(self, size: int = -1, /) -> bytes:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise TimeoutError("the response took longer than the call's overall time limit")
        # read1: whatever has arrived (up to size), so a slow trickle cannot hold one read past the deadline.
        chunk: bytes = self._raw.read1(None if size < 0 else size, decode_content=True)
        self._on_bytes(len(chunk))
        return chunk


class ConcurrencyLimiter:
    """A semaphore whose size follows ``X-Concurrency-Limit-Limit``.

    Starts at 1 (Express subscriptions allow one call) and grows to what
    Qualys announces, so we never run more /api/2.0/ calls than allowed.
    """

    def __init__(self, limit: int = 1) -> None:
        self._cond = threading.Condition()
        self._limit = max(1, limit)
        self._running = 0

    @property
    def limit(self) -> int:
        return self._limit

    def set_limit(self, limit: int) -> None:
        with self._cond:
            self._limit = max(1, limit)
            self._cond.notify_all()

    def __enter__(self) -> None:
        with self._cond:
            while self._running >= self._limit:
                self._cond.wait()
            self._running += 1

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()


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


@dataclass(frozen=True)
class ErrorBody:
    code: str | None
    text: str | None
    items: Mapping[str, str]


def parse_error_body(body: bytes) -> ErrorBody:
    """Read the CODE/TEXT of a SIMPLE_RETURN or the responseCode of a QPS ServiceResponse."""
    try:
        root = SafeET.fromstring(body.lstrip())
    except (ParseError, DefusedXmlException, ValueError):
        return ErrorBody(None, None, {})
    if root.tag == "ServiceResponse":
        message = root.findtext("responseErrorDetails/errorMessage")
        return ErrorBody(root.findtext("responseCode"), message.strip() if message else None, {})
    code = root.findtext("RESPONSE/CODE") or root.findtext(".//CODE")
    text = root.findtext("RESPONSE/TEXT") or root.findtext(".//TEXT")
    items = {
        (item.findtext("KEY") or "").strip(): (item.findtext("VALUE") or "").strip()
        for item in root.iterfind(".//ITEM_LIST/ITEM")
    }
    return ErrorBody(code.strip() if code else None, text.strip() if text else None, items)


def qps_response_error(response_code: str, message: str | None, endpoint: str) -> QualysApiError:
    """Map a QPS ``responseCode`` other than SUCCESS (sent with HTTP 200) to a typed error."""
    detail = f" ({message})" if message else ""
    if response_code == "INVALID_CREDENTIALS":
        return AuthenticationError(
            f"Qualys rejected the user name or password (responseCode INVALID_CREDENTIALS){detail}.",
            "Check the credentials, and that the API URL (QUALYS_API_URL) is your platform's API server.",
            http_status=200, qualys_code=response_code, endpoint=endpoint,
        )
    if response_code in ("UNAUTHORIZED", "FORBIDDEN"):
        return permission_error(200, response_code, endpoint)
    if response_code == "INVALID_REQUEST":
        return BadRequestError(
            f"Qualys rejected the request as invalid (responseCode INVALID_REQUEST){detail}.",
            "This is a connector bug or a Qualys API change: report it with this message.",
            http_status=200, qualys_code=response_code, endpoint=endpoint,
        )
    return QualysApiError(
        f"Qualys answered responseCode {response_code}{detail}.",
        "Check the Qualys account's API access; retry later if this persists.",
        http_status=200, qualys_code=response_code, endpoint=endpoint,
    )


def permission_error(status: int, code: str | None, endpoint: str) -> PermissionDeniedError:
    how = f"HTTP {status}" + (f", {code}" if code else "")
    return PermissionDeniedError(
        f"The Qualys user is not allowed to use {endpoint} ({how}): it lacks API access or Asset View permission.",
        "Give the user a role with 'API Access' and the Asset View 'Read Asset' permission, with full scope "
        "('Allow user view access to all objects').",
        http_status=status, qualys_code=code, endpoint=endpoint,
    )


class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying."""

    def __init__(self, reason: str, wait: float | None, rate_limited: bool, status: int | None, code: str | None):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.rate_limited = rate_limited
        self.status = status
        self.code = code


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
        self._call_deadline = call_deadline
        self._session = requests.Session()
        self._session.auth = (username, password.reveal())
        self._session.headers.update({"X-Requested-With": USER_AGENT, "User-Agent": USER_AGENT})
        # Redirects are never followed (allow_redirects=False on every request): a redirect could carry the
        # Basic credentials elsewhere. Not max_redirects=0: requests then raises TooManyRedirects on any 3xx
        # while computing Response.next, instead of handing us the answer to turn into a QualysApiError.
        self._api_limiter = ConcurrencyLimiter(1)
        self._lock = threading.Lock()
        self._not_before = 0.0

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> QualysClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the one entry point -------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        parse: Callable[[BodyReader], T],
        *,
        data: bytes | Mapping[str, str] | None = None,
        content_type: str | None = None,
        endpoint: str,
    ) -> T:
        """Send one request (with retries) and return ``parse(body)`` of the successful answer."""
        attempt = 0
        deadline = time.monotonic() + self._call_deadline if self._call_deadline is not None else None
        while True:
            attempt += 1
            try:
                return self._attempt(method, path, parse, data, content_type, endpoint, deadline)
            except _Retry as retry:
                self._before_retry(retry, attempt, endpoint, deadline)

    def _before_retry(self, retry: _Retry, attempt: int, endpoint: str, deadline: float | None) -> None:
        policy = self.retry
        wait = retry.wait if retry.wait is not None else policy.backoff(attempt)
        with self._lock:
            waited = self.stats.waited_seconds
        exhausted = attempt >= policy.max_attempts or waited + wait > policy.max_total_wait
        if deadline is not None and time.monotonic() + wait >= deadline:
            exhausted = True
        if exhausted:
            raise self._exhausted_error(retry, attempt, wait, waited, endpoint)
        log.warning("Qualys %s: %s; retry %d in %.1f s", endpoint, retry.reason, attempt, wait)
        with self._lock:
            self.stats.retries += 1
            self.stats.waited_seconds += wait
        self._sleep(wait)

    def _exhausted_error(self, retry: _Retry, attempt: int, wait: float, waited: float, endpoint: str) -> QualysApiError:
        budget = (
            f"Qualys asked for {wait:.0f} s more after {waited:.0f} s of waiting"
            if attempt < self.retry.max_attempts
            else f"after {attempt} attempts"
        )
        if retry.rate_limited:
            return RateLimitExhaustedError(
                f"Qualys kept refusing calls to {endpoint}: too many requests ({retry.reason}); {budget}.",
                "Use a dedicated Qualys API user for this connector so other tools do not use up its "
                "rate and concurrency limits, or run the sync less often; the next run resumes where this one stopped.",
                http_status=retry.status, qualys_code=retry.code, endpoint=endpoint,
            )
        return TemporaryFailureError(
            f"Qualys could not be reached or failed temporarily at {endpoint} ({retry.reason}); {budget}.",
            f"Check the API URL ({self.api_url}) and that the connector's outbound IPs are allow-listed "
            "in Qualys; the next run resumes where this one stopped.",
            http_status=retry.status, qualys_code=retry.code, endpoint=endpoint,
        )

    def _attempt(
        self,
        method: str,
        path: str,
        parse: Callable[[BodyReader], T],
        data: bytes | Mapping[str, str] | None,
        content_type: str | None,
        endpoint: str,
        deadline: float | None,
    ) -> T:
        limited = path.startswith(API_V2_PREFIX)
        self._respect_rate_window()
        if limited:
            with self._api_limiter:
                return self._send(method, path, parse, data, content_type, endpoint, deadline)
        return self._send(method, path, parse, data, content_type, endpoint, deadline)

    def _respect_rate_window(self) -> None:
        """Wait when the last answer said the rate window is used up (X-RateLimit-Remaining 0)."""
        with self._lock:
            delay = self._not_before - time.monotonic()
        if delay > 0:
            with self._lock:
                self.stats.waited_seconds += delay
            self._sleep(delay)

    def _send(
        self,
        method: str,
        path: str,
        parse: Callable[[BodyReader], T],
        data: bytes | Mapping[str, str] | None,
        content_type: str | None,
        endpoint: str,
        deadline: float | None,
    ) -> T:
        headers = {"Content-Type": content_type} if content_type else {}
        with self._lock:
            self.stats.calls[endpoint] += 1
        try:
            response = self._session.request(
                method, self.api_url + path, data=data, headers=headers,
                stream=True, timeout=self._timeout, allow_redirects=False,
            )
        except requests.exceptions.Timeout as exc:
            raise _Retry(f"timed out: {type(exc).__name__}", None, False, None, None) from exc
        except requests.exceptions.ConnectionError as exc:
            raise _Retry(f"connection failed: {_short(exc)}", None, False, None, None) from exc
        try:
            self._learn_limits(response, path)
            if 200 <= response.status_code < 300:
                try:
                    return parse(BodyReader(response, self._count_bytes, deadline))
                except _BODY_TRANSPORT_ERRORS as exc:
                    raise _Retry(f"body cut off: {_short(exc)}", None, False, response.status_code, None) from exc
            raise self._refusal(response, endpoint)
        finally:
            response.close()

    def _count_bytes(self, count: int) -> None:
        with self._lock:
            self.stats.bytes_received += count

    def _learn_limits(self, response: requests.Response, path: str) -> None:
        headers = response.headers
        limit = headers.get("X-Concurrency-Limit-Limit")
        if limit and limit.strip().isdigit() and path.startswith(API_V2_PREFIX):
            self._api_limiter.set_limit(int(limit))
        remaining, to_wait = headers.get("X-RateLimit-Remaining"), headers.get("X-RateLimit-ToWait-Sec")
        if remaining and remaining.strip() == "0" and to_wait:
            try:
                seconds = float(to_wait)
            except ValueError:
                return
            with self._lock:
                self._not_before = max(self._not_before, time.monotonic() + seconds)

    def _refusal(self, response: requests.Response, endpoint: str) -> Exception:
        """Turn a non-2xx answer into a typed error or an internal retry signal."""
        status = response.status_code
        try:
            body = response.raw.read(MAX_ERROR_BODY_BYTES, decode_content=True)
        except _BODY_TRANSPORT_ERRORS:
            body = b""
        error = parse_error_body(body)
        code = error.code
        text = f": {error.text}" if error.text else ""
        hint = announced_wait(response.headers, error.items)
        how = f"HTTP {status}" + (f", code {code}" if code else "")
        if code == RATE_LIMIT_CODE or status == 429:
            return _Retry(f"rate limited ({how})", hint, True, status, code)
        if code in CONCURRENCY_CODES:
            wait = hint if hint is not None else self.retry.concurrency_wait
            return _Retry(f"concurrency limit reached ({how})", wait, True, status, code)
        if status >= 500:
            return _Retry(f"server error ({how})", hint, False, status, code)
        if 300 <= status < 400:
            target = response.headers.get("Location", "?")
            return QualysApiError(
                f"Qualys answered with a redirect ({how}) to {_host_of(target)}; redirects are not followed.",
                f"Set the API URL (QUALYS_API_URL) to the API server itself ({PLATFORM_HINT}).",
                http_status=status, qualys_code=code, endpoint=endpoint,
            )
        if status == 401:
            if code in ("2001", "2003", "2011"):
                return AccountBlockedError(
                    f"Qualys refuses API access for this account ({how}{text}).",
                    "Fix the account in Qualys (expired, registration incomplete or SecureID required).",
                    http_status=status, qualys_code=code, endpoint=endpoint,
                )
            return AuthenticationError(
                f"Qualys rejected the user name or password ({how}{text}).",
                "Check the credentials, and that the API URL (QUALYS_API_URL) is your platform's API server: a wrong "
                f"platform also answers 'Bad Login/Password' ({PLATFORM_HINT}).",
                http_status=status, qualys_code=code, endpoint=endpoint,
            )
        if status == 403:
            return permission_error(status, code, endpoint)
        if status == 404:
            return ApiNotFoundError(
                f"No Qualys API at {self.api_url}{response.request.path_url.split('?')[0]} (HTTP 404).",
                "Set the API URL (QUALYS_API_URL) to your platform's API server, e.g. https://qualysapi.qg2.apps.qualys.com "
                f"({PLATFORM_HINT}).",
                http_status=status, qualys_code=code, endpoint=endpoint,
            )
        if status == 409 and endpoint == "knowledge_base":
            return KnowledgeBasePermissionError(
                f"Qualys refused the KnowledgeBase call ({how}{text}): the user likely lacks KnowledgeBase permission.",
                "Give the API user access to the KnowledgeBase (Vulnerability Management, API access), then check "
                "with: curl -u USER -H 'X-Requested-With: curl' -d action=list "
                f"{self.api_url}/api/2.0/fo/knowledge_base/vuln/",
                http_status=status, qualys_code=code, endpoint=endpoint,
            )
        if status in (400, 409):
            return BadRequestError(
                f"Qualys rejected the request to {endpoint} ({how}{text}).",
                "This is a connector bug or a Qualys API change: report it with this message.",
                http_status=status, qualys_code=code, endpoint=endpoint,
            )
        return QualysApiError(
            f"Qualys answered {how} to {endpoint}{text}.",
            "Retry later; if it persists, check the Qualys account.",
            http_status=status, qualys_code=code, endpoint=endpoint,
        )


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _host_of(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc.rsplit("@", 1)[-1] or url[:80]
