"""A local folder as the output location (``OUTPUT_DIR``, ``--output-dir``)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from qualys.errors import SinkError
from qualys.output.lock import LockHandle, hold_lock_file
from qualys.output.sink import JSON

#: Chunk size of streamed reads.
READ_CHUNK_BYTES = 1 << 16
#: Buffer of streamed local writes.
WRITE_BUFFER_BYTES = 1 << 18


class FolderSink:
    """A folder on disk; every file is written to a temporary name, flushed to disk, then renamed into place."""

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

    def lock(self, path: str) -> contextlib.AbstractContextManager[LockHandle]:
        return hold_lock_file(self._path(path), self.location)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
