// Log Analytics workspace + workspace-based Application Insights.
//
// Local (instrumentation-key) authentication is disabled on the component: telemetry is accepted only
// with an Entra ID token, which the Functions host gets for the app's identity because of the app
// setting APPLICATIONINSIGHTS_AUTHENTICATION_STRING=ClientId=<uami>;Authorization=AAD and the
// Monitoring Metrics Publisher role (app/rbac.bicep). Same pairing as the timer quickstart
// (Azure-Samples/functions-quickstart-python-azd-timer infra/main.bicep @05d91bc: disableLocalAuth).

param location string
param tags object
param logAnalyticsName string
param appInsightsName string

@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      // Workspace keys are not needed by anything here; queries and ingestion use Entra ID.
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: true
  }
}

output appInsightsName string = appInsights.name
// Ingestion endpoint + component id, not a credential while DisableLocalAuth is true.
output connectionString string = appInsights.properties.ConnectionString
output logAnalyticsId string = logAnalytics.id
output logAnalyticsName string = logAnalytics.name
