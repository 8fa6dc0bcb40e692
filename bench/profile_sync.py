"""``python -m bench.profile_sync OUT.prof sync ...``: ``python -m qualys`` under cProfile, in every thread.

``python -m cProfile`` profiles the main thread only, while the sync fetches and parses
pages in worker threads. Here every :class:`threading.Thread` gets its own profiler and the
profiles are merged into ``OUT.prof``.

Clock (``BENCH_PROFILE_CLOCK``): ``wall`` (default, cProfile's own ``perf_counter``: cheap, but
a thread's time includes its waits for the GIL, the network and locks) or ``cpu``
(:func:`time.thread_time`: CPU seconds of the thread only, exact, but each reading is a
system call, which makes a call-heavy run several times slower).
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import pstats
import sys
import threading
import time
from collections.abc import Callable

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _make_profile() -> cProfile.Profile:
    if os.environ.get("BENCH_PROFILE_CLOCK", "wall") == "cpu":
        return cProfile.Profile(time.thread_time)
    return cProfile.Profile()


def _new_profile() -> cProfile.Profile:
    profile = _make_profile()
    with _lock:
        _profiles.append(profile)
    return profile


def _profiled(run: Callable[[threading.Thread], None]) -> Callable[[threading.Thread], None]:
    def profiled_run(self: threading.Thread) -> None:
        profile = _new_profile()
        profile.enable()
        try:
            run(self)
        finally:
            profile.disable()

    return profiled_run


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m bench.profile_sync OUT.prof sync [options]", file=sys.stderr)
        return 2
    out, args = argv[0], argv[1:]
    setattr(threading.Thread, "run", _profiled(threading.Thread.run))  # noqa: B010 - patch the class
    from qualys.cli.main import main as qualys_main

    profile = _make_profile()
    profile.enable()
    try:
        code = qualys_main(args)
    finally:
        profile.disable()
        stats = pstats.Stats(profile)
        with _lock:
            others = list(_profiles)
        for other in others:
            with contextlib.suppress(TypeError):  # a thread that ran no Python code has no stats
                stats.add(other)
        stats.dump_stats(out)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
