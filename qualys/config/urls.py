"""The Qualys API server URL a setting or flag names: ``scheme://host[:port]``, HTTPS unless loopback."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from qualys.errors import ConfigError


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: the only hosts allowed over plain HTTP."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_api_url(raw: str, setting: str = "QUALYS_API_URL") -> str:
    """Return ``scheme://host[:port]`` for a Qualys API server.

    Accepts ``qualysapi.qg2.apps.qualys.com``, ``https://...`` and a trailing
    slash. Plain ``http://`` is refused except for loopback hosts (tests and
    the bundled simulator): credentials travel in every request.
    """
    text = raw.strip()
    if not text:
        raise ConfigError(f"{setting} is empty.", "Set it to your platform's API URL, e.g. https://qualysapi.qg2.apps.qualys.com.")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if not host:
        raise ConfigError(f"{setting} has no host name.", "Use e.g. https://qualysapi.qg2.apps.qualys.com.")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{setting} must not contain user information.", "Give credentials separately.")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ConfigError(
            f"{setting} must be the API server only (no path or query).",
            "Use e.g. https://qualysapi.qg2.apps.qualys.com.",
        )
    if scheme == "http":
        if not is_loopback_host(host):
            raise ConfigError(f"{setting} uses plain http:// for a non-loopback host.", "Use https://.")
    elif scheme != "https":
        raise ConfigError(f"{setting} must be an https:// URL.", "Use e.g. https://qualysapi.qg2.apps.qualys.com.")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{setting} has an invalid port.", "Remove or fix the port.") from exc
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{scheme}://{netloc}"
