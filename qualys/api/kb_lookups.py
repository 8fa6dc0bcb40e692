"""KnowledgeBase lookups in the background: whole batches of new QIDs, a few requests at a time.

The sync hands over the QIDs of each page; a partial batch waits for the next pages' QIDs
(:meth:`KnowledgeBaseLookups.wait_for` sends it when a page cannot wait any longer), so a run makes one request per full batch of
new QIDs instead of one per page. Requests run on worker threads while the sync reads on;
the entries come back to the sync's thread through :meth:`~KnowledgeBaseLookups.ready` and
:meth:`~KnowledgeBaseLookups.wait_for`, which raise a failed request's typed error.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Container, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from qualys.api.client import QualysClient
from qualys.api.knowledge_base import KB_BATCH_SIZE, KbEntry, fetch_changed_since, fetch_entries

#: Upper bound of KnowledgeBase calls in flight; the client's limiter enforces Qualys's actual limit.
KB_PARALLEL_BATCHES = 4


class KnowledgeBaseLookups:
    """Owns the KnowledgeBase requests of one run: its client, its worker threads, what is pending.

    Every QID handed to :meth:`queue` gets a sequence number; the ticket :meth:`queue` returns is
    the count of QIDs queued so far, so a page is answered once every QID numbered below its ticket
    has its entry back. Requests are groups of whole batches covering consecutive numbers, and the
    groups are handed back in order: a page never waits for a batch queued after it.
    """

    def __init__(self, client: QualysClient, batch_size: int = KB_BATCH_SIZE, workers: int = KB_PARALLEL_BATCHES) -> None:
        self._client = client
        self._batch_size = batch_size
        self._workers = workers
        self._queued: dict[int, None] = {}  # QIDs seen on pages but not requested yet, in first-seen order
        self._queued_total = 0  # QIDs ever queued: the next QID's sequence number
        self._requested_through = 0  # QIDs numbered below this have been requested
        self._answered_through = 0  # QIDs numbered below this have their entries handed back
        #: Requests in flight, oldest first: the sequence number their group ends at, and its batches not collected yet.
        self._groups: deque[tuple[int, list[Future[list[KbEntry]]]]] = deque()
        self._requested: set[int] = set()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def pending(self) -> bool:
        """QIDs asked for whose entries have not been handed back yet (queued or in flight)."""
        return self._answered_through < self._queued_total

    def queue(self, qids: Iterable[int], known: Container[int]) -> int:
        """Note the QIDs not in ``known``; request them in the background as soon as they fill whole batches.

        Returns the ticket of these QIDs, for :meth:`answered` and :meth:`wait_for`.
        """
        for qid in qids:
            if qid not in known and qid not in self._requested and qid not in self._queued:
                self._queued[qid] = None
                self._queued_total += 1
        full = len(self._queued) // self._batch_size * self._batch_size
        if full:
            self._request(full)
        return self._queued_total

    def answered(self, ticket: int) -> bool:
        """Whether every QID queued up to ``ticket`` has its entry handed back."""
        return ticket <= self._answered_through

    def unsent(self, ticket: int) -> bool:
        """Whether some QIDs queued up to ``ticket`` wait in the partial batch (not requested yet)."""
        return ticket > self._requested_through

    def send_partial(self) -> None:
        """Request the partial batch now, without waiting for its answer."""
        if self._queued:
            self._request(len(self._queued))

    def ready(self) -> list[KbEntry]:
        """Entries of the requests that have finished, without waiting for the others."""
        return self._collect(until=None)

    def wait_for(self, ticket: int) -> list[KbEntry]:
        """Wait until ``ticket`` is answered; send the partial batch first if it holds some of its QIDs."""
        if self.unsent(ticket):
            self.send_partial()
        return self._collect(until=ticket)

    def changed_since(self, since: str, cached: Container[int]) -> list[KbEntry]:
        """The ``cached`` QIDs Qualys changed after ``since`` (one request)."""
        return [entry for entry in fetch_changed_since(self._client, since) if entry.qid in cached]

    def close(self) -> None:
        """Stop the worker threads; requests not started are cancelled (a failed run needs none)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _request(self, count: int) -> None:
        """Request the first ``count`` queued QIDs (in first-seen order) as one group of batches."""
        if self._pool is None:
            # The client's limiter holds the calls to Qualys's X-Concurrency-Limit-Limit.
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="qualys-kb")
        qids = list(itertools.islice(self._queued, count))
        ordered = sorted(qids)
        futures = [
            self._pool.submit(fetch_entries, self._client, ordered[start : start + self._batch_size])
            for start in range(0, len(ordered), self._batch_size)
        ]
        self._requested_through += len(qids)
        self._groups.append((self._requested_through, futures))
        self._requested.update(qids)
        # Rebuilt, not emptied in place: a dict keeps the table of its largest size (thousands of QIDs).
        self._queued = {qid: None for qid in self._queued if qid not in self._requested}

    def _collect(self, *, until: int | None) -> list[KbEntry]:
        """Entries of finished batches; with ``until``, first wait for every group that answers a QID below it."""
        entries: list[KbEntry] = []
        start = self._answered_through
        for end, futures in self._groups:
            must_wait = until is not None and start < until
            still = []
            for future in futures:
                if must_wait or future.done():
                    entries.extend(future.result())  # a failed request raises its typed error here
                else:
                    still.append(future)
            futures[:] = still
            start = end
        while self._groups and not self._groups[0][1]:
            self._answered_through = self._groups.popleft()[0]
        # Entries come back for every QID asked for (unknown ones marked so); the caller's ``known`` has them now.
        self._requested.difference_update(entry.qid for entry in entries)
        if not self._requested:
            self._requested = set()  # rebuilt, for the same reason as _queued
        return entries
