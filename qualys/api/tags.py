"""Qualys criticality from asset tags (``/qps/rest/2.0/search/am/tag``).

HostAsset carries no criticality element. Qualys's Asset Criticality Score
(1-5) is set on tags as ``criticalityScore``; an asset takes the highest score
among its tags, and 2 when none has one (docs/qualys-api.md §2.6).
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.etree.ElementTree import Element

from qualys.api.client import QualysClient
from qualys.api.qps import Criterion, FieldLimit, Fields, search
from qualys.api.refusals import qps_response_error
from qualys.api.xmlstream import Readable, child_text, iter_events, text_of

TAG_SEARCH_PATH = "/qps/rest/2.0/search/am/tag"
ENDPOINT = "tag"
DEFAULT_CRITICALITY = 2
#: Tags per ``id IN`` search; Qualys pages QPS results at up to 1000 records.
TAG_BATCH_SIZE = 500
#: ``fields`` of a tag search: criticality needs the score alone (a tag can carry long lists of child tags).
TAG_FIELDS: Fields = {"Tag": {"id": None, "criticalityScore": None}}


def parse_tags(body: Readable) -> tuple[dict[str, int | None], bool, str | None]:
    """Tag id -> criticalityScore (None when unset), hasMoreRecords, lastId."""
    scores: dict[str, int | None] = {}
    stack: list[str] = []
    data_element: Element | None = None
    response_code: str | None = None
    message: str | None = None
    has_more = False
    last_id: str | None = None
    for event, element in iter_events(body):
        if event == "start":
            stack.append(element.tag)
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
                last_id = text_of(element)
            elif element.tag == "responseErrorDetails":
                message = child_text(element, "errorMessage")
        elif depth == 3 and element.tag == "Tag" and data_element is not None:
            tag_id = child_text(element, "id")
            if tag_id:
                scores[tag_id] = _score(child_text(element, "criticalityScore"))
            data_element.remove(element)
    if response_code != "SUCCESS":
        raise qps_response_error(response_code or "(none)", message, ENDPOINT)
    return scores, has_more, last_id


def _score(value: str | None) -> int | None:
    try:
        score = int(value) if value is not None else None
    except ValueError:
        return None
    return score if score is not None and 1 <= score <= 5 else None


class TagCriticality:
    """Looks tags up once per run and answers an asset's criticality."""

    def __init__(self, client: QualysClient, batch_size: int = TAG_BATCH_SIZE, limit: FieldLimit | None = None) -> None:
        self._client = client
        self._limit = limit
        self._batch_size = batch_size
        self._scores: dict[str, int | None] = {}
        self._queued: set[str] = set()

    def queue(self, tag_ids: Iterable[str]) -> None:
        """Note tags to look up at the next :meth:`flush` (pages held for the KnowledgeBase share one search)."""
        self._queued.update(tag_id for tag_id in tag_ids if tag_id not in self._scores)

    def flush(self) -> None:
        """Look up every queued tag: one request per batch."""
        queued, self._queued = self._queued, set()
        self.resolve(queued)

    def resolve(self, tag_ids: Iterable[str]) -> None:
        """Fetch the tags not seen yet in this run (one request per batch)."""
        missing = sorted({tag_id for tag_id in tag_ids if tag_id not in self._scores and tag_id.isdigit()}, key=int)
        for start in range(0, len(missing), self._batch_size):
            batch = missing[start : start + self._batch_size]
            self._fetch(batch)
            for tag_id in batch:  # tags Qualys did not return (deleted, out of scope) have no score
                self._scores.setdefault(tag_id, None)

    def _fetch(self, batch: list[str]) -> None:
        after: str | None = None
        while True:
            criteria = [Criterion("id", "IN", ",".join(batch))]
            if after is not None:
                criteria.append(Criterion("id", "GREATER", after))
            scores, has_more, last_id = search(
                self._client, TAG_SEARCH_PATH, ENDPOINT, criteria, len(batch), parse_tags, fields=TAG_FIELDS, limit=self._limit
            )
            self._scores.update(scores)
            if not has_more or last_id is None:
                return
            after = last_id

    def criticality(self, tag_ids: Iterable[str]) -> int:
        scores = [score for tag_id in tag_ids if (score := self._scores.get(tag_id)) is not None]
        return max(scores, default=DEFAULT_CRITICALITY)
