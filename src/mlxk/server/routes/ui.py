"""The web page at ``/``: chat, images and speech in the browser (``static/`` in this package).

The page is three files that ship inside the package (no CDN, works offline): ``index.html``
at ``/``, ``app.js`` and ``app.css`` under ``/ui/``. They are public — the page itself holds no
secret — so they are answered *before* the API-key check: ``WebUi`` is a pure ASGI middleware
that sits between the Host check and the key check (``create_app`` adds it right after
``ApiKey``) and hands ``GET``/``HEAD`` for exactly these paths to ``router``. Everything else,
``POST /`` and every ``/v1`` call the page makes included, goes on to the key check; the page
sends ``Authorization: Bearer KEY`` itself on each API call.

Every answer carries a Content-Security-Policy that allows the page's own origin only
(``'self'``): no inline script or style, no remote anything. ``blob:`` is allowed for images
and media because the page previews the user's own attachments and recordings from memory.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",  # app.js, and app.js again as the AudioWorklet module
        "style-src 'self'",
        "img-src 'self' blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "worker-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Revalidate every time (the ETag makes that a 304): a new mlxk never serves a stale page.
    "Cache-Control": "no-cache",
}
# URL path → (file in static/, content type)
FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/ui/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/ui/app.css": ("app.css", "text/css; charset=utf-8"),
}
_METHODS = ("GET", "HEAD")


@cache
def _load(name: str) -> tuple[bytes, str]:
    data = (resources.files("mlxk.server") / "static" / name).read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


async def _file(request: Request) -> Response:
    name, media_type = FILES[request.url.path]
    data, etag = _load(name)
    headers = {**SECURITY_HEADERS, "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


async def _favicon(_: Request) -> Response:
    # Browsers ask for it on their own; without this they would get a 401 with a key set.
    return Response(status_code=204, headers=SECURITY_HEADERS)


router = Router(
    routes=[Route(path, _file, methods=["GET"]) for path in FILES]
    + [Route("/favicon.ico", _favicon, methods=["GET"])]
)
PATHS = frozenset([*FILES, "/favicon.ico"])


class WebUi:
    """Answer ``GET``/``HEAD`` for the page's own files; pass everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _METHODS and scope["path"] in PATHS:
            await router(scope, receive, send)
            return
        await self.app(scope, receive, send)
