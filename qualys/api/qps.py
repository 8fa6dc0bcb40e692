"""Asset Management (QPS) searches: the ``ServiceRequest`` body, and the one way every search is sent.

QPS searches are ``POST /qps/rest/2.0/<operation>/am/<object>`` with an XML body of
``preferences`` (page size, offset), optional ``fields`` (only these elements in the answer:
"Limit your results") and ``filters`` (``Criteria``, ANDed); errors come back as HTTP 200 with a
``responseCode`` other than SUCCESS (docs/qualys-api.md §2.2, §2.5).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar
from xml.sax.saxutils import escape

from qualys.api.client import BodyReader, QualysClient
from qualys.api.request import ApiRequest
from qualys.errors import BadRequestError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The elements to ask for: name -> its children to ask for, or None for the whole element.
Fields = Mapping[str, "Fields | None"]


@dataclass(frozen=True, slots=True)
class Criterion:
    """``<Criteria field=... operator=...>value</Criteria>``."""

    field: str
    operator: str
    value: str

    def xml(self) -> str:
        return f'<Criteria field="{self.field}" operator="{self.operator}">{escape(self.value)}</Criteria>'


def fields_xml(fields: Fields) -> str:
    """``<name/>`` for a whole element, ``<name>...</name>`` around the children asked for."""
    return "".join(f"<{name}/>" if inner is None else f"<{name}>{fields_xml(inner)}</{name}>" for name, inner in fields.items())


def service_request(
    criteria: Sequence[Criterion],
    limit_results: int,
    start_from_offset: int | None = None,
    fields: Fields | None = None,
) -> bytes:
    """The ``ServiceRequest`` body of a search; ``start_from_offset`` is 1-based."""
    offset = f"<startFromOffset>{start_from_offset}</startFromOffset>" if start_from_offset is not None else ""
    limited = f"<fields>{fields_xml(fields)}</fields>" if fields else ""
    filters = "".join(criterion.xml() for criterion in criteria)
    return (
        f"<ServiceRequest><preferences><limitResults>{limit_results}</limitResults>{offset}"
        f"</preferences>{limited}<filters>{filters}</filters></ServiceRequest>"
    ).encode()


class FieldLimit:
    """Whether a run's searches ask Qualys for only the fields the connector keeps (``QUALYS_LIMIT_FIELDS``).

    Shared by all the searches of a run (and their threads): a platform that rejects the ``fields``
    element turns it off for the rest of the run, with one warning.
    """

    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._enabled

    def rejected(self, error: BadRequestError) -> bool:
        """True (and off from now on) when ``error`` is Qualys refusing the ``fields`` element itself."""
        if "fields" not in (error.qualys_text or "").lower():
            return False
        with self._lock:
            if self._enabled:
                self._enabled = False
                log.warning(
                    "Qualys rejected the 'fields' element of the %s search (%s); asking for whole records for the "
                    "rest of this run (set QUALYS_LIMIT_FIELDS=false to stop trying)", error.endpoint, error.qualys_text,
                )
        return True


def search(
    client: QualysClient,
    path: str,
    endpoint: str,
    criteria: Sequence[Criterion],
    limit_results: int,
    parse: Callable[[BodyReader], T],
    *,
    start_from_offset: int | None = None,
    fields: Fields | None = None,
    limit: FieldLimit | None = None,
) -> T:
    """POST one QPS search and parse the answer; ``fields`` are asked for while ``limit`` allows it."""
    asked = fields if fields is not None and limit is not None and limit.enabled else None
    body = service_request(criteria, limit_results, start_from_offset, asked)
    try:
        return client.call(ApiRequest.xml(path, endpoint, body), parse)
    except BadRequestError as error:
        if asked is None or limit is None or not limit.rejected(error):
            raise
    whole = service_request(criteria, limit_results, start_from_offset)
    return client.call(ApiRequest.xml(path, endpoint, whole), parse)
