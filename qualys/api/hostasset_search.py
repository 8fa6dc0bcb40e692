"""Host assets from the Asset Management API (``/qps/rest/2.0/search/am/hostasset``).

Pages are fetched with keyset paging (``id GREATER lastId`` while ``hasMoreRecords`` is
true; docs/qualys-api.md §2.4): stable while assets change, unlike offset paging. Each page
is parsed as it streams in and reduced to the few fields the connector keeps, so an agent
host's ~100 KB of software and port lists is dropped as it goes by.

Qualys sends ``hasMoreRecords`` and ``lastId`` before the records, so
:class:`HostAssetReader` reads a page in two steps: the header first (the caller may ask
for the next page then), the assets after.
"""

from __future__ import annotations

from dataclasses import dataclass
from pyexpat import XMLParserType

from qualys.api.assets import QID_LIMIT, AssetPage, Findings, RawAsset, RawInterface, shared
from qualys.api.client import QualysClient
from qualys.api.qps import Criterion, FieldLimit, Fields, search
from qualys.api.refusals import qps_response_error
from qualys.api.xmlstream import Readable, SectionSkipper, TargetFeeder
from qualys.errors import ResponseFormatError

HOSTASSET_SEARCH_PATH = "/qps/rest/2.0/search/am/hostasset"
ENDPOINT = "hostasset"


@dataclass(frozen=True, slots=True)
class PageHeader:
    """What precedes the records: whether more pages follow, and the keyset position after this one."""

    has_more: bool
    last_id: int | None


def search_criteria(modified_after: str, after_id: int | None = None, before_id: int | None = None) -> list[Criterion]:
    """``updated`` (the modified-date search field) and the keyset bounds of a page.

    ``updated`` is the field real incremental clients filter on (IBM's connector, qualysdk);
    the response element is ``modified``, which the sync re-checks client-side
    (docs/qualys-api.md §2.3). ``before_id`` bounds an id range (:mod:`qualys.api.partitions`).
    """
    criteria = [Criterion("updated", "GREATER", modified_after)]
    if after_id is not None:
        criteria.append(Criterion("id", "GREATER", str(after_id)))
    if before_id is not None:
        criteria.append(Criterion("id", "LESSER", str(before_id)))
    return criteria


def fetch_page(
    client: QualysClient,
    modified_after: str,
    page_size: int,
    after_id: int | None,
    before_id: int | None = None,
    limit: FieldLimit | None = None,
) -> AssetPage:
    """One page of host assets modified after ``modified_after`` with ``after_id < id < before_id``."""
    criteria = search_criteria(modified_after, after_id, before_id)
    return search(client, HOSTASSET_SEARCH_PATH, ENDPOINT, criteria, page_size, parse_page, fields=HOSTASSET_FIELDS, limit=limit)


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
#: The element of one list item per section; None: items of several kinds (EC2, Azure, GCP, ... sources).
_SECTION_ITEMS = {"tags": "TagSimple", "networkInterface": "HostAssetInterface", "sourceInfo": None, "vuln": "HostAssetVuln"}
#: Inventory lists dropped from the byte stream unparsed (see SectionSkipper): the bulk of agent hosts.
_SKIPPED_SECTIONS = ("software", "openPort")


def _fields() -> Fields:
    """The ``fields`` to ask for: exactly what the parser keeps, read from its own tables (one source).

    A section whose items come in several kinds (``sourceInfo``) is asked for whole: naming each kind
    would silently lose the addresses of a kind Qualys adds later.
    """
    fields: dict[str, Fields | None] = dict.fromkeys(_SCALARS)
    fields["agentInfo"] = {"agentId": None}
    for section, wanted in _SECTIONS.items():
        item = _SECTION_ITEMS[section]
        fields[section] = None if item is None else {"list": {item: dict.fromkeys(sorted(wanted))}}
    return {"HostAsset": fields}


#: ``fields`` of a hostasset search (QUALYS_LIMIT_FIELDS): an agent host drops from ~100 KB to its findings.
HOSTASSET_FIELDS = _fields()
#: ``fields`` of the id-range probe, which only needs the id.
ID_FIELDS: Fields = {"HostAsset": {"id": None}}
_ROOT_FIELDS = frozenset({"responseCode", "hasMoreRecords", "lastId"})


class _HostAssetTarget:
    """Parser callbacks for a hostasset search: keeps the connector's fields, lets the rest stream by.

    Depths: 1 ServiceResponse, 2 data/responseCode/..., 3 HostAsset, 4 its fields,
    5 agentInfo/agentId or <section>/list, 6 list item, 7 item field.
    """

    def __init__(self) -> None:
        self.path: list[str] = []
        self.text: list[str] | None = None
        self._parser: XMLParserType  # set by attach() before the first event
        self.root: dict[str, str | None] = {}
        self.error_message: str | None = None
        self.assets: list[RawAsset] = []
        self.fields: dict[str, str | None] = {}
        self.item: dict[str, str | None] = {}
        self.section_items: dict[str, list[dict[str, str | None]]] = {}
        self.shared: dict[str, str] = {}  # one string per distinct value on the page, see assets.shared
        #: ``<data>`` started (or the document ended): the header fields are all read.
        self.header_read = False

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
                self.header_read = True
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
        self.header_read = True

    @property
    def has_more(self) -> bool:
        return (self.root.get("hasMoreRecords") or "").lower() == "true"

    @property
    def last_id(self) -> int | None:
        return _int_or_none(self.root.get("lastId"))


class HostAssetReader:
    """Reads one hostasset search response: :meth:`header` first (optional), then :meth:`page`.

    Memory stays flat in page size: only the connector's fields of each asset are kept.
    """

    def __init__(self, body: Readable) -> None:
        self._target = _HostAssetTarget()
        self._feeder = TargetFeeder(SectionSkipper(body, _SKIPPED_SECTIONS), self._target)

    def header(self) -> PageHeader | None:
        """``hasMoreRecords``/``lastId``, read before the records; None when the answer is not a SUCCESS
        (:meth:`page` then raises its error)."""
        target = self._target
        self._feeder.feed_until(lambda: target.header_read)
        if target.root.get("responseCode") != "SUCCESS":
            return None
        return PageHeader(target.has_more, target.last_id)

    def page(self) -> AssetPage:
        """The whole page (reads the rest of the body)."""
        target = self._target
        self._feeder.feed_all()
        response_code = target.root.get("responseCode")
        if response_code != "SUCCESS":
            raise qps_response_error(response_code or "(none)", target.error_message, ENDPOINT)
        return AssetPage(target.assets, target.has_more, target.last_id)

    def close(self) -> None:
        self._feeder.close()


def parse_page(body: Readable) -> AssetPage:
    """Parse a whole hostasset search response."""
    reader = HostAssetReader(body)
    try:
        return reader.page()
    finally:
        reader.close()


def _asset_from_fields(
    fields: dict[str, str | None], sections: dict[str, list[dict[str, str | None]]], seen: dict[str, str]
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
        os=shared(fields.get("os"), seen),
        tracking_method=shared(fields.get("trackingMethod"), seen),
        created=fields.get("created"),
        modified=fields.get("modified"),
        last_vuln_scan=fields.get("lastVulnScan"),
    )
    for tag in sections.get("tags", ()):
        if tag_id := tag.get("id"):
            asset.tags.append((seen.setdefault(tag_id, tag_id), shared(tag.get("name"), seen)))
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
        (qid, vuln.get("hostInstanceVulnId"), shared(vuln.get("firstFound"), seen), shared(vuln.get("lastFound"), seen))
        for vuln in sections.get("vuln", ())
        if (qid := _int_or_none(vuln.get("qid"))) is not None and -QID_LIMIT <= qid < QID_LIMIT
    )
    return asset


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
