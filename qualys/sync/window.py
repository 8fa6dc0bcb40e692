"""The run's window: which assets a run covers, by their modified date.

A full run covers ``QUALYS_LOOKBACK_DAYS``; an incremental one starts a little before the
last complete run started. Qualys filters on ``updated`` server-side; the sync re-checks
``modified`` itself (docs/qualys-api.md §2.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from qualys.api.assets import RawAsset
from qualys.api.partitions import RangePage
from qualys.output.runs import RunOutput
from qualys.timestamps import iso_utc, parse_datetime

#: Incremental windows start this long before the last complete run started:
#: covers clock skew between us and Qualys and assets Qualys indexed late.
INCREMENTAL_OVERLAP = timedelta(minutes=30)


@dataclass(frozen=True)
class WindowPlan:
    mode: str
    modified_after: str
    #: The latest complete run with a current state: this run's state is built on it.
    previous_run_id: str | None
    #: When the last full run started (this run's start when it is full).
    last_full_run_at: str | None
    #: Why the run is full, for the log (None when incremental).
    full_because: str | None


def plan_window(output: RunOutput, lookback_days: int, full: bool, now: datetime, full_every_days: int = 7) -> WindowPlan:
    """Full = now - lookback; incremental = last complete run's start - overlap.

    A run is full when asked, on the first run, when the latest run has no current state, when
    the last full run is older than ``full_every_days`` (only a full run sees deleted assets),
    or when the incremental window would reach back past the lookback anyway.
    """
    floor = iso_utc(now - timedelta(days=lookback_days)) or ""
    started_now = iso_utc(now)
    manifest = output.latest_manifest()
    complete = manifest is not None and manifest.get("status") == "complete"
    previous = str(manifest["run_id"]) if manifest and complete and isinstance(manifest.get("current"), dict) else None
    started = parse_datetime(str(manifest.get("started_at"))) if manifest else None
    last_full = parse_datetime(str(manifest.get("last_full_run_at"))) if manifest else None

    def full_run(because: str) -> WindowPlan:
        return WindowPlan("full", floor, previous, started_now, because)

    if full:
        return full_run("asked for (--full)")
    if manifest is None or not complete or started is None:
        return full_run("no complete run yet")
    if previous is None:
        return full_run("the latest run has no current state")
    if full_every_days == 0:
        return full_run("QUALYS_FULL_SYNC_EVERY_DAYS is 0")
    if last_full is None or now - last_full >= timedelta(days=full_every_days):
        return full_run(f"the last full run is more than {full_every_days} days old (QUALYS_FULL_SYNC_EVERY_DAYS)")
    since = started - INCREMENTAL_OVERLAP
    if since <= now - timedelta(days=lookback_days):
        return full_run("the latest run is older than the lookback")
    return WindowPlan("incremental", iso_utc(since) or "", previous, iso_utc(last_full), None)


def scope_cutoff(started_at: str, lookback_days: int) -> str:
    """Assets whose ``modified_at`` is at or before this are out of the state of a run started at ``started_at``."""
    started = parse_datetime(started_at)
    if started is None:
        raise ValueError(f"not a timestamp: {started_at!r}")
    return iso_utc(started - timedelta(days=lookback_days)) or ""


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
