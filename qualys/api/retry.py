"""Retry policy: which Qualys answers are worth another try, and how long to wait.

One object with named settings (in the spirit of azure-core's RetryPolicy), and
one place that reads the server's wait hints. Qualys announces waits in its own
headers and SIMPLE_RETURN items (docs/qualys-api.md §5).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

#: SIMPLE_RETURN codes that mean "not now" rather than "no": 1960 concurrency
#: limit, 1965 rate limit, 1920 the generic code Qualys replaced by those two.
#: Decided on the CODE, not the HTTP status (Appendix D prints 1965 as 400).
RATE_LIMIT_CODE = "1965"
CONCURRENCY_CODES = frozenset({"1960", "1920"})
RETRYABLE_CODES = CONCURRENCY_CODES | {RATE_LIMIT_CODE}


class RetrySignal(Exception):
    """An attempt failed in a way worth another try; carries what the retry decision needs."""

    def __init__(
        self,
        reason: str,
        *,
        wait: float | None = None,
        rate_limited: bool = False,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        #: Seconds the server asked for; None = back off by the policy.
        self.wait = wait
        #: A rate or concurrency refusal (as opposed to a transport failure or a 5xx).
        self.rate_limited = rate_limited
        self.status = status
        self.code = code


@dataclass(frozen=True)
class RetryPolicy:
    """Named, documented retry settings."""

    #: Attempts per call, the first included.
    max_attempts: int = 8
    #: First backoff in seconds; doubles each attempt, with full jitter.
    backoff_base: float = 2.0
    #: Ceiling of one computed backoff.
    backoff_max: float = 120.0
    #: Total seconds one client (= one run) may spend waiting, hints included.
    max_total_wait: float = 900.0
    #: Wait after a concurrency refusal (1960) that names no wait: Qualys
    #: samples and qualysapi wait ~30 s for a running call to finish.
    concurrency_wait: float = 30.0

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Exponential backoff with jitter for ``attempt`` (1 = first retry)."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return (rng or random).uniform(ceiling / 2, ceiling)


def announced_wait(headers: Mapping[str, str], items: Mapping[str, str] | None = None) -> float | None:
    """Seconds the server asked us to wait, if it said so.

    ``X-RateLimit-ToWait-Sec`` (Qualys), ``SECONDS_TO_WAIT`` (SIMPLE_RETURN
    item of code 1965) and ``Retry-After`` (seconds form) are honoured; the
    largest wins. A zero ToWait is no hint (Qualys sends 0 on every call).
    """
    candidates: list[float] = []
    for value in (
        headers.get("X-RateLimit-ToWait-Sec"),
        (items or {}).get("SECONDS_TO_WAIT"),
        headers.get("Retry-After"),
    ):
        if value is None:
            continue
        try:
            seconds = float(value.strip())
        except ValueError:
            continue  # an HTTP-date Retry-After: fall back to backoff
        if seconds > 0:
            candidates.append(seconds)
    return max(candidates) if candidates else None
