"""Held pages parked in an anonymous temporary file until their KnowledgeBase entries arrive.

At the start of a run nearly every page brings QIDs the cache lacks, and the sync holds its
assets until those QIDs fill whole KnowledgeBase batches (:mod:`qualys.sync.held_pages`). Parsed,
thousands of held assets are tens of thousands of small objects: they raised the sync's peak
memory and left Python's allocator fragmented for the rest of the run. Parked as JSON (data
only: nothing here can run code, unlike pickle) they cost no memory until their page is written.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, fields
from typing import IO, Any

from qualys.api.assets import Findings, RawAsset, RawInterface, shared
from qualys.errors import ConnectorError

#: RawAsset's plain fields (str, int or None, and lists of str), in declaration order.
_PLAIN = (
    "id", "qweb_host_id", "agent_id", "name", "fqdn", "dns_host_name", "netbios_name", "address", "os",
    "tracking_method", "created", "modified", "last_vuln_scan", "cloud_ips", "cloud_macs",
)

if {f.name for f in fields(RawAsset)} != {*_PLAIN, "tags", "interfaces", "findings"}:
    raise RuntimeError("qualys.sync.spill does not cover every RawAsset field: update _PLAIN, _to_row and _from_row")

_ENCODER = json.JSONEncoder(separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class ParkedPage:
    """Where a parked page's assets are in the spill file."""

    offset: int
    length: int
    assets: int


class PageSpill:
    """An append-only temporary file of parked pages; emptied whenever no page is parked."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._parked = 0
        #: Pages parked since the spill was made.
        self.pages_parked = 0

    def park(self, assets: list[RawAsset]) -> ParkedPage:
        """Write ``assets`` out, one JSON line each; raises OSError when the temporary folder cannot take them."""
        if self._file is None:
            # A large buffer, as in LocalSink: every flush releases the GIL to the page-parsing threads.
            self._file = tempfile.TemporaryFile(prefix="qualys-held-", buffering=1 << 18)  # noqa: SIM115 (closed by close())
        offset = self._file.seek(0, 2)
        for asset in assets:
            self._file.write(_ENCODER.encode(_to_row(asset)).encode() + b"\n")
        self._parked += 1
        self.pages_parked += 1
        return ParkedPage(offset, self._file.tell() - offset, len(assets))

    def take(self, parked: ParkedPage) -> list[RawAsset]:
        """The assets of a parked page, as they were parked (read line by line: the page is never in memory as text)."""
        if self._file is None:
            raise ValueError("nothing was parked")
        seen: dict[str, str] = {}
        try:
            self._file.seek(parked.offset)
            assets = [_from_row(json.loads(self._file.readline()), seen) for _ in range(parked.assets)]
            cut_short = self._file.tell() != parked.offset + parked.length
        except OSError as exc:
            raise ConnectorError(
                f"Cannot read held pages back from the temporary folder ({exc.strerror}).",
                "Check the local disk; the next run resumes from the last written page.",
            ) from exc
        except ValueError:
            cut_short = True
        if cut_short:
            raise ConnectorError("The temporary file of held pages is damaged.", "Run the sync again; it resumes.")
        self._parked -= 1
        if self._parked == 0:
            self._file.truncate(0)  # a long run holds pages again and again: keep the file small
        return assets

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._parked = 0


def _to_row(asset: RawAsset) -> list[object]:
    return [
        *(getattr(asset, name) for name in _PLAIN),
        asset.tags,
        [[i.address, i.mac, i.gateway] for i in asset.interfaces],
        asset.findings.columns(),
    ]


def _from_row(row: Any, seen: dict[str, str]) -> RawAsset:
    """A RawAsset from :func:`_to_row`'s list (JSON this module wrote); repeated strings
    (dates, tags, OS) become one object again, as the parser shares them."""
    *plain, tags, interfaces, findings = row
    asset = RawAsset(**dict(zip(_PLAIN, plain, strict=True)))
    asset.os = shared(asset.os, seen)
    asset.tracking_method = shared(asset.tracking_method, seen)
    asset.tags = [(seen.setdefault(tag_id, tag_id), shared(name, seen)) for tag_id, name in tags]
    asset.interfaces = [RawInterface(*interface) for interface in interfaces]
    qids, ids, first_found, last_found = findings
    asset.findings = Findings.from_columns(
        qids, ids, (shared(d, seen) for d in first_found), (shared(d, seen) for d in last_found)
    )
    return asset
