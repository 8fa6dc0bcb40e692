"""Client-side pacing from Qualys's own limit headers.

The VM/PC APIs (``/api/2.0/``) announce ``X-Concurrency-Limit-Limit`` (calls in flight per
subscription) and ``X-RateLimit-Remaining`` / ``X-RateLimit-ToWait-Sec`` (calls left in the
window, and how long until it reopens); docs/qualys-api.md §5.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping


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

    def learn(self, headers: Mapping[str, str]) -> None:
        """Follow the limit an answer announced."""
        limit = headers.get("X-Concurrency-Limit-Limit")
        if limit and limit.strip().isdigit():
            self.set_limit(int(limit))

    def __enter__(self) -> None:
        with self._cond:
            while self._running >= self._limit:
                self._cond.wait()
            self._running += 1

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()


class RateWindow:
    """When the last answer said the rate window is used up (``X-RateLimit-Remaining: 0``), the next call waits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._not_before = 0.0

    def learn(self, headers: Mapping[str, str]) -> None:
        remaining, to_wait = headers.get("X-RateLimit-Remaining"), headers.get("X-RateLimit-ToWait-Sec")
        if not (remaining and remaining.strip() == "0" and to_wait):
            return
        try:
            seconds = float(to_wait)
        except ValueError:
            return
        with self._lock:
            self._not_before = max(self._not_before, time.monotonic() + seconds)

    def delay(self) -> float:
        """Seconds to wait before the next call (0 when the window is open)."""
        with self._lock:
            return max(0.0, self._not_before - time.monotonic())
