"""Validate Kubernetes manifests against a CRD's schema the way the API server does.

A CRD's ``openAPIV3Schema`` is a *structural* schema: an object accepts only
the fields it lists unless it says ``x-kubernetes-preserve-unknown-fields``
or gives ``additionalProperties`` (a map), and ``kubectl apply`` (strict field
validation) refuses the unknown ones. Plain JSON Schema accepts any extra
field, so a validator fed the CRD as it is would pass a misspelt ``protocolVersions``
or an ``args`` list placed one level too deep. ``to_json_schema`` therefore
rewrites the schema: ``additionalProperties: false`` on every closed object,
``x-kubernetes-int-or-string`` as integer-or-string, ``x-kubernetes-list-type:
set`` as unique items and ``map`` as unique keys, int32/int64 ranges, and
the object's ``metadata`` as ObjectMeta (the CRD only says ``type: object``
there; the API server checks it as ObjectMeta). YAML is read with duplicate
keys refused, as the API server's strict decoding does. CEL rules
(``x-kubernetes-validations``) are not evaluated; KServe's CRDs have none.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import FormatChecker, ValidationError, validators

#: Keys of an OpenAPI schema node that JSON Schema understands as they are.
_PLAIN_KEYS = {
    "type",
    "format",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "multipleOf",
}
#: Keys that document rather than constrain.
_IGNORED_KEYS = {"description", "default", "example", "title"}

_LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

#: What the API server accepts in ``metadata`` (the fields a manifest may set).
OBJECT_META: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": _DNS_SUBDOMAIN, "maxLength": 253},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "pattern": _DNS_SUBDOMAIN, "maxLength": 63},
        "labels": {
            "type": "object",
            "additionalProperties": {"type": "string", "pattern": _LABEL_VALUE, "maxLength": 63},
        },
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
    },
}


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping with the same key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a manifest, duplicate keys refused."""
    return [doc for doc in yaml.load_all(path.read_text(), Loader=_StrictLoader) if doc]


def load_trusted(path: Path) -> list[dict[str, Any]]:
    """Large trusted YAML (KServe's CRDs) with libyaml's fast loader where available."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(path.read_text(), Loader=loader) if doc]


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """One structural-schema node (and its children) as closed JSON Schema."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _PLAIN_KEYS:
            out[key] = value
        elif key == "properties":
            out[key] = {name: to_json_schema(child) for name, child in value.items()}
        elif key in ("items", "not"):
            out[key] = to_json_schema(value)
        elif key == "additionalProperties":
            out[key] = to_json_schema(value) if isinstance(value, dict) else value
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(child) for child in value]
        elif key not in _IGNORED_KEYS and key != "nullable" and not key.startswith("x-kubernetes-"):
            raise ValueError(f"unhandled schema keyword {key!r}")
    if node.get("x-kubernetes-int-or-string"):
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "set":
        out["uniqueItems"] = True
    elif list_type == "map":
        fields = node.get("items", {}).get("properties", {})
        out["listMapKeys"] = {
            key: fields.get(key, {}).get("default") for key in node["x-kubernetes-list-map-keys"]
        }
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    closed = not node.get("x-kubernetes-preserve-unknown-fields")
    if node.get("type") == "object" and closed and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


def _list_map_keys(
    validator: Any, keys: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """``x-kubernetes-list-type: map``: no two items share their key fields (after defaults)."""
    if not validator.is_type(instance, "array"):
        return
    seen: list[dict[str, Any]] = []
    for item in instance:
        if not isinstance(item, dict):
            continue
        key = {name: item.get(name, default) for name, default in keys.items()}
        if key in seen:
            yield ValidationError(f"two entries with the same key {key}")
        seen.append(key)


_FORMATS = FormatChecker()


@_FORMATS.checks("int32")
def _int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@_FORMATS.checks("int64")
def _int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


_Validator = validators.extend(jsonschema.Draft202012Validator, {"listMapKeys": _list_map_keys})


class CrdSchemas:
    """The served versions of some CRDs: ``errors(obj)`` lists what the API server would refuse."""

    def __init__(self, crd_paths: list[Path]) -> None:
        self.validators: dict[tuple[str, str], Any] = {}
        for path in crd_paths:
            for crd in load_trusted(path):
                self._add(crd)

    def _add(self, crd: dict[str, Any]) -> None:
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = to_json_schema(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = OBJECT_META
            schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
            api_version = f"{spec['group']}/{version['name']}"
            self.validators[(api_version, spec["names"]["kind"])] = _Validator(
                schema, format_checker=_FORMATS
            )

    def errors(self, obj: dict[str, Any]) -> list[str]:
        """Every violation as ``/json/pointer: message``; empty when the object is valid."""
        key = (obj.get("apiVersion"), obj.get("kind"))
        validator = self.validators.get(key)  # type: ignore[arg-type]
        if validator is None:
            return [f"no CRD serves apiVersion={key[0]} kind={key[1]}"]
        found = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        return [
            "/" + "/".join(str(p) for p in error.absolute_path) + f": {error.message}"
            for error in found
        ]
