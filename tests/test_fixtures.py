"""Real and sample Qualys bodies (tests/fixtures/qualys/) through the parsers the sync uses, field by field.

Each body is parsed twice: by the connector's code (the hostasset reader, the KnowledgeBase and tag
parsers, the count parser, the record builders), and by the plain reader below, which loads the whole
file with ``defusedxml.ElementTree.fromstring`` and reads every value with an explicit ``findtext``
path. The reader shares no code with the connector, so a parser that drops, shifts or misreads a
field makes a test fail and the message names the file, the record and the field.

tests/fixtures/qualys/README.md says where each body comes from and what it proves here.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import fields
from datetime import datetime
from importlib import resources
from pathlib import Path
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import jsonschema
import pytest

from qualys.api.assets import RawAsset
from qualys.api.hostasset_search import HostAssetReader, PageHeader, parse_page
from qualys.api.knowledge_base import KbEntry, parse_vuln_list
from qualys.api.partitions import parse_count
from qualys.api.tags import parse_tags
from qualys.sync.records import device_record, finding_lines, kb_fragment
from tests.reference_records import finding_records, json_lines

FIXTURES = Path(__file__).parent / "fixtures" / "qualys"

HOSTASSET = (
    "qps_hostasset/search_page1_limit10_hasMoreRecords_true.xml",
    "qps_hostasset/search_page2_id_greater_lastId_final.xml",
    "qps_hostasset/search_single_ec2_scanner_host.xml",
    "qps_hostasset/search_count0_no_data.xml",
    "qps_hostasset/doc_sample_agent_hosts.xml",
    "qps_hostasset/doc_sample_azure_hosts.xml",
    "qps_hostasset/doc_sample_ec2_hosts.xml",
    "qps_hostasset/doc_sample_gcp_hosts.xml",
)
KNOWLEDGE_BASE = (
    "knowledge_base/real_qg3_43qids_details_default.xml",
    "knowledge_base/real_qg3_qid_316760_details_default.xml",
    "knowledge_base/real_qg3_empty_no_vuln_list.xml",
    "knowledge_base/localmock_cvss_v2_qids_11_38739.xml",
    "knowledge_base/demisto_qg_kb_correlation_bugtraq.xml",
    "knowledge_base/ibm_qg1in_kb_details.xml",
    "external/knowledge_base/real_2013_qualysapi_us1_103qids_cvss_v2.xml",
    "external/knowledge_base/real_trimmed_2015_qualysapi_tinykb_keepalive_comments.xml",
    "external/knowledge_base/elastic_mock_kb_qid11830_cve_cdata_whitespace.xml",
    "external/knowledge_base/tenable_mock_kb_qid6_no_xml_declaration.xml",
)
TAGS = ("external/tag/xsoar_qg2_tag_search_criticality3_with_children.xml",)
KB_DTD = "external/reference/knowledge_base_vuln_list_output.2023.dtd"
#: The KnowledgeBase the findings of the hostasset pages are enriched from: the body served beside the real
#: pages in the same recording (QIDs 11 and 38739), the real qg3 43-QID list and IBM's qg1 sample. No QID is
#: in two of them, so the cache they make is unambiguous.
FINDINGS_KB = (
    "knowledge_base/localmock_cvss_v2_qids_11_38739.xml",
    "knowledge_base/real_qg3_43qids_details_default.xml",
    "knowledge_base/ibm_qg1in_kb_details.xml",
)
CRITICALITY = 4
CVE = re.compile(r"CVE-\d{4}-\d{4,}")
MAC = re.compile(r"[0-9a-f]{2}([:-][0-9a-f]{2}){5}")


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def stream(name: str) -> io.BytesIO:
    return io.BytesIO(body(name))


class Chunks(io.RawIOBase):
    """Hands the body out ``step`` bytes at a time, so tags and CDATA are cut at odd places."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._data[self._pos : self._pos + self._step]
        self._pos += len(chunk)
        return chunk


# ------------------------------------------------------------------------------------------------
# The expected values, read from the XML with ElementTree and explicit paths
# ------------------------------------------------------------------------------------------------


def xml(name: str) -> Element:
    return SafeET.fromstring(body(name))


def text(element: Element, path: str) -> str | None:
    """The stripped text at ``path`` (direct children only, as written); None when missing or empty."""
    value = element.findtext(path)
    if value is None or not value.strip():
        return None
    return value.strip()


def unique(values: list[str | None]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))


def utc(value: str | None) -> str | None:
    """Qualys's ``YYYY-MM-DDTHH:MM:SSZ``, checked by strptime (every date in these fixtures has that form)."""
    return None if value is None else datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").strftime("%Y-%m-%dT%H:%M:%SZ")


def mac(value: str | None) -> str | None:
    """``aa:bb:cc:dd:ee:ff`` from colon or dash forms; anything else (``8H``) and all-zero -> None."""
    if value is None or not MAC.fullmatch(value.lower()):
        return None
    colons = value.lower().replace("-", ":")
    return None if colons == "00:00:00:00:00:00" else colons


def expected_asset(host: Element) -> dict[str, object]:
    """A HostAsset as RawAsset's fields: direct children, agentInfo/agentId, and the four lists."""
    sources = host.findall("sourceInfo/list/*")
    return {
        "id": int(host.findtext("id") or ""),
        "qweb_host_id": text(host, "qwebHostId"),
        "agent_id": text(host, "agentInfo/agentId"),
        "name": text(host, "name"),
        "fqdn": text(host, "fqdn"),
        "dns_host_name": text(host, "dnsHostName"),
        "netbios_name": text(host, "netbiosName"),
        "address": text(host, "address"),
        "os": text(host, "os"),
        "tracking_method": text(host, "trackingMethod"),
        "created": text(host, "created"),
        "modified": text(host, "modified"),
        "last_vuln_scan": text(host, "lastVulnScan"),
        "tags": [(text(tag, "id"), text(tag, "name")) for tag in host.findall("tags/list/TagSimple")],
        "interfaces": [
            (text(nic, "address"), text(nic, "macAddress"), text(nic, "gatewayAddress"))
            for nic in host.findall("networkInterface/list/HostAssetInterface")
        ],
        "cloud_ips": [
            ip for source in sources for ip in (text(source, "privateIpAddress"), text(source, "publicIpAddress")) if ip
        ],
        "cloud_macs": [address for source in sources if (address := text(source, "macAddress"))],
        "findings": [
            (int(vuln.findtext("qid") or ""), text(vuln, "hostInstanceVulnId"), text(vuln, "firstFound"), text(vuln, "lastFound"))
            for vuln in host.findall("vuln/list/HostAssetVuln")
        ],
    }


def expected_device(host: Element) -> dict[str, object]:
    """The device record of docs/output-contract.md, from the HostAsset element."""
    nics = host.findall("networkInterface/list/HostAssetInterface")
    sources = host.findall("sourceInfo/list/*")
    tags: dict[str | None, str | None] = {}
    for tag in host.findall("tags/list/TagSimple"):
        tags.setdefault(text(tag, "id"), text(tag, "name"))
    return {
        "asset_id": text(host, "id"),
        "qweb_host_id": text(host, "qwebHostId"),
        "agent_id": text(host, "agentInfo/agentId"),
        "name": text(host, "name"),
        "fqdn": text(host, "fqdn") or text(host, "dnsHostName"),
        "netbios_name": text(host, "netbiosName"),
        "ip_addresses": unique(
            [text(host, "address")]
            + [text(nic, "address") for nic in nics]
            + [text(source, field) for source in sources for field in ("privateIpAddress", "publicIpAddress")]
        ),
        "mac_addresses": unique([mac(text(item, "macAddress")) for item in nics + sources]),
        "gateway_addresses": unique([text(nic, "gatewayAddress") for nic in nics]),
        "os": text(host, "os"),
        "criticality": CRITICALITY,
        "tags": [{"id": tag_id, "name": name} for tag_id, name in tags.items()],
        "tracking_method": text(host, "trackingMethod"),
        "created_at": utc(text(host, "created")),
        "modified_at": utc(text(host, "modified")),
        "last_vuln_scan_at": utc(text(host, "lastVulnScan")),
        "source": "qualys",
    }


def expected_kb(vuln: Element) -> dict[str, object]:
    """A VULN as KbEntry's fields."""
    severity = text(vuln, "SEVERITY_LEVEL")
    cves = [(text(cve, "ID") or "").upper() for cve in vuln.findall("CVE_LIST/CVE")]
    cvss, cvss3 = text(vuln, "CVSS/BASE"), text(vuln, "CVSS_V3/BASE")
    return {
        "qid": int(vuln.findtext("QID") or ""),
        "title": text(vuln, "TITLE"),
        "vuln_type": text(vuln, "VULN_TYPE"),
        "severity": int(severity) if severity in {"1", "2", "3", "4", "5"} else None,
        "cves": ",".join(unique([cve for cve in cves if CVE.fullmatch(cve)])),
        "cvss_base": None if cvss is None else float(cvss),
        "cvss_v3_base": None if cvss3 is None else float(cvss3),
        "last_modified": text(vuln, "LAST_SERVICE_MODIFICATION_DATETIME"),
        "known": True,
    }


def expected_findings(host: Element, kb: dict[int, dict[str, object]]) -> list[dict[str, object]]:
    """One finding record per QID of the host (the first HostAssetVuln wins), enriched from ``kb``."""
    records: list[dict[str, object]] = []
    for vuln in host.findall("vuln/list/HostAssetVuln"):
        qid = int(vuln.findtext("qid") or "")
        if any(record["qid"] == qid for record in records):
            continue
        entry = kb.get(qid, {})
        records.append({
            "asset_id": text(host, "id"),
            "qid": qid,
            "cve_ids": str(entry["cves"]).split(",") if entry.get("cves") else [],
            "title": entry.get("title"),
            "vuln_type": entry.get("vuln_type"),
            "severity": entry.get("severity"),
            "cvss_base": entry.get("cvss_base"),
            "cvss_v3_base": entry.get("cvss_v3_base"),
            "first_found_at": utc(text(vuln, "firstFound")),
            "last_found_at": utc(text(vuln, "lastFound")),
            "host_instance_vuln_id": text(vuln, "hostInstanceVulnId"),
            "source": "qualys",
        })
    return records


# ------------------------------------------------------------------------------------------------
# Comparing
# ------------------------------------------------------------------------------------------------


def as_fields(record: RawAsset | KbEntry) -> dict[str, object]:
    """Every field of a parsed record; lists of value objects as tuples, findings as their rows."""
    values: dict[str, object] = {field.name: getattr(record, field.name) for field in fields(record)}
    if isinstance(record, RawAsset):
        values["interfaces"] = [(nic.address, nic.mac, nic.gateway) for nic in record.interfaces]
        values["findings"] = list(record.findings.rows())
    return values


def differences(where: str, parsed: dict[str, object], expected: dict[str, object]) -> list[str]:
    keys = list(expected) + [key for key in parsed if key not in expected]
    return [
        f"{where} {key}: parsed {parsed.get(key, '<missing>')!r}, XML {expected.get(key, '<missing>')!r}"
        for key in keys
        if parsed.get(key, "<missing>") != expected.get(key, "<missing>")
    ]


def schema_validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(resources.files("qualys").joinpath(f"schemas/{name}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


# ------------------------------------------------------------------------------------------------
# Host asset search
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTASSET)
def test_hostasset_page_matches_the_xml(name: str) -> None:
    root = xml(name)
    reader = HostAssetReader(stream(name))  # as the sync reads a page: the header first, then the records
    try:
        header = reader.header()
        page = reader.page()
    finally:
        reader.close()
    last_id = text(root, "lastId")
    assert header == PageHeader(text(root, "hasMoreRecords") == "true", None if last_id is None else int(last_id))
    assert (page.has_more, page.last_id) == (header.has_more, header.last_id)
    hosts = root.findall("data/HostAsset")
    assert len(page.assets) == len(hosts)
    problems: list[str] = []
    for number, (asset, host) in enumerate(zip(page.assets, hosts, strict=True), start=1):
        problems += differences(f"HostAsset #{number}", as_fields(asset), expected_asset(host))
    assert problems == []
    assert parse_page(Chunks(body(name), 997)) == page  # the same page when chunks cut tags and skipped lists
    assert parse_count(stream(name)) == int(text(root, "count") or "")  # a count response has this header


@pytest.mark.parametrize("name", HOSTASSET)
def test_device_records_match_the_xml(name: str) -> None:
    validator = schema_validator("device")
    assets = parse_page(stream(name)).assets
    problems: list[str] = []
    for number, (asset, host) in enumerate(zip(assets, xml(name).findall("data/HostAsset"), strict=True), start=1):
        record = device_record(asset, CRITICALITY)
        validator.validate(record)
        problems += differences(f"device #{number}", record, expected_device(host))
    assert problems == []


@pytest.mark.parametrize("name", HOSTASSET)
def test_finding_records_match_the_xml(name: str) -> None:
    kb_entries = {entry.qid: entry for kb_name in FINDINGS_KB for entry in parse_vuln_list(stream(kb_name))}
    kb_xml = {
        int(vuln.findtext("QID") or ""): expected_kb(vuln)
        for kb_name in FINDINGS_KB
        for vuln in xml(kb_name).findall("RESPONSE/VULN_LIST/VULN")
    }
    fragments = {qid: kb_fragment(entry) for qid, entry in kb_entries.items()}
    validator = schema_validator("finding")
    assets = parse_page(stream(name)).assets
    for asset, host in zip(assets, xml(name).findall("data/HostAsset"), strict=True):
        lines, count = finding_lines(asset, fragments)
        records = [json.loads(line) for line in lines.splitlines()]
        for record in records:
            validator.validate(record)
        assert count == len(records)
        assert records == expected_findings(host, kb_xml), f"asset {asset.id}"
        assert lines == json_lines(finding_records(asset, kb_entries)), f"asset {asset.id}"


def test_real_pages_chain_by_last_id_in_ascending_id_order() -> None:
    page1 = parse_page(stream(HOSTASSET[0]))
    page2 = parse_page(stream(HOSTASSET[1]))
    ids = [asset.id for asset in page1.assets + page2.assets]
    assert (page1.has_more, page1.last_id, page2.has_more, page2.last_id) == (True, 62392781, False, None)
    assert page1.assets[-1].id == page1.last_id and page2.assets[0].id == 62392829
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == 13


def test_real_page_findings_take_cve_and_cvss_from_the_kb_served_beside_it() -> None:
    host = next(asset for asset in parse_page(stream(HOSTASSET[0])).assets if asset.qweb_host_id == "92661485")
    kb = {entry.qid: entry for entry in parse_vuln_list(stream(FINDINGS_KB[0]))}
    lines, _ = finding_lines(host, {qid: kb_fragment(entry) for qid, entry in kb.items()})
    records = {record["qid"]: record for record in map(json.loads, lines.splitlines())}
    assert records[11]["cve_ids"] == ["CVE-2008-4250"] and records[11]["cvss_base"] == 10.0
    assert records[11]["title"] == "Microsoft Windows Server Service Could Allow Remote Code Execution (MS08-067)"
    assert records[11]["host_instance_vuln_id"] == "1977366268"
    assert records[38739]["severity"] == kb[38739].severity and records[38739]["cve_ids"] == list(kb[38739].cve_ids) != []


def test_first_host_asset_vuln_of_a_repeated_qid_wins() -> None:
    """Host 61887225 of the real page 1 lists QIDs 86672, 12230 and 45266 twice, with different instance ids."""
    host = next(asset for asset in parse_page(stream(HOSTASSET[0])).assets if asset.id == 61887225)
    lines, count = finding_lines(host, {})
    records = {record["qid"]: record for record in map(json.loads, lines.splitlines())}
    assert count == len(records) == len({row[0] for row in host.findings.rows()}) < len(host.findings)
    assert [records[qid]["host_instance_vuln_id"] for qid in (86672, 12230, 45266)] == ["1977448897", "1977448898", "1977448899"]


# ------------------------------------------------------------------------------------------------
# Shapes the samples were kept for
# ------------------------------------------------------------------------------------------------


def test_agent_id_keeps_the_samples_line_wrap() -> None:
    """The hand-made agent sample wraps agentId like the PDF it came from; the contract passes agentId on as
    Qualys sent it (stripped), so the record keeps the wrap rather than guess a repair."""
    record = device_record(parse_page(stream("qps_hostasset/doc_sample_agent_hosts.xml")).assets[0], 2)
    assert record["agent_id"] == "2e689bb2-53ab-4a58-be0a-\n a7576964f310"
    assert record["fqdn"] == "something.com" and record["mac_addresses"] == []
    assert record["tags"] == [{"id": "8832525", "name": "Cloud Agent"}]


def test_impossible_mac_dropped_and_padded_date_read() -> None:
    first, second = parse_page(stream("qps_hostasset/doc_sample_azure_hosts.xml")).assets
    assert first.cloud_macs == ["00-0D-3A-C4-8H-3F"] and device_record(first, 2)["mac_addresses"] == []
    assert device_record(second, 2)["mac_addresses"] == ["00:0d:3a:c4:8f:3f"]
    assert second.modified == "2020-08-05T19:00:23Z"  # newline and indentation inside <modified>
    assert device_record(first, 2)["fqdn"] == "sample_resource_fqdn" and device_record(second, 2)["fqdn"] == "TestNullPointer-MN"


def test_cloud_instance_tags_are_not_asset_tags() -> None:
    untagged, tagged = parse_page(stream("qps_hostasset/doc_sample_ec2_hosts.xml")).assets
    assert untagged.tags == [] and tagged.tags == [("10125654", "Cloud Agent")]  # not the six EC2Tags
    assert device_record(tagged, 2)["ip_addresses"] == ["10.97.15.117", "127.0.0.1"]


def test_cdata_with_whitespace_around_it() -> None:
    (entry,) = parse_vuln_list(stream("external/knowledge_base/elastic_mock_kb_qid11830_cve_cdata_whitespace.xml"))
    assert (entry.qid, entry.title, entry.cves) == (11830, "HTTP Security Header Not Detected", "CVE-2022-31629,CVE-2022-31628")
    mock = {entry.qid: entry for entry in parse_vuln_list(stream(FINDINGS_KB[0]))}
    assert mock[11].cves == "CVE-2008-4250" and mock[11].cvss_base == 10.0  # ID CDATA on its own indented line


def test_kb_body_without_xml_declaration() -> None:
    raw = body("external/knowledge_base/tenable_mock_kb_qid6_no_xml_declaration.xml")
    assert raw.startswith(b"\n    <KNOWLEDGE_BASE_VULN_LIST_OUTPUT>")
    assert parse_vuln_list(io.BytesIO(raw)) == [
        KbEntry(6, "DNS Host Name", "Information Gathered", 1, "CVE-1999-0001", None, None, "2018-01-04T17:39:37Z")
    ]


def test_keepalive_comments_inside_the_response() -> None:
    raw = body("external/knowledge_base/real_trimmed_2015_qualysapi_tinykb_keepalive_comments.xml")
    assert raw.index(b"<!-- keep-alive") < raw.index(b"<VULN_LIST>") and raw.rstrip().endswith(b"//-->")
    assert [entry.qid for entry in parse_vuln_list(io.BytesIO(raw))] == [6, 9, 11, 32, 1000]


def test_keepalive_whitespace_before_the_declaration() -> None:
    """Qualys streams newlines before ``<?xml`` on slow calls. No fixture starts so (the two that start with
    whitespace have no declaration), so real bodies with a declaration and a DOCTYPE get the prefix here."""
    kb_name, page_name = KNOWLEDGE_BASE[1], HOSTASSET[2]
    assert body(kb_name).startswith(b"<?xml") and b"<!DOCTYPE" in body(kb_name) and body(page_name).startswith(b"<?xml")
    padding = b"\r\n \n\t"
    assert parse_vuln_list(io.BytesIO(padding + body(kb_name))) == parse_vuln_list(stream(kb_name)) != []
    assert parse_page(io.BytesIO(padding + body(page_name))) == parse_page(stream(page_name))


def test_empty_kb_and_empty_search() -> None:
    assert parse_vuln_list(stream("knowledge_base/real_qg3_empty_no_vuln_list.xml")) == []
    page = parse_page(stream("qps_hostasset/search_count0_no_data.xml"))
    assert (page.assets, page.has_more, page.last_id) == ([], False, None)
    assert parse_count(stream("qps_hostasset/search_count0_no_data.xml")) == 0


# ------------------------------------------------------------------------------------------------
# KnowledgeBase and tags
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", KNOWLEDGE_BASE)
def test_knowledge_base_entries_match_the_xml(name: str) -> None:
    vulns = xml(name).findall("RESPONSE/VULN_LIST/VULN")
    entries = parse_vuln_list(stream(name))
    assert [entry.qid for entry in entries] == [int(vuln.findtext("QID") or "") for vuln in vulns]
    problems: list[str] = []
    for entry, vuln in zip(entries, vulns, strict=True):
        problems += differences(f"QID {entry.qid}", as_fields(entry), expected_kb(vuln))
    assert problems == []
    assert parse_vuln_list(Chunks(body(name), 509)) == entries


def test_kb_paths_read_here_are_declared_by_qualys() -> None:
    """Every element the KnowledgeBase is read through (above, and by the connector) is in Qualys's DTD."""
    dtd = body(KB_DTD).decode()
    children = {
        name: set(re.findall(r"[A-Z][A-Z0-9_]*", model)) - {"PCDATA"}
        for name, model in re.findall(r"<!ELEMENT\s+(\w+)\s+([^>]*)>", dtd)
    }
    paths = [
        "KNOWLEDGE_BASE_VULN_LIST_OUTPUT/RESPONSE/VULN_LIST/VULN",
        "VULN/QID", "VULN/TITLE", "VULN/VULN_TYPE", "VULN/SEVERITY_LEVEL", "VULN/CVE_LIST/CVE/ID",
        "VULN/CVSS/BASE", "VULN/CVSS_V3/BASE", "VULN/LAST_SERVICE_MODIFICATION_DATETIME",
    ]
    steps = [(parent, child) for path in paths for parent, child in zip(path.split("/"), path.split("/")[1:], strict=False)]
    assert [step for step in steps if step[1] not in children.get(step[0], set())] == []


@pytest.mark.parametrize("name", TAGS)
def test_tag_scores_and_paging_match_the_xml(name: str) -> None:
    root = xml(name)
    scores, has_more, last_id = parse_tags(stream(name))
    expected: dict[str | None, int | None] = {}
    for tag in root.findall("data/Tag"):
        score = text(tag, "criticalityScore")
        expected[text(tag, "id")] = int(score) if score in {"1", "2", "3", "4", "5"} else None
    assert scores == expected
    assert (has_more, last_id) == (text(root, "hasMoreRecords") == "true", text(root, "lastId"))


def test_tag_children_before_criticality_score() -> None:
    raw = body(TAGS[0])
    assert raw.index(b"<children>") < raw.index(b"<criticalityScore>3</criticalityScore>")
    assert parse_tags(io.BytesIO(raw)) == ({"71163393": 3}, False, None)  # the three child TagSimple ids are not tags


# ------------------------------------------------------------------------------------------------
# The folder and its list
# ------------------------------------------------------------------------------------------------


def test_every_fixture_is_listed_with_its_sha256() -> None:
    """README.md has a row for every file here, with the sha256 of the bytes as collected: an editor or git
    rewriting line endings (one KnowledgeBase body has CRLF) or trailing spaces fails here."""
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| `([^`]+)` \| [^|]+ \| `([0-9a-f]{16})` \|", readme, re.MULTILINE))
    present = sorted(
        path.relative_to(FIXTURES).as_posix() for path in FIXTURES.rglob("*") if path.is_file()
    )
    present = [name for name in present if name not in ("README.md", ".gitattributes")]
    assert [name for name in present if name not in listed] == []
    assert {name: listed[name] for name in present} == {
        name: hashlib.sha256(body(name)).hexdigest()[:16] for name in present
    }
    used = [*HOSTASSET, *KNOWLEDGE_BASE, *TAGS, KB_DTD]
    assert [name for name in used if name not in present] == []
    assert (FIXTURES / ".gitattributes").read_bytes() == b"* -text\n"
