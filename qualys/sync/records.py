"""Raw Qualys fields -> the connector's device and finding records (the output contract).

Missing values are ``None``, never empty strings; dates are ISO-8601 UTC with a
``Z``; lists are unique and keep Qualys's order.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping

from qualys.api.assets import RawAsset
from qualys.api.knowledge_base import KbEntry
from qualys.timestamps import iso_utc

SOURCE = "qualys"
#: One encoder for every record: json.dumps with options builds a new encoder per call.
ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_HEX12 = re.compile(r"^[0-9a-f]{12}$")


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
    """``asset``'s finding records as JSON Lines, and their count.

    One record per asset x QID (the first HostAssetVuln of a QID wins): ``asset_id``, ``qid``, the
    KnowledgeBase members from ``fragments`` (see :func:`kb_fragment`; all null for a QID the cache
    lacks), ``first_found_at``, ``last_found_at``, ``host_instance_vuln_id``, ``source``. Built from
    strings rather than encoded from a dict: it is the sync's hottest loop. The tests hold a
    dict-based reference and compare the two byte for byte.
    """
    head = f'{{"asset_id":{_string(str(asset.id))},"qid":'
    lines = [
        f"{head}{qid},{fragments.get(qid, _NO_KB_ENTRY)},"
        f'"first_found_at":{_date(first_found)},"last_found_at":{_date(last_found)},'
        f'"host_instance_vuln_id":{_string(host_instance_vuln_id)},"source":"{SOURCE}"}}\n'
        for qid, host_instance_vuln_id, first_found, last_found in _first_per_qid(asset)
    ]
    return "".join(lines), len(lines)


@functools.lru_cache(maxsize=256)
def _date(raw: str | None) -> str:
    """A finding date as JSON. Cached: an agent's findings share a few scan times (1.5 M calls at 20,000 assets)."""
    value = iso_utc(raw)
    return "null" if value is None else f'"{value}"'  # iso_utc's output never needs escaping


def _string(value: str | None) -> str:
    if value is None:
        return "null"
    return f'"{value}"' if value.isascii() and value.isalnum() else ENCODER.encode(value)
