// One Key Vault secret, set from a @secure() value. A module of its own so that key-vault.bicep can
// create it conditionally while checkov still sees its properties (checkov does not look inside
// `resource ... = if (...)` bodies).

param vaultName string
param name string

@secure()
param value string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: an expiry date would stop the connector on that day; rotation follows the Qualys account's password policy (set the new value with az keyvault secret set)
  parent: vault
  name: name
  properties: {
    value: value
    contentType: 'text/plain'
  }
}
