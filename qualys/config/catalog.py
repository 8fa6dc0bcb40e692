"""Every setting the connector reads, in one table.

This is the single source of truth for setting names: the loaders in
:mod:`qualys.config.settings` read only names listed here, and the infrastructure tests
check that every ``deployed`` setting is an app setting with a Bicep parameter
in ``infra/`` (and that no ``local_only`` one is).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SettingSpec:
    """One environment variable / Function App setting."""

    name: str
    description: str
    default: str | None = None
    #: Set by ``infra/`` on the deployed Function App.
    deployed: bool = True
    #: Holds a secret or a key: must never be an app setting in Azure.
    secret: bool = False


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "QUALYS_API_URL",
        "Qualys platform API server, e.g. https://qualysapi.qg2.apps.qualys.com "
        "(the vault secret qualys-api-url wins when it exists).",
    ),
    SettingSpec(
        "QUALYS_USERNAME",
        "Qualys API user for local development (Azure reads it from Key Vault).",
        deployed=False,
    ),
    SettingSpec(
        "QUALYS_PASSWORD",
        "Qualys API password for local development (Azure reads it from Key Vault).",
        deployed=False,
        secret=True,
    ),
    SettingSpec("QUALYS_LOOKBACK_DAYS", "Days of asset modifications a full run covers.", "90"),
    SettingSpec("QUALYS_PAGE_SIZE", "Host assets per page (1-1000; agent hosts are ~100 KB each).", "200"),
    SettingSpec(
        "QUALYS_ASSET_PARTITIONS",
        "Id ranges of the host asset search pulled at the same time (1-8). 1 is one sequential chain; more "
        "splits a large window after a small probe (a count and one 1-record search per range boundary) and "
        "shortens a full run while Qualys's answers, not the connector's CPU, are what it waits for, if your "
        "Qualys subscription accepts concurrent searches.",
        "1",
    ),
    SettingSpec(
        "QUALYS_LIMIT_FIELDS",
        "Ask Qualys for only the host asset and tag fields the connector keeps (true/false): an agent host's "
        "software, port and inventory lists are never sent. A platform that rejects the request's 'fields' "
        "element is asked again without it (one warning per run).",
        "true",
    ),
    SettingSpec(
        "QUALYS_FULL_SYNC_EVERY_DAYS",
        "A run is full (every asset in the window, so assets deleted in Qualys leave the current state) when "
        "the last full run is older than this many days; 0 makes every run full.",
        "7",
    ),
    SettingSpec(
        "QUALYS_RETENTION_DAYS",
        "Complete runs older than this many days are deleted at the end of a successful run (never the latest "
        "run, nor a state file a kept run lists); 0 keeps every run.",
        "30",
    ),
    SettingSpec(
        "QUALYS_MAX_RETRY_WAIT_SECONDS",
        "Upper bound on the total time one run spends waiting before retries.",
        "900",
    ),
    SettingSpec("OUTPUT_DIR", "Write the output to this local folder instead of Blob Storage.", deployed=False),
    SettingSpec(
        "OUTPUT_STORAGE_CONNECTION_STRING",
        "Blob Storage connection string (development / Azurite only).",
        deployed=False,
        secret=True,
    ),
    SettingSpec(
        "OUTPUT_STORAGE_ACCOUNT_URL",
        "Blob service URL of the output storage account, reached with the managed identity.",
    ),
    SettingSpec("OUTPUT_CONTAINER", "Blob container that receives the output.", "qualys"),
    SettingSpec(
        "LOG_ANALYTICS_ENDPOINT",
        "Logs ingestion endpoint of the data collection endpoint (https://<name>.<region>.ingest.monitor.azure.com): "
        "set, each complete run is also sent to the Log Analytics tables; empty: Blob Storage only.",
        "",
    ),
    SettingSpec(
        "LOG_ANALYTICS_RULE_ID",
        "Immutable id (dcr-...) of the data collection rule that routes the streams to the tables.",
        "",
    ),
    SettingSpec("LOG_ANALYTICS_DEVICES_STREAM", "Stream of the device records in the rule.", "Custom-QualysDevices_CL"),
    SettingSpec("LOG_ANALYTICS_FINDINGS_STREAM", "Stream of the finding records in the rule.", "Custom-QualysFindings_CL"),
    SettingSpec("LOG_ANALYTICS_CHANGES_STREAM", "Stream of the change records in the rule.", "Custom-QualysChanges_CL"),
    SettingSpec("KEY_VAULT_URL", "Key Vault that holds the Qualys credentials (unset: use QUALYS_USERNAME/PASSWORD)."),
    SettingSpec("QUALYS_USERNAME_SECRET", "Key Vault secret name of the Qualys user.", "qualys-username"),
    SettingSpec("QUALYS_PASSWORD_SECRET", "Key Vault secret name of the Qualys password.", "qualys-password"),
    SettingSpec("QUALYS_SYNC_SCHEDULE", "NCRONTAB schedule of the timer-triggered sync.", "0 0 */4 * * *"),
    SettingSpec(
        "QUALYS_ALLOWED_HOSTS",
        "Comma-separated extra API hosts the validate/connect endpoints may contact (private cloud platforms).",
        "",
    ),
    SettingSpec(
        "QUALYS_CONNECT_ENABLED",
        "Whether POST /api/qualys/connect may write credentials to Key Vault (true/false).",
        "false",
    ),
    SettingSpec("AZURE_CLIENT_ID", "Client id of the user-assigned managed identity (read by azure-identity)."),
)

SETTINGS_BY_NAME: dict[str, SettingSpec] = {spec.name: spec for spec in SETTINGS}


def deployed_settings() -> tuple[SettingSpec, ...]:
    """Settings that the deployed Function App must carry as app settings."""
    return tuple(spec for spec in SETTINGS if spec.deployed)
