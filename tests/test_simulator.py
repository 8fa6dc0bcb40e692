"""Protocol-level tests of the Qualys API simulator: real HTTP against a started server."""

from __future__ import annotations

import http.client
import re
import statistics
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from xml.etree.ElementTree import Element, ParseError

import pytest
import requests
from defusedxml.ElementTree import fromstring

from qualys_simulator import Estate, Fault, Latency, QualysSimulator, expected_device, expected_run
from qualys_simulator.render import render_hostasset_page, render_kb
from qualys_simulator.truth import expected_findings

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=90)
HOSTASSET = "/qps/rest/2.0/search/am/hostasset"
TAG = "/qps/rest/2.0/search/am/tag"
KB = "/api/2.0/fo/knowledge_base/vuln/"
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
DEMO_PASSWORD = "demo-password"


@pytest.fixture(scope="module")
def estate() -> Estate:
    return Estate.generate(assets=300, seed=11, now=NOW)


@pytest.fixture
def sim(estate: Estate) -> Iterator[QualysSimulator]:
    with QualysSimulator(estate) as server:
        yield server


def session(password: str = DEMO_PASSWORD) -> requests.Session:
    s = requests.Session()
    s.auth = ("demo-user", password)
    s.headers["X-Requested-With"] = "pytest"
    return s


def search_body(*criteria: tuple[str, str, str], limit: int | None = None) -> str:
    prefs = f"<preferences><limitResults>{limit}</limitResults></preferences>" if limit is not None else ""
    crit = "".join(f'<Criteria field="{f}" operator="{o}">{v}</Criteria>' for f, o, v in criteria)
    return f"<ServiceRequest>{prefs}<filters>{crit}</filters></ServiceRequest>"


def simple_return_code(body: bytes) -> str | None:
    return fromstring(body).findtext("RESPONSE/CODE")


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize("password", ["wrong", None])
def test_qps_auth_failure_is_401_invalid_credentials(sim: QualysSimulator, password: str | None) -> None:
    s = session("wrong") if password else requests.Session()
    r = s.post(sim.url + HOSTASSET, data=search_body(limit=1))
    assert r.status_code == 401
    assert r.headers["Content-Type"] == "application/xml"
    assert fromstring(r.content).findtext("responseCode") == "INVALID_CREDENTIALS"


def test_api_auth_failure_is_401_simple_return_2000_without_rate_headers(sim: QualysSimulator) -> None:
    r = session("wrong").get(sim.url + KB, params={"action": "list", "ids": "6"})
    assert r.status_code == 401
    assert simple_return_code(r.content) == "2000"
    assert fromstring(r.content).findtext("RESPONSE/TEXT") == "Bad Login/Password"
    assert not any(h.lower().startswith("x-ratelimit") for h in r.headers)


# --------------------------------------------------------------------------- QPS search


def test_paging_returns_every_in_window_asset_once(sim: QualysSimulator, estate: Estate) -> None:
    s, seen, last_id, pages = session(), [], None, 0
    while True:
        crit = [("updated", "GREATER", CUTOFF.strftime("%Y-%m-%dT%H:%M:%SZ"))]
        if last_id is not None:
            crit.append(("id", "GREATER", str(last_id)))
        r = s.post(sim.url + HOSTASSET, data=search_body(*crit, limit=37))
        assert r.status_code == 200
        assert "x-ratelimit-limit" not in {h.lower() for h in r.headers}  # QPS carries no rate headers
        root = fromstring(r.content)
        ids = [int(h.findtext("id") or 0) for h in root.iterfind("data/HostAsset")]
        assert root.findtext("count") == str(len(ids))
        seen += ids
        pages += 1
        if root.findtext("hasMoreRecords") != "true":
            assert root.find("lastId") is None
            break
        last_id = int(root.findtext("lastId") or 0)
        assert last_id == ids[-1]
    expected = [a.id for a in estate.modified_after(CUTOFF)]
    assert seen == expected  # ascending, complete, no duplicates
    assert len(expected) < len(estate.assets)  # stale assets exist and were filtered out
    assert pages == -(-len(expected) // 37)
    logged = [rec for rec in sim.requests if rec.endpoint == "hostasset"]
    assert logged[-1].params["id GREATER"] == str(last_id)
    assert logged[0].params["limitResults"] == "37"


def test_no_match_has_only_response_code_and_count(sim: QualysSimulator) -> None:
    r = session().post(sim.url + HOSTASSET, data=search_body(("id", "EQUALS", "1")))
    root = fromstring(r.content)
    assert [c.tag for c in root] == ["responseCode", "count"]
    assert root.findtext("count") == "0"


@pytest.mark.parametrize(
    ("criteria", "limit", "message"),
    [
        (("updated", "GREATER", "2025-13-01"), None, "Invalid value format for criteria 'updated'"),
        (("updated", "GREATER", "yesterday"), None, "Invalid value format"),
        (("id", "IN", "1,abc"), None, "criteria 'id' (1,abc)"),
        (("lastCheckedInish", "EQUALS", "1"), None, "Unknown or unsupported field"),
        (("updated", "EQUALS", "2025-01-01T00:00:00Z"), None, "Operator 'EQUALS'"),
        (("id", "GREATER", "1"), 1001, "limitResults"),
        (("id", "GREATER", "1"), 0, "limitResults"),
    ],
)
def test_bad_criteria_give_http_200_invalid_request(
    sim: QualysSimulator, criteria: tuple[str, str, str], limit: int | None, message: str
) -> None:
    r = session().post(sim.url + HOSTASSET, data=search_body(criteria, limit=limit))
    assert r.status_code == 200
    root = fromstring(r.content)
    assert root.findtext("responseCode") == "INVALID_REQUEST"
    assert message in (root.findtext("responseErrorDetails/errorMessage") or "")
    assert root.findtext("responseErrorDetails/errorResolution")


def test_malformed_and_entity_bodies_are_invalid_request(sim: QualysSimulator) -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><ServiceRequest>&a;</ServiceRequest>'
    for body in ("<ServiceRequest>", bomb):
        root = fromstring(session().post(sim.url + HOSTASSET, data=body).content)
        assert root.findtext("responseCode") == "INVALID_REQUEST"


def test_tag_search_returns_criticality_only_when_set(sim: QualysSimulator, estate: Estate) -> None:
    r = session().post(sim.url + TAG, data=search_body(("id", "IN", "14946065,15001021,999")))
    tags = fromstring(r.content).findall("data/Tag")
    assert [t.findtext("id") for t in tags] == ["14946065", "15001021"]
    assert tags[0].find("criticalityScore") is None
    assert tags[1].findtext("criticalityScore") == str(estate.tags[15001021].criticality)
    assert tags[1].findtext("name") == "PCI & Cardholder Data"


def test_portal_version_and_unknown_path(sim: QualysSimulator) -> None:
    r = session().get(sim.url + "/qps/rest/portal/version")
    assert r.status_code == 200
    assert fromstring(r.content).findtext("responseCode") == "SUCCESS"
    r = requests.get(sim.url + "/api/2.0/fo/nope/", timeout=10)
    assert r.status_code == 404
    assert r.headers["Content-Type"].startswith("text/html")


def test_permissions(estate: Estate) -> None:
    with QualysSimulator(estate, asset_permission=False, kb_permission=False) as server:
        r = session().post(server.url + HOSTASSET, data=search_body(limit=1))
        assert (r.status_code, fromstring(r.content).findtext("responseCode")) == (200, "UNAUTHORIZED")
        r = session().get(server.url + KB, params={"action": "list", "ids": "6"})
        assert r.status_code == 409
        assert simple_return_code(r.content) not in ("1920", "1960", "1965")


# --------------------------------------------------------------------------- KnowledgeBase


def test_kb_body_parses_after_stripping_keepalive_whitespace(sim: QualysSimulator, estate: Estate) -> None:
    qids = sorted(estate.kb)[:40]
    r = session().post(sim.url + KB, data={"action": "list", "ids": ",".join(map(str, qids)), "details": "All"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/xml;charset=UTF-8"
    assert r.headers["X-RateLimit-Window-Sec"] == "3600"
    assert r.headers["X-Concurrency-Limit-Running"] == "1"
    assert r.content[:1].isspace()
    with pytest.raises(ParseError):  # the XML declaration is not at the start
        fromstring(r.content)
    root = fromstring(r.content.lstrip())
    vulns = root.findall("RESPONSE/VULN_LIST/VULN")
    assert [int(v.findtext("QID") or 0) for v in vulns] == qids
    for v in vulns:  # CVE ids as sent may be duplicated or lower-case; canonical form = the truth
        sent = [(c.text or "").upper() for c in v.iterfind("CVE_LIST/CVE/ID")]
        assert list(dict.fromkeys(sent)) == estate.kb[int(v.findtext("QID") or 0)].cve_ids


def test_kb_ranges_and_last_modified_after(sim: QualysSimulator, estate: Estate) -> None:
    lo, hi = sorted(estate.kb)[2], sorted(estate.kb)[9]
    r = session().get(sim.url + KB, params={"action": "list", "ids": f"{lo}-{hi}"})
    assert len(fromstring(r.content.lstrip()).findall("RESPONSE/VULN_LIST/VULN")) == 8
    after = sorted(v.last_modified for v in estate.kb.values())[-3]
    r = session().get(
        sim.url + KB, params={"action": "list", "last_modified_after": after.strftime("%Y-%m-%dT%H:%M:%SZ")}
    )
    assert len(fromstring(r.content.lstrip()).findall("RESPONSE/VULN_LIST/VULN")) == 3


def test_kb_unknown_ids_have_no_vuln_list(sim: QualysSimulator, estate: Estate) -> None:
    missing = estate.missing_qids
    assert missing  # ~0.5% of referenced QIDs are unknown to the KB
    r = session().post(sim.url + KB, data={"action": "list", "ids": f"{missing[0]},999999"})
    response = fromstring(r.content.lstrip()).find("RESPONSE")
    assert isinstance(response, Element)
    assert [c.tag for c in response] == ["DATETIME"]


@pytest.mark.parametrize(
    ("params", "headers", "code"),
    [
        ({"action": "list", "ids": "abc123"}, {}, "1905"),
        ({"action": "list", "ids": "10-2"}, {}, "1905"),
        ({"ids": "6"}, {}, "1903"),
        ({"action": "list", "bogus": "1"}, {}, "1901"),
        ({"action": "list", "last_modified_after": "June"}, {}, "1905"),
        ({"action": "list", "ids": "6"}, {"X-Requested-With": None}, "1903"),
    ],
)
def test_kb_bad_requests_are_http_400(
    sim: QualysSimulator, params: dict[str, str], headers: dict[str, str | None], code: str
) -> None:
    r = session().get(sim.url + KB, params=params, headers=headers)
    assert r.status_code == 400
    assert simple_return_code(r.content) == code
    assert "X-RateLimit-Remaining" in r.headers
    if params.get("ids") == "abc123":
        assert "neither a positive integer nor a range: abc123" in r.text


def test_kb_concurrency_limit_is_enforced(estate: Estate) -> None:
    with QualysSimulator(estate, latency=Latency(kb=0.6)) as server:
        results: list[requests.Response] = []

        def call() -> None:
            results.append(session().get(server.url + KB, params={"action": "list", "ids": "6"}))

        threads = [threading.Thread(target=call) for _ in range(3)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join()
        assert sorted(r.status_code for r in results) == [200, 200, 409]
        refused = next(r for r in results if r.status_code == 409)
        assert simple_return_code(refused.content) == "1960"
        assert "currently running API instance has finished" in refused.text
        assert refused.headers["X-Concurrency-Limit-Running"] == "2"
        assert server.peak_concurrency["kb"] == 3


def test_kb_rate_limit_is_enforced(estate: Estate) -> None:
    with QualysSimulator(estate, rate_limit=2) as server:
        s = session()
        remaining = [s.get(server.url + KB, params={"action": "list", "ids": "6"}) for _ in range(3)]
        assert [r.headers["X-RateLimit-Remaining"] for r in remaining[:2]] == ["1", "0"]
        assert remaining[2].status_code == 409
        assert simple_return_code(remaining[2].content) == "1965"
        assert int(remaining[2].headers["X-RateLimit-ToWait-Sec"]) > 3000


# --------------------------------------------------------------------------- faults


def _kb_get(sim: QualysSimulator) -> requests.Response:
    return session().get(sim.url + KB, params={"action": "list", "ids": "6"})


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("http_429", 429, None),
        ("rate_limit_1965", 409, "1965"),
        ("concurrency_1960", 409, "1960"),
        ("code_1920", 409, "1920"),
        ("http_500", 500, None),
        ("http_502", 502, None),
        ("http_503", 503, None),
        ("http_401", 401, "2000"),
        ("http_403", 403, None),
        ("http_404", 404, None),
        ("kb_permission", 409, None),
    ],
)
def test_status_faults_on_kb(sim: QualysSimulator, kind: str, status: int, code: str | None) -> None:
    sim.inject(Fault("kb", kind, wait_seconds=7))
    r = _kb_get(sim)
    assert r.status_code == status
    if code is not None:
        assert simple_return_code(r.content) == code
    elif kind == "kb_permission":  # a SIMPLE_RETURN without CODE: every documented code means something else
        assert b"<SIMPLE_RETURN>" in r.content and simple_return_code(r.content) is None
    if kind in ("http_429", "http_503"):
        assert r.headers["Retry-After"] == "7"
    if kind == "rate_limit_1965":
        assert r.headers["X-RateLimit-ToWait-Sec"] == "7"
        assert fromstring(r.content).findtext("RESPONSE/ITEM_LIST/ITEM/VALUE") == "7"
    assert _kb_get(sim).status_code == 200  # times=1: the next call is normal
    assert [rec.fault for rec in sim.requests] == [kind, None]


def test_qps_unauthorized_fault_and_wildcard_skip(sim: QualysSimulator) -> None:
    sim.inject(Fault("*", "qps_unauthorized", skip=1))
    s = session()
    first = fromstring(s.post(sim.url + HOSTASSET, data=search_body(limit=1)).content)
    second = fromstring(s.post(sim.url + TAG, data=search_body(limit=1)).content)
    third = fromstring(s.post(sim.url + HOSTASSET, data=search_body(limit=1)).content)
    assert [x.findtext("responseCode") for x in (first, second, third)] == ["SUCCESS", "UNAUTHORIZED", "SUCCESS"]


def test_faults_queue_in_order(sim: QualysSimulator) -> None:
    sim.inject(Fault("kb", "http_503", times=2), Fault("kb", "concurrency_1960"))
    assert [_kb_get(sim).status_code for _ in range(4)] == [503, 503, 409, 200]
    sim.inject(Fault("kb", "http_500"))
    sim.clear_faults()
    assert _kb_get(sim).status_code == 200


@pytest.mark.parametrize(
    ("kind", "error"), [("reset_mid_body", ConnectionResetError), ("truncated_body", http.client.IncompleteRead)]
)
def test_broken_body_faults(sim: QualysSimulator, kind: str, error: type[Exception]) -> None:
    sim.inject(Fault("hostasset", kind))
    port = int(sim.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    auth = requests.auth._basic_auth_str("demo-user", DEMO_PASSWORD)
    conn.request("POST", HOSTASSET, body=search_body(limit=20), headers={"Authorization": auth})
    response = conn.getresponse()
    assert response.status == 200
    with pytest.raises(error):
        response.read()
    record = sim.requests[-1]
    assert record.fault == kind
    assert 0 < record.bytes_sent < int(response.getheader("Content-Length") or 0)
    sim.inject(Fault("hostasset", kind))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # what a requests-based client sees
        session().post(sim.url + HOSTASSET, data=search_body(limit=20))
    assert session().post(sim.url + HOSTASSET, data=search_body(limit=20)).status_code == 200


def test_slow_fault_delays_the_answer(sim: QualysSimulator) -> None:
    sim.inject(Fault("tag", "slow", wait_seconds=0.4))
    started = time.monotonic()
    r = session().post(sim.url + TAG, data=search_body(limit=5))
    assert r.status_code == 200
    assert time.monotonic() - started >= 0.4
    assert sim.requests[-1].fault == "slow"


def test_unknown_fault_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("kb", "http_418")


# --------------------------------------------------------------------------- data model and truth


def test_same_seed_gives_identical_bytes() -> None:
    a, b = (Estate.generate(assets=120, seed=5, now=NOW) for _ in range(2))
    pages = [render_hostasset_page(list(e.assets.values()), has_more=False, last_id=None) for e in (a, b)]
    assert pages[0] == pages[1]
    kbs = [render_kb(e.kb.values(), keepalive_prefix=True, now=NOW) for e in (a, b)]
    assert kbs[0] == kbs[1]
    other = Estate.generate(assets=120, seed=6, now=NOW)
    assert render_hostasset_page(list(other.assets.values()), has_more=False, last_id=None) != pages[0]


def test_agent_host_is_about_100_kb(estate: Estate) -> None:
    agents = [a for a in estate.assets.values() if a.kind == "agent"][:30]
    sizes = [len(render_hostasset_page([a], has_more=False, last_id=None)) for a in agents]
    assert 80_000 < statistics.mean(sizes) < 130_000
    scanners = [a for a in estate.assets.values() if a.kind == "scanner"][:30]
    assert max(len(render_hostasset_page([a], has_more=False, last_id=None)) for a in scanners) < 40_000


def _canonical_mac(raw: str) -> str | None:
    mac = raw.strip().lower().replace("-", ":")
    return mac if MAC_RE.match(mac) and mac != "00:00:00:00:00:00" else None


def test_truth_is_recoverable_from_the_xml(estate: Estate) -> None:
    """A small reference reading of the rendered XML yields exactly the truth's network fields."""
    assets = list(estate.assets.values())
    root = fromstring(render_hostasset_page(assets, has_more=False, last_id=None, tags=estate.tags))
    for asset, ha in zip(assets, root.iterfind("data/HostAsset"), strict=True):
        truth = expected_device(estate, asset)
        ifaces = ha.findall("networkInterface/list/HostAssetInterface")
        cloud = [s for s in ha.iterfind("sourceInfo/list/*") if s.tag != "AssetSource"]
        ips = [ha.findtext("address"), *(i.findtext("address") for i in ifaces)]
        ips += [x for s in cloud for x in (s.findtext("privateIpAddress"), s.findtext("publicIpAddress"))]
        raw_macs = [i.findtext("macAddress") for i in ifaces] + [s.findtext("macAddress") for s in cloud]
        macs = [_canonical_mac(m) for m in raw_macs if m is not None]
        fqdn = (ha.findtext("fqdn") or "").strip() or (ha.findtext("dnsHostName") or "").strip() or None
        assert list(dict.fromkeys(x for x in ips if x)) == truth["ip_addresses"]
        assert list(dict.fromkeys(m for m in macs if m)) == truth["mac_addresses"]
        assert (
            list(dict.fromkeys(g.text for g in ha.iterfind("networkInterface/list/*/gatewayAddress")))
            == truth["gateway_addresses"]
        )
        assert fqdn == truth["fqdn"]
        assert (ha.findtext("modified") or "").strip() == truth["modified_at"]
        assert [t.findtext("id") for t in ha.iterfind("tags/list/TagSimple")] == [t["id"] for t in truth["tags"]]  # type: ignore[attr-defined]


def test_truth_records_follow_the_contract(estate: Estate) -> None:
    devices, findings = expected_run(estate, CUTOFF)
    assert list(devices) == [str(a.id) for a in estate.modified_after(CUTOFF)]
    for device in devices.values():
        assert "" not in device.values()
        assert all(MAC_RE.match(m) for m in device["mac_addresses"])  # type: ignore[attr-defined]
        assert device["criticality"] in (1, 2, 3, 4, 5)
        assert device["source"] == "qualys"
    unknown = [f for f in findings.values() if f["title"] is None]
    assert unknown
    assert all(f["cve_ids"] == [] and f["severity"] is None for f in unknown)
    kinds = {a.kind for a in estate.assets.values()}
    assert kinds == {"agent", "scanner", "cloud"}
    # Edge cases the sync has to handle are present in the estate.
    assets = list(estate.assets.values())
    assert any(a.fqdn == "" and a.dns_host_name for a in assets)
    assert any(a.noise_macs for a in assets)
    assert any(not any(estate.tags[t].criticality for t in a.tag_ids) for a in assets)
    vulns = list(estate.kb.values())
    assert any(len(v.cve_ids) > 10 for v in vulns)
    assert any(len(v.cve_ids) == 1 for v in vulns)
    assert any(not v.cve_ids for v in vulns)
    assert any(v.cvss_base is None for v in vulns)
    assert any(v.cvss_base is not None and v.cvss_v3_base is None for v in vulns)
    assert any(v.cvss_v3_base is not None for v in vulns)


def test_touch_and_update_kb_drive_an_incremental_run(estate: Estate) -> None:
    local = Estate.generate(assets=60, seed=3, now=NOW)
    later = NOW + timedelta(hours=6)
    stale = [a.id for a in local.assets.values() if a.modified < CUTOFF][:2]
    fresh = [a.id for a in local.assets.values() if a.findings and a.modified >= CUTOFF][:2]
    before = {i: len(local.assets[i].findings) for i in fresh}
    local.touch(stale + fresh, later)
    assert [a.id for a in local.modified_after(NOW)] == sorted(stale + fresh)
    for asset_id in fresh:
        records = expected_findings(local, local.assets[asset_id])
        assert len(records) == before[asset_id] + 1
        assert {r["last_found_at"] for r in records} == {"2025-06-01T18:00:00Z"}
        assert len({r["qid"] for r in records}) == len(records)
    qid = sorted(local.kb)[0]
    local.update_kb([qid], later)
    assert local.kb[qid].title.endswith(" (revised)")
    assert local.kb[qid].last_modified == later
    with QualysSimulator(local) as server:
        r = session().get(server.url + KB, params={"action": "list", "last_modified_after": "2025-06-01T17:00:00Z"})
        assert [v.findtext("QID") for v in fromstring(r.content.lstrip()).iterfind("RESPONSE/VULN_LIST/VULN")] == [
            str(qid)
        ]


def test_fields_return_only_what_was_asked(sim: QualysSimulator, estate: Estate) -> None:
    vuln = "<vuln><list><HostAssetVuln><qid/></HostAssetVuln></list></vuln>"
    fields = f"<fields><HostAsset><id/>{vuln}<sourceInfo/></HostAsset></fields>"
    plain = search_body(("updated", "GREATER", "2000-01-01T00:00:00Z"), limit=20)
    limited = fromstring(session().post(sim.url + HOSTASSET, data=plain.replace("<filters>", fields + "<filters>")).content)
    whole = fromstring(session().post(sim.url + HOSTASSET, data=plain).content)
    assert [c.tag for c in limited][:3] == ["responseCode", "count", "hasMoreRecords"]  # the envelope stays
    for small, big in zip(limited.iterfind("data/HostAsset"), whole.iterfind("data/HostAsset"), strict=True):
        assert {child.tag for child in small} <= {"id", "vuln", "sourceInfo"}
        assert small.findtext("id") == big.findtext("id")
        assert [q.text for q in small.iterfind("vuln/list/HostAssetVuln/qid")] == [
            q.text for q in big.iterfind("vuln/list/HostAssetVuln/qid")
        ]
        assert not small.findall("vuln/list/HostAssetVuln/firstFound")  # only the children asked for
        big_source, small_source = big.find("sourceInfo"), small.find("sourceInfo")
        if big_source is not None:  # an element asked for whole comes whole
            assert small_source is not None and len(list(small_source.iter())) == len(list(big_source.iter()))
    tag_search = "<ServiceRequest><fields><Tag><id/></Tag></fields></ServiceRequest>"
    tags = session().post(sim.url + "/qps/rest/2.0/search/am/tag", data=tag_search)
    assert {child.tag for tag in fromstring(tags.content).iterfind("data/Tag") for child in tag} == {"id"}
