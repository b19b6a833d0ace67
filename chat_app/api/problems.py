"""Every error leaves the API as `application/problem+json` (STYLE 12): one handler per family."""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chat_app.api.deps import get_services, request_id_of
from chat_app.api.middleware import REQUEST_ID_HEADER
from chat_app.api.rate_limit import count_rejection, rate_limited_headers
from chat_app.api.schemas import Problem
from chat_app.errors import AppError, RateLimited

log = logging.getLogger("chat_app.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:chat-app:problem:"
#: Fixed texts for framework errors: their own details may echo the request (paths, input).
HTTP_DETAILS = {
    404: "There is no such resource.",
    405: "This method is not allowed on this resource.",
}
HTTP_SLUGS = {404: "not-found", 405: "method-not-allowed"}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem_response(
    request: Request,
    *,
    status: int,
    slug: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    """A problem body carrying the request id, which is also set as a header."""
    request_id = request_id_of(request)
    body = Problem(
        type=TYPE_PREFIX + slug,
        title=http.HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        request_id=request_id,
    )
    all_headers = {**(headers or {}), REQUEST_ID_HEADER: request_id, "Cache-Control": "no-store"}
    return ProblemResponse(body.model_dump(), status_code=status, headers=all_headers)


async def handle_app_error(request: Request, exc: Exception) -> ProblemResponse:
    """AppError and every subclass: status, slug and a detail that never echoes input."""
    assert isinstance(exc, AppError)
    try:
        await count_rejection(request, await get_services(request), exc)
    except AppError as counting_failed:  # the limiter's store is down: that 503 is the answer
        exc = counting_failed
    if exc.status >= 500:
        log.warning("request %s failed: %s", request_id_of(request), type(exc).__name__)
    return problem_response(
        request, status=exc.status, slug=exc.type_slug, detail=exc.detail,
        headers=error_headers(exc),
    )


def error_headers(exc: AppError) -> Mapping[str, str] | None:
    """Headers some errors call for: rate-limit state on a 429, the challenge on a 401."""
    if isinstance(exc, RateLimited):
        return rate_limited_headers(exc)
    if exc.status == 401:
        # Bearer tokens are the API's only credentials (RFC 6750 section 3).
        return {"WWW-Authenticate": "Bearer"}
    return None


#: Errors whose `loc` says no more than where: a forbidden extra key's name is the client's,
#: and an unparsable body's second part is only an offset into it.
LOCATION_ONLY_ERRORS = {"extra_forbidden", "json_invalid"}


def handle_validation_error(request: Request, exc: Exception) -> ProblemResponse:
    """Invalid request parameters: name the fields, never repeat their values."""
    assert isinstance(exc, RequestValidationError)
    # Only the location and the declared name: deeper parts of `loc` may be client-chosen keys.
    fields = sorted({
        ".".join(str(part) for part in
                 err["loc"][: 1 if err["type"] in LOCATION_ONLY_ERRORS else 2])
        for err in exc.errors()
    })
    return invalid_request(request, fields)


def invalid_request(request: Request, fields: list[str]) -> ProblemResponse:
    """The 422 for input that does not fit the operation, naming where to look."""
    return problem_response(
        request,
        status=422,
        slug="invalid-request",
        detail=f"Invalid request: check {', '.join(fields)}." if fields else "Invalid request.",
    )


def handle_http_exception(request: Request, exc: Exception) -> ProblemResponse:
    """Framework errors (unknown route, wrong method) with fixed texts."""
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI answers a JSON body it cannot parse with a 422 but one it cannot even decode as
        # text with a bare 400 that no JSON route documents: one mistake, one answer.
        return invalid_request(request, ["body"])
    status = exc.status_code
    phrase = http.HTTPStatus(status).phrase
    return problem_response(
        request,
        status=status,
        slug=HTTP_SLUGS.get(status, phrase.lower().replace(" ", "-")),
        detail=HTTP_DETAILS.get(status, f"{phrase}."),
        headers=exc.headers,
    )


def handle_unexpected(request: Request, exc: Exception) -> ProblemResponse:
    """Anything else: a generic 500; the traceback goes to the log only."""
    log.error("request %s failed", request_id_of(request), exc_info=exc)
    return problem_response(
        request,
        status=500,
        slug="internal-error",
        detail="Something went wrong on our side. Try again later.",
    )


def install_problem_handlers(api: FastAPI) -> None:
    """Register the handlers; Starlette's MRO lookup sends each AppError subclass to one."""
    api.add_exception_handler(AppError, handle_app_error)
    api.add_exception_handler(RequestValidationError, handle_validation_error)
    api.add_exception_handler(StarletteHTTPException, handle_http_exception)
    api.add_exception_handler(Exception, handle_unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` entries declaring each error status with the Problem schema."""
    return {
        status: {"model": Problem, "description": http.HTTPStatus(status).phrase}
        for status in statuses
    }


def use_problem_media_type(schema: dict) -> dict:
    """Rewrite error responses of an OpenAPI document to `application/problem+json`."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if str(status)[0] in "45" and "application/json" in content:
                    response["content"] = {PROBLEM_MEDIA_TYPE: content["application/json"]}
    return schema
