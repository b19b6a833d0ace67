"""Named rate limits over the `limits` library, in memory and on a real Redis."""

from __future__ import annotations

import secrets
import threading
import time

import pytest
import redis

from chat_app.errors import RateLimited
from chat_app.services import rate_limits
from chat_app.services.rate_limits import RateLimiter

REDIS_URL = "redis://127.0.0.1:6379"


@pytest.fixture
def limiter() -> RateLimiter:
    return RateLimiter({"create": "2/minute", "combo": "2/minute;3/day", "burst": "2/second;3/day"})


def test_hits_up_to_the_limit_pass(limiter: RateLimiter) -> None:
    assert limiter.hit("create", "ip-1").remaining == 1
    assert limiter.hit("create", "ip-1").remaining == 0


def test_hit_past_the_limit_raises_rate_limited(limiter: RateLimiter) -> None:
    limiter.hit("create", "ip-1")
    limiter.hit("create", "ip-1")
    with pytest.raises(RateLimited) as caught:
        limiter.hit("create", "ip-1")
    error = caught.value
    assert (error.name, error.limit, error.window_s) == ("create", 2, 60)
    assert 1 <= error.retry_after_s <= 60


def test_rate_limited_keeps_refusing_within_the_window(limiter: RateLimiter) -> None:
    limiter.hit("create", "ip-1")
    limiter.hit("create", "ip-1")
    for _ in range(3):
        with pytest.raises(RateLimited):
            limiter.hit("create", "ip-1")


def test_keys_are_counted_independently(limiter: RateLimiter) -> None:
    limiter.hit("create", "ip-1")
    limiter.hit("create", "ip-1")
    assert limiter.hit("create", "ip-2").remaining == 1


def test_names_are_counted_independently(limiter: RateLimiter) -> None:
    limiter.hit("create", "ip-1")
    limiter.hit("create", "ip-1")
    assert limiter.hit("combo", "ip-1").remaining == 1


def test_check_does_not_consume(limiter: RateLimiter) -> None:
    for _ in range(5):
        limiter.check("create", "ip-1")
    limiter.hit("create", "ip-1")
    limiter.hit("create", "ip-1")
    with pytest.raises(RateLimited):
        limiter.hit("create", "ip-1")


def test_check_raises_once_the_limit_is_used_up(limiter: RateLimiter) -> None:
    limiter.hit("create", "ip-1")
    limiter.hit("create", "ip-1")
    with pytest.raises(RateLimited) as caught:
        limiter.check("create", "ip-1")
    assert caught.value.retry_after_s >= 1


def test_first_of_multiple_limits_refuses_with_its_own_window(limiter: RateLimiter) -> None:
    limiter.hit("combo", "ip-1")
    limiter.hit("combo", "ip-1")
    with pytest.raises(RateLimited) as caught:
        limiter.hit("combo", "ip-1")
    assert (caught.value.limit, caught.value.window_s) == (2, 60)


def test_quota_reports_the_tightest_of_multiple_limits(limiter: RateLimiter) -> None:
    quota = limiter.hit("combo", "ip-1")
    assert (quota.limit, quota.remaining, quota.window_s) == (2, 1, 60)


def test_longer_limit_refuses_after_the_short_window_passes(limiter: RateLimiter) -> None:
    limiter.hit("burst", "ip-1")
    limiter.hit("burst", "ip-1")
    time.sleep(1.1)
    limiter.hit("burst", "ip-1")
    with pytest.raises(RateLimited) as caught:
        limiter.hit("burst", "ip-1")
    assert (caught.value.limit, caught.value.window_s) == (3, 86_400)
    assert caught.value.retry_after_s > 60


def test_reset_forgets_memory_counters(limiter: RateLimiter) -> None:
    limiter.hit("create", "ip-1")
    limiter.hit("create", "ip-1")
    limiter.reset()
    assert limiter.hit("create", "ip-1").remaining == 1


def test_memory_counters_start_no_thread_per_hit(monkeypatch: pytest.MonkeyPatch) -> None:
    # limits' own MemoryStorage starts a threading.Timer on a hit after any 10 ms pause.
    limiter = RateLimiter({"burst": "100/second"})
    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    for key in range(5):
        limiter.hit("burst", f"ip-{key}")
        time.sleep(0.02)
    assert started == []


def test_memory_counters_of_passed_windows_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rate_limits, "EXPIRED_SWEEP_EVERY_S", 0.0)
    limiter = RateLimiter({"burst": "2/second"})
    for key in range(50):
        limiter.hit("burst", f"ip-{key}")
    time.sleep(1.1)
    limiter.hit("burst", "ip-late")  # the hit that sweeps
    storage = limiter._storage
    assert storage.storage.keys() == storage.expirations.keys()
    assert len(storage.expirations) == 1


def test_unknown_limit_name_is_a_programming_error(limiter: RateLimiter) -> None:
    with pytest.raises(KeyError):
        limiter.hit("no-such-limit", "ip-1")


def test_redis_counters_are_shared_between_limiters() -> None:
    """Two workers on one Redis count together: the second sees the first's hits."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}")
    key = f"test-{secrets.token_hex(12)}"  # the key prefix is fixed: reruns need fresh keys
    worker_a = RateLimiter({"create": "2/minute"}, REDIS_URL)
    worker_b = RateLimiter({"create": "2/minute"}, REDIS_URL)
    worker_a.hit("create", key)
    worker_b.hit("create", key)
    with pytest.raises(RateLimited) as caught:
        worker_a.hit("create", key)
    assert (caught.value.limit, caught.value.window_s) == (2, 60)
    assert 1 <= caught.value.retry_after_s <= 60
    assert worker_b.hit("create", f"{key}-other").remaining == 1
