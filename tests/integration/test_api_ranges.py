"""Integers beyond the database's id columns are refused (422 with a sentence), never a 500.

Every integer that reaches the database (path ids, ids in filters, offsets and
cursors) is one of `service.deps.DbId` / `DbOffset`. The tests find the
parameters from the published OpenAPI schema and the web routes, so a new route
that forgets the type is caught here.
"""

from __future__ import annotations

import re

import pytest

from service.app import api_routes
from service.deps import DB_INT_MAX
from tests.support.service import make_organisation, make_user, sign_in
from vetting.permissions import allowed

# One past PostgreSQL's INTEGER (its driver failed there), and one past SQLite's 64 bits (its driver failed).
TOO_BIG = (DB_INT_MAX + 1, 2**63)


def integer_parameters(operation: dict) -> list[dict]:
    return [parameter for parameter in operation.get("parameters", []) if _is_integer(parameter["schema"])]


def _is_integer(schema: dict) -> bool:
    return schema.get("type") == "integer" or any(option.get("type") == "integer" for option in schema.get("anyOf", []))


def _bounds(schema: dict) -> tuple:
    integer = (
        schema
        if schema.get("type") == "integer"
        else next(option for option in schema["anyOf"] if option.get("type") == "integer")
    )
    return integer.get("minimum"), integer.get("maximum")


def operations(app):
    for path, methods in app.openapi()["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def _bounded(schema: dict) -> bool:
    low, high = _bounds(schema)
    return low is not None and high is not None and high <= DB_INT_MAX


def body_integers(schema: dict, components: dict, seen: set[str]) -> list[tuple[str, dict]]:
    """(field, schema) of every integer field in a request body, through references, arrays and unions."""
    found = []
    for option in [schema, *schema.get("anyOf", []), *schema.get("allOf", [])]:
        if "$ref" in option and option["$ref"] not in seen:
            seen.add(option["$ref"])
            found += body_integers(components[option["$ref"].split("/")[-1]], components, seen)
        for name, field in option.get("properties", {}).items():
            if _is_integer(field):
                found.append((name, field))
            found += body_integers(field, components, seen)
        if option.get("type") == "array":
            found += body_integers(option.get("items", {}), components, seen)
    return found


@pytest.mark.one_backend
def test_every_integer_parameter_and_body_field_declares_the_databases_range(app):
    unbounded = [
        (method, path, parameter["name"])
        for path, method, operation in operations(app)
        for parameter in integer_parameters(operation)
        if not _bounded(parameter["schema"])
    ]
    assert unbounded == []
    components = app.openapi()["components"]["schemas"]
    fields = [
        (method, path, name, field)
        for path, method, operation in operations(app)
        for content in operation.get("requestBody", {}).get("content", {}).values()
        for name, field in body_integers(content["schema"], components, set())
    ]
    assert [(method, path, name) for method, path, name, field in fields if not _bounded(field)] == []
    assert any(name == "age_years" for _, _, name, _ in fields)  # the walk does reach body fields


@pytest.fixture
def accounts(db):
    organisation = make_organisation(db)
    people = [
        make_user(db, "caseworker", "reviewer", "org_admin", organisation=organisation),
        make_user(db, "platform_admin"),
        make_user(db, "auditor"),
    ]
    db.commit()
    return people


@pytest.mark.parametrize("too_big", TOO_BIG)
def test_an_integer_beyond_the_id_columns_is_refused_with_a_sentence_on_every_route(client, accounts, too_big):
    headers = {account.email: sign_in(client, account) for account in accounts}
    checked = []
    for path, method, operation in operations(client.app):
        action = operation.get("x-reunite-action")
        account = next((a for a in accounts if action and allowed(a.user.roles, action)), accounts[0])
        for parameter in integer_parameters(operation):
            values = {p["name"]: 1 for p in integer_parameters(operation) if p["in"] == "path"}
            values[parameter["name"]] = too_big
            url = re.sub(r"{(\w+)}", lambda match, values=values: str(values.get(match.group(1), 1)), path)
            query = {parameter["name"]: too_big} if parameter["in"] == "query" else None
            response = client.request(method.upper(), url, params=query, headers=headers[account.email])
            assert response.status_code == 422, (method, url, query, response.status_code, response.text)
            body = response.json()
            assert isinstance(body["detail"], str) and parameter["name"] in body["detail"], body
            checked.append((method, path, parameter["name"]))
    assert len(checked) >= 25  # every id route of the API, not a handful


@pytest.mark.parametrize("too_big", TOO_BIG)
def test_web_pages_with_an_id_beyond_the_id_columns_answer_without_a_server_error(client, accounts, too_big):
    from tests.support.pages import Person

    person = Person(client.app, accounts[0])
    form = {"csrf_token": person.token("/")}
    pages = [
        route for route in api_routes(client.app.routes) if not route.path.startswith("/api/") and "_id}" in route.path
    ]
    assert len(pages) >= 10
    for route in pages:
        url = re.sub(r"{\w+_id}", str(too_big), route.path).replace("{side}", "probe")
        for method in route.methods:
            response = person.http.request(method, url, data=form if method == "POST" else None)
            assert response.status_code < 500, (method, url, response.status_code)
    auditor = Person(client.app, accounts[2])
    for query in (f"actor={too_big}", f"organisation={too_big}", f"after_seq={too_big}"):
        assert auditor.http.get(f"/audit?{query}").status_code < 500, query
