// The optional Log Analytics destination (main.bicep: logAnalyticsEnabled): three custom tables in the
// existing workspace, a data collection endpoint and rule for the Logs Ingestion API, and three KQL
// functions. The identity's role on the rule (Monitoring Metrics Publisher) is in rbac.bicep.
//
// One source of truth for the columns: log-analytics-tables.json is generated from the records' JSON
// Schemas (python scripts/log_tables_json.py); tests/test_infra.py checks that the tables, the stream
// declarations and the schemas agree. Logs Ingestion API: learn.microsoft.com/azure/azure-monitor/logs/
// logs-ingestion-api-overview (custom tables, DCR stream declarations, transformKql, outputStream).

param location string
param tags object
param workspaceName string
param dataCollectionEndpointName string
param dataCollectionRuleName string

var spec = loadJsonContent('log-analytics-tables.json')
var devices = spec.tables[0]
var findings = spec.tables[1]
var changes = spec.tables[2]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource tables 'Microsoft.OperationalInsights/workspaces/tables@2023-09-01' = [
  for table in spec.tables: {
    parent: workspace
    name: table.name
    properties: {
      // Retention: the workspace's (main.bicep logRetentionDays).
      plan: 'Analytics'
      schema: {
        name: table.name
        columns: table.tableColumns
      }
    }
  }
]

resource dataCollectionEndpoint 'Microsoft.Insights/dataCollectionEndpoints@2023-03-11' = {
  name: dataCollectionEndpointName
  location: location
  tags: tags
  properties: {
    networkAcls: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

resource rule 'Microsoft.Insights/dataCollectionRules@2023-03-11' = {
  name: dataCollectionRuleName
  location: location
  tags: tags
  properties: {
    dataCollectionEndpointId: dataCollectionEndpoint.id
    streamDeclarations: {
      'Custom-QualysDevices_CL': {
        columns: devices.columns
      }
      'Custom-QualysFindings_CL': {
        columns: findings.columns
      }
      'Custom-QualysChanges_CL': {
        columns: changes.columns
      }
    }
    destinations: {
      logAnalytics: [
        {
          name: 'workspace'
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: [
      {
        streams: [devices.stream]
        destinations: ['workspace']
        transformKql: 'source'
        outputStream: devices.stream
      }
      {
        streams: [findings.stream]
        destinations: ['workspace']
        transformKql: 'source'
        outputStream: findings.stream
      }
      {
        streams: [changes.stream]
        destinations: ['workspace']
        transformKql: 'source'
        outputStream: changes.stream
      }
    ]
  }
  dependsOn: [
    tables
  ]
}

// KQL functions users can run on day one (docs/log-analytics.md shows the same text).
resource latestDevices 'Microsoft.OperationalInsights/workspaces/savedSearches@2023-09-01' = {
  parent: workspace
  name: 'qualys-latest-devices'
  properties: {
    category: 'Qualys'
    displayName: 'Qualys: latest version of every asset in scope'
    functionAlias: 'QualysLatestDevices'
    functionParameters: 'lookback:timespan = 8d'
    query: loadTextContent('kql/QualysLatestDevices.kql')
    version: 2
  }
  dependsOn: [
    tables
  ]
}

resource openFindings 'Microsoft.OperationalInsights/workspaces/savedSearches@2023-09-01' = {
  parent: workspace
  name: 'qualys-open-findings'
  properties: {
    category: 'Qualys'
    displayName: 'Qualys: open findings per asset, with criticality'
    functionAlias: 'QualysOpenFindings'
    functionParameters: 'lookback:timespan = 8d'
    query: loadTextContent('kql/QualysOpenFindings.kql')
    version: 2
  }
  dependsOn: [
    latestDevices
  ]
}

resource recentChanges 'Microsoft.OperationalInsights/workspaces/savedSearches@2023-09-01' = {
  parent: workspace
  name: 'qualys-recent-changes'
  properties: {
    category: 'Qualys'
    displayName: 'Qualys: changes of the last day'
    functionAlias: 'QualysRecentChanges'
    functionParameters: 'since:timespan = 1d'
    query: loadTextContent('kql/QualysRecentChanges.kql')
    version: 2
  }
  dependsOn: [
    tables
  ]
}

output endpoint string = dataCollectionEndpoint.properties.logsIngestion.endpoint
output ruleId string = rule.properties.immutableId
output ruleName string = rule.name
output devicesStream string = devices.stream
output findingsStream string = findings.stream
output changesStream string = changes.stream
