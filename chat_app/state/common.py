"""Helpers every State class shares: request context, services and error toasts."""

from __future__ import annotations

import logging

import reflex as rx

from chat_app.container import Services, get_services
from chat_app.errors import AppError
from chat_app.models import utcnow
from chat_app.services.audit import RequestContext

log = logging.getLogger("chat_app.state")


def services() -> Services:
    """The process-wide services."""
    return get_services()


def request_context(state: rx.State, actor: str = "browser") -> RequestContext:
    """What the websocket connection tells us about this browser."""
    router = state.router
    return RequestContext(
        actor=actor,
        ip=router.session.client_ip or None,
        request_id=None,
        user_agent=router.headers.user_agent or None,
        received_at=utcnow(),
    )


def error_toast(error: AppError, *, description: str | None = None) -> rx.event.EventSpec:
    """The toast that tells the user what went wrong and what to do (STYLE 13)."""
    extra = {"description": description} if description else {}
    if error.toast_level == "warning":
        return rx.toast.warning(error.detail, **extra)
    return rx.toast.error(error.detail, **extra)
