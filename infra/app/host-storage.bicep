// Storage account of the Functions host: timer schedule status and singleton locks
// (azure-webjobs-hosts), host keys (azure-webjobs-secrets) and the Flex Consumption deployment
// package (deployment container below). Reached only with the app's managed identity.
//
// Kept apart from the output account (app/output-storage.bicep) on purpose: the runtime needs
// Storage Blob Data Owner on its whole account (it creates its own containers), and that role must
// not reach the connector's data; and versioning of the output would otherwise also version the
// host's lock and status blobs, which are rewritten every few seconds.

param name string
param location string
param tags object
param deploymentContainerName string

@allowed(['Enabled', 'Disabled'])
param publicNetworkAccess string = 'Enabled'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206: host state (locks, timer status, keys, app package) is rebuilt by the runtime and by redeploying; LRS suffices and exists in every Flex region
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
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
