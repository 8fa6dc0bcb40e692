"""Rendered response bodies cached on disk, so a benchmark measures the client, not the simulator.

A hostasset page of agent hosts is ~100 KB per asset: rendering 20,000 assets costs seconds
of CPU in the process that also serves them. :class:`PageCache` renders each body once into
``<directory>/hostasset/`` (or ``kb/``) and the server streams it from disk with
``sendfile``, so nothing large is ever held in memory.

Keys are hashes of what determines the bytes, never of the request that asked for them:

* hostasset page: per asset ``(id, modified, kind, number of findings, last finding's
  hostInstanceVulnId)``, plus ``hasMoreRecords``, ``lastId`` and the tag names. A request's
  ``updated`` bound only matters through the assets it matched, so two windows that match the
  same assets share a page. :meth:`~qualys_simulator.estate.Estate.touch` changes ``modified`` and adds a
  finding, so a touched asset invalidates its page by itself. (Editing an asset in place
  without touching it is not seen: use ``touch``.)
* KnowledgeBase: the full field values of every returned QID (``repr`` of the record; a
  revision through :meth:`~qualys_simulator.estate.Estate.update_kb` changes ``last_modified`` and the title).
  Only the ``<VULN_LIST>`` is cached; the envelope carries the response time and the
  keep-alive prefix, and is rendered per request (it is a few hundred bytes).

Every key also covers a digest of ``render.py`` and ``estate.py``, so a change to either
never serves stale bytes from an old cache directory.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from qualys_simulator import estate as _estate_module
from qualys_simulator import render as _render_module
from qualys_simulator.estate import SimAsset, SimTag, SimVuln
from qualys_simulator.qps import Criterion, FieldTree, SearchRequest, search_assets
from qualys_simulator.render import iso, render_hostasset_page, render_kb
from qualys_simulator.server import QualysSimulator
from qualys_simulator.vmapi import select_kb

#: Bump when the on-disk layout or the key recipe changes.
CACHE_FORMAT = "1"
_KB_CLOSE = b"  </RESPONSE>\n</KNOWLEDGE_BASE_VULN_LIST_OUTPUT>"
#: Any fixed instant: the cached ``<VULN_LIST>`` is cut out of a body rendered at this time.
_KB_STAMP = datetime.fromisoformat("2000-01-01T00:00:00+00:00")


@cache
def _source_digest() -> str:
    digest = hashlib.sha256(CACHE_FORMAT.encode())
    for module in (_render_module, _estate_module):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class PageCacheStats:
    """Bodies rendered (cache misses) and served from disk (hits), with their sizes."""

    rendered: int = 0
    rendered_bytes: int = 0
    render_seconds: float = 0.0
    hits: int = 0
    hit_bytes: int = 0

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class KbBody:
    """A KnowledgeBase answer as three pieces: ``head`` + the cached file + ``tail``."""

    head: bytes
    list_file: Path
    tail: bytes

    @property
    def size(self) -> int:
        return len(self.head) + self.list_file.stat().st_size + len(self.tail)

    def read_bytes(self) -> bytes:
        return self.head + self.list_file.read_bytes() + self.tail


class PageCache:
    """Rendered hostasset pages and KnowledgeBase lists under ``directory``; thread-safe."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.stats = PageCacheStats()
        self._lock = threading.Lock()
        self._used: set[Path] = set()
        for sub in ("hostasset", "kb"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)

    # ---- keys
    @staticmethod
    def hostasset_key(
        assets: Sequence[SimAsset],
        *,
        has_more: bool,
        last_id: int | None,
        tags: Mapping[int, SimTag] | None,
        fields: FieldTree | None = None,
    ) -> str:
        digest = hashlib.sha256(f"hostasset|{_source_digest()}|{has_more}|{last_id}|{_fields_key(fields)}|".encode())
        if tags is not None:
            digest.update(repr(sorted((t.id, t.name) for t in tags.values())).encode())
        digest.update(b"|")
        for a in assets:
            last_hvid = a.findings[-1].host_instance_vuln_id if a.findings else 0
            digest.update(f"{a.id},{iso(a.modified)},{a.kind},{len(a.findings)},{last_hvid};".encode())
        return digest.hexdigest()

    @staticmethod
    def kb_key(vulns: Sequence[SimVuln]) -> str:
        digest = hashlib.sha256(f"kb|{_source_digest()}|".encode())
        for v in vulns:
            digest.update(repr(v).encode())
        return digest.hexdigest()

    # ---- bodies
    def hostasset(
        self,
        assets: Sequence[SimAsset],
        *,
        has_more: bool,
        last_id: int | None,
        tags: Mapping[int, SimTag] | None = None,
        fields: FieldTree | None = None,
    ) -> Path:
        """The file holding ``render_hostasset_page(assets, ...)``, rendered now if not cached yet."""
        key = self.hostasset_key(assets, has_more=has_more, last_id=last_id, tags=tags, fields=fields)
        path = self.directory / "hostasset" / (key + ".xml")
        if self._hit(path):
            return path
        started = time.perf_counter()
        body = render_hostasset_page(assets, has_more=has_more, last_id=last_id, tags=tags, fields=fields)
        self._store(path, body, time.perf_counter() - started)
        return path

    def kb(self, vulns: Sequence[SimVuln], *, keepalive_prefix: bool, now: datetime) -> KbBody | None:
        """``render_kb(vulns, ...)`` as head + cached list + tail; None when there is nothing to cache."""
        if not vulns:
            return None
        empty = render_kb([], keepalive_prefix=keepalive_prefix, now=now)
        cut = empty.rfind(_KB_CLOSE)
        if cut < 0:
            return None
        path = self.directory / "kb" / (self.kb_key(vulns) + ".xml")
        if not self._hit(path):
            started = time.perf_counter()
            middle = _kb_list(vulns)
            if middle is None:
                return None
            self._store(path, middle, time.perf_counter() - started)
        return KbBody(empty[:cut], path, empty[cut:])

    # ---- bookkeeping
    def _hit(self, path: Path) -> bool:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return False
        with self._lock:
            self.stats.hits += 1
            self.stats.hit_bytes += size
            self._used.add(path)
        return True

    def _store(self, path: Path, body: bytes, seconds: float) -> None:
        # Unique temporary name, then an atomic rename: concurrent renders of one page are harmless.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(body)
        os.replace(tmp, path)
        with self._lock:
            self.stats.rendered += 1
            self.stats.rendered_bytes += len(body)
            self.stats.render_seconds += seconds
            self._used.add(path)

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = PageCacheStats()

    def prune(self) -> int:
        """Delete cached bodies this cache object has not served or rendered; returns how many."""
        removed = 0
        with self._lock:
            used = set(self._used)
        for sub in ("hostasset", "kb"):
            for path in (self.directory / sub).iterdir():
                if path not in used:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for sub in ("hostasset", "kb") for p in (self.directory / sub).iterdir())


def _fields_key(fields: FieldTree | None) -> str:
    """A stable text for a fields tree (None: whole records)."""
    if fields is None:
        return "*"
    inner = (f"{name}{_fields_key(child) if child is not None else ''}" for name, child in sorted(fields.items()))
    return "(" + ",".join(inner) + ")"


def _kb_list(vulns: Sequence[SimVuln]) -> bytes | None:
    """The ``<VULN_LIST>`` part of ``render_kb(vulns)``, cut out with only the public renderer."""
    full = render_kb(vulns, keepalive_prefix=False, now=_KB_STAMP)
    empty = render_kb([], keepalive_prefix=False, now=_KB_STAMP)
    cut = empty.rfind(_KB_CLOSE)
    head, tail = empty[:cut], empty[cut:]
    if cut < 0 or not (full.startswith(head) and full.endswith(tail)) or len(full) <= len(empty):
        return None  # the renderer changed shape: serve uncached rather than wrong bytes
    return full[len(head) : len(full) - len(tail)]


@dataclass(frozen=True)
class WarmupReport:
    """What :func:`warm` did: bodies rendered now vs found on disk."""

    pages: int
    assets: int
    hostasset_bytes: int
    kb_batches: int
    kb_bytes: int
    rendered: int
    reused: int
    rendered_bytes: int
    render_seconds: float
    seconds: float


def warm(
    sim: QualysSimulator,
    cache: PageCache,
    modified_after: datetime | None = None,
    page_size: int = 100,
    kb_batches: Iterable[Sequence[int]] = (),
    fields: FieldTree | None = None,
) -> WarmupReport:
    """Render (or find on disk) every body a full-window sync will ask ``sim`` for, without HTTP.

    Walks the hostasset keyset chain for ``updated GREATER modified_after`` (default: the
    estate's lookback window) at ``page_size`` through the same search the server answers (with
    ``fields``, the hostasset ``<fields>`` the sync asks for), and caches the KnowledgeBase answer
    for each batch of QIDs in ``kb_batches``.
    """
    estate = sim.estate
    started = time.perf_counter()
    before = replace(cache.stats)
    cutoff = modified_after or estate.now - timedelta(days=estate.lookback_days)
    bound = cutoff.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pages = assets = ha_bytes = 0
    after: int | None = None
    while True:
        criteria = [Criterion("updated", "GREATER", bound)]
        if after is not None:
            criteria.append(Criterion("id", "GREATER", str(after)))
        page, has_more = search_assets(estate, SearchRequest(criteria, {"limitResults": str(page_size)}))
        pages += 1
        assets += len(page)
        if page:
            last_id = page[-1].id if has_more else None
            body = cache.hostasset(page, has_more=has_more, last_id=last_id, tags=estate.tags, fields=fields)
            ha_bytes += body.stat().st_size
        if not has_more or not page:
            break
        after = page[-1].id
    n_batches = kb_bytes = 0
    for batch in kb_batches:
        vulns = select_kb(estate, {"action": "list", "details": "Basic", "ids": ",".join(map(str, batch))})
        body = cache.kb(vulns, keepalive_prefix=sim.keepalive_prefix, now=datetime.now(UTC))
        n_batches += 1
        kb_bytes += body.size if body is not None else 0
    after_stats = cache.stats
    return WarmupReport(
        pages=pages,
        assets=assets,
        hostasset_bytes=ha_bytes,
        kb_batches=n_batches,
        kb_bytes=kb_bytes,
        rendered=after_stats.rendered - before.rendered,
        reused=after_stats.hits - before.hits,
        rendered_bytes=after_stats.rendered_bytes - before.rendered_bytes,
        render_seconds=after_stats.render_seconds - before.render_seconds,
        seconds=time.perf_counter() - started,
    )
