"""The Azure Functions: bindings, timer sync, validate/connect endpoints, SSRF guard, project files.

Functions are invoked directly from the indexed app (no host: Core Tools cannot be installed
offline), with real ``azure.functions`` request objects, the Qualys simulator, Azurite and a
TLS fake Key Vault behind the real ``SecretClient``. Paths that read Key Vault go through
``qualys.hosting.endpoints`` / ``qualys.hosting.scheduled`` with an injected client factory, because the
indexed callables build the production client (managed identity) themselves.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from qualys.config.catalog import SETTINGS_BY_NAME
from qualys.config.secret import Secret
from qualys.config.settings import BlobOutput, SettingsReader, load_sync_settings
from qualys.errors import AuthenticationError, ConfigError
from qualys.hosting.endpoint_guard import allowed_hosts, check_caller_api_url
from qualys.hosting.endpoints import MAX_BODY_BYTES, handle_connect
from qualys.hosting.scheduled import FAILURE_PREFIX, SUMMARY_PREFIX, run_scheduled_sync
from qualys.output.blob import BlobSink
from qualys.output.folder import FolderSink
from qualys_simulator.estate import Estate
from qualys_simulator.server import Fault, Latency, QualysSimulator
from tests.helpers import (
    PASSWORD,
    USER,
    assert_matches_truth,
    clear_connector_settings,
    estate_in_past,
    read_latest,
    subprocess_env,
)
from tests.keyvault_fake import FakeKeyVault, secret_client_factory

ROOT = Path(__file__).resolve().parent.parent
#: Never to appear in any response, log or CLI output.
WRONG_PASSWORD = "Wr0ng-Zq9-f7e3!pass"
HTTP_DEADLINE_SECONDS = 30.0
CHECK_NAMES = ["api_url", "reachability", "asset_search", "knowledge_base", "tag_search", "asset_count"]


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="session")
def functions() -> dict[str, Any]:
    """The indexed app, once per session: ``get_functions()`` refuses to run twice on one app."""
    import function_app

    return {fn.get_function_name(): fn for fn in function_app.app.get_functions()}


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test from an environment without any connector setting."""
    clear_connector_settings(monkeypatch)


@pytest.fixture(scope="module")
def estate() -> Estate:
    return estate_in_past(80, seed=23)


@pytest.fixture
def simulator(estate: Estate) -> Iterator[QualysSimulator]:
    with QualysSimulator(estate, username=USER, password=PASSWORD) as sim:
        yield sim


@pytest.fixture
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeKeyVault]:
    with FakeKeyVault(tmp_path_factory.mktemp("vault")) as fake:
        yield fake


def dead_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class LoopbackServer:
    """A plain HTTP server on 127.0.0.1 that answers every request the same way and records it."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                owner.requests.append(Seen(self.command, self.path, dict(self.headers.items())))
                body = b"<html><body>nothing here</body></html>"
                self.send_response(owner.status)
                for name, value in owner.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_HEAD = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def canary() -> Iterator[LoopbackServer]:
    server = LoopbackServer(200)
    yield server
    server.close()


@dataclass
class Reply:
    status: int
    payload: dict[str, Any]
    text: str

    def check(self, name: str) -> dict[str, Any]:
        return next(check for check in self.payload["checks"] if check["name"] == name)


def post(functions: dict[str, Any], name: str, body: bytes | str | dict[str, object]) -> Reply:
    """POST to an indexed HTTP function the way the host would, and time it."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body
    route = functions[name].get_function_json()
    request = func.HttpRequest(
        method="POST",
        url=f"http://localhost:7071/api/{json.loads(route)['bindings'][0]['route']}",
        body=data,
        headers={"Content-Type": "application/json"},
    )
    started = time.monotonic()
    response = functions[name].get_user_function()(request)
    elapsed = time.monotonic() - started
    assert elapsed < HTTP_DEADLINE_SECONDS, f"{name} took {elapsed:.1f} s"
    assert response.mimetype == "application/json"
    text = response.get_body().decode()
    return Reply(response.status_code, json.loads(text), text)


def body_for(api_url: str, password: str = PASSWORD, username: str = USER) -> dict[str, object]:
    return {"apiUrl": api_url, "username": username, "password": password}


def assert_no_password(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and WRONG_PASSWORD not in text


def vault_reader(vault: FakeKeyVault, output_dir: Path, **extra: str) -> SettingsReader:
    return SettingsReader({"KEY_VAULT_URL": vault.url, "OUTPUT_DIR": str(output_dir), "QUALYS_PAGE_SIZE": "25", **extra})


def seed_vault(vault: FakeKeyVault, simulator: QualysSimulator, api_url: str | None = None) -> None:
    vault.set("qualys-username", simulator.username)
    vault.set("qualys-password", simulator.password)
    vault.set("qualys-api-url", api_url or simulator.url)


# --------------------------------------------------------------------------- bindings


def test_indexed_app_has_the_three_functions_with_their_bindings(functions: dict[str, Any]) -> None:
    assert set(functions) == {"qualys_sync", "qualys_validate", "qualys_connect"}

    timer = json.loads(functions["qualys_sync"].get_function_json())["bindings"]
    assert timer == [{
        "direction": "IN", "type": "timerTrigger", "name": "timer",
        "schedule": "%QUALYS_SYNC_SCHEDULE%", "runOnStartup": False, "useMonitor": True,
    }]
    for name, route in (("qualys_validate", "qualys/validate"), ("qualys_connect", "qualys/connect")):
        bindings = {b["type"]: b for b in json.loads(functions[name].get_function_json())["bindings"]}
        assert set(bindings) == {"httpTrigger", "http"}
        trigger = bindings["httpTrigger"]
        assert trigger["route"] == route
        assert trigger["methods"] == ["POST"]
        assert trigger["authLevel"] == "FUNCTION"
        assert bindings["http"]["direction"] == "OUT"
    # the schedule placeholder names a catalogued setting (the host resolves it from app settings)
    assert SETTINGS_BY_NAME["QUALYS_SYNC_SCHEDULE"].default == "0 0 */4 * * *"


# --------------------------------------------------------------------------- timer


def test_timer_function_runs_the_cli_sync_and_logs_one_summary_line(
    functions: dict[str, Any],
    estate: Estate,
    azurite_connection_string: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    timer_container, cli_container = f"timer-{uuid.uuid4().hex[:8]}", f"cli-{uuid.uuid4().hex[:8]}"
    common = {
        "QUALYS_USERNAME": USER,
        "QUALYS_PASSWORD": PASSWORD,
        "OUTPUT_STORAGE_CONNECTION_STRING": azurite_connection_string,
        "QUALYS_PAGE_SIZE": "25",
    }
    with QualysSimulator(estate, username=USER, password=PASSWORD) as sim:
        for name, value in {**common, "QUALYS_API_URL": sim.url, "OUTPUT_CONTAINER": timer_container}.items():
            monkeypatch.setenv(name, value)
        sim.inject(Fault("hostasset", "http_503", times=1, wait_seconds=1))  # one retry, visible in the summary
        caplog.set_level(logging.INFO, logger="qualys")
        functions["qualys_sync"].get_user_function()(TimerRequest(past_due=True))
        cli = subprocess.run(
            [sys.executable, "-m", "qualys", "sync", "--json"],
            env=subprocess_env({**common, "QUALYS_API_URL": sim.url, "OUTPUT_CONTAINER": cli_container}),
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )
    assert cli.returncode == 0, cli.stderr

    def latest(container: str) -> Any:
        return read_latest(BlobSink.from_settings(BlobOutput(container, connection_string=Secret(azurite_connection_string))))

    timer_run, cli_run = latest(timer_container), latest(cli_container)
    assert timer_run.device_count > 50 and timer_run.finding_count > 1000
    assert timer_run.devices == cli_run.devices
    assert timer_run.findings == cli_run.findings
    assert_matches_truth(timer_run, estate)

    summaries = [r for r in caplog.records if r.getMessage().startswith(SUMMARY_PREFIX)]
    assert len(summaries) == 1
    line = summaries[0].getMessage()
    assert "\n" not in line and summaries[0].levelno == logging.INFO
    summary = json.loads(line[len(SUMMARY_PREFIX):])
    assert summary["run_id"] == timer_run.manifest["run_id"]
    assert summary["mode"] == "full"
    assert summary["devices"] == timer_run.device_count and summary["findings"] == timer_run.finding_count
    assert isinstance(summary["duration_seconds"], float) and 0 < summary["duration_seconds"] < 60
    assert summary["calls"]["hostasset"] == summary["pages"] + 1  # the 503 was one more call
    assert summary["retries"] == 1
    assert summary["credentials"] == "environment"
    cli_summary = json.loads(cli.stdout)
    assert (cli_summary["devices"], cli_summary["findings"], cli_summary["retries"]) == (
        summary["devices"], summary["findings"], 0,
    )
    assert any("past due" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert_no_password(caplog.text, cli.stdout, cli.stderr)


def test_timer_reads_credentials_from_the_vault_and_prefers_its_api_url(
    simulator: QualysSimulator, vault: FakeKeyVault, tmp_path: Path, estate: Estate
) -> None:
    seed_vault(vault, simulator)
    urls: list[str] = []
    reader = vault_reader(vault, tmp_path, QUALYS_API_URL=f"http://127.0.0.1:{dead_port()}")
    result = run_scheduled_sync(reader, secret_client=secret_client_factory(vault, urls))
    run = read_latest(FolderSink(tmp_path))
    assert_matches_truth(run, estate)
    assert result.devices == run.device_count > 0
    assert urls == [vault.url]
    reads = [(r.path.rstrip("/"), r.status) for r in vault.requests if r.method == "GET" and r.authorized]
    assert reads == [("/secrets/qualys-username", 200), ("/secrets/qualys-password", 200), ("/secrets/qualys-api-url", 200)]
    assert vault.credential.scopes and set(vault.credential.scopes) == {("https://vault.azure.net/.default",)}


def test_a_rotated_password_is_used_by_the_next_run_without_restart(
    simulator: QualysSimulator, vault: FakeKeyVault, tmp_path: Path, estate: Estate
) -> None:
    seed_vault(vault, simulator)
    factory = secret_client_factory(vault)
    reader = vault_reader(vault, tmp_path)
    first = run_scheduled_sync(reader, secret_client=factory)
    assert first.mode == "full"

    simulator.password = "R0tated-Secret-2"  # rotated in Qualys, not yet in the vault: the run fails
    with pytest.raises(AuthenticationError, match="user name or password"):
        run_scheduled_sync(reader, secret_client=factory)
    vault.set("qualys-password", "R0tated-Secret-2")
    vault.reset_log()
    second = run_scheduled_sync(reader, secret_client=factory)
    assert second.run_id != first.run_id and second.mode == "incremental"
    assert [r.path.rstrip("/") for r in vault.requests if r.method == "GET"].count("/secrets/qualys-password") == 1
    assert_matches_truth(read_latest(FolderSink(tmp_path)), estate)


def test_a_missing_vault_secret_is_one_line_naming_vault_and_secret(vault: FakeKeyVault, tmp_path: Path) -> None:
    vault.set("qualys-username", USER)
    reader = vault_reader(vault, tmp_path, QUALYS_PASSWORD_SECRET="svc-qualys-pw")
    with pytest.raises(ConfigError) as caught:
        run_scheduled_sync(reader, secret_client=secret_client_factory(vault))
    message = str(caught.value)
    assert "\n" not in message
    assert vault.url in message and "'svc-qualys-pw'" in message and "does not exist" in message
    assert "POST /api/qualys/connect" in message


def test_denied_vault_access_is_one_line_naming_the_role(vault: FakeKeyVault, tmp_path: Path) -> None:
    vault.set("qualys-username", USER)
    vault.deny_reads = True
    with pytest.raises(ConfigError) as caught:
        run_scheduled_sync(vault_reader(vault, tmp_path), secret_client=secret_client_factory(vault))
    message = str(caught.value)
    assert "\n" not in message
    assert vault.url in message and "'qualys-username'" in message and "HTTP 403" in message
    assert "'Key Vault Secrets User'" in message
    assert not list(tmp_path.iterdir())  # nothing was synced


# --------------------------------------------------------------------------- validate: every outcome


@dataclass(frozen=True)
class Outcome:
    status: int
    sim: dict[str, bool] = field(default_factory=dict)
    faults: tuple[Fault, ...] = ()
    password: str = PASSWORD
    #: Settings of the Function App (QUALYS_ASSET_PARTITIONS above 1 adds the count check).
    env: dict[str, str] = field(default_factory=dict)
    #: check name -> (ok, http_status, qualys_code, words in cause, words in action)
    checks: dict[str, tuple[bool, int | None, str | None, tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)


OUTCOMES = {
    "good": Outcome(200, checks={
        "asset_search": (True, 200, None, (), ()),
        "knowledge_base": (True, 200, None, (), ()),
        "tag_search": (True, 200, None, (), ()),
    }),
    "good_with_id_ranges": Outcome(200, env={"QUALYS_ASSET_PARTITIONS": "4"}, checks={
        "asset_search": (True, 200, None, (), ()),
        "knowledge_base": (True, 200, None, (), ()),
        "tag_search": (True, 200, None, (), ()),
        "asset_count": (True, 200, None, (), ()),
    }),
    "wrong_password": Outcome(422, password=WRONG_PASSWORD, checks={
        "asset_search": (False, 401, "INVALID_CREDENTIALS", ("user name or password",), ("platform",)),
        "knowledge_base": (False, 401, "2000", ("user name or password", "Bad Login/Password"), ()),
        "tag_search": (False, 401, "INVALID_CREDENTIALS", ("user name or password",), ("platform",)),
    }),
    "missing_asset_permission": Outcome(422, sim={"asset_permission": False}, checks={
        "asset_search": (False, 200, "UNAUTHORIZED", ("Asset View",),
                         ("Read Asset", "API Access", "Allow user view access to all objects")),
        "knowledge_base": (True, 200, None, (), ()),
        "tag_search": (False, 200, "UNAUTHORIZED", ("read asset tags",), ("access to tags", "criticality")),
    }),
    "missing_tag_permission": Outcome(422, faults=(Fault("tag", "qps_unauthorized"),), checks={
        "asset_search": (True, 200, None, (), ()),
        "knowledge_base": (True, 200, None, (), ()),
        "tag_search": (False, 200, "UNAUTHORIZED", ("not allowed to use tag", "read asset tags"),
                       ("API Access", "access to tags", "Allow user view access to all objects")),
    }),
    "count_api_refused_with_id_ranges": Outcome(
        422, env={"QUALYS_ASSET_PARTITIONS": "4"}, faults=(Fault("count", "qps_unauthorized"),), checks={
            "asset_search": (True, 200, None, (), ()),
            "knowledge_base": (True, 200, None, (), ()),
            "tag_search": (True, 200, None, (), ()),
            "asset_count": (False, 200, "UNAUTHORIZED", ("not allowed to use count",), ("Read Asset",)),
        },
    ),
    "http_403": Outcome(422, faults=(Fault("hostasset", "http_403"),), checks={
        "asset_search": (False, 403, None, ("not allowed",), ("Read Asset", "full scope")),
        "knowledge_base": (True, 200, None, (), ()),
        "tag_search": (True, 200, None, (), ()),
    }),
    "missing_kb_permission": Outcome(422, sim={"kb_permission": False}, checks={
        "asset_search": (True, 200, None, (), ()),
        "knowledge_base": (False, 409, None, ("KnowledgeBase permission",), ("KnowledgeBase",)),
        "tag_search": (True, 200, None, (), ()),
    }),
    "rate_limited": Outcome(422, faults=(Fault("*", "http_429", times=50),), checks={
        "asset_search": (False, 429, None, ("too many requests",), ("dedicated Qualys API user",)),
        "knowledge_base": (False, 429, None, ("too many requests",), ("dedicated Qualys API user",)),
        "tag_search": (False, 429, None, ("too many requests",), ("dedicated Qualys API user",)),
    }),
    "server_errors": Outcome(502, faults=(Fault("*", "http_503", times=50),), checks={
        "asset_search": (False, 503, None, ("could not be reached or failed temporarily",), ("allow-listed",)),
    }),
}


Expected = dict[str, tuple[bool, int | None, str | None, tuple[str, ...], tuple[str, ...]]]


def assert_checks(reply: Reply, expected: Expected) -> None:
    for name, (ok, http_status, code, cause_words, action_words) in expected.items():
        check = reply.check(name)
        assert (check["ok"], check["http_status"], check["qualys_code"]) == (ok, http_status, code), check
        if ok:
            assert check["cause"] is None and check["action"] is None
        for word in cause_words:
            assert word in check["cause"], (word, check)
        for word in action_words:
            assert word in check["action"], (word, check)


@pytest.mark.parametrize("case", list(OUTCOMES))
def test_validate_reports_each_outcome_with_cause_and_action(
    case: str, functions: dict[str, Any], estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = OUTCOMES[case]
    with QualysSimulator(estate, username=USER, password=PASSWORD, **outcome.sim) as sim:
        sim.inject(*outcome.faults)
        monkeypatch.setenv("QUALYS_ALLOWED_HOSTS", sim.url.removeprefix("http://"))
        for name, value in outcome.env.items():
            monkeypatch.setenv(name, value)
        sim_url = sim.url
        reply = post(functions, "qualys_validate", body_for(sim_url, outcome.password))
    print(f"\n--- validate {case}: HTTP {reply.status}\n{json.dumps(reply.payload, indent=2)}")
    assert reply.status == outcome.status
    assert reply.payload["ok"] is (outcome.status == 200)
    assert reply.payload["api_url"] == sim_url
    assert [check["name"] for check in reply.payload["checks"]] == CHECK_NAMES[: 2 + len(outcome.checks)]
    assert reply.check("api_url")["ok"] and reply.check("reachability")["ok"]
    assert_checks(reply, outcome.checks)
    assert_no_password(reply.text)


def test_validate_404_base_url_points_to_the_platform_list(functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    not_qualys = LoopbackServer(404)
    try:
        monkeypatch.setenv("QUALYS_ALLOWED_HOSTS", f"127.0.0.1:{not_qualys.port}")
        reply = post(functions, "qualys_validate", body_for(not_qualys.url))
    finally:
        not_qualys.close()
    print(f"\n--- validate 404: HTTP {reply.status}\n{json.dumps(reply.payload, indent=2)}")
    assert reply.status == 422
    assert reply.check("reachability") == {
        "name": "reachability", "ok": True, "http_status": 404, "qualys_code": None, "cause": None, "action": None,
    }
    words = (("No Qualys API",), ("platform-identification", "Help > About"))
    assert_checks(reply, {"asset_search": (False, 404, None, *words), "knowledge_base": (False, 404, None, *words)})
    assert_no_password(reply.text)


def test_validate_connection_refused_is_502(functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    port = dead_port()
    monkeypatch.setenv("QUALYS_ALLOWED_HOSTS", f"127.0.0.1:{port}")
    reply = post(functions, "qualys_validate", body_for(f"http://127.0.0.1:{port}"))
    print(f"\n--- validate refused: HTTP {reply.status}\n{json.dumps(reply.payload, indent=2)}")
    assert reply.status == 502 and reply.payload["ok"] is False
    assert [check["name"] for check in reply.payload["checks"]] == ["api_url", "reachability"]
    assert_checks(reply, {
        "reachability": (False, None, None, ("could not be reached", "ConnectionError"), ("allow-listed", "API URL")),
    })
    assert_no_password(reply.text)


def test_validate_with_empty_body_checks_the_stored_connection(
    functions: dict[str, Any], simulator: QualysSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUALYS_API_URL", simulator.url)
    monkeypatch.setenv("QUALYS_USERNAME", USER)
    monkeypatch.setenv("QUALYS_PASSWORD", PASSWORD)
    reply = post(functions, "qualys_validate", b"")
    assert (reply.status, reply.payload["ok"], reply.payload["api_url"]) == (200, True, simulator.url)
    assert [check["name"] for check in reply.payload["checks"]] == CHECK_NAMES[:5]
    # Each once. Not in order: the reachability probe stops reading at the status line, so the simulator
    # may log it after the asset search that follows it.
    assert sorted(r.endpoint for r in simulator.requests) == sorted(["version", "hostasset", "kb", "tag"])

    monkeypatch.setenv("QUALYS_PASSWORD", WRONG_PASSWORD)  # the stored connection is read on every call
    reply = post(functions, "qualys_validate", b"")
    assert reply.status == 422 and reply.check("asset_search")["http_status"] == 401
    assert_no_password(reply.text)

    monkeypatch.delenv("QUALYS_API_URL")
    reply = post(functions, "qualys_validate", b"  ")
    assert reply.status == 400 and "QUALYS_API_URL is not set" in reply.check("api_url")["cause"]


# --------------------------------------------------------------------------- connect


def test_connect_is_disabled_by_default(
    functions: dict[str, Any], canary: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUALYS_ALLOWED_HOSTS", f"127.0.0.1:{canary.port}")
    reply = post(functions, "qualys_connect", body_for(canary.url))
    assert reply.status == 403 and "QUALYS_CONNECT_ENABLED" in reply.payload["error"]
    assert canary.requests == []
    assert_no_password(reply.text)


def test_connect_stores_only_a_validated_connection_and_the_sync_uses_it(
    simulator: QualysSimulator, vault: FakeKeyVault, tmp_path: Path, estate: Estate
) -> None:
    factory = secret_client_factory(vault)
    settings = {"QUALYS_CONNECT_ENABLED": "true", "KEY_VAULT_URL": vault.url,
                "QUALYS_ALLOWED_HOSTS": simulator.url.removeprefix("http://")}
    reader = SettingsReader(settings)

    status, payload = handle_connect(json.dumps(body_for(simulator.url, WRONG_PASSWORD)).encode(), reader, factory)
    assert (status, payload["ok"], payload["stored"]) == (422, False, False)
    assert vault.requests == []  # nothing written, not even a probe
    assert_no_password(json.dumps(payload))

    status, payload = handle_connect(json.dumps(body_for(simulator.url + "/")).encode(), reader, factory)
    assert (status, payload["ok"], payload["stored"]) == (200, True, True)
    assert_no_password(json.dumps(payload))
    assert {r.path for r in vault.requests if r.method == "PUT" and r.status == 200} == {
        "/secrets/qualys-username", "/secrets/qualys-password", "/secrets/qualys-api-url",
    }
    assert (vault.value("qualys-username"), vault.value("qualys-password"), vault.value("qualys-api-url")) == (
        USER, PASSWORD, simulator.url,
    )

    sync_reader = vault_reader(vault, tmp_path, QUALYS_API_URL=f"http://127.0.0.1:{dead_port()}")
    result = run_scheduled_sync(sync_reader, secret_client=factory)
    assert result.devices > 0
    assert_matches_truth(read_latest(FolderSink(tmp_path)), estate)


def test_connect_reports_a_vault_that_refuses_writes(simulator: QualysSimulator, vault: FakeKeyVault) -> None:
    vault.deny_writes = True
    reader = SettingsReader({"QUALYS_CONNECT_ENABLED": "true", "KEY_VAULT_URL": vault.url,
                             "QUALYS_ALLOWED_HOSTS": simulator.url.removeprefix("http://")})
    status, payload = handle_connect(json.dumps(body_for(simulator.url)).encode(), reader, secret_client_factory(vault))
    assert (status, payload["ok"], payload["stored"]) == (500, False, False)
    assert "'Key Vault Secrets Officer'" in str(payload["error"]) and vault.url in str(payload["error"])
    assert vault.value("qualys-password") is None
    assert_no_password(json.dumps(payload))


# --------------------------------------------------------------------------- bad input


BAD_BODIES = {
    "malformed_json": (b'{"apiUrl": "https://qualysapi.qualys.com", "password": "' + PASSWORD.encode(), 400, "not valid JSON"),
    "not_utf8": (b'{"password": "\xff\xfe' + PASSWORD.encode() + b'"}', 400, "not valid JSON"),
    "not_an_object": (json.dumps([PASSWORD]).encode(), 400, "JSON object"),
    "missing_password": (json.dumps({"apiUrl": "https://qualysapi.qualys.com", "username": USER}).encode(), 400, "password"),
    "username_not_a_string": (
        json.dumps({"apiUrl": "https://qualysapi.qualys.com", "username": 7, "password": PASSWORD}).encode(), 400, "username",
    ),
    "too_large": (json.dumps({**body_for("https://qualysapi.qualys.com"), "pad": "x" * MAX_BODY_BYTES}).encode(), 413, "bytes"),
}


@pytest.mark.parametrize("name", ["qualys_validate", "qualys_connect"])
@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_input_is_refused_with_a_json_error_and_no_echo(
    case: str, name: str, functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUALYS_CONNECT_ENABLED", "true")
    body, status, words = BAD_BODIES[case]
    reply = post(functions, name, body)
    assert reply.status == status and reply.payload["ok"] is False
    assert words in reply.payload["error"]
    assert_no_password(reply.text)


def test_a_password_inside_a_rejected_api_url_is_not_echoed(functions: dict[str, Any]) -> None:
    for api_url in (f"https://{USER}:{PASSWORD}@qualysapi.qualys.com", f"https://qualysapi.qualys.com/{PASSWORD}"):
        reply = post(functions, "qualys_validate", body_for(api_url))
        assert reply.status == 400 and reply.check("api_url")["ok"] is False
        assert_no_password(reply.text)
        assert "qualysapi.qualys.com" in reply.payload["api_url"]


# --------------------------------------------------------------------------- SSRF guard


def test_urls_outside_the_allow_list_are_refused_before_any_request(
    functions: dict[str, Any], canary: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUALYS_ALLOWED_HOSTS", f"127.0.0.1:{dead_port()}, qualys.internal.example:8443")
    refused = [
        "http://qualysapi.qualys.com",
        "https://evil.example.com",
        f"https://127.0.0.1:{canary.port}",
        f"http://127.0.0.1:{canary.port}",
        f"http://localhost:{canary.port}",
        "https://[::1]",
        "https://10.0.0.5",
        "https://169.254.169.254",
        "https://qualysapi.qualys.com@evil.example.com",
        "https://evil.example.com#@qualysapi.qualys.com",
        "https://evil.example.com\\@qualysapi.qualys.com",
        "https://qualysapi.qualys.com.evil.example.com",
        "https://qualysapi.qualys.com:8443",
        "https://qualysapi.qualys.com/path",
        "https://qualysapi.qualys.com?x=1",
        "http://qualys.internal.example:8443",  # listed, but plain http for a non-loopback host
        "ftp://qualysapi.qualys.com",
        "",
    ]
    for api_url in refused:
        reply = post(functions, "qualys_validate", body_for(api_url))
        assert reply.status == 400, api_url
        assert [c["name"] for c in reply.payload["checks"]] == ["api_url"] and not reply.check("api_url")["ok"], api_url
        assert_no_password(reply.text)
    assert canary.requests == []


def test_stored_credentials_are_never_sent_to_a_url_from_the_body(
    functions: dict[str, Any], canary: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUALYS_API_URL", "https://qualysapi.qualys.com")
    monkeypatch.setenv("QUALYS_USERNAME", USER)
    monkeypatch.setenv("QUALYS_PASSWORD", PASSWORD)
    monkeypatch.setenv("QUALYS_ALLOWED_HOSTS", f"127.0.0.1:{canary.port}")  # even a listed URL
    for body in ({"apiUrl": canary.url}, {"apiUrl": canary.url, "username": USER}, {"apiUrl": canary.url, "password": ""}):
        reply = post(functions, "qualys_validate", body)
        assert reply.status == 400 and "username and password" in reply.payload["error"]
    assert canary.requests == []


def test_redirects_are_not_followed(functions: dict[str, Any], canary: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    redirector = LoopbackServer(302, {"Location": f"{canary.url}/stolen"})
    try:
        monkeypatch.setenv("QUALYS_ALLOWED_HOSTS", f"127.0.0.1:{redirector.port}")
        reply = post(functions, "qualys_validate", body_for(redirector.url))
    finally:
        redirector.close()
    assert reply.status == 422 and reply.payload["ok"] is False
    words = (("redirect", f"127.0.0.1:{canary.port}"), ("API server itself",))
    assert_checks(reply, {"asset_search": (False, 302, None, *words), "knowledge_base": (False, 302, None, *words)})
    assert canary.requests == []
    assert [seen.method for seen in redirector.requests] == ["GET", "POST", "POST", "POST"]
    assert_no_password(reply.text)


PLATFORM_HOSTS = [
    "qualysapi.qualys.com", "qualysapi.qg2.apps.qualys.com", "qualysapi.qg3.apps.qualys.com",
    "qualysapi.qg4.apps.qualys.com", "qualysapi.qualys.eu", "qualysapi.qg2.apps.qualys.eu",
    "qualysapi.qg3.apps.qualys.it", "qualysapi.qg1.apps.qualys.in", "qualysapi.qg1.apps.qualys.ca",
    "qualysapi.qg1.apps.qualys.ae", "qualysapi.qg1.apps.qualys.co.uk", "qualysapi.qg1.apps.qualys.com.au",
    "qualysapi.qg1.apps.qualysksa.com",
]


@pytest.mark.parametrize("host", PLATFORM_HOSTS)
def test_every_qualys_platform_passes_the_guard(host: str) -> None:
    assert check_caller_api_url(f"https://{host}", frozenset()) == f"https://{host}"
    assert check_caller_api_url(f"{host.upper()}/", frozenset()) == f"https://{host}"
    assert check_caller_api_url(f"https://{host}:443", frozenset()) == f"https://{host}:443"
    with pytest.raises(ConfigError, match="https://"):
        check_caller_api_url(f"http://{host}", frozenset())


def test_listed_hosts_pass_the_guard() -> None:
    listed = allowed_hosts(" Qualys.Internal.Example:8443 , 127.0.0.1:18000")
    assert listed == frozenset({"qualys.internal.example:8443", "127.0.0.1:18000"})
    assert check_caller_api_url("https://qualys.internal.example:8443", listed) == "https://qualys.internal.example:8443"
    assert check_caller_api_url("http://127.0.0.1:18000", listed) == "http://127.0.0.1:18000"
    with pytest.raises(ConfigError):
        check_caller_api_url("http://127.0.0.1:18001", listed)


# --------------------------------------------------------------------------- CLI


def test_cli_validate_json(simulator: QualysSimulator) -> None:
    def validate(password: str) -> subprocess.CompletedProcess[str]:
        env = subprocess_env({"QUALYS_API_URL": simulator.url, "QUALYS_USERNAME": USER, "QUALYS_PASSWORD": password})
        return subprocess.run(
            [sys.executable, "-m", "qualys", "validate", "--json"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )

    good = validate(PASSWORD)
    assert good.returncode == 0, good.stderr
    report = json.loads(good.stdout)  # exactly one JSON document, nothing else on stdout
    assert report["ok"] is True and [c["name"] for c in report["checks"]] == CHECK_NAMES[:5]
    bad = validate(WRONG_PASSWORD)
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["ok"] is False and report["checks"][2]["http_status"] == 401
    assert_no_password(good.stdout, good.stderr, bad.stdout, bad.stderr)


# --------------------------------------------------------------------------- project files


def test_host_json() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    assert host["functionTimeout"] == "02:00:00"
    assert host["logging"]["logLevel"] == {
        "default": "Warning", "Function": "Information", "qualys": "Information", "Host.Results": "Information",
    }
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert sampling["isEnabled"] is True
    # Request and Exception are never sampled; Trace neither, so the summary line of every run stays queryable
    assert set(sampling["excludedTypes"].split(";")) == {"Request", "Exception", "Trace"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _third_party_imports() -> set[str]:
    modules: set[str] = set()
    for path in [ROOT / "function_app.py", *(ROOT / "qualys").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            )
            modules.update(n for n in names if n.split(".")[0] not in (*sys.stdlib_module_names, "qualys", "qualys_simulator"))
    return modules


def _owning_distributions(modules: set[str]) -> set[str]:
    """The installed distribution whose RECORD lists each module's file (``azure.*`` spans many)."""
    candidates = importlib.metadata.packages_distributions()
    found = set()
    for module in modules:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, module
        origin = Path(spec.origin).resolve()
        owners = {
            _normalize(name)
            for name in candidates[module.split(".")[0]]
            if any(Path(str(f.locate())).resolve() == origin for f in importlib.metadata.files(name) or [])
        }
        assert len(owners) == 1, (module, owners)
        found |= owners
    return found


def _closure(names: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in importlib.metadata.requires(name) or []:
            if "extra ==" not in requirement:
                todo.append(_normalize(re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0]))
    return seen


def test_requirements_hold_exactly_the_runtime_dependencies() -> None:
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    pins = dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.]*", version) for version in pins.values()), pins
    listed = {_normalize(name) for name in pins}
    assert not any("worker" in name for name in listed)  # the platform provides azure-functions-worker
    used = _owning_distributions(_third_party_imports())
    assert listed == {
        "azure-functions", "azure-identity", "azure-keyvault-secrets", "azure-monitor-ingestion", "azure-storage-blob",
        "defusedxml", "requests",
    }
    assert used <= _closure(listed), used - _closure(listed)  # everything imported is installed by the list
    assert listed <= used  # and nothing listed is unused
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version, name


def test_local_settings_example_runs_against_the_local_simulator() -> None:
    settings = json.loads((ROOT / "local.settings.json.example").read_text())
    assert settings["IsEncrypted"] is False
    values: dict[str, str] = settings["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert set(values) - {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"} <= set(SETTINGS_BY_NAME)
    assert all(isinstance(value, str) for value in values.values())
    sync = load_sync_settings(values)
    assert sync.api_url == "http://127.0.0.1:18000"
    assert (sync.username, sync.password.reveal()) == ("demo-user", "demo-password")  # the simulator's defaults
    assert isinstance(sync.output, BlobOutput) and sync.output.container == "qualys"
    defaults = inspect.signature(QualysSimulator).parameters
    assert (defaults["username"].default, defaults["password"].default) == ("demo-user", "demo-password")
    assert check_caller_api_url(values["QUALYS_API_URL"], allowed_hosts(values["QUALYS_ALLOWED_HOSTS"])) == sync.api_url
    assert SettingsReader(values).boolean("QUALYS_CONNECT_ENABLED") is False
    assert "KEY_VAULT_URL" not in values


def test_connect_without_a_vault_says_so_before_contacting_qualys(simulator: QualysSimulator) -> None:
    reader = SettingsReader({"QUALYS_CONNECT_ENABLED": "true", "QUALYS_ALLOWED_HOSTS": simulator.url.removeprefix("http://")})
    status, payload = handle_connect(json.dumps(body_for(simulator.url)).encode(), reader)
    assert status == 500 and "KEY_VAULT_URL is not set" in str(payload["error"])
    assert simulator.requests == []


def test_validation_shares_one_time_budget_and_says_what_it_could_not_check(
    estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qualys.api import validation

    monkeypatch.setattr(validation, "VALIDATION_BUDGET_SECONDS", 1.0)
    monkeypatch.setattr(validation, "MIN_CHECK_SECONDS", 0.5)
    with QualysSimulator(estate, username=USER, password=PASSWORD, latency=Latency(kb=0.8)) as sim:
        report = validation.validate_connection(sim.url, USER, Secret(PASSWORD))
    checks = {check.name: check for check in report.checks}
    assert checks["asset_search"].ok and checks["knowledge_base"].ok
    assert not checks["tag_search"].ok and checks["tag_search"].cause is not None
    assert "Not checked" in checks["tag_search"].cause and report.http_status() == 502


def test_a_failed_timer_run_logs_one_failure_line_the_alert_finds(
    estate: Estate, vault: FakeKeyVault, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The 'sync failed' alert (infra/app/alerts.bicep) queries this line; a completed run logs the summary instead."""
    with QualysSimulator(estate, username=USER, password=PASSWORD) as sim:
        seed_vault(vault, sim)
        vault.set("qualys-password", WRONG_PASSWORD)
        caplog.set_level(logging.INFO, logger="qualys")
        with pytest.raises(AuthenticationError):
            run_scheduled_sync(vault_reader(vault, tmp_path), secret_client=secret_client_factory(vault))
    lines = [r for r in caplog.records if r.getMessage().startswith(FAILURE_PREFIX)]
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR
    failure = json.loads(lines[0].getMessage()[len(FAILURE_PREFIX):])
    assert failure["error"] == "AuthenticationError" and "user name or password" in failure["cause"]
    assert "platform" in failure["action"]
    assert not [r for r in caplog.records if r.getMessage().startswith(SUMMARY_PREFIX)]
    assert_no_password(caplog.text)
