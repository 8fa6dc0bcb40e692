"""Where output goes: a local folder or an Azure Blob container, behind one interface.

Both keep the same relative paths. Every write is whole or nothing: a temp
file renamed into place locally, a single committed upload (or block list) in
Blob Storage. Writes and reads can stream in chunks, so a large part or cache
file never has to sit in memory whole.
A lock (a lock file, or a lease on a lock blob) keeps two syncs from writing
the same output; a lock left by a dead process expires after ``LOCK_TTL_SECONDS``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from qualys.errors import LockHeldError, SinkError

LOCK_PATH = "state/lock"
#: A crashed holder's lock is taken over after this long; live holders renew it every third of it.
LOCK_TTL_SECONDS = 60
JSON = "application/json"
#: Chunk size of streamed reads.
READ_CHUNK_BYTES = 1 << 16
#: Buffer of streamed local writes.
WRITE_BUFFER_BYTES = 1 << 18


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


class Sink(Protocol):
    location: str

    def write(self, path: str, data: bytes, content_type: str = JSON) -> None: ...
    def write_chunks(self, path: str, chunks: Iterable[bytes], content_type: str = JSON) -> None:
        """Write the concatenation of ``chunks``, whole or nothing, holding only a bounded part of it."""
        ...
    def read(self, path: str) -> bytes | None: ...
    def read_chunks(self, path: str) -> Iterator[bytes]:
        """The content in chunks; nothing for a missing path."""
        ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, path: str) -> None: ...
    def uri(self, path: str) -> str: ...
    def lock(self) -> contextlib.AbstractContextManager[LockHandle]: ...


def read_json(sink: Sink, path: str) -> dict[str, object] | None:
    data = sink.read(path)
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise SinkError(f"{sink.uri(path)} is not valid JSON.", "Delete or repair it; it is connector state.") from exc
    if not isinstance(value, dict):
        raise SinkError(f"{sink.uri(path)} is not a JSON object.", "Delete or repair it; it is connector state.")
    return value


def write_json(sink: Sink, path: str, value: object) -> None:
    sink.write(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode())


def read_lines(sink: Sink, path: str) -> Iterator[bytes]:
    """The lines of a text file in the sink, without their line ends, streamed."""
    rest = b""
    for chunk in sink.read_chunks(path):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


class LocalSink:
    """A folder on disk."""

    def __init__(self, directory: str | Path) -> None:
        self.root = Path(directory).resolve()
        self.location = f"folder {self.root}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"Cannot create output folder {self.root}: {exc.strerror}.", "Check OUTPUT_DIR.") from exc

    def _path(self, path: str) -> Path:
        target = (self.root / path).resolve()
        if self.root not in target.parents:
            raise SinkError(f"Refusing to write outside the output folder: {path!r}.")
        return target

    def uri(self, path: str) -> str:
        return str(self._path(path))

    def write(self, path: str, data: bytes, content_type: str = JSON) -> None:
        self.write_chunks(path, (data,), content_type)

    def write_chunks(self, path: str, chunks: Iterable[bytes], content_type: str = JSON) -> None:
        target = self._path(path)
        temp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # A large buffer: each flush releases the GIL, and a sync writing a part as ~200 small
            # chunks lost the GIL to its page-parsing threads for a switch interval each time.
            with open(temp, "wb", buffering=WRITE_BUFFER_BYTES) as handle:
                for chunk in chunks:
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            raise SinkError(f"Cannot write {target}: {exc.strerror}.", "Check free space and permissions.") from exc
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()  # only left when the write failed: it was renamed otherwise

    def read(self, path: str) -> bytes | None:
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SinkError(f"Cannot read {self._path(path)}: {exc.strerror}.") from exc

    def read_chunks(self, path: str) -> Iterator[bytes]:
        target = self._path(path)
        try:
            with open(target, "rb") as handle:
                while chunk := handle.read(READ_CHUNK_BYTES):
                    yield chunk
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SinkError(f"Cannot read {target}: {exc.strerror}.") from exc

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix.strip("/") else self.root
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.endswith(".tmp")
        )

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(path).unlink()

    @contextlib.contextmanager
    def lock(self) -> Iterator[LockHandle]:
        lock_file = self._path(LOCK_PATH)
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        self._acquire(lock_file, token)
        handle = LockHandle(lambda: self._renew(lock_file, token), LOCK_TTL_SECONDS / 3)
        try:
            yield handle
        finally:
            handle.stop()
            if _read_lock(lock_file).get("token") == token:
                with contextlib.suppress(FileNotFoundError):
                    lock_file.unlink()

    def _lock_body(self, token: str) -> bytes:
        return json.dumps(
            {"token": token, "pid": os.getpid(), "host": socket.gethostname(),
             "expires_at": time.time() + LOCK_TTL_SECONDS}
        ).encode()

    def _acquire(self, lock_file: Path, token: str) -> None:
        for _ in range(3):
            try:
                fd = os.open(lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(lock_file)
                if not _lock_is_stale(holder):
                    raise LockHeldError(
                        f"Another sync is writing to {self.location} (pid {holder.get('pid')} on "
                        f"{holder.get('host')}).",
                        f"Wait for it to finish; a lock left by a dead process expires within {LOCK_TTL_SECONDS} s.",
                    ) from None
                # Move the stale lock aside atomically: of two contenders only one rename succeeds.
                with contextlib.suppress(FileNotFoundError):
                    os.rename(lock_file, lock_file.with_name(f".stale-lock.{token}"))
                    os.unlink(lock_file.with_name(f".stale-lock.{token}"))
                continue
            with os.fdopen(fd, "wb") as handle:
                handle.write(self._lock_body(token))
            return
        raise LockHeldError(f"Could not take the lock on {self.location}.", "Retry in a minute.")

    def _renew(self, lock_file: Path, token: str) -> None:
        if _read_lock(lock_file).get("token") != token:
            raise SinkError("the lock file was taken over")
        temp = lock_file.with_name(f".lock.{token}.tmp")
        temp.write_bytes(self._lock_body(token))
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


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
