"""What the current state and the change feed must be, computed from the simulator's truth with plain dicts.

The model follows the contract's words, independently of the connector's streamed merge: an
incremental run replaces the assets it read and drops those that aged out; a full run's state is
exactly what it read. The change feed is the difference between two consecutive states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from qualys_simulator.estate import Estate
from qualys_simulator.truth import expected_run

DEVICE_VOLATILE = {"modified_at", "last_vuln_scan_at"}
FINDING_VOLATILE = {"last_found_at"}


@dataclass
class State:
    devices: dict[str, dict[str, object]] = field(default_factory=dict)
    findings: dict[tuple[str, int], dict[str, object]] = field(default_factory=dict)


def next_state(previous: State | None, estate: Estate, *, full: bool, window_after: datetime, cutoff: str) -> State:
    """The state after a run whose window starts at ``window_after`` and whose scope starts after ``cutoff``."""
    devices, findings = expected_run(estate, window_after)
    if full or previous is None:
        return State(dict(devices), dict(findings))
    state = State(
        {a: d for a, d in previous.devices.items() if a in devices or not _aged(d, cutoff)},
        {},
    )
    state.devices.update(devices)
    state.findings = {key: f for key, f in previous.findings.items() if key[0] in state.devices and key[0] not in devices}
    state.findings.update(findings)
    return state


def expected_changes(previous: State, current: State, cutoff: str) -> list[tuple[object, ...]]:
    """(change, asset_id, qid, reason, fields) in feed order: by asset id, its device first, then by QID."""
    out: list[tuple[int, int, int, tuple[object, ...]]] = []
    by_asset_old = _findings_by_asset(previous)
    by_asset_new = _findings_by_asset(current)
    for asset_id in previous.devices.keys() | current.devices.keys():
        old, new = previous.devices.get(asset_id), current.devices.get(asset_id)
        key = int(asset_id)
        if old is None:
            out.append((key, 0, 0, ("device_added", asset_id, None, None, None)))
            for qid in by_asset_new.get(asset_id, {}):
                out.append((key, 1, qid, ("finding_added", asset_id, qid, None, None)))
        elif new is None:
            reason = "aged_out" if _aged(old, cutoff) else "not_returned"
            out.append((key, 0, 0, ("device_removed", asset_id, None, reason, None)))
            for qid in by_asset_old.get(asset_id, {}):
                out.append((key, 1, qid, ("finding_removed", asset_id, qid, reason, None)))
        else:
            fields = _changed(old, new, DEVICE_VOLATILE)
            if fields:
                out.append((key, 0, 0, ("device_updated", asset_id, None, None, fields)))
            old_f, new_f = by_asset_old.get(asset_id, {}), by_asset_new.get(asset_id, {})
            for qid in old_f.keys() | new_f.keys():
                if qid not in new_f:
                    out.append((key, 1, qid, ("finding_removed", asset_id, qid, "no_longer_detected", None)))
                elif qid not in old_f:
                    out.append((key, 1, qid, ("finding_added", asset_id, qid, None, None)))
                elif fields := _changed(old_f[qid], new_f[qid], FINDING_VOLATILE):
                    out.append((key, 1, qid, ("finding_updated", asset_id, qid, None, fields)))
    return [change for *_, change in sorted(out, key=lambda item: item[:3])]


def _aged(device: dict[str, object], cutoff: str) -> bool:
    modified = device.get("modified_at")
    return isinstance(modified, str) and modified <= cutoff


def _changed(old: dict[str, object], new: dict[str, object], volatile: set[str]) -> list[str] | None:
    fields = [key for key in new if key not in volatile and old.get(key) != new.get(key)]
    return fields or None


def _findings_by_asset(state: State) -> dict[str, dict[int, dict[str, object]]]:
    out: dict[str, dict[int, dict[str, object]]] = {}
    for (asset_id, qid), record in state.findings.items():
        out.setdefault(asset_id, {})[qid] = record
    return out
