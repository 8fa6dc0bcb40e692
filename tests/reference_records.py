"""A plain, dict-based statement of the finding record (the output contract), for comparing the
connector's fast string-built lines (``qualys.sync.records.finding_lines``) against, byte for byte."""

from __future__ import annotations

import json
from collections.abc import Mapping

from qualys.api.assets import RawAsset
from qualys.api.knowledge_base import KbEntry
from qualys.timestamps import iso_utc


def finding_records(asset: RawAsset, kb: Mapping[int, KbEntry]) -> list[dict[str, object]]:
    """One record per asset x QID (the first HostAssetVuln of a QID wins), enriched from the KnowledgeBase."""
    records: list[dict[str, object]] = []
    seen: set[int] = set()
    for qid, host_instance_vuln_id, first_found, last_found in asset.findings.rows():
        if qid in seen:
            continue
        seen.add(qid)
        entry = kb.get(qid)
        known = entry if entry is not None and entry.known else None
        records.append({
            "asset_id": str(asset.id),
            "qid": qid,
            "cve_ids": list(entry.cve_ids) if entry is not None else [],
            "title": known.title if known else None,
            "vuln_type": known.vuln_type if known else None,
            "severity": known.severity if known else None,
            "cvss_base": known.cvss_base if known else None,
            "cvss_v3_base": known.cvss_v3_base if known else None,
            "first_found_at": iso_utc(first_found),
            "last_found_at": iso_utc(last_found),
            "host_instance_vuln_id": host_instance_vuln_id,
            "source": "qualys",
        })
    return records


def json_lines(records: list[dict[str, object]]) -> str:
    """JSON Lines as the contract writes them: UTF-8 text (not ASCII escapes), no spaces."""
    return "".join(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n" for record in records)
