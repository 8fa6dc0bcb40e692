"""Host asset pages, fetched ahead of the consumer.

Keyset paging is sequential by nature (page N+1 starts after page N's
``lastId``), but Qualys puts ``hasMoreRecords`` and ``lastId`` *before* the
records. So page N+1 is requested the moment page N's header is read, and the
network wait for it overlaps with parsing page N and with the consumer's
KnowledgeBase lookups and writes. Read-ahead is bounded, so memory stays flat.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor

from qualys.api.assets import AssetPage
from qualys.api.client import BodyReader, QualysClient
from qualys.api.hostasset_search import (
    ENDPOINT,
    HOSTASSET_FIELDS,
    HOSTASSET_SEARCH_PATH,
    HostAssetReader,
    PageHeader,
    search_criteria,
)
from qualys.api.qps import FieldLimit, search
from qualys.errors import ConnectorError

#: Pages fetched or in flight beyond the one being consumed. Two keep the chain busy while the sync
#: writes (it writes a page faster than Qualys serves one); more mostly fill up, parsed, while held pages
#: are written after a KnowledgeBase batch arrives. Benchmark, 20,000 assets: 4 instead of 2 gave
#: 0.8 s less wall time (of 49) and 1.3 MiB more peak memory.
DEFAULT_READ_AHEAD = 2


class PagePrefetcher:
    """One keyset chain of host asset pages, each requested as soon as the page before it names its ``lastId``."""

    def __init__(
        self,
        client: QualysClient,
        modified_after: str,
        page_size: int,
        after_id: int | None,
        read_ahead: int = DEFAULT_READ_AHEAD,
        before_id: int | None = None,
        limit: FieldLimit | None = None,
    ) -> None:
        self._client = client
        self._limit = limit
        self._modified_after = modified_after
        self._page_size = page_size
        self._first_after = after_id
        self._before_id = before_id
        self._read_ahead = max(1, read_ahead)
        self._lock = threading.Lock()
        self._started: dict[int | None, Future[AssetPage]] = {}
        self._outstanding = 0  # submitted, not yet handed to the consumer
        self._deferred: int | None = None
        self._pool = ThreadPoolExecutor(max_workers=self._read_ahead + 1, thread_name_prefix="qualys-page")

    def _submit(self, after_id: int | None) -> None:
        """Start fetching the page after ``after_id`` (caller holds the lock)."""
        if after_id in self._started:
            return
        self._outstanding += 1
        self._started[after_id] = self._pool.submit(self._fetch, after_id)

    def _fetch(self, after_id: int | None) -> AssetPage:
        def parse(body: BodyReader) -> AssetPage:
            reader = HostAssetReader(body)
            try:
                header = reader.header()
                if header is not None:
                    self._header_read(after_id, header)
                return reader.page()
            finally:
                reader.close()

        criteria = search_criteria(self._modified_after, after_id, self._before_id)
        return search(
            self._client, HOSTASSET_SEARCH_PATH, ENDPOINT, criteria, self._page_size, parse,
            fields=HOSTASSET_FIELDS, limit=self._limit,
        )

    def _header_read(self, after_id: int | None, header: PageHeader) -> None:
        """The page after ``after_id`` named the next one: request it now, or as soon as read-ahead allows."""
        last_id = header.last_id
        if not header.has_more or last_id is None or (after_id is not None and last_id <= after_id):
            return
        with self._lock:
            if last_id in self._started:
                return
            if self._outstanding < self._read_ahead:
                self._submit(last_id)
            else:
                self._deferred = last_id  # the consumer starts it when it takes a page

    def pages(self) -> Generator[AssetPage, None, None]:
        """Pages in keyset order until ``hasMoreRecords`` is false."""
        after_id = self._first_after
        try:
            with self._lock:
                self._submit(after_id)
            while True:
                with self._lock:
                    future = self._started.pop(after_id, None)
                    if future is None:
                        self._submit(after_id)
                        future = self._started.pop(after_id)
                page = future.result()
                with self._lock:
                    self._outstanding -= 1
                    deferred, self._deferred = self._deferred, None
                    if deferred is not None:
                        self._submit(deferred)
                yield page
                if not page.has_more:
                    return
                after_id = next_after_id(page, after_id)
        finally:
            with self._lock:
                for pending in self._started.values():
                    pending.cancel()
            self._pool.shutdown(wait=False, cancel_futures=True)


def next_after_id(page: AssetPage, after_id: int | None) -> int | None:
    """The keyset position after ``page``: its ``lastId``, else its highest record id."""
    last = page.last_id if page.last_id is not None else max((a.id for a in page.assets), default=None)
    if page.has_more and (last is None or (after_id is not None and last <= after_id)):
        raise ConnectorError(
            "Qualys said more host assets follow but gave no next id; stopping to avoid a loop.",
            "Report this to the maintainers with the run id.",
        )
    return last if last is not None else after_id
