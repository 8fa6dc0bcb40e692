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
        f"-> {result.location}{state_summary(result)}"
    )


def state_summary(result: SyncResult) -> str:
    """``; state: N devices, M findings; changes: ...`` (empty for a result without a state)."""
    devices, findings = result.stats.get("current_devices"), result.stats.get("current_findings")
    if not isinstance(devices, int) or not isinstance(findings, int):
        return ""
    counts = result.stats.get("changes")
    if result.stats.get("baseline"):
        changes = "baseline (first state)"
    elif isinstance(counts, dict):
        changes = ", ".join(f"{count:,} {kind}" for kind, count in counts.items() if count) or "none"
    else:
        changes = "unknown"
    delivered = result.stats.get("log_analytics")
    sent = ""
    if isinstance(delivered, dict) and isinstance(delivered.get("rows"), dict):
        rows = sum(int(n) for n in delivered["rows"].values())
        sent = f"; Log Analytics: {rows:,} rows of {len(delivered.get('runs') or [])} run(s) delivered"
        if delivered.get("error"):
            sent += ", then it failed (below); the next run delivers what is pending"
    return f"; state: {devices:,} devices, {findings:,} findings; changes: {changes}{sent}"
