"""Human-readable lines about a sync, shared by the CLI, the demo and the timer function."""

from __future__ import annotations

from qualys.sync.run import SyncResult


def summary_line(result: SyncResult) -> str:
    calls = result.stats.get("calls", {})
    total_calls = sum(calls.values()) if isinstance(calls, dict) else 0
    resumed = ", resumed" if result.resumed else ""
    return (
        f"sync complete: run {result.run_id} ({result.mode}{resumed}, modified after {result.modified_after}): "
        f"{result.devices:,} devices, {result.findings:,} findings, {result.pages} pages, "
        f"{total_calls} API calls, {result.stats.get('retries', 0)} retries in {result.duration_seconds:.1f} s "
        f"-> {result.location}"
    )
