"""Host assets from the Asset Management API (``/qps/rest/2.0/search/am/hostasset``).

Pages are fetched with keyset paging (``id GREATER lastId`` while
``hasMoreRecords`` is true; qualys-api.md §2.4): stable while assets change,
unlike offset paging. Each page is parsed incrementally and reduced to the few
fields the connector keeps, so an agent host's ~100 KB of software and port
lists is dropped as it streams by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from qualys.client import QualysClient, qps_response_error
from qualys.errors import ResponseFormatError
from qualys.xmlstream import Readable, child_text, iter_events, text_of

HOSTASSET_SEARCH_PATH = "/qps/rest/2.0/search/am/hostasset"
ENDPOINT = "hostasset"
#: Children of HostAsset that hold bulky inventory we do not keep; cleared as they end.
_BULK_ITEMS = frozenset(
    {"HostAssetSoftware", "HostAssetOpenPort", "HostAssetAccount", "HostAssetVolume", "HostAssetProcessor"}
)


@dataclass(frozen=True)
class RawInterface:
    address: str | None
    mac: str | None
    gateway: str | None


@dataclass(frozen=True)
class RawFinding:
    qid: int
    host_instance_vuln_id: str | None
    first_found: str | None
    last_found: str | None


@dataclass
class RawAsset:
    """The fields of one HostAsset the connector keeps, as Qualys sent them (stripped)."""

    id: int
    qweb_host_id: str | None = None
    agent_id: str | None = None
    name: str | None = None
    fqdn: str | None = None
    dns_host_name: str | None = None
    netbios_name: str | None = None
    address: str | None = None
    os: str | None = None
    tracking_method: str | None = None
    created: str | None = None
    modified: str | None = None
    last_vuln_scan: str | None = None
    tags: list[tuple[str, str | None]] = field(default_factory=list)
    interfaces: list[RawInterface] = field(default_factory=list)
    cloud_ips: list[str] = field(default_factory=list)
    cloud_macs: list[str] = field(default_factory=list)
    findings: list[RawFinding] = field(default_factory=list)


@dataclass
class AssetPage:
    assets: list[RawAsset]
    has_more: bool
    last_id: int | None


def search_request(modified_after: str, page_size: int, after_id: int | None, before_id: int | None = None) -> bytes:
    """The ServiceRequest body: ``updated`` (the modified-date search field) and keyset criteria.

    ``updated`` is the field real incremental clients filter on (IBM's
    connector, qualysdk); the response element is ``modified``, which the
    sync re-checks client-side (qualys-api.md §2.3).
    """
    criteria = [f'<Criteria field="updated" operator="GREATER">{escape(modified_after)}</Criteria>']
    if after_id is not None:
        criteria.append(f'<Criteria field="id" operator="GREATER">{after_id}</Criteria>')
    if before_id is not None:
        criteria.append(f'<Criteria field="id" operator="LESSER">{before_id}</Criteria>')
    return (
        "<ServiceRequest><preferences>"
        f"<limitResults>{page_size}</limitResults>"
        f"</preferences><filters>{''.join(criteria)}</filters></ServiceRequest>"
    ).encode()


def fetch_page(
    client: QualysClient, modified_after: str, page_size: int, after_id: int | None, before_id: int | None = None
) -> AssetPage:
    """One page of host assets modified after ``modified_after`` with id > ``after_id``."""
    return client.call(
        "POST",
        HOSTASSET_SEARCH_PATH,
        parse_page,
        data=search_request(modified_after, page_size, after_id, before_id),
        content_type="text/xml",
        endpoint=ENDPOINT,
    )


def parse_page(body: Readable) -> AssetPage:
    """Parse a hostasset search response without holding more than one asset in memory."""
    stack: list[str] = []
    data_element: Element | None = None
    response_code: str | None = None
    error_message: str | None = None
    has_more = False
    last_id: int | None = None
    assets: list[RawAsset] = []
    for event, element in iter_events(body):
        if event == "start":
            stack.append(element.tag)
            if len(stack) == 1 and element.tag != "ServiceResponse":
                raise ResponseFormatError(
                    f"Expected a Qualys ServiceResponse, got <{element.tag}>.",
                    "Check QUALYS_API_URL: it must be the Qualys API server.",
                )
            if len(stack) == 2 and element.tag == "data":
                data_element = element
            continue
        depth = len(stack)
        stack.pop()
        if depth == 2:
            if element.tag == "responseCode":
                response_code = text_of(element)
            elif element.tag == "hasMoreRecords":
                has_more = (text_of(element) or "").lower() == "true"
            elif element.tag == "lastId":
                last_id = _int_or_none(text_of(element))
            elif element.tag == "responseErrorDetails":
                error_message = child_text(element, "errorMessage")
        elif depth == 3 and element.tag == "HostAsset" and data_element is not None:
            assets.append(asset_from_element(element))
            data_element.remove(element)
        elif element.tag in _BULK_ITEMS:
            element.clear()
    if response_code != "SUCCESS":
        raise qps_response_error(response_code or "(none)", error_message, ENDPOINT)
    return AssetPage(assets, has_more, last_id)


def asset_from_element(host: Element) -> RawAsset:
    """Pick the connector's fields out of one ``<HostAsset>`` element."""
    asset_id = _int_or_none(child_text(host, "id"))
    if asset_id is None:
        raise ResponseFormatError("A Qualys HostAsset has no numeric <id>.", "Report this response to the maintainers.")
    asset = RawAsset(
        id=asset_id,
        qweb_host_id=child_text(host, "qwebHostId"),
        agent_id=child_text(host, "agentInfo/agentId"),
        name=child_text(host, "name"),
        fqdn=child_text(host, "fqdn"),
        dns_host_name=child_text(host, "dnsHostName"),
        netbios_name=child_text(host, "netbiosName"),
        address=child_text(host, "address"),
        os=child_text(host, "os"),
        tracking_method=child_text(host, "trackingMethod"),
        created=child_text(host, "created"),
        modified=child_text(host, "modified"),
        last_vuln_scan=child_text(host, "lastVulnScan"),
    )
    # Direct children only: sourceInfo nests its own <tags> (EC2/Azure instance tags).
    for tag in host.iterfind("tags/list/TagSimple"):
        tag_id = child_text(tag, "id")
        if tag_id:
            asset.tags.append((tag_id, child_text(tag, "name")))
    for interface in host.iterfind("networkInterface/list/HostAssetInterface"):
        asset.interfaces.append(
            RawInterface(
                address=child_text(interface, "address"),
                mac=child_text(interface, "macAddress"),
                gateway=child_text(interface, "gatewayAddress"),
            )
        )
    for source in host.iterfind("sourceInfo/list/*"):
        for ip_field in ("privateIpAddress", "publicIpAddress"):
            ip = child_text(source, ip_field)
            if ip:
                asset.cloud_ips.append(ip)
        mac = child_text(source, "macAddress")
        if mac:
            asset.cloud_macs.append(mac)
    for vuln in host.iterfind("vuln/list/HostAssetVuln"):
        qid = _int_or_none(child_text(vuln, "qid"))
        if qid is None:
            continue
        asset.findings.append(
            RawFinding(
                qid=qid,
                host_instance_vuln_id=child_text(vuln, "hostInstanceVulnId"),
                first_found=child_text(vuln, "firstFound"),
                last_found=child_text(vuln, "lastFound"),
            )
        )
    return asset


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
