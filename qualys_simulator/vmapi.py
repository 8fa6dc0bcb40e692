"""KnowledgeBase request parameters (``/api/2.0/fo/knowledge_base/vuln/?action=list``).

Validation follows Qualys Appendix D: 1901 unrecognized parameter, 1903 missing ``action``,
1905 invalid value (real text: "parameter ids has invalid value: abc123 (neither a positive
integer nor a range: abc123)").
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from .estate import Estate, SimVuln

_KNOWN_PARAMS = frozenset(
    {
        "action",
        "echo_request",
        "details",
        "ids",
        "id_min",
        "id_max",
        "is_patchable",
        "last_modified_after",
        "last_modified_before",
        "last_modified_by_user_after",
        "last_modified_by_user_before",
        "last_modified_by_service_after",
        "last_modified_by_service_before",
        "published_after",
        "published_before",
        "discovery_method",
        "discovery_auth_types",
        "show_disabled_flag",
        "show_qid_change_log",
        "show_supported_modules_info",
        "show_pci_reasons",
    }
)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}Z)?$")


class KbRequestError(Exception):
    """A SIMPLE_RETURN error answered with HTTP 400."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def _invalid(name: str, value: str, why: str = "") -> KbRequestError:
    return KbRequestError(1905, f"parameter {name} has invalid value: {value}{why}")


def parse_ids(raw: str) -> list[tuple[int, int]]:
    """``ids`` as inclusive ranges: comma list of positive integers and ``a-b`` ranges."""
    ranges = []
    for token in raw.split(","):
        item = token.strip()
        lo, dash, hi = item.partition("-")
        if item.isdigit() and int(item) > 0:
            ranges.append((int(item), int(item)))
        elif dash and lo.isdigit() and hi.isdigit() and 0 < int(lo) <= int(hi):
            ranges.append((int(lo), int(hi)))
        else:
            raise _invalid("ids", raw, f" (neither a positive integer nor a range: {item})")
    return ranges


def _date(name: str, value: str) -> datetime:
    if not _DATE_RE.match(value):
        raise _invalid(name, value)
    try:
        parsed = datetime.fromisoformat(value[:-1] if value.endswith("Z") else value)
    except ValueError:
        raise _invalid(name, value) from None
    return parsed.replace(tzinfo=UTC)


def _positive(name: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise _invalid(name, value)
    return int(value)


def select_kb(estate: Estate, form: dict[str, str]) -> list[SimVuln]:
    """The KB records a list request selects, by ascending QID. Dates filter inclusively.

    ``details`` is validated but does not change the output (every record has the
    Basic elements the connector reads).
    """
    unknown = sorted(set(form) - _KNOWN_PARAMS)
    if unknown:
        raise KbRequestError(1901, f"Unrecognized parameter(s): {', '.join(unknown)}")
    action = form.get("action")
    if not action:
        raise KbRequestError(1903, "Missing required parameter(s): action")
    if action != "list":
        raise _invalid("action", action)
    if form.get("details", "Basic") not in ("Basic", "All", "None"):
        raise _invalid("details", form["details"])
    ranges = parse_ids(form["ids"]) if "ids" in form else None
    id_min = _positive("id_min", form["id_min"]) if "id_min" in form else None
    id_max = _positive("id_max", form["id_max"]) if "id_max" in form else None
    after = _date("last_modified_after", form["last_modified_after"]) if "last_modified_after" in form else None
    before = _date("last_modified_before", form["last_modified_before"]) if "last_modified_before" in form else None
    singles = {lo for lo, hi in ranges or () if lo == hi}
    spans = [(lo, hi) for lo, hi in ranges or () if lo != hi]
    out = []
    for qid in sorted(estate.kb):
        if ranges is not None and qid not in singles and not any(lo <= qid <= hi for lo, hi in spans):
            continue
        if (id_min is not None and qid < id_min) or (id_max is not None and qid > id_max):
            continue
        vuln = estate.kb[qid]
        if (after is not None and vuln.last_modified < after) or (before is not None and vuln.last_modified > before):
            continue
        out.append(vuln)
    return out
