"""KnowledgeBase lookups in the background: whole batches of new QIDs, a few requests at a time.

The sync hands over the QIDs of each page; a partial batch waits for the next pages' QIDs
(:meth:`KnowledgeBaseLookups.wait` sends it), so a run makes one request per full batch of
new QIDs instead of one per page. Requests run on worker threads while the sync reads on;
the entries come back to the sync's thread through :meth:`~KnowledgeBaseLookups.ready` and
:meth:`~KnowledgeBaseLookups.wait`, which raise a failed request's typed error.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from qualys.api.client import QualysClient
from qualys.api.knowledge_base import KB_BATCH_SIZE, KbEntry, fetch_changed_since, fetch_entries

#: Upper bound of KnowledgeBase calls in flight; the client's limiter enforces Qualys's actual limit.
KB_PARALLEL_BATCHES = 4


class KnowledgeBaseLookups:
    """Owns the KnowledgeBase requests of one run: its client, its worker threads, what is pending."""

    def __init__(self, client: QualysClient, batch_size: int = KB_BATCH_SIZE, workers: int = KB_PARALLEL_BATCHES) -> None:
        self._client = client
        self._batch_size = batch_size
        self._workers = workers
        self._queued: dict[int, None] = {}  # QIDs seen on pages but not requested yet, in first-seen order
        self._in_flight: list[tuple[list[int], Future[list[KbEntry]]]] = []  # requested, not handed back yet
        self._requested: set[int] = set()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def pending(self) -> bool:
        """QIDs asked for whose entries have not been handed back yet (queued or in flight)."""
        return bool(self._queued or self._in_flight)

    def queue(self, qids: Iterable[int], known: Container[int]) -> None:
        """Note the QIDs not in ``known``; request them in the background as soon as they fill whole batches."""
        for qid in qids:
            if qid not in known and qid not in self._requested:
                self._queued.setdefault(qid, None)
        full = len(self._queued) // self._batch_size * self._batch_size
        if full:
            self._request(list(self._queued)[:full])

    def ready(self) -> list[KbEntry]:
        """Entries of the requests that have finished, without waiting for the others."""
        return self._collect(wait=False)

    def wait(self) -> list[KbEntry]:
        """Request whatever is still queued (at most one partial batch) and wait for every request."""
        if self._queued:
            self._request(list(self._queued))
        return self._collect(wait=True)

    def changed_since(self, since: str, cached: Container[int]) -> list[KbEntry]:
        """The ``cached`` QIDs Qualys changed after ``since`` (one request)."""
        return [entry for entry in fetch_changed_since(self._client, since) if entry.qid in cached]

    def close(self) -> None:
        """Stop the worker threads; requests not started are cancelled (a failed run needs none)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _request(self, qids: list[int]) -> None:
        if self._pool is None:
            # The client's limiter holds the calls to Qualys's X-Concurrency-Limit-Limit.
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="qualys-kb")
        ordered = sorted(qids)
        for start in range(0, len(ordered), self._batch_size):
            batch = ordered[start : start + self._batch_size]
            self._in_flight.append((batch, self._pool.submit(fetch_entries, self._client, batch)))
        self._requested.update(qids)
        # Rebuilt, not emptied in place: a dict or set keeps the table of its largest size (thousands of QIDs).
        self._queued = {qid: None for qid in self._queued if qid not in self._requested}

    def _collect(self, *, wait: bool) -> list[KbEntry]:
        entries: list[KbEntry] = []
        still: list[tuple[list[int], Future[list[KbEntry]]]] = []
        for batch, future in self._in_flight:
            if wait or future.done():
                entries.extend(future.result())  # a failed request raises its typed error here
                self._requested.difference_update(batch)
                if not self._requested:
                    self._requested = set()  # rebuilt, for the same reason as _queued
            else:
                still.append((batch, future))
        self._in_flight = still
        return entries
