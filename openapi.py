"""The OpenAPI document, and validation of request bodies against its schemas."""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema

from errors import InvalidInput

DOCUMENT_FILE = Path(__file__).with_name("openapi.json")

# Practical address syntax (RFC 5321 sizes, dot-atom local part, a dotted domain).
_EMAIL = re.compile(
    r"^(?=.{3,254}$)(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)

_formats = jsonschema.FormatChecker(formats=())


@_formats.checks("email")
def _is_email(value: object) -> bool:
    return not isinstance(value, str) or bool(_EMAIL.match(value))


@functools.cache
def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document, as served at /openapi.json."""
    with DOCUMENT_FILE.open(encoding="utf-8") as source:
        return json.load(source)


@functools.cache
def _validator(schema_name: str) -> jsonschema.protocols.Validator:
    schemas = copy.deepcopy(document()["components"]["schemas"])
    schema = {**schemas[schema_name], "$defs": schemas}
    # Refs inside the components point at #/components/schemas/..., here they live in $defs.
    text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
    return jsonschema.Draft202012Validator(json.loads(text), format_checker=_formats)


def validate(body: Any, schema_name: str) -> dict[str, Any]:
    """The body when it satisfies the named component schema; InvalidInput otherwise."""
    errors = problems(body, schema_name)
    if errors:
        raise InvalidInput(errors)
    return body


def problems(body: Any, schema_name: str) -> list[tuple[str, str]]:
    """Every (field, message) the named component schema finds wrong with the body."""
    errors = sorted(
        {pair for error in _validator(schema_name).iter_errors(body) for pair in _describe(error)},
    )
    errors.extend(_unencodable(body))
    return errors


def _describe(error: jsonschema.ValidationError) -> list[tuple[str, str]]:
    field = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return [((f"{field}.{missing}" if field else missing), "is required")]
    if error.validator == "additionalProperties":
        # One entry per unknown field: each item of `errors` names exactly one field.
        extras = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return [
            (f"{field}.{name}" if field else name, "is not an accepted field") for name in extras
        ]
    messages = {
        "type": lambda: f"must be of type {_types(error.validator_value)}",
        "minLength": lambda: (
            "must not be empty"
            if error.validator_value == 1
            else f"must be at least {error.validator_value} characters"
        ),
        "maxLength": lambda: f"must be at most {error.validator_value} characters",
        "minimum": lambda: f"must be at least {error.validator_value}",
        "maximum": lambda: f"must be at most {error.validator_value}",
        "enum": lambda: "must be one of " + ", ".join(map(str, error.validator_value)),
        "format": lambda: (
            f"must be a valid {error.validator_value} address"
            if error.validator_value == "email"
            else f"must be a valid {error.validator_value}"
        ),
        "minProperties": lambda: "must contain at least one field",
        "pattern": lambda: "has an invalid format",
    }
    message = messages.get(error.validator, lambda: "is invalid")()
    return [(field or "body", message)]


def _types(value: str | list[str]) -> str:
    names = {"integer": "integer", "string": "string", "null": "null", "object": "object"}
    values = value if isinstance(value, list) else [value]
    return " or ".join(names.get(v, v) for v in values)


def _unencodable(value: Any, path: str = "") -> list[tuple[str, str]]:
    # Lone surrogates pass JSON parsing but cannot be stored as UTF-8 BSON.
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return [(path or "body", "must be valid Unicode text")]
        return []
    if isinstance(value, dict):
        return [
            e for k, v in value.items() for e in _unencodable(v, f"{path}.{k}" if path else str(k))
        ]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _unencodable(v, f"{path}.{i}")]
    return []


def documented_routes() -> set[tuple[str, str]]:
    """(METHOD, path template) of every operation in the document."""
    methods = {"get", "post", "put", "patch", "delete"}
    return {
        (method.upper(), path)
        for path, item in document()["paths"].items()
        for method in item
        if method in methods
    }
