"""A fake Azure Key Vault that the real ``azure.keyvault.secrets.SecretClient`` talks to.

Real TLS on 127.0.0.1 (a self-signed certificate made at test time), the Key Vault
bearer challenge (401 + ``WWW-Authenticate``), and enough of the secrets REST API:
``GET /secrets/{name}[/{version}]``, ``PUT /secrets/{name}``. Switches answer 403
for reads or writes, as a vault does when the caller's identity lacks the role.

What the client needs: HTTPS (bearer tokens
are never sent over plain http), ``verify_challenge_resource=False`` (the challenge
names vault.azure.net, not 127.0.0.1) and ``connection_verify=<the certificate>``.
``secret_client_factory`` builds such clients for injection, so no test ever reaches
``DefaultAzureCredential`` and its network probes.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from azure.core.credentials import AccessToken
from azure.keyvault.secrets import SecretClient

from tests.tls_stand_in import TlsServer, TlsStandIn, make_self_signed_cert

#: make_self_signed_cert is re-exported for the tests that build their own TLS servers.
__all__ = ["FakeKeyVault", "StubCredential", "make_self_signed_cert", "secret_client_factory"]

TENANT_ID = "72f988bf-0000-4000-8000-00000000fa4e"
VAULT_RESOURCE = "https://vault.azure.net"
#: The bearer token the stub credential hands out and the fake vault accepts.
TOKEN = "fake-vault-token"
CHALLENGE = f'Bearer authorization="https://login.microsoftonline.com/{TENANT_ID}", resource="{VAULT_RESOURCE}"'


class StubCredential:
    """A ``TokenCredential`` that hands out one fixed token and records what it was asked for."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []
        self.tenants: list[str | None] = []

    def get_token(self, *scopes: str, tenant_id: str | None = None, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        self.tenants.append(tenant_id)
        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass(frozen=True)
class VaultRequest:
    method: str
    path: str
    #: An ``Authorization`` header was present (the challenge probe has none).
    authorized: bool
    status: int
    #: Its scheme ("Bearer"), to show no other credential ever reaches the vault.
    scheme: str | None = None


@dataclass
class _Version:
    version: str
    value: str
    created: int


class FakeKeyVault(TlsStandIn):
    """``https://127.0.0.1:<port>``; tests set secrets directly with :meth:`set` and read the request log."""

    thread_name = "fake key vault"

    def __init__(self, directory: Path, *, token: str = TOKEN) -> None:
        super().__init__(directory)
        self.credential = StubCredential(token)
        self.deny_reads = False
        self.deny_writes = False
        self._secrets: dict[str, list[_Version]] = {}
        self._log: list[VaultRequest] = []
        self._lock = threading.Lock()


    # ---- test-side access (not logged)
    def set(self, name: str, value: str) -> str:
        with self._lock:
            return self._set_locked(name, value).version

    def value(self, name: str) -> str | None:
        with self._lock:
            versions = self._secrets.get(name)
            return versions[-1].value if versions else None

    def delete(self, name: str) -> None:
        with self._lock:
            self._secrets.pop(name, None)

    @property
    def requests(self) -> list[VaultRequest]:
        with self._lock:
            return list(self._log)

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    # ---- protocol
    def _set_locked(self, name: str, value: str) -> _Version:
        entry = _Version(uuid.uuid4().hex, value, int(time.time()))
        self._secrets.setdefault(name, []).append(entry)
        return entry

    def _bundle(self, name: str, entry: _Version) -> dict[str, object]:
        return {
            "value": entry.value,
            "id": f"{self.url}/secrets/{name}/{entry.version}",
            "attributes": {
                "enabled": True, "created": entry.created, "updated": entry.created,
                "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90,
            },
            "tags": {},
        }

    def handle(self, method: str, target: str, authorization: str | None, body: bytes) -> tuple[int, dict[str, object] | None]:
        """One request -> (status, JSON body); 401 answers carry the bearer challenge (added by the handler)."""
        path = urlsplit(target).path
        if authorization != f"Bearer {self.credential.token}":
            return 401, None
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if len(parts) not in (2, 3) or parts[0] != "secrets" or not parts[1]:
            return 400, _error("BadParameter", f"The request URI {path} is not valid.")
        name, version = parts[1], parts[2] if len(parts) == 3 else ""
        with self._lock:
            if method == "GET":
                if self.deny_reads:
                    return 403, _forbidden("Microsoft.KeyVault/vaults/secrets/getSecret/action", name)
                versions = self._secrets.get(name, [])
                found = [v for v in versions if v.version == version] if version else versions[-1:]
                if not found:
                    return 404, _error(
                        "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
                    )
                return 200, self._bundle(name, found[0])
            if method == "PUT" and not version:
                if self.deny_writes:
                    return 403, _forbidden("Microsoft.KeyVault/vaults/secrets/setSecret/action", name)
                try:
                    value = json.loads(body)["value"]
                except (ValueError, KeyError, TypeError):
                    return 400, _error("BadParameter", "Property value is required.")
                if not isinstance(value, str):
                    return 400, _error("BadParameter", "Property value must be a string.")
                return 200, self._bundle(name, self._set_locked(name, value))
        return 405, _error("MethodNotAllowed", f"{method} is not supported here.")

    def record(self, entry: VaultRequest) -> None:
        with self._lock:
            self._log.append(entry)


def _error(code: str, message: str) -> dict[str, object]:
    return {"error": {"code": code, "message": message}}


def _forbidden(action: str, name: str) -> dict[str, object]:
    message = (
        f"Caller is not authorized to perform action on resource. Action: '{action}' "
        f"Resource: 'secrets/{name}' Assignment: (not found) DecisionReason: 'DeniedWithNoValidRBAC'"
    )
    return {"error": {"code": "Forbidden", "message": message, "innererror": {"code": "ForbiddenByRbac"}}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers after stop()
    timeout = 30

    def log_message(self, format: str, *args: object) -> None:
        """Silent; see FakeKeyVault.requests."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        vault = cast(FakeKeyVault, cast(TlsServer, self.server).owner)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        authorization = self.headers.get("Authorization")
        status, payload = vault.handle(method, self.path, authorization, body)
        scheme = authorization.split(" ", 1)[0] if authorization else None
        vault.record(VaultRequest(method, urlsplit(self.path).path, authorization is not None, status, scheme))
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", CHALLENGE)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-keyvault-service-version", "1.9.0.0")
        self.end_headers()
        self.wfile.write(data)


FakeKeyVault.handler = _Handler


def secret_client_factory(vault: FakeKeyVault, calls: list[str] | None = None) -> Callable[[str], SecretClient]:
    """What ``load_credentials``/``handle_*``/``run_scheduled_sync`` take as ``secret_client``.

    The client targets the URL the code under test passes (its ``KEY_VAULT_URL``); ``calls``
    collects those URLs. A new client per call, as in production: nothing is cached between runs.
    """

    def make(vault_url: str) -> SecretClient:
        if calls is not None:
            calls.append(vault_url)
        return SecretClient(
            vault_url,
            vault.credential,
            verify_challenge_resource=False,
            connection_verify=str(vault.cert_path),
            retry_total=1,
        )

    return make
