"""``python -m qualys_simulator --assets 500``: serve a simulated Qualys subscription until Ctrl-C."""

from __future__ import annotations

import argparse
import threading
from datetime import timedelta

from .estate import Estate
from .server import Latency, QualysSimulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qualys_simulator", description=__doc__)
    parser.add_argument("--assets", type=int, default=500, help="number of host assets (default 500)")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--seed", type=int, default=7, help="estate seed (default 7)")
    parser.add_argument("--kb-latency", type=float, default=0.0, help="seconds each KB call takes (default 0)")
    args = parser.parse_args(argv)
    estate = Estate.generate(assets=args.assets, seed=args.seed)
    in_window = len(estate.modified_after(estate.now - timedelta(days=estate.lookback_days)))
    with QualysSimulator(estate, port=args.port, latency=Latency(kb=args.kb_latency)) as sim:
        print(f"Qualys simulator at {sim.url}")
        print(f"  username: {sim.username}")
        print(f"  password: {sim.password}")
        print(
            f"  {len(estate.assets)} assets ({in_window} modified in the last {estate.lookback_days} days), "
            f"{len(estate.kb)} KnowledgeBase entries. Ctrl-C to stop.",
            flush=True,
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping")


if __name__ == "__main__":
    main()
