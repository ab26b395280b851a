"""`BodySizeLimit`: no request body larger than the biggest upload is ever read.

Plain ASGI, outermost in the app. A request whose Content-Length is over the limit
is answered 413 at once, before anything reads it; a body sent without a length
(chunked) is counted as it is read, and the read that passes the limit raises a 413
`HTTPException`, which FastAPI answers as `{"detail": sentence}` (the middleware
answers itself if the exception reaches it before a response has started).
Starlette's own RequestBodyLimitMiddleware does the same but answers in plain text.

The limit is the upload cap (`REUNITE_MAX_UPLOAD_BYTES`) plus `FORM_OVERHEAD_BYTES`
for the multipart framing and the form's text fields. This bounds what an
anonymous client can make the service spool; the upload routes also authenticate
before they read a body at all (`service.photos.upload_form`).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORM_OVERHEAD_BYTES = 1024 * 1024


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_upload_bytes: int):
        self.app = app
        self.limit = max_upload_bytes + FORM_OVERHEAD_BYTES
        self.message = (
            f"The request is larger than the {self.limit / 1_048_576:.0f} MB accepted: photos up to "
            f"{max_upload_bytes / 1_048_576:.0f} MB are accepted. Please send a smaller copy."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared_length(scope) > self.limit:
            await self._refuse(scope, receive, send)
            return
        received, started = 0, False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, self.message)
            return message

        async def noting_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, noting_send)
        except HTTPException as error:
            if error.status_code != 413 or started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await JSONResponse({"detail": self.message}, status_code=413, headers={"Connection": "close"})(
            scope, receive, send
        )


def _declared_length(scope: Scope) -> int:
    try:
        return int(Headers(scope=scope).get("content-length", "0"))
    except ValueError:
        return 0  # not a number: the server refuses it before it gets here
