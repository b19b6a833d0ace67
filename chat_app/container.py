"""Builds the services from Settings once per process; State classes and the API share them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from sqlalchemy.engine import Engine

from chat_app.db import get_engine
from chat_app.services.audit import AuditWriter
from chat_app.services.dev import DevControls
from chat_app.services.rate_limits import RateLimiter
from chat_app.services.sessions import SessionPolicy, SessionService
from chat_app.settings import Settings, get_settings


@dataclass(frozen=True)
class Services:
    """Everything an edge (State, API, CLI) needs to serve a request."""

    settings: Settings
    engine: Engine
    audit: AuditWriter
    sessions: SessionService
    limiter: RateLimiter
    dev: DevControls


def build_services(settings: Settings) -> Services:
    """Wire the services for `settings` (tests call this with their own settings)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = get_engine(settings.database_url)
    audit = AuditWriter(secret=settings.secret_key)
    policy = SessionPolicy(
        idle=timedelta(days=settings.session_idle_days),
        max_age=timedelta(days=settings.session_max_days),
    )
    sessions = SessionService(engine, audit=audit, policy=policy)
    return Services(
        settings=settings,
        engine=engine,
        audit=audit,
        sessions=sessions,
        limiter=RateLimiter(settings.rate_limits, settings.redis_url),
        dev=DevControls(engine, audit=audit, sessions=sessions, enabled=settings.dev_controls),
    )


@lru_cache(maxsize=1)
def get_services() -> Services:
    """The process-wide services."""
    return build_services(get_settings())
