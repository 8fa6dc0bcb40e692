"""Settings: environment variables (= Function App settings), overridable by CLI flags.

Names come from :mod:`qualys.config.catalog`. Missing or invalid settings fail
fast with a :class:`~qualys.errors.ConfigError` whose one line names the setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from qualys.config.catalog import SETTINGS_BY_NAME
from qualys.config.secret import Secret
from qualys.config.urls import is_loopback_host, normalize_api_url
from qualys.errors import ConfigError


@dataclass(frozen=True)
class LocalOutput:
    directory: str


@dataclass(frozen=True)
class BlobOutput:
    container: str
    connection_string: Secret | None = None
    account_url: str | None = None


OutputTarget = LocalOutput | BlobOutput


@dataclass(frozen=True)
class LogAnalyticsTarget:
    """The optional second destination: a data collection endpoint and rule of the Logs Ingestion API."""

    endpoint: str
    rule_id: str
    #: Record kind (devices, findings, changes) -> the rule's stream name.
    streams: Mapping[str, str]


#: Upper bound of QUALYS_ASSET_PARTITIONS (concurrent host asset searches).
MAX_ASSET_PARTITIONS = 8


@dataclass(frozen=True)
class SyncSettings:
    api_url: str
    username: str
    password: Secret
    lookback_days: int
    page_size: int
    max_retry_wait_seconds: float
    output: OutputTarget
    #: Id ranges of the host asset search pulled concurrently (1: one sequential keyset chain).
    asset_partitions: int = 1
    #: Ask for only the fields the connector keeps (QPS ``fields``); off: whole records.
    limit_fields: bool = True
    #: A run is full when the last full run is older than this (0: every run).
    full_sync_every_days: int = 7
    #: Complete runs older than this are deleted after a successful run (0: never).
    retention_days: int = 30
    #: Also send each complete run to Log Analytics (None: Blob Storage or the folder only).
    log_analytics: LogAnalyticsTarget | None = None


class SettingsReader:
    """Reads catalogued settings from a mapping (``os.environ`` by default)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if environ is None else environ

    def get(self, name: str) -> str | None:
        spec = SETTINGS_BY_NAME[name]  # KeyError = a setting missing from the catalog: a bug
        value = self._env.get(name)
        if value is None or not value.strip():
            return spec.default if spec.default else None
        return value.strip()

    def require(self, name: str, hint: str) -> str:
        value = self.get(name)
        if value is None:
            raise ConfigError(f"{name} is not set.", hint)
        return value

    def integer(self, name: str, low: int, high: int) -> int:
        value = self.get(name)
        try:
            number = int(value) if value is not None else None
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise ConfigError(f"{name} must be a whole number from {low} to {high} (got {value!r}).")
        return number

    def boolean(self, name: str) -> bool:
        value = (self.get(name) or "false").lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false (got {value!r}).")


def check_container_name(name: str, setting: str = "OUTPUT_CONTAINER") -> str:
    """Azure container names: 3-63 chars, lower-case letters, digits, single hyphens."""
    ok = (
        3 <= len(name) <= 63
        and all(c.islower() or c.isdigit() or c == "-" for c in name)
        and name[0] != "-"
        and name[-1] != "-"
        and "--" not in name
    )
    if not ok:
        raise ConfigError(f"{setting} {name!r} is not a valid container name.", "Use 3-63 lower-case letters, digits, hyphens.")
    return name


def load_output(reader: SettingsReader, output_dir: str | None = None) -> OutputTarget:
    """Local folder when ``OUTPUT_DIR``/``--output-dir`` is given, else Blob Storage."""
    directory = output_dir or reader.get("OUTPUT_DIR")
    if directory:
        return LocalOutput(directory)
    container = check_container_name(reader.get("OUTPUT_CONTAINER") or "qualys")
    connection_string = reader.get("OUTPUT_STORAGE_CONNECTION_STRING")
    if connection_string:
        return BlobOutput(container, connection_string=Secret(connection_string))
    account_url = reader.get("OUTPUT_STORAGE_ACCOUNT_URL")
    if account_url:
        parts = urlsplit(account_url)
        if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(parts.hostname or "")):
            raise ConfigError("OUTPUT_STORAGE_ACCOUNT_URL must be an https:// URL.")
        return BlobOutput(container, account_url=account_url.rstrip("/"))
    raise ConfigError(
        "No output location: set OUTPUT_DIR, OUTPUT_STORAGE_ACCOUNT_URL or OUTPUT_STORAGE_CONNECTION_STRING.",
    )


def asset_partitions(reader: SettingsReader) -> int:
    """``QUALYS_ASSET_PARTITIONS``: the sync's id ranges (and whether validation checks the count API)."""
    return reader.integer("QUALYS_ASSET_PARTITIONS", 1, MAX_ASSET_PARTITIONS)


def load_log_analytics(reader: SettingsReader) -> LogAnalyticsTarget | None:
    """``LOG_ANALYTICS_*``: None unless the endpoint is set; then the rule id is required too."""
    endpoint = reader.get("LOG_ANALYTICS_ENDPOINT")
    if not endpoint:
        return None
    parts = urlsplit(endpoint)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(
            "LOG_ANALYTICS_ENDPOINT must be an https:// URL (the data collection endpoint's logs ingestion URL).",
            "Copy logsIngestion.endpoint from the data collection endpoint (azd sets it).",
        )
    rule_id = reader.require(
        "LOG_ANALYTICS_RULE_ID", "Set it to the data collection rule's immutable id (dcr-...), or unset LOG_ANALYTICS_ENDPOINT."
    )
    streams = {
        kind: reader.get(f"LOG_ANALYTICS_{kind.upper()}_STREAM") or "" for kind in ("devices", "findings", "changes")
    }
    return LogAnalyticsTarget(endpoint.rstrip("/"), rule_id, streams)


def load_sync_settings(
    environ: Mapping[str, str] | SettingsReader | None = None,
    *,
    api_url: str | None = None,
    username: str | None = None,
    password: Secret | None = None,
    output_dir: str | None = None,
    lookback_days: int | None = None,
) -> SyncSettings:
    """Settings for one sync; keyword arguments (CLI flags, vault values) win over the environment."""
    reader = environ if isinstance(environ, SettingsReader) else SettingsReader(environ)
    url = normalize_api_url(api_url) if api_url else normalize_api_url(
        reader.require("QUALYS_API_URL", "Set it to your platform's API URL (Qualys: Help > About).")
    )
    user = username or reader.require("QUALYS_USERNAME", "Set it to the Qualys API user name.")
    secret = password or Secret(reader.require("QUALYS_PASSWORD", "Set it in the environment (never as a flag)."))
    if lookback_days is None:
        days = reader.integer("QUALYS_LOOKBACK_DAYS", 1, 3650)
    elif not 1 <= lookback_days <= 3650:
        raise ConfigError(f"--lookback-days must be from 1 to 3650 (got {lookback_days}).")
    else:
        days = lookback_days
    return SyncSettings(
        api_url=url,
        username=user,
        password=secret,
        lookback_days=days,
        page_size=reader.integer("QUALYS_PAGE_SIZE", 1, 1000),
        max_retry_wait_seconds=float(reader.integer("QUALYS_MAX_RETRY_WAIT_SECONDS", 0, 86400)),
        output=load_output(reader, output_dir),
        asset_partitions=asset_partitions(reader),
        limit_fields=reader.boolean("QUALYS_LIMIT_FIELDS"),
        full_sync_every_days=reader.integer("QUALYS_FULL_SYNC_EVERY_DAYS", 0, 3650),
        retention_days=reader.integer("QUALYS_RETENTION_DAYS", 0, 36500),
        log_analytics=load_log_analytics(reader),
    )
