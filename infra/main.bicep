// Qualys connector: a keyless, least-privilege Azure Functions app on Flex Consumption.
//
//   azd up                                  (azure.yaml; parameters from main.parameters.json)
//   az deployment group create -g <rg> -f infra/main.bicep -p environmentName=... qualysApiUrl=...
//
// What gets deployed (one module per concern, read them in this order):
//   app/monitoring.bicep      Log Analytics + workspace-based Application Insights (Entra ID auth only)
//   app/alerts.bicep          alert rules: a sync failed, no sync completed in time (optional email)
//   app/host-storage.bicep    storage for the Functions host and the deployment package (no keys)
//   app/output-storage.bicep  storage for the connector's output (versioning + soft delete)
//   app/key-vault.bicep       vault for the Qualys credentials (RBAC mode, purge protection)
//   app/network.bicep         optional: VNet integration, private endpoints, NAT gateway (static egress IP)
//   app/rbac.bicep            every role the managed identity (and an optional operator) gets
//   app/function-app.bicep    FC1 plan + Python 3.11 Function App running as the user-assigned identity
//
// Shapes follow Azure-Samples/functions-quickstart-python-azd-timer (infra/main.bicep @05d91bc: FC1,
// UAMI, identity-based AzureWebJobsStorage, deployment container) and Azure-Samples/
// azure-functions-flex-consumption-samples (IaC/bicep/core/host/function.bicep @90ddf70: plain
// functionAppConfig resource), rewritten as plain `resource` declarations (no AVM registry modules)
// so that checkov and tests/test_infra.py can read every property offline.
//
// Resource-group scope, so that `az deployment group create` works and azd only needs rights on the
// resource group (azd: set AZURE_RESOURCE_GROUP, see docs/deploy.md).
targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd: AZURE_ENV_NAME); seeds the unique suffix of every resource name.')
param environmentName string

@description('Region of every resource. The region must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string = resourceGroup().location

@description('Extra tags for every resource.')
param tags object = {}

// ---------------------------------------------------------------------------------------------------
// Connector settings. One parameter per `deployed` entry of qualys/config/catalog.py, named after the
// setting in camelCase, with the catalog's default (tests/test_infra.py checks both).
// ---------------------------------------------------------------------------------------------------

@minLength(1)
@description('QUALYS_API_URL: Qualys platform API server of your subscription, e.g. https://qualysapi.qg2.apps.qualys.com (see https://www.qualys.com/platform-identification/). The vault secret qualys-api-url wins when it exists.')
param qualysApiUrl string

@minValue(1)
@description('QUALYS_LOOKBACK_DAYS: days of asset modifications a full run covers.')
param qualysLookbackDays int = 90

@minValue(1)
@maxValue(1000)
@description('QUALYS_PAGE_SIZE: host assets per page (agent hosts are ~100 KB each).')
param qualysPageSize int = 200

@minValue(1)
@maxValue(8)
@description('QUALYS_ASSET_PARTITIONS: id ranges of the host asset search pulled at the same time (1: one sequential chain).')
param qualysAssetPartitions int = 1

@description('QUALYS_LIMIT_FIELDS: ask Qualys for only the host asset and tag fields the connector keeps (a platform that rejects it is asked again for whole records).')
param qualysLimitFields bool = true

@description('Also send each complete run to three custom tables of the Log Analytics workspace (Logs Ingestion API: tables, data collection endpoint and rule, the identity allowed to send to that rule only, KQL functions). Ingestion is billed per GB.')
param logAnalyticsEnabled bool = false

@minValue(0)
@maxValue(3650)
@description('QUALYS_FULL_SYNC_EVERY_DAYS: a run is full when the last full run is older than this many days, so assets deleted in Qualys leave the current state (0: every run is full).')
param qualysFullSyncEveryDays int = 7

@minValue(0)
@maxValue(36500)
@description('QUALYS_RETENTION_DAYS: complete runs older than this many days are deleted after a successful run (0: keep every run).')
param qualysRetentionDays int = 30

@minValue(0)
@description('QUALYS_MAX_RETRY_WAIT_SECONDS: upper bound on the total time one run spends waiting before retries.')
param qualysMaxRetryWaitSeconds int = 900

@minLength(3)
@maxLength(63)
@description('OUTPUT_CONTAINER: blob container that receives the output (created by this template).')
param outputContainer string = 'qualys'

@description('QUALYS_USERNAME_SECRET: Key Vault secret name of the Qualys user.')
param qualysUsernameSecret string = 'qualys-username'

@description('QUALYS_PASSWORD_SECRET: Key Vault secret name of the Qualys password.')
param qualysPasswordSecret string = 'qualys-password'

@description('QUALYS_SYNC_SCHEDULE: NCRONTAB schedule (UTC) of the timer-triggered sync.')
param qualysSyncSchedule string = '0 0 */4 * * *'

@description('QUALYS_ALLOWED_HOSTS: comma-separated extra API hosts the validate/connect endpoints may contact (private cloud platforms).')
param qualysAllowedHosts string = ''

@description('QUALYS_CONNECT_ENABLED: let POST /api/qualys/connect write the Qualys credentials to Key Vault. Grants the app identity Key Vault Secrets Officer on the vault; off = Key Vault Secrets User (read) only.')
param qualysConnectEnabled bool = false

// ---------------------------------------------------------------------------------------------------
// Resource names ('' = generated). KEY_VAULT_URL, OUTPUT_STORAGE_ACCOUNT_URL and AZURE_CLIENT_ID are
// not free-form: they come from the vault, account and identity below, whose names these are.
// ---------------------------------------------------------------------------------------------------

@description('Function App name (globally unique); empty = func-qualys-<suffix>.')
param functionAppName string = ''

@description('User-assigned managed identity name (its client id becomes AZURE_CLIENT_ID); empty = generated.')
param identityName string = ''

@maxLength(24)
@description('Key Vault name (globally unique, 3-24 chars; becomes KEY_VAULT_URL); empty = generated.')
param keyVaultName string = ''

@maxLength(24)
@description('Output storage account name (becomes OUTPUT_STORAGE_ACCOUNT_URL); empty = generated.')
param outputStorageAccountName string = ''

@maxLength(24)
@description('Host storage account name (Functions runtime + deployment package); empty = generated.')
param hostStorageAccountName string = ''

// ---------------------------------------------------------------------------------------------------
// Hosting, data protection, monitoring
// ---------------------------------------------------------------------------------------------------

@allowed([512, 2048, 4096])
@description('Flex Consumption instance memory (MB). Billed per GB-second while a function runs.')
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
@description('Upper bound on instances per scale group. The sync is a singleton timer, so a small cap is a cost guard, not a limit.')
param maximumInstanceCount int = 10

@minValue(1)
@maxValue(365)
@description('Days a deleted or overwritten output blob (and a deleted output container) can be restored.')
param outputSoftDeleteRetentionDays int = 14

@minValue(1)
@description('Days previous versions of output blobs (e.g. older latest.json) are kept before the lifecycle policy deletes them.')
param outputVersionRetentionDays int = 30

@minValue(30)
@maxValue(730)
@description('Log Analytics retention in days (30 days are included in the ingestion price).')
param logRetentionDays int = 30

@description('Email address for the alerts (a sync failed; no sync completed in syncAlertHours). Empty: the alerts fire in Azure Monitor only.')
param alertEmail string = ''

@minValue(0)
@maxValue(48)
@description('Hours without a completed sync before the "sync overdue" alert fires. 0 = twice the interval of qualysSyncSchedule (hourly and every-N-hours schedules; once a day otherwise), at most 48.')
param syncAlertHours int = 0

// ---------------------------------------------------------------------------------------------------
// Key Vault and credentials
// ---------------------------------------------------------------------------------------------------

@allowed(['Enabled', 'Disabled'])
@description('Key Vault public network access. Disabled applies only together with vnetEnabled (the app then reaches the vault through its private endpoint); you then need network access to the vault to set secrets.')
param keyVaultPublicNetworkAccess string = 'Enabled'

@minValue(7)
@maxValue(90)
@description('Key Vault soft-delete retention (days). With purge protection the vault name stays reserved this long after deletion.')
param keyVaultSoftDeleteRetentionDays int = 90

@secure()
@description('Optional: Qualys API user to store as secret <qualysUsernameSecret>. Empty = leave the vault as it is.')
param seedQualysUsername string = ''

@secure()
@description('Optional: Qualys API password to store as secret <qualysPasswordSecret>. Empty = leave the vault as it is.')
param seedQualysPassword string = ''

@description('Optional: object id of the person or group operating the connector (azd passes the signed-in user). Gets Key Vault Secrets Officer on the vault (to set the Qualys credentials) and Storage Blob Data Reader on the output container. Empty = no operator roles.')
param operatorPrincipalId string = ''

@allowed(['User', 'Group', 'ServicePrincipal'])
@description('Principal type of operatorPrincipalId.')
param operatorPrincipalType string = 'User'

// ---------------------------------------------------------------------------------------------------
// Optional private networking (off by default)
// ---------------------------------------------------------------------------------------------------

@description('Integrate the app with a new VNet, reach both storage accounts and the vault through private endpoints and close their public endpoints.')
param vnetEnabled bool = false

@description('With vnetEnabled: send all outbound traffic through a NAT gateway with one static public IP (output OUTBOUND_IP_ADDRESS) that you can allow-list in Qualys.')
param natGatewayEnabled bool = true

@description('With vnetEnabled: address space of the new VNet.')
param vnetAddressPrefix string = '10.42.0.0/23'

@description('With vnetEnabled: subnet delegated to the Function App (Microsoft.App/environments).')
param appSubnetPrefix string = '10.42.0.0/24'

@description('With vnetEnabled: subnet of the private endpoints.')
param privateEndpointSubnetPrefix string = '10.42.1.0/26'

// ---------------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var allTags = union(tags, { 'azd-env-name': environmentName })

var names = {
  functionApp: !empty(functionAppName) ? functionAppName : 'func-qualys-${resourceToken}'
  plan: 'plan-qualys-${resourceToken}'
  identity: !empty(identityName) ? identityName : 'id-qualys-${resourceToken}'
  // Storage account names: 3-24 lowercase letters and digits. 'stqh'/'stqo' + 13 = 17.
  hostStorage: !empty(hostStorageAccountName) ? hostStorageAccountName : 'stqh${resourceToken}'
  outputStorage: !empty(outputStorageAccountName) ? outputStorageAccountName : 'stqo${resourceToken}'
  // Vault names: 3-24 chars. 'kv-qualys-' + 11 = 21.
  keyVault: !empty(keyVaultName) ? keyVaultName : 'kv-qualys-${take(resourceToken, 11)}'
  logAnalytics: 'log-qualys-${resourceToken}'
  appInsights: 'appi-qualys-${resourceToken}'
  vnet: 'vnet-qualys-${resourceToken}'
  dataCollectionEndpoint: 'dce-qualys-${resourceToken}'
  dataCollectionRule: 'dcr-qualys-${resourceToken}'
}

// The Flex Consumption deployment package lives in its own container of the host storage account
// (naming after the timer quickstart; container names: lowercase, at most 63 chars).
var deploymentContainerName = toLower('app-package-${take(names.functionApp, 32)}-${take(resourceToken, 7)}')

// The timer's interval in hours, read from the NCRONTAB hour field ('{second} {minute} {hour} ...'):
// '*/N' = every N hours, '*' = every hour (or more often), anything else = once a day.
var scheduleFields = split(qualysSyncSchedule, ' ')
var scheduleHourField = (length(scheduleFields) == 6) ? scheduleFields[2] : ''
var scheduleIntervalHours = startsWith(scheduleHourField, '*/') ? int(substring(scheduleHourField, 2)) : ((scheduleHourField == '*') ? 1 : 24)
var effectiveSyncAlertHours = (syncAlertHours > 0) ? syncAlertHours : min(48, 2 * scheduleIntervalHours)

// The app can only reach a closed vault through the private endpoint, which exists only with vnetEnabled.
var effectiveKeyVaultPublicNetworkAccess = vnetEnabled ? keyVaultPublicNetworkAccess : 'Enabled'

// ---------------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------------

// The app's only identity. It authenticates to host storage, the deployment container, the output
// container, Key Vault and Application Insights; no key or connection secret exists anywhere.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: names.identity
  location: location
  tags: allTags
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: allTags
    logAnalyticsName: names.logAnalytics
    appInsightsName: names.appInsights
    retentionInDays: logRetentionDays
  }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    tags: allTags
    appInsightsName: monitoring.outputs.appInsightsName
    nameSuffix: resourceToken
    syncAlertHours: effectiveSyncAlertHours
    alertEmail: alertEmail
  }
}

module hostStorage 'app/host-storage.bicep' = {
  name: 'host-storage'
  params: {
    name: names.hostStorage
    location: location
    tags: allTags
    deploymentContainerName: deploymentContainerName
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
  }
}

module outputStorage 'app/output-storage.bicep' = {
  name: 'output-storage'
  params: {
    name: names.outputStorage
    location: location
    tags: allTags
    containerName: outputContainer
    softDeleteRetentionDays: outputSoftDeleteRetentionDays
    versionRetentionDays: outputVersionRetentionDays
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
  }
}

module keyVault 'app/key-vault.bicep' = {
  name: 'key-vault'
  params: {
    name: names.keyVault
    location: location
    tags: allTags
    publicNetworkAccess: effectiveKeyVaultPublicNetworkAccess
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionDays
    usernameSecretName: qualysUsernameSecret
    passwordSecretName: qualysPasswordSecret
    seedQualysUsername: seedQualysUsername
    seedQualysPassword: seedQualysPassword
  }
}

module network 'app/network.bicep' = if (vnetEnabled) {
  name: 'network'
  params: {
    location: location
    tags: allTags
    vnetName: names.vnet
    vnetAddressPrefix: vnetAddressPrefix
    appSubnetPrefix: appSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
    natGatewayEnabled: natGatewayEnabled
    hostStorageAccountId: hostStorage.outputs.id
    outputStorageAccountId: outputStorage.outputs.id
    keyVaultId: keyVault.outputs.id
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  params: {
    identityPrincipalId: identity.properties.principalId
    hostStorageAccountName: hostStorage.outputs.name
    outputStorageAccountName: outputStorage.outputs.name
    outputContainerName: outputStorage.outputs.containerName
    keyVaultName: keyVault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    connectEnabled: qualysConnectEnabled
    dataCollectionRuleName: logAnalyticsEnabled ? logIngestion.outputs.ruleName : ''
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

module logIngestion 'app/log-analytics.bicep' = if (logAnalyticsEnabled) {
  name: 'log-analytics'
  params: {
    location: location
    tags: allTags
    workspaceName: monitoring.outputs.logAnalyticsName
    dataCollectionEndpointName: names.dataCollectionEndpoint
    dataCollectionRuleName: names.dataCollectionRule
  }
}

// Every app setting of the Function App, in one table (app/function-app.bicep writes exactly this).
// Nothing here is a secret: storage is reached by identity, the Qualys credentials stay in Key Vault,
// and the Application Insights connection string holds only an ingestion endpoint and a resource id
// (local auth is disabled, so ingestion needs the identity's Entra ID token).
var appSettings = {
  // Functions host storage by identity (learn.microsoft.com/azure/azure-functions/functions-reference
  // "Connecting to host storage with an identity"). No AzureWebJobsStorage connection string.
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  AzureWebJobsStorage__blobServiceUri: hostStorage.outputs.blobEndpoint
  // Set for completeness; the identity holds no queue role because the app's triggers (timer, HTTP)
  // use blobs only. A queue trigger added later needs Storage Queue Data Contributor (app/rbac.bicep).
  AzureWebJobsStorage__queueServiceUri: hostStorage.outputs.queueEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'

  // The connector (qualys/config/catalog.py; numbers and booleans are strings in the environment).
  QUALYS_API_URL: qualysApiUrl
  QUALYS_LOOKBACK_DAYS: string(qualysLookbackDays)
  QUALYS_PAGE_SIZE: string(qualysPageSize)
  QUALYS_ASSET_PARTITIONS: string(qualysAssetPartitions)
  QUALYS_LIMIT_FIELDS: qualysLimitFields ? 'true' : 'false'
  QUALYS_FULL_SYNC_EVERY_DAYS: string(qualysFullSyncEveryDays)
  QUALYS_RETENTION_DAYS: string(qualysRetentionDays)
  QUALYS_MAX_RETRY_WAIT_SECONDS: string(qualysMaxRetryWaitSeconds)
  OUTPUT_STORAGE_ACCOUNT_URL: outputStorage.outputs.blobEndpoint
  OUTPUT_CONTAINER: outputContainer
  KEY_VAULT_URL: keyVault.outputs.vaultUri
  QUALYS_USERNAME_SECRET: qualysUsernameSecret
  QUALYS_PASSWORD_SECRET: qualysPasswordSecret
  QUALYS_SYNC_SCHEDULE: qualysSyncSchedule
  QUALYS_ALLOWED_HOSTS: qualysAllowedHosts
  QUALYS_CONNECT_ENABLED: qualysConnectEnabled ? 'true' : 'false'
  // The optional Log Analytics destination: empty when logAnalyticsEnabled is false (Blob Storage only).
  LOG_ANALYTICS_ENDPOINT: logAnalyticsEnabled ? logIngestion.outputs.endpoint : ''
  LOG_ANALYTICS_RULE_ID: logAnalyticsEnabled ? logIngestion.outputs.ruleId : ''
  LOG_ANALYTICS_DEVICES_STREAM: logAnalyticsEnabled ? logIngestion.outputs.devicesStream : ''
  LOG_ANALYTICS_FINDINGS_STREAM: logAnalyticsEnabled ? logIngestion.outputs.findingsStream : ''
  LOG_ANALYTICS_CHANGES_STREAM: logAnalyticsEnabled ? logIngestion.outputs.changesStream : ''
  AZURE_CLIENT_ID: identity.properties.clientId
}

module functionApp 'app/function-app.bicep' = {
  name: 'function-app'
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: allTags
    identityId: identity.id
    deploymentContainerUrl: '${hostStorage.outputs.blobEndpoint}${deploymentContainerName}'
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    subnetId: vnetEnabled ? network.outputs.appSubnetId : ''
    appSettings: appSettings
  }
  // Roles first, so the first host start already finds its storage, vault and telemetry permissions.
  dependsOn: [
    rbac
  ]
}

// ---------------------------------------------------------------------------------------------------
// Outputs (azd stores them in .azure/<env>/.env)
// ---------------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output FUNCTION_APP_NAME string = functionApp.outputs.name
@description('Flex Consumption apps may get a hashed default host name; always use this value, not <name>.azurewebsites.net.')
output FUNCTION_APP_HOST_NAME string = functionApp.outputs.defaultHostName
output KEY_VAULT_URI string = keyVault.outputs.vaultUri
output OUTPUT_CONTAINER_URL string = '${outputStorage.outputs.blobEndpoint}${outputContainer}'
@description('Logs ingestion endpoint of the data collection endpoint (logAnalyticsEnabled only; empty otherwise).')
output LOG_ANALYTICS_ENDPOINT string = logAnalyticsEnabled ? logIngestion.outputs.endpoint : ''
@description('Static egress IP to allow-list in Qualys (vnetEnabled and natGatewayEnabled only; empty otherwise).')
output OUTBOUND_IP_ADDRESS string = (vnetEnabled && natGatewayEnabled) ? network.outputs.outboundIpAddress : ''
