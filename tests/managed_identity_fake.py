"""A stand-in for the App Service / Azure Functions managed identity endpoint.

Inside a Function App, azure-identity's ``ManagedIdentityCredential`` asks ``IDENTITY_ENDPOINT``
(a plain-http loopback address the platform provides) for tokens, proving itself with the
``X-IDENTITY-HEADER`` secret from ``IDENTITY_HEADER``:
``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=<resource>&client_id=<client id>``, answered
with ``{"access_token", "expires_on", "resource", "token_type"}``
(https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference).
This stand-in speaks that protocol, so tests run the connector's own credential code
(``qualys.hosting.identity.azure_credential``) unchanged: it hands out one token per resource to the
one user-assigned identity it knows, and records what was asked.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import cast
from urllib.parse import parse_qs, urlsplit

CLIENT_ID = "8f4c2a6e-1b3d-4e5f-9a7b-0c1d2e3f4a5b"
IDENTITY_HEADER = "stand-in-identity-header-7f3e"


@dataclass(frozen=True)
class TokenRequest:
    resource: str
    client_id: str | None
    proved: bool
    status: int


class FakeManagedIdentity:
    """``http://127.0.0.1:<port>/msi/token``; ``tokens`` maps a resource to the token it gets."""

    def __init__(self, tokens: dict[str, str], *, client_id: str = CLIENT_ID, header: str = IDENTITY_HEADER) -> None:
        self.tokens = dict(tokens)
        self.client_id = client_id
        self.header = header
        self._log: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        cast(_Server, self._server).owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake managed identity", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/msi/token"

    def environment(self) -> dict[str, str]:
        """What the platform sets in a Function App with this user-assigned identity."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.header, "AZURE_CLIENT_ID": self.client_id}

    @property
    def requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._log)

    def answer(self, query: str, header: str | None) -> tuple[int, dict[str, object]]:
        params = {key: values[0] for key, values in parse_qs(query).items()}
        resource, client_id = params.get("resource", ""), params.get("client_id")
        proved = header == self.header
        if not proved:
            status, body = 401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong."}
        elif params.get("api-version") != "2019-08-01":
            status, body = 400, {"statusCode": 400, "message": "Unsupported api-version."}
        elif client_id != self.client_id:
            status, body = 400, {"statusCode": 400, "message": "No user-assigned identity with this client id."}
        elif resource.rstrip("/") not in self.tokens:
            status, body = 400, {"statusCode": 400, "message": f"No token for resource {resource}."}
        else:
            status = 200
            body = {
                "access_token": self.tokens[resource.rstrip("/")], "expires_on": str(int(time.time()) + 3600),
                "resource": resource, "token_type": "Bearer", "client_id": client_id,
            }
        with self._lock:
            self._log.append(TokenRequest(resource, client_id, proved, status))
        return status, body

    def __enter__(self) -> FakeManagedIdentity:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    owner: FakeManagedIdentity


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Silent; see FakeManagedIdentity.requests."""

    def do_GET(self) -> None:
        fake = cast(_Server, self.server).owner
        parts = urlsplit(self.path)
        if parts.path != "/msi/token":
            status, body = 404, {"statusCode": 404, "message": "Not found."}
        else:
            status, body = fake.answer(parts.query, self.headers.get("X-IDENTITY-HEADER"))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
