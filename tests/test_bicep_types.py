"""Every resource in ``infra/`` type-checked against Azure's published resource types, offline.

A misspelled or misplaced property (the compiler's BCP037), a read-only property that is set (BCP073)
or an API version that does not exist fails ``azd up``; no Bicep compiler can run here, so
``tests/bicep_types.py`` does that part of its check with the compiler's own type definitions
(``tests/azure_types/``). The mutation tests show each kind of mistake is caught in the real templates.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.bicep_types import (
    TYPES_DIR,
    Problem,
    TypeFile,
    Walker,
    check_template,
    declarations,
    find_resource_type,
    type_file_names,
)

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
TEMPLATES = sorted(str(path.relative_to(INFRA)) for path in INFRA.rglob("*.bicep"))


def read(relative: str) -> str:
    return (INFRA / relative).read_text(encoding="utf-8")


def report(problems: list[Problem]) -> str:
    return "\n".join(map(str, problems))


# ------------------------------------------------------------------------------------------------
# Today's templates
# ------------------------------------------------------------------------------------------------


# Problems accepted on purpose, (file, resource, path) -> why the type definition is wrong there.
# Empty today. An entry that no longer occurs fails, so none outlives its reason.
ACCEPTED: dict[tuple[str, str, str], str] = {}


@pytest.mark.parametrize("relative", TEMPLATES)
def test_template_matches_the_azure_resource_types(relative: str) -> None:
    problems = check_template(f"infra/{relative}", read(relative))
    found = {(p.file, p.resource, p.path) for p in problems}
    assert not [p for p in problems if (p.file, p.resource, p.path) not in ACCEPTED], report(problems)
    stale = [key for key in ACCEPTED if key[0] == f"infra/{relative}" and key not in found]
    assert not stale, f"accepted problems that no longer occur: {stale}"


def test_every_resource_declaration_is_checked() -> None:
    # The parametrized test passes vacuously if pycep found nothing: every `resource` in the text
    # must come back as a checked declaration (nested ones would be reported above).
    total = 0
    for relative in TEMPLATES:
        text = read(relative)
        found, nested = declarations(text)
        assert not nested, relative
        assert len(found) == len(re.findall(r"^resource ", text, re.MULTILINE)), relative
        total += len(found)
    assert total >= 40


# ------------------------------------------------------------------------------------------------
# Mutations: each kind of mistake, made in a copy of a real template, is reported exactly
# ------------------------------------------------------------------------------------------------


def mutate(text: str, anchor: str, old: str, new: str) -> str:
    """Replace the first ``old`` after the (unique) ``anchor``."""
    assert text.count(anchor) == 1, f"anchor {anchor!r} is not unique"
    at = text.index(old, text.index(anchor))
    return text[:at] + new + text[at + len(old) :]


MUTATIONS = [
    pytest.param(
        "app/function-app.bicep", "resource site ", "  location: location", "  locaton: location",
        ("site", "locaton", "not a property of Microsoft.Web/sites@2024-04-01 (did you mean 'location'?)"),
        id="misspelled-in-resource-body",
    ),
    pytest.param(
        "app/function-app.bicep", "resource site ", "httpsOnly: true", "httpsOnlyy: true",
        ("site", "properties.httpsOnlyy",
         "not a property of SiteProperties in Microsoft.Web/sites@2024-04-01 (did you mean 'httpsOnly'?)"),
        id="misspelled-in-properties",
    ),
    pytest.param(
        "app/function-app.bicep", "resource site ", "  minTlsVersion: '1.2'", "  minTlsVerison: '1.2'",
        ("site", "properties.siteConfig.minTlsVerison",
         "not a property of SiteConfig in Microsoft.Web/sites@2024-04-01 (did you mean 'minTlsVersion'?)"),
        id="misspelled-in-nested-object",
    ),
    pytest.param(
        "app/function-app.bicep", "resource site ", "userAssignedIdentityResourceId:", "userAssignedIdentityId:",
        ("site", "properties.functionAppConfig.deployment.storage.authentication.userAssignedIdentityId",
         "not a property of FunctionsDeploymentStorageAuthentication in Microsoft.Web/sites@2024-04-01"
         " (did you mean 'userAssignedIdentityResourceId'?)"),
        id="misspelled-five-levels-deep",
    ),
    pytest.param(
        "app/function-app.bicep", "resource site ", "    httpsOnly: true\n",
        "    httpsOnly: true\n    defaultHostName: 'example.azurewebsites.net'\n",
        ("site", "properties.defaultHostName",
         "read-only property of SiteProperties in Microsoft.Web/sites@2024-04-01 (set by Azure, BCP073)"),
        id="read-only-property-set",
    ),
    pytest.param(
        "app/host-storage.bicep", "resource storage ", "    accessTier: 'Hot'\n",
        "    accessTier: 'Hot'\n    primaryLocation: 'westeurope'\n",
        ("storage", "properties.primaryLocation",
         "read-only property of StorageAccountPropertiesCreateParametersOrStorageAccountProperties in"
         " Microsoft.Storage/storageAccounts@2023-05-01 (set by Azure, BCP073)"),
        id="read-only-property-set-storage",
    ),
    pytest.param(
        "app/function-app.bicep", "resource site ", "@2024-04-01'", "@2024-04-02'",
        ("site", "Microsoft.Web/sites@2024-04-02",
         "type or API version not defined (known versions of this type here: 2024-04-01; tests/azure_types/README.md)"),
        id="wrong-api-version",
    ),
    pytest.param(
        "app/function-app.bicep", "resource site ", "'Microsoft.Web/sites@", "'Microsoft.Web/site@",
        ("site", "Microsoft.Web/site@2024-04-01",
         "type or API version not defined (no version of this type here; tests/azure_types/README.md)"),
        id="undefined-resource-type",
    ),
    pytest.param(
        "app/function-app.bicep", "resource site ", "value: setting.value", "val: setting.value",
        ("site", "properties.siteConfig.appSettings[for].val",
         "not a property of NameValuePair in Microsoft.Web/sites@2024-04-01 (did you mean 'value'?)"),
        id="misspelled-in-for-expression-body",
    ),
    pytest.param(
        "app/function-app.bicep", "resource site ", "http20Enabled: true", "'${name}Enabled': true",
        ("site", "properties.siteConfig['${name}Enabled']",
         "interpolated key, but SiteConfig in Microsoft.Web/sites@2024-04-01 has no additional properties"),
        id="interpolated-key-without-additional-properties",
    ),
    pytest.param(
        "app/function-app.bicep", "resource ftpPublishing ", "name: 'ftp'", "name: 'ftps'",
        ("ftpPublishing", "name",
         "'ftps' selects no variant of Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01 (one of: ftp, scm)"),
        id="unknown-discriminator-value",
    ),
    pytest.param(
        "app/network.bicep", "resource vnet ", "privateEndpointNetworkPolicies:", "privateEndpointNetworkPolicy:",
        ("vnet", "properties.subnets[1].properties.privateEndpointNetworkPolicy",
         "not a property of SubnetPropertiesFormat in Microsoft.Network/virtualNetworks@2024-05-01"
         " (did you mean 'privateEndpointNetworkPolicies'?)"),
        id="misspelled-in-array-element",
    ),
    pytest.param(
        "app/network.bicep", "resource endpoints ", "privateLinkServiceId:", "privateLinkServiceID:",
        ("endpoints", "properties.privateLinkServiceConnections[0].properties.privateLinkServiceID",
         "not a property of PrivateLinkServiceConnectionProperties in Microsoft.Network/privateEndpoints@2024-05-01"
         " (did you mean 'privateLinkServiceId'?)"),
        id="wrong-case-in-for-resource",
    ),
    pytest.param(
        "app/network.bicep", "resource natGateway ", "idleTimeoutInMinutes:", "idleTimeoutMinutes:",
        ("natGateway", "properties.idleTimeoutMinutes",
         "not a property of NatGatewayPropertiesFormat in Microsoft.Network/natGateways@2024-05-01"
         " (did you mean 'idleTimeoutInMinutes'?)"),
        id="misspelled-in-conditional-resource",
    ),
    pytest.param(
        "app/output-storage.bicep", "resource blobService ", "  name: 'default'\n",
        "  name: 'default'\n  location: 'westeurope'\n",
        ("blobService", "location",
         "not a property of Microsoft.Storage/storageAccounts/blobServices@2023-05-01 (the compiler only warns: BCP187)"),
        id="top-level-property-the-type-lacks",
    ),
    pytest.param(
        "app/rbac.bicep", "resource vault ", "  name: keyVaultName\n", "  name: keyVaultName\n  location: 'westeurope'\n",
        ("vault", "location", "cannot be set on an existing resource (only dependsOn, name, parent, scope)"),
        id="property-of-existing-resource",
    ),
    pytest.param(
        "app/function-app.bicep", "resource plan ", "  name: planName\n", "  parent: site\n  name: planName\n",
        ("plan", "parent", "not a property of Microsoft.Web/serverfarms@2024-04-01"),
        id="parent-on-a-top-level-type",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("relative", "anchor", "old", "new", "expected"), MUTATIONS)
def test_mutation_is_reported(relative: str, anchor: str, old: str, new: str, expected: tuple[str, str, str]) -> None:
    original = read(relative)
    assert not check_template(f"infra/{relative}", original)
    problems = check_template(f"infra/{relative}", mutate(original, anchor, old, new))
    assert problems == [Problem(f"infra/{relative}", *expected)], report(problems)


# ------------------------------------------------------------------------------------------------
# Rules that today's templates do not exercise
# ------------------------------------------------------------------------------------------------

POLICY = """
resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: 'func-qualys'
}

resource policy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: policyName
  properties: {
    allow: false
  }
}
"""


def test_expression_discriminator_accepts_any_variant_but_still_checks_keys() -> None:
    assert check_template("policy.bicep", POLICY) == []
    problems = check_template("policy.bicep", POLICY.replace("allow: false", "alow: false"))
    assert [(p.resource, p.path) for p in problems] == [("policy", "properties.alow")], report(problems)


def test_quoted_keys_are_checked_like_plain_ones() -> None:
    text = """
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  'name': 'id-qualys'
  'locaton': 'westeurope'
  tags: {
    'azd-env-name': 'dev'
    '${env}-owner': 'ops'
  }
}
"""
    problems = check_template("identity.bicep", text)
    assert [(p.path, p.message) for p in problems] == [
        (
            "locaton",
            "not a property of Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31 (did you mean 'location'?)",
        )
    ], report(problems)


def test_nested_resource_declarations_are_reported_not_skipped() -> None:
    # pycep keeps only the last nested resource of a body, so the check cannot see them all.
    text = """
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: 'stqualys'

  resource blobs 'blobServices' existing = {
    name: 'default'
  }

  resource files 'fileServices' existing = {
    name: 'default'
  }
}
"""
    problems = check_template("nested.bicep", text)
    assert {(p.resource, p.path) for p in problems} == {("blobs", "(declaration)"), ("files", "(declaration)")}


def test_union_of_object_types_takes_the_closest_member() -> None:
    # No union of object types occurs in today's type files; this is the rule for when one does.
    types = TypeFile(
        "synthetic",
        [
            {"$type": "UnionType", "elements": [{"$ref": "#/1"}, {"$ref": "#/2"}]},
            {"$type": "ObjectType", "name": "Email", "properties": {"address": {"type": {"$ref": "#/3"}, "flags": 1}}},
            {
                "$type": "ObjectType",
                "name": "Webhook",
                "properties": {
                    "uri": {"type": {"$ref": "#/3"}, "flags": 1},
                    "status": {"type": {"$ref": "#/3"}, "flags": 2},
                },
            },
            {"$type": "StringType"},
        ],
    )

    def problems(value: dict[str, object]) -> list[tuple[str, str]]:
        walker = Walker(types, "Test/receivers@2024-01-01")
        walker.value(value, {"$ref": "#/0"}, "receiver")
        return walker.problems

    assert problems({"address": "a@example.com"}) == []
    assert problems({"uri": "https://example.com"}) == []
    assert problems({"uri": "https://example.com", "status": "on"}) == [
        ("receiver.status", "read-only property of Webhook in Test/receivers@2024-01-01 (set by Azure, BCP073)")
    ]
    assert problems({"adress": "a@example.com"}) == [
        ("receiver.adress", "not a property of Email in Test/receivers@2024-01-01 (did you mean 'address'?)")
    ]


# ------------------------------------------------------------------------------------------------
# The type data
# ------------------------------------------------------------------------------------------------


def test_type_files_are_the_ones_the_readme_lists() -> None:
    readme = (TYPES_DIR / "README.md").read_text(encoding="utf-8")
    assert "1f896de2db966ad91e8f7d7d981e11d32e4f5d8d" in readme
    listed = dict(re.findall(r"^\| `([^`]+\.types\.json)` \| `generated/[^`]+` \| `([0-9a-f]{16})` \|", readme, re.MULTILINE))
    assert sorted(listed) == list(type_file_names())
    for name, digest in listed.items():
        assert hashlib.sha256((TYPES_DIR / name).read_bytes()).hexdigest()[:16] == digest, name


@pytest.mark.parametrize(
    "resource_type",
    [
        "Microsoft.Insights/dataCollectionRules@2023-03-11",
        "Microsoft.Insights/dataCollectionEndpoints@2023-03-11",
        "Microsoft.Insights/scheduledQueryRules@2023-12-01",
        "Microsoft.Insights/actionGroups@2023-01-01",
        "Microsoft.OperationalInsights/workspaces/tables@2023-09-01",
        "Microsoft.OperationalInsights/workspaces/savedSearches@2023-09-01",
    ],
)
def test_types_of_the_planned_resources_are_here(resource_type: str) -> None:
    # The Log Analytics destination and the alerts are checked from their first line.
    name, _, version = resource_type.partition("@")
    assert find_resource_type(name, version) is not None
