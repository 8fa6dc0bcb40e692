"""One run's pages, pulled into parts: page -> lookups -> parts -> checkpoint.

Host asset pages arrive (id ranges interleaved, each in keyset order). A page's assets in the
window wait, with the pages before them, until their tags' criticality and their QIDs'
KnowledgeBase entries are known; then each waiting page is written as a device part and a
finding part, and the checkpoint moves past it. KnowledgeBase requests go out in whole
batches of new QIDs, so pages wait while a batch fills (``BATCH_FILL_ASSETS``, then the
partial batch goes out) or is in flight; reading stops only when ``MAX_HELD_ASSETS`` wait,
and then only until the oldest page is answered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from qualys.api.assets import RawAsset
from qualys.api.kb_lookups import KnowledgeBaseLookups
from qualys.api.knowledge_base import KbEntry
from qualys.api.partitions import PartitionedPages, plan_ranges
from qualys.api.qps import FieldLimit
from qualys.api.tags import TagCriticality
from qualys.output.lock import LockHandle
from qualys.sync.checkpoint import Checkpoint
from qualys.sync.held_pages import HeldPage, HeldPages
from qualys.sync.kb_store import KnowledgeBaseStore
from qualys.sync.records import device_record, finding_lines, json_line, kb_fragment
from qualys.sync.window import in_window
from qualys.timestamps import parse_datetime

if TYPE_CHECKING:
    from qualys.sync.run import SyncRun

log = logging.getLogger(__name__)


class PagePull:
    """Pulls the pages of one run; its collaborators live as long as the run."""

    def __init__(self, run: SyncRun, checkpoint: Checkpoint, lock: LockHandle) -> None:
        self._settings = run.settings
        self._client = client = run.client
        self._output = run.output
        self._state = state = run.state
        self._on_page = run.page_written
        self._checkpoint = checkpoint
        self._lock = lock
        self._cutoff = parse_datetime(checkpoint.modified_after)
        self._fields = FieldLimit(run.settings.limit_fields)
        self._tags = TagCriticality(client, limit=self._fields)
        self._lookups = KnowledgeBaseLookups(client)
        self._kb_store = KnowledgeBaseStore(state, f"{checkpoint.run_id}-r{checkpoint.resumes}")
        #: QID -> the KnowledgeBase members of its finding records, rendered once (records.kb_fragment).
        self._kb_fragments: dict[int, str] = {}
        self._held = HeldPages(run.settings.page_size)

    def run(self) -> None:
        self._load_knowledge_base()
        try:
            self._pull(self._pages())
        finally:
            self._lookups.close()
            self._held.close()
        self._kb_store.compact(refreshed_at=self._checkpoint.started_at)
        if self._held.pages_parked:
            log.info("%d pages waited for KnowledgeBase entries on local disk", self._held.pages_parked)

    def _pull(self, pages: PartitionedPages) -> None:
        for read in pages:
            assets, skipped = in_window(read, self._cutoff)
            self._tags.queue(tag_id for asset in assets for tag_id, _ in asset.tags)
            ticket = self._lookups.queue((qid for asset in assets for qid in asset.findings.qids), known=self._kb_fragments)
            self._held.add(HeldPage(assets, skipped, read.range_index, read.position, read.last, ticket))
            self._learn(self._lookups.ready())
            if pages.finished:
                self._learn(self._lookups.wait_for(self._held.newest.ticket))
            elif self._held.full:
                self._learn(self._lookups.wait_for(self._held.oldest.ticket))
            elif self._held.waited_long and self._lookups.unsent(self._held.oldest.ticket):
                self._lookups.send_partial()
            self._commit_answered()
            self._held.park_newest()

    def _commit_answered(self) -> None:
        """The held pages whose lookups are answered, oldest first, up to the first that still waits."""
        if self._held and self._lookups.answered(self._held.oldest.ticket):
            self._tags.flush()
            for page in self._held.drain(lambda page: self._lookups.answered(page.ticket)):
                self._commit(page)

    def _commit(self, page: HeldPage) -> None:
        """Write one page's parts, then move the checkpoint past it."""
        self._write_parts(page.assets)
        self._checkpoint.advance(page)
        self._lock.check()
        self._state.save_checkpoint(self._checkpoint)
        self._on_page(self._checkpoint)

    def _write_parts(self, assets: list[RawAsset]) -> None:
        if not assets:
            return
        # By ascending id (as Qualys sends a page): the current state is merged from sorted parts.
        assets = sorted(assets, key=lambda asset: asset.id)
        checkpoint = self._checkpoint
        number = checkpoint.next_part
        # Both parts are rendered asset by asset as the sink writes them: a page's lines are never in memory whole.
        device_lines = (
            json_line(device_record(asset, self._tags.criticality(tag_id for tag_id, _ in asset.tags))).encode()
            for asset in assets
        )
        checkpoint.files.append(self._output.write_part(checkpoint.run_id, "devices", number, device_lines))
        findings = 0

        def finding_chunks() -> Iterator[bytes]:
            nonlocal findings
            for asset in assets:
                lines, count = finding_lines(asset, self._kb_fragments)
                findings += count
                yield lines.encode()

        has_findings = any(asset.findings for asset in assets)
        if has_findings:
            checkpoint.files.append(self._output.write_part(checkpoint.run_id, "findings", number, finding_chunks()))
        checkpoint.parts.append([number, assets[0].id, assets[-1].id, int(has_findings)])
        checkpoint.next_part += 1
        checkpoint.devices += len(assets)
        checkpoint.findings += findings

    def _pages(self) -> PartitionedPages:
        """The run's id ranges (planned once, then kept in the checkpoint), each as a chain of pages."""
        checkpoint, settings = self._checkpoint, self._settings
        if not checkpoint.ranges:
            checkpoint.ranges = plan_ranges(
                self._client, checkpoint.modified_after, settings.asset_partitions, settings.page_size, self._fields
            )
            self._state.save_checkpoint(checkpoint)
            if len(checkpoint.ranges) > 1:
                log.info("host asset search split into %d id ranges: %s", len(checkpoint.ranges), checkpoint.position())
        return PartitionedPages(
            self._client, checkpoint.modified_after, settings.page_size, checkpoint.ranges, limit=self._fields
        )

    def _load_knowledge_base(self) -> None:
        """The cached entries, brought up to date with what Qualys changed since the cache's last refresh."""
        for entry in self._kb_store.entries():
            self._kb_fragments[entry.qid] = kb_fragment(entry)
        since = self._kb_store.refreshed_at()
        if self._kb_fragments and since is not None:
            changed = self._lookups.changed_since(since, cached=self._kb_fragments)
            self._learn(changed)
            log.info("KnowledgeBase: %d cached QIDs changed since %s", len(changed), since)

    def _learn(self, entries: list[KbEntry]) -> None:
        """Keep new KnowledgeBase entries: in the cache, and rendered for this run's finding records."""
        self._kb_store.save(entries)
        for entry in entries:
            self._kb_fragments[entry.qid] = kb_fragment(entry)
