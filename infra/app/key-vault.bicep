// Key Vault for the Qualys credentials (secrets qualys-username, qualys-password and, optionally,
// qualys-api-url). RBAC authorization only (no access policies), soft delete with purge protection.
//
// The credentials can be seeded from the two @secure() parameters below. They are never plain
// parameters, never app settings and never outputs; an empty value leaves the secret untouched, so
// a redeploy without them does not overwrite credentials set later with `az keyvault secret set` or
// the connect endpoint.

param name string
param location string
param tags object

@allowed(['Enabled', 'Disabled'])
param publicNetworkAccess string = 'Enabled'

@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

param usernameSecretName string
param passwordSecretName string

@secure()
param seedQualysUsername string = ''

@secure()
param seedQualysPassword string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the firewall follows parameter keyVaultPublicNetworkAccess (Deny when Disabled); without VNet integration the app has no fixed source IP to allow, and data-plane access is RBAC only
  // checkov:skip=CKV_AZURE_189: public network access is the parameter keyVaultPublicNetworkAccess; Disabled requires vnetEnabled (private endpoint), Enabled is the default so the app and operators can reach the vault without a VNet
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // Purge protection cannot be switched off again; with it a deleted vault (and its name) is kept
    // for softDeleteRetentionInDays. See "Tear down" in docs/deploy.md.
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: publicNetworkAccess == 'Enabled' ? 'Allow' : 'Deny'
      bypass: 'AzureServices'
    }
  }
}

module usernameSecret 'key-vault-secret.bicep' = if (!empty(seedQualysUsername)) {
  name: 'secret-qualys-username'
  params: {
    vaultName: vault.name
    name: usernameSecretName
    value: seedQualysUsername
  }
}

module passwordSecret 'key-vault-secret.bicep' = if (!empty(seedQualysPassword)) {
  name: 'secret-qualys-password'
  params: {
    vaultName: vault.name
    name: passwordSecretName
    value: seedQualysPassword
  }
}

output id string = vault.id
output name string = vault.name
output vaultUri string = vault.properties.vaultUri
