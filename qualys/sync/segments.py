"""The current state as segments: consecutive slices of the assets, by ascending asset id.

Each segment is a device part and a finding part (``runs/<run_id>/current/...``), written once
and never changed. A run rewrites only the segments its changes touch; the manifest lists the
segments of the state, whichever run wrote them (docs/output-contract.md). Segment ``i`` holds
the assets with ids from its ``first_asset_id`` up to the next segment's (the first segment also
holds any lower id), so every asset id has exactly one segment.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import IO

from qualys.output.runs import RunOutput
from qualys.sync.asset_lines import AssetLines
from qualys.sync.local_spool import local_spool

#: Assets per segment: a rewritten span is cut into parts of this many assets (the last part of a
#: span takes a short remainder, so parts hold from half to one and a half times this).
SEGMENT_ASSETS = 1000

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Segment:
    first_asset_id: int
    last_asset_id: int
    devices: int
    findings: int
    devices_file: str
    #: Written even when empty, so every segment has both parts.
    findings_file: str
    #: The oldest ``modified_at`` of its devices: no asset of the segment has aged out while the
    #: window starts before it, so the segment need not even be read.
    oldest_modified_at: str | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: object) -> Segment:
        """Raises ValueError when ``value`` is not a segment this module wrote."""
        if not isinstance(value, dict):
            raise ValueError("a segment is not a JSON object")
        expected = {f.name: f.type for f in fields(cls)}
        if set(value) != set(expected):
            raise ValueError(f"a segment has the keys {sorted(value)}")
        for name in ("first_asset_id", "last_asset_id", "devices", "findings"):
            if not isinstance(value[name], int) or isinstance(value[name], bool) or value[name] < 0:
                raise ValueError(f"a segment's {name} is not a count or an id")
        if not isinstance(value["devices_file"], str) or not isinstance(value["findings_file"], str):
            raise ValueError("a segment's files are not paths")
        if not isinstance(value["oldest_modified_at"], str | None):
            raise ValueError("a segment's oldest_modified_at is not a date")
        return cls(**value)

    @property
    def files(self) -> list[str]:
        return [self.devices_file, self.findings_file]


class _Part:
    """One segment being written: its lines spooled on local disk until it is complete."""

    def __init__(self) -> None:
        self.devices_spool: IO[bytes] = local_spool("qualys-state-", 1 << 16)
        self.findings_spool: IO[bytes] = local_spool("qualys-state-", 1 << 18)
        self.devices = 0
        self.findings = 0
        self.first = self.last = -1
        #: The oldest dated ``modified_at`` (an undated asset never ages out).
        self.oldest: str | None = None

    def add(self, asset: AssetLines, modified_at: str | None) -> None:
        if self.devices == 0:
            self.first = asset.asset_id
        self.last = asset.asset_id
        self.devices += 1
        self.devices_spool.write(asset.device + b"\n")
        for line in asset.findings:
            self.findings_spool.write(line + b"\n")
        self.findings += len(asset.findings)
        self._date(modified_at)

    def _date(self, modified_at: str | None) -> None:
        if modified_at is not None and (self.oldest is None or modified_at < self.oldest):
            self.oldest = modified_at

    def absorb(self, other: _Part) -> None:
        """Append ``other``'s lines (a short remainder) to this part."""
        for source, target in ((other.devices_spool, self.devices_spool), (other.findings_spool, self.findings_spool)):
            source.flush()
            source.seek(0)
            while chunk := source.read(_CHUNK):
                target.write(chunk)
        self.devices += other.devices
        self.findings += other.findings
        self.last = other.last
        self._date(other.oldest)
        other.close()

    def write(self, output: RunOutput, run_id: str, number: int) -> Segment:
        devices = output.write_part(run_id, "current/devices", number, _chunks(self.devices_spool))
        findings = output.write_part(run_id, "current/findings", number, _chunks(self.findings_spool))
        self.close()
        return Segment(self.first, self.last, self.devices, self.findings, devices, findings, self.oldest)

    def close(self) -> None:
        self.devices_spool.close()
        self.findings_spool.close()


class SegmentWriter:
    """Writes the assets of consecutive rewritten segments (a span) as new segments.

    Parts are cut every ``segment_assets`` assets; a span's remainder shorter than half of that
    joins the part before it, so rewriting never leaves a trail of tiny segments.
    """

    def __init__(self, output: RunOutput, run_id: str, first_number: int, segment_assets: int = SEGMENT_ASSETS) -> None:
        self._output = output
        self._run_id = run_id
        self._number = first_number
        self._size = segment_assets
        self._full: _Part | None = None
        self._open = _Part()
        self.written: list[Segment] = []

    @property
    def next_number(self) -> int:
        return self._number

    def add(self, asset: AssetLines, modified_at: str | None) -> None:
        if self._open.devices >= self._size:
            if self._full is not None:
                self._write(self._full)
            self._full, self._open = self._open, _Part()
        self._open.add(asset, modified_at)

    def close(self) -> list[Segment]:
        """Write what is pending; the segments written for this span, in order."""
        if self._full is not None and self._open.devices < self._size // 2:
            self._full.absorb(self._open)
            self._write(self._full)
        else:
            if self._full is not None:
                self._write(self._full)
            if self._open.devices:
                self._write(self._open)
            else:
                self._open.close()
        self._full = None
        return self.written

    def discard(self) -> None:
        """Drop what is pending (a failed build)."""
        for part in (self._full, self._open):
            if part is not None:
                part.close()

    def _write(self, part: _Part) -> None:
        self.written.append(part.write(self._output, self._run_id, self._number))
        self._number += 1


def _chunks(spool: IO[bytes]) -> Iterator[bytes]:
    spool.flush()
    spool.seek(0)
    while chunk := spool.read(_CHUNK):
        yield chunk
