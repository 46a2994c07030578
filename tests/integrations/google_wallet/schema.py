"""Google's published walletobjects v1 schemas as JSON Schema, strict enough to catch typos.

The discovery document shipped with google-api-python-client is the source. Its schemas name
no required fields and allow any extra property, so every object schema that lists properties
gets ``additionalProperties: false`` (a misspelt or invented field fails), and properties Google
marks deprecated are refused too (new code should not start using them).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
from googleapiclient.discovery_cache import get_static_doc


@cache
def discovery_document() -> dict[str, Any]:
    document = get_static_doc("walletobjects", "v1")
    assert document is not None, "google-api-python-client ships no walletobjects v1 document"
    parsed: dict[str, Any] = json.loads(document)
    return parsed


def _convert(node: dict[str, Any]) -> dict[str, Any]:
    """One discovery schema node as JSON Schema (draft 2020-12, references into ``$defs``)."""
    if "$ref" in node:
        return {"$ref": f"#/$defs/{node['$ref']}"}
    converted: dict[str, Any] = {}
    if "type" in node and node["type"] != "any":
        converted["type"] = node["type"]
    if "enum" in node:
        converted["enum"] = node["enum"]
    if "items" in node:
        converted["items"] = _convert(node["items"])
    if "properties" in node:
        converted["properties"] = {
            name: False if prop.get("deprecated") else _convert(prop)
            for name, prop in node["properties"].items()
        }
        converted["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        converted["additionalProperties"] = _convert(node["additionalProperties"])
    return converted


@cache
def _definitions() -> dict[str, Any]:
    definitions = {key: _convert(value) for key, value in discovery_document()["schemas"].items()}
    jsonschema.Draft202012Validator.check_schema({"$defs": definitions})
    return definitions


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    definitions = _definitions()
    assert name in definitions, f"walletobjects v1 has no schema {name}"
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": definitions})


def validate(name: str, instance: object) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` fits Google's schema ``name``."""
    _validator(name).validate(instance)


def request_schema(method: str, path: str) -> str | None:
    """The schema a walletobjects request body must fit, from the discovery document's methods
    (``POST loyaltyObject/{id}/addMessage`` -> ``AddMessageRequest``); None if it has no body."""
    resource_path = path.split("?", 1)[0].strip("/")
    for resource in discovery_document()["resources"].values():
        for spec in resource.get("methods", {}).values():
            if spec["httpMethod"] == method and _path_matches(spec["path"], resource_path):
                request = spec.get("request")
                return request["$ref"] if request else None
    raise AssertionError(f"walletobjects v1 has no method {method} {path}")


def _path_matches(template: str, path: str) -> bool:
    expected = template.removeprefix("walletobjects/v1/").split("/")
    actual = path.split("/")
    return len(expected) == len(actual) and all(
        want == got or (want.startswith("{") and want.endswith("}"))
        for want, got in zip(expected, actual, strict=True)
    )
