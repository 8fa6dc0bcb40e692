// Know when it breaks: two log alert rules on Application Insights, and an optional email.
//
// Every timer run logs a line that Application Insights keeps (host.json excludes traces from
// sampling): "qualys_sync summary {json}" when it completes, "qualys_sync failed {json}" when it
// does not, both when the run reached Blob Storage but not Log Analytics (qualys/hosting/scheduled.py:
// SUMMARY_PREFIX, FAILURE_PREFIX; tests/test_infra.py checks that the queries below use exactly those texts).
//
//   alert-qualys-sync-failed-*   a sync invocation failed (checked every 15 minutes)
//   alert-qualys-sync-missing-*  no sync completed within the last syncAlertHours (checked hourly);
//                                right after deployment it fires until the first run completes
//
// Types: Microsoft.Insights/scheduledQueryRules@2023-12-01, actionGroups@2023-01-01 (tests/azure_types).

param location string
param tags object
param appInsightsName string
@description('Name suffix of the rules (the resource token).')
param nameSuffix string
@minValue(1)
@maxValue(48)
@description('Hours without a completed sync before the "missing" alert fires (log alert windows end at 2 days).')
param syncAlertHours int
@description('Email address the alerts are sent to; empty: the rules fire in Azure Monitor only (no action group).')
param alertEmail string = ''

var hasEmail = !empty(alertEmail)

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (hasEmail) {
  name: 'ag-qualys-${nameSuffix}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'qualyssync'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource syncFailed 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-qualys-sync-failed-${nameSuffix}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Qualys sync failed'
    description: 'A qualys_sync run failed. The alert carries the failure line: its cause and fix (docs/operations.md, Alerts).'
    severity: 1
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message startswith "qualys_sync failed " | project timestamp, message, operation_Id'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: hasEmail ? [ actionGroup.id ] : []
    }
  }
}

resource syncMissing 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-qualys-sync-missing-${nameSuffix}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Qualys sync overdue'
    description: 'No qualys_sync run completed in the last ${syncAlertHours} hours (twice the schedule\'s interval by default) (docs/operations.md, Alerts).'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT${syncAlertHours}H'
    criteria: {
      allOf: [
        {
          query: 'traces | where message startswith "qualys_sync summary " | summarize completed = count() | where completed == 0'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    // Resolves by itself once a run completes again.
    autoMitigate: true
    actions: {
      actionGroups: hasEmail ? [ actionGroup.id ] : []
    }
  }
}

output syncFailedRuleId string = syncFailed.id
output syncMissingRuleId string = syncMissing.id
