"""A bounded, seeded schemathesis fuzz of the whole API, run in-process.

Every operation of the published OpenAPI schema gets a few generated requests (a
fixed seed, derandomized, `EXAMPLES` each), valid ones and invalid ones, as an
organisation user who holds every organisation role and as a platform admin,
against a database with a record, a photo, a case and a candidate in it. No answer
may be a server error, and every answer must match the schema: its status code is
one the operation documents, its content type, headers and body are the documented
ones (errors included: service.problems).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.auth.models import User
from service.auth.tokens import issue_access_token
from service.reviews.models import Candidate
from tests.support.gallery import add_photo, faceless_photo, make_case, make_record
from tests.support.service import make_organisation, make_user

EXAMPLES = 8  # per operation, person and mode: the whole run takes 15 to 30 s
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
SEED = 20261204


@pytest.fixture
def world(app, db) -> tuple[dict[str, int], dict[str, int]]:
    """The people the fuzz acts as (name -> user id) and objects that exist (path parameter -> id)."""
    organisation = make_organisation(db)
    member = make_user(db, "caseworker", "reviewer", "org_admin", organisation=organisation)
    accounts = {"organisation user": member, "platform admin": make_user(db, "platform_admin")}
    other = make_organisation(db, name="Other Hands")
    other_reviewer = make_user(db, "reviewer", organisation=other)
    record = make_record(db, organisation_id=organisation.id, user_id=member.user.id)
    case = make_case(db, organisation_id=other.id, user_id=other_reviewer.user.id)
    photo = faceless_photo(64)
    stored = [
        add_photo(
            db,
            vault=app.state.vault,
            settings=app.state.settings,
            data=photo,
            organisation_id=owner,
            user_id=member.user.id,
            **where,
        )
        for owner, where in ((organisation.id, {"record_id": record.id}), (other.id, {"case_id": case.id}))
    ]
    candidate = Candidate(
        case_id=case.id, record_id=record.id, distance=0.4, rank=1, model_id="dlib", model_version="v-test"
    )
    db.add(candidate)
    db.commit()
    known = dict(
        organisation_id=organisation.id,
        user_id=member.user.id,
        record_id=record.id,
        case_id=case.id,
        candidate_id=candidate.id,
        photo_id=stored[0].id,
    )
    return {name: account.user.id for name, account in accounts.items()}, known


def bearer(app, user_id: int) -> dict[str, str]:
    """A fresh access token at the user's current token version (the fuzz may sign them out)."""
    with app.state.session_factory() as session:
        version = session.get(User, user_id).token_version
    token, _ = issue_access_token(
        secret=app.state.settings.signing_secret(),
        user_id=user_id,
        token_version=version,
        lifetime=timedelta(minutes=5),
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.one_backend
def test_the_api_answers_generated_requests_as_its_schema_says(app, world):
    people, known = world
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    runs = [
        (mode, who, user_id)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for who, user_id in people.items()
    ]  # the organisation user first: the platform admin may suspend it
    for mode, who, user_id in runs:
        for operation in operations:
            if mode is GenerationMode.NEGATIVE and not (operation.path_parameters or operation.query or operation.body):
                continue
            try:
                fuzz(operation, strategy(operation, mode, known), app, user_id)
            except Unsatisfiable:  # nothing in this operation can be made invalid
                continue
            except (Exception, BaseExceptionGroup) as failure:  # every failing operation, not only the first
                failures.append(f"{operation.label} as {who}, {mode.value}: {_summary(failure)}")
    assert not failures, "\n\n".join(failures)


def strategy(operation, mode: GenerationMode, known: dict[str, int]):
    """Generated requests, some of them naming the objects that exist (generated ids rarely do)."""
    generated = operation.as_strategy(generation_mode=mode)
    names = {parameter.name for parameter in operation.path_parameters}
    existing = {name: known[name] for name in names if name in known}
    if not existing or mode is GenerationMode.NEGATIVE:
        return generated
    return generated | operation.as_strategy(generation_mode=mode, path_parameters=existing)


def fuzz(operation, cases, app, user_id: int) -> None:
    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case):
        response = case.call(headers=bearer(app, user_id))
        case.validate_response(response, checks=CHECKS)

    run()


def _summary(failure: BaseException) -> str:
    """The failure's own words without the reproduction and traceback noise."""
    return "\n".join(line for line in str(failure).splitlines() if line.strip())[:1500]


@pytest.mark.one_backend
def test_every_error_answer_is_documented_as_the_problem_the_app_sends(client, app):
    published = app.openapi()
    assert "HTTPValidationError" not in str(published)  # FastAPI's list shape is never sent
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, methods in published["paths"].items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["content"] == {"application/json": {"schema": problem}}, (method, path, status)
            if operation.get("parameters") or operation.get("requestBody"):
                assert "422" in operation["responses"], (method, path)
    sent = client.get("/api/v1/records", params={"limit": "many"}).json()  # unauthenticated: 401 first
    assert set(sent) == {"detail"}
    invalid = client.post("/api/v1/auth/refresh", json={}).json()
    assert isinstance(invalid["detail"], str) and invalid["errors"] == [
        {"field": "refresh_token", "problem": "Field required"}
    ]
    assert set(published["components"]["schemas"]["Problem"]["properties"]) >= set(invalid)
