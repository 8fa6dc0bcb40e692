"""Connection validation: the checks the Qualys troubleshooting guide prescribes, as a JSON report.

Shared by ``python -m qualys validate`` and the HTTP endpoints. Each failed
check carries the HTTP status and Qualys code seen, the cause, and the action
that fixes it (Microsoft's Qualys connector troubleshooting table: 401, 403,
404, 409, 429, temporary failures).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import requests

from qualys.api.client import QualysClient
from qualys.api.hostasset_search import fetch_page
from qualys.api.knowledge_base import fetch_entries
from qualys.api.partitions import count_assets
from qualys.api.qps import Criterion, search
from qualys.api.refusals import PLATFORM_HINT
from qualys.api.retry import RetryPolicy
from qualys.api.tags import ENDPOINT as TAG_ENDPOINT
from qualys.api.tags import TAG_SEARCH_PATH, parse_tags
from qualys.config.secret import Secret
from qualys.errors import ConnectorError, QualysApiError, TemporaryFailureError
from qualys.timestamps import iso_utc

#: Bounded so the HTTP endpoint answers well inside Azure's 230 s front-end limit: one check (all its
#: attempts and waits) never takes longer than CHECK_DEADLINE_SECONDS, and all of them together never
#: longer than VALIDATION_BUDGET_SECONDS (after the reachability probe's own 30 s at most).
CHECK_DEADLINE_SECONDS = 60.0
VALIDATION_BUDGET_SECONDS = 150.0
#: A check with less time left than this is reported as not run rather than started.
MIN_CHECK_SECONDS = 5.0
VALIDATION_RETRY = RetryPolicy(max_attempts=2, backoff_base=0.5, backoff_max=2.0, max_total_wait=5.0, concurrency_wait=2.0)
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 25.0
#: QID 6 ("DNS Host Name") exists in every KnowledgeBase: a one-QID list proves KB access.
PROBE_QID = 6


@dataclass
class Check:
    name: str
    ok: bool
    http_status: int | None = None
    qualys_code: str | None = None
    cause: str | None = None
    action: str | None = None


@dataclass
class ValidationReport:
    api_url: str | None
    checks: list[Check] = field(default_factory=list)
    #: Qualys could not be reached (connection failed, timeouts, 5xx after retries): HTTP 502, not 422.
    unreachable: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def http_status(self) -> int:
        """200 when the connection works, 502 when Qualys could not be reached, 422 when it refused."""
        if self.ok:
            return 200
        return 502 if self.unreachable else 422

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "api_url": self.api_url, "checks": [asdict(check) for check in self.checks]}


def _failed(name: str, error: ConnectorError) -> Check:
    status = error.http_status if isinstance(error, QualysApiError) else None
    code = error.qualys_code if isinstance(error, QualysApiError) else None
    return Check(name, False, status, code, error.cause, error.action or None)


def check_reachability(api_url: str) -> Check:
    """Can we open a connection and get any HTTP answer? No credentials are sent."""
    try:
        # stream=True: the status line is enough; the body is never read.
        response = requests.get(
            api_url + "/qps/rest/portal/version", timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_redirects=False,
            stream=True,
        )
        response.close()
    except requests.exceptions.RequestException as exc:
        return Check(
            "reachability", False, None, None,
            f"Qualys could not be reached at {api_url} ({type(exc).__name__}).",
            "Check the API URL, that it is your platform's API server "
            f"({PLATFORM_HINT}), and that the connector's outbound IP addresses are allow-listed in Qualys; "
            "if it persists, retry later.",
        )
    return Check("reachability", True, response.status_code)


def validate_connection(api_url: str, username: str, password: Secret, *, partitions: int = 1) -> ValidationReport:
    """Run the checks against an already vetted ``api_url``: every API the sync will call with these settings.

    The host asset search, the KnowledgeBase, the tag search (criticality) and, when the sync splits the
    search into id ranges (``partitions`` above 1), the host asset count. All of them share
    ``VALIDATION_BUDGET_SECONDS``, so the HTTP endpoint answers within Azure's 230 s.
    """
    report = ValidationReport(api_url)
    report.checks.append(Check("api_url", True))
    reach = check_reachability(api_url)
    report.checks.append(reach)
    if not reach.ok:
        report.unreachable = True
        return report
    since = iso_utc(datetime.now(UTC) - timedelta(days=90)) or ""
    checks: list[tuple[str, Callable[[QualysClient], object]]] = [
        ("asset_search", lambda client: fetch_page(client, since, 1, None)),
        ("knowledge_base", lambda client: fetch_entries(client, [PROBE_QID])),
        ("tag_search", probe_tags),
    ]
    if partitions > 1:
        checks.append(("asset_count", lambda client: count_assets(client, since)))
    budget_end = time.monotonic() + VALIDATION_BUDGET_SECONDS
    with QualysClient(
        api_url, username, password, retry=VALIDATION_RETRY, connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
    ) as client:
        for name, run in checks:
            remaining = budget_end - time.monotonic()
            if remaining < MIN_CHECK_SECONDS:
                report.checks.append(_out_of_time(name))
                report.unreachable = True
                continue
            client.call_deadline = min(CHECK_DEADLINE_SECONDS, remaining)
            try:
                run(client)
            except ConnectorError as error:
                report.checks.append(_failed(name, error))
                if isinstance(error, TemporaryFailureError):
                    report.unreachable = True
                    if name == "asset_search":
                        return report  # Qualys is not answering: the other checks would only wait too
                continue
            report.checks.append(Check(name, True, 200))
    return report


def probe_tags(client: QualysClient) -> None:
    """One tag search, as the sync's criticality lookup makes (any tag will do; none is fine too)."""
    search(client, TAG_SEARCH_PATH, TAG_ENDPOINT, [Criterion("id", "GREATER", "0")], 1, parse_tags)


def _out_of_time(name: str) -> Check:
    return Check(
        name, False, None, None,
        f"Not checked: the validation used up its {VALIDATION_BUDGET_SECONDS:.0f} s while Qualys answered slowly.",
        "Run the validation again (python -m qualys validate has the same checks and no HTTP time limit).",
    )


def invalid_url_report(raw: object, error: ConnectorError) -> ValidationReport:
    report = ValidationReport(raw if isinstance(raw, str) else None)
    report.checks.append(Check("api_url", False, None, None, error.cause, error.action or None))
    return report
