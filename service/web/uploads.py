"""Upload pages: the multipart form is read only after the session and the role are checked.

`page_upload_permission(action)` marks the route (so `csrf.check_csrf` leaves the
form alone) and requires the action like `page_permission`; `page_upload_form(Fields)`
then reads the form (see `service.photos.upload_form`) and checks its CSRF token
before anything else, unless the token came in the X-CSRF-Token header, which
`check_csrf` has already checked. A route marked as an upload page must take its
form from `page_upload_form`, or its forms would go unchecked (a test holds every
marked route to it).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel
from starlette.datastructures import FormData

from service.photos.upload_form import upload_form
from service.deps import UPLOAD_KEY
from service.web.csrf import FORM_FIELD, HEADER, check_token
from service.web.session import page_permission
from vetting.permissions import Action


def page_upload_permission(action: Action) -> dict[str, Any]:
    keywords = page_permission(action)
    keywords["openapi_extra"] = {**keywords["openapi_extra"], UPLOAD_KEY: True}
    return keywords


def _form_token(request: Request, form: FormData) -> None:
    if request.headers.get(HEADER) is None:
        value = form.get(FORM_FIELD)
        check_token(request, value if isinstance(value, str) else None)


def page_upload_form(fields: type[BaseModel]):
    """The page's form (the file may be missing: the page asks for it), its CSRF token checked."""
    return upload_form(fields, file_required=False, check=_form_token)
