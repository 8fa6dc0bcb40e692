"""One sync run: Qualys host assets modified in the window, with their findings, into the sink.

The loop reads like the output contract: page of assets -> tags and
KnowledgeBase lookups -> device and finding parts -> checkpoint. A run that
is killed is resumed by the next invocation (same run id, same window, from the
last checkpointed page); ``latest.json`` only ever points at a run whose
manifest says ``complete``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from qualys.api.client import QualysClient
from qualys.api.hostassets import AssetPage, RawAsset
from qualys.api.paging import next_after_id
from qualys.api.partitions import IdRange, PartitionedPages, plan_ranges
from qualys.api.retry import RetryPolicy
from qualys.api.tags import TagCriticality
from qualys.config.settings import SyncSettings
from qualys.errors import SinkError
from qualys.output.folder import LockHandle, Sink, read_json, write_json
from qualys.sync.kb_store import KnowledgeBaseCache
from qualys.sync.records import device_record, finding_lines, iso_utc, json_line, parse_datetime
from qualys.sync.spill import PageSpill, ParkedPage

log = logging.getLogger(__name__)

CHECKPOINT_PATH = "state/checkpoint.json"
LATEST_PATH = "latest.json"
#: Incremental windows start this long before the last complete run started:
#: covers clock skew between us and Qualys and assets Qualys indexed late.
INCREMENTAL_OVERLAP = timedelta(minutes=30)
NDJSON = "application/x-ndjson"


@dataclass
class Progress:
    pages: int = 0
    devices: int = 0
    findings: int = 0


@dataclass
class SyncResult:
    run_id: str
    mode: str
    resumed: bool
    modified_after: str
    devices: int
    findings: int
    pages: int
    skipped_outside_window: int
    duration_seconds: float
    manifest: str
    location: str
    stats: dict[str, object] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        return {
            "run_id": self.run_id, "mode": self.mode, "resumed": self.resumed,
            "modified_after": self.modified_after, "devices": self.devices, "findings": self.findings,
            "pages": self.pages, "skipped_outside_window": self.skipped_outside_window,
            "duration_seconds": round(self.duration_seconds, 3), "manifest": self.manifest, **self.stats,
        }


#: Assets held while their new QIDs wait to fill a whole KnowledgeBase batch (16 pages of 200),
#: parked on local disk (:mod:`qualys.sync.spill`). Bounded in assets, so a larger QUALYS_PAGE_SIZE holds
#: fewer pages; it also bounds the work a killed run repeats (held pages are not checkpointed yet).
MAX_HELD_ASSETS = 3200


@dataclass(slots=True)
class HeldPage:
    """A page read but not written yet: its new QIDs are still being looked up."""

    #: In memory, or parked in the spill file while the page waits.
    assets: list[RawAsset] | ParkedPage
    skipped: int
    #: Index of the id range the page belongs to, and the range's keyset position after it.
    range_index: int
    position: int | None
    last: bool


@dataclass
class Checkpoint:
    """Where a run stands; written after each page's parts are durably written.

    ``ranges`` are the id ranges of the host asset search (one unbounded range when
    sequential); each one's ``after`` is the keyset position of its last written page.
    An empty list means the ranges are not planned yet.
    """

    run_id: str
    mode: str
    modified_after: str
    started_at: str
    ranges: list[IdRange] = field(default_factory=list)
    next_part: int = 1
    files: list[str] = field(default_factory=list)
    devices: int = 0
    findings: int = 0
    pages: int = 0
    skipped: int = 0
    resumes: int = 0

    def to_dict(self) -> dict[str, object]:
        value = dict(self.__dict__)
        value["ranges"] = [r.to_dict() for r in self.ranges]
        return value

    @classmethod
    def from_dict(cls, value: dict[str, object]) -> Checkpoint:
        try:
            fields = dict(value)
            raw_ranges = fields.pop("ranges", None)
            legacy_after = fields.pop("after_id", None)  # checkpoints written before id ranges existed
            if raw_ranges is None:
                ranges = [IdRange.from_dict({"after": legacy_after})] if "after_id" in value else []
            elif isinstance(raw_ranges, list):
                ranges = [IdRange.from_dict(r) for r in raw_ranges]
            else:
                raise TypeError("'ranges' must be a list")
            return cls(**fields, ranges=ranges)  # type: ignore[arg-type]
        except TypeError as exc:
            raise SinkError(f"{CHECKPOINT_PATH} is damaged ({exc}).", "Delete it to start a fresh run.") from exc

    def position(self) -> str:
        """Where the run resumes, for the log."""
        return ", ".join(
            "done" if r.done else f"id > {r.after}" + (f" and < {r.below}" if r.below is not None else "")
            for r in self.ranges
        ) or "the start"


def new_run_id(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def plan_window(sink: Sink, lookback_days: int, full: bool, now: datetime) -> tuple[str, str]:
    """(mode, modified_after): full = now - lookback; incremental = last complete run's start - overlap."""
    floor = now - timedelta(days=lookback_days)
    if full:
        return "full", iso_utc(floor) or ""
    latest = read_json(sink, LATEST_PATH)
    manifest = read_json(sink, str(latest.get("manifest"))) if latest and latest.get("manifest") else None
    started = parse_datetime(str(manifest.get("started_at"))) if manifest else None
    if manifest is None or manifest.get("status") != "complete" or started is None:
        return "full", iso_utc(floor) or ""
    since = started - INCREMENTAL_OVERLAP
    if since <= floor:
        return "full", iso_utc(floor) or ""
    return "incremental", iso_utc(since) or ""


class SyncRun:
    """Runs (or resumes) one sync into ``sink``."""

    def __init__(
        self,
        settings: SyncSettings,
        sink: Sink,
        client: QualysClient,
        *,
        progress: Callable[[Progress], None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.client = client
        self._progress = progress
        self._now = now

    def run(self, full: bool = False) -> SyncResult:
        with self.sink.lock() as lock:
            return self._run_locked(full, lock)

    def _run_locked(self, full: bool, lock: LockHandle) -> SyncResult:
        started_clock = time.monotonic()
        checkpoint, resumed = self._start_or_resume(full)
        manifest_path = f"runs/{checkpoint.run_id}/manifest.json"
        if self.sink.read(manifest_path) is None:
            self._pull(checkpoint, lock)
            self._write_manifest(checkpoint, manifest_path)
        write_json(self.sink, LATEST_PATH, {"run_id": checkpoint.run_id, "manifest": manifest_path})
        self.sink.delete(CHECKPOINT_PATH)
        return SyncResult(
            run_id=checkpoint.run_id, mode=checkpoint.mode, resumed=resumed,
            modified_after=checkpoint.modified_after, devices=checkpoint.devices, findings=checkpoint.findings,
            pages=checkpoint.pages, skipped_outside_window=checkpoint.skipped,
            duration_seconds=time.monotonic() - started_clock, manifest=manifest_path,
            location=self.sink.location, stats={"id_ranges": len(checkpoint.ranges), **self.client.stats.as_dict()},
        )

    def _start_or_resume(self, full: bool) -> tuple[Checkpoint, bool]:
        saved = read_json(self.sink, CHECKPOINT_PATH)
        if saved is not None:
            checkpoint = Checkpoint.from_dict(saved)
            if not full or checkpoint.mode == "full":
                checkpoint.resumes += 1
                log.info("resuming run %s from %s", checkpoint.run_id, checkpoint.position())
                return checkpoint, True
            log.info("--full: abandoning unfinished incremental run %s", checkpoint.run_id)
        now = self._now()
        mode, modified_after = plan_window(self.sink, self.settings.lookback_days, full, now)
        checkpoint = Checkpoint(
            run_id=new_run_id(now), mode=mode, modified_after=modified_after, started_at=iso_utc(now) or ""
        )
        write_json(self.sink, CHECKPOINT_PATH, checkpoint.to_dict())
        return checkpoint, False

    def _pull(self, checkpoint: Checkpoint, lock: LockHandle) -> None:
        kb = KnowledgeBaseCache(self.sink, f"{checkpoint.run_id}-r{checkpoint.resumes}")
        kb.load()
        kb.refresh(self.client)
        spill = PageSpill()
        try:
            self._pull_pages(checkpoint, lock, kb, spill)
        finally:
            kb.close()
            spill.close()
        kb.compact(refreshed_at=checkpoint.started_at)

    def _pull_pages(self, checkpoint: Checkpoint, lock: LockHandle, kb: KnowledgeBaseCache, spill: PageSpill) -> None:
        tags = TagCriticality(self.client)
        cutoff = parse_datetime(checkpoint.modified_after)
        if not checkpoint.ranges:
            checkpoint.ranges = plan_ranges(
                self.client, checkpoint.modified_after, self.settings.asset_partitions, self.settings.page_size
            )
            write_json(self.sink, CHECKPOINT_PATH, checkpoint.to_dict())
            if len(checkpoint.ranges) > 1:
                log.info("host asset search split into %d id ranges: %s", len(checkpoint.ranges), checkpoint.position())
        pages = PartitionedPages(self.client, checkpoint.modified_after, self.settings.page_size, checkpoint.ranges)
        # Keyset position of the last page read, per range (the checkpoint holds the last page written).
        read_positions = [r.after for r in checkpoint.ranges]
        held: deque[HeldPage] = deque()
        max_held = max(2, MAX_HELD_ASSETS // self.settings.page_size)
        open_ranges = sum(not r.done for r in checkpoint.ranges)
        parking = True
        for index, page in pages.pages():
            id_range = checkpoint.ranges[index]
            assets, skipped = self._in_window(page, IdRange(read_positions[index], id_range.below), cutoff)
            read_positions[index] = next_after_id(page, read_positions[index])
            tags.queue(tag_id for asset in assets for tag_id, _ in asset.tags)
            kb.queue(self.client, (qid for asset in assets for qid in asset.findings.qids))
            held.append(HeldPage(assets, skipped, index, read_positions[index], not page.has_more))
            open_ranges -= not page.has_more
            if kb.has_pending and (len(held) >= max_held or open_ranges == 0):
                kb.flush(self.client)
            if not kb.has_pending:
                tags.flush()
                while held:
                    self._commit_page(checkpoint, held.popleft(), tags, kb, lock, spill)
            elif parking:
                parking = self._park(held[-1], spill)
        kb.flush(self.client)  # the last page flushes already; kept so no page can be left behind
        tags.flush()
        while held:
            self._commit_page(checkpoint, held.popleft(), tags, kb, lock, spill)
        if spill.pages_parked:
            log.info("%d pages waited for KnowledgeBase entries on local disk", spill.pages_parked)

    @staticmethod
    def _park(page: HeldPage, spill: PageSpill) -> bool:
        """Park a page that has to wait; False once parking failed (later pages then wait in memory)."""
        assert not isinstance(page.assets, ParkedPage), "only the page just read is parked"
        try:
            page.assets = spill.park(page.assets)
        except OSError as exc:
            log.warning("cannot park held pages in the temporary folder (%s); keeping them in memory", exc.strerror)
            return False
        return True

    def _commit_page(
        self,
        checkpoint: Checkpoint,
        held: HeldPage,
        tags: TagCriticality,
        kb: KnowledgeBaseCache,
        lock: LockHandle,
        spill: PageSpill,
    ) -> None:
        """Write one page's parts, then move the checkpoint past it."""
        assets = held.assets
        if isinstance(assets, ParkedPage):
            assets = spill.take(assets)
        self._write_page(checkpoint, assets, tags, kb)
        id_range = checkpoint.ranges[held.range_index]
        id_range.after = held.position
        id_range.done = held.last
        checkpoint.skipped += held.skipped
        checkpoint.pages += 1
        lock.check()
        write_json(self.sink, CHECKPOINT_PATH, checkpoint.to_dict())
        if self._progress:
            self._progress(Progress(checkpoint.pages, checkpoint.devices, checkpoint.findings))

    @staticmethod
    def _in_window(page: AssetPage, id_range: IdRange, cutoff: datetime | None) -> tuple[list[RawAsset], int]:
        """Assets of the range after its keyset position, modified after the cutoff, each id once; and how many were too old."""
        kept: dict[int, RawAsset] = {}
        skipped = 0
        for asset in page.assets:
            if not id_range.holds(asset.id):
                continue  # some clients re-fetch the last record (qualysdk); never emit it twice
            modified = parse_datetime(asset.modified)
            if cutoff is not None and modified is not None and modified <= cutoff:
                skipped += 1
                continue
            kept.setdefault(asset.id, asset)
        return list(kept.values()), skipped

    def _write_page(
        self, checkpoint: Checkpoint, assets: list[RawAsset], tags: TagCriticality, kb: KnowledgeBaseCache
    ) -> None:
        if not assets:
            return
        part = f"part-{checkpoint.next_part:05d}.jsonl"
        # Both parts are rendered asset by asset as the sink writes them: a page's lines are never in memory whole.
        device_chunks = (
            json_line(device_record(asset, tags.criticality(tag_id for tag_id, _ in asset.tags))).encode()
            for asset in assets
        )
        written = [self._write_part(checkpoint, "devices", part, device_chunks)]
        findings = 0

        def finding_chunks() -> Iterator[bytes]:
            nonlocal findings
            for asset in assets:
                lines, count = finding_lines(asset, kb.fragments)
                findings += count
                yield lines.encode()

        if any(asset.findings for asset in assets):
            written.append(self._write_part(checkpoint, "findings", part, finding_chunks()))
        checkpoint.files.extend(written)
        checkpoint.next_part += 1
        checkpoint.devices += len(assets)
        checkpoint.findings += findings

    def _write_part(self, checkpoint: Checkpoint, kind: str, part: str, chunks: Iterable[bytes]) -> str:
        path = f"runs/{checkpoint.run_id}/{kind}/{part}"
        self.sink.write_chunks(path, chunks, NDJSON)
        return path

    def _write_manifest(self, checkpoint: Checkpoint, manifest_path: str) -> None:
        manifest = {
            "run_id": checkpoint.run_id,
            "status": "complete",
            "mode": checkpoint.mode,
            "window": {"modified_after": checkpoint.modified_after},
            "started_at": checkpoint.started_at,
            "completed_at": iso_utc(self._now()),
            "counts": {"devices": checkpoint.devices, "findings": checkpoint.findings},
            "files": list(checkpoint.files),
            "pages": checkpoint.pages,
            "id_ranges": len(checkpoint.ranges),
            "resumes": checkpoint.resumes,
            "skipped_outside_window": checkpoint.skipped,
            "source": {"api_url": self.settings.api_url},
            "schema_version": 1,
        }
        write_json(self.sink, manifest_path, manifest)


def open_sink(settings: SyncSettings) -> Sink:
    from qualys.config.settings import LocalOutput

    if isinstance(settings.output, LocalOutput):
        from qualys.output.folder import LocalSink

        return LocalSink(settings.output.directory)
    from qualys.output.blob import BlobSink

    return BlobSink.from_settings(settings.output)


def make_client(settings: SyncSettings, retry: RetryPolicy | None = None) -> QualysClient:
    policy = retry or RetryPolicy(max_total_wait=settings.max_retry_wait_seconds)
    return QualysClient(settings.api_url, settings.username, settings.password, retry=policy)


def run_sync(
    settings: SyncSettings,
    *,
    full: bool = False,
    sink: Sink | None = None,
    client: QualysClient | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> SyncResult:
    """The one code path behind the CLI, the timer function and the tests."""
    target = sink or open_sink(settings)
    own_client = client is None
    qualys = client or make_client(settings)
    try:
        return SyncRun(settings, target, qualys, progress=progress).run(full=full)
    finally:
        if own_client:
            qualys.close()
