"""Parsing of real-shaped Qualys bodies (the project's own fixtures, modelled on recorded responses)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from qualys.api.hostasset_search import parse_page
from qualys.api.knowledge_base import KbEntry, parse_vuln_list
from qualys.api.tags import parse_tags
from qualys.api.xmlstream import TruncatedBodyError
from qualys.errors import AuthenticationError, BadRequestError, PermissionDeniedError, ResponseFormatError
from qualys.sync.records import device_record, normalize_mac
from tests.reference_records import finding_records, json_lines

FIXTURES = Path(__file__).parent / "fixtures"


class Trickle(io.RawIOBase):
    """Hands out a few bytes per read, like a slow socket, to exercise incremental parsing."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self._data, self._pos, self._step = data, 0, step

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._data[self._pos : self._pos + min(self._step, size if size > 0 else self._step)]
        self._pos += len(chunk)
        return chunk


def page() -> bytes:
    return (FIXTURES / "hostasset_mixed_page.xml").read_bytes()


def test_hostasset_page_fields_and_paging() -> None:
    parsed = parse_page(Trickle(page()))
    assert parsed.has_more is True
    assert parsed.last_id == 70000103
    assert [a.id for a in parsed.assets] == [70000101, 70000102, 70000103]
    agent = parsed.assets[0]
    assert agent.modified == "2026-11-20T08:30:15Z"  # newline and indentation inside the element
    assert agent.fqdn is None and agent.dns_host_name == "ip-10-1-2-3.ec2.internal"
    assert agent.tags == [("501", "Cloud Agent"), ("502", "Prod & PCI")]  # not the nested EC2 instance tags
    assert agent.agent_id == "76d985f8-855c-4c3c-83c2-7c58b3652ed3"
    assert [f.qid for f in agent.findings] == [38739, 11, 38739]


def test_device_record_normalization() -> None:
    agent, azure, scanner = parse_page(io.BytesIO(page())).assets
    record = device_record(agent, criticality=4)
    assert record == {
        "asset_id": "70000101",
        "qweb_host_id": "93010480",
        "agent_id": "76d985f8-855c-4c3c-83c2-7c58b3652ed3",
        "name": "agent-web-01",
        "fqdn": "ip-10-1-2-3.ec2.internal",
        "netbios_name": None,
        "ip_addresses": ["10.1.2.3", "fe80::42:acff:fe11:2", "54.1.2.3"],
        "mac_addresses": ["06:51:78:0e:6c:91"],
        "gateway_addresses": ["10.1.0.1"],
        "os": "Ubuntu Linux 22.04.3",
        "criticality": 4,
        "tags": [{"id": "501", "name": "Cloud Agent"}, {"id": "502", "name": "Prod & PCI"}],
        "tracking_method": "QAGENT",
        "created_at": "2026-08-01T10:00:00Z",
        "modified_at": "2026-11-20T08:30:15Z",
        "last_vuln_scan_at": "2026-11-19T05:27:53Z",
        "source": "qualys",
    }
    azure_record = device_record(azure, criticality=2)
    assert azure_record["mac_addresses"] == ["00:0d:3a:c4:8b:3f"]  # MAC only in sourceInfo; the "8H" one dropped
    assert azure_record["ip_addresses"] == ["172.16.1.4", "172.17.1.5"]
    assert azure_record["fqdn"] is None and azure_record["gateway_addresses"] == []
    assert azure_record["last_vuln_scan_at"] is None
    scanner_record = device_record(scanner, criticality=2)
    assert scanner_record["netbios_name"] == "FILESRV" and scanner_record["tags"] == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("06:51:78:0E:6C:91", "06:51:78:0e:6c:91"),
        ("00-0D-3A-C4-8B-3F", "00:0d:3a:c4:8b:3f"),
        ("0051.780e.6c91", "00:51:78:0e:6c:91"),
        ("00:00:00:00:00:00", None),
        ("00-0D-3A-C4-8H-3F", None),
        ("06:51:78:0e:6c", None),
        ("", None),
        (None, None),
    ],
)
def test_mac_normalization(raw: str | None, expected: str | None) -> None:
    assert normalize_mac(raw) == expected


def test_knowledge_base_with_doctype_cdata_comments_and_keepalive() -> None:
    entries = {entry.qid: entry for entry in parse_vuln_list(Trickle((FIXTURES / "kb_mixed.xml").read_bytes(), 5))}
    assert set(entries) == {11, 38739, 316760}
    assert entries[11].cve_ids == () and entries[11].cvss_base is None and entries[11].cvss_v3_base is None
    ssh = entries[38739]
    assert ssh.cve_ids == ("CVE-2008-5161", "CVE-2023-48795")  # upper-cased, deduplicated, empty dropped
    assert ssh.title == "Deprecated SSH Cryptographic Settings & <weak> ciphers — über"
    assert (ssh.severity, ssh.vuln_type, ssh.cvss_base, ssh.cvss_v3_base) == (3, "Vulnerability", 4.3, 5.9)
    assert entries[316760].cve_ids == ("CVE-2019-2602",)  # vendor references are not CVE_LIST


def test_findings_one_per_qid_enriched() -> None:
    agent = parse_page(io.BytesIO(page())).assets[0]
    kb = {entry.qid: entry for entry in parse_vuln_list(io.BytesIO((FIXTURES / "kb_mixed.xml").read_bytes()))}
    records = finding_records(agent, kb)
    assert [(r["qid"], r["host_instance_vuln_id"]) for r in records] == [(38739, "2002234779"), (11, "2002234780")]
    assert records[0]["cve_ids"] == ["CVE-2008-5161", "CVE-2023-48795"]
    assert records[1]["cve_ids"] == [] and records[1]["title"] == "Hidden RPC Services"
    unknown = finding_records(agent, {38739: KbEntry(38739, known=False)})
    assert unknown[0]["title"] is None and unknown[0]["severity"] is None and unknown[0]["cve_ids"] == []


def test_finding_lines_are_the_encoded_finding_records_byte_for_byte() -> None:
    from dataclasses import replace

    from qualys.sync.records import finding_lines, kb_fragment

    agent = parse_page(io.BytesIO(page())).assets[0]
    kb = {entry.qid: entry for entry in parse_vuln_list(io.BytesIO((FIXTURES / "kb_mixed.xml").read_bytes()))}
    tricky = replace(kb[38739], title='quote " backslash \\ newline \n tab \t nul-ish \x01 </script> \u2028 ü 𝄞', severity=None)
    for variant in ({**kb, 38739: tricky}, kb, {}, {38739: KbEntry(38739, known=False)}):
        expected = json_lines(finding_records(agent, variant))
        lines, count = finding_lines(agent, {qid: kb_fragment(entry) for qid, entry in variant.items()})
        assert lines == expected and count == len(finding_records(agent, variant))
        for line in lines.split("\n")[:-1]:  # not splitlines(): U+2028 is valid, unescaped, inside a JSON string
            json.loads(line)
    odd = replace(agent, id=-7)
    assert finding_lines(odd, {})[0] == json_lines(finding_records(odd, {}))


def test_empty_kb_and_empty_search() -> None:
    empty_kb = b"""<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE KNOWLEDGE_BASE_VULN_LIST_OUTPUT SYSTEM "https://qualysapi.qg3.apps.qualys.com/api/2.0/fo/knowledge_base/vuln/knowledge_base_vuln_list_output.dtd">
<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE><DATETIME>2026-10-07T17:45:59Z</DATETIME></RESPONSE></KNOWLEDGE_BASE_VULN_LIST_OUTPUT>
<!-- keep-alive for KNOWLEDGE_BASE_VULN_LIST_OUTPUT  -->"""
    assert parse_vuln_list(io.BytesIO(empty_kb)) == []
    no_match = b"""<?xml version="1.0" encoding="UTF-8"?>
<ServiceResponse xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><responseCode>SUCCESS</responseCode><count>0</count></ServiceResponse>"""
    result = parse_page(io.BytesIO(no_match))
    assert result.assets == [] and result.has_more is False and result.last_id is None


def _qps_error(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><ServiceResponse><responseCode>' + code + "</responseCode>"
        "<responseErrorDetails><errorMessage>" + message + "</errorMessage><errorResolution>x</errorResolution>"
        "</responseErrorDetails></ServiceResponse>"
    ).encode()


@pytest.mark.parametrize(
    ("code", "error_type"),
    [("UNAUTHORIZED", PermissionDeniedError), ("INVALID_CREDENTIALS", AuthenticationError), ("INVALID_REQUEST", BadRequestError)],
)
def test_qps_errors_on_http_200_are_typed(code: str, error_type: type[Exception]) -> None:
    with pytest.raises(error_type) as caught:
        parse_page(io.BytesIO(_qps_error(code, "You are not authorized to access the application through the API.")))
    assert "\n" not in str(caught.value)


def test_tag_criticality_scores() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<ServiceResponse><responseCode>SUCCESS</responseCode><count>3</count><hasMoreRecords>false</hasMoreRecords><data>
<Tag><id>501</id><name>Cloud Agent</name><criticalityScore>4</criticalityScore>
<children><list><TagSimple><id>9</id><name>child</name></TagSimple></list></children></Tag>
<Tag><id>502</id><name>Prod</name></Tag>
<Tag><id>503</id><name>Bad</name><criticalityScore>9</criticalityScore></Tag>
</data></ServiceResponse>"""
    scores, has_more, _ = parse_tags(io.BytesIO(body))
    assert scores == {"501": 4, "502": None, "503": None} and has_more is False


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<ServiceResponse><responseCode>&lol2;</responseCode></ServiceResponse>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE>&xxe;</RESPONSE></KNOWLEDGE_BASE_VULN_LIST_OUTPUT>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_hostile_xml_is_refused(body: bytes) -> None:
    parser = parse_page if b"ServiceResponse" in body else parse_vuln_list
    with pytest.raises(ResponseFormatError, match="forbidden XML"):
        parser(io.BytesIO(body))


@pytest.mark.parametrize("doctype", [b"", b'<!DOCTYPE ServiceResponse SYSTEM "https://example.invalid/x.dtd">'])
def test_undefined_entities_fail_and_predefined_ones_expand(doctype: bytes) -> None:
    def body(name: bytes) -> bytes:
        return (
            b'<?xml version="1.0"?>' + doctype + b"<ServiceResponse><responseCode>SUCCESS</responseCode><data>"
            b"<HostAsset><id>7</id><name>" + name + b"</name></HostAsset></data></ServiceResponse>"
        )

    # with an external DTD expat skips what it cannot define: the connector refuses rather than drops text
    with pytest.raises(ResponseFormatError, match="undefined"):
        parse_page(io.BytesIO(body(b"a&nbsp;b")))
    assert parse_page(io.BytesIO(body(b"a&amp;b&#233;&lt;"))).assets[0].name == "a&b\u00e9<"


def test_truncated_and_non_xml_bodies() -> None:
    with pytest.raises(TruncatedBodyError):
        parse_page(io.BytesIO(page()[: len(page()) // 2]))
    with pytest.raises(ResponseFormatError, match="not well-formed"):
        parse_page(io.BytesIO(b"Service temporarily unavailable"))
    with pytest.raises(ResponseFormatError, match="Expected a Qualys ServiceResponse"):
        parse_page(io.BytesIO(b"<html><body>login</body></html>"))


@pytest.mark.parametrize("step", [1, 2, 3, 5, 8, 11, 64, 4096])
def test_section_skipper_drops_inventory_across_any_chunk_boundary(step: int) -> None:
    import re

    from qualys.api.xmlstream import SectionSkipper

    body = page()
    expected = re.sub(rb"<(software|openPort)>.*?</\1>", b"", body, flags=re.S)
    skipper = SectionSkipper(Trickle(body, step), ("software", "openPort"))
    out = b"".join(iter(lambda: skipper.read(step), b""))
    assert out == expected and b"HostAssetSoftware" not in out and b"<vuln>" in out
    assert parse_page(Trickle(body, step)).assets[0].findings == parse_page(io.BytesIO(body)).assets[0].findings


def test_section_skipper_leaves_empty_elements_and_reports_truncation() -> None:
    from qualys.api.xmlstream import SectionSkipper

    text = b"<a><software/><openPort>1</openPort><b>x</b></a>"
    skipper = SectionSkipper(io.BytesIO(text), ("software", "openPort"))
    assert b"".join(iter(lambda: skipper.read(4), b"")) == b"<a><software/><b>x</b></a>"
    cut = page()[: page().index(b"<software>") + 40]  # the connection dies inside a skipped list
    with pytest.raises(TruncatedBodyError):
        parse_page(io.BytesIO(cut))
