"""The connector's one Azure identity: the Function App's user-assigned managed identity.

Blob Storage (output) and Key Vault (credentials) both authenticate with what
:func:`azure_credential` returns, so there is one place that decides how.
"""

from __future__ import annotations

import os

from azure.core.credentials import TokenCredential


def azure_credential() -> TokenCredential:
    """The user-assigned identity (``AZURE_CLIENT_ID``) inside Azure, else azure-identity's default chain
    (developer logins, environment variables), still preferring that client id."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = os.environ.get("AZURE_CLIENT_ID")
    if client_id and os.environ.get("IDENTITY_ENDPOINT"):
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential(managed_identity_client_id=client_id)
