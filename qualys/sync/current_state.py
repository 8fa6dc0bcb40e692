"""The current state of a run and its change feed, merged from the previous state and this run's records.

The previous complete run's state (its segments, :mod:`qualys.sync.segments`) and the records
this run read (its parts, sorted by asset id) are merged as two sorted streams, segment by
segment: a segment that holds none of this run's assets and none that aged out is kept as it is
(the new manifest refers to it); the others are merged and written again, and every difference
goes to the change feed (:mod:`qualys.sync.change_feed`). Nothing is held in memory beyond one
asset's lines. The build depends only on what the checkpoint names, so a killed run that builds
again gets the same state and changes.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from qualys.errors import SinkError
from qualys.output.runs import RunOutput, manifest_path, part_path
from qualys.sync.asset_lines import AssetLines, DamagedLineError, group_assets, modified_at_of, sorted_by_qid
from qualys.sync.change_feed import AGED_OUT, NOT_RETURNED, ChangeFeed
from qualys.sync.segments import SEGMENT_ASSETS, Segment, SegmentWriter

log = logging.getLogger(__name__)

REBUILD_ACTION = "Run a full sync (python -m qualys sync --full) to rebuild the state from Qualys."


class StateDamagedError(SinkError):
    """The previous state cannot be read as written; the message names the file."""


@dataclass
class BuiltState:
    segments: list[Segment]
    change_counts: dict[str, int]
    change_files: list[str]
    #: No previous state to compare with: the change feed is empty.
    baseline: bool
    baseline_reason: str | None = None

    @property
    def devices(self) -> int:
        return sum(segment.devices for segment in self.segments)

    @property
    def findings(self) -> int:
        return sum(segment.findings for segment in self.segments)

    @property
    def files(self) -> list[str]:
        return [s.devices_file for s in self.segments] + [s.findings_file for s in self.segments]


@dataclass(frozen=True)
class RunRecords:
    """What the build needs to know about this run."""

    run_id: str
    #: ``started_at`` of the run: the ``observed_at`` of its changes.
    started_at: str
    #: Assets whose ``modified_at`` is at or before this are out of scope (``started_at`` - lookback).
    cutoff: str
    #: A full run returned every asset in scope: an asset it did not return is gone.
    full: bool
    #: The run's parts: [number, first asset id, last asset id, has findings].
    parts: list[list[int]]


def build_state(output: RunOutput, run: RunRecords, previous_run_id: str | None) -> BuiltState:
    """Merge the state of ``previous_run_id`` (None: no previous state) with the run's records.

    A damaged previous state stops an incremental run (:class:`StateDamagedError`, which names
    the file); a full run rebuilds the state from what it read, as a new baseline.
    """
    try:
        previous = previous_segments(output, previous_run_id) if previous_run_id else None
        built = _Build(output, run, previous).run()
    except StateDamagedError as exc:
        if not run.full or previous_run_id is None:
            raise
        log.warning("%s The full run rebuilds the state as a new baseline.", exc.cause)
        built = _Build(output, run, None).run()
        built.baseline_reason = f"the previous state could not be read: {exc.cause}"
    _delete_unlisted(output, run.run_id, "current", built.files)
    _delete_unlisted(output, run.run_id, "changes", built.change_files)
    return built


def previous_segments(output: RunOutput, run_id: str) -> list[Segment]:
    """The segments of a complete run's state, as its manifest lists them."""
    path = manifest_path(run_id)
    try:
        manifest = output.manifest(run_id)
    except SinkError as exc:
        raise StateDamagedError(exc.cause, REBUILD_ACTION) from exc
    current = manifest.get("current") if manifest else None
    raw = current.get("segments") if isinstance(current, dict) else None
    if not isinstance(raw, list):
        raise StateDamagedError(f"{output.sink.uri(path)} lists no current state.", REBUILD_ACTION)
    try:
        segments = [Segment.from_dict(value) for value in raw]
    except ValueError as exc:
        raise StateDamagedError(f"{output.sink.uri(path)} is damaged ({exc}).", REBUILD_ACTION) from exc
    if any(after.first_asset_id <= before.last_asset_id for before, after in itertools.pairwise(segments)):
        raise StateDamagedError(f"{output.sink.uri(path)} is damaged (its segments overlap).", REBUILD_ACTION)
    return segments


class _Delta:
    """This run's assets, by ascending id, each with its findings sorted by QID."""

    def __init__(self, output: RunOutput, run: RunRecords) -> None:
        parts = sorted(run.parts, key=lambda part: part[1])
        for before, after in itertools.pairwise(parts):
            if after[1] <= before[2]:
                raise StateDamagedError(
                    f"Parts {before[0]} and {after[0]} of run {run.run_id} overlap in asset ids.", REBUILD_ACTION
                )
        self._assets = self._read(output, run.run_id, parts)
        self.head: AssetLines | None = next(self._assets, None)

    def take(self) -> AssetLines:
        asset = self.head
        assert asset is not None
        self.head = next(self._assets, None)
        return asset

    def below(self, upper: int | None) -> bool:
        """An asset is waiting whose id is below ``upper`` (None: any)."""
        return self.head is not None and (upper is None or self.head.asset_id < upper)

    @staticmethod
    def _read(output: RunOutput, run_id: str, parts: list[list[int]]) -> Iterator[AssetLines]:
        for number, _, _, has_findings in parts:
            devices_path = part_path(run_id, "devices", number)
            findings = output.read_lines(part_path(run_id, "findings", number)) if has_findings else iter(())
            try:
                for asset in group_assets(output.read_lines(devices_path), findings):
                    asset.findings = sorted_by_qid(asset.findings)
                    yield asset
            except DamagedLineError as exc:
                raise StateDamagedError(f"{output.sink.uri(devices_path)} is damaged ({exc}).", REBUILD_ACTION) from exc


class _Build:
    def __init__(self, output: RunOutput, run: RunRecords, previous: list[Segment] | None) -> None:
        self._output = output
        self._run = run
        self._previous = previous
        self._feed = ChangeFeed(run.run_id, run.started_at) if previous is not None else None
        self._segments: list[Segment] = []
        self._writer: SegmentWriter | None = None
        self._next_number = 1

    def run(self) -> BuiltState:
        try:
            delta = _Delta(self._output, self._run)
            previous = self._previous or []
            for index, segment in enumerate(previous):
                upper = previous[index + 1].first_asset_id if index + 1 < len(previous) else None
                if self._must_rewrite(segment, delta, upper):
                    try:
                        self._merge(self._read_segment(segment), delta, upper)
                    except DamagedLineError as exc:  # a line found broken while comparing it with this run's
                        raise self._damaged(segment, str(exc)) from exc
                else:
                    self._close_span()
                    self._segments.append(segment)
            if delta.head is not None:  # no previous segment: every asset is new
                self._merge(iter(()), delta, None)
            self._close_span()
            change_files = self._write_changes()
            counts = dict(self._feed.counts) if self._feed is not None else {}
            return BuiltState(self._segments, counts, change_files, baseline=self._feed is None)
        except BaseException:
            if self._writer is not None:
                self._writer.discard()
            raise
        finally:
            if self._feed is not None:
                self._feed.close()

    def _must_rewrite(self, segment: Segment, delta: _Delta, upper: int | None) -> bool:
        aging = segment.oldest_modified_at is not None and segment.oldest_modified_at <= self._run.cutoff
        # A short segment next to a rewritten one joins it, so segments do not dwindle over the runs.
        absorb = self._writer is not None and segment.devices < SEGMENT_ASSETS // 2
        return self._run.full or aging or delta.below(upper) or absorb

    def _merge(self, old: Iterator[AssetLines], delta: _Delta, upper: int | None) -> None:
        """The assets of a rewritten segment: the previous ones, replaced, removed or kept, and the new ones."""
        if self._writer is None:
            self._writer = SegmentWriter(self._output, self._run.run_id, self._next_number)
        writer, feed, cutoff, full = self._writer, self._feed, self._run.cutoff, self._run.full
        kept = next(old, None)
        while kept is not None or delta.below(upper):
            if kept is None or (delta.below(upper) and delta.head is not None and delta.head.asset_id <= kept.asset_id):
                new = delta.take()
                if kept is not None and kept.asset_id == new.asset_id:
                    if feed is not None:
                        feed.replaced(kept, new)
                    kept = next(old, None)
                elif feed is not None:
                    feed.added(new)
                writer.add(new, modified_at_of(new.device))
                continue
            modified_at = modified_at_of(kept.device)
            aged_out = modified_at is not None and modified_at <= cutoff
            if full or aged_out:
                if feed is not None:
                    feed.removed(kept, AGED_OUT if aged_out else NOT_RETURNED)
            else:
                writer.add(kept, modified_at)
            kept = next(old, None)

    def _close_span(self) -> None:
        if self._writer is not None:
            self._segments.extend(self._writer.close())
            self._next_number = self._writer.next_number
            self._writer = None

    def _read_segment(self, segment: Segment) -> Iterator[AssetLines]:
        """A previous segment's assets, checked against what its manifest says it holds."""
        output = self._output
        devices = findings = 0
        try:
            finding_lines = output.read_lines(segment.findings_file)
            for asset in group_assets(output.read_lines(segment.devices_file), finding_lines):
                devices += 1
                findings += len(asset.findings)
                yield asset
            if devices != segment.devices or findings != segment.findings:
                raise DamagedLineError(
                    f"they hold {devices} devices and {findings} findings, the manifest says "
                    f"{segment.devices} and {segment.findings}: missing or cut short"
                )
        except (DamagedLineError, SinkError) as exc:
            raise self._damaged(segment, exc.cause if isinstance(exc, SinkError) else str(exc)) from exc

    def _damaged(self, segment: Segment, reason: str) -> StateDamagedError:
        files = " and ".join(self._output.sink.uri(path) for path in segment.files)
        return StateDamagedError(f"The state segment {files} cannot be read ({reason}).", REBUILD_ACTION)

    def _write_changes(self) -> list[str]:
        if self._feed is None:  # a baseline: an empty feed, in one empty part like any run without changes
            return [self._output.write_part(self._run.run_id, "changes", 1, iter(()))]
        return [
            self._output.write_part(self._run.run_id, "changes", number, lines)
            for number, lines in enumerate(self._feed.parts(), start=1)
        ]


def _delete_unlisted(output: RunOutput, run_id: str, folder: str, keep: list[str]) -> None:
    """Files an earlier, interrupted build of this run left in its ``folder`` that the state does not list."""
    listed = set(keep)
    for path in output.run_files(run_id, folder):
        if path not in listed:
            output.delete(path)
