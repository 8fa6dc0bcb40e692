"""The run's window: which assets a run covers, by their modified date.

A full run covers ``QUALYS_LOOKBACK_DAYS``; an incremental one starts a little before the
last complete run started. Qualys filters on ``updated`` server-side; the sync re-checks
``modified`` itself (docs/qualys-api.md §2.3).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from qualys.api.assets import RawAsset
from qualys.api.partitions import RangePage
from qualys.output.runs import RunOutput
from qualys.timestamps import iso_utc, parse_datetime

#: Incremental windows start this long before the last complete run started:
#: covers clock skew between us and Qualys and assets Qualys indexed late.
INCREMENTAL_OVERLAP = timedelta(minutes=30)


def plan_window(output: RunOutput, lookback_days: int, full: bool, now: datetime) -> tuple[str, str]:
    """(mode, modified_after): full = now - lookback; incremental = last complete run's start - overlap."""
    floor = now - timedelta(days=lookback_days)
    if full:
        return "full", iso_utc(floor) or ""
    manifest = output.latest_manifest()
    started = parse_datetime(str(manifest.get("started_at"))) if manifest else None
    if manifest is None or manifest.get("status") != "complete" or started is None:
        return "full", iso_utc(floor) or ""
    since = started - INCREMENTAL_OVERLAP
    if since <= floor:
        return "full", iso_utc(floor) or ""
    return "incremental", iso_utc(since) or ""


def in_window(read: RangePage, cutoff: datetime | None) -> tuple[list[RawAsset], int]:
    """The page's assets inside its range, modified after ``cutoff``, each id once; and how many were too old."""
    kept: dict[int, RawAsset] = {}
    skipped = 0
    for asset in read.page.assets:
        if not read.bounds.holds(asset.id):
            continue  # some clients re-fetch the last record (qualysdk); never emit it twice
        modified = parse_datetime(asset.modified)
        if cutoff is not None and modified is not None and modified <= cutoff:
            skipped += 1
            continue
        kept.setdefault(asset.id, asset)
    return list(kept.values()), skipped
