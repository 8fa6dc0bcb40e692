"""Which API URLs a caller may make us contact (the validate/connect endpoints are server-side requests).

Only ``https://`` Qualys platform API hosts (docs/qualys-api.md §1.1), or hosts an
operator listed in ``QUALYS_ALLOWED_HOSTS`` (private cloud platforms; loopback
only when listed, and only then over plain http), pass. Everything else is
refused before any request is sent.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from qualys.config.urls import is_loopback_host
from qualys.errors import ConfigError

#: qualysapi.qualys.com (US1), qualysapi.qualys.eu (EU1), qualysapi.qgN.apps.qualys.<tld> (US2-4, EU2,
#: IT, IN, CA, AE, UK, AU) and qualysapi.qg1.apps.qualysksa.com (KSA1).
_PLATFORM_HOST = re.compile(
    r"^qualysapi\.(?:qualys\.com|qualys\.eu|qg[0-9]{1,2}\.apps\.qualys\.(?:com|eu|it|in|ca|ae|co\.uk|com\.au)"
    r"|qg[0-9]{1,2}\.apps\.qualysksa\.com)$"
)
MAX_URL_LENGTH = 255


def allowed_hosts(setting: str | None) -> frozenset[str]:
    """``QUALYS_ALLOWED_HOSTS``: comma-separated ``host`` or ``host:port`` entries, lower-cased."""
    return frozenset(item.strip().lower() for item in (setting or "").split(",") if item.strip())


def is_platform_host(host: str) -> bool:
    return bool(_PLATFORM_HOST.match(host))


def check_caller_api_url(raw: object, extra_hosts: frozenset[str]) -> str:
    """Return ``scheme://host[:port]`` for a caller-supplied API URL, or raise ConfigError (HTTP 400)."""
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError("apiUrl is required.", "Give your platform's API URL, e.g. https://qualysapi.qg2.apps.qualys.com.")
    text = raw.strip()
    if len(text) > MAX_URL_LENGTH or any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise ConfigError("apiUrl is not a plain URL.")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if "@" in parts.netloc or parts.username is not None:
        raise ConfigError("apiUrl must not contain user information.")
    if parts.query or parts.fragment or parts.path not in ("", "/") or "\\" in text:
        raise ConfigError("apiUrl must be the API server only, without a path or query.")
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("apiUrl has an invalid port.") from None
    hostport = f"{host}:{port}" if port is not None else host
    listed = host in extra_hosts or hostport in extra_hosts
    if not listed:
        if _is_ip(host) or is_loopback_host(host):
            raise ConfigError("apiUrl must name a Qualys platform host, not an IP address.")
        if not is_platform_host(host):
            raise ConfigError(
                f"apiUrl host {host!r} is not a Qualys platform API host.",
                "Use your platform's API URL (Qualys: Help > About); a private cloud platform must be listed in "
                "QUALYS_ALLOWED_HOSTS.",
            )
        if port not in (None, 443):
            raise ConfigError("apiUrl must use the standard HTTPS port.")
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and listed and is_loopback_host(host)):
        raise ConfigError("apiUrl must be an https:// URL.")
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}" + (f":{port}" if port is not None else "")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
