"""Settings: URL rules, fail-fast messages naming the setting, secrets that never print."""

from __future__ import annotations

import pytest

from qualys.config.secret import Secret
from qualys.config.settings import BlobOutput, LocalOutput, load_sync_settings
from qualys.config.urls import normalize_api_url
from qualys.errors import ConfigError

BASE_ENV = {
    "QUALYS_API_URL": "qualysapi.qg2.apps.qualys.com",
    "QUALYS_USERNAME": "api-user",
    "QUALYS_PASSWORD": "pw-S3cret!",
    "OUTPUT_DIR": "/tmp/out",
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("qualysapi.qg2.apps.qualys.com", "https://qualysapi.qg2.apps.qualys.com"),
        ("https://qualysapi.qualys.eu/", "https://qualysapi.qualys.eu"),
        ("  HTTPS://qualysapi.qg1.apps.qualys.co.uk  ", "https://qualysapi.qg1.apps.qualys.co.uk"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.9.9.9:1", "http://127.9.9.9:1"),
        ("http://localhost:9000/", "http://localhost:9000"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_api_url_forms(raw: str, expected: str) -> None:
    assert normalize_api_url(raw) == expected


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("http://qualysapi.qualys.com", "plain http://"),
        ("http://10.0.0.5", "plain http://"),
        ("ftp://qualysapi.qualys.com", "https://"),
        ("https://user:pw@qualysapi.qualys.com", "user information"),
        ("https://qualysapi.qualys.com/api/2.0/", "no path"),
        ("", "empty"),
    ],
)
def test_bad_api_urls_name_the_setting(raw: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        normalize_api_url(raw)
    message = str(caught.value)
    assert "QUALYS_API_URL" in message and fragment in message and "\n" not in message
    assert "pw" not in message.split("QUALYS_API_URL", 1)[1] or fragment == "user information"


def test_loads_from_environment_with_defaults() -> None:
    settings = load_sync_settings(BASE_ENV)
    assert settings.api_url == "https://qualysapi.qg2.apps.qualys.com"
    assert settings.lookback_days == 90 and settings.page_size == 200 and settings.asset_partitions == 1
    assert load_sync_settings({**BASE_ENV, "QUALYS_ASSET_PARTITIONS": "4"}).asset_partitions == 4
    assert settings.output == LocalOutput("/tmp/out")
    assert "pw-S3cret!" not in repr(settings) and settings.password.reveal() == "pw-S3cret!"


def test_flags_override_environment() -> None:
    settings = load_sync_settings(BASE_ENV, api_url="http://127.0.0.1:1", username="other", output_dir="/x", lookback_days=7)
    assert (settings.api_url, settings.username, settings.output, settings.lookback_days) == (
        "http://127.0.0.1:1", "other", LocalOutput("/x"), 7,
    )


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"QUALYS_API_URL": ""}, "QUALYS_API_URL"),
        ({"QUALYS_USERNAME": ""}, "QUALYS_USERNAME"),
        ({"QUALYS_PASSWORD": ""}, "QUALYS_PASSWORD"),
        ({"QUALYS_LOOKBACK_DAYS": "ninety"}, "QUALYS_LOOKBACK_DAYS"),
        ({"QUALYS_LOOKBACK_DAYS": "0"}, "QUALYS_LOOKBACK_DAYS"),
        ({"QUALYS_PAGE_SIZE": "5000"}, "QUALYS_PAGE_SIZE"),
        ({"QUALYS_ASSET_PARTITIONS": "0"}, "QUALYS_ASSET_PARTITIONS"),
        ({"QUALYS_ASSET_PARTITIONS": "9"}, "QUALYS_ASSET_PARTITIONS"),
        ({"QUALYS_ASSET_PARTITIONS": "four"}, "QUALYS_ASSET_PARTITIONS"),
        ({"OUTPUT_DIR": "", "OUTPUT_CONTAINER": "Bad_Name"}, "OUTPUT_CONTAINER"),
        ({"OUTPUT_DIR": ""}, "OUTPUT_DIR"),
        ({"OUTPUT_DIR": "", "OUTPUT_STORAGE_ACCOUNT_URL": "http://acct.blob.core.windows.net"}, "OUTPUT_STORAGE_ACCOUNT_URL"),
    ],
)
def test_missing_or_invalid_settings_fail_fast(override: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_sync_settings({**BASE_ENV, **override})
    assert setting in str(caught.value) and "\n" not in str(caught.value)
    assert "pw-S3cret!" not in str(caught.value)


def test_blob_outputs() -> None:
    env = {**BASE_ENV, "OUTPUT_DIR": "", "OUTPUT_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net/"}
    assert load_sync_settings(env).output == BlobOutput("qualys", account_url="https://acct.blob.core.windows.net")
    env["OUTPUT_STORAGE_CONNECTION_STRING"] = "UseDevelopmentStorage=true"
    output = load_sync_settings(env).output
    assert isinstance(output, BlobOutput) and output.connection_string == Secret("UseDevelopmentStorage=true")
    assert "UseDevelopmentStorage" not in repr(output)


def test_log_analytics_is_off_unless_its_endpoint_is_set() -> None:
    assert load_sync_settings(BASE_ENV).log_analytics is None
    endpoint = "https://dce-x.westeurope-1.ingest.monitor.azure.com/"
    target = load_sync_settings(
        {**BASE_ENV, "LOG_ANALYTICS_ENDPOINT": endpoint, "LOG_ANALYTICS_RULE_ID": "dcr-1"}
    ).log_analytics
    assert target is not None
    assert (target.endpoint, target.rule_id) == ("https://dce-x.westeurope-1.ingest.monitor.azure.com", "dcr-1")
    assert dict(target.streams) == {
        "devices": "Custom-QualysDevices_CL", "findings": "Custom-QualysFindings_CL", "changes": "Custom-QualysChanges_CL",
    }


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"LOG_ANALYTICS_ENDPOINT": "http://dce.example.com"}, "LOG_ANALYTICS_ENDPOINT must be an https:// URL"),
        ({"LOG_ANALYTICS_ENDPOINT": "https://dce.example.com"}, "LOG_ANALYTICS_RULE_ID is not set"),
    ],
)
def test_log_analytics_settings_fail_fast(override: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_sync_settings({**BASE_ENV, **override})
    assert fragment in str(error.value)
