"""Recorded Qualys error bodies, served at the statuses real platforms use, on both APIs the sync reads.

Qualys sends the same SIMPLE_RETURN code with HTTP 200, 401 or 409 (a recorded 2001 came with 200,
2003/2011 were kept with 409), so the client reads the CODE (or the QPS ``responseCode``) first and
the status only when the code says nothing it knows. Each case asserts the error type, the code and
status reported, and the words of the cause and of the fix. Bodies: ``tests/fixtures/qualys/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qualys.api.client import QualysClient
from qualys.api.hostasset_search import fetch_page
from qualys.api.knowledge_base import fetch_entries
from qualys.api.validation import validate_connection
from qualys.config.secret import Secret
from qualys.errors import (
    AccountBlockedError,
    AuthenticationError,
    BadRequestError,
    PermissionDeniedError,
    QualysApiError,
    RateLimitExhaustedError,
)
from qualys_simulator.server import Fault, QualysSimulator
from tests.helpers import PASSWORD, USER, client_for, estate_in_past

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "qualys"


@dataclass(frozen=True)
class Expected:
    error: type[QualysApiError]
    code: str
    cause: tuple[str, ...]
    action: tuple[str, ...]
    #: Where the KnowledgeBase's words differ (a permission names the API's own).
    kb_cause: tuple[str, ...] | None = None
    kb_action: tuple[str, ...] | None = None

    def words(self, endpoint: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if endpoint == "kb":
            return self.kb_cause or self.cause, self.kb_action or self.action
        return self.cause, self.action


AUTH_CAUSE = ("user name or password", "Bad Login/Password")
AUTH_FIX = ("Check the credentials", "platform-identification")
BAD_PARAMETER = ("rejected the request", "invalid value"), ("connector bug",)
CASES: dict[str, Expected] = {
    "errors/simple_return_2001_account_expired.xml": Expected(
        AccountBlockedError, "2001", ("refuses API access", "the account has expired", "This account has expired."),
        ("Renew or reactivate the account",),
    ),
    "external/errors/simple_return_2003_registration_incomplete.j1_test_literal.xml": Expected(
        AccountBlockedError, "2003", ("registration is not complete", "Registration must be completed"),
        ("finish the registration",),
    ),
    "external/errors/simple_return_2011_secureid_required.j1_test_literal.xml": Expected(
        AccountBlockedError, "2011", ("SecureID authentication is required",), ("does not require SecureID",),
    ),
    "errors/simple_return_401_2000_bad_login.xml": Expected(AuthenticationError, "2000", AUTH_CAUSE, AUTH_FIX),
    "errors/simple_return_2000_bad_login_ibm.xml": Expected(AuthenticationError, "2000", AUTH_CAUSE, AUTH_FIX),
    "errors/simple_return_409_1960_concurrency_limit.doc_sample.xml": Expected(
        RateLimitExhaustedError, "1960", ("too many requests", "concurrency limit reached"), ("dedicated Qualys API user",),
    ),
    "errors/simple_return_409_1965_rate_limit.doc_sample.xml": Expected(
        RateLimitExhaustedError, "1965", ("too many requests", "rate limited", "asked for 68928 s"),
        ("dedicated Qualys API user",),
    ),
    "errors/simple_return_400_1905_kb_invalid_ids.xml": Expected(BadRequestError, "1905", *BAD_PARAMETER),
    "errors/simple_return_400_1905_hld_invalid_ids.xml": Expected(BadRequestError, "1905", *BAD_PARAMETER),
    "errors/simple_return_1905_kb_ids_qg1in.xml": Expected(BadRequestError, "1905", *BAD_PARAMETER),
    "qps_hostasset/error_invalid_credentials.xml": Expected(
        AuthenticationError, "INVALID_CREDENTIALS", ("user name or password", "Authentication failed"), AUTH_FIX,
    ),
    "qps_hostasset/error_unauthorized_http200.xml": Expected(
        PermissionDeniedError, "UNAUTHORIZED", ("not allowed to use hostasset", "Asset View"), ("API Access", "Read Asset"),
        kb_cause=("not allowed to use knowledge_base", "KnowledgeBase permission"), kb_action=("KnowledgeBase",),
    ),
    "qps_hostasset/error_invalid_request_criteria_value.xml": Expected(
        BadRequestError, "INVALID_REQUEST", ("rejected the request", "Invalid value format"), ("connector bug",),
    ),
}


@pytest.fixture(scope="module")
def simulator() -> Iterator[QualysSimulator]:
    with QualysSimulator(estate_in_past(20), username=USER, password=PASSWORD) as sim:
        yield sim


def answer_with(sim: QualysSimulator, endpoint: str, status: int, body: bytes) -> QualysApiError:
    """The error the client raises when ``endpoint`` answers ``status`` and ``body`` (every time)."""
    sim.clear_faults()
    sim.inject(Fault(endpoint, "canned", times=100, status=status, body=body))
    try:
        with client_for(sim) as client, pytest.raises(QualysApiError) as caught:
            call(client, endpoint)
    finally:
        sim.clear_faults()
    return caught.value


def call(client: QualysClient, endpoint: str) -> None:
    """What the sync asks of ``endpoint``: a KnowledgeBase list, or a page of host assets."""
    if endpoint == "kb":
        fetch_entries(client, [6])
    else:
        fetch_page(client, "2026-01-01T00:00:00Z", 10, None)


@pytest.mark.parametrize("endpoint", ["kb", "hostasset"])
@pytest.mark.parametrize("status", [200, 401, 409])
@pytest.mark.parametrize("fixture", sorted(CASES))
def test_a_recorded_error_body_means_the_same_at_any_status(
    simulator: QualysSimulator, fixture: str, status: int, endpoint: str
) -> None:
    expected = CASES[fixture]
    error = answer_with(simulator, endpoint, status, (FIXTURES / fixture).read_bytes())
    assert type(error) is expected.error, (error.cause, error.action)
    assert (error.http_status, error.qualys_code) == (status, expected.code)
    assert error.endpoint == ("knowledge_base" if endpoint == "kb" else "hostasset")
    cause, action = expected.words(endpoint)
    for words in cause:
        assert words in error.cause, (words, error.cause)
    for words in action:
        assert words in error.action, (words, error.action)
    assert "\n" not in str(error) and PASSWORD not in str(error)


@pytest.mark.parametrize(
    ("code", "what"),
    [("2002", "inactive"), ("2012", "license does not allow this API")],
)
def test_the_other_documented_account_codes_are_account_problems(simulator: QualysSimulator, code: str, what: str) -> None:
    body = f"<SIMPLE_RETURN><RESPONSE><CODE>{code}</CODE><TEXT>Qualys says no</TEXT></RESPONSE></SIMPLE_RETURN>".encode()
    error = answer_with(simulator, "kb", 200, body)
    assert isinstance(error, AccountBlockedError) and what in error.cause and "Qualys says no" in error.cause


def test_an_unknown_code_is_reported_with_its_code_and_text(simulator: QualysSimulator) -> None:
    body = b"<SIMPLE_RETURN><RESPONSE><CODE>4242</CODE><TEXT>Something new</TEXT></RESPONSE></SIMPLE_RETURN>"
    error = answer_with(simulator, "kb", 200, body)
    assert type(error) is QualysApiError and error.qualys_code == "4242" and "Something new" in error.cause


def test_maintenance_and_busy_codes_are_retried(simulator: QualysSimulator) -> None:
    """1999 (scheduled maintenance) once, then the real answer: the call succeeds."""
    body = b"<SIMPLE_RETURN><RESPONSE><CODE>1999</CODE><TEXT>Scheduled maintenance</TEXT></RESPONSE></SIMPLE_RETURN>"
    simulator.inject(Fault("kb", "canned", times=1, status=200, body=body))
    with client_for(simulator) as client:
        assert [entry.qid for entry in fetch_entries(client, [6])] == [6]
        assert client.stats.retries == 1


def test_a_409_without_a_known_code_on_the_knowledge_base_is_its_permission(simulator: QualysSimulator) -> None:
    body = b"<SIMPLE_RETURN><RESPONSE><TEXT>Access denied</TEXT></RESPONSE></SIMPLE_RETURN>"
    error = answer_with(simulator, "kb", 409, body)
    assert "KnowledgeBase permission" in error.cause and "knowledge_base/vuln/" in error.action


def test_validate_reports_the_account_problem_of_a_200_simple_return(simulator: QualysSimulator) -> None:
    body = (FIXTURES / "errors/simple_return_2001_account_expired.xml").read_bytes()
    simulator.inject(Fault("kb", "canned", times=1, status=200, body=body))
    try:
        report = validate_connection(simulator.url, USER, Secret(PASSWORD))
    finally:
        simulator.clear_faults()
    kb = {check.name: check for check in report.checks}["knowledge_base"]
    assert (report.http_status(), kb.ok, kb.http_status, kb.qualys_code) == (422, False, 200, "2001")
    assert kb.cause is not None and "the account has expired" in kb.cause
    assert kb.action is not None and "Renew" in kb.action
