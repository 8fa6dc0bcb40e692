"""Benchmark of ``python -m qualys sync`` against the physical floor; run ``python -m bench.run``."""
