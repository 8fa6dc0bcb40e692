"""KnowledgeBase entries cached in the sink (``state/kb/``) across runs.

Entries are appended as small JSON Lines shards, one per KnowledgeBase batch,
so a killed run keeps what it fetched; a complete run compacts them into one
file. ``state/kb-refresh.json`` remembers when the cache was last brought up to
date, so the next run asks Qualys only for QIDs changed since then.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

from qualys.client import QualysClient
from qualys.errors import SinkError
from qualys.knowledge_base import KB_BATCH_SIZE, KbEntry, batched, fetch_changed_since, fetch_entries
from qualys.sinks import Sink, read_json, write_json

log = logging.getLogger(__name__)

KB_DIR = "state/kb/"
#: Upper bound of KnowledgeBase calls in flight; the client's limiter enforces Qualys's actual limit.
KB_PARALLEL_BATCHES = 4
REFRESH_PATH = "state/kb-refresh.json"


class KnowledgeBaseCache:
    def __init__(self, sink: Sink, run_id: str, batch_size: int = KB_BATCH_SIZE) -> None:
        self._sink = sink
        self._run_id = run_id
        self._batch_size = batch_size
        self._entries: dict[int, KbEntry] = {}
        self._pending: dict[int, None] = {}  # QIDs seen on pages but not fetched yet, in first-seen order
        self._shard = 0
        self.fetched = 0

    @property
    def entries(self) -> Mapping[int, KbEntry]:
        return self._entries

    def load(self) -> None:
        """Read every shard; later shards (sorted by run id) override earlier ones."""
        for path in self._sink.list(KB_DIR):
            if not path.endswith(".jsonl"):
                continue
            data = self._sink.read(path) or b""
            for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    entry = KbEntry.from_json(line)
                except (ValueError, TypeError) as exc:
                    raise SinkError(
                        f"KnowledgeBase cache {self._sink.uri(path)} line {number} is damaged.",
                        "Delete the state/kb/ folder; the next run fetches the entries again.",
                    ) from exc
                self._entries[entry.qid] = entry

    def _store(self, entries: list[KbEntry]) -> None:
        if not entries:
            return
        self.fetched += len(entries)
        self._shard += 1
        body = "".join(entry.to_json() + "\n" for entry in entries).encode()
        self._sink.write(f"{KB_DIR}{self._run_id}-{self._shard:05d}.jsonl", body, "application/x-ndjson")
        for entry in entries:
            self._entries[entry.qid] = entry

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def queue(self, client: QualysClient, qids: Iterable[int]) -> None:
        """Note QIDs the cache lacks; fetch them as soon as they fill whole batches.

        A partial batch waits for the next pages' QIDs (see :meth:`flush`), so a run
        makes one request per full batch of new QIDs instead of one per page.
        """
        for qid in qids:
            if qid not in self._entries:
                self._pending.setdefault(qid, None)
        full = len(self._pending) // self._batch_size * self._batch_size
        if full:
            self._fetch(client, list(self._pending)[:full])

    def flush(self, client: QualysClient) -> None:
        """Fetch whatever is still pending (at most one partial batch)."""
        if self._pending:
            self._fetch(client, list(self._pending))

    def _fetch(self, client: QualysClient, qids: list[int]) -> None:
        batches = list(batched(sorted(qids), self._batch_size))
        if len(batches) == 1:
            self._store(fetch_entries(client, batches[0]))
        else:
            # Several batches: run them side by side; the client caps them at X-Concurrency-Limit-Limit.
            with ThreadPoolExecutor(max_workers=KB_PARALLEL_BATCHES, thread_name_prefix="qualys-kb") as pool:
                for entries in pool.map(lambda batch: fetch_entries(client, batch), batches):
                    self._store(entries)
        for qid in qids:
            self._pending.pop(qid, None)

    def refresh(self, client: QualysClient) -> int:
        """Apply KnowledgeBase changes since the last refresh to the cached QIDs; returns how many changed."""
        stamp = read_json(self._sink, REFRESH_PATH)
        since = stamp.get("refreshed_at") if stamp else None
        if not self._entries or not isinstance(since, str):
            return 0
        changed = [entry for entry in fetch_changed_since(client, since) if entry.qid in self._entries]
        self._store(changed)
        log.info("KnowledgeBase: %d cached QIDs changed since %s", len(changed), since)
        return len(changed)

    def compact(self, refreshed_at: str) -> None:
        """One file for everything, then drop the shards; stamp the refresh time."""
        paths = [p for p in self._sink.list(KB_DIR) if p.endswith(".jsonl")]
        body = "".join(entry.to_json() + "\n" for entry in self._entries.values()).encode()
        target = f"{KB_DIR}{self._run_id}-zz-all.jsonl"
        self._sink.write(target, body, "application/x-ndjson")
        write_json(self._sink, REFRESH_PATH, {"refreshed_at": refreshed_at})
        for path in paths:
            if path != target:
                self._sink.delete(path)
