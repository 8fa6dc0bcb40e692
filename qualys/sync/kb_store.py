"""KnowledgeBase entries cached across runs, in ``state/kb/``.

Entries are appended as small JSON Lines shards, one per batch stored, so a killed run keeps
what it fetched; a complete run compacts them into one file. ``state/kb-refresh.json``
remembers when the cache was last brought up to date, so the next run asks Qualys only for
QIDs changed since then.
"""

from __future__ import annotations

from collections.abc import Iterator

from qualys.api.knowledge_base import KbEntry
from qualys.errors import SinkError
from qualys.sync.state import RunState

KB_FOLDER = "kb/"
#: Name ending of the one file a compaction leaves (it sorts after the run's own shards).
COMPACTED_SUFFIX = "-zz-all.jsonl"
REFRESH_NAME = "kb-refresh.json"


class KnowledgeBaseStore:
    """The cache's files; ``run_tag`` names this run's shards (run id and resume count)."""

    def __init__(self, state: RunState, run_tag: str) -> None:
        self._state = state
        self._run_tag = run_tag
        self._shard = 0

    def entries(self) -> Iterator[KbEntry]:
        """Every cached entry, streamed, oldest shard first: a QID's last entry is its latest."""
        for _, _, entry in self._read_shards(self._shard_names()):
            yield entry

    def save(self, entries: list[KbEntry]) -> None:
        """Append ``entries`` as one shard."""
        if not entries:
            return
        self._shard += 1
        self._state.write_lines(
            f"{KB_FOLDER}{self._run_tag}-{self._shard:05d}.jsonl", ((entry.to_json() + "\n").encode() for entry in entries)
        )

    def refreshed_at(self) -> str | None:
        """When the cache was last brought up to date (a run's start), if ever."""
        stamp = self._state.read_json(REFRESH_NAME)
        since = stamp.get("refreshed_at") if stamp else None
        return since if isinstance(since, str) else None

    def compact(self, refreshed_at: str) -> None:
        """One file for everything, then drop the shards; stamp the refresh time.

        Later shards win, as in :meth:`entries`. Two streamed passes (which shard holds each QID's
        last entry, then those lines), so the cache is never in memory whole. A cache that is one
        compacted file already (a run that fetched no entry) is not rewritten.
        """
        names = self._shard_names()
        if len(names) > 1 or not all(name.endswith(COMPACTED_SUFFIX) for name in names):
            self._merge(names)
        self._state.write_json(REFRESH_NAME, {"refreshed_at": refreshed_at})

    def _shard_names(self) -> list[str]:
        return [name for name in self._state.list(KB_FOLDER) if name.endswith(".jsonl")]

    def _read_shards(self, names: list[str]) -> Iterator[tuple[int, str, KbEntry]]:
        """(shard index, line, entry) for every entry of the shards, streamed line by line."""
        for index, name in enumerate(names):
            for number, raw in enumerate(self._state.read_lines(name), 1):
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                    entry = KbEntry.from_json(line)
                except (ValueError, TypeError) as exc:
                    raise SinkError(
                        f"KnowledgeBase cache {self._state.uri(name)} line {number} is damaged.",
                        "Delete the state/kb/ folder; the next run fetches the entries again.",
                    ) from exc
                yield index, line, entry

    def _merge(self, names: list[str]) -> None:
        winner = {entry.qid: index for index, _, entry in self._read_shards(names)}
        target = f"{KB_FOLDER}{self._run_tag}{COMPACTED_SUFFIX}"
        self._state.write_lines(
            target, ((line + "\n").encode() for index, line, entry in self._read_shards(names) if winner[entry.qid] == index)
        )
        for name in names:
            if name != target:
                self._state.delete(name)
