"""Every operation of the API, called by every kind of caller, answers as the permission table says.

Everything is derived from `app.openapi()`, so routes added later are walked too:
each operation must carry exactly one mark (PUBLIC or an action); PUBLIC ones never
answer 401; the others answer 401 to anonymous callers, 403 to roles the action is
not granted to (`vetting.permissions.allowed`), and neither to roles it is granted
to (404, 422 and the like are fine: the caller got past the permission check).

Calls carry no body. FastAPI runs a route's dependencies (sign-in, then the
permission check) before it raises the validation errors of the body, query and
path, which it only collects until then; only a malformed JSON body is refused
earlier, and none is sent. So a missing body cannot mask a 401 or 403 with a 422,
and granted callers stop at a harmless 422 instead of changing anything. Path ids
are org A's id for organisation ids and ids of nothing for the rest, so body-less
operations (a DELETE, say) find nothing to act on. Tokens are minted for each call
at the user's current token version, so an operation like logout cannot spoil the
calls after it.
"""

from collections.abc import Callable
from datetime import timedelta

import pytest

from service.app import create_app
from service.auth import service as auth_service
from service.auth.models import User
from service.auth.tokens import issue_access_token
from service.deps import ACTION_KEY, PUBLIC_KEY
from service.settings import Settings
from tests.support.service import make_organisation, make_user
from vetting.permissions import Action, allowed

METHODS = {"get", "post", "put", "patch", "delete"}
NOTHING = 999_999
# caller name -> (roles, organisation "A", "B" or None)
CALLERS = {
    "caseworker": ({"caseworker"}, "A"),
    "reviewer": ({"reviewer"}, "A"),
    "org_admin": ({"org_admin"}, "A"),
    "platform_admin": ({"platform_admin"}, None),
    "auditor": ({"auditor"}, None),
    "caseworker of B": ({"caseworker"}, "B"),
}


@pytest.fixture
def callers(db, monkeypatch):
    """Caller name -> user id, and org A's id; nobody signs in, so no real password hash."""
    monkeypatch.setattr(auth_service, "hash_password", lambda password: "not-a-usable-hash")
    organisations = {"A": make_organisation(db, name="A"), "B": make_organisation(db, name="B")}
    users = {
        name: make_user(db, *roles, organisation=organisations.get(org)).user for name, (roles, org) in CALLERS.items()
    }
    db.commit()
    return {name: user.id for name, user in users.items()}, organisations["A"].id


def operations(app) -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, operation)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def concrete_path(path: str, operation: dict, *, organisation_id: int) -> str:
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "path":
            continue
        name = parameter["name"]
        if name == "organisation_id":
            value = organisation_id
        else:
            value = NOTHING if parameter["schema"].get("type") == "integer" else "nothing.example"
        path = path.replace("{" + name + "}", str(value))
    return path


def headers_for(db, settings, user_id: int | None) -> dict[str, str]:
    if user_id is None:
        return {}
    db.expire_all()
    version = db.get(User, user_id).token_version
    db.rollback()
    token, _ = issue_access_token(
        secret=settings.signing_secret(), user_id=user_id, token_version=version, lifetime=timedelta(minutes=5)
    )
    return {"Authorization": f"Bearer {token}"}


def test_every_operation_carries_exactly_one_mark(tmp_path):
    # Building the app touches no database, so this runs once, not per backend.
    app = create_app(
        Settings(environment="development", data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'unused.db'}")
    )
    found = operations(app)
    assert len(found) > 10
    for method, path, operation in found:
        marks = [operation.get(PUBLIC_KEY) is True, ACTION_KEY in operation]
        assert marks.count(True) == 1, f"{method} {path} must be PUBLIC or name one action"
        if ACTION_KEY in operation:
            Action(operation[ACTION_KEY])  # a known action, not a typo


def test_every_operation_answers_every_caller_as_the_permission_table_says(app, client, db, settings, callers):
    user_ids, organisation_id = callers
    violations = []
    for method, path, operation in operations(app):
        url = concrete_path(path, operation, organisation_id=organisation_id)
        action = operation.get(ACTION_KEY)
        for caller, user_id in [("anonymous", None), *user_ids.items()]:
            status = client.request(method, url, headers=headers_for(db, settings, user_id)).status_code
            rule, holds = expectation(action, CALLERS[caller][0] if user_id else None)
            if not holds(status):
                violations.append(f"{method} {path} as {caller}: {status}, but {rule}")
    assert not violations, "\n".join(violations)


def expectation(action: str | None, roles: set[str] | None) -> tuple[str, Callable[[int], bool]]:
    """What a caller with `roles` (None: anonymous) must get from an operation marked `action`."""
    if action is None:
        return "PUBLIC: never 401", lambda status: status != 401
    if roles is None:
        return "not signed in: 401", lambda status: status == 401
    if not allowed(roles, Action(action)):
        return f"{action} not granted: 403", lambda status: status == 403
    return f"{action} granted: neither 401 nor 403", lambda status: status not in (401, 403)
