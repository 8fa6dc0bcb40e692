// Every role assignment of the deployment, each on the narrowest scope that works.
//
// App identity (user-assigned, ServicePrincipal):
//   Storage Blob Data Owner        host storage account   Functions host: timer status/locks, host keys,
//                                                         its own containers, the deployment package.
//                                                         Per learn.microsoft.com/azure/azure-functions/
//                                                         functions-reference ("Connecting to host storage
//                                                         with an identity"), timer triggers need nothing
//                                                         beyond this role; queue and table roles are only
//                                                         for blob triggers, Durable Functions and
//                                                         diagnostic events, none of which this app uses.
//   Storage Blob Data Contributor  output container       the connector writes its output there, nothing else.
//   Key Vault Secrets User         vault                  read the Qualys credentials.
//   Key Vault Secrets Officer      vault (connectEnabled) POST /api/qualys/connect writes them.
//   Monitoring Metrics Publisher   Application Insights   Entra ID-authenticated telemetry.
//   Monitoring Metrics Publisher   data collection rule   send rows through the Logs Ingestion API
//                                  (logAnalyticsEnabled)  (that rule only).
// Operator (optional, operatorPrincipalId):
//   Key Vault Secrets Officer      vault                  `az keyvault secret set` for the credentials.
//   Storage Blob Data Reader       output container       read latest.json and the run manifests.
//
// Pattern (role GUIDs as named variables, guid(scope, principal, role) names, explicit principalType)
// as in Azure-Samples/azure-functions-flex-consumption-samples IaC/bicep/rbac.bicep @6e26274, written
// as plain resources instead of the AVM role-assignment module.

param identityPrincipalId string
param hostStorageAccountName string
param outputStorageAccountName string
param outputContainerName string
param keyVaultName string
param appInsightsName string
param connectEnabled bool = false

@description('The Log Analytics destination\'s data collection rule; empty when it is not deployed.')
param dataCollectionRuleName string = ''
param operatorPrincipalId string = ''

@allowed(['User', 'Group', 'ServicePrincipal'])
param operatorPrincipalType string = 'User'

// Built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var hasOperator = !empty(operatorPrincipalId)
var logIngestionEnabled = !empty(dataCollectionRuleName)

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource outputStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: outputStorageAccountName
}

resource outputBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: outputStorage
  name: 'default'
}

resource outputContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: outputBlobService
  name: outputContainerName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource dataCollectionRule 'Microsoft.Insights/dataCollectionRules@2023-03-11' existing = {
  name: dataCollectionRuleName
}

// --- App identity --------------------------------------------------------------------------------

resource appHostStorageBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, identityPrincipalId, roles.storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Functions host storage and Flex Consumption deployment package'
  }
}

resource appOutputContainerBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(outputContainer.id, identityPrincipalId, roles.storageBlobDataContributor)
  scope: outputContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Qualys connector output'
  }
}

resource appVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identityPrincipalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Read the Qualys credentials'
  }
}

resource appVaultSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (connectEnabled) {
  name: guid(vault.id, identityPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    description: 'POST /api/qualys/connect stores the Qualys credentials (QUALYS_CONNECT_ENABLED=true)'
  }
}

resource appInsightsMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identityPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Entra ID-authenticated telemetry (local auth is disabled)'
  }
}

resource appRuleMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (logIngestionEnabled) {
  name: guid(dataCollectionRule.id, identityPrincipalId, roles.monitoringMetricsPublisher)
  scope: dataCollectionRule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Send the Qualys records to Log Analytics through this data collection rule only'
  }
}

// --- Operator (optional) ---------------------------------------------------------------------------

resource operatorVaultSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperator) {
  name: guid(vault.id, operatorPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    description: 'Operator sets the Qualys credentials'
  }
}

resource operatorOutputContainerBlobReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperator) {
  name: guid(outputContainer.id, operatorPrincipalId, roles.storageBlobDataReader)
  scope: outputContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    description: 'Operator reads the connector output'
  }
}
