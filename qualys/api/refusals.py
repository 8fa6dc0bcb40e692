"""Qualys refusals -> typed errors (or a retry signal), in one place.

In the spirit of azure-storage-blob's ``process_storage_error``: the client hands over what
came back (status, headers, the start of the body) and gets either an error to raise, with the
cause and the fix a person needs, or a :class:`~qualys.api.retry.RetrySignal`. The mapping
follows the Qualys troubleshooting table Microsoft publishes for its connector (401, 403, 404,
409, 429, temporary failures) and decides rate and concurrency refusals on the Qualys CODE,
not the status (docs/qualys-api.md §5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict
from urllib.parse import urlsplit
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from qualys.api.request import ApiRequest
from qualys.api.retry import CONCURRENCY_CODES, RATE_LIMIT_CODE, RetrySignal, announced_wait
from qualys.errors import (
    AccountBlockedError,
    ApiNotFoundError,
    AuthenticationError,
    BadRequestError,
    PermissionDeniedError,
    QualysApiError,
    RateLimitExhaustedError,
    TemporaryFailureError,
)

PLATFORM_HINT = "see https://www.qualys.com/platform-identification/ or Qualys Help > About"

# Qualys's error codes (SIMPLE_RETURN <CODE>, QPS <responseCode>), by what they mean for the connector.
# Codes from Qualys's Appendix D "Error Codes/Descriptions" (docs/qualys-api.md §5.2) and recorded answers.
AUTH_CODES = frozenset({"2000", "INVALID_CREDENTIALS"})
#: The account itself cannot use the API: (what is wrong, how to fix it).
ACCOUNT_BLOCKED: dict[str, tuple[str, str]] = {
    "2001": ("the account has expired", "Renew or reactivate the account in Qualys, or use another API user."),
    "2002": ("the user account is inactive", "Activate the API user in Qualys (Users), or use an active one."),
    "2003": (
        "the account's registration is not complete",
        "Sign in to the Qualys web UI once as this user and finish the registration; API calls are served after that.",
    ),
    "2011": (
        "SecureID authentication is required for this account, which blocks API access",
        "Use an API user that does not require SecureID, or turn SecureID off for this user in Qualys.",
    ),
    "2012": (
        "the user's license does not allow this API",
        "Ask your Qualys administrator or account manager to enable API access for this user's license.",
    ),
}
PERMISSION_CODES = frozenset({"UNAUTHORIZED", "FORBIDDEN"})
#: Not now rather than no: an internal error, a request still being processed, scheduled maintenance.
TEMPORARY_CODES = frozenset({"999", "1981", "1999"})
#: The request itself is wrong (unrecognized, missing, exclusive or invalid parameters): a bug or an API change.
REQUEST_CODES = frozenset({"1901", "1903", "1904", "1905", "1907", "1908", "1922", "INVALID_REQUEST"})


class _Details(TypedDict, total=False):
    """The keyword arguments every QualysApiError takes: how Qualys answered."""

    http_status: int | None
    qualys_code: str | None
    qualys_text: str | None
    endpoint: str


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


def refusal(
    request: ApiRequest,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    api_url: str,
    concurrency_wait: float,
) -> QualysApiError | RetrySignal:
    """What an error answer means: a non-2xx answer, or a SIMPLE_RETURN sent where data was expected."""
    error = parse_error_body(body)
    return classify(
        request.endpoint, status, error, announced_wait(headers, error.items),
        location=headers.get("Location"), url=api_url + request.path, api_url=api_url,
        concurrency_wait=concurrency_wait,
    )


def classify(
    endpoint: str,
    status: int,
    error: ErrorBody,
    hint: float | None = None,
    *,
    location: str | None = None,
    url: str = "",
    api_url: str = "",
    concurrency_wait: float = 30.0,
) -> QualysApiError | RetrySignal:
    """Qualys's CODE decides first, whatever the HTTP status (Qualys sends the same code with 200, 401 or
    409, and prints 1965 as a 400); the status decides only when the code says nothing we know."""
    code = error.code
    text = f": {error.text}" if error.text else ""
    how = f"HTTP {status}" + (f", code {code}" if code else "")
    details: _Details = {"http_status": status, "qualys_code": code, "qualys_text": error.text, "endpoint": endpoint}
    if code == RATE_LIMIT_CODE or (status == 429 and code is None):
        return RetrySignal(f"rate limited ({how})", wait=hint, rate_limited=True, status=status, code=code)
    if code in CONCURRENCY_CODES:
        wait = hint if hint is not None else concurrency_wait
        return RetrySignal(f"concurrency limit reached ({how})", wait=wait, rate_limited=True, status=status, code=code)
    if code in ACCOUNT_BLOCKED:
        what, fix = ACCOUNT_BLOCKED[code]
        return AccountBlockedError(f"Qualys refuses API access for this account: {what} ({how}{text}).", fix, **details)
    if code in AUTH_CODES:
        return _authentication_error(how, text, details)
    if code in PERMISSION_CODES:
        return permission_error(status, code, endpoint)
    if code in REQUEST_CODES:
        return _bad_request(endpoint, how, text, details)
    if code in TEMPORARY_CODES or status >= 500:
        return RetrySignal(f"temporarily unavailable ({how}{text})", wait=hint, status=status, code=code)
    if status == 429:
        return RetrySignal(f"rate limited ({how})", wait=hint, rate_limited=True, status=status, code=code)
    if 300 <= status < 400:
        return QualysApiError(
            f"Qualys answered with a redirect ({how}) to {_host_of(location or '?')}; redirects are not followed.",
            f"Set the API URL (QUALYS_API_URL) to the API server itself ({PLATFORM_HINT}).",
            **details,
        )
    if status == 401:
        return _authentication_error(how, text, details)
    if status == 403:
        return permission_error(status, code, endpoint)
    if status == 404:
        return ApiNotFoundError(
            f"No Qualys API at {url} (HTTP 404).",
            "Set the API URL (QUALYS_API_URL) to your platform's API server, e.g. https://qualysapi.qg2.apps.qualys.com "
            f"({PLATFORM_HINT}).",
            **details,
        )
    if status in (400, 409):
        return _bad_request(endpoint, how, text, details)
    return QualysApiError(
        f"Qualys answered {how} to {endpoint}{text}.",
        "Check the Qualys account's API access; retry later if this persists.",
        **details,
    )


def _authentication_error(how: str, text: str, details: _Details) -> AuthenticationError:
    return AuthenticationError(
        f"Qualys rejected the user name or password ({how}{text}).",
        "Check the credentials, and that the API URL (QUALYS_API_URL) is your platform's API server: a wrong "
        f"platform also answers 'Bad Login/Password' ({PLATFORM_HINT}).",
        **details,
    )


def _bad_request(endpoint: str, how: str, text: str, details: _Details) -> BadRequestError:
    return BadRequestError(
        f"Qualys rejected the request to {endpoint} ({how}{text}).",
        "This is a connector bug or a Qualys API change: report it with this message.",
        **details,
    )


def exhausted_error(signal: RetrySignal, endpoint: str, budget: str, api_url: str) -> QualysApiError:
    """The error of a call whose retries ran out; ``budget`` says how (attempts, or waiting time)."""
    details: _Details = {"http_status": signal.status, "qualys_code": signal.code, "endpoint": endpoint}
    if signal.rate_limited:
        return RateLimitExhaustedError(
            f"Qualys kept refusing calls to {endpoint}: too many requests ({signal.reason}); {budget}.",
            "Use a dedicated Qualys API user for this connector so other tools do not use up its "
            "rate and concurrency limits, or run the sync less often; the next run resumes where this one stopped.",
            **details,
        )
    return TemporaryFailureError(
        f"Qualys could not be reached or failed temporarily at {endpoint} ({signal.reason}); {budget}.",
        f"Check the API URL ({api_url}) and that the connector's outbound IPs are allow-listed "
        "in Qualys; the next run resumes where this one stopped.",
        **details,
    )


def qps_response_error(response_code: str, message: str | None, endpoint: str) -> QualysApiError | RetrySignal:
    """What a QPS ``responseCode`` other than SUCCESS, sent with HTTP 200, means (as :func:`classify`)."""
    return classify(endpoint, 200, ErrorBody(response_code, message, {}))


#: What a refused API needs, by endpoint name: (what the user lacks, how to grant it). The host asset
#: search and count need what Microsoft's connector documents ([MS-DOC], docs/qualys-api.md §8); the others say theirs.
_PERMISSIONS: dict[str, tuple[str, str]] = {
    "tag": (
        "it lacks permission to read asset tags (the connector reads each tag's criticalityScore)",
        "Give the user's role 'API Access' and, in Asset View (Asset Management), access to tags with full scope "
        "('Allow user view access to all objects'); without it, the sync cannot tell asset criticality.",
    ),
    "knowledge_base": (
        "it lacks KnowledgeBase permission",
        "Give the API user access to the KnowledgeBase (Vulnerability Management, API access).",
    ),
}
_ASSET_PERMISSION = (
    "it lacks API access or Asset View permission",
    "Give the user a role with 'API Access' and the Asset View 'Read Asset' permission, with full scope "
    "('Allow user view access to all objects').",
)


def permission_error(status: int, code: str | None, endpoint: str) -> PermissionDeniedError:
    how = f"HTTP {status}" + (f", {code}" if code else "")
    lacks, fix = _PERMISSIONS.get(endpoint, _ASSET_PERMISSION)
    return PermissionDeniedError(
        f"The Qualys user is not allowed to use {endpoint} ({how}): {lacks}.", fix,
        http_status=status, qualys_code=code, endpoint=endpoint,
    )


def _host_of(url: str) -> str:
    return urlsplit(url).netloc.rsplit("@", 1)[-1] or url[:80]
