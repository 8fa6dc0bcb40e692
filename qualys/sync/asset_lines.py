"""One asset's records as JSON lines: what the current state and the change feed are built from.

The state is merged at the byte level: an asset whose records did not change is copied line
for line, never decoded. Only the few keys the merge needs (``asset_id``, ``qid``,
``modified_at``) are read from a line, from the fixed shape :mod:`qualys.sync.records`
writes, with a JSON decode as the fallback for any other shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from qualys.output.runs import is_whole_record

_ASSET_ID = b'{"asset_id":"'
_QID = b'"qid":'
_MODIFIED_AT = b',"modified_at":'


class DamagedLineError(ValueError):
    """A line that is not a record of the output contract (the caller names the file)."""


@dataclass(slots=True)
class AssetLines:
    """An asset's device line and its finding lines (sorted by QID), each without its line end."""

    asset_id: int
    device: bytes
    findings: list[bytes]


def asset_id_of(line: bytes) -> int:
    """The ``asset_id`` of a device or finding line, as the integer it spells."""
    if line.startswith(_ASSET_ID):
        end = line.find(b'"', len(_ASSET_ID))
        digits = line[len(_ASSET_ID) : end]
        if end > 0 and digits.isdigit():
            return int(digits)
    value = _record(line).get("asset_id")
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise DamagedLineError(f"a record without a numeric asset_id: {line[:80]!r}")


def qid_of(line: bytes) -> int:
    """The ``qid`` of a finding line."""
    start = line.find(_QID)
    if start > 0:
        start += len(_QID)
        end = line.find(b",", start)
        digits = line[start:end]
        if end > 0 and digits.lstrip(b"-").isdigit():
            return int(digits)
    value = _record(line).get("qid")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise DamagedLineError(f"a finding without an integer qid: {line[:80]!r}")


def modified_at_of(line: bytes) -> str | None:
    """The ``modified_at`` of a device line (ISO-8601 UTC text, or None)."""
    start = line.find(_MODIFIED_AT)
    if start > 0:
        start += len(_MODIFIED_AT)
        if line.startswith(b"null", start):
            return None
        if line.startswith(b'"', start) and line.startswith(b'"', start + 21):
            return line[start + 1 : start + 21].decode()
    value = _record(line).get("modified_at")
    return value if isinstance(value, str) else None


def sorted_by_qid(findings: list[bytes]) -> list[bytes]:
    """Finding lines by ascending QID (a delta part keeps Qualys's order; the state is sorted)."""
    if len(findings) < 2:
        return findings
    return [line for _, line in sorted(((qid_of(line), line) for line in findings), key=lambda pair: pair[0])]


def group_assets(devices: Iterator[bytes], findings: Iterator[bytes]) -> Iterator[AssetLines]:
    """Pair device lines with the finding lines that follow the same order of assets.

    Both streams hold the same assets in the same order (findings grouped by asset; an asset may
    have none). Raises :class:`DamagedLineError` when a finding belongs to no device at its place,
    or the assets are not in ascending id order.
    """
    pending: tuple[int, bytes] | None = None
    findings_iter = iter(findings)
    previous = -1
    for device in devices:
        if not device.strip():
            continue
        _check_whole(device)
        asset_id = asset_id_of(device)
        if asset_id <= previous:
            raise DamagedLineError(f"asset {asset_id} follows asset {previous}: the records are not in ascending order")
        previous = asset_id
        lines: list[bytes] = []
        while True:
            if pending is None:
                line = next(findings_iter, None)
                if line is None:
                    break
                if not line.strip():
                    continue
                _check_whole(line)
                pending = (asset_id_of(line), line)
            owner, line = pending
            if owner != asset_id:
                if owner < asset_id:
                    raise DamagedLineError(f"a finding of asset {owner}, which has no device record at its place")
                break
            lines.append(line)
            pending = None
        yield AssetLines(asset_id, device, lines)
    if pending is not None or any(line.strip() for line in findings_iter):
        raise DamagedLineError("findings after the last device record")


def _check_whole(line: bytes) -> None:
    """Lines are copied without decoding: one cut short (a file damaged in place) must not be."""
    if not is_whole_record(line):
        raise DamagedLineError(f"not a whole JSON record: {line[:80]!r}")


def _record(line: bytes) -> dict[str, object]:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise DamagedLineError(f"not a JSON line: {line[:80]!r}") from exc
    if not isinstance(value, dict):
        raise DamagedLineError(f"not a JSON object: {line[:80]!r}")
    return value
