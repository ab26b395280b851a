"""`BodySizeLimit`: no request body larger than its route needs is ever read.

Plain ASGI, outermost in the app. When the app first asks for the body (after routing,
so the route is known), a declared Content-Length over the route's limit is refused
with 413 before any byte is read; a body sent without a length (chunked) is counted as
it is read, and the read that passes the limit raises a 413 `HTTPException`, which
FastAPI answers as `{"detail": sentence}` (the middleware answers itself if the
exception reaches it before a response has started). Starlette's own
RequestBodyLimitMiddleware answers in plain text.

A route that reads a photo upload (marked by `service.deps.UPLOAD_KEY`; it reads its
form only after sign-in, `service.photos.upload_form`) may receive the upload cap
(`REUNITE_MAX_UPLOAD_BYTES`) plus `FORM_OVERHEAD_BYTES` for the multipart framing and
the form's text fields. Every other body (JSON, a plain form) holds a few kilobytes of
fields and is parsed before the route's sign-in check, so it is capped at
`SMALL_BODY_BYTES`: an anonymous client cannot make the service parse or spool
megabytes, whatever content type it claims.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.deps import reads_upload

FORM_OVERHEAD_BYTES = 1024 * 1024
SMALL_BODY_BYTES = 1024 * 1024  # the largest JSON or plain form body: its fields are capped far below
SMALL_BODY_MESSAGE = "The request is larger than the 1 MB accepted for anything but a photo upload."


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_upload_bytes: int):
        self.app = app
        self.upload_limit = max_upload_bytes + FORM_OVERHEAD_BYTES
        self.upload_message = (
            f"The request is larger than the {self.upload_limit / 1_048_576:.0f} MB accepted: photos up to "
            f"{max_upload_bytes / 1_048_576:.0f} MB are accepted. Please send a smaller copy."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(Headers(scope=scope))
        limit: int | None = None  # the route's, known once the app first reads (routing is done by then)
        message = SMALL_BODY_MESSAGE
        received, started = 0, False

        async def counting_receive() -> Message:
            nonlocal limit, message, received
            if limit is None:
                limit, message = self._limit_for(scope)
                if declared > limit:
                    raise HTTPException(413, message)
            message_in = await receive()
            if message_in["type"] == "http.request":
                received += len(message_in.get("body", b""))
                if received > limit:
                    raise HTTPException(413, message)
            return message_in

        async def noting_send(message_out: Message) -> None:
            nonlocal started
            started = started or message_out["type"] == "http.response.start"
            await send(message_out)

        try:
            await self.app(scope, counting_receive, noting_send)
        except HTTPException as error:
            if error.status_code != 413 or started:
                raise
            await _refuse(message, scope, receive, send)

    def _limit_for(self, scope: Scope) -> tuple[int, str]:
        if reads_upload(scope.get("route")):
            return self.upload_limit, self.upload_message
        return SMALL_BODY_BYTES, SMALL_BODY_MESSAGE


async def _refuse(message: str, scope: Scope, receive: Receive, send: Send) -> None:
    await JSONResponse({"detail": message}, status_code=413, headers={"Connection": "close"})(scope, receive, send)


def _declared_length(headers: Headers) -> int:
    try:
        return int(headers.get("content-length", "0"))
    except ValueError:
        return 0  # not a number: the server refuses it before it gets here
