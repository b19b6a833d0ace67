"""Per-request metadata for API responses: request id, arrival time, no-store caching."""

from __future__ import annotations

import re
import uuid

from starlette._utils import get_route_path
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat_app.models import utcnow

REQUEST_ID_HEADER = "X-Request-Id"
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def accept_request_id(raw: str | None) -> str:
    """The client's request id when it is short and plain, else a fresh uuid4 hex."""
    if raw is not None and _CLIENT_REQUEST_ID.fullmatch(raw):
        return raw
    return uuid.uuid4().hex


class RequestMetaMiddleware:
    """Tags every HTTP request under `prefix` with a request id and its arrival time."""

    def __init__(self, app: ASGIApp, *, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Reflex mounts its own app inside ours: leave its websocket and pages untouched.
        if scope["type"] != "http" or not get_route_path(scope).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        request_id = accept_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["received_at"] = utcnow()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


#: Sent on every HTTP response of the app: pages, assets, uploads and the API (SPEC 11, OWASP's
#: HTTP headers cheat sheet). The CSP only restricts what cannot break the compiled frontend:
#: no framing (clickjacking), no plugins, no <base> rewriting of relative URLs.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'; object-src 'none'; base-uri 'none'",
}


class SecurityHeadersMiddleware:
    """Adds SECURITY_HEADERS to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
