// Flex Consumption (FC1, Linux) plan and the Python 3.11 Function App.
//
// Flex Consumption takes the runtime, scale limits and the deployment package location from
// `functionAppConfig` instead of app settings, so FUNCTIONS_WORKER_RUNTIME,
// FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE and linuxFxVersion are deliberately absent
// (learn.microsoft.com/azure/azure-functions/functions-app-settings "Flex Consumption plan
// deprecations"). Shape as in Azure-Samples/azure-functions-flex-consumption-samples
// IaC/bicep/core/host/function.bicep @90ddf70, with the deployment storage authenticated by the
// user-assigned identity as in the timer quickstart's app/api.bicep.

param name string
param planName string
param location string
param tags object

@description('Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('URL of the blob container that holds the deployment package (host storage account).')
param deploymentContainerUrl string

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 10

@description('Subnet delegated to Microsoft.App/environments for VNet integration; empty = none.')
param subnetId string = ''

@description('The complete set of app settings as name -> value (built in main.bicep; replaces all settings of the app).')
param appSettings object

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: a scheduled batch sync tolerates a zone outage (the next occurrence catches up, IsPastDue); zone redundancy would also require zone-redundant storage and a region with zones
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // Linux.
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: operators call the connect/validate endpoints and the admin endpoint (manual run) from outside Azure; every HTTP function needs a function key, the admin endpoint the master key
  // checkov:skip=CKV_AZURE_17: mutual TLS would lock out the operators' CLI/browser calls to the key-protected endpoints; HTTPS-only with TLS 1.2 applies
  // checkov:skip=CKV_AZURE_212: scale to zero is the point of Flex Consumption for a job that runs every few hours; always-ready instances are billed around the clock and the timer is a singleton anyway
  // checkov:skip=CKV_AZURE_213: no instance pool to take out of rotation (scale to zero, singleton timer); health shows in Application Insights (qualys_sync summary line, failures)
  name: name
  location: location
  // azd deploys the `api` service of azure.yaml to the site carrying this tag.
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: setting.value
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No publishing with user name/password: azd and `az functionapp deployment` use Entra ID tokens.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
