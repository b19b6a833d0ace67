"""`/health`: are the database and the object store answering?"""

from __future__ import annotations

from fastapi import APIRouter

from chat_app.api.deps import ServicesDep
from chat_app.api.problems import problem_responses
from chat_app.api.schemas import HealthPublic
from chat_app.services.health import check_database

router = APIRouter(tags=["health"])


@router.get("/health", responses=problem_responses(500, 503))
def read_health(services: ServicesDep) -> HealthPublic:
    """200 when the database answers `SELECT 1` and the store its probe; 503 otherwise."""
    check_database(engine=services.engine)
    services.store.check()  # StorageUnavailable is a 503
    return HealthPublic()
