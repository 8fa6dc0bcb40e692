"""Host assets from the Asset Management API (``/qps/rest/2.0/search/am/hostasset``).

Pages are fetched with keyset paging (``id GREATER lastId`` while
``hasMoreRecords`` is true; qualys-api.md §2.4): stable while assets change,
unlike offset paging. Each page is parsed incrementally and reduced to the few
fields the connector keeps, so an agent host's ~100 KB of software and port
lists is dropped as it streams by.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pyexpat import XMLParserType
from xml.sax.saxutils import escape

from qualys.api.client import QualysClient, qps_response_error
from qualys.api.xmlstream import Readable, SectionSkipper, feed_target
from qualys.errors import ResponseFormatError

HOSTASSET_SEARCH_PATH = "/qps/rest/2.0/search/am/hostasset"
ENDPOINT = "hostasset"


@dataclass(frozen=True, slots=True)
class RawInterface:
    address: str | None
    mac: str | None
    gateway: str | None


@dataclass(frozen=True, slots=True)
class RawFinding:
    qid: int
    host_instance_vuln_id: str | None
    first_found: str | None
    last_found: str | None


#: One finding, as :meth:`Findings.rows` yields it: (qid, host_instance_vuln_id, first_found, last_found).
FindingRow = tuple[int, str | None, str | None, str | None]
#: Joins an asset's hostInstanceVulnIds: NUL cannot occur in XML text; "" stands for a missing id
#: (the parser turns empty text into None, never "").
_ID_SEPARATOR = "\0"
#: QIDs are kept as 64-bit integers (array "q"); a larger number is no QID, dropped like a non-numeric one.
_QID_LIMIT = 2**63


class Findings:
    """An asset's findings, packed into columns: about 35 bytes a finding instead of 170.

    A sync holds thousands of assets of ~40 findings each while their new QIDs wait for a whole
    KnowledgeBase batch; as a RawFinding object per finding (with its own int and id string) they
    were most of the sync's memory. Here the QIDs are machine integers, the ids one string, the
    dates references to strings shared on the page. Iterating yields RawFinding objects; :meth:`rows`
    and :attr:`qids` read the columns without building them.
    """

    __slots__ = ("_ids", "first_found", "last_found", "qids")

    def __init__(self, rows: Iterable[FindingRow] = ()) -> None:
        items = list(rows)
        self.qids: array[int] = array("q", [row[0] for row in items])
        self._ids = _ID_SEPARATOR.join(row[1] or "" for row in items)
        self.first_found: tuple[str | None, ...] = tuple(row[2] for row in items)
        self.last_found: tuple[str | None, ...] = tuple(row[3] for row in items)

    @classmethod
    def from_columns(
        cls, qids: Iterable[int], ids: str, first_found: Iterable[str | None], last_found: Iterable[str | None]
    ) -> Findings:
        """The inverse of :meth:`columns`."""
        findings = cls()
        findings.qids = array("q", qids)
        findings._ids = ids
        findings.first_found = tuple(first_found)
        findings.last_found = tuple(last_found)
        count = len(findings.qids)
        id_count = ids.count(_ID_SEPARATOR) + 1 if count or ids else 0  # "" is one missing id, or none at all
        if {len(findings.first_found), len(findings.last_found), id_count} != {count}:
            raise ValueError("finding columns of different lengths")
        return findings

    def columns(self) -> tuple[list[int], str, tuple[str | None, ...], tuple[str | None, ...]]:
        """(qids, the hostInstanceVulnIds joined by NUL, first found dates, last found dates)."""
        return self.qids.tolist(), self._ids, self.first_found, self.last_found

    def rows(self) -> Iterator[FindingRow]:
        """(qid, host_instance_vuln_id, first_found, last_found) per finding, in Qualys's order."""
        ids = [value or None for value in self._ids.split(_ID_SEPARATOR)] if self.qids else []
        return zip(self.qids, ids, self.first_found, self.last_found, strict=True)

    def __iter__(self) -> Iterator[RawFinding]:
        return (RawFinding(*row) for row in self.rows())

    def __len__(self) -> int:
        return len(self.qids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Findings):
            return NotImplemented
        return list(self.rows()) == list(other.rows())

    def __repr__(self) -> str:
        return f"Findings({list(self.rows())!r})"


@dataclass(slots=True)
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
    findings: Findings = field(default_factory=Findings)


@dataclass(slots=True)
class AssetPage:
    assets: list[RawAsset]
    has_more: bool
    last_id: int | None


def search_request(
    modified_after: str,
    page_size: int,
    after_id: int | None,
    before_id: int | None = None,
    *,
    start_offset: int | None = None,
) -> bytes:
    """The ServiceRequest body: ``updated`` (the modified-date search field) and keyset criteria.

    ``updated`` is the field real incremental clients filter on (IBM's
    connector, qualysdk); the response element is ``modified``, which the
    sync re-checks client-side (qualys-api.md §2.3). ``before_id`` bounds an id
    range (:mod:`qualys.api.partitions`); ``start_offset`` (1-based) is only used by
    its probe, never for paging.
    """
    criteria = [f'<Criteria field="updated" operator="GREATER">{escape(modified_after)}</Criteria>']
    if after_id is not None:
        criteria.append(f'<Criteria field="id" operator="GREATER">{after_id}</Criteria>')
    if before_id is not None:
        criteria.append(f'<Criteria field="id" operator="LESSER">{before_id}</Criteria>')
    offset = f"<startFromOffset>{start_offset}</startFromOffset>" if start_offset is not None else ""
    return (
        f"<ServiceRequest><preferences><limitResults>{page_size}</limitResults>{offset}"
        f"</preferences><filters>{''.join(criteria)}</filters></ServiceRequest>"
    ).encode()


def fetch_page(
    client: QualysClient,
    modified_after: str,
    page_size: int,
    after_id: int | None,
    before_id: int | None = None,
    on_header: HeaderCallback | None = None,
) -> AssetPage:
    """One page of host assets modified after ``modified_after`` with id > ``after_id``.

    ``on_header(has_more, last_id)`` is called as soon as the page's header is
    read, before its records: the caller may request the next page meanwhile.
    """
    return client.call(
        "POST",
        HOSTASSET_SEARCH_PATH,
        lambda body: parse_page(body, on_header),
        data=search_request(modified_after, page_size, after_id, before_id),
        content_type="text/xml",
        endpoint=ENDPOINT,
    )


#: HostAsset children kept as text, by element name -> RawAsset attribute.
_SCALARS = {
    "id": "id", "name": "name", "created": "created", "modified": "modified", "qwebHostId": "qweb_host_id",
    "fqdn": "fqdn", "dnsHostName": "dns_host_name", "netbiosName": "netbios_name", "address": "address",
    "os": "os", "trackingMethod": "tracking_method", "lastVulnScan": "last_vuln_scan",
}
#: HostAsset/<section>/list/<Item>/<field>: the fields kept per list item. Only direct children of
#: HostAsset count, so the <tags> nested in sourceInfo (EC2/Azure instance tags) are never mistaken.
_SECTIONS = {
    "tags": frozenset({"id", "name"}),
    "networkInterface": frozenset({"address", "macAddress", "gatewayAddress"}),
    "sourceInfo": frozenset({"privateIpAddress", "publicIpAddress", "macAddress"}),
    "vuln": frozenset({"qid", "hostInstanceVulnId", "firstFound", "lastFound"}),
}
#: Inventory lists dropped from the byte stream unparsed (see SectionSkipper): the bulk of agent hosts.
_SKIPPED_SECTIONS = ("software", "openPort")
_ROOT_FIELDS = frozenset({"responseCode", "hasMoreRecords", "lastId"})
HeaderCallback = Callable[[bool, "int | None"], None]


class _HostAssetTarget:
    """Parser callbacks for a hostasset search: keeps the connector's fields, lets the rest stream by.

    Depths: 1 ServiceResponse, 2 data/responseCode/..., 3 HostAsset, 4 its fields,
    5 agentInfo/agentId or <section>/list, 6 list item, 7 item field.
    """

    def __init__(self, on_header: HeaderCallback | None) -> None:
        self.path: list[str] = []
        self.text: list[str] | None = None
        self._parser: XMLParserType  # set by attach() before the first event
        self.root: dict[str, str | None] = {}
        self.error_message: str | None = None
        self.assets: list[RawAsset] = []
        self.fields: dict[str, str | None] = {}
        self.item: dict[str, str | None] = {}
        self.section_items: dict[str, list[dict[str, str | None]]] = {}
        self.shared: dict[str, str] = {}  # one string per distinct value on the page, see _shared
        self._on_header = on_header
        self._header_sent = False

    def attach(self, parser: XMLParserType) -> None:
        """Text is only wanted inside a few leaf elements: the text handler is switched on just for them."""
        self._parser = parser
        parser.CharacterDataHandler = None

    def _capture(self) -> None:
        self.text = []
        self._parser.CharacterDataHandler = self.text.append

    def start(self, tag: str, attrib: list[str], /) -> None:
        path = self.path
        path.append(tag)
        depth = len(path)
        # Ordered by frequency: the vuln list's leaves (depth 7) and items (depth 6) are most elements.
        if depth == 7:
            wanted = _SECTIONS.get(path[3])
            if wanted is not None and tag in wanted and path[4] == "list" and path[2] == "HostAsset":
                self._capture()
        elif depth == 6:
            self.item = {}
        elif depth == 4:
            if tag in _SCALARS and path[2] == "HostAsset":
                self._capture()
        elif depth == 5:
            if tag == "agentId" and path[3] == "agentInfo":
                self._capture()
        elif depth == 3:
            if tag == "HostAsset":
                self.fields = {}
                self.section_items = {}
            elif tag == "errorMessage" and path[1] == "responseErrorDetails":
                self._capture()
        elif depth == 2:
            if tag == "data":
                self.header()
            elif tag in _ROOT_FIELDS:
                self._capture()
        elif depth == 1 and tag != "ServiceResponse":
            raise ResponseFormatError(
                f"Expected a Qualys ServiceResponse, got <{tag}>.",
                "Check the API URL (QUALYS_API_URL): it must be the Qualys API server.",
            )

    def data(self, text: str, /) -> None:  # unused: attach() routes text straight into self.text
        if self.text is not None:
            self.text.append(text)

    def end(self, tag: str, /) -> None:
        path = self.path
        depth = len(path)
        if self.text is not None:
            value = "".join(self.text).strip() or None
            self.text = None
            self._parser.CharacterDataHandler = None
            if depth == 7:
                self.item[tag] = value
            elif depth == 4 or depth == 5:
                self.fields[tag] = value
            elif depth == 2:
                self.root[tag] = value
            else:
                self.error_message = value
        elif depth == 6:
            if path[2] == "HostAsset" and path[3] in _SECTIONS:
                self.section_items.setdefault(path[3], []).append(self.item)
        elif depth == 3 and tag == "HostAsset":
            self.assets.append(_asset_from_fields(self.fields, self.section_items, self.shared))
        path.pop()

    def close(self) -> None:
        self.header()

    @property
    def has_more(self) -> bool:
        return (self.root.get("hasMoreRecords") or "").lower() == "true"

    @property
    def last_id(self) -> int | None:
        return _int_or_none(self.root.get("lastId"))

    def header(self) -> None:
        """``hasMoreRecords``/``lastId`` precede ``<data>``: the next page can be requested now."""
        if not self._header_sent and self._on_header is not None and self.root.get("responseCode") == "SUCCESS":
            self._header_sent = True
            self._on_header(self.has_more, self.last_id)


def parse_page(body: Readable, on_header: HeaderCallback | None = None) -> AssetPage:
    """Parse a hostasset search response, keeping only the connector's fields (memory flat in page size)."""
    target = _HostAssetTarget(on_header)
    feed_target(SectionSkipper(body, _SKIPPED_SECTIONS), target)
    response_code = target.root.get("responseCode")
    if response_code != "SUCCESS":
        raise qps_response_error(response_code or "(none)", target.error_message, ENDPOINT)
    return AssetPage(target.assets, target.has_more, target.last_id)


def _asset_from_fields(
    fields: dict[str, str | None], sections: dict[str, list[dict[str, str | None]]], shared: dict[str, str]
) -> RawAsset:
    asset_id = _int_or_none(fields.get("id"))
    if asset_id is None:
        raise ResponseFormatError("A Qualys HostAsset has no numeric <id>.", "Report this response to the maintainers.")
    asset = RawAsset(
        id=asset_id,
        qweb_host_id=fields.get("qwebHostId"),
        agent_id=fields.get("agentId"),
        name=fields.get("name"),
        fqdn=fields.get("fqdn"),
        dns_host_name=fields.get("dnsHostName"),
        netbios_name=fields.get("netbiosName"),
        address=fields.get("address"),
        os=_shared(fields.get("os"), shared),
        tracking_method=_shared(fields.get("trackingMethod"), shared),
        created=fields.get("created"),
        modified=fields.get("modified"),
        last_vuln_scan=fields.get("lastVulnScan"),
    )
    for tag in sections.get("tags", ()):
        if tag_id := tag.get("id"):
            asset.tags.append((shared.setdefault(tag_id, tag_id), _shared(tag.get("name"), shared)))
    for interface in sections.get("networkInterface", ()):
        asset.interfaces.append(
            RawInterface(
                address=interface.get("address"), mac=interface.get("macAddress"), gateway=interface.get("gatewayAddress")
            )
        )
    for source in sections.get("sourceInfo", ()):
        asset.cloud_ips.extend(ip for ip in (source.get("privateIpAddress"), source.get("publicIpAddress")) if ip)
        if source.get("macAddress"):
            asset.cloud_macs.append(str(source["macAddress"]))
    asset.findings = Findings(
        (qid, vuln.get("hostInstanceVulnId"), _shared(vuln.get("firstFound"), shared), _shared(vuln.get("lastFound"), shared))
        for vuln in sections.get("vuln", ())
        if (qid := _int_or_none(vuln.get("qid"))) is not None and -_QID_LIMIT <= qid < _QID_LIMIT
    )
    return asset


def _shared(value: str | None, seen: dict[str, str]) -> str | None:
    """One string object per distinct value on a page: a scan stamps dozens of findings with the same dates,
    and tags, OS names and tracking methods repeat from asset to asset.

    A table per page, not sys.intern: the interpreter's table of interned strings grew with every date of the run.
    """
    return seen.setdefault(value, value) if value is not None else None


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
