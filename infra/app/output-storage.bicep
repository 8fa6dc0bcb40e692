// Storage account that receives the connector's output (latest.json, runs/<run_id>/...).
//
// "No run can be lost by mistake": blob versioning keeps every overwritten blob, blob soft delete
// and container soft delete keep deleted blobs and a deleted container restorable for
// softDeleteRetentionDays, and a lifecycle rule removes previous versions after
// versionRetentionDays so the history does not grow without bound. The app identity has Storage
// Blob Data Contributor on the output container only (app/rbac.bicep), not on the account.

param name string
param location string
param tags object
param containerName string

@minValue(1)
@maxValue(365)
param softDeleteRetentionDays int = 14

@minValue(1)
param versionRetentionDays int = 30

@allowed(['Enabled', 'Disabled'])
param publicNetworkAccess string = 'Enabled'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206: the output is a copy of Qualys data that the next full run rewrites; versioning + soft delete guard against mistakes; LRS keeps the template deployable in regions without availability zones
  // checkov:skip=CKV_AZURE_35: without vnetEnabled a Flex Consumption app reaches storage over the public endpoint (no fixed source IPs to allow); access is Entra ID only (shared keys off); vnetEnabled sets Deny
  // checkov:skip=CKV_AZURE_59: same as CKV_AZURE_35: public endpoint needed without VNet integration, data plane is Entra ID + RBAC only; vnetEnabled disables public network access
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: publicNetworkAccess == 'Enabled' ? 'Allow' : 'Deny'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    isVersioningEnabled: true
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
  }
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-previous-versions'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${containerName}/'
              ]
            }
            actions: {
              version: {
                delete: {
                  daysAfterCreationGreaterThan: versionRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output containerName string = container.name
