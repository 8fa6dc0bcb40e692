"""Locks that keep two syncs from writing the same output.

A sink's lock is held for a whole run; a heartbeat thread renews it, and a lock left by a
dead holder expires after ``LOCK_TTL_SECONDS``. The folder lock is a JSON lock file; the
Blob lock is a lease on a blob (:mod:`qualys.output.blob`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from qualys.errors import LockHeldError, SinkError

#: A crashed holder's lock is taken over after this long; live holders renew it every third of it.
LOCK_TTL_SECONDS = 60


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
            raise SinkError(f"Lost the output lock ({self.lost}).", "Check the storage account; the next run resumes.")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def hold_lock_file(lock_file: Path, location: str) -> Iterator[LockHandle]:
    """Hold ``lock_file`` (created exclusively, renewed by the heartbeat) for the duration of the context."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    _acquire(lock_file, token, location)
    handle = LockHandle(lambda: _renew(lock_file, token), LOCK_TTL_SECONDS / 3)
    try:
        yield handle
    finally:
        handle.stop()
        if _read_lock(lock_file).get("token") == token:
            with contextlib.suppress(FileNotFoundError):
                lock_file.unlink()


def _lock_body(token: str) -> bytes:
    return json.dumps(
        {"token": token, "pid": os.getpid(), "host": socket.gethostname(), "expires_at": time.time() + LOCK_TTL_SECONDS}
    ).encode()


def _acquire(lock_file: Path, token: str, location: str) -> None:
    for _ in range(3):
        try:
            fd = os.open(lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(lock_file)
            if not _lock_is_stale(holder):
                raise LockHeldError(
                    f"Another sync is writing to {location} (pid {holder.get('pid')} on {holder.get('host')}).",
                    f"Wait for it to finish; a lock left by a dead process expires within {LOCK_TTL_SECONDS} s.",
                ) from None
            # Move the stale lock aside atomically: of two contenders only one rename succeeds.
            with contextlib.suppress(FileNotFoundError):
                os.rename(lock_file, lock_file.with_name(f".stale-lock.{token}"))
                os.unlink(lock_file.with_name(f".stale-lock.{token}"))
            continue
        with os.fdopen(fd, "wb") as handle:
            handle.write(_lock_body(token))
        return
    raise LockHeldError(f"Could not take the lock on {location}.", "Retry in a minute.")


def _renew(lock_file: Path, token: str) -> None:
    if _read_lock(lock_file).get("token") != token:
        raise SinkError("the lock file was taken over")
    temp = lock_file.with_name(f".lock.{token}.tmp")
    temp.write_bytes(_lock_body(token))
    os.replace(temp, lock_file)


def _read_lock(lock_file: Path) -> dict[str, object]:
    try:
        value = json.loads(lock_file.read_bytes() or b"{}")
    except (FileNotFoundError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _lock_is_stale(holder: dict[str, object]) -> bool:
    expires = holder.get("expires_at")
    if not isinstance(expires, int | float):
        return True  # unreadable or half-written lock: only a crash leaves one
    if expires < time.time():
        return True
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True  # the holder died on this machine: no need to wait for expiry
        except PermissionError:
            return False
    return False
