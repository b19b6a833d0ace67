"""API fixtures: an app per test on real services (SQLite and PostgreSQL), via TestClient."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chat_app.api import create_api
from chat_app.container import build_services
from chat_app.storage.base import ObjectStore
from tests.api.support import HIGH_LIMITS, Api, TestClient

STORE_KINDS = ["local", "s3"]


@pytest.fixture
def make_api(make_settings) -> Callable[..., Api]:
    """Build an app on its own services; keyword overrides use env names (limits default high).

    `store` replaces the store the settings would choose (the LocalStore in the data dir).
    """

    def make(
        *, raise_server_exceptions: bool = True, store: ObjectStore | None = None, **env: object
    ) -> Api:
        env.setdefault("CHAT_APP_RATE_LIMITS", HIGH_LIMITS)
        services = build_services(make_settings(**env), store=store)
        client = TestClient(
            create_api(services), raise_server_exceptions=raise_server_exceptions
        )
        return Api(client=client, services=services)

    return make


@pytest.fixture
def api(make_api) -> Api:
    """An app with high limits."""
    return make_api()


@pytest.fixture(params=STORE_KINDS)
def store(request) -> ObjectStore | None:
    """None for the default LocalStore, or an S3Store on a fresh SeaweedFS bucket."""
    if request.param == "local":
        return None
    # Looked up only here, so runs without S3 tests never start SeaweedFS.
    return request.getfixturevalue("make_s3_store")()
