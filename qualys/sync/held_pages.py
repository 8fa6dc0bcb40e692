"""Pages read but not written yet, while their new QIDs are looked up in the KnowledgeBase.

At the start of a run nearly every page brings QIDs the cache lacks; the sync holds pages until
those QIDs fill whole KnowledgeBase batches (one request per 250 QIDs, not one per page) and the
answers are back. Held pages are written in the order they were read, as soon as the oldest is
answered; at most ``MAX_HELD_ASSETS`` are held, and each waits parked on local disk
(:mod:`qualys.sync.spill`), not in memory.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from qualys.api.assets import RawAsset
from qualys.sync.spill import PageSpill, ParkedPage

log = logging.getLogger(__name__)

#: Assets held while their new QIDs wait for KnowledgeBase answers (64 pages of 200). Large enough
#: that reading never stops for a batch still filling or in flight (held pages wait on disk, not in
#: memory); bounded in assets, so a larger QUALYS_PAGE_SIZE holds fewer pages. It also bounds the
#: work a killed run repeats (held pages are not checkpointed yet).
MAX_HELD_ASSETS = 12_800

#: Assets that may wait for a partial KnowledgeBase batch to fill (16 pages of 200): past that, the
#: partial batch goes out (without stopping the reading). Rare QIDs keep trickling in on later pages,
#: so waiting a while saves requests, which count against the subscription's API rate limit.
BATCH_FILL_ASSETS = 3200


@dataclass(slots=True)
class HeldPage:
    """A page's assets in the window, and where its id range stands once the page is written."""

    assets: list[RawAsset]
    skipped: int
    range_index: int
    position: int | None
    last: bool
    #: The KnowledgeBase lookups' ticket for the page's QIDs (:meth:`KnowledgeBaseLookups.answered`).
    ticket: int = 0
    #: Set while the page waits on disk (``assets`` is then empty).
    parked: ParkedPage | None = None


class HeldPages:
    """The queue of held pages: bounded, in read order, each parked on disk while it waits."""

    def __init__(self, page_size: int, max_assets: int = MAX_HELD_ASSETS, fill_assets: int = BATCH_FILL_ASSETS) -> None:
        self._pages: deque[HeldPage] = deque()
        self._limit = max(2, max_assets // page_size)
        self._fill_limit = max(1, min(self._limit, fill_assets // page_size))
        self._spill = PageSpill()
        self._parking = True

    def add(self, page: HeldPage) -> None:
        self._pages.append(page)

    def __bool__(self) -> bool:
        return bool(self._pages)

    @property
    def oldest(self) -> HeldPage:
        return self._pages[0]

    @property
    def newest(self) -> HeldPage:
        return self._pages[-1]

    @property
    def full(self) -> bool:
        """As many pages as may wait: the KnowledgeBase batch they wait for must be sent now."""
        return len(self._pages) >= self._limit

    @property
    def waited_long(self) -> bool:
        """As many pages as may wait for a partial KnowledgeBase batch to fill."""
        return len(self._pages) >= self._fill_limit

    def park_newest(self) -> None:
        """Park the page added last, if it still waits (after a failure to park, pages wait in memory: the run goes on)."""
        if not self._pages:
            return
        page = self._pages[-1]
        if not self._parking or page.parked is not None or not page.assets:
            return
        try:
            page.parked = self._spill.park(page.assets)
        except OSError as exc:
            log.warning("cannot park held pages in the temporary folder (%s); keeping them in memory", exc.strerror)
            self._parking = False
            return
        page.assets = []

    def drain(self, ready: Callable[[HeldPage], bool] = lambda page: True) -> Iterator[HeldPage]:
        """Held pages, oldest first, with their assets back in memory, as long as each is ``ready``."""
        while self._pages and ready(self._pages[0]):
            page = self._pages.popleft()
            if page.parked is not None:
                page.assets, page.parked = self._spill.take(page.parked), None
            yield page

    @property
    def pages_parked(self) -> int:
        return self._spill.pages_parked

    def close(self) -> None:
        self._spill.close()
