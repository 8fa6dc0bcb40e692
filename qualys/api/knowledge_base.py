"""QID details from the KnowledgeBase (``/api/2.0/fo/knowledge_base/vuln/?action=list``).

HostAsset lists QIDs only; CVE ids, title, severity and CVSS come from here
(docs/qualys-api.md §3). Requests are POST forms with ``ids`` in batches; the sync
caches the entries (:mod:`qualys.sync.kb_store`) so later runs only ask for QIDs they
have not seen, plus one ``last_modified_after`` call for changed ones.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from qualys.api.client import QualysClient
from qualys.api.refusals import REQUEST_CODES
from qualys.api.request import ApiRequest
from qualys.api.xmlstream import Readable, child_text, iter_events
from qualys.errors import BadRequestError, KnowledgeBasePermissionError, ResponseFormatError

KB_PATH = "/api/2.0/fo/knowledge_base/vuln/"
ENDPOINT = "knowledge_base"
#: QIDs per request: J1 uses 250, IBM 100 (docs/qualys-api.md §3.3); 250 keeps bodies near 0.5 MB.
KB_BATCH_SIZE = 250
_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")


@dataclass(frozen=True, slots=True)
class KbEntry:
    """What a finding needs from one QID. ``known=False``: Qualys returned nothing for it.

    The cache holds an entry per distinct QID of the estate, so entries are kept small: the CVE ids
    as one comma-separated string (``cves``; read them as :attr:`cve_ids`), the few vuln types shared.
    """

    qid: int
    title: str | None = None
    vuln_type: str | None = None
    severity: int | None = None
    cves: str = ""
    cvss_base: float | None = None
    cvss_v3_base: float | None = None
    last_modified: str | None = None
    known: bool = True

    @property
    def cve_ids(self) -> tuple[str, ...]:
        return tuple(self.cves.split(",")) if self.cves else ()

    def to_json(self) -> str:
        return json.dumps(
            [self.qid, self.title, self.vuln_type, self.severity, list(self.cve_ids),
             self.cvss_base, self.cvss_v3_base, self.last_modified, self.known],
            ensure_ascii=False, separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> KbEntry:
        qid, title, vuln_type, severity, cves, cvss, cvss3, modified, known = json.loads(line)
        return cls(
            int(qid), title, _vuln_type(vuln_type), severity, ",".join(canonical_cves(cves)), cvss, cvss3, modified, bool(known)
        )


def _vuln_type(value: str | None) -> str | None:
    """One string per vuln type (Qualys has a handful), not one per entry."""
    return sys.intern(value) if value is not None else None


def canonical_cves(values: Iterable[str | None]) -> tuple[str, ...]:
    """Unique, upper-case CVE ids in order; empty and malformed ids dropped."""
    seen: dict[str, None] = {}
    for value in values:
        cve = (value or "").strip().upper()
        if _CVE.match(cve):
            seen.setdefault(cve, None)
    return tuple(seen)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def entry_from_element(vuln: Element) -> KbEntry | None:
    qid = _int(child_text(vuln, "QID"))
    if qid is None:
        return None
    severity = _int(child_text(vuln, "SEVERITY_LEVEL"))
    return KbEntry(
        qid=qid,
        title=child_text(vuln, "TITLE"),
        vuln_type=_vuln_type(child_text(vuln, "VULN_TYPE")),
        severity=severity if severity is not None and 1 <= severity <= 5 else None,
        cves=",".join(canonical_cves(child_text(cve, "ID") for cve in vuln.iterfind("CVE_LIST/CVE"))),
        cvss_base=_float(child_text(vuln, "CVSS/BASE")),
        cvss_v3_base=_float(child_text(vuln, "CVSS_V3/BASE")),
        last_modified=child_text(vuln, "LAST_SERVICE_MODIFICATION_DATETIME"),
    )


def parse_vuln_list(body: Readable) -> list[KbEntry]:
    """Parse a KNOWLEDGE_BASE_VULN_LIST_OUTPUT, one VULN at a time."""
    entries: list[KbEntry] = []
    stack: list[str] = []
    vuln_list: Element | None = None
    for event, element in iter_events(body):
        if event == "start":
            stack.append(element.tag)
            if len(stack) == 1 and element.tag != "KNOWLEDGE_BASE_VULN_LIST_OUTPUT":
                raise ResponseFormatError(
                    f"Expected a KnowledgeBase list, got <{element.tag}>.",
                    "Check the API URL (QUALYS_API_URL): it must be the Qualys API server.",
                )
            if element.tag == "VULN_LIST":
                vuln_list = element
            continue
        stack.pop()
        if element.tag == "VULN" and vuln_list is not None and stack and stack[-1] == "VULN_LIST":
            entry = entry_from_element(element)
            if entry is not None:
                entries.append(entry)
            vuln_list.remove(element)
    return entries


def fetch_entries(client: QualysClient, qids: Sequence[int]) -> list[KbEntry]:
    """One KnowledgeBase call for ``qids``; QIDs Qualys does not know come back as ``known=False``."""
    found = _list(client, {"action": "list", "details": "Basic", "ids": ",".join(str(qid) for qid in qids)})
    by_qid = {entry.qid: entry for entry in found}
    return [by_qid.get(qid, KbEntry(qid=qid, known=False)) for qid in qids]


def fetch_changed_since(client: QualysClient, since: str) -> list[KbEntry]:
    """Every QID Qualys changed after ``since`` (``YYYY-MM-DDTHH:MM:SSZ``)."""
    return _list(client, {"action": "list", "details": "Basic", "last_modified_after": since})


def _list(client: QualysClient, form: dict[str, str]) -> list[KbEntry]:
    try:
        return client.call(ApiRequest.form(KB_PATH, ENDPOINT, form), parse_vuln_list)
    except BadRequestError as error:
        # A 409 whose code names no bad parameter (rate and concurrency refusals were retried, account codes
        # raised as such): Microsoft's troubleshooting table reads it as missing KnowledgeBase permission.
        if error.http_status == 409 and error.qualys_code not in REQUEST_CODES:
            raise permission_error(error, client.api_url) from error
        raise


def permission_error(refused: BadRequestError, api_url: str) -> KnowledgeBasePermissionError:
    """A 409 without a rate or concurrency code: Microsoft's troubleshooting table reads it as missing
    KnowledgeBase permission (docs/qualys-api.md §5.2)."""
    how = f"HTTP {refused.http_status}" + (f", code {refused.qualys_code}" if refused.qualys_code else "")
    text = f": {refused.qualys_text}" if refused.qualys_text else ""
    return KnowledgeBasePermissionError(
        f"Qualys refused the KnowledgeBase call ({how}{text}): the user likely lacks KnowledgeBase permission.",
        "Give the API user access to the KnowledgeBase (Vulnerability Management, API access), then check "
        f"with: curl -u USER -H 'X-Requested-With: curl' -d action=list {api_url}{KB_PATH}",
        http_status=refused.http_status, qualys_code=refused.qualys_code, qualys_text=refused.qualys_text,
        endpoint=ENDPOINT,
    )


