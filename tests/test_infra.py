"""Invariants of the Bicep in ``infra/``, checked offline.

No Bicep compiler can be installed on the CI machines, so the templates are parsed with
pycep-parser (the parser checkov uses) and the tests assert on the parsed structure what the
deployment promises: Flex Consumption (FC1) with Python 3.11, a user-assigned identity, storage
without shared keys, Key Vault in RBAC mode with purge protection, least-privilege role
assignments, and app settings that match ``qualys.config.catalog`` exactly (a new catalog entry
without infra fails here). checkov (``scripts/check_infra.sh``) covers the generic security rules.

pycep quirks the helpers absorb: a bare identifier and a string literal both come back as a plain
``str`` (so references are checked against the names a template declares), a property chain
``a.b.c`` is a nested ``property_accessor`` tree, and the body of ``resource x = if (cond) {...}``
sits one level deeper, next to its condition.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from qualys.config.catalog import SETTINGS, SETTINGS_BY_NAME, SettingSpec, deployed_settings
from qualys.hosting.scheduled import FAILURE_PREFIX, SUMMARY_PREFIX

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"

# Settings the platform needs, set by infra rather than read by the connector's code.
HOST_SETTINGS = {
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}

# Catalog settings whose value is a property of a resource the template creates, not a free choice:
# setting -> (expression the app setting must be, main.bicep parameter that names that resource).
DERIVED_SETTINGS = {
    "KEY_VAULT_URL": ("keyVault.outputs.vaultUri", "keyVaultName"),
    "OUTPUT_STORAGE_ACCOUNT_URL": ("outputStorage.outputs.blobEndpoint", "outputStorageAccountName"),
    "AZURE_CLIENT_ID": ("identity.properties.clientId", "identityName"),
}

# Catalog settings of the optional Log Analytics destination: an output of its module when
# logAnalyticsEnabled, else empty. setting -> the module output.
CONDITIONAL_SETTINGS = {
    "LOG_ANALYTICS_ENDPOINT": "logIngestion.outputs.endpoint",
    "LOG_ANALYTICS_RULE_ID": "logIngestion.outputs.ruleId",
    "LOG_ANALYTICS_DEVICES_STREAM": "logIngestion.outputs.devicesStream",
    "LOG_ANALYTICS_FINDINGS_STREAM": "logIngestion.outputs.findingsStream",
    "LOG_ANALYTICS_CHANGES_STREAM": "logIngestion.outputs.changesStream",
}

# Flex Consumption takes these from functionAppConfig (or does not support them); as app settings
# they break the app or are ignored. AzureWebJobsStorage would be a connection string.
FORBIDDEN_SETTINGS = {
    "AzureWebJobsStorage",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_TIME_ZONE",
    "APPINSIGHTS_INSTRUMENTATIONKEY",
}

# Built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
ROLE_IDS = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}

STORAGE_ACCOUNT = "Microsoft.Storage/storageAccounts"
CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
VAULT = "Microsoft.KeyVault/vaults"
APP_INSIGHTS = "Microsoft.Insights/components"
DCR = "Microsoft.Insights/dataCollectionRules"
DCE = "Microsoft.Insights/dataCollectionEndpoints"

# (role, scope type, rbac.bicep parameter naming the scope, principal parameter, condition or None)
EXPECTED_ROLE_ASSIGNMENTS = {
    ("Storage Blob Data Owner", STORAGE_ACCOUNT, "hostStorageAccountName", "identityPrincipalId", None),
    ("Storage Blob Data Contributor", CONTAINER, "outputContainerName", "identityPrincipalId", None),
    ("Key Vault Secrets User", VAULT, "keyVaultName", "identityPrincipalId", None),
    ("Key Vault Secrets Officer", VAULT, "keyVaultName", "identityPrincipalId", "connectEnabled"),
    ("Monitoring Metrics Publisher", APP_INSIGHTS, "appInsightsName", "identityPrincipalId", None),
    ("Key Vault Secrets Officer", VAULT, "keyVaultName", "operatorPrincipalId", "hasOperator"),
    ("Storage Blob Data Reader", CONTAINER, "outputContainerName", "operatorPrincipalId", "hasOperator"),
    ("Monitoring Metrics Publisher", DCR, "dataCollectionRuleName", "identityPrincipalId", "logIngestionEnabled"),
}

# How main.bicep must wire the rbac module: each scope name comes from the module that creates it.
EXPECTED_RBAC_WIRING = {
    "identityPrincipalId": "identity.properties.principalId",
    "hostStorageAccountName": "hostStorage.outputs.name",
    "outputStorageAccountName": "outputStorage.outputs.name",
    "outputContainerName": "outputStorage.outputs.containerName",
    "keyVaultName": "keyVault.outputs.name",
    "appInsightsName": "monitoring.outputs.appInsightsName",
    "connectEnabled": "qualysConnectEnabled",
    "operatorPrincipalId": "operatorPrincipalId",
}


# ------------------------------------------------------------------------------------------------
# Parsing helpers
# ------------------------------------------------------------------------------------------------


@functools.cache
def parse(relative: str) -> dict[str, Any]:
    """The pycep tree of one template (cached; treat as read-only)."""
    return BicepParser().parse(text=(INFRA / relative).read_text(encoding="utf-8"))


def bicep_files() -> list[str]:
    return sorted(str(path.relative_to(INFRA)) for path in INFRA.rglob("*.bicep"))


def body(declaration: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(condition, config) of a resource or module; condition is None when unconditional."""
    config = declaration["config"]
    if set(config) == {"condition", "config"}:
        return config["condition"], config["config"]
    return None, config


def ref(expr: Any) -> str | None:
    """``a.b.c`` for a property-access chain, the text itself for a bare name, else None."""
    if isinstance(expr, str):
        return expr
    if isinstance(expr, dict) and expr.get("operator", {}).get("type") == "property_accessor":
        operands = expr["operator"]["operands"]
        left, right = ref(operands["operand_1"]), ref(operands["operand_2"])
        return f"{left}.{right}" if left is not None and right is not None else None
    return None


def leaves(expr: Any) -> Iterable[str]:
    """Every string in an expression tree (identifiers, literals, interpolated strings)."""
    if isinstance(expr, str):
        yield expr
    elif isinstance(expr, dict):
        for value in expr.values():
            yield from leaves(value)
    elif isinstance(expr, list):
        for value in expr:
            yield from leaves(value)


def mentions(expr: Any, name: str) -> bool:
    """True if the expression uses the symbol ``name`` (bare, in a chain, or in ``${...}``)."""
    pattern = re.compile(rf"\$\{{[^}}]*\b{re.escape(name)}\b")
    return any(leaf == name or pattern.search(leaf) for leaf in leaves(expr))


def resources(template: dict[str, Any], type_: str | None = None) -> dict[str, dict[str, Any]]:
    return {
        name: declaration
        for name, declaration in template.get("resources", {}).items()
        if type_ is None or declaration["type"] == type_
    }


def only_resource(template: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [declaration for declaration in resources(template, type_).values() if not declaration["existing"]]
    assert len(found) == 1, f"expected exactly one {type_}, found {len(found)}"
    return body(found[0])[1]


def module(template: dict[str, Any], path: str) -> tuple[Any, dict[str, Any]]:
    found = [body(m) for m in template.get("modules", {}).values() if m["detail"]["path"] == path]
    assert len(found) == 1, f"expected one module {path}, found {len(found)}"
    return found[0]


def not_empty(name: str) -> dict[str, Any]:
    """The pycep tree of ``!empty(name)``."""
    return {
        "operator": {
            "type": "not",
            "operands": {"bool_value": {"function": {"type": "empty", "parameters": {"item_to_test": name}}}},
        }
    }


def camel(setting: str) -> str:
    """QUALYS_API_URL -> qualysApiUrl (the parameter name convention of main.bicep)."""
    head, *tail = setting.lower().split("_")
    return head + "".join(part.capitalize() for part in tail)


def as_setting_text(default: Any) -> str | None:
    """A parameter default as the environment sees it (bool -> true/false); None for expressions."""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, int | str):
        return str(default)
    return None


def secure_params(template: dict[str, Any]) -> set[str]:
    return {
        name
        for name, param in template.get("parameters", {}).items()
        if any(decorator["type"] == "secure" for decorator in param["decorators"])
    }


def main() -> dict[str, Any]:
    return parse("main.bicep")


def app_settings() -> dict[str, Any]:
    """The app-settings table of main.bicep (name -> pycep expression)."""
    return main()["variables"]["appSettings"]["value"]


def setting_problems(specs: Iterable[SettingSpec], settings: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """Everything wrong between the settings catalog and the deployed app settings / parameters."""
    problems: list[str] = []
    specs = list(specs)
    for spec in specs:
        if not spec.deployed or spec.secret:
            if spec.name in settings:
                problems.append(f"{spec.name} is local-only or secret but is an app setting")
            continue
        if spec.name not in settings:
            problems.append(f"{spec.name} is read by the app but is not an app setting")
            continue
        value = settings[spec.name]
        if spec.name in CONDITIONAL_SETTINGS:
            operands = value.get("operator", {}).get("operands", {}) if isinstance(value, dict) else {}
            wanted = ("logAnalyticsEnabled", CONDITIONAL_SETTINGS[spec.name], "")
            if (operands.get("condition"), ref(operands.get("true_value")), operands.get("false_value")) != wanted:
                problems.append(f"{spec.name} should be logAnalyticsEnabled ? {CONDITIONAL_SETTINGS[spec.name]} : ''")
            continue
        if spec.name in DERIVED_SETTINGS:
            source, name_param = DERIVED_SETTINGS[spec.name]
            if ref(value) != source:
                problems.append(f"{spec.name} should be {source}, is {value!r}")
            if name_param not in params:
                problems.append(f"{spec.name}: no parameter {name_param} for the resource it comes from")
            continue
        param = camel(spec.name)
        if param not in params:
            problems.append(f"{spec.name} has no parameter {param}")
            continue
        if not mentions(value, param):
            problems.append(f"{spec.name} is not set from parameter {param}")
        default = params[param]["default"]
        if spec.default is None:
            if default is not None:
                problems.append(f"{param} has a default but the catalog has none (make it required)")
        elif as_setting_text(default) != spec.default:
            problems.append(f"{param} defaults to {default!r}, the catalog to {spec.default!r}")
    unknown = set(settings) - {spec.name for spec in specs} - HOST_SETTINGS
    problems.extend(f"{name} is an app setting but not in the catalog" for name in sorted(unknown))
    return problems


# ------------------------------------------------------------------------------------------------
# Templates and wiring
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("relative", bicep_files())
def test_every_template_parses(relative: str) -> None:
    template = parse(relative)
    for declaration in template.get("modules", {}).values():
        target = (INFRA / relative).parent / declaration["detail"]["path"]
        assert target.is_file(), f"{relative}: module {target} does not exist"
        assert declaration["type"] == "local", "registry modules (br:) cannot be checked offline"


def test_main_deploys_to_a_resource_group() -> None:
    # Needed for `az deployment group create` and azd's resource-group-scoped deployment.
    assert main()["globals"]["scope"]["value"] == "resourceGroup"


def test_only_one_identity_and_it_is_user_assigned() -> None:
    identities = resources(main(), "Microsoft.ManagedIdentity/userAssignedIdentities")
    assert list(identities) == ["identity"]
    _, app = module(main(), "app/function-app.bicep")
    assert ref(app["params"]["identityId"]) == "identity.id"


# ------------------------------------------------------------------------------------------------
# Function App on Flex Consumption
# ------------------------------------------------------------------------------------------------


def test_plan_is_flex_consumption_linux() -> None:
    plan = only_resource(parse("app/function-app.bicep"), "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True  # Linux


def test_function_app_runs_python_311_on_that_plan() -> None:
    site = only_resource(parse("app/function-app.bicep"), "Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"
    assert ref(site["properties"]["serverFarmId"]) == "plan.id"
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert "linuxFxVersion" not in site["properties"]["siteConfig"]  # Flex takes the runtime from functionAppConfig


def test_function_app_uses_the_identity_for_everything() -> None:
    template = parse("app/function-app.bicep")
    site = only_resource(template, "Microsoft.Web/sites")
    assert site["identity"]["type"] == "UserAssigned"
    assert list(site["identity"]["userAssignedIdentities"]) == ["'${identityId}'"]
    storage = site["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {"type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "identityId"}
    assert "identityId" in template["parameters"]


def test_function_app_is_https_only_without_basic_publishing() -> None:
    template = parse("app/function-app.bicep")
    site = only_resource(template, "Microsoft.Web/sites")
    assert site["properties"]["httpsOnly"] is True
    assert site["properties"]["siteConfig"]["minTlsVersion"] == "1.2"
    assert site["properties"]["siteConfig"]["ftpsState"] == "Disabled"
    policies = {
        body(p)[1]["name"]: body(p)[1]["properties"]["allow"]
        for p in resources(template, "Microsoft.Web/sites/basicPublishingCredentialsPolicies").values()
    }
    assert policies == {"ftp": False, "scm": False}


def test_deployment_package_lives_in_the_host_storage_container() -> None:
    _, app = module(main(), "app/function-app.bicep")
    _, host = module(main(), "app/host-storage.bicep")
    assert app["params"]["deploymentContainerUrl"] == "${hostStorage.outputs.blobEndpoint}${deploymentContainerName}"
    assert host["params"]["deploymentContainerName"] == "deploymentContainerName"
    container = only_resource(parse("app/host-storage.bicep"), CONTAINER)
    assert container["name"] == "deploymentContainerName"
    assert container["properties"]["publicAccess"] == "None"


def test_site_gets_exactly_the_app_settings_table_of_main() -> None:
    template = parse("app/function-app.bicep")
    site = only_resource(template, "Microsoft.Web/sites")
    loop = site["properties"]["siteConfig"]["appSettings"]
    assert loop["loop_type"]["detail"]["array_name"] == {"function": {"type": "items", "parameters": {"arg_1": "appSettings"}}}
    item = loop["loop_type"]["detail"]["item_name"]
    assert ref(loop["config"]["name"]) == f"{item}.key"
    assert ref(loop["config"]["value"]) == f"{item}.value"
    # No second source of settings (a sites/config 'appsettings' resource would replace them all).
    assert not resources(template, "Microsoft.Web/sites/config")
    _, app = module(main(), "app/function-app.bicep")
    assert app["params"]["appSettings"] == "appSettings"


# ------------------------------------------------------------------------------------------------
# App settings against the catalog
# ------------------------------------------------------------------------------------------------


def test_app_settings_match_the_settings_catalog() -> None:
    assert setting_problems(SETTINGS, app_settings(), main()["parameters"]) == []


def test_every_deployed_setting_is_an_app_setting() -> None:
    assert {spec.name for spec in deployed_settings()} <= set(app_settings())


def test_no_local_only_or_secret_setting_appears_anywhere_in_infra() -> None:
    hidden = [spec.name for spec in SETTINGS if not spec.deployed or spec.secret]
    assert hidden, "the catalog is expected to list local-only settings"
    for relative in bicep_files():
        text = (INFRA / relative).read_text(encoding="utf-8")
        for name in hidden:
            assert not re.search(rf"\b{name}\b\s*:", text), f"{relative} sets {name}"


def test_host_storage_is_reached_by_identity() -> None:
    settings = app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert ref(settings["AzureWebJobsStorage__clientId"]) == "identity.properties.clientId"
    assert ref(settings["AzureWebJobsStorage__blobServiceUri"]) == "hostStorage.outputs.blobEndpoint"
    assert ref(settings["AzureWebJobsStorage__queueServiceUri"]) == "hostStorage.outputs.queueEndpoint"
    assert not FORBIDDEN_SETTINGS & set(settings)


def test_telemetry_uses_entra_id() -> None:
    settings = app_settings()
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identity.properties.clientId};Authorization=AAD"
    assert ref(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]) == "monitoring.outputs.connectionString"
    template = parse("app/monitoring.bicep")
    insights = only_resource(template, APP_INSIGHTS)
    # With local auth disabled the connection string is an endpoint, not a credential.
    assert insights["properties"]["DisableLocalAuth"] is True
    assert ref(insights["properties"]["WorkspaceResourceId"]) == "logAnalytics.id"
    only_resource(template, "Microsoft.OperationalInsights/workspaces")


def test_no_secret_in_app_settings() -> None:
    settings = app_settings()
    secure = secure_params(main())
    assert secure == {"seedQualysUsername", "seedQualysPassword"}
    for name, value in settings.items():
        for leaf in leaves(value):
            assert not re.search(r"AccountKey=|SharedAccessSignature=|DefaultEndpointsProtocol=|sig=", leaf), name
            assert not re.search(r"listKeys|listSecrets|\.getSecret\(", leaf), name
        for param in secure:
            assert not mentions(value, param), f"{name} uses the secure parameter {param}"
    connection_strings = {name for name in settings if "CONNECTION_STRING" in name.upper()}
    assert connection_strings == {"APPLICATIONINSIGHTS_CONNECTION_STRING"}


def test_every_checkov_skip_is_inline_with_a_reason() -> None:
    skip = re.compile(r"^(\s+)// checkov:skip=(CKV2?_AZURE_\d+): (.{20,})$")
    count = 0
    for relative in bicep_files():
        for number, line in enumerate((INFRA / relative).read_text(encoding="utf-8").splitlines(), 1):
            if "checkov:skip" in line:
                assert skip.match(line), f"{relative}:{number}: needs '// checkov:skip=CKV_...: <reason>' inside a resource"
                count += 1
    assert count, "expected the documented skips"
    config = (ROOT / ".checkov.yaml").read_text(encoding="utf-8")
    assert not re.search(r"^\s*(skip-check|soft-fail)", config, re.MULTILINE), "skips belong inline, next to the setting"


def test_no_keys_anywhere_in_infra() -> None:
    for path in [*INFRA.rglob("*.bicep"), *INFRA.glob("*.json")]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"listKeys\(|AccountKey=|SharedAccessSignature=|connectionStrings", text), path


# ------------------------------------------------------------------------------------------------
# The catalog check itself must be able to fail
# ------------------------------------------------------------------------------------------------


def test_catalog_check_reports_a_new_setting_without_infra() -> None:
    extra = SettingSpec("QUALYS_SOMETHING_NEW", "a setting added to the app", "7")
    problems = setting_problems([*SETTINGS, extra], app_settings(), main()["parameters"])
    assert problems == ["QUALYS_SOMETHING_NEW is read by the app but is not an app setting"]


def test_catalog_check_reports_a_drifted_default_and_a_leaked_secret() -> None:
    drifted = [SettingSpec(s.name, s.description, "120") if s.name == "QUALYS_LOOKBACK_DAYS" else s for s in SETTINGS]
    assert setting_problems(drifted, app_settings(), main()["parameters"]) == [
        "qualysLookbackDays defaults to 90, the catalog to '120'"
    ]
    leaked = {**app_settings(), "QUALYS_PASSWORD": "seedQualysPassword"}
    assert setting_problems(SETTINGS, leaked, main()["parameters"]) == [
        "QUALYS_PASSWORD is local-only or secret but is an app setting"
    ]


# ------------------------------------------------------------------------------------------------
# Storage
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("relative", ["app/host-storage.bicep", "app/output-storage.bicep"])
def test_storage_accounts_are_keyless_and_private_to_entra_id(relative: str) -> None:
    template = parse(relative)
    account = only_resource(template, STORAGE_ACCOUNT)
    properties = account["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    assert properties["publicNetworkAccess"] == "publicNetworkAccess"
    assert template["parameters"]["publicNetworkAccess"]["default"] == "Enabled"
    for declaration in resources(template, CONTAINER).values():
        assert body(declaration)[1]["properties"]["publicAccess"] == "None"


def test_output_container_keeps_every_run() -> None:
    template = parse("app/output-storage.bicep")
    service = only_resource(template, "Microsoft.Storage/storageAccounts/blobServices")["properties"]
    assert service["isVersioningEnabled"] is True
    assert service["deleteRetentionPolicy"]["enabled"] is True
    assert service["containerDeleteRetentionPolicy"]["enabled"] is True
    container = only_resource(template, CONTAINER)
    assert container["name"] == "containerName"
    rule = only_resource(template, "Microsoft.Storage/storageAccounts/managementPolicies")["properties"]["policy"]["rules"]
    assert len(rule) == 1
    # The lifecycle rule only ever deletes *previous versions*, never current blobs.
    assert set(rule[0]["definition"]["actions"]) == {"version"}
    _, output = module(main(), "app/output-storage.bicep")
    assert output["params"]["containerName"] == "outputContainer"


def test_output_and_host_storage_are_separate_accounts() -> None:
    # Blob Data Owner for the host must not reach the output; versioning must not hit host locks.
    _, host = module(main(), "app/host-storage.bicep")
    _, output = module(main(), "app/output-storage.bicep")
    assert ref(host["params"]["name"]) == "names.hostStorage"
    assert ref(output["params"]["name"]) == "names.outputStorage"
    names = main()["variables"]["names"]["value"]
    assert names["hostStorage"] != names["outputStorage"]


# ------------------------------------------------------------------------------------------------
# Key Vault
# ------------------------------------------------------------------------------------------------


def test_key_vault_uses_rbac_with_purge_protection() -> None:
    vault = only_resource(parse("app/key-vault.bicep"), VAULT)["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True
    assert vault["enablePurgeProtection"] is True
    assert "accessPolicies" not in vault
    assert vault["publicNetworkAccess"] == "publicNetworkAccess"


def test_key_vault_public_access_is_a_parameter_closed_only_with_a_private_endpoint() -> None:
    param = main()["parameters"]["keyVaultPublicNetworkAccess"]
    assert {"type": "allowed", "argument": ["Enabled", "Disabled"]} in param["decorators"]
    _, vault = module(main(), "app/key-vault.bicep")
    assert vault["params"]["publicNetworkAccess"] == "effectiveKeyVaultPublicNetworkAccess"
    effective = main()["variables"]["effectiveKeyVaultPublicNetworkAccess"]["value"]["operator"]
    assert effective["operands"] == {
        "condition": "vnetEnabled",
        "true_value": "keyVaultPublicNetworkAccess",
        "false_value": "Enabled",
    }


def test_credentials_are_seeded_only_from_secure_parameters() -> None:
    assert {"seedQualysUsername", "seedQualysPassword"} <= secure_params(main())
    _, vault = module(main(), "app/key-vault.bicep")
    assert vault["params"]["seedQualysUsername"] == "seedQualysUsername"
    assert vault["params"]["seedQualysPassword"] == "seedQualysPassword"
    template = parse("app/key-vault.bicep")
    assert {"seedQualysUsername", "seedQualysPassword"} <= secure_params(template)
    seeded = {}
    for declaration in template["modules"].values():
        condition, config = body(declaration)
        assert declaration["detail"]["path"] == "key-vault-secret.bicep"
        value = config["params"]["value"]
        # Written only when given, so a redeploy never blanks a secret set later.
        assert condition == not_empty(value)
        seeded[config["params"]["name"]] = value
    assert seeded == {"usernameSecretName": "seedQualysUsername", "passwordSecretName": "seedQualysPassword"}
    secret_module = parse("app/key-vault-secret.bicep")
    assert secret_module["parameters"]["value"]["default"] is None
    assert "value" in secure_params(secret_module)
    assert only_resource(secret_module, "Microsoft.KeyVault/vaults/secrets")["properties"]["value"] == "value"
    assert not secret_module.get("outputs")


def test_secret_names_follow_the_app_settings() -> None:
    _, vault = module(main(), "app/key-vault.bicep")
    assert vault["params"]["usernameSecretName"] == "qualysUsernameSecret"
    assert vault["params"]["passwordSecretName"] == "qualysPasswordSecret"


def test_no_output_carries_a_secret() -> None:
    for relative in bicep_files():
        template = parse(relative)
        for name, output in template.get("outputs", {}).items():
            for param in secure_params(template):
                assert not mentions(output["value"], param), f"{relative}: output {name} uses {param}"


# ------------------------------------------------------------------------------------------------
# Role assignments
# ------------------------------------------------------------------------------------------------


def role_assignments() -> set[tuple[str, str, str, str, str | None]]:
    template = parse("app/rbac.bicep")
    roles = template["variables"]["roles"]["value"]
    declared = resources(template)
    found = set()
    for symbol, declaration in resources(template, "Microsoft.Authorization/roleAssignments").items():
        condition, config = body(declaration)
        properties = config["properties"]
        role_key = ref(properties["roleDefinitionId"]["function"]["parameters"]["resource_name_1"])
        assert role_key is not None
        assert role_key.startswith("roles."), f"{symbol}: role id must come from the roles table"
        role_id = roles[role_key.removeprefix("roles.")]
        assert role_id in ROLE_IDS, f"{symbol}: unexpected role {role_id}"
        scope = config["scope"]
        assert scope in declared, f"{symbol}: scope must be a resource of this module, not the resource group"
        scope_declaration = declared[scope]
        assert scope_declaration["existing"] is True
        # guid(scope, principal, role): one assignment per triple, stable across redeploys.
        guid = config["name"]["function"]["parameters"]
        assert ref(guid["base_string"]) == f"{scope}.id"
        assert guid["extra_string_1"] == properties["principalId"]
        assert ref(guid["extra_string_2"]) == role_key
        if properties["principalId"] == "identityPrincipalId":
            assert properties["principalType"] == "ServicePrincipal"
        found.add(
            (
                ROLE_IDS[role_id],
                scope_declaration["type"],
                body(scope_declaration)[1]["name"],
                properties["principalId"],
                ref(condition) if condition is not None else None,
            )
        )
    return found


def test_role_assignments_are_exactly_the_least_privilege_set() -> None:
    assert role_assignments() == EXPECTED_ROLE_ASSIGNMENTS


def test_container_scope_is_the_output_container_of_the_output_account() -> None:
    template = parse("app/rbac.bicep")
    container = body(template["resources"]["outputContainer"])[1]
    service = body(template["resources"][container["parent"]])[1]
    account = body(template["resources"][service["parent"]])[1]
    assert (container["name"], service["name"], account["name"]) == (
        "outputContainerName",
        "default",
        "outputStorageAccountName",
    )
    host = body(template["resources"]["hostStorage"])[1]
    assert host["name"] == "hostStorageAccountName"


def test_conditional_roles_follow_their_switches() -> None:
    variables = parse("app/rbac.bicep")["variables"]
    assert variables["hasOperator"]["value"] == not_empty("operatorPrincipalId")
    _, rbac = module(main(), "app/rbac.bicep")
    wiring = {name: ref(value) for name, value in rbac["params"].items() if name in EXPECTED_RBAC_WIRING}
    assert wiring == EXPECTED_RBAC_WIRING
    # The Log Analytics rule's role exists exactly when the destination does.
    assert variables["logIngestionEnabled"]["value"] == not_empty("dataCollectionRuleName")
    rule = rbac["params"]["dataCollectionRuleName"]["operator"]["operands"]
    assert (rule["condition"], ref(rule["true_value"]), rule["false_value"]) == (
        "logAnalyticsEnabled", "logIngestion.outputs.ruleName", ""
    )
    # The connect endpoint's app setting and its vault write permission come from one parameter.
    assert app_settings()["QUALYS_CONNECT_ENABLED"]["operator"]["operands"]["condition"] == "qualysConnectEnabled"
    assert main()["parameters"]["qualysConnectEnabled"]["default"] is False


def test_role_assignments_only_in_the_rbac_module() -> None:
    for relative in bicep_files():
        if relative != "app/rbac.bicep":
            assert not resources(parse(relative), "Microsoft.Authorization/roleAssignments"), relative


def test_function_app_waits_for_its_roles() -> None:
    _, app = module(main(), "app/function-app.bicep")
    assert "rbac" in app.get("dependsOn", [])


# ------------------------------------------------------------------------------------------------
# Optional private networking
# ------------------------------------------------------------------------------------------------


def test_vnet_is_optional_and_off_by_default() -> None:
    params = main()["parameters"]
    assert params["vnetEnabled"]["default"] is False
    condition, _ = module(main(), "app/network.bicep")
    assert condition == "vnetEnabled"
    _, app = module(main(), "app/function-app.bicep")
    subnet = app["params"]["subnetId"]["operator"]["operands"]
    assert (subnet["condition"], ref(subnet["true_value"]), subnet["false_value"]) == (
        "vnetEnabled",
        "network.outputs.appSubnetId",
        "",
    )
    for path in ("app/host-storage.bicep", "app/output-storage.bicep"):
        _, storage = module(main(), path)
        access = storage["params"]["publicNetworkAccess"]["operator"]["operands"]
        assert (access["condition"], access["true_value"], access["false_value"]) == ("vnetEnabled", "Disabled", "Enabled")


def test_network_has_flex_delegation_and_private_endpoints() -> None:
    template = parse("app/network.bicep")
    vnet = only_resource(template, "Microsoft.Network/virtualNetworks")
    subnets = {subnet["name"]: subnet["properties"] for subnet in vnet["properties"]["subnets"]}
    delegations = [d["properties"]["serviceName"] for d in subnets["app"]["delegations"]]
    assert delegations == ["Microsoft.App/environments"]
    endpoints = {(entry["targetId"], entry["groupId"]) for entry in template["variables"]["privateEndpoints"]["value"]}
    assert endpoints == {
        ("hostStorageAccountId", "blob"),
        ("outputStorageAccountId", "blob"),
        ("keyVaultId", "vault"),
    }
    site = only_resource(parse("app/function-app.bicep"), "Microsoft.Web/sites")
    assert site["properties"]["virtualNetworkSubnetId"]["operator"]["operands"]["false_value"] == "subnetId"


# ------------------------------------------------------------------------------------------------
# Parameters file, outputs, azure.yaml
# ------------------------------------------------------------------------------------------------


def test_parameters_file_is_json_and_names_every_required_parameter() -> None:
    data = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    assert data["$schema"].endswith("/deploymentParameters.json#")
    given = data["parameters"]
    params = main()["parameters"]
    required = {name for name, param in params.items() if param["default"] is None}
    assert "environmentName" in required
    assert required <= set(given), f"missing required parameters: {sorted(required - set(given))}"
    assert set(given) <= set(params), "the file names parameters main.bicep does not have"
    for name, entry in given.items():
        assert set(entry) == {"value"}, name
    # Secure values can only come from the (azd) environment, never from the file itself.
    for name in secure_params(main()) & set(given):
        assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", given[name]["value"]), name
    # A catalog setting is configured through the environment variable of the same name.
    for spec in deployed_settings():
        if camel(spec.name) in given:
            assert given[camel(spec.name)]["value"] == "${" + spec.name + "}"


def test_outputs_name_what_the_operator_needs() -> None:
    outputs = main()["outputs"]
    assert {"FUNCTION_APP_NAME", "FUNCTION_APP_HOST_NAME", "KEY_VAULT_URI", "OUTPUT_CONTAINER_URL"} <= set(outputs)
    assert ref(outputs["FUNCTION_APP_HOST_NAME"]["value"]) == "functionApp.outputs.defaultHostName"
    assert ref(outputs["KEY_VAULT_URI"]["value"]) == "keyVault.outputs.vaultUri"
    assert outputs["OUTPUT_CONTAINER_URL"]["value"] == "${outputStorage.outputs.blobEndpoint}${outputContainer}"
    site_outputs = parse("app/function-app.bicep")["outputs"]
    assert ref(site_outputs["defaultHostName"]["value"]) == "site.properties.defaultHostName"


def test_azure_yaml_declares_the_python_function_service() -> None:
    # No YAML parser among the test dependencies; azure.yaml is small and flat enough to read by indent.
    tree: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, tree)]
    for raw in (ROOT / "azure.yaml").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        while stack[-1][0] >= indent:
            stack.pop()
        node: dict[str, Any] = {}
        stack[-1][1][key] = value.strip() or node
        if not value.strip():
            stack.append((indent, node))
    assert tree["services"]["api"] == {"project": ".", "language": "python", "host": "function"}
    assert tree["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    site = only_resource(parse("app/function-app.bicep"), "Microsoft.Web/sites")
    assert site["tags"]["function"]["parameters"]["arg_2"] == {"'azd-service-name'": "api"}


# ------------------------------------------------------------------------------------------------
# Alerts: a sync failed, no sync completed in time
# ------------------------------------------------------------------------------------------------


def evaluate(expr: Any, scope: dict[str, Any]) -> Any:
    """The value of a pycep expression of the few functions main.bicep's alert window uses (names from ``scope``)."""
    if isinstance(expr, str):
        return scope.get(expr, expr)  # pycep gives names and string literals alike; a name is in scope
    if not isinstance(expr, dict):
        return expr
    if "function" in expr:
        kind, args = expr["function"]["type"], [evaluate(a, scope) for a in expr["function"]["parameters"].values()]
        functions = {
            "split": lambda text, sep: text.split(sep), "length": len, "starts_with": lambda s, p: s.startswith(p),
            "substring": lambda s, start, length=None: s[start:] if length is None else s[start : start + length],
            "int": int, "min": min,
        }
        return functions[kind](*[a for a in args if a is not None] if kind == "substring" else args)
    operator = expr["operator"]
    operands = operator["operands"]
    if operator["type"] == "conditional":
        return evaluate(operands["true_value" if evaluate(operands["condition"], scope) else "false_value"], scope)
    left, right = evaluate(operands["operand_1"], scope), evaluate(operands["operand_2"], scope)
    binary = {
        "equals": lambda: left == right, "greater_than": lambda: left > right, "multiply": lambda: left * right,
        "index_accessor": lambda: left[right],
    }
    return binary[operator["type"]]()


def overdue_alert_hours(schedule: str, override: int = 0) -> int:
    """effectiveSyncAlertHours of main.bicep for a schedule and a syncAlertHours parameter."""
    variables = main()["variables"]
    scope: dict[str, Any] = {"qualysSyncSchedule": schedule, "syncAlertHours": override}
    for name in ("scheduleFields", "scheduleHourField", "scheduleIntervalHours", "effectiveSyncAlertHours"):
        scope[name] = evaluate(variables[name]["value"], scope)
    result: int = scope["effectiveSyncAlertHours"]
    return result


@pytest.mark.parametrize(
    ("schedule", "override", "hours"),
    [
        (str(SETTINGS_BY_NAME["QUALYS_SYNC_SCHEDULE"].default), 0, 8),  # the default: every 4 hours
        ("0 0 */6 * * *", 0, 12),
        ("0 0 * * * *", 0, 2),  # hourly
        ("0 */5 * * * *", 0, 2),  # every 5 minutes: the hour field is '*'
        ("0 30 2 * * *", 0, 48),  # once a day at 02:30
        ("0 0 */4 * * *", 5, 5),  # set explicitly
    ],
)
def test_the_overdue_alert_waits_twice_the_schedule(schedule: str, override: int, hours: int) -> None:
    assert overdue_alert_hours(schedule, override) == hours


def test_alerts_query_the_lines_the_sync_logs() -> None:
    """One source for the text: the prefixes the timer's run logs (qualys/hosting/scheduled.py)."""
    found = resources(parse("app/alerts.bicep"), "Microsoft.Insights/scheduledQueryRules")
    rules = {name: body(declaration)[1] for name, declaration in found.items()}
    assert set(rules) == {"syncFailed", "syncMissing"}
    failed = rules["syncFailed"]["properties"]["criteria"]["allOf"][0]["query"]
    missing = rules["syncMissing"]["properties"]["criteria"]["allOf"][0]["query"]
    assert f'where message startswith "{FAILURE_PREFIX}"' in failed
    assert f'where message startswith "{SUMMARY_PREFIX}"' in missing and "completed == 0" in missing
    assert rules["syncMissing"]["properties"]["windowSize"] == "PT${syncAlertHours}H"
    assert rules["syncMissing"]["properties"]["autoMitigate"] is True  # resolves once a run completes
    for rule in rules.values():
        properties = rule["properties"]
        assert rule["kind"] == "LogAlert" and properties["enabled"] is True
        assert [ref(scope) for scope in properties["scopes"]] == ["appInsights.id"]
        groups = properties["actions"]["actionGroups"]["operator"]["operands"]
        assert (groups["condition"], [ref(g) for g in groups["true_value"]], groups["false_value"]) == (
            "hasEmail", ["actionGroup.id"], [],
        )


def test_alerts_watch_the_deployed_app_insights_and_email_only_when_asked() -> None:
    template = parse("app/alerts.bicep")
    assert body(template["resources"]["appInsights"])[1] == {"name": "appInsightsName"}
    condition, group = body(template["resources"]["actionGroup"])
    assert condition == "hasEmail" and template["variables"]["hasEmail"]["value"] == not_empty("alertEmail")
    assert [receiver["emailAddress"] for receiver in group["properties"]["emailReceivers"]] == ["alertEmail"]
    condition, alerts = module(main(), "app/alerts.bicep")
    assert condition is None
    wiring = {name: ref(value) for name, value in alerts["params"].items()}
    assert wiring["appInsightsName"] == "monitoring.outputs.appInsightsName"
    assert (wiring["syncAlertHours"], wiring["alertEmail"]) == ("effectiveSyncAlertHours", "alertEmail")
    params = main()["parameters"]
    assert params["alertEmail"]["default"] == "" and params["syncAlertHours"]["default"] == 0
