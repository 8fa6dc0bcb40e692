"""Qualys credentials: from Azure Key Vault (managed identity) or, for local development, the environment.

Read once per run and never cached across runs, so a rotated secret is picked
up by the next run without a restart. Failures name the vault and the secret.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.keyvault.secrets import SecretClient

from qualys.config.secret import Secret
from qualys.config.settings import SettingsReader
from qualys.errors import ConfigError
from qualys.hosting.identity import azure_credential

#: The vault secret that, when present, overrides the QUALYS_API_URL setting (written by POST /api/qualys/connect).
API_URL_SECRET = "qualys-api-url"  # noqa: S105 - a secret name, not a secret

SecretClientFactory = Callable[[str], SecretClient]


@dataclass(frozen=True)
class Credentials:
    username: str
    password: Secret
    #: From the vault's ``qualys-api-url``; ``None`` means use QUALYS_API_URL.
    api_url: str | None
    source: str


def default_secret_client(vault_url: str, credential: TokenCredential | None = None) -> SecretClient:
    return SecretClient(vault_url, credential or azure_credential())


def _vault_error(exc: Exception, vault_url: str, name: str, verb: str = "read") -> ConfigError:
    where = f"Key Vault {vault_url} secret '{name}'"
    if isinstance(exc, ResourceNotFoundError):
        return ConfigError(
            f"{where} does not exist.",
            f"Add it (az keyvault secret set --vault-name <vault> --name {name} --value ...) "
            "or call POST /api/qualys/connect.",
        )
    if isinstance(exc, ClientAuthenticationError):
        return ConfigError(
            f"Could not authenticate to {where} ({type(exc).__name__}).",
            "Check the managed identity and AZURE_CLIENT_ID.",
        )
    if isinstance(exc, HttpResponseError) and exc.status_code == 403:
        role = "Key Vault Secrets User" if verb == "read" else "Key Vault Secrets Officer"
        return ConfigError(
            f"Access denied to {verb} {where} (HTTP 403).",
            f"Grant the Function App's identity the '{role}' role on the vault.",
        )
    if isinstance(exc, ServiceRequestError):
        return ConfigError(f"Cannot reach {where} ({type(exc).__name__}).", "Check KEY_VAULT_URL and the network.")
    status = getattr(exc, "status_code", None)
    return ConfigError(f"Key Vault failed to {verb} {where} (HTTP {status}).", "Retry; check the vault's health.")


def _get(client: SecretClient, vault_url: str, name: str, required: bool = True) -> str | None:
    try:
        value = client.get_secret(name).value
    except ResourceNotFoundError as exc:
        if not required:
            return None
        raise _vault_error(exc, vault_url, name) from None
    except (HttpResponseError, ClientAuthenticationError, ServiceRequestError) as exc:
        raise _vault_error(exc, vault_url, name) from None
    if required and not value:
        raise ConfigError(f"Key Vault {vault_url} secret '{name}' is empty.", "Store the value again.")
    return value or None


def load_credentials(
    environ: SettingsReader | None = None, secret_client: SecretClientFactory | None = None
) -> Credentials:
    """Vault credentials when ``KEY_VAULT_URL`` is set, else ``QUALYS_USERNAME``/``QUALYS_PASSWORD``."""
    reader = environ or SettingsReader()
    vault_url = reader.get("KEY_VAULT_URL")
    if not vault_url:
        username = reader.require("QUALYS_USERNAME", "Set it, or KEY_VAULT_URL to read the credentials from a vault.")
        password = reader.require("QUALYS_PASSWORD", "Set it, or KEY_VAULT_URL to read the credentials from a vault.")
        return Credentials(username, Secret(password), None, "environment")
    client = (secret_client or default_secret_client)(vault_url)
    user_secret = reader.get("QUALYS_USERNAME_SECRET") or "qualys-username"
    password_secret = reader.get("QUALYS_PASSWORD_SECRET") or "qualys-password"
    username = _get(client, vault_url, user_secret) or ""
    password = _get(client, vault_url, password_secret) or ""
    api_url = _get(client, vault_url, API_URL_SECRET, required=False)
    return Credentials(username, Secret(password), api_url, f"Key Vault {vault_url}")


def store_credentials(
    reader: SettingsReader,
    api_url: str,
    username: str,
    password: Secret,
    secret_client: SecretClientFactory | None = None,
) -> None:
    """Write a validated connection to the vault (used by POST /api/qualys/connect)."""
    vault_url = reader.get("KEY_VAULT_URL")
    if not vault_url:
        raise ConfigError("KEY_VAULT_URL is not set: there is no vault to store the connection in.")
    client = (secret_client or default_secret_client)(vault_url)
    for name, value in (
        (reader.get("QUALYS_USERNAME_SECRET") or "qualys-username", username),
        (reader.get("QUALYS_PASSWORD_SECRET") or "qualys-password", password.reveal()),
        (API_URL_SECRET, api_url),
    ):
        try:
            client.set_secret(name, value)
        except (HttpResponseError, ClientAuthenticationError, ServiceRequestError) as exc:
            raise _vault_error(exc, vault_url, name, verb="write") from None
