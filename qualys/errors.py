"""Typed errors: code above decides by type, people read ``str(error)``.

Every error a user must act on carries a one-line ``cause`` and an ``action``
(the fix in plain words), following the Qualys troubleshooting table that
Microsoft publishes for its Qualys connector (401, 403, 404, 409, 429,
temporary failures). Messages never contain credentials.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class: a failure with a cause and the action that fixes it."""

    def __init__(self, cause: str, action: str = "") -> None:
        self.cause = cause
        self.action = action
        super().__init__(f"{cause} {action}".strip() if action else cause)


class ConfigError(ConnectorError):
    """A setting is missing or invalid; the message names the setting."""


class SinkError(ConnectorError):
    """The output location cannot be read or written."""


class LockHeldError(SinkError):
    """Another sync holds the output lock."""


class ResponseFormatError(ConnectorError):
    """Qualys sent a body that is not the XML we expect (or hostile XML)."""


class QualysApiError(ConnectorError):
    """Qualys refused a request. ``http_status``/``qualys_code`` say how."""

    def __init__(
        self,
        cause: str,
        action: str = "",
        *,
        http_status: int | None = None,
        qualys_code: str | None = None,
        qualys_text: str | None = None,
        endpoint: str = "",
    ) -> None:
        super().__init__(cause, action)
        self.http_status = http_status
        self.qualys_code = qualys_code
        #: Qualys's own words (SIMPLE_RETURN TEXT, QPS errorMessage), when it sent any.
        self.qualys_text = qualys_text
        self.endpoint = endpoint


class AuthenticationError(QualysApiError):
    """401 / SIMPLE_RETURN 2000 / QPS INVALID_CREDENTIALS."""


class AccountBlockedError(QualysApiError):
    """The account cannot use the API (expired, registration, SecureID)."""


class PermissionDeniedError(QualysApiError):
    """403 or QPS ``UNAUTHORIZED``: the user lacks Asset View / API access."""


class KnowledgeBasePermissionError(QualysApiError):
    """409 on the KnowledgeBase without a rate/concurrency code."""


class ApiNotFoundError(QualysApiError):
    """404: the base URL is not a Qualys API server."""


class RateLimitExhaustedError(QualysApiError):
    """429 / 409 rate or concurrency refusals outlasted the retry budget."""


class TemporaryFailureError(QualysApiError):
    """Connection refused, timeouts, resets, 5xx: retries did not help."""


class BadRequestError(QualysApiError):
    """Qualys rejected the request itself (400, INVALID_REQUEST): a bug or an API change."""
