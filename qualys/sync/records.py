"""Raw Qualys fields -> the connector's device and finding records (the output contract).

Missing values are ``None``, never empty strings; dates are ISO-8601 UTC with a
``Z``; lists are unique and keep Qualys's order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime

from qualys.api.hostassets import RawAsset
from qualys.api.knowledge_base import KbEntry

SOURCE = "qualys"
#: One encoder for every record: json.dumps with options builds a new encoder per call.
ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_HEX12 = re.compile(r"^[0-9a-f]{12}$")
_ISO_Z = re.compile(r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\dZ\Z")


def unique(values: Iterable[str | None]) -> list[str]:
    """Unique non-empty values, in first-seen order."""
    seen: dict[str, None] = {}
    for value in values:
        if value:
            seen.setdefault(value, None)
    return list(seen)


def normalize_mac(raw: str | None) -> str | None:
    """``aa:bb:cc:dd:ee:ff`` from colon, dash, dot or bare forms; all-zero and malformed -> None.

    Azure sources send ``00-0D-3A-...`` (upper case, dashes); some samples hold
    impossible values such as ``00-0D-3A-C4-8H-3F``.
    """
    if not raw:
        return None
    digits = re.sub(r"[:\-.\s]", "", raw.strip().lower())
    if not _HEX12.match(digits) or digits == "000000000000":
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def parse_datetime(raw: str | None) -> datetime | None:
    """Parse a Qualys timestamp (``2020-04-22T22:13:06Z``, with or without fraction/offset)."""
    if not raw:
        return None
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso_utc(raw: str | datetime | None) -> str | None:
    """``YYYY-MM-DDTHH:MM:SSZ``; Qualys's own form passes straight through (it is most of a sync's dates)."""
    if isinstance(raw, str) and _ISO_Z.match(raw):
        return raw
    value = raw if isinstance(raw, datetime) else parse_datetime(raw)
    if value is None:
        return None
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def device_record(asset: RawAsset, criticality: int) -> dict[str, object]:
    """One device record for ``asset`` with its Qualys criticality."""
    return {
        "asset_id": str(asset.id),
        "qweb_host_id": asset.qweb_host_id,
        "agent_id": asset.agent_id,
        "name": asset.name,
        "fqdn": asset.fqdn or asset.dns_host_name or None,
        "netbios_name": asset.netbios_name,
        "ip_addresses": unique([asset.address, *(i.address for i in asset.interfaces), *asset.cloud_ips]),
        "mac_addresses": unique(normalize_mac(mac) for mac in [*(i.mac for i in asset.interfaces), *asset.cloud_macs]),
        "gateway_addresses": unique(i.gateway for i in asset.interfaces),
        "os": asset.os,
        "criticality": criticality,
        "tags": [{"id": tag_id, "name": name} for tag_id, name in _unique_tags(asset.tags)],
        "tracking_method": asset.tracking_method,
        "created_at": iso_utc(asset.created),
        "modified_at": iso_utc(asset.modified),
        "last_vuln_scan_at": iso_utc(asset.last_vuln_scan),
        "source": SOURCE,
    }


def _unique_tags(tags: Iterable[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    seen: dict[str, str | None] = {}
    for tag_id, name in tags:
        seen.setdefault(tag_id, name)
    return list(seen.items())


def _first_per_qid(asset: RawAsset) -> Iterator[tuple[int, str | None, str | None, str | None]]:
    """(qid, host_instance_vuln_id, first_found, last_found): the first HostAssetVuln of each QID wins."""
    seen: set[int] = set()
    for row in asset.findings.rows():
        if row[0] not in seen:
            seen.add(row[0])
            yield row


def _kb_members(entry: KbEntry | None) -> dict[str, object]:
    """A finding's KnowledgeBase fields, in record order (all null for a QID Qualys did not return)."""
    known = entry is not None and entry.known
    return {
        "cve_ids": entry.cves.split(",") if entry is not None and entry.cves else [],
        "title": entry.title if known and entry else None,
        "vuln_type": entry.vuln_type if known and entry else None,
        "severity": entry.severity if known and entry else None,
        "cvss_base": entry.cvss_base if known and entry else None,
        "cvss_v3_base": entry.cvss_v3_base if known and entry else None,
    }


def finding_records(asset: RawAsset, kb: Mapping[int, KbEntry]) -> list[dict[str, object]]:
    """One record per asset x QID (the first HostAssetVuln of a QID wins), enriched from the KB."""
    return [
        {
            "asset_id": str(asset.id),
            "qid": qid,
            **_kb_members(kb.get(qid)),
            "first_found_at": iso_utc(first_found),
            "last_found_at": iso_utc(last_found),
            "host_instance_vuln_id": host_instance_vuln_id,
            "source": SOURCE,
        }
        for qid, host_instance_vuln_id, first_found, last_found in _first_per_qid(asset)
    ]


def json_line(record: dict[str, object]) -> str:
    """One JSON Lines line."""
    return ENCODER.encode(record) + "\n"


def kb_fragment(entry: KbEntry | None) -> str:
    """A finding's KnowledgeBase members as JSON text (``"cve_ids":[...],...,"cvss_v3_base":...``).

    The same for every finding of a QID, so the sync renders it once per QID and keeps only this
    string in memory (a third of a :class:`KbEntry`), instead of encoding six fields per finding.
    """
    return ENCODER.encode(_kb_members(entry))[1:-1]


_NO_KB_ENTRY = kb_fragment(None)


def finding_lines(asset: RawAsset, fragments: Mapping[int, str]) -> tuple[str, int]:
    """``asset``'s finding records as JSON Lines and their count: byte for byte
    ``json_line`` of each :func:`finding_records` record, with the KB members from ``fragments``."""
    head = f'{{"asset_id":{_string(str(asset.id))},"qid":'
    lines = [
        f"{head}{qid},{fragments.get(qid, _NO_KB_ENTRY)},"
        f'"first_found_at":{_date(first_found)},"last_found_at":{_date(last_found)},'
        f'"host_instance_vuln_id":{_string(host_instance_vuln_id)},"source":"{SOURCE}"}}\n'
        for qid, host_instance_vuln_id, first_found, last_found in _first_per_qid(asset)
    ]
    return "".join(lines), len(lines)


def _date(raw: str | None) -> str:
    value = iso_utc(raw)
    return "null" if value is None else f'"{value}"'  # iso_utc's output never needs escaping


def _string(value: str | None) -> str:
    if value is None:
        return "null"
    return f'"{value}"' if value.isascii() and value.isalnum() else ENCODER.encode(value)
