"""KnowledgeBase entries cached in the sink (``state/kb/``) across runs.

Entries are appended as small JSON Lines shards, one per KnowledgeBase batch,
so a killed run keeps what it fetched; a complete run compacts them into one
file. ``state/kb-refresh.json`` remembers when the cache was last brought up to
date, so the next run asks Qualys only for QIDs changed since then.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from qualys.api.client import QualysClient
from qualys.api.knowledge_base import KB_BATCH_SIZE, KbEntry, batched, fetch_changed_since, fetch_entries
from qualys.errors import SinkError
from qualys.output.folder import Sink, read_json, read_lines, write_json
from qualys.sync.records import kb_fragment

log = logging.getLogger(__name__)

KB_DIR = "state/kb/"
#: Name ending of the one file a compaction leaves (it sorts after the run's own shards).
COMPACTED_SUFFIX = "-zz-all.jsonl"
#: Upper bound of KnowledgeBase calls in flight; the client's limiter enforces Qualys's actual limit.
KB_PARALLEL_BATCHES = 4
REFRESH_PATH = "state/kb-refresh.json"


class KnowledgeBaseCache:
    def __init__(self, sink: Sink, run_id: str, batch_size: int = KB_BATCH_SIZE) -> None:
        self._sink = sink
        self._run_id = run_id
        self._batch_size = batch_size
        #: QID -> the KB members of its finding records, rendered (see normalize.kb_fragment).
        self._fragments: dict[int, str] = {}
        self._pending: dict[int, None] = {}  # QIDs seen on pages but not requested yet, in first-seen order
        self._in_flight: list[tuple[list[int], Future[list[KbEntry]]]] = []  # requested, not stored yet
        self._requested: set[int] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._shard = 0
        self.fetched = 0

    @property
    def fragments(self) -> Mapping[int, str]:
        return self._fragments

    def load(self) -> None:
        """Read every shard; later shards (sorted by run id) override earlier ones."""
        for _, _, entry in self._read_shards(self._shard_paths()):
            self._fragments[entry.qid] = kb_fragment(entry)

    def _shard_paths(self) -> list[str]:
        return [path for path in self._sink.list(KB_DIR) if path.endswith(".jsonl")]

    def _read_shards(self, paths: list[str]) -> Iterator[tuple[int, str, KbEntry]]:
        """(shard index, line, entry) for every entry of the shards, streamed line by line."""
        for index, path in enumerate(paths):
            for number, raw in enumerate(read_lines(self._sink, path), 1):
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                    entry = KbEntry.from_json(line)
                except (ValueError, TypeError) as exc:
                    raise SinkError(
                        f"KnowledgeBase cache {self._sink.uri(path)} line {number} is damaged.",
                        "Delete the state/kb/ folder; the next run fetches the entries again.",
                    ) from exc
                yield index, line, entry

    def _store(self, entries: list[KbEntry]) -> None:
        if not entries:
            return
        self.fetched += len(entries)
        self._shard += 1
        body = "".join(entry.to_json() + "\n" for entry in entries).encode()
        self._sink.write(f"{KB_DIR}{self._run_id}-{self._shard:05d}.jsonl", body, "application/x-ndjson")
        for entry in entries:
            self._fragments[entry.qid] = kb_fragment(entry)

    @property
    def has_pending(self) -> bool:
        """QIDs seen on pages whose entries are not stored yet (queued or in flight)."""
        return bool(self._pending or self._in_flight)

    def queue(self, client: QualysClient, qids: Iterable[int]) -> None:
        """Note QIDs the cache lacks; request them in the background as soon as they fill whole batches.

        A partial batch waits for the next pages' QIDs (see :meth:`flush`), so a run
        makes one request per full batch of new QIDs instead of one per page. Requests
        run on worker threads while the caller goes on reading pages; their entries are
        stored by the caller's thread, in :meth:`poll` and :meth:`flush`.
        """
        for qid in qids:
            if qid not in self._fragments and qid not in self._requested:
                self._pending.setdefault(qid, None)
        full = len(self._pending) // self._batch_size * self._batch_size
        if full:
            self._request(client, list(self._pending)[:full])
        self.poll()

    def poll(self) -> None:
        """Store the entries of finished requests without waiting for the others."""
        self._collect(wait=False)

    def flush(self, client: QualysClient) -> None:
        """Request whatever is still queued (at most one partial batch) and wait for every request."""
        if self._pending:
            self._request(client, list(self._pending))
        self._collect(wait=True)

    def close(self) -> None:
        """Stop the worker threads; requests not started are cancelled (a failed run needs none)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _request(self, client: QualysClient, qids: list[int]) -> None:
        if self._pool is None:
            # The client's limiter holds the calls to Qualys's X-Concurrency-Limit-Limit.
            self._pool = ThreadPoolExecutor(max_workers=KB_PARALLEL_BATCHES, thread_name_prefix="qualys-kb")
        for batch in batched(sorted(qids), self._batch_size):
            self._in_flight.append((list(batch), self._pool.submit(fetch_entries, client, batch)))
        self._requested.update(qids)
        # Rebuilt, not emptied in place: a dict or set keeps the table of its largest size (thousands of QIDs).
        self._pending = {qid: None for qid in self._pending if qid not in self._requested}

    def _collect(self, wait: bool) -> None:
        still: list[tuple[list[int], Future[list[KbEntry]]]] = []
        for batch, future in self._in_flight:
            if wait or future.done():
                self._store(future.result())  # a failed request raises its typed error here
                self._requested.difference_update(batch)
                if not self._requested:
                    self._requested = set()  # rebuilt, for the same reason as _pending
            else:
                still.append((batch, future))
        self._in_flight = still

    def refresh(self, client: QualysClient) -> int:
        """Apply KnowledgeBase changes since the last refresh to the cached QIDs; returns how many changed."""
        stamp = read_json(self._sink, REFRESH_PATH)
        since = stamp.get("refreshed_at") if stamp else None
        if not self._fragments or not isinstance(since, str):
            return 0
        changed = [entry for entry in fetch_changed_since(client, since) if entry.qid in self._fragments]
        self._store(changed)
        log.info("KnowledgeBase: %d cached QIDs changed since %s", len(changed), since)
        return len(changed)

    def compact(self, refreshed_at: str) -> None:
        """One file for everything, then drop the shards; stamp the refresh time.

        Merged from the shards on disk (this run's included), later ones winning as in :meth:`load`:
        the cache keeps only rendered fragments in memory, not whole entries. Two streamed passes
        (which shard holds each QID's last entry, then those lines), so the cache is never in memory whole.
        A cache that is one compacted file already (a run that fetched no entry) is not rewritten.
        """
        paths = self._shard_paths()
        if len(paths) > 1 or not all(path.endswith(COMPACTED_SUFFIX) for path in paths):
            self._merge(paths)
        write_json(self._sink, REFRESH_PATH, {"refreshed_at": refreshed_at})

    def _merge(self, paths: list[str]) -> None:
        winner = {entry.qid: index for index, _, entry in self._read_shards(paths)}
        target = f"{KB_DIR}{self._run_id}{COMPACTED_SUFFIX}"
        self._sink.write_chunks(
            target,
            ((line + "\n").encode() for index, line, entry in self._read_shards(paths) if winner[entry.qid] == index),
            "application/x-ndjson",
        )
        for path in paths:
            if path != target:
                self._sink.delete(path)
