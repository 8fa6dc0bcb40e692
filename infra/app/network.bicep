// Optional private networking (main.bicep: vnetEnabled).
//
//   * VNet with a subnet delegated to Microsoft.App/environments (required for Flex Consumption VNet
//     integration) and a subnet for private endpoints.
//   * Private endpoints + private DNS zones for the host storage (blob), the output storage (blob) and
//     Key Vault; main.bicep then closes their public endpoints.
//   * Optional NAT gateway with one static public IP on the app subnet: once integrated, the app's
//     outbound traffic goes through the VNet, so Qualys always sees that one address. Without it a
//     Flex Consumption app has no stable outbound IP to allow-list.
//
// Host storage gets a blob endpoint only: the app uses no queues (see app/rbac.bicep).

param location string
param tags object
param vnetName string
param vnetAddressPrefix string
param appSubnetPrefix string
param privateEndpointSubnetPrefix string
param natGatewayEnabled bool = true
param hostStorageAccountId string
param outputStorageAccountId string
param keyVaultId string

// Private DNS zone names of the public cloud (learn.microsoft.com/azure/private-link/private-endpoint-dns).
var blobDnsZoneName = 'privatelink.blob.${environment().suffixes.storage}'
var vaultDnsZoneName = 'privatelink.vaultcore.azure.net'

var privateEndpoints = [
  {
    name: 'pe-host-blob'
    targetId: hostStorageAccountId
    groupId: 'blob'
    zone: 'blob'
  }
  {
    name: 'pe-output-blob'
    targetId: outputStorageAccountId
    groupId: 'blob'
    zone: 'blob'
  }
  {
    name: 'pe-vault'
    targetId: keyVaultId
    groupId: 'vault'
    zone: 'vault'
  }
]

resource natPublicIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = if (natGatewayEnabled) {
  name: 'pip-nat-${vnetName}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
  }
}

resource natGateway 'Microsoft.Network/natGateways@2024-05-01' = if (natGatewayEnabled) {
  name: 'nat-${vnetName}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    idleTimeoutInMinutes: 10
    publicIpAddresses: [
      {
        id: natPublicIp.id
      }
    ]
  }
}

resource appSubnetNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-app-${vnetName}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource privateEndpointNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-pe-${vnetName}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        vnetAddressPrefix
      ]
    }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: appSubnetPrefix
          networkSecurityGroup: {
            id: appSubnetNsg.id
          }
          natGateway: natGatewayEnabled ? { id: natGateway.id } : null
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          networkSecurityGroup: {
            id: privateEndpointNsg.id
          }
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource blobDnsZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: blobDnsZoneName
  location: 'global'
  tags: tags
}

resource vaultDnsZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: vaultDnsZoneName
  location: 'global'
  tags: tags
}

resource blobDnsLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: blobDnsZone
  name: vnetName
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource vaultDnsLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: vaultDnsZone
  name: vnetName
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource endpoints 'Microsoft.Network/privateEndpoints@2024-05-01' = [
  for pe in privateEndpoints: {
    name: '${pe.name}-${vnetName}'
    location: location
    tags: tags
    properties: {
      subnet: {
        id: vnet.properties.subnets[1].id
      }
      privateLinkServiceConnections: [
        {
          name: pe.name
          properties: {
            privateLinkServiceId: pe.targetId
            groupIds: [
              pe.groupId
            ]
          }
        }
      ]
    }
  }
]

resource endpointDns 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [
  for (pe, i) in privateEndpoints: {
    parent: endpoints[i]
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [
        {
          name: pe.zone
          properties: {
            privateDnsZoneId: pe.zone == 'blob' ? blobDnsZone.id : vaultDnsZone.id
          }
        }
      ]
    }
  }
]

output appSubnetId string = vnet.properties.subnets[0].id
output outboundIpAddress string = natGatewayEnabled ? natPublicIp.properties.ipAddress : ''
