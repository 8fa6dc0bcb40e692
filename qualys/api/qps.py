"""Asset Management (QPS) searches: the ``ServiceRequest`` body, and the one way every search is sent.

QPS searches are ``POST /qps/rest/2.0/<operation>/am/<object>`` with an XML body of
``preferences`` (page size, offset) and ``filters`` (``Criteria``, ANDed); errors come back as
HTTP 200 with a ``responseCode`` other than SUCCESS (docs/qualys-api.md §2.2, §2.5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from xml.sax.saxutils import escape

from qualys.api.client import BodyReader, QualysClient
from qualys.api.request import ApiRequest

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Criterion:
    """``<Criteria field=... operator=...>value</Criteria>``."""

    field: str
    operator: str
    value: str

    def xml(self) -> str:
        return f'<Criteria field="{self.field}" operator="{self.operator}">{escape(self.value)}</Criteria>'


def service_request(criteria: Sequence[Criterion], limit_results: int, start_from_offset: int | None = None) -> bytes:
    """The ``ServiceRequest`` body of a search; ``start_from_offset`` is 1-based."""
    offset = f"<startFromOffset>{start_from_offset}</startFromOffset>" if start_from_offset is not None else ""
    filters = "".join(criterion.xml() for criterion in criteria)
    return (
        f"<ServiceRequest><preferences><limitResults>{limit_results}</limitResults>{offset}"
        f"</preferences><filters>{filters}</filters></ServiceRequest>"
    ).encode()


def search(
    client: QualysClient,
    path: str,
    endpoint: str,
    criteria: Sequence[Criterion],
    limit_results: int,
    parse: Callable[[BodyReader], T],
    *,
    start_from_offset: int | None = None,
) -> T:
    """POST one QPS search and parse the answer."""
    body = service_request(criteria, limit_results, start_from_offset)
    return client.call(ApiRequest.xml(path, endpoint, body), parse)
