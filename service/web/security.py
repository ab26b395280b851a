"""Security headers on every answer, and the cookies a page queued.

`WebSecurityMiddleware` is plain ASGI (it never buffers a body). On every response
except the interactive API docs (which need the CDN and inline script of Swagger UI
and ReDoc, and are served only in development: `docs_paths` is empty elsewhere) it sets:

- `Content-Security-Policy`: only this origin's scripts, styles, fonts and
  frames-of-nothing; no inline script or style attribute can run; images may also
  be `blob:` (previews made in the browser before upload) and `data:`;
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
  `X-Frame-Options: DENY`, `Cross-Origin-Opener-Policy: same-origin`, and a
  `Permissions-Policy` that turns off the camera, microphone and location;
- `Cache-Control: no-store` unless the route chose otherwise; `/static` files are
  revalidated (`no-cache`) instead, so a deployment's new CSS is seen at once.

It also writes the Set-Cookie headers that `cookies.queue_cookie` left in the
request's scope, so a session refreshed or ended while a page was being made is
stored whatever the page answered (a page, a redirect or an error page).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.web.cookies import queued_cookie_headers

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "img-src 'self' blob: data:",
        "script-src 'self'",
        "style-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
DOCS_PATHS = ("/docs", "/redoc")


class WebSecurityMiddleware:
    def __init__(self, app: ASGIApp, docs_paths: tuple[str, ...] = DOCS_PATHS):
        self.app = app
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if not path.startswith(self.docs_paths):  # () in production: nothing exempt
                    for name, value in HEADERS.items():
                        headers.setdefault(name, value)
                headers.setdefault("Cache-Control", "no-cache" if path.startswith("/static/") else "no-store")
                for cookie in queued_cookie_headers(scope):
                    headers.append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_headers)
