"""Organisation standing applies at read time everywhere, through one rule.

An organisation is in good standing when it is approved and its vetting has not expired
(`vetting.organisations.in_good_standing`; SQL form `service.organisations.standing`). While
the record's organisation is not, its candidates vanish from the other organisation's
queue, candidate view, photos and case detail, and its gallery is not searched; they are
hidden, not deleted, and come back on reinstatement. Reuses the review tests' world:
A submitted the case, B owns the record.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from service.db import utcnow
from service.organisations.models import Organisation
from service.organisations.standing import in_good_standing as standing_sql
from service.records.gallery import eligible_gallery_embeddings, lock_searchable_records
from tests.integration.test_reviews import (  # noqa: F401  (world and as_user are fixtures)
    API,
    add_candidate,
    as_user,
    queue_ids,
    world,
)
from tests.support.service import make_organisation
from vetting.organisations import in_good_standing

pytestmark = pytest.mark.one_backend


def set_standing(db, organisation_id: int, *, status: str = "approved", expires_in_days: int = 365) -> None:
    organisation = db.get(Organisation, organisation_id)
    organisation.status = status
    organisation.vetting_expires_at = utcnow() + timedelta(days=expires_in_days)
    db.commit()


def what_a_sees(client, world, as_user, candidate: int) -> dict[str, object]:
    headers = as_user("a1")
    case = client.get(f"{API}/cases/{world.cases['main']}", headers=as_user("submitter")).json()
    return {
        "queue": candidate in queue_ids(client, headers),
        "view": client.get(f"{API}/candidates/{candidate}", headers=headers).status_code,
        "record_image": client.get(f"{API}/candidates/{candidate}/record-image", headers=headers).status_code,
        "probe_image": client.get(f"{API}/candidates/{candidate}/probe-image", headers=headers).status_code,
        "case_detail": [c["id"] for c in case["candidates"]] == [candidate],
    }


VISIBLE = {"queue": True, "view": 200, "record_image": 200, "probe_image": 200, "case_detail": True}
HIDDEN = {"queue": False, "view": 404, "record_image": 404, "probe_image": 404, "case_detail": False}


@pytest.mark.parametrize(
    "standing",
    [{"status": "suspended"}, {"status": "revoked"}, {"expires_in_days": -1}],
    ids=["suspended", "revoked", "vetting_expired"],
)
def test_a_record_owner_out_of_standing_hides_its_candidates_until_reinstated(client, db, world, as_user, standing):
    candidate = add_candidate(db, world, "main")
    db.commit()
    assert what_a_sees(client, world, as_user, candidate) == VISIBLE

    set_standing(db, world.orgs["B"], **standing)
    assert what_a_sees(client, world, as_user, candidate) == HIDDEN
    review = client.post(
        f"{API}/candidates/{candidate}/reviews",
        headers=as_user("a1"),
        json={"decision": "confirm", "rationale": "Same ear shape and the same scar."},
    )
    assert review.status_code == 404

    set_standing(db, world.orgs["B"])  # reinstated (or vetted again): nothing was deleted
    assert what_a_sees(client, world, as_user, candidate) == VISIBLE


def test_a_case_organisation_out_of_standing_hides_its_candidates_from_the_record_owner(client, db, world, as_user):
    candidate = add_candidate(db, world, "main")
    db.commit()
    assert candidate in queue_ids(client, as_user("b1"))
    set_standing(db, world.orgs["A"], expires_in_days=-1)
    assert candidate not in queue_ids(client, as_user("b1"))
    assert client.get(f"{API}/candidates/{candidate}/probe-image", headers=as_user("b1")).status_code == 404


def test_the_gallery_leaves_out_records_of_organisations_whose_vetting_expired(app, db, world):
    embedding, record = world.record_embedding_id, world.record_id
    now = utcnow()
    with app.state.session_factory() as session:
        assert eligible_gallery_embeddings(session, [embedding], model_id="dlib_resnet_v1", now=now) == {
            embedding: record
        }
    set_standing(db, world.orgs["B"], expires_in_days=-1)  # still "approved": only the date says no
    with app.state.session_factory() as session:
        assert eligible_gallery_embeddings(session, [embedding], model_id="dlib_resnet_v1", now=now) == {}
        assert lock_searchable_records(session, [record], now=now) == set()


def test_the_sql_standing_rule_agrees_with_the_pure_rule(db):
    now = utcnow()
    cases = [
        ("approved", 1),
        ("approved", -1),
        ("approved", None),
        ("suspended", 1),
        ("revoked", 1),
        ("expired", -1),
        ("applied", None),
        ("rejected", None),
    ]
    ids = {}
    for index, (status, days) in enumerate(cases):
        expires = None if days is None else now + timedelta(days=days)
        ids[make_organisation(db, status=status, name=f"Org {index}", vetting_expires_at=expires).id] = (
            status,
            expires,
        )
    db.commit()
    chosen = set(db.scalars(select(Organisation.id).where(Organisation.id.in_(ids), standing_sql(now))))
    assert chosen == {i for i, (status, expires) in ids.items() if in_good_standing(status, expires, now)}
    assert len(chosen) == 2  # approved in date, and approved with no end date
