"""Upload forms are read only after the request is authenticated and authorised.

FastAPI reads a route's body (for `File()` and `Form()` parameters) before it
solves any dependency, so an anonymous 300 MB upload used to be spooled to disk
before its 401. The upload routes therefore declare no body parameters. They take
an `Upload` from `upload_form(Fields)`, a dependency solved after the route's
permission (FastAPI solves a route's `dependencies` first, in order, and stops at
the first refusal), which only then reads the multipart body, within the size cap
of `service.body_limit`. The text fields are checked by the `Fields` model; a bad
one is the usual 422 (`RequestValidationError`). `upload_permission` documents the
multipart body in the OpenAPI schema, which FastAPI no longer sees.

The web pages use `service.web.uploads.page_upload_form`: the same, with the CSRF check.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from service.deps import UPLOAD_KEY, permission
from vetting.permissions import Action

FILE_FIELD = "file"
MAX_FIELDS = 20  # every upload form has a handful of fields
F = TypeVar("F", bound=BaseModel)
FormCheck = Callable[[Request, FormData], None]


@dataclass(frozen=True)
class Upload(Generic[F]):
    file: UploadFile | None  # None only where the form allows it (the pages say "choose a photo")
    fields: F

    @property
    def required_file(self) -> UploadFile:
        """The file of a form that requires one (the dependency refused the request without it)."""
        if self.file is None:
            raise RuntimeError("This form does not require a file.")
        return self.file


def no_path() -> None:
    return None


def upload_form(
    fields: type[F], *, file_required: bool = True, check: FormCheck | None = None, path: Callable[..., Any] = no_path
) -> Callable[..., AsyncIterator[Upload[F]]]:
    """A dependency reading the request's multipart form: declare it after the route's permission.

    `path` is a dependency taking the route's path parameters (e.g. `record_id: DbId`): FastAPI
    validates it first and, when a path parameter is bad, never reads the form, so the 422
    names the path parameter rather than a form field.
    """

    async def read_upload_form(request: Request, _path: Any = Depends(path)) -> AsyncIterator[Upload[F]]:
        form = await request.form(max_files=1, max_fields=MAX_FIELDS)
        try:
            if check is not None:
                check(request, form)
            yield parse_form(form, fields, file_required=file_required)
        finally:
            await form.close()

    read_upload_form.reads_upload_form = True  # type: ignore[attr-defined]
    return read_upload_form


def parse_form(form: FormData, fields: type[F], *, file_required: bool = True) -> Upload[F]:
    """The file and the checked text fields; RequestValidationError (422) naming each bad one."""
    file = form.get(FILE_FIELD)
    file = file if isinstance(file, UploadFile) else None
    errors: list[dict[str, Any]] = []
    if file is None and file_required:
        errors.append({"type": "missing", "loc": ("body", FILE_FIELD), "msg": "Field required", "input": None})
    # An empty field is a missing one, as FastAPI treats form fields.
    values = {
        name: value
        for name, value in form.multi_items()
        if name != FILE_FIELD and isinstance(value, str) and value != ""
    }
    parsed = None
    try:
        parsed = fields.model_validate(values)
    except ValidationError as invalid:
        errors += [{**error, "loc": ("body", *error["loc"])} for error in invalid.errors(include_url=False)]
    if errors:
        raise RequestValidationError(errors)
    assert parsed is not None  # no errors: the fields validated
    return Upload(file=file, fields=parsed)


def multipart_schema(fields: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of an upload: the file and the model's fields, as multipart/form-data."""
    schema = fields.model_json_schema()
    body = {
        "type": "object",
        "required": [FILE_FIELD, *schema.get("required", [])],
        "properties": {FILE_FIELD: {"type": "string", "format": "binary"}, **schema.get("properties", {})},
    }
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": body}}}}


def upload_permission(action: Action, fields: type[BaseModel]) -> dict[str, Any]:
    """Route keyword arguments for an API upload: `permission(action)` and the documented multipart body."""
    keywords = permission(action)
    keywords["openapi_extra"] = {**keywords["openapi_extra"], **multipart_schema(fields), UPLOAD_KEY: True}
    return keywords
