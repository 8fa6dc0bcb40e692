"""Type check of Bicep resource bodies against Azure's published resource types, offline.

No Bicep compiler can be installed on the CI machines. This does the part of the compiler's type
check that decides whether ``azd up`` gets past template validation: for every ``resource`` it looks
up ``Type@apiVersion`` in the type definitions the compiler itself uses (``tests/azure_types/``, from
Azure/bicep-types-az) and walks the literal objects of the body. It reports

* a resource type or API version that is not defined,
* a key that is not a property of its object type (the compiler's BCP037; for the few top-level
  properties the compiler adds to every body as a fallback, such as ``location``, only BCP187),
* a read-only property that is set (BCP073), including every property of an ``existing`` resource
  other than ``name``/``scope``/``parent``/``dependsOn`` (the compiler makes those read-only).

The compiler itself only warns about some of these: an undefined type or API version (BCP081; ARM
then rejects an API version that does not exist), and unknown or read-only properties below the
body's top-level objects (``properties``, ``sku``...), to allow for inaccurate type definitions. All
of them fail here: a resource provider typically ignores a property it does not know, so a
misspelled setting deploys fine and silently does not apply. A real gap in a type definition is
accepted explicitly in ``tests/test_bicep_types.py`` (``ACCEPTED``); a missing API version is added
to ``tests/azure_types/``.

How a body is walked: expressions are not evaluated and scalar values are not type-checked; only
object literals, array literals and the body of a ``for`` expression are descended into. A key with
``${...}`` is checked against the object's ``additionalProperties``. A discriminated object is
checked against the element its literal discriminator value selects (base properties plus every
element when the value is an expression or absent). For a union with several object (or array)
members the member with the fewest problems wins. Required properties are not checked: the compiler
itself only warns about them for Azure resource types, whose definitions are not always accurate.

pycep shapes this relies on (more in ``tests/test_infra.py``): a quoted object key keeps its quotes
(``"'azd-service-name'"``); an identifier is a ``pycep.models.BicepElement`` while a string literal is
a plain ``str``; expressions are one-key dicts ``{"operator" | "function": {"type": ..., ...}}``; a
``for`` is ``{"loop_type", "condition", "config"}``. pycep flattens a nested child resource into
``<parent>__<child>`` and keeps only the last one of each body, so nested resource declarations are
reported (declare them at top level with ``parent:``), not checked.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pycep import BicepParser
from pycep.models import BicepElement

TYPES_DIR = Path(__file__).resolve().parent / "azure_types"

# bicep-types property flags: 1 required, 2 read-only, 4 write-only, 8 deploy-time constant, 16 identifier.
# ``name`` is required + deploy-time constant (9); ``id``, ``type``, ``apiVersion`` are read-only (10).
READ_ONLY = 2

# Added by the compiler to every resource body (``parent`` only to child types); not in the type files.
# ``asserts`` is the experimental resource-assertions block.
RESOURCE_KEYWORDS = frozenset({"scope", "dependsOn", "asserts"})
# What an ``existing`` resource may set; the compiler makes every other property read-only.
EXISTING_SETTABLE = frozenset({"name", "scope", "parent", "dependsOn"})
# Top-level properties the compiler accepts on any body that does not define them, with warning BCP187
# (AzResourceTypeProvider.KnownTopLevelResourceProperties). Reported here all the same: the resource
# provider then ignores or rejects them.
FALLBACK_PROPERTIES = frozenset(
    {
        "location", "tags", "properties", "sku", "kind", "managedBy", "managedByExtended",
        "extendedLocation", "zones", "plan", "eTag", "scale", "identity",
    }
)  # fmt: skip

INTERPOLATION = re.compile(r"(?<!\\)\$\{")
DECLARATION = re.compile(r"^[ \t]*resource[ \t]+([A-Za-z_]\w*)[ \t]+'", re.MULTILINE)

Json = dict[str, Any]


@dataclass(frozen=True)
class Problem:
    file: str
    resource: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.resource}: {self.path}: {self.message}"


@dataclass(frozen=True)
class Declaration:
    """One ``resource`` of a template as pycep sees it."""

    name: str
    type: str
    api_version: str
    existing: bool
    body: Any

    @property
    def label(self) -> str:
        return f"{self.type}@{self.api_version}"


# ------------------------------------------------------------------------------------------------
# Type files
# ------------------------------------------------------------------------------------------------


class TypeFile:
    """The types of one bicep-types file; ``$ref`` indexes are local to the file."""

    def __init__(self, name: str, types: list[Json]) -> None:
        self.name = name
        self.types = types
        self.resources = {t["name"].casefold(): t for t in types if t["$type"] == "ResourceType"}

    def get(self, ref: Json) -> Json:
        target: str = ref["$ref"]
        if not target.startswith("#/"):
            raise ValueError(f"{self.name}: reference {target} to another file is not supported")
        return self.types[int(target[2:])]


@functools.cache
def type_file_names() -> tuple[str, ...]:
    return tuple(sorted(path.name for path in TYPES_DIR.glob("*.types.json")))


@functools.cache
def load(file_name: str) -> TypeFile:
    """One type file (cached: the network file alone is 1.1 MB, loaded only if a template uses it)."""
    return TypeFile(file_name, json.loads((TYPES_DIR / file_name).read_text(encoding="utf-8")))


def files_of(namespace: str, api_version: str | None = None) -> list[str]:
    """Type files of a provider namespace (and API version): ``<namespace>@<apiVersion>.<folder>.types.json``."""
    prefix = f"{namespace}@{api_version}." if api_version else f"{namespace}@"
    return [name for name in type_file_names() if name.casefold().startswith(prefix.casefold())]


def find_resource_type(type_name: str, api_version: str) -> tuple[TypeFile, Json] | None:
    """The ``ResourceType`` of ``Type@apiVersion`` (case-insensitive, as in Bicep), or None."""
    wanted = f"{type_name}@{api_version}".casefold()
    for file_name in files_of(type_name.split("/", 1)[0], api_version):
        types = load(file_name)
        if wanted in types.resources:
            return types, types.resources[wanted]
    return None


def known_versions(type_name: str) -> list[str]:
    """API versions of a resource type that some file here defines (loads the provider's files)."""
    versions = set()
    for file_name in files_of(type_name.split("/", 1)[0]):
        for name in load(file_name).resources:
            found_type, _, version = name.partition("@")
            if found_type == type_name.casefold():
                versions.add(version)
    return sorted(versions)


# ------------------------------------------------------------------------------------------------
# pycep values
# ------------------------------------------------------------------------------------------------


def is_expression(value: Any) -> bool:
    """A pycep operator or function call (a literal object never has this exact shape in practice)."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((key, inner),) = value.items()
    return (
        key in {"operator", "function"}
        and isinstance(inner, dict)
        and isinstance(inner.get("type"), str)
        and ("operands" in inner or "parameters" in inner)
    )


def is_loop(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"loop_type", "condition", "config"}


def is_object_literal(value: Any) -> bool:
    return isinstance(value, dict) and not is_expression(value) and not is_loop(value)


def literal_string(value: Any) -> str | None:
    """The text of a string literal without interpolation; None for identifiers and expressions."""
    if isinstance(value, str) and not isinstance(value, BicepElement) and not INTERPOLATION.search(value):
        return value
    return None


def parse_key(raw: str) -> tuple[str, bool]:
    """(key, interpolated) of an object key as pycep returns it (quoted keys keep their quotes)."""
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        inner = raw[1:-1]
        return inner.replace("\\'", "'").replace("\\\\", "\\"), bool(INTERPOLATION.search(inner))
    return raw, False


def join(path: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_]\w*", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def did_you_mean(key: str, candidates: Iterable[str]) -> str:
    names = list(candidates)
    same_case = [name for name in names if name.casefold() == key.casefold()]
    close = same_case or difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# ------------------------------------------------------------------------------------------------
# Walking a body
# ------------------------------------------------------------------------------------------------


class Walker:
    """Walks literal values against the types of one file, collecting (path, message) pairs."""

    def __init__(self, types: TypeFile, label: str) -> None:
        self.types = types
        self.label = label  # Type@apiVersion, for messages
        self.problems: list[tuple[str, str]] = []

    def value(self, value: Any, type_ref: Json, path: str) -> None:
        node = self.types.get(type_ref)
        if isinstance(value, list) or is_loop(value):
            items = list(enumerate(value)) if isinstance(value, list) else [("for", value["config"])]

            def walk_items(array: Json) -> None:
                for index, item in items:
                    self.value(item, array["itemType"], f"{path}[{index}]")

            self.best(self.members(node, {"ArrayType"}), walk_items)
        elif is_object_literal(value):
            objects = self.members(node, {"ObjectType", "DiscriminatedObjectType"})
            self.best(objects, lambda obj: self.object(value, obj, path))
        # Anything else is a scalar or an expression: not evaluated.

    def members(self, node: Json, kinds: set[str]) -> list[Json]:
        """The node itself, or the members of a union, that are of one of ``kinds``."""
        if node["$type"] == "UnionType":
            return [m for element in node["elements"] for m in self.members(self.types.get(element), kinds)]
        return [node] if node["$type"] in kinds else []

    def best(self, candidates: list[Json], walk: Callable[[Json], None]) -> None:
        """Walk with the only candidate, or keep the problems of the candidate with the fewest."""
        if len(candidates) == 1:
            walk(candidates[0])
            return
        results: list[list[tuple[str, str]]] = []
        for candidate in candidates:
            outer, self.problems = self.problems, []
            try:
                walk(candidate)
                results.append(self.problems)
            finally:
                self.problems = outer
        if results:
            fewest = min(results, key=len)
            self.problems.extend(fewest)

    def shape(self, value: Json, node: Json, path: str) -> tuple[dict[str, Json], Json | None, str]:
        """(properties, additionalProperties, owner name) of an object or of the selected element."""
        if node["$type"] == "ObjectType":
            return node["properties"], node.get("additionalProperties"), self.owner(node)
        discriminator = node["discriminator"]
        elements = {key: self.types.get(ref) for key, ref in node["elements"].items()}
        given = {parse_key(raw)[0]: item for raw, item in value.items()}
        selected = literal_string(given.get(discriminator))
        if selected is not None and selected in elements:
            element = elements[selected]
            properties = {**node["baseProperties"], **element["properties"]}
            return properties, element.get("additionalProperties"), f"{self.owner(element)} ({discriminator} '{selected}')"
        if selected is not None:
            message = f"'{selected}' selects no variant of {self.owner(node)} (one of: {', '.join(elements)})"
            self.problems.append((join(path, discriminator), message))
        # Expression, absent or unknown discriminator: any variant's properties are accepted.
        properties = dict(node["baseProperties"])
        additional = None
        for element in elements.values():
            for name, prop in element["properties"].items():
                properties.setdefault(name, prop)
            additional = additional or element.get("additionalProperties")
        return properties, additional, self.owner(node)

    def owner(self, node: Json) -> str:
        name: str = node["name"]
        return self.label if name.casefold() == self.label.split("@")[0].casefold() else f"{name} in {self.label}"

    def object(self, value: Json, node: Json, path: str, keywords: frozenset[str] = frozenset()) -> None:
        properties, additional, owner = self.shape(value, node, path)
        for raw, item in value.items():
            key, interpolated = parse_key(raw)
            where = join(path, key)
            if key in keywords and not interpolated:
                continue
            if interpolated:
                if additional is None:
                    self.problems.append((where, f"interpolated key, but {owner} has no additional properties"))
                else:
                    self.value(item, additional, where)
                continue
            prop = properties.get(key)
            if prop is None:
                if additional is not None:
                    self.value(item, additional, where)
                    continue
                settable = [name for name, known in properties.items() if not known["flags"] & READ_ONLY]
                hint = did_you_mean(key, [*settable, *keywords])
                fallback = " (the compiler only warns: BCP187)" if not path and key in FALLBACK_PROPERTIES else ""
                self.problems.append((where, f"not a property of {owner}{hint}{fallback}"))
            elif prop["flags"] & READ_ONLY:
                self.problems.append((where, f"read-only property of {owner} (set by Azure, BCP073)"))
            else:
                self.value(item, prop["type"], where)

    def existing(self, value: Json, node: Json) -> None:
        """An ``existing`` resource: only name, scope, parent and dependsOn can be set."""
        properties, _, owner = self.shape(value, node, "")
        settable = ", ".join(sorted(EXISTING_SETTABLE))
        for raw in value:
            key, _ = parse_key(raw)
            if key in EXISTING_SETTABLE:
                continue
            if key in properties:
                self.problems.append((key, f"cannot be set on an existing resource (only {settable})"))
            else:
                self.problems.append((key, f"not a property of {owner}{did_you_mean(key, EXISTING_SETTABLE)}"))


# ------------------------------------------------------------------------------------------------
# Templates
# ------------------------------------------------------------------------------------------------


@functools.cache
def parser() -> BicepParser:
    return BicepParser()


def declarations(text: str) -> tuple[list[Declaration], list[str]]:
    """(top-level resources, names of nested resource declarations pycep cannot be trusted with)."""
    template = cast(Json, parser().parse(text=text))
    parsed: dict[str, Json] = template.get("resources", {})
    declared = DECLARATION.findall(text)
    found = []
    for name, declaration in parsed.items():
        if name not in declared:
            continue  # pycep's flattened copy of a nested resource (<parent>__<child>)
        config = declaration["config"]
        if is_loop(config) or set(config) == {"condition", "config"}:
            config = config["config"]  # `for` body, or body of `= if (condition) {...}`
        found.append(Declaration(name, declaration["type"], declaration["api_version"], declaration["existing"], config))
    nested = [name for name in declared if name not in parsed]
    return found, nested


def check_declaration(file: str, declaration: Declaration) -> list[Problem]:
    def problem(path: str, message: str) -> Problem:
        return Problem(file, declaration.name, path, message)

    found = find_resource_type(declaration.type, declaration.api_version)
    if found is None:
        versions = known_versions(declaration.type)
        known = f"known versions of this type here: {', '.join(versions)}" if versions else "no version of this type here"
        return [problem(declaration.label, f"type or API version not defined ({known}; tests/azure_types/README.md)")]
    types, resource_type = found
    if declaration.existing and resource_type.get("readableScopes") == 0:
        return [problem(declaration.label, "cannot be referenced with `existing` (write-only resource type)")]
    if not declaration.existing and resource_type.get("writableScopes") == 0:
        return [problem(declaration.label, "read-only resource type: can only be referenced with `existing`")]
    if not is_object_literal(declaration.body):
        return [problem(declaration.label, "resource body is not an object literal (not checked)")]
    walker = Walker(types, declaration.label)
    body = types.get(resource_type["body"])
    if declaration.existing:
        walker.existing(declaration.body, body)
    else:
        keywords = RESOURCE_KEYWORDS | ({"parent"} if declaration.type.count("/") >= 2 else set())
        walker.object(declaration.body, body, "", keywords)
    return [problem(path, message) for path, message in walker.problems]


def check_template(file: str, text: str) -> list[Problem]:
    """Every problem of the resources of one template (``file`` names it in the messages)."""
    resources, nested = declarations(text)
    problems = [
        Problem(file, name, "(declaration)", "nested resource declaration: pycep cannot parse these reliably "
                "(it keeps one per body), so it is not checked; declare it at top level with `parent:`")
        for name in nested
    ]  # fmt: skip
    for declaration in resources:
        problems.extend(check_declaration(file, declaration))
    return problems
