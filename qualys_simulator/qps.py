"""QPS ``ServiceRequest`` parsing and the hostasset/tag searches behind it.

Criteria are ANDed; dates are ISO-8601 UTC (``2020-03-05T23:00:30Z``, fractions accepted as
qualysdk sends them); a bad value or field yields ``INVALID_REQUEST`` with HTTP 200, as a
real recorded response does (docs/qualys-api.md §2.3).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from .estate import Estate, SimAsset, SimTag

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
#: Search field -> SimAsset attribute. ``update`` is the List-Agents doc spelling of ``updated``
#: (docs/qualys-api.md §2.3); the simulator accepts both.
_DATE_FIELDS = {"updated": "modified", "update": "modified", "created": "created", "lastVulnScan": "last_vuln_scan"}
_LONG_FIELDS = {"id": "id", "qwebHostId": "qweb_host_id"}
_DATE_OPS = ("GREATER", "LESSER")
_LONG_OPS = ("GREATER", "LESSER", "EQUALS", "IN")


class SearchError(Exception):
    """An ``INVALID_REQUEST`` answer: ``errorMessage`` and ``errorResolution``."""

    def __init__(self, message: str, resolution: str) -> None:
        super().__init__(message)
        self.message = message
        self.resolution = resolution


@dataclass(frozen=True)
class Criterion:
    field: str
    operator: str
    value: str


#: The ``fields`` of a request: element name -> the children asked for, or None for the whole element.
FieldTree = dict[str, "FieldTree | None"]


def field_tree(element: Element) -> FieldTree:
    """``<a/>`` -> ``{"a": None}`` (whole element); ``<a><b/></a>`` -> ``{"a": {"b": None}}`` (only those children)."""
    return {child.tag: (field_tree(child) if len(child) else None) for child in element}


@dataclass
class SearchRequest:
    criteria: list[Criterion] = field(default_factory=list)
    preferences: dict[str, str] = field(default_factory=dict)
    #: "Limit your results": the elements asked for, by object (``{"HostAsset": {...}}``); None: everything.
    fields: FieldTree | None = None
    #: A malformed body is reported only after authentication, like any other answer.
    error: SearchError | None = None

    def summary(self) -> dict[str, str]:
        """For the request log: ``{"updated GREATER": "...", "id GREATER": "...", "limitResults": "...", "fields": "..."}``."""
        out: dict[str, str] = {}
        for c in self.criteria:
            key = f"{c.field} {c.operator}"
            out[key] = f"{out[key]};{c.value}" if key in out else c.value
        out.update(self.preferences)
        if self.fields is not None:
            out["fields"] = ",".join(sorted(self.fields))
        return out


def parse_search(body: bytes) -> SearchRequest:
    """Read a ``<ServiceRequest>``; an empty body is an empty request (all records, default page)."""
    if not body.strip():
        return SearchRequest()
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException) as err:
        return SearchRequest(error=SearchError(f"Request body is not valid XML: {err}", "Send a valid ServiceRequest."))
    if root.tag != "ServiceRequest":
        return SearchRequest(error=SearchError(f"Unexpected root element <{root.tag}>.", "Send a <ServiceRequest>."))
    request = SearchRequest()
    prefs = root.find("preferences")
    if prefs is not None:
        for child in prefs:
            request.preferences[child.tag] = (child.text or "").strip()
    limited = root.find("fields")
    if limited is not None:
        request.fields = field_tree(limited)
    for crit in root.iterfind("filters/Criteria"):
        request.criteria.append(
            Criterion(crit.get("field", ""), crit.get("operator", "").upper(), (crit.text or "").strip())
        )
    return request


def _limit(request: SearchRequest) -> tuple[int, int]:
    raw = request.preferences.get("limitResults", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise SearchError(
            f"Invalid value for limitResults ({raw}).", f"Specify limitResults as an integer between 1 and {MAX_LIMIT}."
        )
    offset = request.preferences.get("startFromOffset", "1")
    if not offset.isdigit() or int(offset) < 1:
        raise SearchError(f"Invalid value for startFromOffset ({offset}).", "Specify a positive integer.")
    return int(raw), int(offset)


def _bad_value(c: Criterion, kind: str) -> SearchError:
    message = f"Criteria: Invalid value format for criteria '{c.field}' ({c.value})."
    return SearchError(message, f"Specify criteria value(s) as {kind}.")


def _bad_operator(c: Criterion, allowed: tuple[str, ...]) -> SearchError:
    return SearchError(
        f"Criteria: Operator '{c.operator}' is not supported for criteria '{c.field}'.",
        f"Use one of: {', '.join(allowed)}.",
    )


def _parse_date(c: Criterion) -> datetime:
    if not _DATE_RE.match(c.value):
        raise _bad_value(c, "Date (yyyy-MM-dd'T'HH:mm:ss'Z')")
    try:
        return datetime.fromisoformat(c.value[:-1] + "+00:00")
    except ValueError:
        raise _bad_value(c, "Date (yyyy-MM-dd'T'HH:mm:ss'Z')") from None


def _parse_longs(c: Criterion) -> list[int]:
    parts = [p.strip() for p in c.value.split(",")] if c.operator == "IN" else [c.value]
    if not parts or not all(p.isdigit() for p in parts):
        raise _bad_value(c, "Long")
    return [int(p) for p in parts]


Predicate = Callable[[SimAsset], bool]


def _predicate(c: Criterion) -> Predicate:
    if c.field in _DATE_FIELDS:
        if c.operator not in _DATE_OPS:
            raise _bad_operator(c, _DATE_OPS)
        attr, when = _DATE_FIELDS[c.field], _parse_date(c)

        def date_pred(a: SimAsset) -> bool:
            value: datetime | None = getattr(a, attr)
            return value is not None and (value > when if c.operator == "GREATER" else value < when)

        return date_pred
    if c.field in _LONG_FIELDS:
        if c.operator not in _LONG_OPS:
            raise _bad_operator(c, _LONG_OPS)
        attr, values = _LONG_FIELDS[c.field], _parse_longs(c)
        bound, allowed = values[0], frozenset(values)

        def long_pred(a: SimAsset) -> bool:
            value: int | None = getattr(a, attr)
            if value is None:
                return False
            if c.operator == "GREATER":
                return value > bound
            if c.operator == "LESSER":
                return value < bound
            return value in allowed

        return long_pred
    raise SearchError(
        f"Criteria: Unknown or unsupported field '{c.field}' for HostAsset search.",
        f"Use one of: {', '.join([*_LONG_FIELDS, *_DATE_FIELDS])}.",
    )


def search_assets(estate: Estate, request: SearchRequest) -> tuple[list[SimAsset], bool]:
    """One page in ascending id and whether more records match after it."""
    if request.error is not None:
        raise request.error
    limit, offset = _limit(request)
    predicates = [_predicate(c) for c in request.criteria]
    ids = sorted(estate.assets)
    start = 0
    for c in request.criteria:  # keyset paging: jump straight past lastId
        if c.field == "id" and c.operator == "GREATER":
            start = max(start, bisect.bisect_right(ids, int(c.value)))
    page: list[SimAsset] = []
    skip = offset - 1
    for asset_id in ids[start:]:
        asset = estate.assets[asset_id]
        if all(p(asset) for p in predicates):
            if skip:
                skip -= 1
                continue
            if len(page) == limit:
                return page, True
            page.append(asset)
    return page, False


def count_assets(estate: Estate, request: SearchRequest) -> int:
    """Records matching the criteria (``/count/am/hostasset``): preferences are ignored."""
    if request.error is not None:
        raise request.error
    predicates = [_predicate(c) for c in request.criteria]
    return sum(1 for asset in estate.assets.values() if all(p(asset) for p in predicates))


def search_tags(estate: Estate, request: SearchRequest) -> list[SimTag]:
    """Tags by ``id`` (EQUALS/IN/GREATER/LESSER, as for any integer field) or ``name`` (EQUALS), ascending id."""
    if request.error is not None:
        raise request.error
    limit, _ = _limit(request)
    tags = [estate.tags[t] for t in sorted(estate.tags)]
    for c in request.criteria:
        if c.field == "id" and c.operator in ("EQUALS", "IN"):
            wanted = set(_parse_longs(c))
            tags = [t for t in tags if t.id in wanted]
        elif c.field == "id" and c.operator in ("GREATER", "LESSER"):
            bound = _parse_longs(c)[0]
            tags = [t for t in tags if (t.id > bound if c.operator == "GREATER" else t.id < bound)]
        elif c.field == "name" and c.operator == "EQUALS":
            tags = [t for t in tags if t.name == c.value]
        else:
            raise SearchError(
                f"Criteria: Unsupported criteria '{c.field}' with operator '{c.operator}' for Tag search.",
                "Use id (EQUALS, IN, GREATER, LESSER) or name (EQUALS).",
            )
    return tags[:limit]
