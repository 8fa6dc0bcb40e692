"""The floor: the sync's HTTP requests on the best schedule Qualys's limits allow, bodies read and discarded.

``python -m bench.floor --plan plan.json`` (credentials and URL from ``QUALYS_API_URL``,
``QUALYS_USERNAME``, ``QUALYS_PASSWORD``, like the sync). Prints one JSON object on stdout.

Schedule, all started at t=0:

* hostasset chain (sequential by nature: page N+1 needs page N's ``lastId``): the same
  ``ServiceRequest`` the sync sends (:func:`qualys.api.qps.service_request`); page N+1 is
  requested on another connection the moment page N's ``<lastId>`` has arrived (it precedes
  ``<data>``), while page N is still being drained;
* one tag search for every tag id the in-window assets carry (known from the estate truth);
* KnowledgeBase: every distinct QID of the in-window assets (from the truth), 250 per POST,
  ``concurrency`` workers at a time (the ``/api/2.0/`` limit), alongside the chain.

``--partitions K`` (K > 1) splits the chain like ``QUALYS_ASSET_PARTITIONS=K`` does
(:mod:`qualys.api.partitions`): the same probe (one ``/count/am/hostasset``, then the asset at each
boundary rank, concurrently), then K chains at once, each bounded by ``id LESSER``.

``--probe N`` instead reads the first N pages of the chain one after the other and reports the
bytes/s the simulator delivers (the benchmark turns the server latency off for it).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import queue
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from qualys.api.hostasset_search import HOSTASSET_FIELDS, HOSTASSET_SEARCH_PATH, ID_FIELDS, search_criteria
from qualys.api.knowledge_base import KB_PATH
from qualys.api.partitions import HOSTASSET_COUNT_PATH, IdRange, boundary_ranks, ranges_from_bounds
from qualys.api.qps import Criterion, Fields, service_request
from qualys.api.tags import TAG_FIELDS, TAG_SEARCH_PATH

_LAST_ID = re.compile(rb"<lastId>\s*(\d+)\s*</lastId>")
_COUNT = re.compile(rb"<count>\s*(\d+)\s*</count>")
_FIRST_ASSET_ID = re.compile(rb"<HostAsset>\s*<id>\s*(\d+)\s*</id>")
_HEADER_SCAN_LIMIT = 8192
_CHUNK = 1 << 20
HeadCallback = Callable[[bytes], None]


#: As for the sync: QUALYS_LIMIT_FIELDS (default true) asks for only the fields the connector keeps.
LIMIT_FIELDS = os.environ.get("QUALYS_LIMIT_FIELDS", "true").strip().lower() in ("1", "true", "yes", "on")


def search_body(
    modified_after: str,
    limit: int,
    after_id: int | None,
    before_id: int | None = None,
    *,
    start_offset: int | None = None,
    fields: Fields | None = HOSTASSET_FIELDS,
) -> bytes:
    """The sync's own hostasset ``ServiceRequest`` body (with its ``fields`` while QUALYS_LIMIT_FIELDS is on)."""
    asked = fields if LIMIT_FIELDS else None
    return service_request(search_criteria(modified_after, after_id, before_id), limit, start_offset, asked)


@dataclass
class Plan:
    page_size: int
    lookback_days: int
    tag_ids: list[int]
    qids: list[int]
    kb_batch_size: int
    concurrency: int

    @classmethod
    def load(cls, path: str) -> Plan:
        with open(path, encoding="utf-8") as handle:
            raw: dict[str, Any] = json.load(handle)
        return cls(**raw)


class Floor:
    def __init__(self, url: str, username: str, password: str) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "X-Requested-With": "bench.floor", "User-Agent": "bench.floor"}
        self._local = threading.local()
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.retries = 0
        self.errors: list[str] = []
        self.spans: dict[str, list[float]] = {}  # endpoint -> [first start, last end] (seconds since t0)
        self.t0 = time.perf_counter()

    # ---- one request, every byte read
    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self._host, self._port, timeout=600)
        return conn

    def post(
        self,
        endpoint: str,
        path: str,
        body: bytes,
        content_type: str,
        on_head: HeadCallback | None = None,
        head_ends: tuple[bytes, ...] = (b"</lastId>", b"<data>", b"</ServiceResponse>"),
    ) -> int:
        """POST and drain; ``on_head(first bytes)`` once one of ``head_ends`` is in. Returns the status."""
        started = time.perf_counter() - self.t0
        conn = self._connection()
        conn.request("POST", path, body, {**self._headers, "Content-Type": content_type})
        response = conn.getresponse()
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        head = bytearray()
        total = 0
        while True:
            n = response.readinto(view)
            if not n:
                break
            total += n
            if on_head is not None and len(head) < _HEADER_SCAN_LIMIT:
                head += view[: min(n, _HEADER_SCAN_LIMIT)]
                if any(end in head for end in head_ends):
                    on_head(bytes(head))
                    on_head = None
        if on_head is not None:
            on_head(bytes(head))
        ended = time.perf_counter() - self.t0
        with self._lock:
            self.requests[endpoint] += 1
            self.bytes[endpoint] += total
            span = self.spans.setdefault(endpoint, [started, ended])
            span[0], span[1] = min(span[0], started), max(span[1], ended)
        return response.status

    # ---- the three streams
    def chain(self, modified_after: str, page_size: int, id_range: IdRange | None = None) -> int:
        """The hostasset keyset chain, each page requested as soon as the previous one's lastId is in."""
        first, below = (id_range.after, id_range.below) if id_range is not None else (None, None)
        pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="floor-page")
        futures: list[Future[None]] = []
        finished = threading.Event()
        pages = 0

        def page(after_id: int | None) -> None:
            nonlocal pages
            chained = False

            def head(first: bytes) -> None:
                nonlocal chained, pages
                found = _LAST_ID.search(first)
                with self._lock:
                    pages += 1
                    if b"<hasMoreRecords>true</hasMoreRecords>" in first and found is not None:
                        chained = True
                        futures.append(pool.submit(page, int(found.group(1))))

            try:
                body = search_body(modified_after, page_size, after_id, below)
                status = self.post("hostasset", HOSTASSET_SEARCH_PATH, body, "text/xml", head)
                if status != 200:
                    raise RuntimeError(f"hostasset page after id {after_id}: HTTP {status}")
            except Exception as exc:  # reported in the JSON; the chain ends here
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                finished.set()
                return
            if not chained:
                finished.set()

        with self._lock:
            futures.append(pool.submit(page, first))
        finished.wait()
        with self._lock:
            pending = list(futures)
        for future in pending:
            future.result()
        pool.shutdown()
        return pages

    def split(self, modified_after: str, page_size: int, partitions: int) -> list[IdRange]:
        """The sync's partition probe: count the window, then fetch the asset at each boundary rank at once."""
        seen: list[bytes] = []

        def keep(first: bytes) -> None:
            seen.append(first)

        body = search_body(modified_after, 1, None, fields=None)
        if self.post("count", HOSTASSET_COUNT_PATH, body, "text/xml", keep) != 200 or not (found := _COUNT.search(seen[0])):
            raise RuntimeError("count request failed")
        ranks = boundary_ranks(int(found.group(1)), partitions, page_size)
        if not ranks:
            return [IdRange()]

        def at(rank: int) -> int:
            heads: list[bytes] = []
            request = search_body(modified_after, 1, None, start_offset=rank, fields=ID_FIELDS)
            status = self.post("hostasset", HOSTASSET_SEARCH_PATH, request, "text/xml", heads.append, (b"</id>",))
            hit = _FIRST_ASSET_ID.search(heads[0]) if status == 200 and heads else None
            if hit is None:
                raise RuntimeError(f"boundary search at rank {rank} failed (HTTP {status})")
            return int(hit.group(1))

        with ThreadPoolExecutor(max_workers=len(ranks)) as pool:
            return ranges_from_bounds(list(pool.map(at, ranks)))

    def chains(self, modified_after: str, page_size: int, partitions: int) -> int:
        """The keyset chain, or with ``partitions`` > 1 the probe and then one chain per id range at once."""
        if partitions <= 1:
            return self.chain(modified_after, page_size)
        ranges = self.split(modified_after, page_size, partitions)
        with ThreadPoolExecutor(max_workers=len(ranges), thread_name_prefix="floor-range") as pool:
            return sum(pool.map(lambda r: self.chain(modified_after, page_size, r), ranges))

    def probe(self, modified_after: str, page_size: int, pages: int) -> int:
        """The first ``pages`` pages strictly one after the other (no overlap); returns how many."""
        after_id: int | None = None
        last: list[int | None] = [None]
        done = 0

        def head(first: bytes) -> None:
            found = _LAST_ID.search(first)
            last[0] = int(found.group(1)) if found is not None else None

        while done < pages:
            body = search_body(modified_after, page_size, after_id)
            status = self.post("hostasset", HOSTASSET_SEARCH_PATH, body, "text/xml", head)
            if status != 200:
                self.errors.append(f"probe page after id {after_id}: HTTP {status}")
                break
            done += 1
            if last[0] is None:
                break
            after_id = last[0]
        return done

    def tags(self, tag_ids: list[int]) -> None:
        if not tag_ids:
            return
        ids = ",".join(map(str, sorted(tag_ids)))
        body = service_request([Criterion("id", "IN", ids)], len(tag_ids), fields=TAG_FIELDS if LIMIT_FIELDS else None)
        status = self.post("tag", TAG_SEARCH_PATH, body, "text/xml")
        if status != 200:
            self.errors.append(f"tag search: HTTP {status}")

    def knowledge_base(self, batches: queue.SimpleQueue[list[int]]) -> None:
        while True:
            try:
                batch = batches.get_nowait()
            except queue.Empty:
                return
            form = urlencode({"action": "list", "details": "Basic", "ids": ",".join(map(str, batch))}).encode()
            for _ in range(100):
                status = self.post("kb", KB_PATH, form, "application/x-www-form-urlencoded")
                if status != 409:
                    break
                # The server frees a slot just after the last byte; a worker can be a hair faster.
                with self._lock:
                    self.retries += 1
                time.sleep(0.005)
            if status != 200:
                with self._lock:
                    self.errors.append(f"KnowledgeBase batch at {batch[0]}: HTTP {status}")


def _cutoff(lookback_days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=lookback_days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_floor(floor: Floor, plan: Plan, partitions: int = 1) -> dict[str, object]:
    batches: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
    qids = sorted(set(plan.qids))
    for start in range(0, len(qids), plan.kb_batch_size):
        batches.put(qids[start : start + plan.kb_batch_size])
    workers = [threading.Thread(target=floor.tags, args=(plan.tag_ids,), name="floor-tag")]
    workers += [
        threading.Thread(target=floor.knowledge_base, args=(batches,), name=f"floor-kb-{n}")
        for n in range(max(1, plan.concurrency))
    ]
    for worker in workers:
        worker.start()
    try:
        pages = floor.chains(_cutoff(plan.lookback_days), plan.page_size, partitions)
    except RuntimeError as exc:
        floor.errors.append(str(exc))
        pages = 0
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - floor.t0
    return {
        "wall_seconds": round(wall, 3),
        "pages": pages,
        "requests": dict(floor.requests),
        "bytes": dict(floor.bytes),
        "retries": floor.retries,
        "spans": {k: [round(v[0], 3), round(v[1], 3)] for k, v in floor.spans.items()},
        "errors": floor.errors,
    }


def run_probe(floor: Floor, plan: Plan, pages: int) -> dict[str, object]:
    started = time.perf_counter()
    done = floor.probe(_cutoff(plan.lookback_days), plan.page_size, pages)
    seconds = time.perf_counter() - started
    total = sum(floor.bytes.values())
    return {"pages": done, "bytes": total, "seconds": round(seconds, 4), "errors": floor.errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--plan", required=True, help="JSON written by bench.run")
    parser.add_argument("--partitions", type=int, default=1, help="id ranges pulled at once (QUALYS_ASSET_PARTITIONS)")
    parser.add_argument("--probe", type=int, default=0, help="only read this many pages back to back (throughput)")
    args = parser.parse_args(argv)
    plan = Plan.load(args.plan)
    floor = Floor(os.environ["QUALYS_API_URL"], os.environ["QUALYS_USERNAME"], os.environ["QUALYS_PASSWORD"])
    result = run_probe(floor, plan, args.probe) if args.probe else run_floor(floor, plan, args.partitions)
    print(json.dumps(result))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
