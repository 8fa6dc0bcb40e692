"""The connector's own bookkeeping, kept next to the output under ``state/``.

The checkpoint of an unfinished run, the lock that keeps a second sync out, and the
KnowledgeBase cache. Nothing here is output: readers of the output contract never need it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from qualys.output.lock import LockHandle
from qualys.output.sink import NDJSON, Sink, read_json, read_lines, write_json
from qualys.sync.checkpoint import CHECKPOINT_PATH, Checkpoint

STATE_DIR = "state/"
LOCK_PATH = STATE_DIR + "lock"


class RunState:
    """Files under ``state/`` in the output location; names given to its methods are relative to ``state/``."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def lock(self) -> contextlib.AbstractContextManager[LockHandle]:
        """Held for a whole run: a second sync on the same output is refused with a clear message."""
        return self._sink.lock(LOCK_PATH)

    def checkpoint(self) -> Checkpoint | None:
        saved = read_json(self._sink, CHECKPOINT_PATH)
        return Checkpoint.from_dict(saved) if saved is not None else None

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        write_json(self._sink, CHECKPOINT_PATH, checkpoint.to_dict())

    def clear_checkpoint(self) -> None:
        self._sink.delete(CHECKPOINT_PATH)

    def list(self, folder: str) -> list[str]:
        """Names (relative to ``state/``) of the files in ``folder``."""
        return [path.removeprefix(STATE_DIR) for path in self._sink.list(STATE_DIR + folder)]

    def read_lines(self, name: str) -> Iterator[bytes]:
        return read_lines(self._sink, STATE_DIR + name)

    def write_lines(self, name: str, chunks: Iterable[bytes]) -> None:
        self._sink.write_chunks(STATE_DIR + name, chunks, NDJSON)

    def read_json(self, name: str) -> dict[str, object] | None:
        return read_json(self._sink, STATE_DIR + name)

    def write_json(self, name: str, value: object) -> None:
        write_json(self._sink, STATE_DIR + name, value)

    def delete(self, name: str) -> None:
        self._sink.delete(STATE_DIR + name)

    def uri(self, name: str) -> str:
        return self._sink.uri(STATE_DIR + name)
