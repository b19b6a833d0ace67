"""`/admin/sweep`: run the sweep on demand, for bearers of `CHAT_APP_ADMIN_TOKEN`.

With no token configured the admin API answers exactly like a route that does not exist.
"""

from __future__ import annotations

import dataclasses
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from chat_app.api.deps import RequestContextDep, ServicesDep
from chat_app.api.problems import problem_responses
from chat_app.api.rate_limit import check_failed_attempts, count_failed_attempt
from chat_app.api.schemas import SweepReportPublic, SweepRequest
from chat_app.errors import AppError

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="The value of CHAT_APP_ADMIN_TOKEN.",
)


class AdminUnauthorized(AppError):
    status, type_slug = 401, "unauthorized"

    def __init__(self) -> None:
        super().__init__("Send the admin token as `Authorization: Bearer <token>`.")


async def require_admin(
    services: ServicesDep,
    ctx: RequestContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """404 while admin is disabled; 401 unless the bearer token matches (constant time)."""
    expected = services.settings.admin_token
    if not expected:
        # The framework's own 404: the same body as any path that does not exist.
        raise StarletteHTTPException(status_code=404)
    await check_failed_attempts(services, ctx)  # an IP guessing tokens is locked out (429)
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        await count_failed_attempt(services, ctx)
        raise AdminUnauthorized()


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post("/sweep", responses=problem_responses(401, 404, 422, 429, 500, 503))
def run_sweep(
    services: ServicesDep,
    ctx: RequestContextDep,
    dry_run: Annotated[bool, Query(description="Report only; change nothing.")] = False,
    body: SweepRequest | None = None,
) -> SweepReportPublic:
    """Expire sessions, purge their files, reconcile the store; returns the report.

    `dry_run` may come in the query or the JSON body; either one asking for it is enough.
    """
    dry = dry_run or (body is not None and body.dry_run)
    report = services.sweeper.run(dataclasses.replace(ctx, actor="sweep"), dry_run=dry)
    return SweepReportPublic.from_report(report)
