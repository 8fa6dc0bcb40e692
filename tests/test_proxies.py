"""The standard proxy variables (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) work with nothing to configure.

The Qualys client (requests) and the Azure SDK clients (azure-core's requests transport) both read
them. Through an HTTPS proxy a connection is a ``CONNECT`` tunnel: the proxy learns the host and port
and carries encrypted bytes, so the Qualys credentials reach the Qualys host only. The tests run a
recording forward proxy on loopback in front of a Qualys simulator and a Key Vault stand-in, both
serving TLS, and Azurite (plain HTTP on loopback, so its requests are forwarded in the clear).
"""

from __future__ import annotations

import base64
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from qualys.config.settings import SettingsReader
from qualys.hosting.scheduled import run_scheduled_sync
from qualys.output.folder import FolderSink
from qualys_simulator.estate import Estate
from qualys_simulator.server import QualysSimulator
from tests.forward_proxy import ForwardProxy
from tests.helpers import PASSWORD, USER, Run, assert_matches_truth, estate_in_past, read_latest, sync
from tests.keyvault_fake import FakeKeyVault, make_self_signed_cert, secret_client_factory

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY")
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode())


@pytest.fixture(scope="module")
def estate() -> Estate:
    return estate_in_past(120, seed=41)


@pytest.fixture
def tls_simulator(estate: Estate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[QualysSimulator]:
    """The Qualys simulator over HTTPS with a self-signed certificate the clients are told to trust."""
    cert, key = make_self_signed_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with QualysSimulator(estate, username=USER, password=PASSWORD, tls=context) as sim:
        yield sim


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as running:
        yield running


def host_port(url: str) -> str:
    return url.split("://", 1)[1]


def test_the_qualys_client_goes_through_https_proxy_and_only_qualys_sees_the_credentials(
    tls_simulator: QualysSimulator, proxy: ForwardProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    result = sync(tls_simulator, str(tmp_path / "out"))
    assert_matches_truth(read_latest_folder(tmp_path / "out"), tls_simulator.estate)
    assert result.devices > 0 and tls_simulator.requests  # Qualys answered: it got the credentials
    tunnels = {(c.method, c.target) for c in proxy.carried}
    assert tunnels == {("CONNECT", host_port(tls_simulator.url))}  # the proxy learnt the host, nothing else
    assert not any("Authorization" in c.headers or "authorization" in c.headers for c in proxy.carried)
    seen = proxy.everything_seen()
    assert PASSWORD.encode() not in seen and BASIC not in seen


def test_no_proxy_hosts_are_reached_directly(
    tls_simulator: QualysSimulator, proxy: ForwardProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    sync(tls_simulator, str(tmp_path / "out"))
    assert proxy.carried == []


def test_the_timer_run_sends_qualys_key_vault_and_blob_storage_through_the_proxy(
    tls_simulator: QualysSimulator,
    proxy: ForwardProxy,
    tmp_path: Path,
    azurite_connection_string: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The production path: credentials from Key Vault (real SecretClient), Qualys, output to Blob Storage."""
    (tmp_path / "vault").mkdir()
    with FakeKeyVault(tmp_path / "vault") as vault:
        vault.set("qualys-username", USER)
        vault.set("qualys-password", PASSWORD)
        vault.set("qualys-api-url", tls_simulator.url)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        container = f"proxy-{uuid.uuid4().hex[:8]}"
        reader = SettingsReader({
            "KEY_VAULT_URL": vault.url, "OUTPUT_STORAGE_CONNECTION_STRING": azurite_connection_string,
            "OUTPUT_CONTAINER": container, "QUALYS_PAGE_SIZE": "40",
        })
        result = run_scheduled_sync(reader, secret_client=secret_client_factory(vault))
        vault_requests, vault_address, token = vault.requests, host_port(vault.url), vault.credential.token
    assert result.devices > 0
    azurite = azurite_connection_string.split("BlobEndpoint=", 1)[1].rstrip(";")
    tunnels = {c.target for c in proxy.carried if c.method == "CONNECT"}
    assert tunnels == {host_port(tls_simulator.url), vault_address}
    forwarded = [c for c in proxy.carried if c.method != "CONNECT"]
    assert forwarded and all(c.target.startswith(azurite) for c in forwarded)  # plain HTTP: Azurite, forwarded
    assert all(c.headers.get("Authorization", "").startswith("SharedKey ") for c in forwarded)
    seen = proxy.everything_seen()
    assert PASSWORD.encode() not in seen and BASIC not in seen and token.encode() not in seen
    assert {r.scheme for r in vault_requests} <= {None, "Bearer"}  # the vault never saw Qualys's Basic credentials


def read_latest_folder(root: Path) -> Run:
    return read_latest(FolderSink(root))
