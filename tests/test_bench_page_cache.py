"""The benchmark's on-disk page cache of simulator bodies: byte-identical bodies, invalidation on change, faults still apply."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from bench.page_cache import PageCache, warm
from qualys_simulator import Estate, Fault, QualysSimulator
from qualys_simulator.render import render_kb

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CUTOFF = "2025-03-03T12:00:00Z"  # NOW - 90 days
HOSTASSET = "/qps/rest/2.0/search/am/hostasset"
KB = "/api/2.0/fo/knowledge_base/vuln/"
_DATETIME = re.compile(rb"<DATETIME>[^<]*</DATETIME>")


def _session() -> requests.Session:
    s = requests.Session()
    s.auth = ("demo-user", "demo-password")
    s.headers["X-Requested-With"] = "pytest"
    return s


def _chain(sim: QualysSimulator, page_size: int = 25) -> list[bytes]:
    """Every page of the full-window keyset chain, as raw bytes."""
    s, bodies, after = _session(), [], None
    while True:
        crit = f'<Criteria field="updated" operator="GREATER">{CUTOFF}</Criteria>'
        if after is not None:
            crit += f'<Criteria field="id" operator="GREATER">{after}</Criteria>'
        prefs = f"<preferences><limitResults>{page_size}</limitResults></preferences>"
        body = f"<ServiceRequest>{prefs}<filters>{crit}</filters></ServiceRequest>"
        r = s.post(sim.url + HOSTASSET, data=body)
        assert r.status_code == 200
        assert int(r.headers["Content-Length"]) == len(r.content)
        bodies.append(r.content)
        match = re.search(rb"<lastId>(\d+)</lastId>", r.content[:2000])
        if match is None:
            return bodies
        after = int(match.group(1))


def _kb(sim: QualysSimulator, ids: str) -> bytes:
    r = _session().post(sim.url + KB, data={"action": "list", "details": "Basic", "ids": ids})
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(r.content)
    return r.content


def test_cached_bodies_are_byte_identical_and_a_touch_invalidates(tmp_path: Path) -> None:
    plain_estate = Estate.generate(assets=120, seed=5, now=NOW)
    cached_estate = Estate.generate(assets=120, seed=5, now=NOW)
    ids = ",".join(str(q) for q in sorted(cached_estate.kb)[:40]) + ",1-20"
    cache = PageCache(tmp_path)
    with QualysSimulator(plain_estate) as plain, QualysSimulator(cached_estate, page_cache=cache) as cached:
        in_window = len(cached_estate.modified_after(NOW - timedelta(days=90)))
        pages = -(-in_window // 25)
        report = warm(cached, cache, page_size=25, kb_batches=[[int(q) for q in ids.split(",")[:40]]])
        assert report.pages == pages and report.assets == in_window
        assert report.rendered == pages + 1 and report.reused == 0 and report.kb_batches == 1
        expected = _chain(plain)
        assert _chain(cached) == expected
        assert cache.stats.hits == pages and cache.stats.rendered == pages + 1  # from disk
        assert _DATETIME.sub(b"", _kb(cached, ids)) == _DATETIME.sub(b"", _kb(plain, ids))

        # A second simulator on the same folder renders nothing.
        second = PageCache(tmp_path)
        with QualysSimulator(cached_estate, page_cache=second) as again:
            again_report = warm(again, second, page_size=25)
            assert again_report.rendered == 0 and again_report.reused == pages
            assert _chain(again) == expected

        # Touch one asset in both estates: its page (only) changes, and the cache follows.
        victim = sorted(a.id for a in cached_estate.modified_after(NOW - timedelta(days=90)))[30]
        for e in (plain_estate, cached_estate):
            e.touch([victim], NOW - timedelta(minutes=5))
            e.update_kb([sorted(e.kb)[0]], NOW - timedelta(minutes=5))
        touched = _chain(plain)
        assert touched != expected and sum(a != b for a, b in zip(touched, expected, strict=True)) == 1
        assert _chain(cached) == touched
        assert _DATETIME.sub(b"", _kb(cached, ids)) == _DATETIME.sub(b"", _kb(plain, ids))
        assert len(cached.requests) > 0 and all(r.bytes_sent > 0 for r in cached.requests)


def test_kb_list_is_cut_from_the_public_renderer(tmp_path: Path) -> None:
    estate = Estate.generate(assets=40, seed=3, now=NOW)
    vulns = [estate.kb[q] for q in sorted(estate.kb)[:7]]
    cache = PageCache(tmp_path)
    for keepalive in (True, False):
        body = cache.kb(vulns, keepalive_prefix=keepalive, now=NOW)
        assert body is not None
        assert body.read_bytes() == render_kb(vulns, keepalive_prefix=keepalive, now=NOW)
    assert cache.kb([], keepalive_prefix=True, now=NOW) is None
    assert cache.stats.rendered == 1 and cache.stats.hits == 1


@pytest.mark.parametrize("kind", ["truncated_body", "reset_mid_body"])
def test_delivery_faults_still_cut_cached_bodies(tmp_path: Path, kind: str) -> None:
    estate = Estate.generate(assets=30, seed=2, now=NOW)
    cache = PageCache(tmp_path)
    with QualysSimulator(estate, page_cache=cache) as sim:
        warm(sim, cache, page_size=50)
        sim.inject(Fault("hostasset", kind))
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
            _chain(sim, page_size=50)
        assert _chain(sim, page_size=50)  # the next request is whole again
