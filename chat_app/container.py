"""Builds the services from Settings once per process; State classes and the API share them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy.engine import Engine

from chat_app.db import get_engine
from chat_app.models import utcnow
from chat_app.services.assistant import Assistant, build_assistant
from chat_app.services.audit import AuditWriter
from chat_app.services.chat import ChatService
from chat_app.services.dev import DevControls
from chat_app.services.files import FileService, UploadLimits
from chat_app.services.rate_limits import RateLimiter
from chat_app.services.retrieval import Retriever
from chat_app.services.sessions import SessionPolicy, SessionService
from chat_app.services.sweep import Sweeper
from chat_app.settings import Settings, get_settings
from chat_app.storage.base import ObjectStore
from chat_app.storage.signing import UrlSigner


@dataclass(frozen=True)
class Services:
    """Everything an edge (State, API, CLI) needs to serve a request."""

    settings: Settings
    engine: Engine
    audit: AuditWriter
    sessions: SessionService
    limiter: RateLimiter
    dev: DevControls
    store: ObjectStore
    signer: UrlSigner
    files: FileService
    sweeper: Sweeper
    chat: ChatService


def build_store(settings: Settings, signer: UrlSigner) -> ObjectStore:
    """S3 when a bucket is configured, else the local folder store."""
    if settings.s3_bucket:
        from chat_app.storage.s3 import S3Store  # boto3 is only imported when S3 is in use

        return S3Store(
            settings.s3_bucket, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region
        )
    from chat_app.storage.local import LocalStore

    return LocalStore(settings.data_dir / "files", signer=signer)


def build_services(
    settings: Settings,
    *,
    store: ObjectStore | None = None,
    assistant: Assistant | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Services:
    """Wire the services for `settings` (tests pass their own settings, store, assistant or clock).

    One `clock` for every service: expiry, the sweep's grace period and the timestamps they
    compare must all read the same time.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = get_engine(settings.database_url)
    audit = AuditWriter(secret=settings.secret_key)
    signer = UrlSigner(settings.secret_key)
    store = store if store is not None else build_store(settings, signer)
    policy = SessionPolicy(
        idle=timedelta(days=settings.session_idle_days),
        max_age=timedelta(days=settings.session_max_days),
    )
    sessions = SessionService(engine, audit=audit, policy=policy, clock=clock)
    limits = UploadLimits(
        max_bytes=int(settings.max_upload_mb * 2**20),
        max_files=settings.max_files_per_session,
        allowed_extensions=settings.allowed_extension_set,
    )
    files = FileService(engine, store=store, audit=audit, sessions=sessions, limits=limits,
                        clock=clock)
    sessions.add_contents_handler(files)
    chat = ChatService(
        engine, sessions=sessions, files=files, audit=audit, retriever=Retriever(engine),
        assistant=assistant if assistant is not None else build_assistant(settings),
        clock=clock,
    )
    sessions.add_contents_handler(chat)
    return Services(
        settings=settings,
        engine=engine,
        audit=audit,
        sessions=sessions,
        limiter=RateLimiter(settings.rate_limits, settings.redis_url),
        dev=DevControls(engine, audit=audit, sessions=sessions, enabled=settings.dev_controls),
        store=store,
        signer=signer,
        files=files,
        sweeper=Sweeper(files=files, sessions=sessions,
                        grace=timedelta(minutes=settings.orphan_grace_minutes), clock=clock),
        chat=chat,
    )


@lru_cache(maxsize=1)
def get_services() -> Services:
    """The process-wide services."""
    return build_services(get_settings())
