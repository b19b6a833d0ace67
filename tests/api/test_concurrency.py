"""30 concurrent resets of one session over real HTTP: exactly one 201 and one successor.

The losers answer 409 when their request arrived while the session was still active, and 404 when
it arrived after the winner committed (SPEC 8: an ended id is then simply unknown). Which of the
two a loser gets depends on scheduling, so the test pins the winner count and the status set.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from sqlmodel import Session, func, select

from chat_app.container import Services, build_services
from chat_app.models import UserSession
from tests.api.support import HIGH_LIMITS, serve_over_http

RESETS = 30


@pytest.fixture
def served(make_settings) -> Iterator[tuple[str, Services]]:
    """The API served by uvicorn in a background thread; yields its base URL and services."""
    settings = make_settings(CHAT_APP_RATE_LIMITS=HIGH_LIMITS.replace(
        "reset=10000/minute", "reset=100/minute"
    ))
    services = build_services(settings)
    with serve_over_http(services) as url:
        yield url, services


def test_concurrent_resets_have_one_winner(served):
    base_url, services = served
    session_id = httpx.post(f"{base_url}/api/v1/session").json()["session_id"]
    barrier = threading.Barrier(RESETS)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def reset() -> None:
        try:
            with httpx.Client(base_url=base_url, timeout=60) as client:
                client.get("/api/v1/health")  # open the connection before the race
                barrier.wait()
                response = client.post(
                    "/api/v1/session/reset", headers={"X-Session-Id": session_id}
                )
                statuses.append(response.status_code)
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=reset) for _ in range(RESETS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    counts = Counter(statuses)
    assert len(statuses) == RESETS
    assert counts[201] == 1
    assert set(counts) - {201} <= {409, 404}, counts
    with Session(services.engine) as db:
        old = db.exec(select(UserSession).where(UserSession.uuid == session_id)).one()
        successors = db.exec(
            select(func.count()).where(UserSession.predecessor_id == old.id)
        ).one()
        assert (old.status, successors) == ("reset", 1)
