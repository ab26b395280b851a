"""The one shape of every error answer, and its place in the published OpenAPI schema.

Every refusal is JSON `{"detail": sentence}`; some add `rule` (the code of the
rule that refused, such as `law_enforcement_type`: service.refusal's one handler
writes both from a `Refusal` or a vetting `PolicyRefused`) and a request whose fields are
missing or invalid adds `errors`, one `{field, problem}` per field (see
`create_app`'s validation handler). `document_errors` rewrites the schema FastAPI
generates so that it says exactly this for every route: the 422 it documents is
this shape (not FastAPI's `HTTPValidationError` list, which is never sent), every
error status a route declares uses it, and the refusals every route can give are
listed (401 and 403 where sign-in is needed, 404 where a path names an object,
400 where there is a body to read, 422 where the request has fields).
"""

from __future__ import annotations

from typing import Any

# What a route declares in `responses=`: status -> OpenAPI response object (FastAPI's own type).
Responses = dict[int | str, dict[str, Any]]

PROBLEM = "Problem"
PROBLEM_REF = {"$ref": f"#/components/schemas/{PROBLEM}"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": PROBLEM,
    "type": "object",
    "description": "An error answer: a sentence a person can act on.",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, in a sentence."},
        "rule": {"type": "string", "description": "The code of the rule that refused the request, if one did."},
        "errors": {
            "type": "array",
            "description": "For a 422 on the request's fields: each field at fault and why.",
            "items": {
                "type": "object",
                "required": ["field", "problem"],
                "properties": {
                    "field": {"type": "string", "description": "The field (dotted path); empty for the whole body."},
                    "problem": {"type": "string"},
                },
            },
        },
    },
}
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
COMMON_REFUSALS = {
    "400": "The body could not be read (not JSON, or not the form it should be).",
    "401": "Sign-in is required, or the sign-in has ended.",
    "403": "Your role, or your organisation's standing, does not allow this.",
    "404": "Not found, or not yours to see.",
    "422": "Some fields are missing or invalid (the `errors` list says which), or a rule refused the request.",
}


def document_errors(schema: dict[str, Any], *, authenticated_mark: str) -> dict[str, Any]:
    """Make every operation's error responses the Problem shape; operations with `authenticated_mark` need sign-in."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in FASTAPI_VALIDATION_SCHEMAS:
        components.pop(name, None)
    components[PROBLEM] = PROBLEM_SCHEMA
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status in _refusals(operation, authenticated=authenticated_mark in operation):
                responses.setdefault(status, {"description": COMMON_REFUSALS[status]})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {"application/json": {"schema": PROBLEM_REF}}
    return schema


def _refusals(operation: dict[str, Any], *, authenticated: bool) -> list[str]:
    statuses = []
    if authenticated:
        statuses += ["401", "403"]
    if any(parameter.get("in") == "path" for parameter in operation.get("parameters", [])):
        statuses.append("404")
    if operation.get("requestBody"):
        statuses.append("400")
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.append("422")
    return statuses
