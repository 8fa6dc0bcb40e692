"""One sync run: Qualys host assets modified in the window, with their findings, into the output.

A run starts (or resumes from its checkpoint), pulls its pages into parts
(:mod:`qualys.sync.pull`), writes its manifest, and only then points ``latest.json`` at it:
a reader following ``latest.json`` only ever sees complete runs. A run that is killed is
resumed by the next invocation (same run id, same window, from the last checkpointed page).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from qualys.api.client import QualysClient
from qualys.api.retry import RetryPolicy
from qualys.config.settings import SyncSettings
from qualys.output.runs import RunOutput
from qualys.output.sink import Sink, open_sink
from qualys.sync.checkpoint import Checkpoint, new_run_id
from qualys.sync.pull import PagePull
from qualys.sync.state import RunState
from qualys.sync.window import plan_window
from qualys.timestamps import iso_utc

log = logging.getLogger(__name__)


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


class SyncRun:
    """Runs (or resumes) one sync into ``output``, keeping its bookkeeping in ``state``."""

    def __init__(
        self,
        settings: SyncSettings,
        client: QualysClient,
        *,
        output: RunOutput,
        state: RunState,
        progress: Callable[[Progress], None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.client = client
        self.output = output
        self.state = state
        self._progress = progress
        self._now = now

    def run(self, full: bool = False) -> SyncResult:
        with self.state.lock() as lock:
            started_clock = time.monotonic()
            checkpoint, resumed = self._start_or_resume(full)
            if not self.output.has_manifest(checkpoint.run_id):
                PagePull(self, checkpoint, lock).run()
                self.output.write_manifest(checkpoint.run_id, self._manifest(checkpoint))
            self.output.publish(checkpoint.run_id)
            self.state.clear_checkpoint()
            return SyncResult(
                run_id=checkpoint.run_id, mode=checkpoint.mode, resumed=resumed,
                modified_after=checkpoint.modified_after, devices=checkpoint.devices, findings=checkpoint.findings,
                pages=checkpoint.pages, skipped_outside_window=checkpoint.skipped,
                duration_seconds=time.monotonic() - started_clock, manifest=f"runs/{checkpoint.run_id}/manifest.json",
                location=self.output.location,
                stats={"id_ranges": len(checkpoint.ranges), **self.client.stats.as_dict()},
            )

    def _start_or_resume(self, full: bool) -> tuple[Checkpoint, bool]:
        saved = self.state.checkpoint()
        if saved is not None:
            if not full or saved.mode == "full":
                saved.resumes += 1
                log.info("resuming run %s from %s", saved.run_id, saved.position())
                return saved, True
            log.info("--full: abandoning unfinished incremental run %s", saved.run_id)
        now = self._now()
        mode, modified_after = plan_window(self.output, self.settings.lookback_days, full, now)
        checkpoint = Checkpoint(
            run_id=new_run_id(now), mode=mode, modified_after=modified_after, started_at=iso_utc(now) or ""
        )
        self.state.save_checkpoint(checkpoint)
        return checkpoint, False

    def page_written(self, checkpoint: Checkpoint) -> None:
        """A page's parts are written and the checkpoint moved past it."""
        if self._progress is not None:
            self._progress(Progress(checkpoint.pages, checkpoint.devices, checkpoint.findings))

    def _manifest(self, checkpoint: Checkpoint) -> dict[str, object]:
        return {
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
    target = sink or open_sink(settings.output)
    own_client = client is None
    qualys = client or make_client(settings)
    try:
        run = SyncRun(settings, qualys, output=RunOutput(target), state=RunState(target), progress=progress)
        return run.run(full=full)
    finally:
        if own_client:
            qualys.close()
