"""Collaborators the routes receive, as `Annotated` aliases (STYLE 4)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Header, Request

from chat_app.api.middleware import accept_request_id
from chat_app.container import Services
from chat_app.errors import InvalidInput
from chat_app.models import utcnow
from chat_app.services.audit import RequestContext

SESSION_ID_HEADER = "X-Session-Id"


class MissingSessionId(InvalidInput):
    status, type_slug = 400, "missing-session-id"

    def __init__(self) -> None:
        super().__init__(f"Send the session id in the {SESSION_ID_HEADER} header.")


# The dependencies below are `async def` although they await nothing: FastAPI runs a plain `def`
# dependency in the thread pool, a hop that cost more than the whole session look-up (bench.api).


async def get_services(request: Request) -> Services:
    """The services of the app serving this request (built on first use)."""
    provider: Callable[[], Services] = request.app.state.services_provider
    return provider()


ServicesDep = Annotated[Services, Depends(get_services)]


def client_ip(request: Request, *, trusted_proxy_hops: int) -> str | None:
    """The peer address, or what our N-th trusted proxy saw (X-Forwarded-For, from the right)."""
    peer = request.client.host if request.client else None
    if trusted_proxy_hops <= 0:
        return peer
    forwarded = [part.strip() for part in request.headers.get("x-forwarded-for", "").split(",")]
    if len(forwarded) < trusted_proxy_hops:
        return peer
    candidate = forwarded[-trusted_proxy_hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer


def request_id_of(request: Request) -> str:
    """The id the middleware gave this request (a fresh one outside the API prefix)."""
    request_id = getattr(request.state, "request_id", None)
    if request_id is None:
        request_id = request.state.request_id = accept_request_id(None)
    return request_id


async def get_request_context(request: Request) -> RequestContext:
    """Who is asking, as the services and the audit log want to know it."""
    # The services come straight from the provider, not as a sub-dependency: each dependency
    # node costs FastAPI tens of microseconds per request (bench.api).
    services = await get_services(request)
    received_at: datetime = getattr(request.state, "received_at", None) or utcnow()
    return RequestContext(
        actor="api",
        ip=client_ip(request, trusted_proxy_hops=services.settings.trusted_proxy_hops),
        request_id=request_id_of(request),
        user_agent=request.headers.get("user-agent"),
        received_at=received_at,
    )


RequestContextDep = Annotated[RequestContext, Depends(get_request_context)]


async def get_session_id(
    x_session_id: Annotated[
        str | None,
        Header(
            alias=SESSION_ID_HEADER,
            description="The session id issued by POST /session. Never sent in the URL.",
        ),
    ] = None,
) -> str:
    """The raw session id from its header; a missing header is a 400."""
    if x_session_id is None:
        raise MissingSessionId()
    return x_session_id


SessionIdHeader = Annotated[str, Depends(get_session_id)]
