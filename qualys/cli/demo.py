"""``python -m qualys demo``: real syncs against the bundled Qualys simulator, no accounts needed.

Two runs: a full one, then, after the simulated estate changed (new and fixed findings, an asset
ageing out of the window), an incremental one whose change feed the demo prints.

The simulator (``qualys_simulator``, next to ``qualys/`` in a checkout) is not deployed to Azure:
the demo runs from a checkout only, and says so elsewhere.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from qualys.cli.summary import summary_line
from qualys.config.secret import Secret
from qualys.config.settings import LocalOutput, SyncSettings
from qualys.errors import ConfigError
from qualys.sync.run import run_sync

if TYPE_CHECKING:
    from qualys_simulator import Estate

DEMO_USER = "demo-user"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - the simulator's public demo credential


def run_demo(assets: int, output_dir: str, full: bool = False) -> int:
    """Sync, let the simulated estate change (new and fixed findings, one asset ageing out), sync again,
    and show what the change feed says."""
    try:
        from qualys_simulator import Estate, QualysSimulator
    except ImportError:
        raise ConfigError(
            "The demo needs the Qualys simulator (qualys_simulator/), which only a checkout of the repository has.",
            "Run it from a clone: ./scripts/demo.sh",
        ) from None
    estate = Estate.generate(assets=assets)
    root = Path(output_dir).resolve()
    with QualysSimulator(estate, username=DEMO_USER, password=DEMO_PASSWORD) as simulator:
        print(f"Qualys simulator with {assets} host assets at {simulator.url}")
        settings = SyncSettings(
            api_url=simulator.url,
            username=DEMO_USER,
            password=Secret(DEMO_PASSWORD),
            lookback_days=LOOKBACK_DAYS,
            page_size=100,
            max_retry_wait_seconds=60,
            output=LocalOutput(output_dir),
        )
        first = run_sync(settings, full=True)
        print(summary_line(first))
        _show_first_device(root, first.manifest)

        later, story = _change_the_estate(estate, datetime.now(UTC))
        print(f"\n{story}")
        second = run_sync(settings, full=full, now=lambda: later)
        print(summary_line(second))
    print(f"latest run:  {root / 'latest.json'}")
    print(f"manifest:    {root / second.manifest}")
    _show_changes(root, second.manifest)
    return 0


#: The demo's window (the default of QUALYS_LOOKBACK_DAYS).
LOOKBACK_DAYS = 90


def _change_the_estate(estate: Estate, now: datetime) -> tuple[datetime, str]:
    """What happens in Qualys before the next run; returns the next run's time and what changed."""
    edge = now - timedelta(days=LOOKBACK_DAYS)
    in_window = sorted((asset.modified, asset_id) for asset_id, asset in estate.assets.items() if asset.modified > edge)
    oldest_modified, ageing = in_window[0]
    # The next run starts just after the least recently modified asset leaves the window.
    later = oldest_modified + timedelta(days=LOOKBACK_DAYS, minutes=1)
    when = later - timedelta(minutes=5)
    recent = [asset_id for _, asset_id in in_window[-40:]]
    rescanned, fixed, renamed = recent[:5], recent[5:9], recent[9]
    estate.touch(rescanned, when)
    estate.fix(fixed, when)
    estate.rename([renamed], when)
    hours = (later - now).total_seconds() / 3600
    story = (
        f"Meanwhile in Qualys ({hours:.1f} hours later): {len(rescanned)} assets re-scanned with a new finding, "
        f"{len(fixed)} with some findings fixed, asset {renamed} renamed, and asset {ageing} "
        f"(last modified {oldest_modified:%Y-%m-%d %H:%M}) leaves the {LOOKBACK_DAYS}-day window."
    )
    return later, story


def _show_first_device(root: Path, manifest_path: str) -> None:
    manifest = json.loads((root / manifest_path).read_text())
    devices = [f for f in manifest["current"]["files"] if "/devices/" in f]
    if devices:
        first = (root / devices[0]).read_text().splitlines()[0]
        print("first device record of the current state:")
        print(json.dumps(json.loads(first), indent=2, ensure_ascii=False))


def _show_changes(root: Path, manifest_path: str) -> None:
    manifest = json.loads((root / manifest_path).read_text())
    changes = manifest["changes"]
    counts = {kind: count for kind, count in changes["counts"].items() if count}
    print("change feed: " + (", ".join(f"{count} {kind}" for kind, count in counts.items()) or "no changes"))
    shown: set[tuple[str, str | None]] = set()
    for path in changes["files"]:
        for line in (root / path).read_text().splitlines():
            record = json.loads(line)
            kind = (record["change"], record["reason"])
            if kind not in shown:  # one example of each kind of change, and of each reason
                shown.add(kind)
                print(f"  {line}")
