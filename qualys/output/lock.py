"""Locks that keep two syncs from writing the same output.

A sink's lock is held for a whole run. The folder lock is an advisory lock the operating system
holds for the process (``flock``): it ends the moment the process does, so a killed run never
blocks the next one on the same machine, and two live syncs still exclude each other. The Blob
lock is a lease on a blob (:mod:`qualys.output.blob`): Blob Storage cannot tell a dead holder on
another machine from a live one, so a lease left by a killed run expires after ``LOCK_TTL_SECONDS``;
live holders renew it from a heartbeat thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from qualys.errors import LockHeldError, SinkError

#: A lease left by a dead holder is taken over after this long; live holders renew it every third of it.
LOCK_TTL_SECONDS = 60
#: How often the folder lock checks that its file is still the one it locked.
FOLDER_LOCK_CHECK_SECONDS = 20


class LockHandle:
    """Held while a sync runs; a heartbeat thread keeps it alive."""

    def __init__(self, renew: Callable[[], None], interval: float) -> None:
        self._renew = renew
        self._interval = interval
        self._stop = threading.Event()
        self.lost: str | None = None
        self._thread = threading.Thread(target=self._beat, name="qualys-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._renew()
            except Exception as exc:  # any failure means we may have lost the lock
                self.lost = f"{type(exc).__name__}: {exc}"[:200]
                return

    def check(self) -> None:
        """Raise when the lock could not be renewed: another sync may now own the output."""
        if self.lost:
            raise SinkError(
                f"Lost the output lock ({self.lost}): another sync may now write to the output.",
                "Check the output location (folder or storage account); the next run resumes.",
            )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def hold_lock_file(lock_file: Path, location: str) -> Iterator[LockHandle]:
    """Hold an advisory lock on ``lock_file`` for the duration of the context.

    The file stays in place when the lock is released: removing it would let a process that opened
    the old file and one that creates a new one both believe they hold the lock.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            holder = _holder(fd)
            raise LockHeldError(
                f"Another sync is writing to {location} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
                f"since {holder.get('since', '?')}).",
                "Wait for it to finish; its lock ends the moment that process ends, so a crashed run never blocks this one.",
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}).encode())
        handle = LockHandle(lambda: _check_still_locked(fd, lock_file), FOLDER_LOCK_CHECK_SECONDS)
        try:
            yield handle
        finally:
            handle.stop()
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # nobody holds it now; the lock itself ends with close()
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    """Take the advisory lock without waiting; False when another open file holds it."""
    if sys.platform == "win32":  # a lock on the file's first byte, also released when the process ends
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(fd: int) -> dict[str, object]:
    """Who holds the lock, as it wrote itself into the file (empty while it is still writing)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        value = json.loads(os.read(fd, 4096) or b"{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _check_still_locked(fd: int, lock_file: Path) -> None:
    """The lock only protects the output while its file is the one in place (not deleted or replaced)."""
    try:
        in_place = os.stat(lock_file).st_ino
    except FileNotFoundError:
        in_place = None
    if os.fstat(fd).st_ino != in_place:
        raise SinkError("the lock file was removed or replaced")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
