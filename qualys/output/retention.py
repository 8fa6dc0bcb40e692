"""Retention: complete runs older than ``QUALYS_RETENTION_DAYS`` are deleted after a successful run.

Oldest first, a deleted run loses its manifest, then every file of its folder that no kept
manifest lists (a kept run's state may list segments an older run wrote: those stay). The run
``latest.json`` points to is always kept, and so is every run folder an unfinished run's
checkpoint may still need. Folders of runs that never completed (an abandoned run, a killed
``--full``) are deleted once they are as old as the limit. Deleting the manifest first means an
interrupted clean-up leaves only files no reader can reach, which the next one removes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from qualys.output.runs import RunOutput, manifest_path
from qualys.timestamps import parse_datetime

log = logging.getLogger(__name__)


@dataclass
class RetentionResult:
    runs_deleted: int = 0
    files_deleted: int = 0


def apply_retention(
    output: RunOutput, *, now: datetime, days: int, latest_run_id: str, unfinished_run_id: str | None = None
) -> RetentionResult:
    """Delete what is older than ``days`` (0: nothing); see the module docstring for what is always kept."""
    result = RetentionResult()
    if days <= 0:
        return result
    limit = now - timedelta(days=days)
    files_by_run: dict[str, list[str]] = {}
    for path in output.sink.list("runs/"):
        parts = path.split("/")
        if len(parts) >= 3:
            files_by_run.setdefault(parts[1], []).append(path)
    manifests = {run_id: output.manifest(run_id) for run_id in files_by_run if manifest_path(run_id) in files_by_run[run_id]}
    expired: list[tuple[datetime, str]] = []
    referenced: set[str] = set()
    for run_id in files_by_run:
        manifest = manifests.get(run_id)
        when = _run_time(run_id, manifest)
        if run_id in (latest_run_id, unfinished_run_id) or when is None or when > limit:
            if manifest is not None:
                referenced.update(listed_files(manifest))
        else:
            expired.append((when, run_id))
    for _, run_id in sorted(expired):
        path = manifest_path(run_id)
        if run_id in manifests:
            output.delete(path)
        for file in files_by_run[run_id]:
            if file != path and file not in referenced:
                output.delete(file)
                result.files_deleted += 1
        result.runs_deleted += 1
    if result.runs_deleted:
        log.info(
            "retention (%d days): deleted %d runs, %d files", days, result.runs_deleted, result.files_deleted
        )
    return result


def listed_files(manifest: dict[str, object]) -> list[str]:
    """Every file a manifest lists: the run's parts, its state's segments (whichever run wrote them), its changes."""
    files: list[object] = list(_list(manifest.get("files")))
    for section in ("current", "changes"):
        value = manifest.get(section)
        if isinstance(value, dict):
            files.extend(_list(value.get("files")))
    return [file for file in files if isinstance(file, str)]


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _run_time(run_id: str, manifest: dict[str, object] | None) -> datetime | None:
    """When the run completed (its id's start time for a run that never completed); None: unknown, kept."""
    if manifest is not None:
        return parse_datetime(str(manifest.get("completed_at") or manifest.get("started_at") or ""))
    try:
        return datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
