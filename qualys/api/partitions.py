"""Host asset id-range partitions, pulled concurrently (``QUALYS_ASSET_PARTITIONS``).

Keyset paging (``id GREATER lastId``) is sequential: with Qualys's ~0.5 s per page,
the page chain is the floor of a large sync. Splitting the id space into ranges
(``id GREATER after`` AND ``id LESSER below``) gives independent chains that can
run at the same time. Ranges cover every id exactly once whatever the boundaries
are, so the boundaries only decide how evenly the work is spread, never what is
returned; each range is checkpointed on its own.

Whether QPS allows concurrent searches is disputed (Qualys's limits PDF exempts the
Asset Management API from the VM/PC limits; a newer page says all APIs are limited:
docs/qualys-api.md §2.9), so the default is 1 partition: the plain sequential chain.

Boundaries come from a cheap probe: one ``/count/am/hostasset`` for the window
(N assets), then, concurrently, the asset at rank ``j*N/K`` (``startFromOffset``,
``limitResults`` 1) for each boundary. Offsets are only used to choose boundaries,
so assets changing during the probe cannot skip or repeat a record.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from qualys.api.assets import AssetPage
from qualys.api.client import QualysClient
from qualys.api.hostasset_search import ENDPOINT as HOSTASSET_ENDPOINT
from qualys.api.hostasset_search import HOSTASSET_SEARCH_PATH, ID_FIELDS, parse_page, search_criteria
from qualys.api.paging import DEFAULT_READ_AHEAD, PagePrefetcher, next_after_id
from qualys.api.qps import FieldLimit, search
from qualys.api.refusals import qps_response_error
from qualys.api.xmlstream import Readable, iter_events, text_of
from qualys.errors import (
    AccountBlockedError,
    AuthenticationError,
    ConnectorError,
    PermissionDeniedError,
    RateLimitExhaustedError,
    ResponseFormatError,
    TemporaryFailureError,
)

log = logging.getLogger(__name__)

HOSTASSET_COUNT_PATH = "/qps/rest/2.0/count/am/hostasset"
COUNT_ENDPOINT = "count"
#: Failures the probe does not hide: the sequential chain would hit them too.
_FATAL = (AuthenticationError, AccountBlockedError, PermissionDeniedError, RateLimitExhaustedError, TemporaryFailureError)


@dataclass
class IdRange:
    """Host assets with ``after < id < below`` (None: unbounded); ``after`` advances as pages are written."""

    after: int | None = None
    below: int | None = None
    done: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: object) -> IdRange:
        if not isinstance(value, dict):
            raise TypeError(f"an id range must be an object, not {type(value).__name__}")
        after, below, done = value.get("after"), value.get("below"), value.get("done", False)
        if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (after, below)):
            raise TypeError(f"id range bounds must be integers or null: {value!r}")
        if not isinstance(done, bool):
            raise TypeError(f"id range 'done' must be true or false: {value!r}")
        return cls(after, below, done)

    def holds(self, asset_id: int) -> bool:
        return (self.after is None or asset_id > self.after) and (self.below is None or asset_id < self.below)


def ranges_from_bounds(bounds: list[int]) -> list[IdRange]:
    """Ranges split at each bound (a bound is the first id of the next range): every id in exactly one."""
    edges = sorted(set(bounds))
    ranges: list[IdRange] = []
    after: int | None = None
    for edge in edges:
        ranges.append(IdRange(after, edge))
        after = edge - 1
    ranges.append(IdRange(after, None))
    return ranges


def parse_count(body: Readable) -> int:
    """The ``<count>`` of a QPS count response."""
    depth = 0
    response_code: str | None = None
    count: str | None = None
    message: str | None = None
    for event, element in iter_events(body):
        if event == "start":
            depth += 1
            continue
        if depth == 2 and element.tag == "responseCode":
            response_code = text_of(element)
        elif depth == 2 and element.tag == "count":
            count = text_of(element)
        elif depth == 3 and element.tag == "errorMessage":
            message = text_of(element)
        depth -= 1
    if response_code != "SUCCESS":
        raise qps_response_error(response_code or "(none)", message, COUNT_ENDPOINT)
    if count is None or not count.strip().isdigit():
        raise ResponseFormatError(
            f"A Qualys host asset count response has no numeric <count> ({count!r}).",
            "Set QUALYS_ASSET_PARTITIONS=1 and report this response to the maintainers.",
        )
    return int(count)


def count_assets(client: QualysClient, modified_after: str) -> int:
    """Host assets Qualys holds for the window (``POST /qps/rest/2.0/count/am/hostasset``)."""
    return search(client, HOSTASSET_COUNT_PATH, COUNT_ENDPOINT, search_criteria(modified_after), 1, parse_count)


def asset_id_at(client: QualysClient, modified_after: str, rank: int, limit: FieldLimit | None = None) -> int | None:
    """The id of the window's asset at 1-based ``rank`` in id order (None past the end)."""
    criteria = search_criteria(modified_after)
    page = search(
        client, HOSTASSET_SEARCH_PATH, HOSTASSET_ENDPOINT, criteria, 1, parse_page,
        start_from_offset=rank, fields=ID_FIELDS, limit=limit,
    )
    return page.assets[0].id if page.assets else None


def boundary_ranks(total: int, partitions: int, page_size: int) -> list[int]:
    """1-based ranks of the first asset of ranges 2..K for ``total`` assets: K is at most the pages they fill."""
    wanted = min(partitions, math.ceil(total / page_size))
    return [j * total // wanted + 1 for j in range(1, wanted)]


def plan_ranges(
    client: QualysClient, modified_after: str, partitions: int, page_size: int, limit: FieldLimit | None = None
) -> list[IdRange]:
    """Id ranges for ``partitions`` concurrent chains; one unbounded range when splitting cannot pay.

    A window that fits in fewer pages than partitions gets fewer ranges (never more
    requests than pages). A probe the platform does not support (no count API, a
    rejected offset) falls back to one range with a warning; credential, permission
    and availability failures are raised, as the chain itself would raise them.
    """
    if partitions <= 1:
        return [IdRange()]
    try:
        total = count_assets(client, modified_after)
        ranks = boundary_ranks(total, partitions, page_size)
        if not ranks:
            return [IdRange()]
        with ThreadPoolExecutor(max_workers=len(ranks), thread_name_prefix="qualys-probe") as pool:
            found = pool.map(lambda rank: asset_id_at(client, modified_after, rank, limit), ranks)
            bounds = [bound for bound in found if bound is not None]
    except _FATAL:
        raise
    except ConnectorError as exc:
        log.warning("could not split the host asset search (%s); pulling it as one sequential chain", exc.cause)
        return [IdRange()]
    return ranges_from_bounds(bounds)


@dataclass(frozen=True, slots=True)
class RangePage:
    """One page of one id range, with where that range stands once the page is written."""

    range_index: int
    page: AssetPage
    #: The part of the range this page was read from (``after`` = the range's keyset position before it).
    bounds: IdRange
    #: The range's keyset position after this page.
    position: int | None
    #: The range's last page.
    last: bool


class PartitionedPages:
    """Pages of several id ranges, each a keyset chain of its own, in the order they arrive.

    One range is the plain :class:`~qualys.api.paging.PagePrefetcher`. With more, each
    range's chain runs on its own thread (read-ahead shared out between them) and
    hands finished pages over a small queue; the first error stops every chain.
    """

    def __init__(
        self,
        client: QualysClient,
        modified_after: str,
        page_size: int,
        ranges: list[IdRange],
        read_ahead: int = DEFAULT_READ_AHEAD,
        limit: FieldLimit | None = None,
    ) -> None:
        self._client = client
        self._limit = limit
        self._modified_after = modified_after
        self._page_size = page_size
        self._open = [(index, r) for index, r in enumerate(ranges) if not r.done]
        self._unfinished = len(self._open)
        # One chain keeps the whole read-ahead; several share it, at least 2 each (next page on the header).
        self._read_ahead = read_ahead if len(self._open) <= 1 else max(2, read_ahead // len(self._open))

    def _chain(self, r: IdRange) -> PagePrefetcher:
        return PagePrefetcher(
            self._client, self._modified_after, self._page_size, r.after,
            read_ahead=self._read_ahead, before_id=r.below, limit=self._limit,
        )

    @property
    def finished(self) -> bool:
        """Every range has sent its last page."""
        return self._unfinished == 0

    def __iter__(self) -> Iterator[RangePage]:
        """Every open range's pages, each range's in keyset order, until every range has sent its last page."""
        positions = {index: r.after for index, r in self._open}
        below = {index: r.below for index, r in self._open}
        for index, page in self._pages():
            before = positions[index]
            positions[index] = next_after_id(page, before)
            if not page.has_more:
                self._unfinished -= 1
            yield RangePage(index, page, IdRange(before, below[index]), positions[index], not page.has_more)

    def _pages(self) -> Iterator[tuple[int, AssetPage]]:
        """(range index, page) until every open range has sent its last page."""
        if len(self._open) == 1:
            index, only = self._open[0]
            for page in self._chain(only).pages():
                yield index, page
            return
        if not self._open:
            return
        handoff: queue.Queue[tuple[int, AssetPage | BaseException | None]] = queue.Queue(maxsize=len(self._open))
        stop = threading.Event()

        def put(item: tuple[int, AssetPage | BaseException | None]) -> bool:
            while not stop.is_set():
                try:
                    handoff.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def pump(index: int, r: IdRange) -> None:
            chain = self._chain(r).pages()
            try:
                for page in chain:
                    if not put((index, page)):
                        return
                put((index, None))
            except BaseException as exc:  # handed to the consumer, which raises it
                put((index, exc))
            finally:
                chain.close()

        threads = [
            threading.Thread(target=pump, args=(index, r), name=f"qualys-range-{index}", daemon=True)
            for index, r in self._open
        ]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                index, item = handoff.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield index, item
        finally:
            stop.set()

