"""One sync run: Qualys host assets modified in the window, with their findings, into the output.

A run starts (or resumes from its checkpoint), pulls its pages into parts
(:mod:`qualys.sync.pull`), merges them into the current state and its change feed
(:mod:`qualys.sync.current_state`), writes its manifest, and only then points ``latest.json``
at it: a reader following ``latest.json`` only ever sees complete runs. A run that is killed is
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
from qualys.errors import ConnectorError
from qualys.output.log_delivery import (
    DeliveryResult,
    LogAnalyticsDelivery,
    LogDeliveryError,
    LogsUploader,
    ingestion_client,
)
from qualys.output.retention import RetentionResult, apply_retention
from qualys.output.runs import RunOutput
from qualys.output.sink import Sink, open_sink
from qualys.sync.change_feed import CHANGE_TYPES
from qualys.sync.checkpoint import Checkpoint, new_run_id
from qualys.sync.current_state import BuiltState, RunRecords, build_state
from qualys.sync.pull import PagePull
from qualys.sync.state import RunState
from qualys.sync.window import plan_window, scope_cutoff
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


class DeliveryFailedError(LogDeliveryError):
    """The run is complete in Blob Storage, but Log Analytics did not take everything.

    Blob Storage is the system of record, so a failing destination does not hold the sync back:
    runs go on being published, and each invocation first delivers what is still pending, in run
    order (``runs/<id>/log-analytics.json`` says how far each got). ``result`` is the run's result.
    """

    def __init__(self, error: LogDeliveryError, result: SyncResult) -> None:
        pending = f"Run {result.run_id} is complete in Blob Storage; the next run delivers what is pending, in order."
        super().__init__(error.cause, f"{error.action} {pending}" if error.action else pending)
        self.result = result


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
        delivery: LogAnalyticsDelivery | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.output = output
        self.state = state
        self._progress = progress
        self._now = now
        self._delivery = delivery

    def run(self, full: bool = False) -> SyncResult:
        with self.state.lock() as lock:
            started_clock = time.monotonic()
            delivered = DeliveryResult()
            self._deliver(delivered)  # what an earlier invocation left undelivered goes first
            checkpoint, resumed = self._start_or_resume(full)
            if not self.output.has_manifest(checkpoint.run_id):
                PagePull(self, checkpoint, lock).run()
                state = self._build_state(checkpoint)
                lock.check()
                self.output.write_manifest(checkpoint.run_id, self._manifest(checkpoint, state))
            self.output.publish(checkpoint.run_id)
            self.state.clear_checkpoint()
            if delivered.error is None:  # a failing destination is tried once per invocation
                self._deliver(delivered)
            retention = self._retain(checkpoint.run_id)
            published = self.output.manifest(checkpoint.run_id) or {}
            current, changes = published.get("current"), published.get("changes")
            result = SyncResult(
                run_id=checkpoint.run_id, mode=checkpoint.mode, resumed=resumed,
                modified_after=checkpoint.modified_after, devices=checkpoint.devices, findings=checkpoint.findings,
                pages=checkpoint.pages, skipped_outside_window=checkpoint.skipped,
                duration_seconds=time.monotonic() - started_clock, manifest=f"runs/{checkpoint.run_id}/manifest.json",
                location=self.output.location,
                stats={
                    "id_ranges": len(checkpoint.ranges),
                    "current_devices": current.get("devices") if isinstance(current, dict) else None,
                    "current_findings": current.get("findings") if isinstance(current, dict) else None,
                    "baseline": changes.get("baseline") if isinstance(changes, dict) else None,
                    "changes": changes.get("counts") if isinstance(changes, dict) else None,
                    "runs_deleted": retention.runs_deleted,
                    **({"log_analytics": delivered.summary()} if self._delivery is not None else {}),
                    **self.client.stats.as_dict(),
                },
            )
            if delivered.error is not None:
                raise DeliveryFailedError(delivered.error, result)
            return result

    def _deliver(self, delivered: DeliveryResult) -> None:
        """Deliver what is pending to Log Analytics, if configured, counting into ``delivered``. A failure
        is kept there, not raised: Blob Storage is the system of record, the sync goes on."""
        if self._delivery is None:
            return
        try:
            self._delivery.deliver_pending(delivered)
        except LogDeliveryError as exc:
            delivered.error = exc
            log.warning("Log Analytics: %s (Blob Storage is not held back; the delivery resumes next run)", exc)

    def _start_or_resume(self, full: bool) -> tuple[Checkpoint, bool]:
        saved = self.state.checkpoint()
        if saved is not None:
            if not full or saved.mode == "full":
                saved.resumes += 1
                log.info("resuming run %s from %s", saved.run_id, saved.position())
                return saved, True
            log.info("--full: abandoning unfinished incremental run %s", saved.run_id)
        now = self._now()
        plan = plan_window(self.output, self.settings.lookback_days, full, now, self.settings.full_sync_every_days)
        if plan.full_because:
            log.info("full run: %s", plan.full_because)
        checkpoint = Checkpoint(
            run_id=new_run_id(now), mode=plan.mode, modified_after=plan.modified_after, started_at=iso_utc(now) or "",
            previous_run_id=plan.previous_run_id, last_full_run_at=plan.last_full_run_at,
        )
        self.state.save_checkpoint(checkpoint)
        return checkpoint, False

    def page_written(self, checkpoint: Checkpoint) -> None:
        """A page's parts are written and the checkpoint moved past it."""
        if self._progress is not None:
            self._progress(Progress(checkpoint.pages, checkpoint.devices, checkpoint.findings))

    def _retain(self, run_id: str) -> RetentionResult:
        """Old runs go after the run is published; a failure to delete is logged, the run stays a success."""
        try:
            return apply_retention(self.output, now=self._now(), days=self.settings.retention_days, latest_run_id=run_id)
        except ConnectorError as exc:
            log.warning("retention: %s (the next run tries again)", exc)
            return RetentionResult()

    def _build_state(self, checkpoint: Checkpoint) -> BuiltState:
        """The run's current state and change feed (built again from the start when a killed run resumes)."""
        if checkpoint.mode == "incremental" and checkpoint.previous_run_id is None:
            # A checkpoint written before runs kept a state: an incremental run builds on the latest run.
            latest = self.output.latest_manifest()
            checkpoint.previous_run_id = str(latest["run_id"]) if latest else None
        records = RunRecords(
            run_id=checkpoint.run_id,
            started_at=checkpoint.started_at,
            cutoff=scope_cutoff(checkpoint.started_at, self.settings.lookback_days),
            full=checkpoint.mode == "full",
            parts=checkpoint.parts,
        )
        built = build_state(self.output, records, checkpoint.previous_run_id)
        log.info(
            "current state: %d devices, %d findings in %d segments; changes: %s",
            built.devices, built.findings, len(built.segments),
            "baseline" if built.baseline else ", ".join(f"{count} {kind}" for kind, count in built.change_counts.items() if count)
            or "none",
        )
        return built

    def _manifest(self, checkpoint: Checkpoint, state: BuiltState) -> dict[str, object]:
        changes: dict[str, object] = {
            "baseline": state.baseline,
            "counts": state.change_counts or dict.fromkeys(CHANGE_TYPES, 0),
            "files": state.change_files,
        }
        if state.baseline_reason:
            changes["baseline_reason"] = state.baseline_reason
        return {
            "run_id": checkpoint.run_id,
            "status": "complete",
            "mode": checkpoint.mode,
            "window": {"modified_after": checkpoint.modified_after},
            "started_at": checkpoint.started_at,
            "completed_at": iso_utc(self._now()),
            "previous_run_id": checkpoint.previous_run_id,
            "last_full_run_at": checkpoint.last_full_run_at,
            "counts": {"devices": checkpoint.devices, "findings": checkpoint.findings},
            "files": list(checkpoint.files),
            "current": {
                "modified_after": scope_cutoff(checkpoint.started_at, self.settings.lookback_days),
                "devices": state.devices,
                "findings": state.findings,
                "files": state.files,
                "segments": [segment.to_dict() for segment in state.segments],
            },
            "changes": changes,
            "pages": checkpoint.pages,
            "id_ranges": len(checkpoint.ranges),
            "resumes": checkpoint.resumes,
            "skipped_outside_window": checkpoint.skipped,
            "source": {"api_url": self.settings.api_url},
            "schema_version": 2,
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
    now: Callable[[], datetime] | None = None,
    log_uploader: LogsUploader | None = None,
) -> SyncResult:
    """The one code path behind the CLI, the timer function and the tests (``now``: the clock, and
    ``log_uploader``: the Logs Ingestion client, for tests)."""
    target = sink or open_sink(settings.output)
    own_client = client is None
    qualys = client or make_client(settings)
    try:
        clock = {"now": now} if now is not None else {}
        output = RunOutput(target)
        delivery = None
        if settings.log_analytics is not None:
            uploader = log_uploader or ingestion_client(settings.log_analytics)
            delivery = LogAnalyticsDelivery(output, settings.log_analytics, uploader)
        run = SyncRun(
            settings, qualys, output=output, state=RunState(target), progress=progress, delivery=delivery, **clock
        )
        return run.run(full=full)
    finally:
        if own_client:
            qualys.close()
