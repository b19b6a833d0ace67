"""Rate limits on API routes (SPEC section 8): counted before the work, reported in headers.

Each guard is a dependency: it counts the request, adds `RateLimit` / `RateLimit-Policy` to the
response, and on refusal records one `rate_limited` audit row and raises RateLimited (a 429).
Rejected session ids also count against the caller's IP (`failed_validate`), so guessing ids
locks an IP out of every session endpoint until the window passes.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable

import anyio.to_thread
from fastapi import Request, Response

from chat_app.api.deps import RequestContextDep, ServicesDep, SessionIdHeader
from chat_app.container import Services
from chat_app.errors import MalformedSessionId, RateLimited, SessionNotFound
from chat_app.services.abuse import record_rate_limited
from chat_app.services.audit import RequestContext
from chat_app.services.rate_limits import Quota
from chat_app.services.session_ids import parse_session_id

FAILED_VALIDATE = "failed_validate"
UNKNOWN_IP = "-"


def policy_header(name: str, *, limit: int, window_s: int) -> str:
    """`RateLimit-Policy` in the IETF draft's structured-field form."""
    return f'"{name}";q={limit};w={window_s}'


def limit_header(name: str, *, remaining: int, reset_s: int) -> str:
    """`RateLimit` in the IETF draft's structured-field form."""
    return f'"{name}";r={remaining};t={reset_s}'


def quota_headers(quota: Quota) -> dict[str, str]:
    """Headers for a request that was let through."""
    return {
        "RateLimit-Policy": policy_header(quota.name, limit=quota.limit, window_s=quota.window_s),
        "RateLimit": limit_header(quota.name, remaining=quota.remaining, reset_s=quota.reset_in_s),
    }


def rate_limited_headers(exc: RateLimited) -> dict[str, str]:
    """Headers for a 429."""
    return {
        "Retry-After": str(exc.retry_after_s),
        "RateLimit-Policy": policy_header(exc.name, limit=exc.limit, window_s=exc.window_s),
        "RateLimit": limit_header(exc.name, remaining=0, reset_s=exc.retry_after_s),
    }


async def _record_refusal(
    services: Services, ctx: RequestContext, refused: RateLimited, session_uuid: str | None
) -> None:
    # One `rate_limited` audit row per refusal, written on a thread: it is a database write.
    await anyio.to_thread.run_sync(
        functools.partial(
            record_rate_limited,
            engine=services.engine,
            audit=services.audit,
            ctx=ctx,
            limit=refused.name,
            session_uuid=session_uuid,
        )
    )


async def _hit(
    services: Services,
    ctx: RequestContext,
    name: str,
    key: str,
    *,
    session_uuid: str | None = None,
) -> Quota:
    try:
        return await services.limiter.hit_async(name, key)
    except RateLimited as refused:
        await _record_refusal(services, ctx, refused, session_uuid)
        raise


async def _check_failed_validate(services: Services, ctx: RequestContext, ip: str) -> None:
    try:
        await services.limiter.check_async(FAILED_VALIDATE, ip)
    except RateLimited as refused:
        await _record_refusal(services, ctx, refused, None)
        raise


async def _count_failure(services: Services, ip: str) -> None:
    # The rejection itself is the answer; going over the limit shows on the next request.
    with contextlib.suppress(RateLimited):
        await services.limiter.hit_async(FAILED_VALIDATE, ip)


# The guards are plain `async def` functions: FastAPI runs a sync dependency on a thread-pool hop,
# and a generator dependency (which could catch the route's rejection itself) through an exit
# stack and a shielded cancel scope; either cost more than the counting (bench.api: the
# generator form added ~0.2 ms to every GET /session). So a guard only marks the request, and
# the problem handler counts a rejected id (`count_rejection`). In-process counters are counted
# inline; Redis counters and audit writes still go to a thread.

REJECTED_IDS = (MalformedSessionId, SessionNotFound)


def count_rejected_ids(request: Request, ip: str) -> None:
    """Mark a guarded request: if its session id is then rejected, `ip` pays for it."""
    request.state.failed_validate_key = ip


async def count_rejection(request: Request, services: Services, exc: Exception) -> None:
    """Count `exc` against the IP when it rejects a session id on a guarded route."""
    ip = getattr(request.state, "failed_validate_key", None)
    if ip is not None and isinstance(exc, REJECTED_IDS):
        await _count_failure(services, ip)


async def limit_create(services: ServicesDep, ctx: RequestContextDep, response: Response) -> None:
    """`create`, per client IP."""
    quota = await _hit(services, ctx, "create", ctx.ip or UNKNOWN_IP)
    response.headers.update(quota_headers(quota))


async def limit_validate(
    request: Request,
    services: ServicesDep,
    ctx: RequestContextDep,
    session_id: SessionIdHeader,  # resolved first: a missing header is a 400, not a count
    response: Response,
) -> None:
    """`validate` per IP; an IP over `failed_validate` is refused before any look-up."""
    ip = ctx.ip or UNKNOWN_IP
    await _check_failed_validate(services, ctx, ip)
    quota = await _hit(services, ctx, "validate", ip)
    response.headers.update(quota_headers(quota))
    count_rejected_ids(request, ip)


def _limit_per_session(name: str) -> Callable[..., Awaitable[None]]:
    async def guard(
        request: Request,
        services: ServicesDep,
        ctx: RequestContextDep,
        session_id: SessionIdHeader,
        response: Response,
    ) -> None:
        ip = ctx.ip or UNKNOWN_IP
        await _check_failed_validate(services, ctx, ip)
        try:
            session_uuid = parse_session_id(session_id)
        except MalformedSessionId:
            await _count_failure(services, ip)
            raise
        # Keyed by the HMAC reference: raw ids never reach the limiter's storage (Redis).
        key = services.audit.session_ref(session_uuid)
        quota = await _hit(services, ctx, name, key, session_uuid=session_uuid)
        response.headers.update(quota_headers(quota))
        count_rejected_ids(request, ip)

    guard.__name__ = f"limit_{name}"
    guard.__doc__ = f"`{name}`, per session; rejected ids count against the IP."
    return guard


limit_reset = _limit_per_session("reset")
limit_read = _limit_per_session("read")
limit_upload = _limit_per_session("upload")
limit_messages = _limit_per_session("messages")


async def check_failed_attempts(services: Services, ctx: RequestContext) -> None:
    """Refuse (429) an IP that is over `failed_validate`, e.g. after guessing admin tokens."""
    await _check_failed_validate(services, ctx, ctx.ip or UNKNOWN_IP)


async def count_failed_attempt(services: Services, ctx: RequestContext) -> None:
    """Count one rejected credential against the caller's IP (`failed_validate`)."""
    await _count_failure(services, ctx.ip or UNKNOWN_IP)
