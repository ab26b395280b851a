"""`page_router()`: the router every page module uses, and the pages that answer refusals.

A page router checks the CSRF token of every POST (`csrf.check_csrf`), keeps its
routes out of the API schema, and uses `PageRoute`, which turns what a page may
raise into a page a person can act on:

- no session, or an ended one: 303 to the sign-in page, which returns here after;
- an organisation that is pending, rejected, suspended, expired or revoked: the
  organisation status page (403), saying what it means and what to do;
- a role that does not grant the page's action: 403 page;
- a form without this session's token: 403 page asking to reload and try again;
- a refusal of a service function (`service.refusal.Refusal`, or vetting's
  `PolicyRefused`) that the page did not handle itself: a page with the
  refusal's sentence and status. `refusal_handler` is the app's one handler of
  refusals, for the API (the `Problem` body) and for pages (this page); PageRoute
  calls it itself, so the page is rendered while the request's session is open;
- a malformed address (`/records/abc`): 404 page; a malformed form: 400 page.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from service.deps import ORGANISATION_STATUS_MESSAGES
from service.refusal import REFUSALS, problem
from service.web.csrf import CsrfRefused, check_csrf
from service.web.render import redirect, render
from service.web.session import NotPermitted, OrganisationUnavailable, SignInRequired, end_session

# What each organisation standing means for the person reading, and what they can do.
STANDING_NEXT_STEPS = {
    "applied": "Two Reunite platform administrators check every application before an organisation can "
    "use the service. You will be able to work here as soon as they have both approved it; "
    "there is nothing more to do now.",
    "rejected": "The application was not approved. If you think this is a mistake, contact the Reunite "
    "operators, who can tell you why.",
    "suspended": "Nobody in your organisation can see records, cases or photos while it is suspended. "
    "Contact the Reunite operators to find out why and what is needed to reinstate it.",
    "expired": "Every organisation is vetted again each year. Ask the Reunite operators to start the "
    "re-vetting; work can resume as soon as two platform administrators approve it.",
    "revoked": "Your organisation's access has ended for good, and its records and cases can no longer be "
    "used here. Contact the Reunite operators if you have questions.",
    "none": "Contact your organisation's administrator or the Reunite operators.",
}
STANDING_TITLES = {
    "applied": "Your organisation is being vetted",
    "rejected": "Your organisation's application was not approved",
    "suspended": "Your organisation is suspended",
    "expired": "Your organisation's vetting has expired",
    "revoked": "Your organisation's access has been revoked",
    "none": "Your account has no organisation",
}


def error_page(request: Request, *, status: int, title: str, message: str) -> Response:
    return render(request, "errors/page.html", {"title": title, "message": message}, status_code=status)


def organisation_status_page(
    request: Request, unavailable: OrganisationUnavailable, *, signed_in: bool = True
) -> Response:
    standing = unavailable.standing
    return render(
        request,
        "auth/organisation_status.html",
        {
            "standing": standing,
            "title": STANDING_TITLES.get(standing, "Your organisation cannot use Reunite at present"),
            "message": ORGANISATION_STATUS_MESSAGES.get(standing, "Your organisation cannot use Reunite at present."),
            "next_steps": STANDING_NEXT_STEPS.get(standing, STANDING_NEXT_STEPS["none"]),
            "organisation": unavailable.organisation,
            "nav": [],  # nothing is open until the organisation's status changes
            "signed_in": signed_in,
        },
        status_code=403,
    )


def answer_refusal(request: Request, error: Exception) -> Response:
    """The page for anything a page route raised and did not handle itself."""
    if isinstance(error, SignInRequired):
        end_session(request)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        message = (
            "Please sign in to continue."
            if request.method == "GET"
            else "Your session had ended, so that was not saved. Please sign in and try again."
        )
        return redirect(request, f"/sign-in?next={quote(target, safe='/')}", flash=message, kind="info")
    if isinstance(error, OrganisationUnavailable):
        return organisation_status_page(request, error)
    if isinstance(error, NotPermitted):
        return error_page(
            request,
            status=403,
            title="Not available to your role",
            message="Your role does not allow this page. If you need it, ask your organisation's administrator.",
        )
    if isinstance(error, CsrfRefused):
        return error_page(
            request,
            status=403,
            title="Please try again",
            message="This form was out of date or came from another site, so nothing was done. "
            "Go back, reload the page and submit it again. If it keeps happening, make "
            "sure your browser accepts cookies from this site.",
        )
    if isinstance(error, RequestValidationError):
        if any(problem.get("loc", ("",))[0] == "path" for problem in error.errors()):
            return error_page(
                request,
                status=404,
                title="Page not found",
                message="There is no such page. Check the address, or use the menu above.",
            )
        return error_page(
            request,
            status=400,
            title="This could not be done",
            message="Part of the form was missing or not valid, so nothing was done. "
            "Go back, check the form and submit it again.",
        )
    if isinstance(error, HTTPException):
        return error_page(request, status=error.status_code, title="Something went wrong", message=str(error.detail))
    status, message = error.status, error.message  # type: ignore[attr-defined]  # a Refusal or PolicyRefused
    title = "Not found" if status in (404, 410) else "This could not be done"
    return error_page(request, status=status, title=title, message=message)


async def refusal_handler(request: Request, refusal: Exception) -> Response:
    """The one answer to a refusal (`service.refusal`): its page for a web page, the Problem shape for the API."""
    if isinstance(request.scope.get("route"), PageRoute):
        return answer_refusal(request, refusal)
    status, body, headers = problem(refusal)  # type: ignore[arg-type]
    return JSONResponse(body, status_code=status, headers=headers)


class PageRoute(APIRoute):
    """A route whose refusals are answered with pages (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except (
                SignInRequired,
                OrganisationUnavailable,
                NotPermitted,
                CsrfRefused,
                RequestValidationError,
                HTTPException,
            ) as error:
                return answer_refusal(request, error)
            except REFUSALS as refusal:
                return await refusal_handler(request, refusal)

        return answer


def page_router(**kwargs: Any) -> APIRouter:
    """An APIRouter for pages: PageRoute, the CSRF check on every POST, no API schema entries."""
    dependencies = [Depends(check_csrf), *kwargs.pop("dependencies", [])]
    return APIRouter(route_class=PageRoute, dependencies=dependencies, include_in_schema=False, **kwargs)
