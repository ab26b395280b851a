"""Reading candidate data is audited: who read which candidate, in the same transaction as the read.

The review queue (`review_queue_viewed`, the candidate ids listed), the candidate view over the
API and the page (`candidate_viewed`) and the case detail with its candidates (`case_viewed`).
Reuses the review tests' world: A submitted the case, B owns the record.
"""

from __future__ import annotations

import pytest

from service.auth.models import User
from tests.support.pages import Person
from tests.support.service import Account

from tests.integration.test_reviews import (  # noqa: F401  (world and as_user are fixtures)
    API,
    LABEL,
    add_candidate,
    as_user,
    audit_mark,
    events_since,
    world,
)

pytestmark = pytest.mark.one_backend


def test_queue_candidate_and_case_reads_say_who_read_which_candidate(client, db, world, as_user):
    candidate = add_candidate(db, world, "main")
    db.commit()
    a1, submitter, case_id = world.users["a1"], world.users["submitter"], world.cases["main"]
    org_a = world.orgs["A"]
    mark = audit_mark(db)

    assert client.get(f"{API}/reviews/queue", headers=as_user("a1")).status_code == 200
    assert client.get(f"{API}/candidates/{candidate}", headers=as_user("a1")).status_code == 200
    assert client.get(f"{API}/cases/{case_id}", headers=as_user("submitter")).status_code == 200
    assert client.get(f"{API}/candidates/{candidate + 999}", headers=as_user("a1")).status_code == 404

    trail = events_since(db, mark)
    assert trail == [
        ("review_queue_viewed", a1, org_a, None, {"candidate_ids": [candidate]}),
        (
            "candidate_viewed",
            a1,
            org_a,
            str(candidate),
            {"candidate_id": candidate, "case_id": case_id, "record_id": world.record_id},
        ),
        ("case_viewed", submitter, org_a, str(case_id), {"case_id": case_id, "candidate_ids": [candidate]}),
    ]  # a refused read changes nothing and writes nothing
    assert LABEL not in repr(trail)


def test_the_candidate_and_queue_pages_are_audited_too(app, db, world):
    candidate = add_candidate(db, world, "main")
    user = db.get(User, world.users["a1"])
    account = Account(user=user, email=user.email)
    db.commit()
    reviewer = Person(app, account)
    mark = audit_mark(db)
    reviewer.get("/reviews")
    reviewer.get(f"/reviews/candidates/{candidate}")
    assert [(action, actor, target) for action, actor, _, target, _ in events_since(db, mark)] == [
        ("review_queue_viewed", user.id, None),
        ("candidate_viewed", user.id, str(candidate)),
    ]
