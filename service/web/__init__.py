"""The web pages: server-rendered HTML for every role, served by the same FastAPI app.

Pages are thin, like the API routes: they call the domain service functions
(`service/<domain>/service.py`) with the signed-in user and an explicit session,
and turn refusals into sentences on the page. Nothing here talks to the HTTP API.

- `session`: the browser session in HttpOnly cookies (access token and refresh
  token, as the API issues them), the signed-in user, and `page_permission`.
- `csrf`: a per-session secret in a cookie; every form carries a token derived
  from it, and every POST is checked.
- `render`: the Jinja2 environment (autoescaped), `render()`, redirects, flash
  messages, the navigation, and image responses.
- `pages`: `page_router()`, the route class that turns refusals into pages.
- `cookies`: how cookies are protected, queued by a request and written on its response.
- `security`: the middleware adding the Content-Security-Policy and other
  headers, and writing the cookies a request queued.
- `routes/`: one module per area; every module there with a `router` is mounted.

See FOUNDATION.md beside this file for how to add a page.
"""
