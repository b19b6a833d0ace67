"""`create_api`: the FastAPI app Reflex mounts in front of itself (`api_transformer`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from chat_app.api.middleware import RequestMetaMiddleware
from chat_app.api.openapi import describe_api
from chat_app.api.problems import install_problem_handlers, use_problem_media_type
from chat_app.api.routes import admin, blobs, files, health, messages, session
from chat_app.container import Services

API_PREFIX = "/api/v1"


def lazy_services(services: Services | Callable[[], Services]) -> Callable[[], Services]:
    """A provider that builds the services once, on first call (never at import or build time)."""
    if isinstance(services, Services):
        return lambda: services
    lock = threading.Lock()
    built: list[Services] = []

    def provide() -> Services:
        if not built:
            with lock:
                if not built:
                    built.append(services())
        return built[0]

    return provide


def create_api(services: Services | Callable[[], Services]) -> FastAPI:
    """The REST API under /api/v1; `services` may be a provider, called on the first request."""
    api = FastAPI(
        title="chat_app API",
        version="1",
        description="Anonymous, server-issued sessions. The id travels in `X-Session-Id` only.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    api.state.services_provider = lazy_services(services)
    api.add_middleware(RequestMetaMiddleware, prefix=API_PREFIX)
    install_problem_handlers(api)
    for router in (session.router, messages.router, files.router, blobs.router, admin.router,
                   health.router):
        api.include_router(router, prefix=API_PREFIX)
    api.openapi = _openapi_builder(api)  # type: ignore[method-assign]
    return api


def _openapi_builder(api: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(
                title=api.title,
                version=api.version,
                description=api.description,
                routes=api.routes,
            )
            api.openapi_schema = describe_api(use_problem_media_type(schema), prefix=API_PREFIX)
        return api.openapi_schema

    return build
