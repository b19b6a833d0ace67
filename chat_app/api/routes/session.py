"""`/session`: create, validate + resume, reset, audit trail. The id travels in X-Session-Id."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from chat_app.api.deps import RequestContextDep, ServicesDep, SessionIdHeader
from chat_app.api.problems import problem_responses
from chat_app.api.rate_limit import limit_create, limit_read, limit_reset, limit_validate
from chat_app.api.schemas import AuditEventPublic, AuditEventsPublic, SessionPublic

AUDIT_EVENTS_LIMIT = 100

router = APIRouter(prefix="/session", tags=["session"])

# The routes are `async def` and send the service call to the thread pool themselves: FastAPI
# runs a plain `def` route there and then its response validation on a second hop (bench.api).


@router.post(
    "",
    status_code=201,
    dependencies=[Depends(limit_create)],
    responses=problem_responses(429, 500, 503),
)
async def create_session(services: ServicesDep, ctx: RequestContextDep) -> SessionPublic:
    """Issue a new anonymous session."""
    view = await run_in_threadpool(services.sessions.create, ctx, reason="api")
    return SessionPublic.from_view(view)


@router.get(
    "",
    dependencies=[Depends(limit_validate)],
    responses=problem_responses(400, 404, 422, 429, 500, 503),
)
async def resume_session(
    session_id: SessionIdHeader, services: ServicesDep, ctx: RequestContextDep
) -> SessionPublic:
    """Validate the session id and resume its session (404 for unknown, ended or expired)."""
    view = await run_in_threadpool(services.sessions.resume, session_id, ctx)
    return SessionPublic.from_view(view)


@router.post(
    "/reset",
    status_code=201,
    dependencies=[Depends(limit_reset)],
    responses=problem_responses(400, 404, 409, 422, 429, 500, 503),
)
async def reset_session(
    session_id: SessionIdHeader, services: ServicesDep, ctx: RequestContextDep
) -> SessionPublic:
    """End this session and start its successor (409 when a concurrent reset won)."""
    result = await run_in_threadpool(services.sessions.reset, session_id, ctx)
    return SessionPublic.from_view(result.session)


@router.get(
    "/audit",
    dependencies=[Depends(limit_read)],
    responses=problem_responses(400, 404, 422, 429, 500, 503),
)
async def list_session_audit(
    session_id: SessionIdHeader, services: ServicesDep, ctx: RequestContextDep
) -> AuditEventsPublic:
    """The newest audit events of this session, newest first."""
    rows = await run_in_threadpool(
        services.sessions.audit_events, session_id, ctx, limit=AUDIT_EVENTS_LIMIT
    )
    return AuditEventsPublic(items=[AuditEventPublic.from_row(row) for row in rows])
