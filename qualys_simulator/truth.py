"""Ground truth: the records a correct sync must write, computed from the data model.

Derived from :class:`~.estate.Estate` directly, never from the rendered XML or from the
project's parser, so a parsing bug cannot hide behind a matching bug in the oracle.
Missing values are ``None``, never ``""``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from .estate import Estate, SimAsset
from .render import iso

#: Qualys' Asset Criticality Score when no tag of the asset carries one.
DEFAULT_CRITICALITY = 2


def _unique(values: Iterable[str | None]) -> list[str]:
    out: list[str] = []
    for value in values:
        if value and value not in out:
            out.append(value)
    return out


def _iso_or_none(dt: datetime | None) -> str | None:
    return iso(dt) if dt is not None else None


def expected_device(estate: Estate, asset: SimAsset) -> dict[str, object]:
    """The device record for one asset."""
    cloud = asset.cloud
    ips = [asset.address, *(i.address for i in asset.interfaces)]
    macs = [i.mac for i in asset.interfaces]
    if cloud is not None:
        ips += [cloud.private_ip, cloud.public_ip]
        macs.append(cloud.mac)
    scores = [t.criticality for t in (estate.tags.get(tid) for tid in asset.tag_ids) if t and t.criticality is not None]
    return {
        "asset_id": str(asset.id),
        "qweb_host_id": str(asset.qweb_host_id) if asset.qweb_host_id is not None else None,
        "agent_id": asset.agent_id or None,
        "name": asset.name,
        "fqdn": asset.fqdn or asset.dns_host_name or None,
        "netbios_name": asset.netbios_name or None,
        "ip_addresses": _unique(ips),
        "mac_addresses": _unique(macs),
        "gateway_addresses": _unique(i.gateway for i in asset.interfaces),
        "os": asset.os or None,
        "criticality": max(scores, default=DEFAULT_CRITICALITY),
        "tags": [{"id": str(tid), "name": estate.tags[tid].name} for tid in asset.tag_ids],
        "tracking_method": asset.tracking_method,
        "created_at": iso(asset.created),
        "modified_at": iso(asset.modified),
        "last_vuln_scan_at": _iso_or_none(asset.last_vuln_scan),
        "source": "qualys",
    }


def expected_findings(estate: Estate, asset: SimAsset) -> list[dict[str, object]]:
    """One finding record per (asset, QID); KB fields are ``None`` for QIDs the KB does not know."""
    out: list[dict[str, object]] = []
    for f in asset.findings:
        vuln = estate.kb.get(f.qid)
        out.append(
            {
                "asset_id": str(asset.id),
                "qid": f.qid,
                "cve_ids": list(vuln.cve_ids) if vuln else [],
                "title": vuln.title if vuln else None,
                "vuln_type": vuln.vuln_type if vuln else None,
                "severity": vuln.severity if vuln else None,
                "cvss_base": vuln.cvss_base if vuln else None,
                "cvss_v3_base": vuln.cvss_v3_base if vuln else None,
                "first_found_at": iso(f.first_found),
                "last_found_at": iso(f.last_found),
                "host_instance_vuln_id": str(f.host_instance_vuln_id),
                "source": "qualys",
            }
        )
    return out


def expected_run(
    estate: Estate, modified_after: datetime
) -> tuple[dict[str, dict[str, object]], dict[tuple[str, int], dict[str, object]]]:
    """Devices by asset id and findings by (asset id, QID) for assets modified strictly after the cutoff."""
    devices: dict[str, dict[str, object]] = {}
    findings: dict[tuple[str, int], dict[str, object]] = {}
    for asset in estate.modified_after(modified_after):
        devices[str(asset.id)] = expected_device(estate, asset)
        for record in expected_findings(estate, asset):
            qid = record["qid"]
            assert isinstance(qid, int)
            findings[(str(asset.id), qid)] = record
    return devices, findings
