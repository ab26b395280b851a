"""The public application form for organisations, with the attestation, and what happens next.

The form builds the API's `Application` model and calls `organisations.service.apply`,
the function behind `POST /api/v1/organisations/applications`: the same
law-enforcement exclusion (organisation type, email and website domains against the
denylist), the same attestation rule, and the same audit event for a refusal.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from service.auth.routes import client_address
from service.deps import PUBLIC, DbSession, SettingsDep
from service.organisations import service as organisations
from service.organisations.schemas import Application
from service.refusal import REFUSALS
from service.web.forms import field_errors, validation_message
from service.web.pages import page_router
from service.web.render import redirect, render
from vetting.exclusion import ORGANISATION_TYPES

router = page_router(tags=["pages: applications"])

LABELS = {
    "name": "Organisation name",
    "org_type": "Type of organisation",
    "country": "Country",
    "registration_number": "Registration number",
    "website": "Website",
    "contact_email": "Organisation's contact email",
    "admin_email": "Your email address",
    "admin_password": "Choose a password",
    "no_law_enforcement": "The promise about law enforcement",
    "purpose": "How your organisation will use Reunite",
}
FIELDS = ("name", "org_type", "country", "registration_number", "website", "contact_email", "admin_email", "purpose")


@router.get("/apply", **PUBLIC)
def application_form(request: Request) -> Response:
    return _form_page(request, {name: "" for name in FIELDS} | {"no_law_enforcement": False})


@router.post("/apply", **PUBLIC)
def apply(
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    name: Annotated[str, Form(max_length=400)] = "",
    org_type: Annotated[str, Form(max_length=100)] = "",
    country: Annotated[str, Form(max_length=10)] = "",
    registration_number: Annotated[str, Form(max_length=200)] = "",
    website: Annotated[str, Form(max_length=600)] = "",
    contact_email: Annotated[str, Form(max_length=640)] = "",
    admin_email: Annotated[str, Form(max_length=640)] = "",
    admin_password: Annotated[str, Form(max_length=1024)] = "",
    admin_password_again: Annotated[str, Form(max_length=1024)] = "",
    no_law_enforcement: Annotated[str, Form(max_length=10)] = "",
    purpose: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    typed = dict(
        name=name,
        org_type=org_type,
        country=country,
        registration_number=registration_number,
        website=website,
        contact_email=contact_email,
        admin_email=admin_email,
        purpose=purpose,
        no_law_enforcement=no_law_enforcement == "yes",
    )
    if admin_password != admin_password_again:
        return _form_page(
            request,
            typed,
            status_code=400,
            errors={"admin_password_again": "The two passwords differ."},
            error="The two passwords you typed are different; type the same password twice.",
        )
    try:
        application = Application(
            name=name,
            org_type=org_type,
            country=country,
            registration_number=registration_number,
            website=website,
            contact_email=contact_email,
            admin_email=admin_email,
            admin_password=admin_password,
            attestation={"no_law_enforcement": typed["no_law_enforcement"], "purpose": purpose},
        )
    except ValidationError as invalid:
        return _form_page(
            request,
            typed,
            status_code=422,
            errors=field_errors(invalid, LABELS),
            error=validation_message(invalid, LABELS),
        )
    try:
        organisations.apply(session, application=application, settings=settings, address=client_address(request))
    except REFUSALS as refused:
        page = _form_page(request, typed, status_code=refused.status, error=refused.message)
        page.headers.update(getattr(refused, "headers", None) or {})  # Retry-After, when over the limit
        return page
    return redirect(request, "/apply/next", flash="Your application has been received.")


@router.get("/apply/next", **PUBLIC)
def what_happens_next(request: Request) -> Response:
    return render(request, "applications/next.html", {"title": "What happens next"})


def _form_page(
    request: Request,
    typed: dict,
    *,
    status_code: int = 200,
    error: str | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "applications/form.html",
        {
            "title": "Apply to use Reunite",
            "form": typed,
            "error": error,
            "errors": errors or {},
            "org_types": list(ORGANISATION_TYPES.items()),
        },
        status_code=status_code,
    )
