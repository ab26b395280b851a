"""Every search the worker runs is in the audit trail (EU AI Act Art. 12 record-keeping).

A case search writes `search_started` (the input: case, photo and probe face ids, the model)
and `search_finished` (the gallery searched: its size and index sequence; the candidates
produced; outcome `superseded` when the case stopped being searched while the search ran);
two-way matching of a new record photo writes `two_way_search_finished` (its start time, the
photo, the open case faces compared, the candidates). Ids, counts and model names only: never
a vector, a label or a name.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from service.audit.models import AuditEvent
from service.cases.models import Case
from service.photos.models import Embedding, IndexChange, Photo
from service.reviews.models import Candidate
from tests.integration.test_worker import world  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.faces, pytest.mark.one_backend]


def events(db, action: str) -> list[tuple[str | None, int | None, dict]]:
    db.expire_all()
    rows = db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)).all()
    found = [(row.target_id, row.organisation_id, json.loads(row.details)) for row in rows]
    db.rollback()
    return found


def test_case_searches_and_two_way_matches_are_audited_with_gallery_input_and_output(world, sdist_images):
    db, organisation = world.db, world.organisation.id
    first = world.enrol((sdist_images / "obama.jpg").read_bytes())
    [(target, org, alone)] = events(db, "two_way_search_finished")
    assert (target, org, alone["photo_id"], alone["open_case_faces"], alone["candidate_ids"]) == (
        str(first.record_id),
        organisation,
        first.id,
        0,
        [],
    )

    case = world.case((sdist_images / "obama2.jpg").read_bytes())
    assert world.pipeline.process_case(case.id) == "searched"
    probe_ids = db.scalars(
        select(Embedding.id)
        .join(Photo, Photo.id == Embedding.photo_id)
        .where(Photo.case_id == case.id)
        .order_by(Embedding.face_index)
    ).all()
    candidate_ids = db.scalars(select(Candidate.id).where(Candidate.case_id == case.id)).all()
    sequence = db.scalar(select(func.max(IndexChange.seq)))
    db.rollback()
    assert len(candidate_ids) == 1
    [(target, org, started)] = events(db, "search_started")
    [(_, _, finished)] = events(db, "search_finished")
    assert (target, org, started["case_id"], started["search_mode"]) == (
        str(case.id),
        organisation,
        case.id,
        "alerting",
    )
    assert started["probe_embedding_ids"] == finished["probe_embedding_ids"] and started["model_id"]
    assert started["probe_embedding_ids"] == probe_ids
    assert (finished["gallery_size"], finished["gallery_sequence"], finished["outcome"], finished["candidate_ids"]) == (
        1,
        sequence,
        "searched",
        candidate_ids,
    )

    # Two-way: a new record photo is compared with the open case's face and proposed to it.
    second = world.enrol((sdist_images / "obama.jpg").read_bytes())
    [_, (target, _, matched)] = events(db, "two_way_search_finished")
    new = db.scalars(select(Candidate.id).where(Candidate.record_id == second.record_id)).all()
    db.rollback()
    assert (target, matched["open_case_faces"], matched["candidate_ids"]) == (str(second.record_id), 1, new)
    assert len(new) == 1 and matched["started_at"] and matched["embedding_id"]
    allowed = {
        "case_id",
        "photo_id",
        "probe_embedding_ids",
        "model_id",
        "model_version",
        "search_mode",
        "candidate_limit",
        "gallery_size",
        "gallery_sequence",
        "outcome",
        "candidate_ids",
        "record_id",
        "embedding_id",
        "started_at",
        "open_case_faces",
    }
    assert set(started) | set(finished) | set(matched) <= allowed  # ids, counts and the model: nothing else


def test_a_search_overtaken_while_it_ran_still_ends_in_the_trail(world, sdist_images, monkeypatch):
    world.enrol((sdist_images / "obama.jpg").read_bytes())
    case = world.case((sdist_images / "obama2.jpg").read_bytes())
    search_index = world.pipeline._search_index

    def overtaken(probes, choice):
        found = search_index(probes, choice)
        # Meanwhile the reaper gave up on the case (any change of state away from processing does).
        world.db.get(Case, case.id).status = "failed"
        world.db.commit()
        return found

    monkeypatch.setattr(world.pipeline, "_search_index", overtaken)
    assert world.pipeline.process_case(case.id) == "superseded"
    [(target, _, started)] = events(world.db, "search_started")
    [(_, _, finished)] = events(world.db, "search_finished")
    assert (target, finished["outcome"], finished["candidate_ids"]) == (str(case.id), "superseded", [])
    assert finished["probe_embedding_ids"] == started["probe_embedding_ids"]
    assert world.db.scalar(select(func.count()).select_from(Candidate).where(Candidate.case_id == case.id)) == 0
