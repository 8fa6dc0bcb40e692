"""The host asset fields the connector keeps, as the parser hands them to the sync.

Raw values, as Qualys sent them (stripped); :mod:`qualys.sync.records` turns them into the
output contract's records.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


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
QID_LIMIT = 2**63


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


def shared(value: str | None, seen: dict[str, str]) -> str | None:
    """One string object per distinct value on a page: a scan stamps dozens of findings with the same dates,
    and tags, OS names and tracking methods repeat from asset to asset.

    A table per page, not sys.intern: the interpreter's table of interned strings grew with every date of the run.
    """
    return seen.setdefault(value, value) if value is not None else None
