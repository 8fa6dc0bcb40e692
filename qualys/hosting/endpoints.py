"""HTTP handlers behind ``POST /api/qualys/validate`` and ``POST /api/qualys/connect``.

Plain functions of (body bytes, settings) -> (status, JSON dict), so they are
tested without the Functions host. Passwords are never echoed, and stored
credentials are never sent to a URL that came from a request body.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from qualys.api.validation import invalid_url_report, validate_connection
from qualys.config.secret import Secret
from qualys.config.settings import SettingsReader, asset_partitions
from qualys.config.urls import normalize_api_url
from qualys.errors import ConfigError
from qualys.hosting.credentials import SecretClientFactory, load_credentials, store_credentials
from qualys.hosting.endpoint_guard import allowed_hosts, check_caller_api_url

log = logging.getLogger(__name__)

#: {"apiUrl", "username", "password"} fits in far less; anything larger is not a connection request.
MAX_BODY_BYTES = 4096
Response = tuple[int, dict[str, object]]
#: ``user:password@`` right after the scheme of a URL (the part a refused apiUrl must not echo).
_USERINFO = re.compile(r"(?<=://)[^/?#@]*@")


class HttpProblem(Exception):
    """A request we answer with an error status before contacting anything."""

    def __init__(self, status: int, payload: dict[str, object]) -> None:
        super().__init__(status)
        self.status = status
        self.payload = payload

    @classmethod
    def message(cls, status: int, text: str) -> HttpProblem:
        return cls(status, {"ok": False, "error": text})


@dataclass(frozen=True)
class CallerConnection:
    api_url: str
    username: str
    password: Secret


def parse_body(body: bytes) -> dict[str, object]:
    if len(body) > MAX_BODY_BYTES:
        raise HttpProblem.message(413, f"Request body over {MAX_BODY_BYTES} bytes.")
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HttpProblem.message(400, "Request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise HttpProblem.message(400, "Request body must be a JSON object.")
    return value


def caller_connection(body: dict[str, object], reader: SettingsReader) -> CallerConnection:
    """The body's connection, vetted: credentials present, URL on the allow-list (else 400, nothing sent)."""
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not username.strip() or not isinstance(password, str) or not password:
        raise HttpProblem.message(400, "Give apiUrl, username and password together (strings).")
    if len(username) > 256 or len(password) > 1024:
        raise HttpProblem.message(400, "username or password is too long.")
    raw_url = body.get("apiUrl")
    try:
        api_url = check_caller_api_url(raw_url, allowed_hosts(reader.get("QUALYS_ALLOWED_HOSTS")))
    except ConfigError as error:
        raise HttpProblem(400, invalid_url_report(_echoable(raw_url, password), error).to_dict()) from None
    return CallerConnection(api_url, username.strip(), Secret(password))


def _echoable(raw_url: object, password: str) -> object:
    """A refused apiUrl as it may be echoed: without user information and without the password anywhere."""
    if not isinstance(raw_url, str):
        return raw_url
    return _USERINFO.sub("***@", raw_url).replace(password, "***")


def partitions(reader: SettingsReader) -> int:
    """The sync's id ranges (above 1, validation also checks the count API); invalid: answered as a server error."""
    try:
        return asset_partitions(reader)
    except ConfigError as error:
        raise HttpProblem.message(500, str(error)) from None


def handle_validate(
    body: bytes, reader: SettingsReader | None = None, secret_client: SecretClientFactory | None = None
) -> Response:
    """Validate the connection in the body, or the stored one (settings + vault) when the body is empty."""
    settings = reader or SettingsReader()
    try:
        ranges = partitions(settings)
        parsed = parse_body(body)
        if parsed:
            caller = caller_connection(parsed, settings)
            report = validate_connection(caller.api_url, caller.username, caller.password, partitions=ranges)
        else:
            try:
                credentials = load_credentials(settings, secret_client)
                api_url = normalize_api_url(
                    credentials.api_url or settings.require("QUALYS_API_URL", "Set it, or call /api/qualys/connect.")
                )
            except ConfigError as error:
                raise HttpProblem(400, invalid_url_report(None, error).to_dict()) from None
            report = validate_connection(api_url, credentials.username, credentials.password, partitions=ranges)
    except HttpProblem as problem:
        return problem.status, problem.payload
    return report.http_status(), report.to_dict()


def handle_connect(
    body: bytes, reader: SettingsReader | None = None, secret_client: SecretClientFactory | None = None
) -> Response:
    """Validate the body's connection and, only when it works, store it in Key Vault."""
    settings = reader or SettingsReader()
    try:
        if not settings.boolean("QUALYS_CONNECT_ENABLED"):
            raise HttpProblem.message(403, "The connect endpoint is disabled (QUALYS_CONNECT_ENABLED is false).")
        parsed = parse_body(body)
        if not parsed:
            raise HttpProblem.message(400, "Give apiUrl, username and password.")
        caller = caller_connection(parsed, settings)
        ranges = partitions(settings)
        if not settings.get("KEY_VAULT_URL"):  # say so before contacting Qualys with the credentials
            raise HttpProblem.message(500, "KEY_VAULT_URL is not set: there is no vault to store the connection in.")
    except HttpProblem as problem:
        return problem.status, problem.payload
    except ConfigError as error:
        return 500, {"ok": False, "error": str(error)}
    report = validate_connection(caller.api_url, caller.username, caller.password, partitions=ranges)
    if not report.ok:
        return report.http_status(), {**report.to_dict(), "stored": False}
    try:
        store_credentials(settings, caller.api_url, caller.username, caller.password, secret_client)
    except ConfigError as error:
        log.error("connect: validated but could not store: %s", error)
        return 500, {**report.to_dict(), "ok": False, "stored": False, "error": str(error)}
    log.info("connect: stored a validated connection to %s", caller.api_url)
    return 200, {**report.to_dict(), "stored": True}
