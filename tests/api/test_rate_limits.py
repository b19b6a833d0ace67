"""Rate limits: 429 with Retry-After and RateLimit headers, one audit row, failed-id lock-out."""

from __future__ import annotations

import re
import uuid

import pytest
import redis

from chat_app.models import AuditLog
from chat_app.services.audit import RequestContext, keyed_ref
from tests.api.support import HIGH_LIMITS, assert_problem

REDIS_URL = "redis://127.0.0.1:6379"
RATELIMIT = re.compile(r'"(?P<name>[a-z_]+)";r=(?P<r>\d+);t=(?P<t>\d+)')
POLICY = re.compile(r'"(?P<name>[a-z_]+)";q=(?P<q>\d+);w=(?P<w>\d+)')


def limits(**overrides: str) -> str:
    """HIGH_LIMITS with some names replaced."""
    merged = dict(item.split("=") for item in HIGH_LIMITS.split(","))
    merged.update(overrides)
    return ",".join(f"{name}={spec}" for name, spec in merged.items())


def assert_429(api, response, name: str, *, limit: int, window_s: int = 60) -> AuditLog:
    """A 429 problem with Retry-After, RateLimit headers and one `rate_limited` audit row."""
    assert_problem(response, 429, "rate-limited")
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= window_s
    policy = POLICY.fullmatch(response.headers["ratelimit-policy"])
    assert policy is not None
    assert policy.groupdict() == {"name": name, "q": str(limit), "w": str(window_s)}
    current = RATELIMIT.fullmatch(response.headers["ratelimit"])
    assert current is not None
    assert current.groupdict() == {"name": name, "r": "0", "t": str(retry_after)}
    [row] = api.audit_rows(request_id=response.headers["x-request-id"])
    assert (row.event, row.actor, row.details) == ("rate_limited", "api", {"limit": name})
    assert row.ip_hash == keyed_ref(api.services.settings.secret_key, "testclient")
    return row


def test_create_over_limit_is_429(make_api):
    api = make_api(CHAT_APP_RATE_LIMITS=limits(create="2/minute;100/day"))

    first, second = api.post("/session"), api.post("/session")
    third = api.post("/session")

    assert (first.status_code, second.status_code) == (201, 201)
    assert RATELIMIT.fullmatch(first.headers["ratelimit"]).group("r") == "1"
    assert RATELIMIT.fullmatch(second.headers["ratelimit"]).group("r") == "0"
    assert POLICY.fullmatch(first.headers["ratelimit-policy"]).groupdict() == {
        "name": "create", "q": "2", "w": "60"
    }
    row = assert_429(api, third, "create", limit=2)
    assert row.session_id is None and row.session_ref is None


def test_validate_over_limit_is_429(make_api):
    api = make_api(CHAT_APP_RATE_LIMITS=limits(validate="2/minute"))
    session_id = api.new_session()

    ok = [api.get("/session", session_id) for _ in range(2)]
    refused = api.get("/session", session_id)

    assert [r.status_code for r in ok] == [200, 200]
    assert POLICY.fullmatch(ok[0].headers["ratelimit-policy"]).group("name") == "validate"
    assert RATELIMIT.fullmatch(ok[1].headers["ratelimit"]).group("r") == "0"
    assert_429(api, refused, "validate", limit=2)


def test_failed_validations_lock_the_ip_out(make_api):
    api = make_api(CHAT_APP_RATE_LIMITS=limits(failed_validate="3/minute"))
    valid = api.new_session()
    assert api.get("/session", valid).status_code == 200

    rejected = [
        api.get("/session", "not-a-session-id").status_code,
        api.get("/session", str(uuid.uuid4())).status_code,
        api.get("/session", valid.replace("-", "")).status_code,
    ]
    locked = api.get("/session", valid)

    assert rejected == [400, 404, 400]
    row = assert_429(api, locked, "failed_validate", limit=3)
    assert row.session_ref is None
    for response in (api.post("/session/reset", valid), api.get("/session/audit", valid)):
        assert_problem(response, 429, "rate-limited")
    assert api.session_row(valid).status == "active"


def test_missing_header_does_not_count_as_failed(make_api):
    api = make_api(CHAT_APP_RATE_LIMITS=limits(failed_validate="2/minute"))
    valid = api.new_session()

    statuses = [api.get("/session").status_code for _ in range(5)]

    assert statuses == [400] * 5
    assert api.get("/session", valid).status_code == 200


def test_reset_limit_is_per_session(make_api):
    api = make_api(CHAT_APP_RATE_LIMITS=limits(reset="1/minute"))
    first = api.new_session()
    second = api.post("/session/reset", first)
    assert second.status_code == 201
    assert POLICY.fullmatch(second.headers["ratelimit-policy"]).group("name") == "reset"

    again = api.post("/session/reset", first)
    other = api.post("/session/reset", second.json()["session_id"])

    row = assert_429(api, again, "reset", limit=1)
    assert row.session_id == api.session_row(first).id
    assert row.session_ref == api.services.audit.session_ref(first)
    assert other.status_code == 201


def test_read_limit_is_per_session_and_audited(make_api):
    api = make_api(CHAT_APP_RATE_LIMITS=limits(read="2/minute"))
    session_id, other = api.new_session(), api.new_session()

    assert [api.get("/session/audit", session_id).status_code for _ in range(2)] == [200, 200]
    refused = api.get("/session/audit", session_id)

    row = assert_429(api, refused, "read", limit=2)
    assert row.session_id == api.session_row(session_id).id
    assert api.get("/session/audit", other).status_code == 200


@pytest.mark.parametrize("hops", [0, 1])
def test_client_ip_honours_trusted_proxy_hops(make_api, hops):
    api = make_api(
        CHAT_APP_RATE_LIMITS=limits(create="1/minute"), CHAT_APP_TRUSTED_PROXY_HOPS=str(hops)
    )

    def create(forwarded: str) -> int:
        return api.post("/session", headers={"X-Forwarded-For": forwarded}).status_code

    statuses = [
        create("203.0.113.7"),
        create("203.0.113.8"),
        create("198.51.100.1, 203.0.113.8"),  # a spoofed left entry changes nothing
    ]
    assert statuses == ([201, 429, 429] if hops == 0 else [201, 201, 429])


def test_redis_counters_are_shared_between_apps(make_api):
    redis.Redis.from_url(REDIS_URL).ping()
    env = {"REDIS_URL": REDIS_URL, "CHAT_APP_RATE_LIMITS": limits(read="3/minute")}
    first, second = make_api(**env), make_api(**env)
    # A fresh session is a fresh limit key, so earlier runs never interfere.
    session_id = first.services.sessions.create(RequestContext(actor="cli"), reason="api").uuid

    responses = [
        first.get("/session/audit", session_id),
        second.get("/session/audit", session_id),
        first.get("/session/audit", session_id),
    ]
    refused = second.get("/session/audit", session_id)

    assert [r.status_code for r in responses] == [200, 200, 200]
    remaining = [RATELIMIT.fullmatch(r.headers["ratelimit"]).group("r") for r in responses]
    assert remaining == ["2", "1", "0"]
    row = assert_429(second, refused, "read", limit=3)
    assert row.session_id == second.session_row(session_id).id
