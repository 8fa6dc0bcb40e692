"""The change feed of a run: what changed in the current state against the previous complete run.

One JSON object per change (docs/output-contract.md, ``change.schema.json``): a device or a
finding added, updated (with the contract fields that changed) or removed (with the reason).
Fields that move on every agent check-in or scan (:data:`DEVICE_VOLATILE`,
:data:`FINDING_VOLATILE`) never make a record "updated" on their own. Changes are written in
asset id order, spooled to a local temporary file while the state is merged, then cut into parts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO

from qualys.sync.asset_lines import AssetLines, DamagedLineError, qid_of
from qualys.sync.local_spool import local_spool
from qualys.sync.records import ENCODER

DEVICE_ADDED, DEVICE_UPDATED, DEVICE_REMOVED = "device_added", "device_updated", "device_removed"
FINDING_ADDED, FINDING_UPDATED, FINDING_REMOVED = "finding_added", "finding_updated", "finding_removed"
CHANGE_TYPES = (DEVICE_ADDED, DEVICE_UPDATED, DEVICE_REMOVED, FINDING_ADDED, FINDING_UPDATED, FINDING_REMOVED)

#: The asset's ``modified_at`` left the lookback window.
AGED_OUT = "aged_out"
#: A full run did not return the asset: deleted in Qualys, or no longer in the API user's scope.
NOT_RETURNED = "not_returned"
#: The asset was read again and Qualys no longer lists the finding on it (fixed, or purged).
NO_LONGER_DETECTED = "no_longer_detected"

DEVICE_VOLATILE = frozenset({"modified_at", "last_vuln_scan_at"})
FINDING_VOLATILE = frozenset({"last_found_at"})

#: Change records per part file.
CHANGES_PER_PART = 100_000

# The volatile members sit together in the records' fixed key order (qualys.sync.records): cutting
# them out compares two lines without decoding them; other shapes fall back to a JSON comparison.
_DEVICE_CUT = (b',"modified_at":', b',"source":')
_FINDING_CUT = (b',"last_found_at":', b',"host_instance_vuln_id":')


class ChangeFeed:
    """Collects one run's changes in asset id order, spooled on local disk."""

    def __init__(self, run_id: str, observed_at: str) -> None:
        self._tail = f',"run_id":{ENCODER.encode(run_id)},"observed_at":{ENCODER.encode(observed_at)}}}\n'.encode()
        self._spool: IO[bytes] = local_spool("qualys-changes-", 1 << 18)
        self.counts: dict[str, int] = dict.fromkeys(CHANGE_TYPES, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def added(self, asset: AssetLines) -> None:
        self._emit(DEVICE_ADDED, asset.asset_id)
        for line in asset.findings:
            self._emit(FINDING_ADDED, asset.asset_id, qid_of(line))

    def removed(self, asset: AssetLines, reason: str) -> None:
        self._emit(DEVICE_REMOVED, asset.asset_id, reason=reason)
        for line in asset.findings:
            self._emit(FINDING_REMOVED, asset.asset_id, qid_of(line), reason=reason)

    def replaced(self, old: AssetLines, new: AssetLines) -> None:
        """The asset was read again: its device and its findings, QID by QID."""
        fields = changed_fields(old.device, new.device, _DEVICE_CUT, DEVICE_VOLATILE)
        if fields:
            self._emit(DEVICE_UPDATED, new.asset_id, fields=fields)
        old_lines, new_lines = old.findings, new.findings
        i = j = 0
        while i < len(old_lines) or j < len(new_lines):
            old_qid = qid_of(old_lines[i]) if i < len(old_lines) else None
            new_qid = qid_of(new_lines[j]) if j < len(new_lines) else None
            if new_qid is None or (old_qid is not None and old_qid < new_qid):
                assert old_qid is not None
                self._emit(FINDING_REMOVED, new.asset_id, old_qid, reason=NO_LONGER_DETECTED)
                i += 1
            elif old_qid is None or new_qid < old_qid:
                self._emit(FINDING_ADDED, new.asset_id, new_qid)
                j += 1
            else:
                fields = changed_fields(old_lines[i], new_lines[j], _FINDING_CUT, FINDING_VOLATILE)
                if fields:
                    self._emit(FINDING_UPDATED, new.asset_id, new_qid, fields=fields)
                i += 1
                j += 1

    def parts(self) -> Iterator[Iterator[bytes]]:
        """The spooled changes, :data:`CHANGES_PER_PART` lines per part (each part an iterator of lines).

        Always at least one part (empty when nothing changed), so a reader's file list is never empty.
        """
        self._spool.flush()
        self._spool.seek(0)
        remaining = self.total
        if remaining == 0:
            yield iter(())
        while remaining > 0:
            count = min(remaining, CHANGES_PER_PART)
            remaining -= count
            yield (self._spool.readline() for _ in range(count))

    def close(self) -> None:
        self._spool.close()

    def _emit(
        self, change: str, asset_id: int, qid: int | None = None, *, reason: str | None = None, fields: list[str] | None = None
    ) -> None:
        self.counts[change] += 1
        self._spool.write(
            f'{{"change":"{change}","asset_id":"{asset_id}","qid":{"null" if qid is None else qid},'
            f'"reason":{"null" if reason is None else ENCODER.encode(reason)},'
            f'"fields":{"null" if fields is None else ENCODER.encode(fields)}'.encode()
            + self._tail
        )


def changed_fields(old: bytes, new: bytes, cut: tuple[bytes, bytes], volatile: frozenset[str]) -> list[str]:
    """The record fields that differ between two lines of the same record, leaving out ``volatile`` ones."""
    if old == new:
        return []
    stripped = _without(old, cut)
    if stripped is not None and stripped == _without(new, cut):
        return []
    try:
        before, after = json.loads(old), json.loads(new)
    except ValueError as exc:
        raise DamagedLineError(f"not a JSON line: {old[:80]!r}") from exc
    keys = list(after) + [key for key in before if key not in after]
    return [key for key in keys if key not in volatile and before.get(key) != after.get(key)]


def _without(line: bytes, cut: tuple[bytes, bytes]) -> bytes | None:
    start = line.find(cut[0])
    end = line.find(cut[1], start + 1) if start > 0 else -1
    return line[:start] + line[end:] if end > 0 else None
