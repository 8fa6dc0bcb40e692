"""``python -m qualys demo``: a real sync against the bundled Qualys simulator, no accounts needed.

The simulator (``qualys_simulator``, next to ``qualys/`` in a checkout) is not deployed to Azure:
the demo runs from a checkout only, and says so elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

from qualys.cli.summary import summary_line
from qualys.config.secret import Secret
from qualys.config.settings import LocalOutput, SyncSettings
from qualys.errors import ConfigError
from qualys.sync.run import run_sync

DEMO_USER = "demo-user"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - the simulator's public demo credential


def run_demo(assets: int, output_dir: str, full: bool = False) -> int:
    try:
        from qualys_simulator import Estate, QualysSimulator
    except ImportError:
        raise ConfigError(
            "The demo needs the Qualys simulator (qualys_simulator/), which only a checkout of the repository has.",
            "Run it from a clone: ./scripts/demo.sh",
        ) from None
    estate = Estate.generate(assets=assets)
    with QualysSimulator(estate, username=DEMO_USER, password=DEMO_PASSWORD) as simulator:
        print(f"Qualys simulator with {assets} host assets at {simulator.url}")
        settings = SyncSettings(
            api_url=simulator.url,
            username=DEMO_USER,
            password=Secret(DEMO_PASSWORD),
            lookback_days=90,
            page_size=100,
            max_retry_wait_seconds=60,
            output=LocalOutput(output_dir),
        )
        result = run_sync(settings, full=full)
    print(summary_line(result))
    root = Path(output_dir).resolve()
    print(f"latest run:  {root / 'latest.json'}")
    print(f"manifest:    {root / result.manifest}")
    manifest = json.loads((root / result.manifest).read_text())
    devices = [f for f in manifest["files"] if "/devices/" in f]
    if devices:
        first = (root / devices[0]).read_text().splitlines()[0]
        print("first device record:")
        print(json.dumps(json.loads(first), indent=2, ensure_ascii=False))
    return 0
