"""Where output goes: a local folder or an Azure Blob container, behind one interface.

Both keep the same relative paths. Every write is whole or nothing (a temp file renamed into
place locally; one committed upload, or block list, in Blob Storage), and writes and reads can
stream in chunks, so a large file never has to sit in memory whole. Each sink also offers a
lock (a lock file, or a lease on a lock blob) so two syncs never write the same output.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from qualys.errors import SinkError

if TYPE_CHECKING:
    from qualys.config.settings import OutputTarget
    from qualys.output.lock import LockHandle

JSON = "application/json"
NDJSON = "application/x-ndjson"


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
    def lock(self, path: str) -> contextlib.AbstractContextManager[LockHandle]:
        """Hold the lock ``path`` while the context runs; raises LockHeldError when another holder has it."""
        ...


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


def open_sink(output: OutputTarget) -> Sink:
    """The sink an output setting names: a folder, or a Blob container reached with the Azure identity."""
    from qualys.config.settings import LocalOutput

    if isinstance(output, LocalOutput):
        from qualys.output.folder import FolderSink

        return FolderSink(output.directory)
    from qualys.output.blob import BlobSink

    return BlobSink.from_settings(output)
