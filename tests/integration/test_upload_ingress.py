"""Uploads are authenticated before their body is read, and no body over its cap is read at all.

The app is driven as the server drives it (ASGI, no test client that would read the
whole body first), with a body sent in 1 MB chunks that counts how much the app
consumed: an anonymous or unauthorised 300 MB upload must be refused having read
nothing, a declared length over the cap refused before anything reads it, and a
streamed body cut off just after the cap. A body that is not an upload (JSON, a plain
form) has a cap of its own, a megabyte, since it is parsed before sign-in is checked.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import anyio
import pytest
from PIL import Image
from sqlalchemy import func, select

from service.app import api_routes
from service.body_limit import FORM_OVERHEAD_BYTES, SMALL_BODY_BYTES
from service.cases import service as cases_service
from service.photos.models import Photo
from service.records import service as records_service
from service.deps import reads_upload
from tests.integration.test_records import (  # noqa: F401  (people is a fixture)
    API,
    bearer,
    create_record,
    jpeg_bytes,
    people,
    stored_files,
)
from tests.integration.test_web_security import browser, caseworker, record_form, sign_in  # noqa: F401
from tests.integration.test_web_security import token_of

MB = 1024 * 1024
HUGE = 300 * MB
BOUNDARY = "reunite-test-boundary"
FILE_HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="huge.jpg"\r\n'
    "Content-Type: image/jpeg\r\n\r\n"
).encode()
FILLER = b"\xff" * MB


class StreamedBody:
    """A multipart body of `total` bytes sent in 1 MB chunks; `read` is how much the app consumed."""

    def __init__(self, total: int):
        self.total, self.read = total, 0
        self.status: int | None = None
        self.answer = b""
        self.done = anyio.Event()

    async def receive(self) -> dict:
        if self.read >= self.total:
            await self.done.wait()
            return {"type": "http.disconnect"}
        chunk = FILE_HEAD + FILLER[len(FILE_HEAD) :] if self.read == 0 else FILLER
        chunk = chunk[: self.total - self.read]
        self.read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": self.read < self.total}

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.answer += message.get("body", b"")
            if not message.get("more_body", False):
                self.done.set()


def post_streamed(
    app,
    path: str,
    *,
    total: int = HUGE,
    headers: dict[str, str] | None = None,
    declared_length: int | None = None,
    content_type: str = f"multipart/form-data; boundary={BOUNDARY}",
) -> StreamedBody:
    body = StreamedBody(total)
    raw = [(b"host", b"testserver"), (b"content-type", content_type.encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    if declared_length is not None:
        raw.append((b"content-length", str(declared_length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 443),
        "state": {},
    }
    # On a thread of its own: the browser tests' Playwright (sync API) keeps an event loop running on this one.
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(anyio.run, partial(app, scope, body.receive, body.send)).result()
    return body


UPLOAD_PATHS = [f"{API}/records/1/photos", f"{API}/cases", "/records/1/photos", "/cases/new"]


@pytest.mark.one_backend
def test_an_anonymous_upload_is_refused_without_reading_its_body(app):
    for path in UPLOAD_PATHS:
        answer = post_streamed(app, path)
        expected = 303 if not path.startswith(API) else 401  # a page sends the browser to sign in
        assert (answer.status, answer.read) == (expected, 0), path


@pytest.mark.one_backend
def test_an_upload_by_someone_whose_role_does_not_allow_it_is_refused_without_reading_its_body(app, settings, people):
    headers = bearer(settings, people.reviewer)  # reviewers neither manage records nor submit cases
    for path in UPLOAD_PATHS[:2]:
        answer = post_streamed(app, path, headers=headers)
        assert (answer.status, answer.read) == (403, 0), path


@pytest.mark.one_backend
def test_a_declared_length_over_the_cap_is_refused_before_anything_reads_it(app, settings, people):
    answer = post_streamed(app, f"{API}/cases", headers=bearer(settings, people.caseworker), declared_length=HUGE)
    assert (answer.status, answer.read) == (413, 0)
    assert b"The request is larger than the 21 MB accepted: photos up to 20 MB are accepted." in answer.answer


@pytest.mark.one_backend
def test_a_streamed_body_is_cut_off_just_after_the_cap_and_stores_nothing(app, client, db, settings, people):
    headers = bearer(settings, people.caseworker)
    record_id = create_record(client, headers)
    answer = post_streamed(app, f"{API}/records/{record_id}/photos", headers=headers)
    cap = settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    assert answer.status == 413 and cap < answer.read <= cap + MB
    assert b'{"detail":"The request is larger than' in answer.answer
    assert db.scalar(select(func.count(Photo.id))) == 0 and stored_files(settings) == []
    assert app.state.dispatcher.sent == []


@pytest.mark.one_backend
def test_a_body_for_a_route_that_reads_no_upload_is_cut_off_after_a_megabyte(app):
    for content_type in ("application/json", "application/x-www-form-urlencoded"):
        streamed = post_streamed(app, f"{API}/auth/refresh", content_type=content_type)  # public, JSON
        assert streamed.status == 413 and SMALL_BODY_BYTES < streamed.read <= SMALL_BODY_BYTES + MB, content_type
        assert b"1 MB accepted for anything but a photo upload" in streamed.answer
    declared = post_streamed(
        app, "/sign-in", total=2 * MB, declared_length=2 * MB, content_type="application/x-www-form-urlencoded"
    )
    assert (declared.status, declared.read) == (413, 0)
    # Whatever it claims to be: a multipart body sent to a route that reads no upload gets the small cap too.
    disguised = post_streamed(app, "/sign-in")
    assert disguised.status == 413 and SMALL_BODY_BYTES < disguised.read <= SMALL_BODY_BYTES + MB


def test_an_upload_page_still_refuses_a_form_without_its_token(browser, caseworker, db, sdist_images):  # noqa: F811
    sign_in(browser, caseworker)
    created = browser.post("/records/new", data=record_form(token_of(browser, "/records/new")))
    assert created.status_code == 303, created.text
    photo = ("photo.jpg", jpeg_bytes(3), "image/jpeg")
    for path, form in (
        (f"{created.headers['location']}/photos", {}),
        ("/cases/new", {"case_reference": "P-1", "purpose": "Looking for a missing child"}),
    ):
        for token in ({}, {"csrf_token": "forged"}):
            refused = browser.post(path, data=form | token, files={"file": photo})
            assert refused.status_code == 403 and "out of date" in refused.text, path
    assert db.scalar(select(func.count(Photo.id))) == 0
    assert browser.app.state.dispatcher.sent == []


@pytest.mark.one_backend
def test_uploads_are_decoded_off_the_event_loop(app, client, settings, people, monkeypatch):
    threads = []

    def spy(real):
        def check_upload(data, settings):
            try:
                asyncio.get_running_loop()
                threads.append("event loop")
            except RuntimeError:
                threads.append("worker thread")
            return real(data, settings)

        return check_upload

    for module in (records_service, cases_service):
        monkeypatch.setattr(module, "check_upload", spy(module.check_upload))
    headers = bearer(settings, people.caseworker)
    record_id = create_record(client, headers)
    photo = {"file": ("photo.jpg", jpeg_bytes(4), "image/jpeg")}
    assert client.post(f"{API}/records/{record_id}/photos", headers=headers, files=photo).status_code == 202
    assert (
        client.post(
            f"{API}/cases",
            headers=headers,
            files=photo,
            data={"case_reference": "P-2", "purpose": "Looking for a missing child"},
        ).status_code
        == 202
    )
    assert threads == ["worker thread", "worker thread"]


@pytest.mark.one_backend
def test_the_schema_documents_the_upload_forms_and_every_upload_page_reads_its_form_after_sign_in(app, client):
    paths = client.get("/openapi.json").json()["paths"]
    record_form_schema = paths["/api/v1/records/{record_id}/photos"]["post"]["requestBody"]["content"]
    case_form_schema = paths["/api/v1/cases"]["post"]["requestBody"]["content"]
    assert record_form_schema["multipart/form-data"]["schema"]["required"] == ["file"]
    assert case_form_schema["multipart/form-data"]["schema"]["required"] == ["file", "case_reference", "purpose"]
    uploads = [route for route in api_routes(app.routes) if reads_upload(route)]
    assert sorted(route.path for route in uploads) == ["/cases", "/cases/new"] + ["/records/{record_id}/photos"] * 2
    for route in uploads:  # else check_csrf would leave a page's form unchecked, or a body be read before sign-in
        assert any(
            getattr(dependency.call, "reads_upload_form", False) for dependency in route.dependant.dependencies
        ), route.path


@pytest.mark.one_backend
def test_a_bad_upload_form_gets_the_usual_422(client, settings, people):
    headers = bearer(settings, people.caseworker)
    no_file = client.post(f"{API}/cases", headers=headers, data={"case_reference": "P-3", "purpose": "Looking"})
    assert no_file.status_code == 422 and no_file.json()["detail"] == "Some fields are missing or invalid: file."
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "PNG")
    long_reference = client.post(
        f"{API}/cases",
        headers=headers,
        files={"file": ("p.png", buffer.getvalue())},
        data={"case_reference": "R" * 101, "purpose": ""},
    )
    assert long_reference.status_code == 422
    assert long_reference.json()["detail"] == "Some fields are missing or invalid: case_reference, purpose."
